package envoy_test

import (
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
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	m, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
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
func checkApplyOrder(t *testing.T, dir string, ds []map[string]any) {
	t.Helper()
	if len(ds) == 0 || ds[0]["kind"] != "Namespace" || len(byKind(ds, "Namespace")) != 1 {
		t.Fatalf("%s: the first of %d resources is %v, want the one Namespace", dir, len(ds), ds[0]["kind"])
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

func TestKustomizeBase(t *testing.T) {
	ds := kustomize(t, baseDir)
	checkApplyOrder(t, baseDir, ds)
	for _, d := range ds {
		if k := d["kind"]; k == "Secret" || k == "ConfigMap" {
			t.Errorf("base holds %s: applying it would overwrite the operator's real one", kindName(d))
		}
	}
	deps := byKind(ds, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	if got := mounted(get(deps[0], "spec", "template", "spec")); !slices.Equal(got, slices.Sorted(slices.Values(realConfig))) {
		t.Errorf("the base pod mounts %v, want %v", got, realConfig)
	}
}

func TestKustomizeExampleOverlay(t *testing.T) {
	ds := kustomize(t, exampleDir)
	checkApplyOrder(t, exampleDir, ds)
	defined := map[string]bool{}
	for _, d := range ds {
		defined[kindName(d)] = true
		if k := d["kind"]; k != "Secret" && k != "ConfigMap" {
			continue
		}
		if slices.Contains(realConfig, kindName(d)) || !strings.HasSuffix(kindName(d), "-example") {
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
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	pod := get(deps[0], "spec", "template", "spec")
	for _, m := range mounted(pod) {
		if !defined[m] {
			t.Errorf("the example pod mounts %s, which the overlay does not define", m)
		}
	}
	for _, cm := range byKind(ds, "ConfigMap") {
		for name, src := range mapOf(get(cm, "data")) {
			if _, err := ast.CompileModules(map[string]string{name: str(src)}); err != nil {
				t.Errorf("%s %s does not compile: %v", kindName(cm), name, err)
			}
		}
	}
	// The patch swaps names only: each container still gets only its own key file.
	sidecar, proxy := k8sProcess(t, pod, "sidecar"), k8sProcess(t, pod, "mgmtproxy")
	checkPair(t, sidecar, proxy)
	if got := sidecar.files["/policies/orgauthz"]; got != "configmap/orgauthz-policies-example" {
		t.Errorf("/policies/orgauthz is backed by %q, want configmap/orgauthz-policies-example", got)
	}
}

func mapOf(v any) map[string]any { m, _ := v.(map[string]any); return m }
