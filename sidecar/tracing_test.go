package sidecar

import (
	"context"
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/orgauthz/orgauthz/internal/tracing"
	"github.com/orgauthz/orgauthz/internal/tracing/tracingtest"
)

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
)

// TestTracing: with --otlp-endpoint, each check (gRPC and /forward-auth) is a server span sent to
// the collector, the child of the traceparent the proxy sent, with the decision's facts and no
// token, decision or header value among its attributes.
func TestTracing(t *testing.T) {
	rec := tracingtest.NewReceiver(t)
	h := newHarness(t, true, func(c *Config) { c.OTLPEndpoint = rec.URL() })
	tok := h.mint(tokenSpec{kind: "organization", org: "o1", scopes: "org:read"})
	flush := func() {
		if err := h.srv.tracing.ForceFlush(context.Background()); err != nil {
			t.Fatalf("ForceFlush: %v", err)
		}
	}
	secrets := []string{tok}

	// gRPC: Envoy puts its traceparent among the checked request's headers.
	traceparent := "00-" + parentTrace + "-" + parentSpan + "-01"
	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1?page=1",
		map[string]string{"authorization": "Bearer " + tok, "traceparent": traceparent}, "")))
	if a.status != 200 {
		t.Fatalf("allowed check: status %d", a.status)
	}
	secrets = append(secrets, a.headers["x-orgauthz-decision"])
	flush()
	s := rec.Wait(t, waitLimit, "of the gRPC check", func(s tracingtest.Span) bool { return s.TraceID == parentTrace })
	want := map[string]string{
		"orgauthz.decision_id":      a.headers["x-orgauthz-decision-id"],
		"orgauthz.result":           "allow",
		"orgauthz.reason":           "org_permission",
		"orgauthz.token_kind":       "organization",
		"orgauthz.organization_id":  "o1",
		"http.route":                "GET /api/organizations/{orgId}",
		"http.request.method":       "GET",
		"http.response.status_code": "200",
	}
	if s.ParentSpanID != parentSpan || s.Kind != "SPAN_KIND_SERVER" || s.Service != serviceName || s.Name != "sidecar.Check" {
		t.Errorf("span = %+v, want a server span of %s, child of %s", s, serviceName, parentSpan)
	}
	for k, v := range want {
		if s.Attributes[k] != v {
			t.Errorf("span attribute %s = %q, want %q", k, s.Attributes[k], v)
		}
	}

	// /forward-auth: the traceparent comes with the proxy's subrequest; a refused token is a deny.
	otherTrace := strings.Repeat("ab", 16)
	ans := h.get(t, "/forward-auth", map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/organizations/o1?access_token=" + tok,
		"Authorization": "Bearer " + tok + "x", "Traceparent": "00-" + otherTrace + "-" + parentSpan + "-01"})
	if ans.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/forward-auth with a broken token: status %d, want 401", ans.StatusCode)
	}
	flush()
	s = rec.Wait(t, waitLimit, "of the /forward-auth check", func(s tracingtest.Span) bool { return s.TraceID == otherTrace })
	if s.ParentSpanID != parentSpan || s.Attributes["orgauthz.result"] != "deny" || s.Attributes["http.response.status_code"] != "401" {
		t.Errorf("/forward-auth span = %+v, want a deny 401, child of %s", s, parentSpan)
	}

	// No traceparent: a new trace; a malformed one is ignored the same way.
	for _, tp := range []string{"", "00-" + strings.Repeat("0", 32) + "-" + parentSpan + "-01", "garbage"} {
		headers := map[string]string{"authorization": "Bearer " + tok}
		if tp != "" {
			headers["traceparent"] = tp
		}
		a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", headers, "")))
		secrets = append(secrets, a.headers["x-orgauthz-decision"])
		flush()
		id := a.headers["x-orgauthz-decision-id"]
		s := rec.Wait(t, waitLimit, "of a check with traceparent "+tp, func(s tracingtest.Span) bool { return s.Attributes["orgauthz.decision_id"] == id })
		if s.ParentSpanID != "" || s.TraceID == strings.Repeat("0", 32) {
			t.Errorf("traceparent %q: span = %+v, want a root span of a new trace", tp, s)
		}
	}

	for _, s := range rec.Spans() {
		for k, v := range s.Attributes {
			for _, secret := range secrets {
				if strings.Contains(v, secret[strings.LastIndexByte(secret, '.')+1:]) {
					t.Errorf("span attribute %s carries a token or a decision", k)
				}
			}
			if strings.Contains(v, "access_token") {
				t.Errorf("span attribute %s carries the request's query", k)
			}
		}
	}
}

// TestSpanTraceID: the audit record's trace id is the span's when tracing is on, else the proxy's
// traceparent's; nothing from a malformed header.
func TestSpanTraceID(t *testing.T) {
	for _, tc := range []struct{ traceparent, want string }{
		{"00-" + parentTrace + "-" + parentSpan + "-01", parentTrace},
		{"00-" + parentTrace + "-" + parentSpan + "-00", parentTrace}, // not sampled, still the trace
		{"", ""},
		{"00-" + parentTrace + "-" + parentSpan, ""},
		{"00-" + strings.ToUpper(parentTrace) + "-" + parentSpan + "-01", ""},
		{"00-" + parentTrace + "\n-" + parentSpan + "-01", ""},
	} {
		raw := &rawRequest{headers: map[string]string{"traceparent": tc.traceparent}}
		if got := spanTraceID(context.Background(), raw); got != tc.want {
			t.Errorf("spanTraceID(traceparent %q) = %q, want %q", tc.traceparent, got, tc.want)
		}
	}
	// Tracing on: the span's trace, which continues the traceparent or starts a new trace.
	s := &Server{tracing: tracing.NewWithExporter(discardExporter{}, serviceName)}
	defer s.tracing.Shutdown(context.Background())
	for _, tp := range []string{"00-" + parentTrace + "-" + parentSpan + "-01", "garbage", ""} {
		raw := &rawRequest{headers: map[string]string{"traceparent": tp}}
		ctx, span := s.startSpan(context.Background(), raw)
		got := spanTraceID(ctx, raw)
		span.End()
		if want := span.SpanContext().TraceID().String(); got != want || (strings.HasPrefix(tp, "00-") && got != parentTrace) || len(got) != 32 {
			t.Errorf("tracing on, traceparent %q: spanTraceID = %q, want the span's %q", tp, got, want)
		}
	}
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkCheckTracing is BenchmarkCheck with tracing off (the default: no OpenTelemetry code
// runs) and on (a span per check, continuing a traceparent, batched to an exporter that drops them).
func BenchmarkCheckTracing(b *testing.B) {
	b.Run("off", func(b *testing.B) {
		srv, in := allowedCheck(b)
		benchChecks(b, srv, in)
	})
	b.Run("on", func(b *testing.B) {
		srv, in := allowedCheck(b)
		srv.tracing = tracing.NewWithExporter(discardExporter{}, serviceName)
		b.Cleanup(func() { srv.tracing.Shutdown(context.Background()) })
		benchChecks(b, srv, withHeader(in, "traceparent", "00-"+parentTrace+"-"+parentSpan+"-01"))
	})
}

func withHeader(in *authv3.CheckRequest, k, v string) *authv3.CheckRequest {
	in.GetAttributes().GetRequest().GetHttp().GetHeaders()[k] = v
	return in
}
