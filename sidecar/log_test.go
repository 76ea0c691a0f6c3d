package sidecar

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/orgauthz/orgauthz/internal/envoyclient"
)

// decisionLines returns the decision log lines by decision id.
func decisionLines(t *testing.T, logs string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if line["msg"] == "decision" {
			id, _ := line["decision_id"].(string)
			out[id] = line
		}
	}
	return out
}

// TestDecisionLog: one JSON line per decision with its id and facts, never the token.
func TestDecisionLog(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*orgAPI("o1", "member:add"))
	allowResp := h.check(t, envoyRequest("POST", "/api/organizations/o1/users", map[string]string{
		"Authorization": "Bearer " + tok, "X-Request-Id": "req-allow-1"}, `{"userIds":["u2"]}`))
	denyResp := h.check(t, envoyRequest("DELETE", "/api/organizations/o1", map[string]string{
		"Authorization": "Bearer " + tok, "X-Request-Id": "req-deny-1"}, ""))
	allow, deny := readAnswer(allowResp), readAnswer(denyResp)
	bad := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1/../o2", map[string]string{
		"Authorization": "Bearer  " + tok, "X-Request-Id": "req-bad-1"}, "")))
	if allow.status != 200 || deny.status != 403 || bad.status != 400 {
		t.Fatalf("statuses = %d %d %d, want 200 403 400", allow.status, deny.status, bad.status)
	}
	for _, tc := range []struct {
		resp           *authv3.CheckResponse
		result, reason string
	}{{allowResp, "allow", "org_permission"}, {denyResp, "deny", "missing_scope"}} {
		m := tc.resp.GetDynamicMetadata().AsMap()
		if m["decision_id"] != readAnswer(tc.resp).headers[headerDecisionID] || m["result"] != tc.result || m["reason"] != tc.reason {
			t.Errorf("dynamic metadata = %v, want the decision id, %s and %s", m, tc.result, tc.reason)
		}
	}
	if route := allowResp.GetDynamicMetadata().AsMap()["route"]; route != "POST /api/organizations/{orgId}/users" {
		t.Errorf("dynamic metadata route = %v", route)
	}
	// The decision id is the sidecar's own, never a client's or Envoy's x-request-id.
	ids := map[string]string{"allow": allow.headers[headerDecisionID], "deny": deny.headers[headerDecisionID], "bad": bad.headers[headerDecisionID]}
	for k, id := range ids {
		if id == "" || id == "req-"+k+"-1" {
			t.Errorf("%s answer has decision id %q, want Envoy's request id", k, id)
		}
	}
	lines := decisionLines(t, h.logs.String())
	want := map[string]map[string]any{
		ids["allow"]: {"result": "allow", "status": 200.0, "reason": "org_permission", "method": "POST",
			"path": "/api/organizations/o1/users", "route": "POST /api/organizations/{orgId}/users",
			"subject": "u1", "token_kind": "organization_api", "org": "o1"},
		ids["deny"]: {"result": "deny", "status": 403.0, "reason": "missing_scope", "method": "DELETE",
			"path": "/api/organizations/o1", "subject": "u1", "token_kind": "organization_api"},
		ids["bad"]: {"result": "deny", "status": 400.0, "reason": "invalid_path", "method": "GET"},
	}
	for id, fields := range want {
		line, ok := lines[id]
		if !ok {
			t.Errorf("no decision line for %s", id)
			continue
		}
		for k, v := range fields {
			if line[k] != v {
				t.Errorf("decision %s: %s = %v, want %v", id, k, line[k], v)
			}
		}
		if _, ok := line["latency"]; !ok {
			t.Errorf("decision %s has no latency", id)
		}
	}
	if _, ok := lines[ids["bad"]]["path"]; ok {
		t.Errorf("a refused path was logged")
	}
	// The cleanup also greps the whole log for every minted token.
}

// TestDynamicMetadata: every CheckResponse (allow, deny, refusal, 503) carries the string fields
// Envoy's access log reads as %DYNAMIC_METADATA(envoy.filters.http.ext_authz:…)%: decision_id
// (the answer's x-orgauthz-decision-id), reason, and route when the policy matched one.
func TestDynamicMetadata(t *testing.T) {
	h := newHarness(t, true)
	c, err := envoyclient.Dial(h.grpcAddr(), envoyclient.Options{WithBody: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok := h.mint(*org("o1", "org:read"))
	notReady := newHarness(t, false, func(c *Config) { c.Issuers = []string{"http://127.0.0.1:1/oidc"} })
	cn, err := envoyclient.Dial(notReady.grpcAddr(), envoyclient.Options{WithBody: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	tests := []struct {
		name          string
		c             *envoyclient.Client
		method, path  string
		headers       map[string]string
		reason, route string
	}{
		{"allow", c, "GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, "org_permission", "GET /api/organizations/{orgId}"},
		{"policy deny", c, "DELETE", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, "missing_scope", ""},
		{"refused request", c, "GET", "/api/organizations/o1/./x", nil, "invalid_path", ""},
		{"partial body", c, "GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, reasonBodyTooLarge, ""},
		{"not ready", cn, "GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, reasonNotReady, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := envoyRequest(tc.method, tc.path, tc.headers, "")
			if tc.reason == reasonBodyTooLarge {
				r = envoyRequest(tc.method, tc.path, tc.headers, "{}")
				r.ContentLength = 99 // two bytes sent, 99 announced
			}
			resp, err := tc.c.Check(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			meta := resp.GetDynamicMetadata().GetFields()
			str := func(k string) string { return meta[k].GetStringValue() }
			if id := readAnswer(resp).headers[headerDecisionID]; id == "" || str("decision_id") != id {
				t.Errorf("decision_id = %q, want the answer's %q", str("decision_id"), id)
			}
			if str("reason") != tc.reason {
				t.Errorf("reason = %q, want %q", str("reason"), tc.reason)
			}
			if _, ok := meta["route"]; str("route") != tc.route || ok != (tc.route != "") {
				t.Errorf("route = %q (present %v), want %q", str("route"), ok, tc.route)
			}
		})
	}
}
