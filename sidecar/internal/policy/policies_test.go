package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/decision"
)

// policiesDir is the default policy shipped in the repository.
const policiesDir = "../../../policies"

func TestCheckDefaultPolicy(t *testing.T) {
	routes, err := Check(t.Context(), policiesDir)
	if err != nil {
		t.Fatalf("Check(%s) = %v", policiesDir, err)
	}
	// make test-rego runs this: the shipped table is mgmtproxy's, or `sidecar --check` warns.
	for _, w := range decision.RouteDrift(routes) {
		t.Error(w)
	}
}

// A few evaluations against the shipped policy and data: the engine and the
// policy agree on the input and decision shapes. policies/*_test.rego covers
// the policy itself.
func TestDefaultPolicy(t *testing.T) {
	e := New(policiesDir, Options{})
	if err := e.Load(t.Context()); err != nil {
		t.Fatalf("Load(%s) = %v", policiesDir, err)
	}
	tests := []struct {
		name  string
		input ast.Value
		want  Decision
	}{
		{
			name:  "no token",
			input: testInput("POST", "/api/organizations/o1/users", nil),
			want:  Decision{Status: 401, Reason: "missing_token"},
		},
		{
			name:  "organization token with the scope",
			input: testInput("POST", "/api/organizations/o1/users", orgToken("o1", "member:add org:read")),
			want:  Decision{Allow: true, Reason: "org_permission", Route: "POST /api/organizations/{orgId}/users"},
		},
		{
			name:  "organization token without the scope",
			input: testInput("POST", "/api/organizations/o1/users", orgToken("o1", "org:read")),
			want:  Decision{Status: 403, Reason: "missing_scope", RequiredScopes: []string{"member:add"}},
		},
		{
			name:  "organization token for another organization",
			input: testInput("POST", "/api/organizations/o2/users", orgToken("o1", "member:add")),
			want:  Decision{Status: 403, Reason: "wrong_organization"},
		},
		{
			name:  "lookalike path",
			input: testInput("GET", "/api/organizations-admin", orgToken("o1", "org:read")),
			want:  Decision{Status: 403, Reason: "no_route"},
		},
		{
			name:  "admin lists organizations",
			input: testInput("GET", "/api/organizations", adminToken("admin:org:read")),
			want:  Decision{Allow: true, Reason: "admin_permission", Route: "GET /api/organizations"},
		},
		{
			name:  "organization token cannot list every organization",
			input: testInput("GET", "/api/organizations", orgToken("o1", "admin:org:read org:read")),
			want:  Decision{Status: 403, Reason: "wrong_token_kind"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.Eval(t.Context(), tc.input)
			if err != nil {
				t.Fatalf("Eval() error = %v", err)
			}
			if got.Allow != tc.want.Allow || got.Status != tc.want.Status || got.Reason != tc.want.Reason ||
				got.Route != tc.want.Route || !slices.Equal(got.RequiredScopes, tc.want.RequiredScopes) {
				t.Errorf("Eval() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// BenchmarkEval measures one decision of the shipped policy for an
// organization token adding a member: the sidecar's per-request cost, with
// the route matched by the Go index or by the Rego, on the shipped table and
// on the 500-row one.
func BenchmarkEval(b *testing.B) {
	for _, bc := range []struct {
		name, data string
		rego       bool
	}{
		{"index", "", false}, {"rego", "", true}, {"index-500", routes500, false}, {"rego-500", routes500, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// A fresh input: Eval adds request.route to it, which the Rego matcher would then use.
			input := testInput("POST", "/api/organizations/o1/users", orgToken("o1", "member:add org:read member:read"))
			e := New(policyWithRoutes(b, bc.data), Options{RegoRoutes: bc.rego})
			if err := e.Load(b.Context()); err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				d, err := e.Eval(ctx, input)
				if err != nil || !d.Allow {
					b.Fatalf("Eval() = %+v, %v", d, err)
				}
			}
		})
	}
}

// testInput builds a policy input the way the sidecar does: directly as an
// OPA value. A nil token means the request carried none.
func testInput(method, path string, token ast.Value) ast.Value {
	var segments []*ast.Term
	for _, s := range strings.Split(path[1:], "/") {
		segments = append(segments, ast.StringTerm(s))
	}
	tokenTerm := ast.NullTerm()
	if token != nil {
		tokenTerm = ast.NewTerm(token)
	}
	return ast.NewObject(
		ast.Item(ast.StringTerm("request"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("method"), ast.StringTerm(method)),
			ast.Item(ast.StringTerm("path"), ast.StringTerm(path)),
			ast.Item(ast.StringTerm("segments"), ast.ArrayTerm(segments...)),
			ast.Item(ast.StringTerm("query"), ast.ObjectTerm()),
			ast.Item(ast.StringTerm("host"), ast.StringTerm("app.example.com")),
			ast.Item(ast.StringTerm("headers"), ast.ObjectTerm(
				ast.Item(ast.StringTerm("content-type"), ast.StringTerm("application/json")),
			)),
			ast.Item(ast.StringTerm("body"), ast.ObjectTerm(
				ast.Item(ast.StringTerm("userIds"), ast.ArrayTerm(ast.StringTerm("u2"))),
			)),
		)),
		ast.Item(ast.StringTerm("token"), tokenTerm),
		ast.Item(ast.StringTerm("source"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("address"), ast.StringTerm("10.0.0.7")),
		)),
		ast.Item(ast.StringTerm("context_extensions"), ast.ObjectTerm()),
	)
}

func orgToken(orgID, scope string) ast.Value {
	return token("organization", "urn:logto:organization:"+orgID, orgID, scope)
}

func adminToken(scope string) ast.Value {
	return token("admin", "https://admin.example.com", "", scope)
}

func token(kind, audience, orgID, scope string) ast.Value {
	var scopes []*ast.Term
	for _, s := range strings.Fields(scope) {
		scopes = append(scopes, ast.StringTerm(s))
	}
	obj := ast.NewObject(
		ast.Item(ast.StringTerm("kind"), ast.StringTerm(kind)),
		ast.Item(ast.StringTerm("subject"), ast.StringTerm("u1")),
		ast.Item(ast.StringTerm("client_id"), ast.StringTerm("app1")),
		ast.Item(ast.StringTerm("is_app"), ast.BooleanTerm(false)),
		ast.Item(ast.StringTerm("audience"), ast.StringTerm(audience)),
		ast.Item(ast.StringTerm("scopes"), ast.ArrayTerm(scopes...)),
		ast.Item(ast.StringTerm("issued_at"), ast.IntNumberTerm(1795505128)),
		ast.Item(ast.StringTerm("expires_at"), ast.IntNumberTerm(1795508728)),
		ast.Item(ast.StringTerm("claims"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("sub"), ast.StringTerm("u1")),
		)),
	)
	if orgID != "" {
		obj.Insert(ast.StringTerm("organization_id"), ast.StringTerm(orgID))
	}
	return obj
}

// BenchmarkEvalMinimal measures the engine's own cost per decision (query,
// input handling, result conversion) with a policy that does almost nothing.
func BenchmarkEvalMinimal(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(`package orgauthz

decision := {"allow": true, "reason": "ok", "route": concat(" ", [input.request.method, input.request.path]), "headers": {}}
`), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "orgauthz"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orgauthz", "data.json"), []byte(routesJSON("/x")), 0o644); err != nil {
		b.Fatal(err)
	}
	e := New(dir, Options{})
	if err := e.Load(b.Context()); err != nil {
		b.Fatal(err)
	}
	input := testInput("POST", "/api/organizations/o1/users", orgToken("o1", "member:add"))
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Eval(ctx, input); err != nil || !d.Allow {
			b.Fatalf("Eval() = %+v, %v", d, err)
		}
	}
}
