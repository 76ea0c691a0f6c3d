package sidecar

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/orgauthz/orgauthz/decision"
)

// httpTest is one request to an HTTP check endpoint.
type httpTest struct {
	name       string
	method     string
	target     string
	headers    map[string]string
	withToken  bool
	wantStatus int
	wantReason string
	// wantMethod and wantPath are the request the decision must be bound to on allow.
	wantMethod, wantPath string
}

func (tc httpTest) run(t *testing.T, h *harness, tok string) {
	t.Helper()
	headers := map[string]string{}
	for k, v := range tc.headers {
		headers[k] = v
	}
	if tc.withToken {
		headers["Authorization"] = "Bearer " + tok
	}
	resp := h.do(t, tc.method, tc.target, headers)
	if resp.StatusCode != tc.wantStatus {
		t.Fatalf("%s %s status = %d (body %q), want %d", tc.method, tc.target, resp.StatusCode, resp.body, tc.wantStatus)
	}
	if strings.Contains(resp.body, tok) {
		t.Errorf("%s %s echoed the token", tc.method, tc.target)
	}
	if resp.StatusCode == http.StatusOK {
		if _, err := h.verifier.Verify(resp.Header.Get(decision.Header), tc.wantMethod, tc.wantPath); err != nil {
			t.Errorf("%s %s decision does not verify for %s %s: %v", tc.method, tc.target, tc.wantMethod, tc.wantPath, err)
		}
		if resp.Header.Get(headerSubject) != "u1" || resp.Header.Get(headerOrganizationID) != "o1" ||
			resp.Header.Get(headerTokenKind) != "organization" || resp.Header.Get(headerDecisionID) == "" {
			t.Errorf("%s %s identity headers = %v", tc.method, tc.target, resp.Header)
		}
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s deny content-type = %q", tc.method, tc.target, ct)
	}
	if tc.wantReason != "" && !strings.Contains(resp.body, `"code":"`+tc.wantReason+`"`) {
		t.Errorf("%s %s body = %q, want code %q", tc.method, tc.target, resp.body, tc.wantReason)
	}
	switch tc.wantStatus {
	case 401:
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("401 WWW-Authenticate = %q", got)
		}
	case 403:
		if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer error="insufficient_scope"`) {
			t.Errorf("403 WWW-Authenticate = %q", got)
		}
	}
}

func TestHTTPCheckEndpoints(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "org:read member:read"))
	fwd := func(method, uri string) map[string]string {
		return map[string]string{"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
	}
	tests := []httpTest{
		{name: "envoy allow", method: "GET", target: "/envoy/api/organizations/o1", withToken: true, wantStatus: 200, wantMethod: "GET", wantPath: "/api/organizations/o1"},
		{name: "envoy allow with query", method: "GET", target: "/envoy/api/organizations/o1/users?page=2", withToken: true, wantStatus: 200, wantMethod: "GET", wantPath: "/api/organizations/o1/users"},
		{name: "envoy no token", method: "GET", target: "/envoy/api/organizations/o1", wantStatus: 401, wantReason: "missing_token"},
		{name: "envoy missing scope", method: "DELETE", target: "/envoy/api/organizations/o1", withToken: true, wantStatus: 403, wantReason: "missing_scope"},
		{name: "envoy dot dot", method: "GET", target: "/envoy/api/organizations/o2/../o1", withToken: true, wantStatus: 400, wantReason: "invalid_path"},
		{name: "envoy encoded slash", method: "GET", target: "/envoy/api/organizations/o1%2Fusers", withToken: true, wantStatus: 400},
		{name: "envoy double slash", method: "GET", target: "/envoy//api/organizations/o1", withToken: true, wantStatus: 400},
		{name: "envoy method override", method: "POST", target: "/envoy/api/organizations/o1", headers: map[string]string{"X-HTTP-Method-Override": "GET"}, withToken: true, wantStatus: 400},
		{name: "envoy bare prefix", method: "GET", target: "/envoy", withToken: true, wantStatus: 403, wantReason: "no_route"},
		{name: "envoy non-UTF-8 token", method: "GET", target: "/envoy/api/organizations/o1", headers: map[string]string{"Authorization": "Bearer a\xffb.c.d"}, wantStatus: 401, wantReason: "malformed_token"},
		{name: "forward-auth non-UTF-8 uri", method: "GET", target: "/forward-auth", headers: fwd("GET", "/api/organizations/\xff"), withToken: true, wantStatus: 400, wantReason: "invalid_path"},
		{name: "forward-auth allow", method: "GET", target: "/forward-auth", headers: fwd("GET", "/api/organizations/o1?x=1"), withToken: true, wantStatus: 200, wantMethod: "GET", wantPath: "/api/organizations/o1"},
		{name: "forward-auth original headers", method: "GET", target: "/forward-auth", headers: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/organizations/o1/users"}, withToken: true, wantStatus: 200, wantMethod: "GET", wantPath: "/api/organizations/o1/users"},
		{name: "forward-auth POST subrequest", method: "POST", target: "/forward-auth", headers: fwd("GET", "/api/organizations/o1"), withToken: true, wantStatus: 200, wantMethod: "GET", wantPath: "/api/organizations/o1"},
		{name: "forward-auth no token", method: "GET", target: "/forward-auth", headers: fwd("GET", "/api/organizations/o1"), wantStatus: 401},
		{name: "forward-auth missing uri", method: "GET", target: "/forward-auth", headers: map[string]string{"X-Forwarded-Method": "GET"}, withToken: true, wantStatus: 400, wantReason: "missing_forwarded_request"},
		{name: "forward-auth missing method", method: "GET", target: "/forward-auth", headers: map[string]string{"X-Forwarded-Uri": "/api/organizations/o1"}, withToken: true, wantStatus: 400},
		{name: "forward-auth disagreeing uris", method: "GET", target: "/forward-auth", headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/organizations/o1", "X-Original-URI": "/api/organizations/o2"}, withToken: true, wantStatus: 400},
		{name: "forward-auth bad path", method: "GET", target: "/forward-auth", headers: fwd("GET", "/api/organizations/o1/"), withToken: true, wantStatus: 400, wantReason: "invalid_path"},
		{name: "forward-auth lower-case method", method: "GET", target: "/forward-auth", headers: fwd("get", "/api/organizations/o1"), withToken: true, wantStatus: 400, wantReason: "invalid_method"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h, tok) })
	}
}

// TestUntrustedPeer: both check endpoints refuse a peer outside --trusted-proxy, since either answers
// with a signed decision for a request the caller describes.
func TestUntrustedPeer(t *testing.T) {
	h := newHarness(t, true, func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8"} })
	tok := h.mint(*org("o1", "org:read"))
	tests := []httpTest{
		{name: "forward-auth", method: "GET", target: "/forward-auth", withToken: true, wantStatus: 403, wantReason: "untrusted_proxy",
			headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/organizations/o1"}},
		{name: "envoy", method: "GET", target: "/envoy/api/organizations/o1", withToken: true, wantStatus: 403, wantReason: "untrusted_proxy"},
		{name: "envoy bare prefix", method: "GET", target: "/envoy", withToken: true, wantStatus: 403, wantReason: "untrusted_proxy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, h, tok)
		})
	}
	// The refusal comes before any token check or policy: nothing was verified or decided.
	if got := h.get(t, "/metrics", nil).body; !strings.Contains(got, `orgauthz_sidecar_decisions_total{reason="untrusted_proxy",result="deny",route=""} 3`) {
		t.Errorf("metrics do not count 3 untrusted_proxy denials:\n%s", got)
	}
}

// TestEnvoyHTTPBodyBound: an allow of /envoy/… for a request with a body binds the decision to that
// body's hash; one without a body binds none.
func TestEnvoyHTTPBodyBound(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "member:role member:read"))
	tests := []struct {
		name, method, target, body string
	}{
		{"assign member role", "POST", "/envoy/api/organizations/o1/users/u2/roles", `{"organizationRoleNames":["member"]}`},
		{"assign member role, spaced", "POST", "/envoy/api/organizations/o1/users/u2/roles", "{ \"organizationRoleNames\" : [ \"member\" ] }\n"},
		{"no body", "GET", "/envoy/api/organizations/o1/users/u2/roles", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, h.httpURL+tc.target, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.target, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s status = %d, want 200", tc.method, tc.target, resp.StatusCode)
			}
			path := strings.TrimPrefix(tc.target, "/envoy")
			c, err := h.verifier.Verify(resp.Header.Get(decision.Header), tc.method, path)
			if err != nil {
				t.Fatalf("%s %s decision does not verify: %v", tc.method, tc.target, err)
			}
			if want := bodyClaim(tc.body); c.Body != want {
				t.Errorf("%s %s decision b = %q, want %q", tc.method, tc.target, c.Body, want)
			}
			if err := c.CheckBody([]byte(tc.body), tc.body != ""); err != nil {
				t.Errorf("CheckBody(the body sent) = %v, want nil", err)
			}
			if tc.body != "" {
				if err := c.CheckBody([]byte(`{"organizationRoleNames":["admin"]}`), true); decision.ReasonOf(err) != decision.ReasonBodyMismatch {
					t.Errorf("CheckBody(another body) = %v, want %s", err, decision.ReasonBodyMismatch)
				}
			}
		})
	}
}

func TestHTTPHealthAndMetrics(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "org:read"))
	h.get(t, "/envoy/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok})
	h.get(t, "/envoy/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok})
	h.get(t, "/envoy/api/organizations/o1", nil)
	tests := []struct {
		target     string
		wantStatus int
		wantBody   []string
	}{
		{"/healthz", 200, []string{`"alive":true`}},
		{"/readyz", 200, []string{`"keys":true`, `"policy":true`}},
		{"/metrics", 200, []string{
			`orgauthz_sidecar_decisions_total{reason="org_permission",result="allow",route="GET /api/organizations/{orgId}"} 2`,
			`orgauthz_sidecar_decisions_total{reason="missing_token",result="deny",route=""} 1`,
			"orgauthz_sidecar_check_duration_seconds_count 3",
			"orgauthz_sidecar_token_cache_hits_total 1",
			"orgauthz_sidecar_jwks_fetches_total",
			"orgauthz_sidecar_policy_reloads_total 1",
			"orgauthz_sidecar_ready 1",
		}},
		{"/nope", 404, nil},
		{"/healthz/../metrics", 404, nil},
	}
	for _, tc := range tests {
		resp := h.get(t, tc.target, nil)
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("GET %s = %d, want %d", tc.target, resp.StatusCode, tc.wantStatus)
		}
		for _, want := range tc.wantBody {
			if !strings.Contains(resp.body, want) {
				t.Errorf("GET %s body lacks %q", tc.target, want)
			}
		}
	}
}

// TestEnvoyHTTPHeadersToRemove: Envoy's HTTP mode learns which request headers to strip from
// x-envoy-auth-headers-to-remove.
func TestEnvoyHTTPHeadersToRemove(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*global(""))
	resp := h.get(t, "/envoy/api/users/u1/organizations", map[string]string{
		"Authorization": "Bearer " + tok, "X-Orgauthz-Organization-Id": "o9", "X-Orgauthz-Subject": "admin"})
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d (%s), want 200", resp.StatusCode, resp.body)
	}
	got := strings.Split(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"), ",")
	want := []string{"authorization", "cookie", "x-orgauthz-organization-id"}
	if !slices.Equal(got, want) {
		t.Errorf("x-envoy-auth-headers-to-remove = %q, want %q", got, want)
	}
	if resp.Header.Get(headerSubject) != "u1" {
		t.Errorf("subject = %q, want u1", resp.Header.Get(headerSubject))
	}
}
