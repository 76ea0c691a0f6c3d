package envoy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The Kubernetes layout: a base that holds no Secret or ConfigMap (the real ones are created once
// and never overwritten by an apply), and an example overlay whose placeholders have other names.
const (
	baseDir    = "k8s/base"
	exampleDir = "k8s/overlays/example"
)

// realConfig are the Secrets and the ConfigMap the base mounts; only an operator creates them.
var realConfig = []string{"Secret/orgauthz-m2m", "Secret/orgauthz-decision-key", "ConfigMap/orgauthz-policies"}

// kustomize runs `kustomize build dir` in-process and returns its documents in the order
// `kubectl apply -k` sends them (kubectl's kustomize sorts by kind: "legacy" order).
func kustomize(t *testing.T, dir string) []map[string]any {
	t.Helper()
	return kustomizeFS(t, filesys.MakeFsOnDisk(), dir)
}

func kustomizeFS(t *testing.T, fs filesys.FileSystem, dir string) []map[string]any {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	m, err := krusty.MakeKustomizer(opts).Run(fs, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	y, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	if len(y) > maxConfigBytes {
		t.Fatalf("kustomize build %s is %d bytes, over %d", dir, len(y), maxConfigBytes)
	}
	ds, err := splitDocs(y)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return ds
}

func kindName(d map[string]any) string { return str(d["kind"]) + "/" + str(get(d, "metadata", "name")) }

// mounted returns the Secrets and ConfigMaps the pod's volumes name, as Kind/name.
func mounted(pod any) []string {
	var out []string
	for _, v := range list(get(pod, "volumes")) {
		if n := str(get(v, "secret", "secretName")); n != "" {
			out = append(out, "Secret/"+n)
		}
		if n := str(get(v, "configMap", "name")); n != "" {
			out = append(out, "ConfigMap/"+n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkApplyOrder: one Namespace, first, and every other resource inside it; Secrets and
// ConfigMaps before the Deployment that mounts them.
func checkApplyOrder(t reporter, dir string, ds []map[string]any) {
	t.Helper()
	if len(ds) == 0 || ds[0]["kind"] != "Namespace" || len(byKind(ds, "Namespace")) != 1 {
		t.Errorf("%s: %d resources, the first not the one Namespace", dir, len(ds))
		return
	}
	ns := get(ds[0], "metadata", "name")
	deployment := slices.IndexFunc(ds, func(d map[string]any) bool { return d["kind"] == "Deployment" })
	for i, d := range ds[1:] {
		if got := get(d, "metadata", "namespace"); got != ns {
			t.Errorf("%s: %s is in namespace %v, want %v", dir, kindName(d), got, ns)
		}
		if k := d["kind"]; (k == "Secret" || k == "ConfigMap") && i+1 > deployment {
			t.Errorf("%s: %s comes after the Deployment that mounts it", dir, kindName(d))
		}
	}
}

// checkBaseLayout: the base holds no Secret or ConfigMap and its pod mounts exactly the real ones.
func checkBaseLayout(t reporter, ds []map[string]any) {
	t.Helper()
	checkApplyOrder(t, baseDir, ds)
	for _, d := range ds {
		if k := d["kind"]; k == "Secret" || k == "ConfigMap" {
			t.Errorf("base holds %s: applying it would overwrite the operator's real one", kindName(d))
		}
	}
	deps := byKind(ds, "Deployment")
	if len(deps) != 1 {
		t.Errorf("%d Deployments, want 1", len(deps))
		return
	}
	if got := mounted(get(deps[0], "spec", "template", "spec")); !slices.Equal(got, slices.Sorted(slices.Values(realConfig))) {
		t.Errorf("the base pod mounts %v, want %v", got, realConfig)
	}
}

// checkExampleLayout: only *-example placeholders, and the pod mounts those, not the real names.
func checkExampleLayout(t reporter, ds []map[string]any) {
	t.Helper()
	checkApplyOrder(t, exampleDir, ds)
	defined := map[string]bool{}
	for _, d := range ds {
		defined[kindName(d)] = true
		if k := d["kind"]; k != "Secret" && k != "ConfigMap" {
			continue
		}
		if !strings.HasSuffix(kindName(d), "-example") {
			t.Errorf("overlay defines %s: placeholders must be named *-example so they never replace the real ones", kindName(d))
		}
		if get(d, "data") != nil && d["kind"] == "Secret" {
			t.Errorf("%s has base64 data; commit placeholders only", kindName(d))
		}
		for k, v := range mapOf(get(d, "stringData")) {
			if v != "REPLACE_ME" {
				t.Errorf("%s key %s holds a value; commit placeholders only", kindName(d), k)
			}
		}
	}
	deps := byKind(ds, "Deployment")
	if len(deps) != 1 {
		t.Errorf("%d Deployments, want 1", len(deps))
		return
	}
	for _, m := range mounted(get(deps[0], "spec", "template", "spec")) {
		if !defined[m] {
			t.Errorf("the example pod mounts %s, which the overlay does not define", m)
		}
	}
}

func TestKustomizeBase(t *testing.T) {
	ds := kustomize(t, baseDir)
	checkBaseLayout(t, ds)
	checkPod(t, ds)
}

// checkPod: the pod's hardening and its metrics scrape path.
func checkPod(t reporter, ds []map[string]any) {
	t.Helper()
	var svc any
	for _, d := range byKind(ds, "Service") {
		if get(d, "metadata", "name") == "orgauthz-metrics" {
			svc = d
		}
	}
	for _, dep := range byKind(ds, "Deployment") {
		checkHardened(t, get(dep, "spec", "template", "spec"))
		checkMetricsScrape(t, dep, svc)
	}
}

func TestKustomizeExampleOverlay(t *testing.T) {
	ds := kustomize(t, exampleDir)
	checkExampleLayout(t, ds)
	for _, cm := range byKind(ds, "ConfigMap") {
		for name, src := range mapOf(get(cm, "data")) {
			if _, err := ast.CompileModules(map[string]string{name: str(src)}); err != nil {
				t.Errorf("%s %s does not compile: %v", kindName(cm), name, err)
			}
		}
	}
	// The patch swaps names only: each container still gets only its own key file.
	pod := get(byKind(ds, "Deployment")[0], "spec", "template", "spec")
	sidecar, proxy := k8sProcess(t, pod, "sidecar"), k8sProcess(t, pod, "mgmtproxy")
	checkPair(t, sidecar, proxy)
	if got := sidecar.files["/policies/orgauthz"]; got != "configmap/orgauthz-policies-example" {
		t.Errorf("/policies/orgauthz is backed by %q, want configmap/orgauthz-policies-example", got)
	}
}

// TestKustomizeCheckerCatches proves the layout checks fail on the mistakes of issue 12: a real
// name in an applied folder, a placeholder under the real name, an overlay that leaves the pod on
// the real names.
func TestKustomizeCheckerCatches(t *testing.T) {
	// An in-memory copy of k8s/ to break.
	load := func(t *testing.T) filesys.FileSystem {
		fs := filesys.MakeFsInMemory()
		for _, dir := range []string{baseDir, exampleDir} {
			files, err := filepath.Glob(dir + "/*.yaml")
			if err != nil || len(files) == 0 {
				t.Fatalf("no files in %s: %v", dir, err)
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if err := fs.WriteFile("/"+f, data); err != nil {
					t.Fatal(err)
				}
			}
		}
		return fs
	}
	edit := func(t *testing.T, fs filesys.FileSystem, file, old, new string) {
		data, err := fs.ReadFile("/" + file)
		if err != nil || !strings.Contains(string(data), old) {
			t.Fatalf("%s lacks %q (%v)", file, old, err)
		}
		if err := fs.WriteFile("/"+file, []byte(strings.Replace(string(data), old, new, 1))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		dir    string
		break_ func(t *testing.T, fs filesys.FileSystem)
	}{
		{"placeholder Secret in the base", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			if err := fs.WriteFile("/"+baseDir+"/secrets.yaml", []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: orgauthz-m2m, namespace: orgauthz}\nstringData: {m2m-app-secret: REPLACE_ME}\n")); err != nil {
				t.Fatal(err)
			}
			edit(t, fs, baseDir+"/kustomization.yaml", "- service.yaml", "- service.yaml\n- secrets.yaml")
		}},
		{"base mounts another name", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, baseDir+"/deployment.yaml", "name: orgauthz-policies", "name: orgauthz-policy")
		}},
		{"placeholder policy under the real name", exampleDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, exampleDir+"/policies-configmap.yaml", "name: orgauthz-policies-example", "name: orgauthz-policies")
			edit(t, fs, exampleDir+"/kustomization.yaml", "name: orgauthz-policies-example", "name: orgauthz-policies")
		}},
		{"overlay without the patch", exampleDir, func(t *testing.T, fs filesys.FileSystem) {
			data, err := fs.ReadFile("/" + exampleDir + "/kustomization.yaml")
			before, _, found := strings.Cut(string(data), "patches:")
			if err != nil || !found {
				t.Fatalf("no patches in the overlay (%v)", err)
			}
			if err := fs.WriteFile("/"+exampleDir+"/kustomization.yaml", []byte(before)); err != nil {
				t.Fatal(err)
			}
		}},
		{"a placeholder that holds a value", exampleDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, exampleDir+"/secrets.yaml", "m2m-app-secret: REPLACE_ME", "m2m-app-secret: hunter2")
		}},
		{"container may gain privileges", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, baseDir+"/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")
		}},
		{"writable root filesystem", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, baseDir+"/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
		}},
		{"metrics behind the Istio proxy", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, baseDir+"/deployment.yaml", `excludeInboundPorts: "9090,9091"`, `excludeInboundPorts: "9090"`)
		}},
		{"metrics Service on the API port", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, baseDir+"/service.yaml", "targetPort: proxy-metrics", "targetPort: http")
		}},
		{"a resource outside the namespace", baseDir, func(t *testing.T, fs filesys.FileSystem) {
			edit(t, fs, baseDir+"/service.yaml", "namespace: orgauthz", "namespace: default")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := load(t)
			tc.break_(t, fs)
			var rec recorder
			ds := kustomizeFS(t, fs, "/"+tc.dir)
			if tc.dir == baseDir {
				checkBaseLayout(&rec, ds)
				checkPod(&rec, ds)
			} else {
				checkExampleLayout(&rec, ds)
			}
			if len(rec.errs) == 0 {
				t.Error("the broken layout passed")
			}
			t.Logf("reported: %q", rec.errs)
		})
	}
}

func mapOf(v any) map[string]any { m, _ := v.(map[string]any); return m }
