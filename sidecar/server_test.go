package sidecar

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
)

// checkTest is one request through the gRPC Check with a token made from spec.
type checkTest struct {
	name    string
	method  string
	target  string
	token   *tokenSpec // nil: no Authorization header
	auth    string     // a literal Authorization value instead of token; "Bearer TOKEN" substitutes it
	headers map[string]string
	body    string

	wantStatus int
	wantReason string // deny: the body's code
	wantRoute  string // allow: the signed decision's route
}

func (tc checkTest) run(t *testing.T, h *harness) {
	t.Helper()
	headers := map[string]string{}
	for k, v := range tc.headers {
		headers[k] = v
	}
	var tok string
	if tc.token != nil {
		tok = h.mint(*tc.token)
		headers["Authorization"] = "Bearer " + tok
	}
	if tc.auth != "" {
		headers["Authorization"] = strings.ReplaceAll(tc.auth, "TOKEN", tok)
	}
	resp := h.check(t, envoyRequest(tc.method, tc.target, headers, tc.body))
	a := readAnswer(resp)
	if a.status != tc.wantStatus {
		t.Fatalf("Check(%s %.80s) status = %d (body %s), want %d", tc.method, tc.target, a.status, a.body, tc.wantStatus)
	}
	if tok != "" && (strings.Contains(a.body, tok) || strings.Contains(strings.Join(mapValues(a.headers), " "), tok)) {
		t.Errorf("Check(%s %s) echoed the token", tc.method, tc.target)
	}
	if a.status != http.StatusOK {
		checkDenyShape(t, a, tc.wantStatus, tc.wantReason)
		return
	}
	path, _, _ := strings.Cut(tc.target, "?")
	c, err := h.verifier.Verify(a.headers[decision.Header], tc.method, path)
	if err != nil {
		t.Fatalf("Check(%s %s) decision does not verify: %v", tc.method, tc.target, err)
	}
	if got, want := c.ExpiresAt-c.IssuedAt, int64(h.cfg.DecisionTTL/time.Second); got != want {
		t.Errorf("Check(%s %s) decision lifetime = %ds, want %ds", tc.method, tc.target, got, want)
	}
	if c.Route != tc.wantRoute {
		t.Errorf("Check(%s %s) route = %q, want %q", tc.method, tc.target, c.Route, tc.wantRoute)
	}
	if want := bodyClaim(tc.body); c.Body != want {
		t.Errorf("Check(%s %s) decision b = %q, want %q (the hash of the body sent)", tc.method, tc.target, c.Body, want)
	}
	if tc.token != nil {
		if got := a.headers[headerTokenKind]; got != tc.token.kind || c.Kind != tc.token.kind {
			t.Errorf("Check(%s %s) token kind header %q, decision %q, want %q", tc.method, tc.target, got, c.Kind, tc.token.kind)
		}
		if got, want := a.headers[headerOrganizationID], tc.token.org; got != want || c.Org != want {
			t.Errorf("Check(%s %s) org header %q, decision %q, want %q", tc.method, tc.target, got, c.Org, want)
		}
		if c.App != tc.token.app {
			t.Errorf("Check(%s %s) decision app = %v, want %v", tc.method, tc.target, c.App, tc.token.app)
		}
		if a.headers[headerSubject] == "" || a.headers[headerSubject] != c.Subject {
			t.Errorf("Check(%s %s) subject header %q, decision %q", tc.method, tc.target, a.headers[headerSubject], c.Subject)
		}
	}
	if a.headers[headerDecisionID] == "" {
		t.Errorf("Check(%s %s) has no %s", tc.method, tc.target, headerDecisionID)
	}
	for _, want := range []string{"authorization", "cookie"} {
		if !slices.Contains(a.remove, want) {
			t.Errorf("Check(%s %s) headers_to_remove = %q, want it to hold %q", tc.method, tc.target, a.remove, want)
		}
	}
}

// bodyClaim is the "b" a decision must carry for a request body: none without one.
func bodyClaim(body string) string {
	if body == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(body))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// checkDenyShape checks a denied answer: JSON body with the code, WWW-Authenticate on 401/403.
func checkDenyShape(t *testing.T, a answer, wantStatus int, wantReason string) {
	t.Helper()
	var body struct{ Code, Message string }
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || body.Message == "" {
		t.Fatalf("deny body %q is not {code, message}: %v", a.body, err)
	}
	if wantReason != "" && body.Code != wantReason {
		t.Errorf("deny code = %q, want %q", body.Code, wantReason)
	}
	if got := a.headers["content-type"]; got != "application/json" {
		t.Errorf("deny content-type = %q, want application/json", got)
	}
	wantCode := map[int]codes.Code{400: codes.InvalidArgument, 413: codes.InvalidArgument, 401: codes.Unauthenticated, 403: codes.PermissionDenied, 503: codes.Unavailable}[wantStatus]
	if codes.Code(a.grpc) != wantCode {
		t.Errorf("deny gRPC status = %v, want %v", codes.Code(a.grpc), wantCode)
	}
	wa := a.headers["www-authenticate"]
	switch wantStatus {
	case http.StatusUnauthorized:
		if wa != `Bearer error="invalid_token"` {
			t.Errorf("401 WWW-Authenticate = %q", wa)
		}
	case http.StatusForbidden:
		if !strings.HasPrefix(wa, `Bearer error="insufficient_scope"`) {
			t.Errorf("403 WWW-Authenticate = %q", wa)
		}
	default:
		if wa != "" {
			t.Errorf("%d has WWW-Authenticate %q", wantStatus, wa)
		}
	}
}

func org(id, scopes string) *tokenSpec {
	return &tokenSpec{kind: "organization", org: id, scopes: scopes}
}
func orgAPI(id, scopes string) *tokenSpec {
	return &tokenSpec{kind: "organization_api", org: id, scopes: scopes}
}
func global(scopes string) *tokenSpec { return &tokenSpec{kind: "global_api", scopes: scopes} }
func admin(scopes string) *tokenSpec  { return &tokenSpec{kind: "admin", scopes: scopes} }

// TestRoutes runs every row of DESIGN's route table with a token that may and one that may not.
func TestRoutes(t *testing.T) {
	h := newHarness(t, true)
	const (
		orgs       = "/api/organizations"
		o1         = "/api/organizations/o1"
		members    = "/api/organizations/o1/users"
		member     = "/api/organizations/o1/users/u2"
		roles      = "/api/organizations/o1/users/u2/roles"
		selfRoles  = "/api/organizations/o1/users/u1/roles"
		roleTarget = "/api/organizations/o1/users/u2/roles/r1"
	)
	tests := []checkTest{
		{name: "create org global user", method: "POST", target: orgs, token: global("org:create"), body: `{"name":"a"}`, wantStatus: 200, wantRoute: "POST /api/organizations"},
		{name: "create org admin", method: "POST", target: orgs, token: admin("admin:org:write"), wantStatus: 200, wantRoute: "POST /api/organizations"},
		{name: "create org lookalike scope", method: "POST", target: orgs, token: global("org:create-x ORG:CREATE"), wantStatus: 403, wantReason: "missing_scope"},
		{name: "create org global app", method: "POST", target: orgs, token: &tokenSpec{kind: "global_api", app: true, scopes: "org:create"}, wantStatus: 403},
		{name: "list orgs admin", method: "GET", target: orgs + "?page=1&page_size=20", token: admin("admin:org:read"), wantStatus: 200, wantRoute: "GET /api/organizations"},
		{name: "list orgs org token", method: "GET", target: orgs, token: org("o1", "org:read"), wantStatus: 403},
		{name: "list orgs admin scope on api audience", method: "GET", target: orgs, token: global("admin:org:read"), wantStatus: 403},
		{name: "get org", method: "GET", target: o1, token: org("o1", "org:read"), wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}"},
		{name: "get org as an org app", method: "GET", target: o1, token: &tokenSpec{kind: "organization_api", org: "o1", app: true, scopes: "org:read"}, wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}"},
		{name: "get org other org", method: "GET", target: o1, token: org("o2", "org:read"), wantStatus: 403, wantReason: "wrong_organization"},
		{name: "get org org api other org", method: "GET", target: o1, token: orgAPI("o2", "org:read"), wantStatus: 403, wantReason: "wrong_organization"},
		{name: "patch org", method: "PATCH", target: o1, token: org("o1", "org:update"), body: `{"name":"n","description":"d"}`, wantStatus: 200, wantRoute: "PATCH /api/organizations/{orgId}"},
		{name: "patch org custom data", method: "PATCH", target: o1, token: org("o1", "org:update"), body: `{"customData":{"a":1}}`, wantStatus: 403},
		{name: "patch org duplicate key", method: "PATCH", target: o1, token: org("o1", "org:update"), body: `{"name":"n","name":"m"}`, wantStatus: 403},
		{name: "delete org", method: "DELETE", target: o1, token: orgAPI("o1", "org:delete"), wantStatus: 200, wantRoute: "DELETE /api/organizations/{orgId}"},
		{name: "delete org missing scope", method: "DELETE", target: o1, token: org("o1", "org:read"), wantStatus: 403, wantReason: "missing_scope"},
		{name: "list members", method: "GET", target: members, token: orgAPI("o1", "member:read"), wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}/users"},
		{name: "list members global token", method: "GET", target: members, token: global("member:read"), wantStatus: 403},
		{name: "add member", method: "POST", target: members, token: org("o1", "member:add"), body: `{"userIds":["u2"]}`, wantStatus: 200, wantRoute: "POST /api/organizations/{orgId}/users"},
		{name: "add member admin", method: "POST", target: members, token: admin("admin:org:write"), wantStatus: 200, wantRoute: "POST /api/organizations/{orgId}/users"},
		{name: "add member read only", method: "POST", target: members, token: org("o1", "member:read"), wantStatus: 403},
		{name: "remove member", method: "DELETE", target: member, token: org("o1", "member:remove"), wantStatus: 200, wantRoute: "DELETE /api/organizations/{orgId}/users/{userId}"},
		{name: "remove self", method: "DELETE", target: "/api/organizations/o1/users/u1", token: org("o1", ""), wantStatus: 200, wantRoute: "DELETE /api/organizations/{orgId}/users/{userId}"},
		{name: "remove other without scope", method: "DELETE", target: member, token: org("o1", "member:read"), wantStatus: 403},
		{name: "member roles", method: "GET", target: roles, token: org("o1", "member:read"), wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}/users/{userId}/roles"},
		{name: "assign member role", method: "POST", target: roles, token: org("o1", "member:role"), body: `{"organizationRoleNames":["member"]}`, wantStatus: 200, wantRoute: "POST /api/organizations/{orgId}/users/{userId}/roles"},
		{name: "assign admin role with member:role", method: "POST", target: roles, token: org("o1", "member:role"), body: `{"organizationRoleNames":["admin"]}`, wantStatus: 403},
		{name: "assign role to self", method: "POST", target: selfRoles, token: org("o1", "member:role:admin"), body: `{"organizationRoleNames":["admin"]}`, wantStatus: 403, wantReason: "self_role_change"},
		{name: "replace roles", method: "PUT", target: roles, token: org("o1", "member:role:admin"), body: `{"organizationRoleIds":["r1"]}`, wantStatus: 200, wantRoute: "PUT /api/organizations/{orgId}/users/{userId}/roles"},
		{name: "replace own roles", method: "PUT", target: selfRoles, token: org("o1", "member:role:admin"), wantStatus: 403},
		{name: "remove role", method: "DELETE", target: roleTarget, token: org("o1", "member:role:admin"), wantStatus: 200, wantRoute: "DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}"},
		{name: "remove role with member:role", method: "DELETE", target: roleTarget, token: org("o1", "member:role"), wantStatus: 403},
		{name: "own organizations", method: "GET", target: "/api/users/u1/organizations", token: global(""), wantStatus: 200, wantRoute: "GET /api/users/{userId}/organizations"},
		{name: "other user's organizations", method: "GET", target: "/api/users/u2/organizations", token: global(""), wantStatus: 403},
		{name: "bulk create admin", method: "POST", target: "/bulk/organizations", token: admin("admin:org:write"), body: `{"organizations":[{"name":"a"}]}`, wantStatus: 200, wantRoute: "POST /bulk/organizations"},
		{name: "bulk create org token", method: "POST", target: "/bulk/organizations", token: org("o1", "admin:org:write"), wantStatus: 403},
		{name: "bulk delete admin", method: "POST", target: "/bulk/organizations/delete", token: admin("admin:org:write"), body: `{"ids":["o1"]}`, wantStatus: 200, wantRoute: "POST /bulk/organizations/delete"},
		{name: "bulk delete admin read", method: "POST", target: "/bulk/organizations/delete", token: admin("admin:org:read"), wantStatus: 403},
		{name: "no token", method: "GET", target: o1, wantStatus: 401, wantReason: "missing_token"},
		{name: "unknown route", method: "GET", target: "/api/organizations-admin", token: admin("admin:org:read"), wantStatus: 403},
		{name: "HEAD", method: "HEAD", target: o1, token: org("o1", "org:read"), wantStatus: 403},
		{name: "OPTIONS", method: "OPTIONS", target: o1, token: org("o1", "org:read"), wantStatus: 403},
		{name: "TRACE", method: "TRACE", target: o1, token: org("o1", "org:read"), wantStatus: 403},
		{name: "query looks like a path", method: "GET", target: "/x?y=/api/organizations", token: admin("admin:org:read"), wantStatus: 403},
		{name: "other audience", method: "GET", target: o1, token: &tokenSpec{kind: "https://default.logto.app/api", scopes: "all"}, wantStatus: 401, wantReason: "invalid_audience"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// TestMissingScopeHeader checks the 403 WWW-Authenticate names the scope the policy wanted.
func TestMissingScopeHeader(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "org:read"))
	a := readAnswer(h.check(t, envoyRequest("DELETE", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, "")))
	if want := `Bearer error="insufficient_scope", scope="org:delete"`; a.headers["www-authenticate"] != want {
		t.Errorf("WWW-Authenticate = %q, want %q", a.headers["www-authenticate"], want)
	}
}

// TestPathsAndMethods covers SECURITY.md's path and method class: all refused before the policy.
func TestPathsAndMethods(t *testing.T) {
	h := newHarness(t, true)
	tok := admin("admin:org:read admin:org:write")
	long := "/api/organizations/" + strings.Repeat("a", 64<<10)
	tests := []checkTest{
		{name: "encoded slash", method: "GET", target: "/api/organizations/A%2F..%2FB/users", wantStatus: 400, wantReason: "invalid_path"},
		{name: "dot dot", method: "GET", target: "/api/organizations/o1/../o2", wantStatus: 400, wantReason: "invalid_path"},
		{name: "dot", method: "GET", target: "/api/organizations/./o1", wantStatus: 400},
		{name: "encoded dots", method: "GET", target: "/api/organizations/%2e%2e/o1", wantStatus: 400},
		{name: "double encoded", method: "GET", target: "/api/organizations/%252e", wantStatus: 400},
		{name: "backslash encoded", method: "GET", target: "/api/organizations/o1%5C..", wantStatus: 400},
		{name: "backslash", method: "GET", target: `/api/organizations/o1\..`, wantStatus: 400},
		{name: "semicolon", method: "GET", target: "/api/organizations/o1;jsessionid=x", wantStatus: 400},
		{name: "double slash", method: "GET", target: "/api//organizations/o1", wantStatus: 400},
		{name: "leading double slash", method: "GET", target: "//api/organizations", wantStatus: 400},
		{name: "trailing slash", method: "GET", target: "/api/organizations/o1/", wantStatus: 400},
		{name: "fragment", method: "GET", target: "/api/organizations/o1#x", wantStatus: 400},
		{name: "space", method: "GET", target: "/api/organizations/o 1", wantStatus: 400},
		{name: "non ascii", method: "GET", target: "/api/organizations/ö1", wantStatus: 400},
		{name: "no leading slash", method: "GET", target: "api/organizations", wantStatus: 400},
		{name: "absolute form", method: "GET", target: "http://evil/api/organizations", wantStatus: 400},
		{name: "64 KiB path", method: "GET", target: long, wantStatus: 400, wantReason: "invalid_path"},
		{name: "2049 byte path", method: "GET", target: "/" + strings.Repeat("a", 2048), wantStatus: 400},
		{name: "2048 byte path reaches policy", method: "GET", target: "/" + strings.Repeat("a", 2047), wantStatus: 403, wantReason: "no_route"},
		{name: "upper case org id reaches policy", method: "GET", target: "/api/organizations/O1", wantStatus: 403},
		{name: "upper case path reaches policy", method: "GET", target: "/API/organizations", wantStatus: 403},
		{name: "lower case method", method: "get", target: "/api/organizations", wantStatus: 400, wantReason: "invalid_method"},
		{name: "mixed case method", method: "Get", target: "/api/organizations", wantStatus: 400},
		{name: "method override", method: "POST", target: "/api/organizations", headers: map[string]string{"X-HTTP-Method-Override": "DELETE"}, wantStatus: 400, wantReason: "method_override"},
		{name: "method header", method: "POST", target: "/api/organizations", headers: map[string]string{"X-HTTP-Method": "GET"}, wantStatus: 400},
		{name: "method override 2", method: "POST", target: "/api/organizations", headers: map[string]string{"X-Method-Override": "GET"}, wantStatus: 400},
		{name: "bad query escape", method: "GET", target: "/api/organizations?page=%zz", wantStatus: 400, wantReason: "invalid_query"},
		{name: "query semicolon", method: "GET", target: "/api/organizations?a=1;b=2", wantStatus: 400},
		{name: "huge query", method: "GET", target: "/api/organizations?q=" + strings.Repeat("a", 9000), wantStatus: 400},
		{name: "query ignored for routing", method: "GET", target: "/api/organizations?path=/api/organizations/o1", wantStatus: 200, wantRoute: "GET /api/organizations"},
	}
	for _, tc := range tests {
		tc.token = tok
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// TestTokenCarrying covers how the token is carried (SECURITY.md).
func TestTokenCarrying(t *testing.T) {
	h := newHarness(t, true)
	good := org("o1", "org:read")
	o1 := "/api/organizations/o1"
	tests := []checkTest{
		{name: "bearer", method: "GET", target: o1, token: good, wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}"},
		{name: "lower-case scheme", method: "GET", target: o1, token: good, auth: "bearer TOKEN", wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}"},
		{name: "upper-case scheme", method: "GET", target: o1, token: good, auth: "BEARER TOKEN", wantStatus: 200, wantRoute: "GET /api/organizations/{orgId}"},
		{name: "two spaces", method: "GET", target: o1, token: good, auth: "Bearer  TOKEN", wantStatus: 401},
		{name: "tab", method: "GET", target: o1, token: good, auth: "Bearer\tTOKEN", wantStatus: 401},
		{name: "basic", method: "GET", target: o1, token: good, auth: "Basic dTE6cHc=", wantStatus: 401, wantReason: "invalid_authorization"},
		{name: "empty token", method: "GET", target: o1, auth: "Bearer ", wantStatus: 401},
		{name: "scheme only", method: "GET", target: o1, auth: "Bearer", wantStatus: 401},
		{name: "two tokens joined", method: "GET", target: o1, token: good, auth: "Bearer TOKEN, Bearer TOKEN", wantStatus: 401, wantReason: "multiple_tokens"},
		{name: "trailing garbage", method: "GET", target: o1, token: good, auth: "Bearer TOKEN.x", wantStatus: 401, wantReason: "malformed_token"},
		{name: "two parts", method: "GET", target: o1, auth: "Bearer aaa.bbb", wantStatus: 401, wantReason: "malformed_token"},
		{name: "empty part", method: "GET", target: o1, auth: "Bearer aaa..ccc", wantStatus: 401},
		{name: "padding", method: "GET", target: o1, auth: "Bearer aaa.bbb.ccc=", wantStatus: 401},
		{name: "opaque", method: "GET", target: o1, auth: "Bearer 7dc6a5f1e0", wantStatus: 401},
		{name: "over 8 KiB", method: "GET", target: o1, auth: "Bearer " + strings.Repeat("a", 8<<10) + ".b.c", wantStatus: 401, wantReason: "token_too_large"},
		{name: "bad signature", method: "GET", target: o1, auth: "Bearer eyJhbGciOiJFUzM4NCIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.e30.AAAA", wantStatus: 401},
		{name: "subject no header can carry", method: "GET", target: o1, token: &tokenSpec{kind: "organization", org: "o1", sub: "u1\r\nx-orgauthz-subject: admin", scopes: "org:read"}, wantStatus: 401, wantReason: "invalid_claims"},
		{name: "query token ignored", method: "GET", target: o1 + "?access_token=x.y.z", wantStatus: 401, wantReason: "missing_token"},
		{name: "cookie token ignored", method: "GET", target: o1, headers: map[string]string{"Cookie": "access_token=x.y.z"}, wantStatus: 401, wantReason: "missing_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}

	t.Run("two authorization headers", func(t *testing.T) {
		tok := h.mint(*good)
		r := envoyRequest("GET", o1, nil, "")
		r.Header.Add("Authorization", "Bearer "+tok)
		r.Header.Add("Authorization", "Bearer "+tok)
		checkDenyShape(t, readAnswer(h.check(t, r)), 401, "multiple_tokens")
	})
	t.Run("altered payload", func(t *testing.T) {
		tok := h.mint(*org("o1", "org:read"))
		parts := strings.Split(tok, ".")
		parts[1] = parts[1][:len(parts[1])-2] + "AA"
		r := envoyRequest("GET", o1, map[string]string{"Authorization": "Bearer " + strings.Join(parts, ".")}, "")
		a := readAnswer(h.check(t, r))
		if a.status != 401 {
			t.Fatalf("altered payload status = %d, want 401", a.status)
		}
	})
}

// TestIdentityHeaders: client-sent x-orgauthz-* never survive an allow, credentials are removed.
func TestIdentityHeaders(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "org:read"))
	r := envoyRequest("GET", "/api/organizations/o1", map[string]string{
		"Authorization":              "Bearer " + tok,
		"Cookie":                     "session=1",
		"X-Orgauthz-Decision":        "forged.forged.forged",
		"X-Orgauthz-Subject":         "admin",
		"X-Orgauthz-Organization-Id": "o2",
		"X-Orgauthz-Extra":           "smuggled",
	}, "")
	resp := h.check(t, r)
	fwd, err := envoyclient.Apply(resp, r)
	if err != nil {
		t.Fatal(err)
	}
	if fwd != nil {
		t.Fatalf("allowed request answered %d", fwd.StatusCode)
	}
	want := map[string]string{
		"X-Orgauthz-Subject":         "u1",
		"X-Orgauthz-Organization-Id": "o1",
		"X-Orgauthz-Token-Kind":      "organization",
		"X-Orgauthz-Extra":           "",
		"Authorization":              "",
		"Cookie":                     "",
	}
	for k, v := range want {
		if got := r.Header.Values(k); (v == "" && len(got) != 0) || (v != "" && (len(got) != 1 || got[0] != v)) {
			t.Errorf("forwarded %s = %q, want %q", k, got, v)
		}
	}
	if _, err := h.verifier.Verify(r.Header.Get(decision.Header), "GET", "/api/organizations/o1"); err != nil {
		t.Errorf("forwarded decision does not verify: %v", err)
	}

	t.Run("connection hides the decision", func(t *testing.T) {
		for _, conn := range []string{"x-orgauthz-decision", "keep-alive, X-Orgauthz-Decision", "authorization"} {
			r := envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok, "Connection": conn}, "")
			checkDenyShape(t, readAnswer(h.check(t, r)), 400, "invalid_connection_header")
		}
	})
}

// TestBodies: the body reaches the policy only as bounded, JSON-typed, strictly parsed JSON.
func TestBodies(t *testing.T) {
	h := newHarness(t, true, func(c *Config) { c.MaxBodyBytes = 1024 })
	h.envoyMaxBody = 4096 // Envoy lets through more than the sidecar parses
	spec := org("o1", "org:update")
	big := `{"name":"` + strings.Repeat("a", 1100) + `"}`
	tests := []checkTest{
		{name: "json", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":"x"}`, wantStatus: 200, wantRoute: "PATCH /api/organizations/{orgId}"},
		{name: "json charset", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":"x"}`, headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, wantStatus: 200, wantRoute: "PATCH /api/organizations/{orgId}"},
		{name: "merge json", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":"x"}`, headers: map[string]string{"Content-Type": "application/merge-patch+json"}, wantStatus: 200, wantRoute: "PATCH /api/organizations/{orgId}"},
		{name: "text plain", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":"x"}`, headers: map[string]string{"Content-Type": "text/plain"}, wantStatus: 403, wantReason: "body_required"},
		{name: "over the limit", method: "PATCH", target: "/api/organizations/o1", token: spec, body: big, wantStatus: 403, wantReason: "body_required"},
		{name: "invalid json", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":`, wantStatus: 403, wantReason: "body_required"},
		{name: "trailing data", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":"x"} {"customData":{}}`, wantStatus: 403, wantReason: "body_required"},
		{name: "too deep", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `{"name":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, wantStatus: 403},
		{name: "not an object", method: "PATCH", target: "/api/organizations/o1", token: spec, body: `["name"]`, wantStatus: 400, wantReason: "invalid_body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// TestForgedOrganizationHeaderRemoved: without an org context the sidecar sets no
// x-orgauthz-organization-id, so a client's copy must be removed rather than kept.
func TestForgedOrganizationHeaderRemoved(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*global("org:create"))
	r := envoyRequest("POST", "/api/organizations", map[string]string{
		"Authorization": "Bearer " + tok, "X-Orgauthz-Organization-Id": "o2"}, `{"name":"n"}`)
	fwd, err := envoyclient.Apply(h.check(t, r), r)
	if err != nil || fwd != nil {
		t.Fatalf("Apply = %v, %v; want the request forwarded", fwd, err)
	}
	if got := r.Header.Values("X-Orgauthz-Organization-Id"); len(got) != 0 {
		t.Errorf("forwarded x-orgauthz-organization-id = %q, want none", got)
	}
	if got := r.Header.Get("X-Orgauthz-Token-Kind"); got != "global_api" {
		t.Errorf("forwarded x-orgauthz-token-kind = %q, want global_api", got)
	}
}

// TestConcurrentChecks: answers stay right under concurrent use (run with -race).
func TestConcurrentChecks(t *testing.T) {
	h := newHarness(t, true)
	allowTok := h.mint(*org("o1", "org:read"))
	denyTok := h.mint(*org("o2", "org:read"))
	const workers, each = 8, 25
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				tok, want := allowTok, 200
				if (w+i)%2 == 1 {
					tok, want = denyTok, 403
				}
				in, err := envoyclient.NewCheckRequest(envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, ""), envoyclient.Options{})
				if err != nil {
					errs <- err
					return
				}
				resp, err := h.auth.Check(t.Context(), in)
				if err != nil {
					errs <- err
					return
				}
				if got := readAnswer(resp).status; got != want {
					errs <- fmt.Errorf("worker %d request %d: status %d, want %d", w, i, got, want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// reasonCode keeps exactly the reasons its documented pattern allows: every byte value at each
// position, and lengths around the bound.
func TestReasonCode(t *testing.T) {
	pattern := regexp.MustCompile(`^[a-z0-9_.:-]{1,64}$`)
	reasons := []string{"", "a", strings.Repeat("a", 64), strings.Repeat("a", 65), "org_permission", "missing_scope"}
	for c := range 256 {
		reasons = append(reasons, string(rune(c)), "x"+string([]byte{byte(c)}), string([]byte{byte(c)})+"y")
	}
	for _, r := range reasons {
		want := "fallback"
		if pattern.MatchString(r) {
			want = r
		}
		if got := reasonCode(r, "fallback"); got != want {
			t.Errorf("reasonCode(%q) = %q, want %q", r, got, want)
		}
	}
}
