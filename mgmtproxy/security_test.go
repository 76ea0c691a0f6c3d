package mgmtproxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// bindingTest is a request whose decision does not fit it: mgmtproxy must answer 403 and call nothing.
type bindingTest struct {
	name     string
	method   string
	target   string
	decision func(t *testing.T, e *env) string
	want     int
	code     string
}

func (tc bindingTest) run(t *testing.T, e *env) {
	t.Helper()
	resp := e.do(t, tc.method, tc.target, "", tc.decision(t, e))
	if resp.status != tc.want {
		t.Errorf("%s: %s %s status = %d (%s), want %d", tc.name, tc.method, tc.target, resp.status, resp.body, tc.want)
	}
	var body apiError
	resp.json(t, &body)
	if body.Code != tc.code {
		t.Errorf("%s: code = %q, want %q", tc.name, body.Code, tc.code)
	}
}

func TestDecisionBinding(t *testing.T) {
	e := newEnv(t)
	orgPath := "/api/organizations/" + e.org
	usersPath := orgPath + "/users"
	const getOrg = "GET /api/organizations/{orgId}"
	signed := func(c decision.Claims) func(*testing.T, *env) string {
		return func(t *testing.T, e *env) string { return e.sign(t, c) }
	}
	orgClaims := func(org string) decision.Claims {
		return decision.Claims{Method: "GET", Path: orgPath, Route: getOrg, Kind: "organization", Org: org, Subject: e.user}
	}
	otherKey := func(t *testing.T, e *env) string {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		tok, err := decision.NewSigner(priv, 10*time.Second).Sign(adminClaims("GET", orgPath, getOrg))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expired := func(t *testing.T, e *env) string {
		s := *e.signer
		s.Now = func() time.Time { return time.Now().Add(-time.Minute) }
		tok, err := s.Sign(adminClaims("GET", orgPath, getOrg))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	algNone := func(t *testing.T, e *env) string {
		tok := e.sign(t, adminClaims("GET", orgPath, getOrg))
		parts := strings.Split(tok, ".")
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"orgauthz-decision+jwt","kid":"` + e.signer.KeyID() + `"}`))
		return h + "." + parts[1] + "."
	}
	replayed := func(t *testing.T, e *env) string {
		tok := e.sign(t, adminClaims("GET", orgPath+"x", getOrg))
		// Spend it on its own path first (an unknown organization: Logto answers 404).
		if resp := e.do(t, "GET", orgPath+"x", "", tok); resp.status != http.StatusNotFound {
			t.Fatalf("first use status = %d (%s), want Logto's 404", resp.status, resp.body)
		}
		return tok
	}

	tests := []bindingTest{
		{"missing", "GET", orgPath, func(*testing.T, *env) string { return "" }, 403, "decision_missing"},
		{"garbage", "GET", orgPath, func(*testing.T, *env) string { return "not.a.decision" }, 403, "decision_malformed"},
		{"expired", "GET", orgPath, expired, 403, "decision_expired"},
		{"other path", "GET", orgPath, signed(adminClaims("GET", usersPath, "GET /api/organizations/{orgId}/users")), 403, "decision_path_mismatch"},
		{"other method", "DELETE", orgPath, signed(adminClaims("GET", orgPath, getOrg)), 403, "decision_method_mismatch"},
		{"other org", "GET", orgPath, signed(orgClaims("zzzzzzzzzzzz")), 403, "decision_org_mismatch"},
		{"org token without org", "GET", orgPath, signed(orgClaims("")), 403, "decision_org_mismatch"},
		{"wrong key", "GET", orgPath, otherKey, 403, "decision_unknown_key"},
		{"alg none", "GET", orgPath, algNone, 403, "decision_alg"},
		{"route of another operation", "GET", orgPath, signed(adminClaims("GET", orgPath, "DELETE /api/organizations/{orgId}")), 403, "decision_route_mismatch"},
		{"route not an operation", "GET", orgPath, signed(adminClaims("GET", orgPath, "GET /api/organizations/{id}")), 403, "decision_route_mismatch"},
		{"path outside the operations", "GET", "/api/users", signed(adminClaims("GET", "/api/users", "GET /api/users")), 403, "operation_not_allowed"},
		{"unknown kind", "GET", orgPath, signed(decision.Claims{Method: "GET", Path: orgPath, Route: getOrg, Kind: "superuser", Subject: "u1"}), 403, "decision_kind_unknown"},
		{"HEAD", "HEAD", orgPath, signed(adminClaims("HEAD", orgPath, getOrg)), 403, ""},
		{"bulk by an org token", "POST", "/bulk/organizations/delete", signed(decision.Claims{Method: "POST", Path: "/bulk/organizations/delete", Route: "POST /bulk/organizations/delete", Kind: "organization", Org: e.org, Subject: e.user}), 403, "admin_only"},
		{"bulk by a global API token", "POST", "/bulk/organizations", signed(decision.Claims{Method: "POST", Path: "/bulk/organizations", Route: "POST /bulk/organizations", Kind: "global_api", Subject: e.user}), 403, "admin_only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.method == "HEAD" { // a HEAD answer has no body to decode
				if resp := e.do(t, tc.method, tc.target, "", tc.decision(t, e)); resp.status != tc.want {
					t.Errorf("HEAD status = %d, want %d", resp.status, tc.want)
				}
				return
			}
			tc.run(t, e)
		})
	}
	if m, tk := e.logto.Calls(fakelogto.TargetManagement), e.logto.Calls(fakelogto.TargetToken); m != 0 || tk != 0 {
		t.Errorf("after refused requests: %d Management API and %d token calls, want 0 and 0", m, tk)
	}
	t.Run("replayed", func(t *testing.T) {
		tok := replayed(t, e)
		e.logto.ResetCalls()
		before := len(e.management())
		bindingTest{"replayed", "GET", orgPath + "x", func(*testing.T, *env) string { return tok }, 403, "decision_replayed"}.run(t, e)
		if got := len(e.management()) - before; got != 0 {
			t.Errorf("replayed decision: %d Management API calls, want 0", got)
		}
	})
	if got := e.logto.Calls(fakelogto.TargetManagement); got != 0 {
		t.Errorf("Management API calls after refused requests = %d, want 0", got)
	}
	if got := e.logto.Calls(fakelogto.TargetToken); got != 0 { // the replay case's first use fetched it before ResetCalls
		t.Errorf("token endpoint calls = %d, want 0", got)
	}
}

func TestRefusedBeforeLogto(t *testing.T) {
	e := newEnv(t)
	getOrgs := func(path string) string { return e.sign(t, adminClaims("GET", path, "GET /api/organizations")) }
	orgPath := "/api/organizations/" + e.org
	for _, tc := range []struct {
		name, method, target, decisionPath string
		want                               int
	}{
		{"encoded slash", "GET", "/api/organizations/o1%2F..%2Fo2/users", "/api/organizations/o1%2F..%2Fo2/users", 403},
		{"dot dot", "GET", "/api/organizations/o1/../" + e.org, "/api/organizations/o1/../" + e.org, 403},
		{"dot", "GET", "/api/./organizations", "/api/./organizations", 403},
		{"double slash", "GET", "//api/organizations", "//api/organizations", 403},
		{"trailing slash", "GET", "/api/organizations/", "/api/organizations/", 403},
		{"semicolon", "GET", "/api/organizations;jsessionid=1", "/api/organizations;jsessionid=1", 403},
		{"encoded dot", "GET", "/api/organizations/%2e%2e", "/api/organizations/%2e%2e", 403},
		{"double encoded", "GET", "/api/organizations/%252e", "/api/organizations/%252e", 403},
		{"backslash", "GET", `/api/organizations\` + e.org, `/api/organizations\` + e.org, 403},
		{"upper case", "GET", "/API/organizations", "/API/organizations", 403},
		{"absolute form", "GET", "http://evil.example/api/organizations", "/api/organizations", 403},
		{"long path", "GET", "/api/organizations/" + strings.Repeat("a", 4096), "/api/organizations", 403},
		{"upper-case ID", "GET", "/api/organizations/ABC", "/api/organizations/ABC", 403},
		{"ID too long", "GET", "/api/organizations/" + strings.Repeat("a", 33), "/api/organizations/" + strings.Repeat("a", 33), 403},
		{"lower-case method", "get", orgPath, orgPath, 403},
		{"query that looks like a path", "GET", "/x?y=/api/organizations", "/api/organizations", 403},
	} {
		if got := e.raw(t, tc.method, tc.target, getOrgs(tc.decisionPath)); got != tc.want {
			t.Errorf("%s: %s %q status = %d, want %d", tc.name, tc.method, tc.target, got, tc.want)
		}
	}
	if n := len(e.seen); n != 0 {
		t.Errorf("requests reaching Logto = %d, want 0: %+v", n, e.seen)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	path := "/api/organizations/" + e.org
	route := "PATCH /api/organizations/{orgId}"
	big := `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	if resp := e.do(t, "PATCH", path, big, e.sign(t, adminClaims("PATCH", path, route))); resp.status != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH with a %d-byte body status = %d, want 413", len(big), resp.status)
	}
	// Chunked, so no Content-Length announces it.
	req, _ := http.NewRequestWithContext(t.Context(), "PATCH", e.url+path, strings.NewReader(big))
	req.ContentLength = -1
	req.Header.Set(decision.Header, e.sign(t, adminClaims("PATCH", path, route)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked PATCH over the limit status = %d, want 413", resp.StatusCode)
	}
	if n := len(e.seen); n != 0 {
		t.Errorf("requests reaching Logto = %d, want 0", n)
	}
	// Just under the limit goes through (Logto answers; it caps name at 128 characters, so the bulk
	// is customData).
	ok := `{"customData":{"p":"` + strings.Repeat("y", maxBodyBytes-30) + `"}}`
	c := adminClaims("PATCH", path, route)
	c.Body = decision.BodyHash([]byte(ok))
	if resp := e.do(t, "PATCH", path, ok, e.sign(t, c)); resp.status != http.StatusOK {
		t.Errorf("PATCH with a %d-byte body status = %d (%s), want 200", len(ok), resp.status, resp.body)
	}
}

func TestTwoDecisionHeaders(t *testing.T) {
	e := newEnv(t)
	path := "/api/organizations/" + e.org
	route := "GET /api/organizations/{orgId}"
	resp := e.do(t, "GET", path, "", e.sign(t, adminClaims("GET", path, route)), decision.Header, e.sign(t, adminClaims("GET", path, route)))
	if resp.status != http.StatusForbidden {
		t.Errorf("two decision headers status = %d, want 403", resp.status)
	}
}

// TestDecisionBindsBody: a decision whose "b" names another body, or a decision without "b" on a route
// whose policy reads the body, is refused before anything reaches Logto, however the caller got it.
func TestDecisionBindsBody(t *testing.T) {
	e := newEnv(t)
	bob := e.logto.AddUser("", "bob")
	e.logto.AddMember(e.org, bob, "member")
	orgPath := "/api/organizations/" + e.org
	rolesPath := orgPath + "/users/" + bob + "/roles"
	const (
		patchOrg    = "PATCH /api/organizations/{orgId}"
		assignRoles = "POST /api/organizations/{orgId}/users/{userId}/roles"
		addMember   = "POST /api/organizations/{orgId}/users"
		getOrg      = "GET /api/organizations/{orgId}"
		member      = `{"organizationRoleNames":["member"]}`
	)
	// An organization-token decision, as the sidecar signs it for a member:role holder.
	claims := func(method, path, route, signedBody string, bind bool) decision.Claims {
		c := decision.Claims{Method: method, Path: path, Route: route, Kind: "organization", Org: e.org, Subject: e.user}
		if bind {
			c.Body = decision.BodyHash([]byte(signedBody))
		}
		return c
	}
	tests := []struct {
		name, method, path, route string
		signedBody                string // the body the decision was signed for
		bind                      bool   // the decision carries b
		sentBody                  string
		code                      string
	}{
		{"roles: member signed, admin sent", "POST", rolesPath, assignRoles, member, true, `{"organizationRoleNames":["admin"]}`, "decision_body_mismatch"},
		{"roles: same JSON, other bytes", "POST", rolesPath, assignRoles, member, true, member + " ", "decision_body_mismatch"},
		{"roles: body dropped", "POST", rolesPath, assignRoles, member, true, "", "decision_body_mismatch"},
		{"roles: no b", "POST", rolesPath, assignRoles, "", false, `{"organizationRoleNames":["admin"]}`, "decision_body_missing"},
		{"roles: no b, no body", "POST", rolesPath, assignRoles, "", false, "", "decision_body_missing"},
		{"patch: name signed, customData sent", "PATCH", orgPath, patchOrg, `{"name":"x"}`, true, `{"name":"x","customData":{"plan":"enterprise"}}`, "decision_body_mismatch"},
		{"patch: no b", "PATCH", orgPath, patchOrg, "", false, `{"isMfaRequired":false}`, "decision_body_missing"},
		{"add member: other body", "POST", orgPath + "/users", addMember, `{"userIds":["` + bob + `"]}`, true, `{"userIds":["` + e.user + `"]}`, "decision_body_mismatch"},
		{"GET with b, body missing", "GET", orgPath, getOrg, `{}`, true, "", "decision_body_mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec := e.sign(t, claims(tc.method, tc.path, tc.route, tc.signedBody, tc.bind))
			resp := e.do(t, tc.method, tc.path, tc.sentBody, dec)
			if resp.status != http.StatusForbidden {
				t.Fatalf("status = %d (%s), want 403", resp.status, resp.body)
			}
			var body apiError
			resp.json(t, &body)
			if body.Code != tc.code {
				t.Errorf("code = %q, want %q", body.Code, tc.code)
			}
		})
	}
	if m, tk := e.logto.Calls(fakelogto.TargetManagement), e.logto.Calls(fakelogto.TargetToken); m != 0 || tk != 0 || len(e.seen) != 0 {
		t.Errorf("after refused requests: %d Management API and %d token calls, %d requests at the spy; want none", m, tk, len(e.seen))
	}
}

// TestVerifiedBodyForwarded: the bytes whose hash the decision binds are what Logto receives, byte for
// byte; a decision without b on a route whose policy does not read the body (what forward-auth proxies
// produce) still passes its body.
func TestVerifiedBodyForwarded(t *testing.T) {
	e := newEnv(t)
	bob := e.logto.AddUser("", "bob")
	e.logto.AddMember(e.org, bob, "member")
	carol := e.logto.AddUser("", "carol")
	orgPath := "/api/organizations/" + e.org
	tests := []struct {
		name, method, path, route, body string
		bind                            bool
	}{
		{"assign roles, odd spacing", "POST", orgPath + "/users/" + bob + "/roles", "POST /api/organizations/{orgId}/users/{userId}/roles", "{ \"organizationRoleNames\" :\t[\"member\"] }\n", true},
		{"patch, unicode", "PATCH", orgPath, "PATCH /api/organizations/{orgId}", `{"name":"Acme \u00e9\u00e8 ✓","description":"d"}`, true},
		{"add member, no b", "POST", orgPath + "/users", "POST /api/organizations/{orgId}/users", `{"userIds":["` + carol + `"]}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := adminClaims(tc.method, tc.path, tc.route)
			if tc.bind {
				c.Body = decision.BodyHash([]byte(tc.body))
			}
			before := len(e.management())
			resp := e.do(t, tc.method, tc.path, tc.body, e.sign(t, c))
			if resp.status >= 300 {
				t.Fatalf("status = %d (%s), want Logto's 2xx", resp.status, resp.body)
			}
			mgmt := e.management()
			if len(mgmt) != before+1 {
				t.Fatalf("%d Management API calls, want 1", len(mgmt)-before)
			}
			if got := mgmt[len(mgmt)-1].body; got != tc.body {
				t.Errorf("Logto got body %q, want %q byte for byte", got, tc.body)
			}
		})
	}
}

// TestRefusalsNameTheKid: a refused decision's log line names the kid it carried (and the reason), so
// an operator can tell a stale key from an attack; the response does not.
func TestRefusalsNameTheKid(t *testing.T) {
	e := newEnv(t)
	path, route := "/api/organizations/"+e.org, "GET /api/organizations/{orgId}"
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other := decision.NewSigner(otherKey, 10*time.Second)
	good := e.sign(t, adminClaims("GET", path, route))
	flipped := good[:len(good)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(good, "AA")]
	for _, tc := range []struct {
		name, dec, reason, kid string
	}{
		{"unknown key", mustSign(t, other, adminClaims("GET", path, route)), "decision_unknown_key", other.KeyID()},
		{"bad signature", flipped, "decision_bad_signature", e.signer.KeyID()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, "GET", path, "", tc.dec)
			wantStatus(t, tc.name, resp, http.StatusForbidden, tc.reason)
			if strings.Contains(string(resp.body), tc.kid) {
				t.Errorf("response %s names the kid", resp.body)
			}
			found := false
			for line := range strings.SplitSeq(e.logs.String(), "\n") {
				if strings.Contains(line, `"reason":"`+tc.reason+`"`) && strings.Contains(line, `"kid":"`+tc.kid+`"`) {
					found = true
				}
			}
			if !found {
				t.Errorf("no log line with reason %s and kid %s:\n%s", tc.reason, tc.kid, e.logs.String())
			}
		})
	}
}

// TestDecisionFromBeforeStartRefused: mgmtproxy's replay cache starts empty, so a decision issued before
// the process started (a captured one, replayed after a restart) is refused, used before or not.
func TestDecisionFromBeforeStartRefused(t *testing.T) {
	e := newEnv(t)
	path, route := "/api/organizations/"+e.org, "GET /api/organizations/{orgId}"
	issued := time.Now().Add(-decision.Skew - 2*time.Second) // still unexpired: the signer's TTL is 10 s
	e.signer.Now = func() time.Time { return issued }
	resp := e.do(t, "GET", path, "", e.sign(t, adminClaims("GET", path, route)))
	wantStatus(t, "decision from before the start", resp, http.StatusForbidden, "decision_stale")
	e.signer.Now = nil
	wantStatus(t, "fresh decision", e.allowed(t, "GET", path, route, ""), http.StatusOK, "")
	if n := len(e.management()); n != 1 {
		t.Errorf("Management API calls = %d, want 1 (the fresh decision's)", n)
	}
}

func mustSign(t *testing.T, s *decision.Signer, c decision.Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
