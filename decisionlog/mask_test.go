package decisionlog

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// maskPolicy is an operator's system.log.mask in OPA's documented forms: a bare path erases, an
// object upserts; the rule reads the record as input, so it may depend on the route or the token.
const maskPolicy = `package system.log

mask contains "/input/request/headers/x-user-email"

mask contains "/input/request/query"

mask contains "/input/request/no-such-field"

mask contains {"op": "upsert", "path": "/input/request/body/name", "value": "***"} if {
	input.route == "POST /api/organizations"
}

mask contains {"op": "upsert", "path": "/input/source/address", "value": "0.0.0.0"} if {
	input.token.kind == data.mask_config.anonymise_kind
}

mask contains "/result/required_scopes"
`

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func maskedRecord(t *testing.T, m *Mask, route string) (map[string]any, string) {
	t.Helper()
	r := denyRecord(t)
	r.Route = route
	r.Input = sidecarInput(t, map[string]any{"x-user-email": "alice@example.com", "accept": "*/*"}, map[string]any{"name": "Acme secret project"})
	lines, raw := writeAll(t, Options{Mask: m}, r)
	return lines[0], raw
}

// LoadMask reads a policy directory (tests skipped) and the mask applies as OPA applies it.
func TestLoadMaskApplies(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"system/log/mask.rego":      maskPolicy,
		"system/log/mask_test.rego": "package system.log_test\n\nthis is not rego, and is skipped\n",
		"mask_config/data.json":     `{"anonymise_kind": "organization"}`,
	})
	m, err := LoadMask(context.Background(), dir)
	if err != nil || m == nil {
		t.Fatalf("LoadMask = %v, %v", m, err)
	}
	got, raw := maskedRecord(t, m, "POST /api/organizations")
	if get(got, "input/request/headers/x-user-email") != nil || get(got, "input/request/headers/accept") != "*/*" {
		t.Errorf("headers after mask = %v", get(got, "input/request/headers"))
	}
	if get(got, "input/request/query") != nil || get(got, "result/required_scopes") != nil {
		t.Errorf("query or result.required_scopes not erased: %s", raw)
	}
	if get(got, "input/request/body/name") != "***" || get(got, "input/source/address") != "0.0.0.0" {
		t.Errorf("upserts not applied: body %v, source %v", get(got, "input/request/body"), get(got, "input/source"))
	}
	if strings.Contains(raw, "alice@example.com") || strings.Contains(raw, "Acme secret project") {
		t.Errorf("masked data written: %s", raw)
	}
	// OPA lists erased and upserted paths, skipping those that did not exist.
	erased, masked := toStrings(get(got, "erased")), toStrings(get(got, "masked"))
	for _, p := range []string{"/input/request/headers/x-user-email", "/input/request/query", "/result/required_scopes", "/input/token/claims"} {
		if !contains(erased, p) {
			t.Errorf("erased %v lacks %s", erased, p)
		}
	}
	if contains(erased, "/input/request/no-such-field") {
		t.Errorf("erased lists a path that did not exist: %v", erased)
	}
	for _, p := range []string{"/input/request/body/name", "/input/source/address"} {
		if !contains(masked, p) {
			t.Errorf("masked %v lacks %s", masked, p)
		}
	}
	// The rule sees the record: on another route the conditional upsert does not apply.
	got, _ = maskedRecord(t, m, "DELETE /api/organizations/{orgId}")
	if get(got, "input/request/body/name") != "Acme secret project" {
		t.Errorf("the route-conditional mask applied on another route")
	}
}

func contains(ss []string, s string) bool {
	for _, e := range ss {
		if e == s {
			return true
		}
	}
	return false
}

// NewMask works from a policy set the caller compiled (the sidecar's), and is nil without a mask rule.
func TestNewMaskFromCompiler(t *testing.T) {
	compile := func(modules map[string]string) *ast.Compiler {
		c, err := ast.CompileModulesWithOpt(modules, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	policy := "package orgauthz\n\ndecision := {\"allow\": false}\n"
	m, err := NewMask(context.Background(), compile(map[string]string{"d.rego": policy}), inmem.New())
	if err != nil || m != nil {
		t.Fatalf("NewMask without a mask rule = %v, %v; want nil, nil", m, err)
	}
	c := compile(map[string]string{"d.rego": policy, "m.rego": `package system.log

mask contains "/input/request/headers"
`})
	if m, err = NewMask(context.Background(), c, inmem.New()); err != nil || m == nil {
		t.Fatalf("NewMask = %v, %v", m, err)
	}
	got, _ := maskedRecord(t, m, "")
	if get(got, "input/request/headers") != nil || get(got, "input/request/path") == nil {
		t.Errorf("headers not erased, or more than headers erased: %v", get(got, "input/request"))
	}

	// A policy directory without a mask: nil, no error.
	dir := writeDir(t, map[string]string{"orgauthz/d.rego": policy})
	if m, err := LoadMask(context.Background(), dir); err != nil || m != nil {
		t.Errorf("LoadMask without a mask rule = %v, %v; want nil, nil", m, err)
	}
	// The repository's own policies load (data documents, annotations, tests skipped) and define no mask.
	if m, err := LoadMask(context.Background(), filepath.Join(moduleRoot, "policies")); err != nil || m != nil {
		t.Errorf("LoadMask(policies) = %v, %v; want nil, nil", m, err)
	}
	// One that does not compile is an error.
	dir = writeDir(t, map[string]string{"system/log/mask.rego": "package system.log\n\nmask contains x if {\n"})
	if _, err := LoadMask(context.Background(), dir); err == nil {
		t.Error("LoadMask accepted a policy that does not compile")
	}
}

// A mask that fails (a path OPA does not allow, an evaluation error, a value that is not a set) fails
// closed: input and result go, the audit fields stay.
func TestMaskFailureErasesInput(t *testing.T) {
	for name, rule := range map[string]string{
		"prefix":    `mask contains "/labels/service"`,
		"op":        `mask contains {"op": "replace", "path": "/input/request"}`,
		"relative":  `mask contains "input/request"`,
		"not a set": `mask := "/input/request"`,
		"eval error": `mask contains x if {
	x := sprintf("/input/%s", [to_number("not a number")])
}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"mask.rego": "package system.log\n\n" + rule + "\n"})
			m, err := LoadMask(context.Background(), dir)
			if err != nil {
				t.Fatal(err)
			}
			got, raw := maskedRecord(t, m, "")
			if get(got, "input") != nil || get(got, "result") != nil {
				t.Errorf("input or result written after the mask failed: %s", raw)
			}
			if get(got, "reason") != "missing_scope" || get(got, "token/subject") != "u1" {
				t.Errorf("audit fields lost: %s", raw)
			}
			if e := toStrings(get(got, "erased")); !contains(e, "/input") || !contains(e, "/result") {
				t.Errorf("erased = %v, want /input and /result", e)
			}
		})
	}
}

// Removing array members and upserting through missing objects behave as in OPA.
func TestMaskPaths(t *testing.T) {
	doc := func() any {
		var v any
		json.Unmarshal([]byte(`{"a":{"list":[1,2,3],"k~1":"x"},"b":[{"c":1}]}`), &v)
		return v
	}
	for _, tc := range []struct {
		rule, want string
		applied    bool
	}{
		{`"/input/a/list/1"`, `{"a":{"k~1":"x","list":[1,3]},"b":[{"c":1}]}`, true},
		{`"/input/a/list/9"`, `{"a":{"k~1":"x","list":[1,2,3]},"b":[{"c":1}]}`, false},
		{`"/input/b/0/c"`, `{"a":{"k~1":"x","list":[1,2,3]},"b":[{}]}`, true},
		{`"/input/a/k~1"`, `{"a":{"list":[1,2,3]},"b":[{"c":1}]}`, true},
		{`{"op":"upsert","path":"/input/x/y/z","value":true}`, `{"a":{"k~1":"x","list":[1,2,3]},"b":[{"c":1}],"x":{"y":{"z":true}}}`, true},
		{`{"op":"upsert","path":"/input/a/list/0","value":0}`, `{"a":{"k~1":"x","list":[0,2,3]},"b":[{"c":1}]}`, true},
		{`{"op":"upsert","path":"/input/a/list/x","value":0}`, `{"a":{"k~1":"x","list":[1,2,3]},"b":[{"c":1}]}`, false},
		{`"/input"`, `null`, true},
	} {
		var raw any
		json.Unmarshal([]byte(tc.rule), &raw)
		rule, err := parseMaskRule(raw)
		if err != nil {
			t.Fatalf("parseMaskRule(%s): %v", tc.rule, err)
		}
		r := &Record{Input: doc()}
		rule.apply(r)
		got, _ := json.Marshal(r.Input)
		if string(got) != tc.want {
			t.Errorf("mask %s: input = %s, want %s", tc.rule, got, tc.want)
		}
		if applied := len(r.Erased)+len(r.Masked) == 1; applied != tc.applied {
			t.Errorf("mask %s: listed = %v, want %v", tc.rule, applied, tc.applied)
		}
	}
}

// A record's own Mask (its policy revision's) wins over the Logger's, so a reload swaps both at once.
func TestRecordMaskWins(t *testing.T) {
	loggerMask, err := LoadMask(context.Background(), writeDir(t, map[string]string{
		"m.rego": "package system.log\n\nmask contains \"/input/request/headers/accept\"\n"}))
	if err != nil {
		t.Fatal(err)
	}
	recordMask, err := LoadMask(context.Background(), writeDir(t, map[string]string{
		"m.rego": "package system.log\n\nmask contains \"/input/request/headers/x-user-email\"\n"}))
	if err != nil {
		t.Fatal(err)
	}
	r := denyRecord(t)
	r.Input = sidecarInput(t, map[string]any{"x-user-email": "alice@example.com", "accept": "*/*"}, nil)
	r.Mask = recordMask
	lines, raw := writeAll(t, Options{Mask: loggerMask}, r)
	if get(lines[0], "input/request/headers/x-user-email") != nil || get(lines[0], "input/request/headers/accept") != "*/*" {
		t.Errorf("want the record's mask applied, not the Logger's: %s", raw)
	}
	if strings.Contains(raw, `"Mask"`) {
		t.Errorf("the mask is written: %s", raw)
	}
}
