package sidecar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// auditRecords waits until the --decision-log file holds n records and returns them by decision id.
func (h *harness) auditRecords(t *testing.T, n int) map[string]map[string]any {
	t.Helper()
	var recs map[string]map[string]any
	waitFor(t, "audit records", func() bool {
		b, _ := os.ReadFile(h.auditLog)
		recs = map[string]map[string]any{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
			}
			recs[r["decision_id"].(string)] = r
		}
		return len(recs) >= n
	})
	return recs
}

// get reads a JSON path such as "token/client_id" from a record.
func get(r map[string]any, path string) any {
	var v any = r
	for p := range strings.SplitSeq(path, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// TestAuditRecords: through real gRPC, one record per decision (allow, deny and refusals), written
// at --log-level error; the record's decision_id is the answer's x-orgauthz-decision-id, the
// dynamic metadata's and the signed decision's jti; X-Request-Id is only the request_id.
func TestAuditRecords(t *testing.T) {
	h := newHarness(t, true, func(c *Config) { c.LogLevel = "error" })
	tok := h.mint(*orgAPI("o1", "member:add org:read"))
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	allowResp := h.check(t, envoyRequest("POST", "/api/organizations/o1/users", map[string]string{
		"Authorization": "Bearer " + tok, "traceparent": "00-" + trace + "-00f067aa0ba902b7-01",
		"X-User-Email": "ann@example.com"}, `{"userIds":["u2"]}`))
	denyResp := h.check(t, envoyRequest("DELETE", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, ""))
	bad := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1/../o2", map[string]string{"Authorization": "Bearer " + tok}, "")))
	forged := tok[:strings.LastIndexByte(tok, '.')+1] + "AAAA"
	unauth := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + forged}, "")))
	partial := envoyRequest("POST", "/api/organizations/o1/users", map[string]string{"Authorization": "Bearer " + tok}, "{}")
	partial.ContentLength = 99
	tooLarge := readAnswer(h.check(t, partial))
	allow, deny := readAnswer(allowResp), readAnswer(denyResp)
	if allow.status != 200 || deny.status != 403 || bad.status != 400 || unauth.status != 401 || tooLarge.status != 413 {
		t.Fatalf("statuses = %d %d %d %d %d, want 200 403 400 401 413", allow.status, deny.status, bad.status, unauth.status, tooLarge.status)
	}

	recs := h.auditRecords(t, 5)
	id := allow.headers[headerDecisionID]
	claims, err := h.verifier.Verify(allow.headers["x-orgauthz-decision"], "POST", "/api/organizations/o1/users")
	if err != nil {
		t.Fatalf("verify the signed decision: %v", err)
	}
	if claims.ID != id || allowResp.GetDynamicMetadata().AsMap()["decision_id"] != id {
		t.Errorf("jti %q, metadata %v, header %q: want one id", claims.ID, allowResp.GetDynamicMetadata().AsMap()["decision_id"], id)
	}
	a := recs[id]
	if a == nil {
		t.Fatalf("no record for the allow %s; records %v", id, recs)
	}
	for path, want := range map[string]any{
		"allow": true, "status": 200.0, "reason": "org_permission", "route": "POST /api/organizations/{orgId}/users",
		"method": "POST", "request_path": "/api/organizations/o1/users", "path": "orgauthz/decision",
		"token/kind": "organization_api", "token/subject": "u1", "token/client_id": "app1", "token/organization_id": "o1",
		"source_address": "203.0.113.7", "trace_id": trace, "labels/service": "sidecar",
		"result/allow": true, "input/request/path": "/api/organizations/o1/users",
		"input/request/headers/x-user-email": "ann@example.com", "input/token/client_id": "app1",
	} {
		if got := get(a, path); got != want {
			t.Errorf("allow record %s = %v, want %v", path, got, want)
		}
	}
	if rid, _ := a["request_id"].(string); rid == "" || rid == id {
		t.Errorf("request_id = %q, want Envoy's x-request-id, not the decision id %q", rid, id)
	}
	if get(a, "bundles/policies/revision") == "" || get(a, "bundles/policies/revision") == nil {
		t.Errorf("no policy revision in %v", a["bundles"])
	}
	if c, _ := get(a, "metrics/timer_check_ns").(float64); c <= 0 {
		t.Errorf("metrics = %v, want check time", a["metrics"])
	}
	if e, _ := get(a, "metrics/timer_rego_query_eval_ns").(float64); e <= 0 {
		t.Errorf("metrics = %v, want eval time", a["metrics"])
	}
	if get(a, "input/token/claims") != nil || get(a, "input/request/headers/authorization") != nil {
		t.Errorf("the record's input keeps claims or the Authorization header: %v", a["input"])
	}
	scopes, _ := get(a, "token/scopes").([]any)
	if !slices.Contains(scopes, any("member:add")) {
		t.Errorf("token scopes = %v", scopes)
	}

	d := recs[deny.headers[headerDecisionID]]
	for path, want := range map[string]any{"allow": false, "status": 403.0, "reason": "missing_scope",
		"request_path": "/api/organizations/o1", "token/client_id": "app1", "result/allow": false} {
		if got := get(d, path); got != want {
			t.Errorf("deny record %s = %v, want %v", path, got, want)
		}
	}
	if req, _ := d["required_scopes"].([]any); len(req) == 0 {
		t.Errorf("deny record has no required scopes: %v", d)
	}
	for _, tc := range []struct {
		a      answer
		status float64
		reason string
	}{{bad, 400, "invalid_path"}, {unauth, 401, "invalid_signature"}, {tooLarge, 413, reasonBodyTooLarge}} {
		r := recs[tc.a.headers[headerDecisionID]]
		if r == nil || r["status"] != tc.status || r["allow"] != false || r["input"] != nil {
			t.Errorf("%v refusal record = %v, want status %v and no input", tc.status, r, tc.status)
			continue
		}
		if tc.status == 401 && r["reason"] == "" {
			t.Errorf("401 record has no reason")
		}
	}
	if lines := decisionLines(t, h.logs.String()); len(lines) != 0 {
		t.Errorf("--log-level error still logged %d decision lines", len(lines))
	}
	audit, _ := os.ReadFile(h.auditLog)
	if strings.Contains(string(audit), allow.headers["x-orgauthz-decision"]) || strings.Contains(string(audit), forged) {
		t.Errorf("a signed decision or a token is in the audit records")
	}
	// The cleanup greps the log and the records for every minted token.
}

// TestAuditForwardAuth: /forward-auth writes the same record; the client's X-Request-Id is kept as
// request_id and never becomes the decision id.
func TestAuditForwardAuth(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "org:read"))
	resp := h.get(t, "/forward-auth", map[string]string{"Authorization": "Bearer " + tok,
		"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/organizations/o1", "X-Request-Id": "client-chosen-1"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	id := resp.Header.Get(headerDecisionID)
	if id == "" || id == "client-chosen-1" {
		t.Fatalf("decision id %q, want a fresh id", id)
	}
	claims, err := h.verifier.Verify(resp.Header.Get("X-Orgauthz-Decision"), "GET", "/api/organizations/o1")
	if err != nil || claims.ID != id {
		t.Fatalf("signed decision jti = %v (%v), want %q", claims, err, id)
	}
	r := h.auditRecords(t, 1)[id]
	if r == nil || r["request_id"] != "client-chosen-1" || r["route"] != "GET /api/organizations/{orgId}" || get(r, "token/kind") != "organization" {
		t.Errorf("record = %v", r)
	}
}

// TestAuditMask: system.log.mask in the policy directory erases what it names, at start and after
// a reload.
func TestAuditMask(t *testing.T) {
	dir := writePolicyDir(t)
	mask := func(header string) {
		src := "package system.log\n\nmask contains \"/input/request/headers/" + header + "\"\n"
		if err := os.MkdirAll(filepath.Join(dir, "system"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "system", "log.rego"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mask("x-user-email")
	h := newHarness(t, true, func(c *Config) { c.Policies = dir })
	tok := h.mint(*org("o1", "org:read"))
	send := func() string {
		a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{
			"Authorization": "Bearer " + tok, "X-User-Email": "ann@example.com", "X-Tenant": "t1"}, "")))
		return a.headers[headerDecisionID]
	}
	first := send()
	r := h.auditRecords(t, 1)[first]
	erased, _ := r["erased"].([]any)
	if get(r, "input/request/headers/x-user-email") != nil || !slices.Contains(erased, any("/input/request/headers/x-user-email")) {
		t.Errorf("mask not applied: headers %v, erased %v", get(r, "input/request/headers"), erased)
	}
	if get(r, "input/request/headers/x-tenant") != "t1" {
		t.Errorf("the mask erased what it does not name")
	}

	// The mask is swapped with the policy: the first decision of the new revision uses the new mask.
	before := h.srv.policy.Stats().Reloads
	mask("x-tenant")
	waitFor(t, "policy reload", func() bool { return h.srv.policy.Stats().Reloads > before })
	second := send()
	r = h.auditRecords(t, 2)[second]
	if get(r, "input/request/headers/x-tenant") != nil || get(r, "input/request/headers/x-user-email") != "ann@example.com" {
		t.Errorf("after reload, headers = %v, want x-tenant erased and x-user-email kept", get(r, "input/request/headers"))
	}
	if get(r, "bundles/policies/revision") == get(h.auditRecords(t, 2)[first], "bundles/policies/revision") {
		t.Errorf("the record after the reload names the old revision")
	}
}

// TestAuditNotReady: a 503 refusal has its record too.
func TestAuditNotReady(t *testing.T) {
	h := newHarness(t, false, func(c *Config) { c.Issuers = []string{"http://127.0.0.1:1/oidc"} })
	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + h.mint(*org("o1", "org:read"))}, "")))
	r := h.auditRecords(t, 1)[a.headers[headerDecisionID]]
	if a.status != 503 || r == nil || r["status"] != 503.0 || r["reason"] != reasonNotReady || r["allow"] != false {
		t.Errorf("answer %d, record %v; want a 503 not_ready record", a.status, r)
	}
}
