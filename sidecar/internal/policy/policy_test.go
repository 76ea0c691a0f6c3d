package policy

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// writeFiles writes files (slash-separated paths relative to dir) into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// routesJSON is a data.json whose route table has the one row GET path.
func routesJSON(path string) string {
	return `{"routes": [{"method": "GET", "path": "` + path + `"}]}`
}

// withRoutes adds a one-row route table to files that have none: Load
// refuses a policy without routes.
func withRoutes(files map[string]string) map[string]string {
	for name := range files {
		if strings.HasPrefix(name, "orgauthz/data.") {
			return files
		}
	}
	out := map[string]string{"orgauthz/data.json": routesJSON("/api/organizations")}
	maps.Copy(out, files)
	return out
}

// newEngine writes files, with a route table if they have none, into a
// fresh directory and loads them.
func newEngine(t *testing.T, files map[string]string, opts Options) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, withRoutes(files))
	e := New(dir, opts)
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return e, dir
}

// parseInput parses a JSON (or Rego) literal into an input value.
func parseInput(t testing.TB, s string) ast.Value {
	t.Helper()
	if s == "" {
		return nil
	}
	term, err := ast.ParseTerm(s)
	if err != nil {
		t.Fatalf("parse input %s: %v", s, err)
	}
	return term.Value
}

type evalTest struct {
	name    string
	rego    string // module body after "package orgauthz"
	input   string
	want    Decision
	wantErr string // substring of the error; "" means success
}

func (tc evalTest) run(t *testing.T) {
	now := time.Unix(1795505128, 0)
	e, _ := newEngine(t, map[string]string{
		"orgauthz/decision.rego": "package orgauthz\n\n" + tc.rego,
	}, Options{Now: func() time.Time { return now }})

	got, err := e.Eval(t.Context(), parseInput(t, tc.input))
	if tc.wantErr != "" {
		if err == nil {
			t.Fatalf("Eval() = %+v, want error containing %q", got, tc.wantErr)
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Fatalf("Eval() error = %q, want it to contain %q", err, tc.wantErr)
		}
		if !reflect.DeepEqual(got, Decision{}) {
			t.Errorf("Eval() returned %+v with its error, want a zero Decision", got)
		}
		return
	}
	if err != nil {
		t.Fatalf("Eval() error = %v", err)
	}
	if !reflect.DeepEqual(got, tc.want) {
		t.Errorf("Eval() = %+v, want %+v", got, tc.want)
	}
}

func TestEval(t *testing.T) {
	tests := []evalTest{
		{
			name: "allow with headers",
			rego: `decision := {"allow": true, "reason": "org_permission", "route": "POST /api/organizations/{orgId}/users",
	"headers": {"x-tenant": input.token.organization_id}, "extra": 1}`,
			input: `{"token": {"organization_id": "o1"}}`,
			want: Decision{Allow: true, Reason: "org_permission", Route: "POST /api/organizations/{orgId}/users",
				Headers: map[string]string{"x-tenant": "o1"}},
		},
		{
			name: "allow without reason or headers",
			rego: `decision := {"allow": true, "route": "GET /api/organizations"}`,
			want: Decision{Allow: true, Reason: "allowed", Route: "GET /api/organizations"},
		},
		{
			name: "allow ignores status",
			rego: `decision := {"allow": true, "route": "GET /x", "status": 500}`,
			want: Decision{Allow: true, Reason: "allowed", Route: "GET /x"},
		},
		{
			name: "deny with required scopes",
			rego: `decision := {"allow": false, "status": 403, "reason": "missing_scope", "required_scopes": ["member:add", "admin:org:write"]}`,
			want: Decision{Status: 403, Reason: "missing_scope", RequiredScopes: []string{"member:add", "admin:org:write"}},
		},
		{
			name: "deny with a set of required scopes",
			rego: `decision := {"allow": false, "status": 403, "reason": "missing_scope", "required_scopes": {"b", "a"}}`,
			want: Decision{Status: 403, Reason: "missing_scope", RequiredScopes: []string{"a", "b"}},
		},
		{
			name:  "deny 401 from input",
			rego:  "default decision := {\"allow\": false, \"status\": 403}\n\ndecision := {\"allow\": false, \"status\": 401, \"reason\": \"missing_token\"} if input.token == null",
			input: `{"token": null}`,
			want:  Decision{Status: 401, Reason: "missing_token"},
		},
		{
			name: "deny 400",
			rego: `decision := {"allow": false, "status": 400, "reason": "bad_request"}`,
			want: Decision{Status: 400, Reason: "bad_request"},
		},
		{
			name: "deny 500 becomes 403",
			rego: `decision := {"allow": false, "status": 500, "reason": "oops"}`,
			want: Decision{Status: 403, Reason: "oops"},
		},
		{
			name: "deny 200 becomes 403",
			rego: `decision := {"allow": false, "status": 200}`,
			want: Decision{Status: 403, Reason: "denied"},
		},
		{
			name: "deny 401.5 becomes 403",
			rego: `decision := {"allow": false, "status": 401.5}`,
			want: Decision{Status: 403, Reason: "denied"},
		},
		{
			name: "deny without status or reason",
			rego: `decision := {"allow": false}`,
			want: Decision{Status: 403, Reason: "denied"},
		},
		{
			name: "deny ignores headers",
			rego: `decision := {"allow": false, "headers": {"x": 1}}`,
			want: Decision{Status: 403, Reason: "denied"},
		},
		{
			name: "evaluation time comes from Options.Now",
			rego: `decision := {"allow": false, "reason": format_int(time.now_ns() / 1000000000, 10)}`,
			want: Decision{Status: 403, Reason: "1795505128"},
		},
		{
			name:    "undefined",
			rego:    `decision := {"allow": true, "route": "GET /x"} if input.admin`,
			input:   `{}`,
			wantErr: "undefined",
		},
		{
			name:    "undefined without input",
			rego:    `decision := {"allow": true, "route": "GET /x"} if input.admin`,
			wantErr: "undefined",
		},
		{
			name: "two values",
			rego: `decision := {"allow": true, "route": "GET /x"} if input.a

decision := {"allow": false} if input.b`,
			input:   `{"a": true, "b": true}`,
			wantErr: "conflict",
		},
		{
			name: "partial set",
			rego: `decision contains {"allow": true, "route": "GET /x"} if input.a

decision contains {"allow": false} if input.b`,
			input:   `{"a": true, "b": true}`,
			wantErr: "want object",
		},
		{
			name:    "partial set with one member",
			rego:    `decision contains {"allow": true, "route": "GET /x"} if input.a`,
			input:   `{"a": true}`,
			wantErr: "want object",
		},
		{
			name:    "boolean",
			rego:    `decision := true`,
			wantErr: "want object",
		},
		{
			name:    "allow without route",
			rego:    `decision := {"allow": true, "reason": "ok"}`,
			wantErr: "without a route",
		},
		{
			name:    "allow with empty route",
			rego:    `decision := {"allow": true, "route": ""}`,
			wantErr: "without a route",
		},
		{
			name:    "allow as a string",
			rego:    `decision := {"allow": "true", "route": "GET /x"}`,
			wantErr: `"allow": got string`,
		},
		{
			name:    "allow missing",
			rego:    `decision := {"route": "GET /x"}`,
			wantErr: `lacks field "allow"`,
		},
		{
			name:    "route not a string",
			rego:    `decision := {"allow": true, "route": ["GET /x"]}`,
			wantErr: `"route": got array`,
		},
		{
			name:    "reason not a string",
			rego:    `decision := {"allow": false, "reason": 3}`,
			wantErr: `"reason": got number`,
		},
		{
			name:    "status as a string",
			rego:    `decision := {"allow": false, "status": "401"}`,
			wantErr: `"status": got string`,
		},
		{
			name:    "header value not a string",
			rego:    `decision := {"allow": true, "route": "GET /x", "headers": {"x-n": 1}}`,
			wantErr: "headers",
		},
		{
			name:    "headers not an object",
			rego:    `decision := {"allow": true, "route": "GET /x", "headers": ["x"]}`,
			wantErr: "headers",
		},
		{
			name:    "required scopes not strings",
			rego:    `decision := {"allow": false, "required_scopes": ["a", 1]}`,
			wantErr: "required_scopes",
		},
		{
			name:    "required scopes a string",
			rego:    `decision := {"allow": false, "required_scopes": "a"}`,
			wantErr: "required_scopes",
		},
		{
			name:    "builtin error is an error",
			rego:    `decision := {"allow": false, "reason": format_int(to_number(input.n), 10)}`,
			input:   `{"n": "not a number"}`,
			wantErr: "to_number",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestNotReady(t *testing.T) {
	e := New(t.TempDir(), Options{})
	if e.Ready() {
		t.Fatal("Ready() = true before any Load, want false")
	}
	if _, err := e.Eval(t.Context(), nil); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Eval() before Load error = %v, want ErrNotReady", err)
	}
	// An empty directory does not make it ready either.
	if err := e.Load(t.Context()); err == nil {
		t.Fatal("Load(empty dir) = nil, want an error")
	}
	if e.Ready() {
		t.Fatal("Ready() = true after a failed Load, want false")
	}
	if _, err := e.Eval(t.Context(), nil); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Eval() after a failed Load error = %v, want ErrNotReady", err)
	}
	if got := e.Stats().ReloadFailures; got != 1 {
		t.Errorf("Stats().ReloadFailures = %d, want 1", got)
	}
}

func TestLoadMissingDir(t *testing.T) {
	e := New(filepath.Join(t.TempDir(), "missing"), Options{})
	if err := e.Load(t.Context()); err == nil {
		t.Fatal("Load(missing dir) = nil, want an error")
	}
}
