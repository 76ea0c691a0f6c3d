package envoy_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The flags each binary is given, exactly: a typo or a flag that does not exist fails here.
var (
	sidecarFlags   = []string{"--issuer", "--api-resource", "--admin-resource", "--policies", "--grpc-addr", "--http-addr", "--decision-key", "--metrics-addr"}
	mgmtproxyFlags = []string{"--listen-addr", "--logto-endpoint", "--m2m-app-id", "--m2m-app-secret-file", "--decision-public-key", "--metrics-addr"}
	secretLike     = regexp.MustCompile(`(?i)secret|key|token|password|credential`)
)

// The metrics ports of the sidecar and mgmtproxy (--metrics-addr).
const (
	sidecarMetricsPort = "9090"
	proxyMetricsPort   = "9091"
)

// docs reads every YAML document of the files matching pattern, bounded in size.
func docs(t *testing.T, pattern string) []map[string]any {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	var out []map[string]any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > maxConfigBytes {
			t.Fatalf("%s is %d bytes, over %d", f, len(data), maxConfigBytes)
		}
		ds, err := splitDocs(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, ds...)
	}
	return out
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs parses a multi-document YAML stream into maps, skipping empty documents.
func splitDocs(data []byte) ([]map[string]any, error) {
	var out []map[string]any
	for i, d := range docSeparator.Split(string(data), -1) {
		if len(bytes.TrimSpace(yamlWithoutComments(d))) == 0 {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func yamlWithoutComments(d string) []byte {
	var b bytes.Buffer
	for line := range strings.Lines(d) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// get walks v by map keys (string) and list indexes (int); nil when absent.
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }
func str(v any) string { s, _ := v.(string); return s }

// byKind returns the documents of a kind.
func byKind(ds []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, d := range ds {
		if d["kind"] == kind {
			out = append(out, d)
		}
	}
	return out
}

// reporter is what the wiring checks report to: a *testing.T, or a recorder in the tests that
// prove the checks fail.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// process is one orgauthz binary as a manifest runs it.
type process struct {
	where string
	args  []string
	env   []any             // Kubernetes env entries, or compose environment (list or map)
	files map[string]string // file path in the container → the secret or ConfigMap item behind it
}

// flags parses "--name=value" arguments; anything else is reported.
func (p process) flags(t reporter) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range p.args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "--") {
			t.Errorf("%s: argument %q is not --flag=value", p.where, a)
			continue
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s: %s given twice", p.where, name)
		}
		out[name] = value
	}
	return out
}

// checkFlags asserts p is given exactly the flags in names and returns their values.
func (p process) checkFlags(t reporter, names []string) map[string]string {
	t.Helper()
	f := p.flags(t)
	for name := range f {
		if !slices.Contains(names, name) {
			t.Errorf("%s: unexpected flag %s", p.where, name)
		}
	}
	for _, name := range names {
		if f[name] == "" {
			t.Errorf("%s: flag %s missing or empty", p.where, name)
		}
	}
	return f
}

// checkNoSecretInEnv asserts no secret travels as an environment value or a flag value.
func (p process) checkNoSecretInEnv(t reporter) {
	t.Helper()
	for _, e := range p.env {
		name := str(get(e, "name"))
		if name == "" {
			name = fmt.Sprint(e)
		}
		if secretLike.MatchString(name) {
			t.Errorf("%s: environment variable %s looks like a secret; mount it as a file", p.where, name)
		}
		if get(e, "valueFrom", "secretKeyRef") != nil {
			t.Errorf("%s: environment variable %s comes from a Secret; mount it as a file", p.where, name)
		}
	}
	for _, a := range p.args {
		name, _, _ := strings.Cut(a, "=")
		if secretLike.MatchString(name) && !strings.HasSuffix(name, "-file") && name != "--decision-key" && name != "--decision-public-key" {
			t.Errorf("%s: flag %s carries a secret value", p.where, name)
		}
	}
}

// checkPair asserts the wiring every deployment of sidecar and mgmtproxy needs.
func checkPair(t reporter, sidecar, proxy process) {
	t.Helper()
	sf := sidecar.checkFlags(t, sidecarFlags)
	pf := proxy.checkFlags(t, mgmtproxyFlags)
	sidecar.checkNoSecretInEnv(t)
	proxy.checkNoSecretInEnv(t)

	if got := sf["--grpc-addr"]; got != "127.0.0.1:9191" {
		t.Errorf("%s: --grpc-addr = %q, want 127.0.0.1:9191 (loopback only)", sidecar.where, got)
	}
	if _, port, _ := net.SplitHostPort(sf["--http-addr"]); port != "9192" {
		t.Errorf("%s: --http-addr = %q, want port 9192", sidecar.where, sf["--http-addr"])
	}
	if _, port, _ := net.SplitHostPort(pf["--listen-addr"]); port != "8081" {
		t.Errorf("%s: --listen-addr = %q, want port 8081", proxy.where, pf["--listen-addr"])
	}
	// /metrics on ports of their own, outside the ext_authz-guarded and the denied ports.
	if _, port, _ := net.SplitHostPort(sf["--metrics-addr"]); port != sidecarMetricsPort {
		t.Errorf("%s: --metrics-addr = %q, want port %s", sidecar.where, sf["--metrics-addr"], sidecarMetricsPort)
	}
	if _, port, _ := net.SplitHostPort(pf["--metrics-addr"]); port != proxyMetricsPort {
		t.Errorf("%s: --metrics-addr = %q, want port %s", proxy.where, pf["--metrics-addr"], proxyMetricsPort)
	}
	if !strings.HasPrefix(sf["--policies"], "/policies") {
		t.Errorf("%s: --policies = %q, want /policies", sidecar.where, sf["--policies"])
	}

	privateKey, ok := sidecar.files[sf["--decision-key"]]
	if !ok {
		t.Errorf("%s: --decision-key %q is not a mounted secret file", sidecar.where, sf["--decision-key"])
	}
	for flag, file := range map[string]string{
		"--m2m-app-secret-file": pf["--m2m-app-secret-file"],
		"--decision-public-key": pf["--decision-public-key"],
	} {
		if _, ok := proxy.files[file]; !ok {
			t.Errorf("%s: %s %q is not a mounted secret file", proxy.where, flag, file)
		}
	}
	for file, src := range proxy.files {
		if src == privateKey {
			t.Errorf("%s: the sidecar's private decision key is mounted at %s", proxy.where, file)
		}
	}
}

// k8sProcess reads a container of a pod spec, resolving its secret and ConfigMap mounts to files.
func k8sProcess(t *testing.T, pod any, name string) process {
	t.Helper()
	var c any
	for _, cand := range list(get(pod, "containers")) {
		if get(cand, "name") == name {
			c = cand
		}
	}
	if c == nil {
		t.Fatalf("no container %q", name)
	}
	p := process{where: "container " + name, env: list(get(c, "env")), files: map[string]string{}}
	for _, a := range list(get(c, "args")) {
		p.args = append(p.args, str(a))
	}
	if get(c, "command") != nil || get(c, "envFrom") != nil {
		t.Errorf("container %s: command or envFrom overrides the image's entry point or environment", name)
	}
	volumes := map[string]any{}
	for _, v := range list(get(pod, "volumes")) {
		volumes[str(get(v, "name"))] = v
	}
	for _, m := range list(get(c, "volumeMounts")) {
		v := volumes[str(get(m, "name"))]
		if v == nil {
			t.Errorf("container %s mounts undefined volume %v", name, get(m, "name"))
			continue
		}
		if get(m, "readOnly") != true {
			t.Errorf("container %s: mount %v is not read-only", name, get(m, "name"))
		}
		src := get(v, "secret")
		kind, srcName := "secret", str(get(src, "secretName"))
		if src == nil {
			src = get(v, "configMap")
			kind, srcName = "configmap", str(get(src, "name"))
		}
		items := list(get(src, "items"))
		if kind == "secret" && len(items) == 0 {
			t.Errorf("container %s: secret volume %v mounts every key; list the items it needs", name, get(m, "name"))
		}
		for _, it := range items {
			p.files[path.Join(str(get(m, "mountPath")), str(get(it, "path")))] = kind + "/" + srcName + "/" + str(get(it, "key"))
		}
		if kind == "configmap" {
			p.files[str(get(m, "mountPath"))] = kind + "/" + srcName
		}
	}
	return p
}

func checkProbe(t *testing.T, pod any, container, probe, wantPath string, wantPort float64) {
	t.Helper()
	for _, c := range list(get(pod, "containers")) {
		if get(c, "name") != container {
			continue
		}
		p, port := get(c, probe, "httpGet", "path"), get(c, probe, "httpGet", "port")
		if p != wantPath || port != wantPort {
			t.Errorf("container %s %s = %v port %v, want %s port %v", container, probe, p, port, wantPath, wantPort)
		}
		return
	}
	t.Errorf("no container %s", container)
}

func TestKubernetesManifests(t *testing.T) {
	ds := kustomize(t, baseDir)
	for kind, n := range map[string]int{"Namespace": 1, "Deployment": 1, "Service": 2} {
		if got := len(byKind(ds, kind)); got != n {
			t.Errorf("%d %s documents, want %d", got, kind, n)
		}
	}
	deps := byKind(ds, "Deployment")
	if len(deps) != 1 {
		t.FailNow()
	}
	pod := get(deps[0], "spec", "template", "spec")

	sidecar, proxy := k8sProcess(t, pod, "sidecar"), k8sProcess(t, pod, "mgmtproxy")
	checkPair(t, sidecar, proxy)
	checkProbe(t, pod, "sidecar", "readinessProbe", "/readyz", 9192)
	checkProbe(t, pod, "sidecar", "livenessProbe", "/healthz", 9192)
	checkProbe(t, pod, "mgmtproxy", "readinessProbe", "/readyz", 8081)
	checkProbe(t, pod, "mgmtproxy", "livenessProbe", "/healthz", 8081)

	if got := proxy.files[proxy.flags(t)["--m2m-app-secret-file"]]; got != "secret/orgauthz-m2m/m2m-app-secret" {
		t.Errorf("--m2m-app-secret-file is backed by %q, want secret/orgauthz-m2m/m2m-app-secret", got)
	}
	if got := sidecar.files["/policies/orgauthz"]; got != "configmap/orgauthz-policies" {
		t.Errorf("/policies/orgauthz is backed by %q, want configmap/orgauthz-policies", got)
	}

	labels := mapOf(get(deps[0], "spec", "template", "metadata", "labels"))
	services := map[string]any{}
	for _, svc := range byKind(ds, "Service") {
		services[str(get(svc, "metadata", "name"))] = svc
		for k, v := range mapOf(get(svc, "spec", "selector")) {
			if labels[k] != v {
				t.Errorf("service %v selector %s=%v does not select the pod (labels %v)", get(svc, "metadata", "name"), k, v, labels)
			}
		}
	}
	for _, p := range list(get(services["orgauthz-api"], "spec", "ports")) {
		if get(p, "port") != 8081.0 {
			t.Errorf("service orgauthz-api exposes port %v, want only 8081 (mgmtproxy)", get(p, "port"))
		}
	}
}

// checkHardened: non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault, no
// privilege escalation and resource limits, for every container.
func checkHardened(t reporter, pod any) {
	t.Helper()
	if get(pod, "automountServiceAccountToken") != false {
		t.Errorf("the pod mounts a service account token it does not use")
	}
	for _, c := range list(get(pod, "containers")) {
		name := get(c, "name")
		sc := get(c, "securityContext")
		for _, tc := range []struct {
			what string
			ok   bool
		}{
			{"runAsNonRoot", get(sc, "runAsNonRoot") == true || get(pod, "securityContext", "runAsNonRoot") == true},
			{"readOnlyRootFilesystem", get(sc, "readOnlyRootFilesystem") == true},
			{"allowPrivilegeEscalation false", get(sc, "allowPrivilegeEscalation") == false},
			{"capabilities drop ALL", slices.Equal(list(get(sc, "capabilities", "drop")), []any{"ALL"}) && get(sc, "capabilities", "add") == nil},
			{"seccomp RuntimeDefault", get(sc, "seccompProfile", "type") == "RuntimeDefault"},
			{"no privileged", get(sc, "privileged") != true},
			{"CPU and memory requests", get(c, "resources", "requests", "cpu") != nil && get(c, "resources", "requests", "memory") != nil},
			{"memory limit", get(c, "resources", "limits", "memory") != nil},
		} {
			if !tc.ok {
				t.Errorf("container %v: not %s", name, tc.what)
			}
		}
	}
}

// checkMetricsScrape: both metrics ports are container ports, bypass the Istio proxy, and are the
// ports of an annotated headless Service that selects the pod.
func checkMetricsScrape(t reporter, deployment, svc any) {
	t.Helper()
	pod := get(deployment, "spec", "template", "spec")
	portNames := map[string]string{} // container port name → number
	for _, c := range list(get(pod, "containers")) {
		for _, p := range list(get(c, "ports")) {
			portNames[str(get(p, "name"))] = fmt.Sprint(get(p, "containerPort"))
		}
	}
	excluded := strings.Split(str(get(deployment, "spec", "template", "metadata", "annotations", "traffic.sidecar.istio.io/excludeInboundPorts")), ",")
	if svc == nil {
		t.Errorf("no orgauthz-metrics Service")
		return
	}
	if get(svc, "metadata", "annotations", "prometheus.io/scrape") != "true" || get(svc, "spec", "clusterIP") != "None" {
		t.Errorf("metrics Service is not headless with prometheus.io/scrape: \"true\": %v", svc)
	}
	var scraped []string
	for _, p := range list(get(svc, "spec", "ports")) {
		scraped = append(scraped, portNames[str(get(p, "targetPort"))])
	}
	slices.Sort(scraped)
	if want := []string{sidecarMetricsPort, proxyMetricsPort}; !slices.Equal(scraped, want) {
		t.Errorf("metrics Service targets container ports %v, want %v", scraped, want)
	}
	for _, port := range []string{sidecarMetricsPort, proxyMetricsPort} {
		if !slices.Contains(excluded, port) {
			t.Errorf("metrics port %s is captured by the Istio proxy (excludeInboundPorts %v): a Prometheus outside the mesh cannot scrape it", port, excluded)
		}
	}
}

func TestIstioManifests(t *testing.T) {
	base := kustomize(t, baseDir)
	ds := append(docs(t, "istio/*.yaml"), base...)
	pods := byKind(base, "Deployment")
	podLabels := get(pods[0], "spec", "template", "metadata", "labels").(map[string]any)

	ops := byKind(ds, "IstioOperator")
	if len(ops) != 1 {
		t.Fatalf("%d IstioOperator documents, want 1", len(ops))
	}
	providers := list(get(ops[0], "spec", "meshConfig", "extensionProviders"))
	if len(providers) != 1 {
		t.Fatalf("%d extension providers, want 1", len(providers))
	}
	provider := providers[0]
	g := get(provider, "envoyExtAuthzGrpc")
	for _, tc := range []struct {
		field string
		got   any
		want  any
	}{
		{"failOpen", get(g, "failOpen"), false},
		{"port", get(g, "port"), 9191.0},
		{"statusOnError", get(g, "statusOnError"), "503"},
		{"includeRequestBodyInCheck.maxRequestBytes", get(g, "includeRequestBodyInCheck", "maxRequestBytes"), 16384.0},
		{"includeRequestBodyInCheck.allowPartialMessage", get(g, "includeRequestBodyInCheck", "allowPartialMessage"), false},
		{"pathNormalization", get(ops[0], "spec", "meshConfig", "pathNormalization", "normalization"), "MERGE_SLASHES"},
	} {
		if tc.got != tc.want {
			t.Errorf("provider %s = %v, want %v", tc.field, tc.got, tc.want)
		}
	}
	if str(get(g, "timeout")) == "" {
		t.Error("provider has no explicit timeout")
	}

	var custom []map[string]any
	for _, p := range byKind(ds, "AuthorizationPolicy") {
		for k, v := range get(p, "spec", "selector", "matchLabels").(map[string]any) {
			if podLabels[k] != v {
				t.Errorf("policy %v selects %s=%v, which the pod lacks", get(p, "metadata", "name"), k, v)
			}
		}
		if get(p, "spec", "action") == "CUSTOM" {
			custom = append(custom, p)
		}
		for _, r := range list(get(p, "spec", "rules")) {
			for _, to := range list(get(r, "to")) {
				for _, port := range list(get(to, "operation", "ports")) {
					if port == sidecarMetricsPort || port == proxyMetricsPort {
						t.Errorf("policy %v covers metrics port %v: Prometheus could not scrape it", get(p, "metadata", "name"), port)
					}
				}
			}
		}
	}
	if len(custom) != 1 {
		t.Fatalf("%d CUSTOM AuthorizationPolicies, want 1", len(custom))
	}
	if got := get(custom[0], "spec", "provider", "name"); got != get(provider, "name") {
		t.Errorf("CUSTOM policy uses provider %v, want %v", got, get(provider, "name"))
	}
	rules := list(get(custom[0], "spec", "rules"))
	if len(rules) != 1 || len(list(get(rules[0], "to"))) != 1 {
		t.Fatalf("CUSTOM policy rules = %v, want one rule with one operation", rules)
	}
	op := get(rules[0], "to", 0, "operation").(map[string]any)
	if len(op) != 1 || !slices.Equal(list(op["ports"]), []any{"8081"}) || get(rules[0], "from") != nil || get(rules[0], "when") != nil {
		t.Errorf("CUSTOM policy operation = %v, want exactly ports [8081]: anything narrower leaves requests unchecked", op)
	}

	entries := byKind(ds, "ServiceEntry")
	if len(entries) != 1 {
		t.Fatalf("%d ServiceEntries, want 1", len(entries))
	}
	se := entries[0]
	if !slices.Contains(list(get(se, "spec", "hosts")), get(g, "service")) {
		t.Errorf("ServiceEntry hosts %v lack the provider's service %v", get(se, "spec", "hosts"), get(g, "service"))
	}
	if get(se, "spec", "endpoints", 0, "address") != "127.0.0.1" || get(se, "spec", "ports", 0, "number") != 9191.0 {
		t.Errorf("ServiceEntry = %v, want 127.0.0.1 port 9191", get(se, "spec"))
	}
}

func TestCompose(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "NOT RUN HERE") {
		t.Error("docker-compose.yaml does not say that no engine ran it")
	}
	ds := docs(t, "docker-compose.yaml")
	if len(ds) != 1 {
		t.Fatalf("%d documents, want 1", len(ds))
	}
	c := ds[0]
	for _, name := range []string{"envoy", "sidecar", "mgmtproxy", "fakelogto"} {
		if get(c, "services", name) == nil {
			t.Errorf("service %s missing", name)
		}
	}
	if !slices.Contains(list(get(c, "services", "envoy", "volumes")), "./sidecar.yaml:/etc/envoy/envoy.yaml:ro") {
		t.Error("envoy does not run sidecar.yaml")
	}
	for name, s := range get(c, "services").(map[string]any) {
		for _, p := range list(get(s, "ports")) {
			if !strings.HasPrefix(str(p), "127.0.0.1:") {
				t.Errorf("service %s publishes %v beyond the host's loopback", name, p)
			}
		}
		if name != "envoy" && get(s, "network_mode") != "service:envoy" {
			t.Errorf("service %s network_mode = %v, want service:envoy (shared loopback)", name, get(s, "network_mode"))
		}
		if name != "envoy" && (get(s, "build", "dockerfile") != "Dockerfile" || get(s, "build", "target") != name) {
			t.Errorf("service %s is not built from the repository's Dockerfile, target %s", name, name)
		}
	}

	process := func(name string) process {
		s := get(c, "services", name)
		p := process{where: "service " + name, files: map[string]string{}}
		for _, a := range list(get(s, "command")) {
			p.args = append(p.args, str(a))
		}
		switch env := get(s, "environment").(type) {
		case []any:
			p.env = env
		case map[string]any:
			for k := range env {
				p.env = append(p.env, k)
			}
		}
		for _, sec := range list(get(s, "secrets")) {
			if get(c, "secrets", str(sec), "file") == nil {
				t.Errorf("service %s uses secret %v, which is not a file secret", name, sec)
			}
			p.files["/run/secrets/"+str(sec)] = "secret/" + str(sec)
		}
		return p
	}
	checkPair(t, process("sidecar"), process("mgmtproxy"))
}

// TestManifestCheckerCatches proves the manifest checks fail on the mistakes they exist for.
func TestManifestCheckerCatches(t *testing.T) {
	good := func() (process, process) {
		return process{where: "sidecar", args: []string{"--issuer=i", "--api-resource=a", "--admin-resource=b",
				"--policies=/policies", "--grpc-addr=127.0.0.1:9191", "--http-addr=0.0.0.0:9192", "--decision-key=/k/decision.key",
				"--metrics-addr=0.0.0.0:9090"},
				files: map[string]string{"/k/decision.key": "secret/keys/decision.key"}},
			process{where: "mgmtproxy", args: []string{"--listen-addr=0.0.0.0:8081", "--logto-endpoint=l", "--m2m-app-id=m",
				"--m2m-app-secret-file=/m/s", "--decision-public-key=/p/decision.pub", "--metrics-addr=0.0.0.0:9091"},
				files: map[string]string{"/m/s": "secret/m2m/s", "/p/decision.pub": "secret/keys/decision.pub"}}
	}
	tests := []struct {
		name   string
		mutate func(s, p *process)
	}{
		{"secret as an env literal", func(_, p *process) {
			p.env = []any{map[string]any{"name": "ORGAUTHZ_M2M_APP_SECRET", "value": "hunter2"}}
		}},
		{"secret from secretKeyRef", func(_, p *process) {
			p.env = []any{map[string]any{"name": "APP", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "m2m"}}}}
		}},
		{"secret file not mounted", func(_, p *process) { delete(p.files, "/m/s") }},
		{"private key in mgmtproxy", func(_, p *process) { p.files["/p/decision.key"] = "secret/keys/decision.key" }},
		{"gRPC beyond loopback", func(s, _ *process) { s.args[4] = "--grpc-addr=0.0.0.0:9191" }},
		{"typo'd flag", func(s, _ *process) { s.args[0] = "--isuer=i" }},
		{"missing flag", func(_, p *process) { p.args = p.args[1:] }},
		{"flag without value", func(_, p *process) { p.args[2] = "--m2m-app-id" }},
		{"metrics on the ext_authz-guarded port", func(_, p *process) { p.args[5] = "--metrics-addr=0.0.0.0:8081" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, p := good()
			tc.mutate(&s, &p)
			var rec recorder
			checkPair(&rec, s, p)
			if len(rec.errs) == 0 {
				t.Error("checkPair passed the broken wiring")
			}
			t.Logf("reported: %q", rec.errs)
		})
	}
	t.Run("good wiring passes", func(t *testing.T) {
		s, p := good()
		checkPair(t, s, p)
	})
}

func TestSplitDocsHostileInput(t *testing.T) {
	laughs := "a: &a [x,x,x,x,x,x,x,x,x]\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		laughs += fmt.Sprintf("%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", name, name, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = name
	}
	tests := []struct{ name, yaml string }{
		{"alias bomb", laughs},
		{"deep nesting", strings.Repeat("[", 20000) + strings.Repeat("]", 20000)},
		{"not a mapping", "- a\n- b\n"},
		{"bad indentation", "a:\n  b: 1\n c: 2\n"},
		{"tab indentation", "a:\n\tb: 1\n"},
		{"unknown tag", "a: !!binary not-base64!\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := splitDocs([]byte(tc.yaml))
			t.Logf("error: %.120v", err)
			if err == nil {
				t.Errorf("splitDocs = %d documents, want an error", len(ds))
			}
		})
	}
	t.Run("separators and comments only", func(t *testing.T) {
		ds, err := splitDocs([]byte("# c\n---\n---   \n# only a comment\n---\n"))
		if err != nil || len(ds) != 0 {
			t.Errorf("splitDocs = %v, %v; want no documents and no error", ds, err)
		}
	})
}
