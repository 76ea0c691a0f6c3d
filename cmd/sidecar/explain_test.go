package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orgauthz/orgauthz/internal/confload"
)

const (
	testAPI   = "https://api.example.com"
	testAdmin = "https://admin.example.com"
)

// claimsFile writes the claims of an organization token for o1 with scopes.
func claimsFile(t *testing.T, scopes string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "claims.json")
	c := `{"iss":"http://127.0.0.1:3001/oidc","sub":"u1","client_id":"app1","aud":"urn:logto:organization:o1",` +
		`"scope":"` + scopes + `","iat":1795505128,"exp":1795508728,"jti":"j1"}`
	if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// explainRun runs `sidecar explain args…` offline (no environment) and returns stdout, stderr and
// the exit status.
func explainRun(t *testing.T, getenv func(string) string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"explain"}, args...), getenv, &stdout, &stderr)
	code := confload.Report(err, &stderr)
	return stdout.String(), stderr.String(), code
}

func offline(claims string, rest ...string) []string {
	return append([]string{"--policies", "../../policies", "--api-resource", testAPI, "--admin-resource", testAdmin, "--claims", claims}, rest...)
}

func TestExplainAllowAndDeny(t *testing.T) {
	claims := claimsFile(t, "org:read member:read")
	out, _, code := explainRun(t, noEnv, offline(claims, "--header", "X-Tenant: t1", "GET", "https://app.example.com/api/organizations/o1/users?page=2")...)
	if code != 0 || !strings.Contains(out, "decision: allow 200 org_permission") || !strings.Contains(out, "route: GET /api/organizations/{orgId}/users") ||
		!strings.Contains(out, `"host": "app.example.com"`) || !strings.Contains(out, `"x-tenant": "t1"`) {
		t.Errorf("allow: exit %d, output:\n%s", code, out)
	}

	out, stderr, code := explainRun(t, noEnv, offline(claims, "DELETE", "/api/organizations/o1")...)
	for _, want := range []string{
		"decision: deny 403 missing_scope", "route: DELETE /api/organizations/{orgId}", "required scopes (any one): org:delete",
		"orgauthz/decision.rego:", "data.orgauthz._verdict", "else := _missing_scope if {",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("deny output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 || !strings.Contains(stderr, "missing_scope") {
		t.Errorf("deny: exit %d, stderr %q; want 1 and the reason", code, stderr)
	}

	// The body reaches the policy: PATCH of a field the route's list does not allow.
	body := filepath.Join(t.TempDir(), "body.json")
	os.WriteFile(body, []byte(`{"customData":{"x":1}}`), 0o600)
	out, _, code = explainRun(t, noEnv, offline(claimsFile(t, "org:update"), "--body", body, "PATCH", "/api/organizations/o1")...)
	if code != 1 || !strings.Contains(out, "forbidden_body_field") || !strings.Contains(out, `"customData"`) {
		t.Errorf("PATCH with a forbidden field: exit %d:\n%s", code, out)
	}

	// Refused before the policy: no input, the sidecar's own reason.
	out, _, code = explainRun(t, noEnv, offline(claims, "GET", "/api/organizations/o1/../o2")...)
	if code != 1 || !strings.Contains(out, "decision: deny 400 invalid_path") || strings.Contains(out, "input:") {
		t.Errorf("refused path: exit %d:\n%s", code, out)
	}
}

func TestExplainUsage(t *testing.T) {
	claims := claimsFile(t, "org:read")
	for name, args := range map[string][]string{
		"no URL":            offline(claims, "GET"),
		"three arguments":   offline(claims, "GET", "/a", "/b"),
		"token and claims":  offline(claims, "--token", "a.b.c", "GET", "/api/organizations/o1"),
		"unknown flag":      offline(claims, "--nope", "GET", "/api/organizations/o1"),
		"bad header":        offline(claims, "--header", "no colon", "GET", "/api/organizations/o1"),
		"not a URL":         offline(claims, "GET", "ftp://x/api"),
		"missing claims":    offline("/no/such/claims.json", "GET", "/api/organizations/o1"),
		"no policies":       append(offline(claims, "GET", "/api/organizations/o1"), "--policies", t.TempDir()),
		"claims over bound": offline(writeFile(t, strings.Repeat(" ", maxExplainFile+1)), "GET", "/api/organizations/o1"),
	} {
		if _, _, code := explainRun(t, noEnv, args...); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
	// Claims that fail the server's checks are its 401, a deny.
	out, _, code := explainRun(t, noEnv, offline(writeFile(t, `{"sub":"u1","sub":"u2"}`), "GET", "/api/organizations/o1")...)
	if code != 1 || !strings.Contains(out, "decision: deny 401") {
		t.Errorf("duplicate claim: exit %d:\n%s", code, out)
	}
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExplainInputThroughOPA: --input piped into `go tool opa eval` gives the decision explain gave.
func TestExplainInputThroughOPA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the opa tool")
	}
	claims := claimsFile(t, "org:read")
	for _, tc := range []struct{ method, url, reason string }{
		{"DELETE", "/api/organizations/o1", "missing_scope"},
		{"GET", "/api/organizations/o1", "org_permission"},
	} {
		in, _, _ := explainRun(t, noEnv, offline(claims, "--input", tc.method, tc.url)...)
		cmd := exec.Command("go", "tool", "opa", "eval", "--stdin-input", "-d", "../../policies", "--format", "json", "data.orgauthz.decision")
		cmd.Stdin = strings.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("opa eval: %v", err)
		}
		var res struct {
			Result []struct {
				Expressions []struct {
					Value map[string]any `json:"value"`
				} `json:"expressions"`
			} `json:"result"`
		}
		if err := json.Unmarshal(out, &res); err != nil || len(res.Result) != 1 {
			t.Fatalf("opa eval output %s: %v", out, err)
		}
		if got := res.Result[0].Expressions[0].Value["reason"]; got != tc.reason {
			t.Errorf("%s %s: opa eval says %v, explain %s", tc.method, tc.url, got, tc.reason)
		}
	}
}

// TestExplainToken: --token is verified against --issuer, online, as the server verifies it; the
// other settings come from the server's environment.
func TestExplainToken(t *testing.T) {
	logto := startLogto(t)
	env := map[string]string{"ORGAUTHZ_API_RESOURCE": testAPI, "ORGAUTHZ_ADMIN_RESOURCE": testAdmin, "ORGAUTHZ_POLICIES": "../../policies"}
	getenv := func(k string) string { return env[k] }
	tok := logto.MintToken(logto.Claims("u1", "app1", "urn:logto:organization:o1", "org:read"))
	out, _, code := explainRun(t, getenv, "--token", tok, "--issuer", logto.Issuer(), "GET", "/api/organizations/o1")
	if code != 0 || !strings.Contains(out, "decision: allow 200 org_permission") {
		t.Errorf("token: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, tok) {
		t.Errorf("the token is printed")
	}
	forged := tok[:strings.LastIndexByte(tok, '.')+1] + "AAAA"
	out, _, code = explainRun(t, getenv, "--token", forged, "--issuer", logto.Issuer(), "GET", "/api/organizations/o1")
	if code != 1 || !strings.Contains(out, "decision: deny 401") {
		t.Errorf("forged token: exit %d:\n%s", code, out)
	}
}
