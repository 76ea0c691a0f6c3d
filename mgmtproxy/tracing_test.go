package mgmtproxy

import (
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/tracing/tracingtest"
)

// TestTracingContinuesTraceparent: with --otlp-endpoint, the call to Logto is a client span, child
// of the traceparent the request carried; Logto gets that span's traceparent; no attribute holds
// the decision, the M2M secret or its bearer token.
func TestTracingContinuesTraceparent(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20") // ms: export at once instead of every 5 s
	rec := tracingtest.NewReceiver(t)
	e := newEnv(t, func(c *Config) { c.OTLPEndpoint = rec.URL() })
	const trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	path := "/api/organizations/" + e.org
	dec := e.sign(t, adminClaims("GET", path, "GET /api/organizations/{orgId}"))
	if r := e.do(t, "GET", path+"?page=1", "", dec, "Traceparent", "00-"+trace+"-"+parent+"-01"); r.status != 200 {
		t.Fatalf("GET %s: status %d (%s)", path, r.status, r.body)
	}
	s := rec.Wait(t, time.Minute, "of the Logto call", func(s tracingtest.Span) bool { return s.TraceID == trace })
	if s.ParentSpanID != parent || s.Kind != "SPAN_KIND_CLIENT" || s.Service != "orgauthz-mgmtproxy" {
		t.Errorf("span = %+v, want a client span of orgauthz-mgmtproxy, child of %s", s, parent)
	}
	if s.Attributes["url.path"] != path || s.Attributes["http.request.method"] != "GET" || s.Attributes["http.response.status_code"] != "200" {
		t.Errorf("span attributes = %v, want GET %s 200", s.Attributes, path)
	}
	m := e.management()
	if got, want := m[len(m)-1].header.Get("Traceparent"), "00-"+trace+"-"+s.SpanID+"-01"; got != want {
		t.Errorf("Logto got traceparent %q, want %q (the client span's)", got, want)
	}
	secrets := append([]string{testSecret, dec[strings.LastIndexByte(dec, '.')+1:]}, e.bearers()...)
	for _, s := range rec.Spans() {
		for k, v := range s.Attributes {
			for _, secret := range secrets {
				if strings.Contains(v, secret) {
					t.Errorf("span attribute %s holds a secret, a token or the decision", k)
				}
			}
			if strings.Contains(v, "page=") {
				t.Errorf("span attribute %s holds the query", k)
			}
		}
	}
}

// TestTracingOffLeavesTransport: without --otlp-endpoint the upstream transport is not wrapped.
func TestTracingOffLeavesTransport(t *testing.T) {
	e := newEnv(t)
	if rt := e.proxy.traced(t.Context(), nil); rt != nil {
		t.Errorf("traced with tracing off = %T, want the transport itself", rt)
	}
}
