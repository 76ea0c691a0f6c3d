package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// goodPolicy is a policy split over two modules and a data document, so a
// missing piece shows up as a compile error or a different answer.
var goodPolicy = map[string]string{
	"orgauthz/decision.rego": `package orgauthz

decision := {"allow": true, "reason": "v1", "route": _route} if _route

default decision := {"allow": false, "status": 403, "reason": "no_route"}
`,
	"orgauthz/routes.rego": `package orgauthz

_route := concat(" ", [row.method, row.path]) if {
	some row in data.orgauthz.routes
	row.method == input.method
}
`,
	"orgauthz/data.json": routesJSON("/api/organizations"),
}

const goodInput = `{"method": "GET"}`

var goodDecision = Decision{Allow: true, Reason: "v1", Route: "GET /api/organizations"}

// checkServes fails unless e answers goodInput with want.
func checkServes(t *testing.T, e *Engine, want Decision) {
	t.Helper()
	got, err := e.Eval(t.Context(), parseInput(t, goodInput))
	if err != nil {
		t.Fatalf("Eval() error = %v, want %+v", err, want)
	}
	if got.Allow != want.Allow || got.Reason != want.Reason || got.Route != want.Route || got.Status != want.Status {
		t.Fatalf("Eval() = %+v, want %+v", got, want)
	}
}

type reloadTest struct {
	name    string
	write   map[string]string // files written over goodPolicy
	remove  []string          // files removed from it
	wantErr string
}

func (tc reloadTest) run(t *testing.T) {
	e, dir := newEngine(t, goodPolicy, Options{})
	before := e.Stats()
	writeFiles(t, dir, tc.write)
	for _, name := range tc.remove {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	err := e.Load(t.Context())
	if err == nil {
		t.Fatalf("Load() = nil, want an error containing %q", tc.wantErr)
	}
	if !strings.Contains(err.Error(), tc.wantErr) {
		t.Fatalf("Load() error = %q, want it to contain %q", err, tc.wantErr)
	}
	t.Logf("Load() error: %v", err)
	if !strings.HasPrefix(err.Error(), "policy: ") {
		t.Errorf("Load() error = %q, want the package prefix", err)
	}
	checkServes(t, e, goodDecision)
	after := e.Stats()
	if after.ReloadFailures != before.ReloadFailures+1 {
		t.Errorf("Stats().ReloadFailures = %d, want %d", after.ReloadFailures, before.ReloadFailures+1)
	}
	if after.Revision != before.Revision || after.Reloads != before.Reloads {
		t.Errorf("Stats() = %+v after a rejected load, want revision and reloads of %+v", after, before)
	}
	// Loading the same broken tree again fails the same way.
	if err2 := e.Load(t.Context()); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Load() error = %v, want %v", err2, err)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []reloadTest{
		{name: "syntax error", write: map[string]string{"orgauthz/decision.rego": "package orgauthz\n\ndecision := {"}, wantErr: "rego_parse_error"},
		{name: "empty file", write: map[string]string{"orgauthz/extra.rego": ""}, wantErr: "empty file"},
		{name: "blank file", write: map[string]string{"orgauthz/extra.rego": " \n\t\n"}, wantErr: "empty file"},
		{name: "module without rules", write: map[string]string{"orgauthz/extra.rego": "# only a comment\n"}, wantErr: "extra.rego"},
		{name: "deleted helper", remove: []string{"orgauthz/routes.rego"}, wantErr: "_route"},
		{name: "deleted entry point", remove: []string{"orgauthz/decision.rego"}, wantErr: "no rule defines data.orgauthz.decision"},
		{name: "everything deleted", remove: []string{"orgauthz/decision.rego", "orgauthz/routes.rego", "orgauthz/data.json"}, wantErr: "routes is missing"},
		{name: "routes deleted", remove: []string{"orgauthz/data.json"}, wantErr: "data.orgauthz.routes is missing"},
		{name: "routes empty", write: map[string]string{"orgauthz/data.json": `{"routes": []}`}, wantErr: "routes is empty"},
		{name: "routes an object", write: map[string]string{"orgauthz/data.json": `{"routes": {"GET": "/x"}}`}, wantErr: "not an array"},
		{name: "route row not an object", write: map[string]string{"orgauthz/data.json": `{"routes": ["GET /x"]}`}, wantErr: "routes[0]"},
		{name: "route path not a string", write: map[string]string{"orgauthz/data.json": `{"routes": [{"method": "GET", "path": 1}]}`}, wantErr: "routes[0]"},
		{name: "placeholder twice", write: map[string]string{"orgauthz/data.json": `{"routes": [{"method": "GET", "path": "/a/{id}/{id}"}]}`}, wantErr: "names {id} twice"},
		{name: "other package", write: map[string]string{"orgauthz/decision.rego": "package other\n\ndecision := {\"allow\": false}\n"}, wantErr: "no rule defines"},
		{name: "http.send", write: map[string]string{"orgauthz/extra.rego": `package orgauthz

_leak := http.send({"method": "GET", "url": "http://127.0.0.1:1/"})
`}, wantErr: "http.send is not allowed"},
		{name: "net.lookup_ip_addr", write: map[string]string{"orgauthz/extra.rego": `package orgauthz

_ips := net.lookup_ip_addr("example.com")
`}, wantErr: "net.lookup_ip_addr"},
		{name: "opa.runtime", write: map[string]string{"orgauthz/extra.rego": `package orgauthz

_env := opa.runtime().env
`}, wantErr: "opa.runtime"},
		{name: "strict: unused import", write: map[string]string{"orgauthz/extra.rego": `package orgauthz

import data.other

_x := 1
`}, wantErr: "import data.other unused"},
		{name: "strict: unused argument", write: map[string]string{"orgauthz/extra.rego": `package orgauthz

_f(x) := 1
`}, wantErr: "unused argument x"},
		{name: "data array", write: map[string]string{"orgauthz/data.json": `[{"routes": 1}]`}, wantErr: "not an object"},
		{name: "data string", write: map[string]string{"orgauthz/data.json": `"routes"`}, wantErr: "not an object"},
		{name: "data null", write: map[string]string{"orgauthz/data.json": `null`}, wantErr: "not an object"},
		{name: "yaml data list", write: map[string]string{"orgauthz/sub/data.yaml": "- a\n- b\n"}, wantErr: "not an object"},
		{name: "root data array", write: map[string]string{"data.json": `[]`}, wantErr: "data.json"},
		{name: "data invalid JSON", write: map[string]string{"orgauthz/data.json": `{"routes": {`}, wantErr: "data.json"},
		{name: "data conflict", write: map[string]string{"data.json": `{"orgauthz": {"routes": 1}}`}, wantErr: "routes"},
		{name: "deeply nested data", write: map[string]string{"orgauthz/deep/data.json": `{"a": ` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`}, wantErr: "data.json"},
		{name: "deeply nested rego", write: map[string]string{"orgauthz/deep.rego": "package orgauthz\n\n_deep := " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\n"}, wantErr: "deep.rego"},
		{name: "deeply nested directories", write: map[string]string{strings.Repeat("d/", maxDepth+1) + "x.rego": "package d\n\nx := 1\n"}, wantErr: "nested deeper"},
		{name: "too many files", write: manyFiles(maxFiles), wantErr: "more than 1000 policy files"},
		{name: "too large together", write: map[string]string{
			"a/data.json": `{"x": "` + strings.Repeat("a", maxTotalBytes/3) + `"}`,
			"b/data.json": `{"x": "` + strings.Repeat("a", maxTotalBytes/3) + `"}`,
			"c/data.json": `{"x": "` + strings.Repeat("a", maxTotalBytes/3) + `"}`,
		}, wantErr: "exceed"},
		{name: "too large", write: map[string]string{"orgauthz/big/data.json": `{"x": "` + strings.Repeat("a", maxTotalBytes) + `"}`}, wantErr: "exceed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// manyFiles returns n small modules, which with goodPolicy's three files
// exceed maxFiles when n is maxFiles.
func manyFiles(n int) map[string]string {
	files := make(map[string]string, n)
	for i := range n {
		files[fmt.Sprintf("many/m%d.rego", i)] = fmt.Sprintf("package many.m%d\n\nx := %d\n", i, i)
	}
	return files
}

// TestLoadOneLevelTooDeep: --policies naming the orgauthz/ directory itself
// loads its data as data.routes; the error says to point one level up, and
// the default query, with no rules under data.orgauthz, is never served.
func TestLoadOneLevelTooDeep(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, goodPolicy)
	e := New(filepath.Join(dir, "orgauthz"), Options{})
	err := e.Load(t.Context())
	if err == nil || !strings.Contains(err.Error(), "one level up") {
		t.Fatalf("Load(orgauthz/) = %v, want an error saying to point one level up", err)
	}
	if e.Ready() {
		t.Fatal("Ready() = true after loading a directory one level too deep")
	}
	if _, err := Check(t.Context(), filepath.Join(dir, "orgauthz")); err == nil || !strings.Contains(err.Error(), "one level up") {
		t.Fatalf("Check(orgauthz/) = %v, want the same error", err)
	}
}

func TestLoadIgnores(t *testing.T) {
	files := map[string]string{
		"orgauthz/decision_test.rego": "package orgauthz_test\n\nthis is not rego",
		"orgauthz/.decision.rego.swp": "garbage",
		".git/config.rego":            "garbage",
		"README.md":                   "# policies",
		"orgauthz/other.json":         "not json",
	}
	for name, content := range goodPolicy {
		files[name] = content
	}
	e, _ := newEngine(t, files, Options{})
	checkServes(t, e, goodDecision)
}

func TestLoadYAMLAndSubdirectoryData(t *testing.T) {
	e, _ := newEngine(t, map[string]string{
		"orgauthz/decision.rego": `package orgauthz

decision := {"allow": true, "reason": data.orgauthz.extra.reason, "route": data.orgauthz.route}
`,
		"orgauthz/data.yaml":       "route: GET /api/organizations\nroutes: [{method: GET, path: /x}]\n",
		"orgauthz/extra/data.json": `{"reason": "from_subdir"}`,
	}, Options{})
	checkServes(t, e, Decision{Allow: true, Reason: "from_subdir", Route: "GET /api/organizations"})
}

func TestLoadSymlinkedFiles(t *testing.T) {
	// A Kubernetes ConfigMap volume: files are symlinks through ..data.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"..2026_11_24/decision.rego": "package orgauthz\n\ndecision := {\"allow\": false, \"reason\": \"configmap\"}\n",
		"orgauthz/data.json":         routesJSON("/x"),
	})
	if err := os.Symlink("..2026_11_24", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/decision.rego", filepath.Join(dir, "decision.rego")); err != nil {
		t.Fatal(err)
	}
	// A symlinked directory is not followed: no loops, no duplicates.
	if err := os.Symlink(".", filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	e := New(dir, Options{Query: "data.orgauthz.decision"})
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	checkServes(t, e, Decision{Status: 403, Reason: "configmap"})
}

func TestLoadSymlinkedDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, goodPolicy)
	link := filepath.Join(t.TempDir(), "policies")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	e := New(link, Options{})
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("Load(symlink to a policy dir) = %v", err)
	}
	checkServes(t, e, goodDecision)
}

func TestLoadNotADirectory(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, goodPolicy)
	file := filepath.Join(dir, "orgauthz", "decision.rego")
	e := New(file, Options{})
	if err := e.Load(t.Context()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Load(a file) = %v, want a not-a-directory error", err)
	}
	if err := e.Watch(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Watch(a file) = %v, want a not-a-directory error", err)
	}
}

func TestLoadQueryOption(t *testing.T) {
	e, _ := newEngine(t, map[string]string{
		"authz.rego": "package authz\n\nverdict := {\"allow\": false, \"status\": 401}\n",
	}, Options{Query: "data.authz.verdict"})
	checkServes(t, e, Decision{Status: 401, Reason: "denied"})

	for _, query := range []string{"input.x", "1 + 1", "data.authz.verdict; true", "data"} {
		e := New(t.TempDir(), Options{Query: query})
		writeFiles(t, e.dir, withRoutes(map[string]string{"authz.rego": "package authz\n\nverdict := 1\n"}))
		if err := e.Load(t.Context()); err == nil {
			t.Errorf("Load() with Query %q = nil, want an error", query)
		}
	}
}

func TestReloadReplaces(t *testing.T) {
	e, dir := newEngine(t, goodPolicy, Options{})
	first := e.Stats()
	if first.Reloads != 1 || first.Revision == "" || first.LastReload.IsZero() {
		t.Fatalf("Stats() after the first Load = %+v, want one reload with a revision and a time", first)
	}
	// Unchanged files: nothing to do.
	if err := e.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.Stats(); got != first {
		t.Errorf("Stats() after an unchanged Load = %+v, want %+v", got, first)
	}

	writeFiles(t, dir, map[string]string{"orgauthz/data.json": routesJSON("/api/users")})
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	checkServes(t, e, Decision{Allow: true, Reason: "v1", Route: "GET /api/users"})
	second := e.Stats()
	if second.Reloads != 2 || second.Revision == first.Revision {
		t.Errorf("Stats() after a change = %+v, want 2 reloads and a new revision (was %s)", second, first.Revision)
	}

	// Back to the first content: its revision again.
	writeFiles(t, dir, goodPolicy)
	if err := e.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.Stats().Revision; got != first.Revision {
		t.Errorf("Stats().Revision = %s, want %s for the same files", got, first.Revision)
	}
	// A rejected change followed by a fix: the fix loads.
	writeFiles(t, dir, map[string]string{"orgauthz/decision.rego": "package orgauthz\n\ndecision :="})
	if err := e.Load(t.Context()); err == nil {
		t.Fatal("Load(syntax error) = nil, want an error")
	}
	writeFiles(t, dir, goodPolicy)
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("Load() after fixing = %v", err)
	}
	checkServes(t, e, goodDecision)
}

// TestReloadConcurrent swaps between two versions of a policy whose rules
// and data must agree while evaluations run: an evaluation that sees an
// error, or rules of one version with data of the other, fails the test.
// Run it with -race.
func TestReloadConcurrent(t *testing.T) {
	version := func(v string) map[string]string {
		return map[string]string{
			"orgauthz/decision.rego": `package orgauthz

decision := {"allow": true, "reason": "` + v + `", "route": data.orgauthz.version}
`,
			"orgauthz/data.json": `{"version": "` + v + `", "routes": [{"method": "GET", "path": "/x"}]}`,
		}
	}
	e, dir := newEngine(t, version("v0"), Options{})

	stop := make(chan struct{})
	errs := make(chan string, 8)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			input := parseInput(t, `{}`)
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.Eval(t.Context(), input)
				switch {
				case err != nil:
					errs <- err.Error()
					return
				case d.Reason != d.Route:
					errs <- "mixed versions: " + d.Reason + " rules with " + d.Route + " data"
					return
				}
			}
		})
	}
	for i := 1; i <= 20; i++ {
		v := "v" + string(rune('0'+i%10))
		writeFiles(t, dir, version(v))
		if err := e.Load(t.Context()); err != nil {
			t.Fatalf("Load(%s) error = %v", v, err)
		}
		// The new version answers as soon as Load returns.
		d, err := e.Eval(t.Context(), parseInput(t, `{}`))
		if err != nil || d.Reason != v || d.Route != v {
			t.Fatalf("Eval() after loading %s = %+v, %v", v, d, err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, goodPolicy)
	if _, err := Check(t.Context(), dir); err != nil {
		t.Fatalf("Check(good policy) = %v", err)
	}
	writeFiles(t, dir, map[string]string{"orgauthz/extra.rego": "package orgauthz\n\n_x := http.send({})\n"})
	if _, err := Check(t.Context(), dir); err == nil || !strings.Contains(err.Error(), "http.send") {
		t.Fatalf("Check(policy using http.send) = %v, want an error naming http.send", err)
	}
	if _, err := Check(t.Context(), t.TempDir()); err == nil {
		t.Fatal("Check(empty dir) = nil, want an error")
	}
}
