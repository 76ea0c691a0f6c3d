package sidecar

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// scrape GETs url and returns the status and body.
func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsAddr: with --metrics-addr, /metrics is served there only, the check endpoints are not,
// and the metrics name the version, the policy revision, decisions by route and reason, and JWKS
// fetches by issuer and result.
func TestMetricsAddr(t *testing.T) {
	h := newHarnessWith(t, true, func(s *Server) { s.cfg.MetricsAddr = "127.0.0.1:0" })
	waitFor(t, "metrics listening", func() bool { return h.srv.metricsAddr.Load() != nil })
	metricsURL := "http://" + h.srv.metricsAddr.Load().(string)

	tok := h.mint(tokenSpec{kind: "organization", org: "o1", scopes: "org:read"})
	h.allowedDecision(t, tok)
	if a := readAnswer(h.check(t, envoyRequest("DELETE", "/api/organizations/o1", map[string]string{"authorization": "Bearer " + tok}, ""))); a.status != 403 {
		t.Fatalf("DELETE with org:read only: status %d, want 403", a.status)
	}

	if st, _ := scrape(t, h.httpURL+"/metrics"); st != http.StatusNotFound {
		t.Errorf("GET /metrics on --http-addr with --metrics-addr set: status %d, want 404", st)
	}
	for _, path := range []string{"/forward-auth", "/envoy/api/organizations/o1", "/readyz"} {
		if st, _ := scrape(t, metricsURL+path); st != http.StatusNotFound {
			t.Errorf("GET %s on --metrics-addr: status %d, want 404", path, st)
		}
	}
	st, body := scrape(t, metricsURL+"/metrics")
	if st != http.StatusOK {
		t.Fatalf("GET /metrics on --metrics-addr: status %d", st)
	}
	for _, want := range []string{
		fmt.Sprintf(`orgauthz_sidecar_info{policy_revision=%q,version="dev"} 1`, h.srv.policy.Stats().Revision),
		`orgauthz_sidecar_decisions_total{reason="org_permission",result="allow",route="GET /api/organizations/{orgId}"} 1`,
		`orgauthz_sidecar_decisions_total{reason="missing_scope",result="deny",route=""} 1`,
		fmt.Sprintf(`orgauthz_sidecar_jwks_fetches_total{issuer=%q,result="error"} 0`, h.logto.Issuer()),
		fmt.Sprintf(`orgauthz_sidecar_jwks_fetches_total{issuer=%q,result="ok"} `, h.logto.Issuer()),
		"\ngo_gc_heap_live_bytes ", "\ngo_memstats_heap_inuse_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, tok) {
		t.Error("a token appears in /metrics")
	}
}

// TestMetricsOnHTTPAddr: without --metrics-addr, /metrics stays on --http-addr.
func TestMetricsOnHTTPAddr(t *testing.T) {
	h := newHarness(t, true)
	if st, body := scrape(t, h.httpURL+"/metrics"); st != http.StatusOK || !strings.Contains(body, "orgauthz_sidecar_info") {
		t.Errorf("GET /metrics on --http-addr: status %d, want 200 with orgauthz_sidecar_info", st)
	}
}

// TestBoundedLabel: a policy returning ever new reasons or routes cannot grow the metrics without
// bound; values seen before the cap keep their own series.
func TestBoundedLabel(t *testing.T) {
	var b boundedLabel
	for i := range maxLabelValues {
		if got := b.value(fmt.Sprintf("GET /r/%d", i)); got != fmt.Sprintf("GET /r/%d", i) {
			t.Fatalf("value %d = %q before the cap", i, got)
		}
	}
	if got := b.value("GET /r/new"); got != "other" {
		t.Errorf("a value past the cap = %q, want other", got)
	}
	if got := b.value("GET /r/7"); got != "GET /r/7" {
		t.Errorf("a value seen before the cap = %q, want it kept", got)
	}
	if got := b.value(""); got != "" {
		t.Errorf(`"" = %q, want "" (no route)`, got)
	}
}
