package sidecar

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/encoding/protojson"
)

// policyTest runs one request against a one-file policy.
type policyTest struct {
	name       string
	rego       string
	wantStatus int
	wantReason string
	check      func(t *testing.T, a answer)
	wantLog    string // a substring of the log
}

// TestPolicyContract: how the sidecar treats what a policy answers — its headers, odd statuses,
// reasons, undefined results and evaluation errors.
func TestPolicyContract(t *testing.T) {
	tests := []policyTest{
		{
			name: "headers filtered",
			rego: `decision := {"allow": true, "reason": "test", "route": "GET /api/organizations", "headers": {
				"x-tenant": "t1", "X-Upper": "u", "authorization": "Bearer x", "host": "evil", ":path": "/x",
				"x-orgauthz-subject": "admin", "x-envoy-original-path": "/x", "bad name": "v", "x-newline": "a\nb",
				"cookie": "c", "connection": "close"}}`,
			wantStatus: 200,
			check: func(t *testing.T, a answer) {
				for k, want := range map[string]string{"x-tenant": "t1", "x-upper": "u"} {
					if a.headers[k] != want {
						t.Errorf("policy header %s = %q, want %q", k, a.headers[k], want)
					}
				}
				for _, k := range []string{"authorization", "host", ":path", "x-envoy-original-path", "bad name", "x-newline", "cookie", "connection"} {
					if _, ok := a.headers[k]; ok {
						t.Errorf("policy header %q was set", k)
					}
				}
				if a.headers[headerSubject] != "u1" {
					t.Errorf("%s = %q, want u1 (the policy must not override it)", headerSubject, a.headers[headerSubject])
				}
			},
			wantLog: `"policy_headers_dropped":[`,
		},
		{name: "status 500 becomes 403", rego: `decision := {"allow": false, "status": 500, "reason": "odd"}`, wantStatus: 403, wantReason: "odd"},
		{name: "status 302 becomes 403", rego: `decision := {"allow": false, "status": 302, "reason": "odd"}`, wantStatus: 403},
		{name: "status 400 kept", rego: `decision := {"allow": false, "status": 400, "reason": "bad"}`, wantStatus: 400, wantReason: "bad"},
		{name: "reason with markup", rego: `decision := {"allow": false, "status": 403, "reason": "<script>alert(1)</script>"}`, wantStatus: 403, wantReason: "denied"},
		{name: "reason echoing the path", rego: `decision := {"allow": false, "status": 403, "reason": input.request.path}`, wantStatus: 403, wantReason: "denied"},
		{name: "allow without route", rego: `decision := {"allow": true, "reason": "x"}`, wantStatus: 503, wantReason: "policy_error"},
		{name: "undefined", rego: `decision := {"allow": true, "route": "GET /x"} if input.request.method == "PUT"`, wantStatus: 503, wantReason: "policy_error"},
		{name: "not an object", rego: `decision := true`, wantStatus: 503, wantReason: "policy_error"},
		{name: "allow not boolean", rego: `decision := {"allow": "yes", "route": "GET /x"}`, wantStatus: 503, wantReason: "policy_error"},
		{name: "runtime error", rego: `decision := {"allow": true, "route": "GET /x", "n": count(input.request.method) / 0}`, wantStatus: 503, wantReason: "policy_error"},
		{name: "conflict", rego: "decision := {\"allow\": true, \"route\": \"GET /x\"} if true\n\ndecision := {\"allow\": false} if true", wantStatus: 503, wantReason: "policy_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "orgauthz"), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "orgauthz", "decision.rego"), "package orgauthz\n\n"+tc.rego+"\n")
			writeRoutes(t, dir)
			h := newHarness(t, true, func(c *Config) { c.Policies = dir })
			tok := h.mint(*org("o1", "org:read"))
			a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations", map[string]string{"Authorization": "Bearer " + tok}, "")))
			if a.status != tc.wantStatus {
				t.Fatalf("status = %d (%s), want %d", a.status, a.body, tc.wantStatus)
			}
			if a.status != 200 {
				checkDenyShape(t, a, tc.wantStatus, tc.wantReason)
				if strings.Contains(a.body, "script") || strings.Contains(a.body, "/api/") {
					t.Errorf("body %q echoes policy or request text", a.body)
				}
			}
			if tc.check != nil {
				tc.check(t, a)
			}
			if tc.wantLog != "" && !strings.Contains(h.logs.String(), tc.wantLog) {
				t.Errorf("log lacks %s", tc.wantLog)
			}
			if tc.wantStatus == 503 && !strings.Contains(h.logs.String(), `"level":"ERROR"`) {
				t.Errorf("a 503 was not logged as an error")
			}
		})
	}
}

// writeRoutes gives a test policy in dir the one-row route table that loading requires.
func writeRoutes(t *testing.T, dir string) {
	write(t, filepath.Join(dir, "orgauthz", "data.json"), `{"routes": [{"method": "GET", "path": "/x"}]}`)
}

// TestInputToken: input.token holds the verified facts, and input.token.claims every claim of the
// payload exactly, Logto's and any other.
func TestInputToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "orgauthz"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRoutes(t, dir)
	write(t, filepath.Join(dir, "orgauthz", "decision.rego"), `package orgauthz

decision := {"allow": true, "reason": "echo", "route": "GET /x", "headers": {
	"x-claims": json.marshal(input.token.claims),
	"x-token": json.marshal(object.remove(input.token, ["claims"])),
}}
`)
	h := newHarness(t, true, func(c *Config) { c.Policies = dir })
	claims := h.logto.Claims("u1", "app1", apiResource, "b a  c")
	claims["organization_id"] = "o1"
	claims["nbf"] = claims["iat"]
	claims["custom"] = map[string]any{"list": []any{1, 2.5, "x", nil, true}, "big": 12345678901234}
	tok := h.remember(h.logto.MintToken(claims))
	a := readAnswer(h.check(t, envoyRequest("GET", "/x", map[string]string{"Authorization": "Bearer " + tok}, "")))
	if a.status != 200 {
		t.Fatalf("status = %d (%s), want 200", a.status, a.body)
	}
	wantClaims, _ := json.Marshal(claims)
	if !jsonEqual(t, a.headers["x-claims"], string(wantClaims)) {
		t.Errorf("input.token.claims = %s\nwant %s", a.headers["x-claims"], wantClaims)
	}
	wantToken := fmt.Sprintf(`{"kind":"organization_api","subject":"u1","client_id":"app1","is_app":false,
		"organization_id":"o1","audience":%q,"scopes":["b","a","c"],"issued_at":%v,"expires_at":%v}`,
		apiResource, claims["iat"], claims["exp"])
	if !jsonEqual(t, a.headers["x-token"], wantToken) {
		t.Errorf("input.token = %s\nwant %s", a.headers["x-token"], wantToken)
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// TestRealEnvoyCheckRequest reads the CheckRequest a real Envoy sent (shared/envoy) the way the
// sidecar does: its HS256 token is refused without asking the policy.
func TestRealEnvoyCheckRequest(t *testing.T) {
	b, err := os.ReadFile("../../shared/envoy/checkrequest-example.json")
	if err != nil {
		t.Skipf("capture not available: %v", err)
	}
	var in authv3.CheckRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &in); err != nil {
		t.Fatalf("decode capture: %v", err)
	}
	req, rej := parseRequest(fromCheckRequest(&in), 16<<10)
	if rej != nil {
		t.Fatalf("parseRequest(capture) refused: %+v", rej)
	}
	if req.method != "POST" || req.path != "/people" || !slices.Equal(req.segments, []string{"people"}) ||
		!slices.Equal(req.query["lang"], []string{"en"}) || req.host != "192.168.99.206:30164" || req.id != "7bca5c86-bf55-432c-b212-8c0f1dc999ec" {
		t.Errorf("parseRequest(capture) = %s %s %q %v host %s id %s", req.method, req.path, req.segments, req.query, req.host, req.id)
	}
	if want := ast.MustParseTerm(`{"firstname": "Charlie", "lastname": "Opa"}`).Value; req.body == nil || req.body.Compare(want) != 0 {
		t.Errorf("body = %v, want %v", req.body, want)
	}
	if _, ok := req.inputHeaders["authorization"]; ok {
		t.Error("input headers carry authorization")
	}
	h := newHarness(t, true)
	checkDenyShape(t, readAnswer(h.checkRaw(t, &in)), 401, "unsupported_algorithm")
}
