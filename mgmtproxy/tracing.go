package mgmtproxy

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgauthz/orgauthz/internal/tracing"
)

// Tracing (--otlp-endpoint): each call to the Management API is a client span, the child of the
// W3C traceparent the request to mgmtproxy carried (Envoy's), and Logto gets the span's
// traceparent. Off, the incoming request and the transport are left as they are. The hooks
// elsewhere are three lines: the Config field and its check, withTrace in ServeHTTP, traced in New.

// checkOTLPEndpoint is Validate's check of --otlp-endpoint.
func checkOTLPEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	return tracing.CheckEndpoint(endpoint)
}

// withTrace returns r carrying the remote span context of its traceparent, when tracing is on.
func (p *Proxy) withTrace(r *http.Request) *http.Request {
	if p.cfg.OTLPEndpoint == "" || r.Header.Get("Traceparent") == "" {
		return r
	}
	return r.WithContext(tracing.Extract(r.Context(), func(name string) string { return r.Header.Get(name) }))
}

// traced returns next wrapped in client spans sent to --otlp-endpoint, or next itself when tracing
// is off. The spans are flushed when ctx, the process lifetime, ends.
func (p *Proxy) traced(ctx context.Context, next http.RoundTripper) http.RoundTripper {
	if p.cfg.OTLPEndpoint == "" {
		return next
	}
	prov, err := tracing.New(p.cfg.OTLPEndpoint, "orgauthz-mgmtproxy", p.log)
	if err != nil { // Validate checked the URL: not expected
		p.log.Error("tracing off", "err", err)
		return next
	}
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		prov.Shutdown(sctx)
	})
	return &tracedTransport{next: next, tracer: prov.Tracer()}
}

type tracedTransport struct {
	next   http.RoundTripper
	tracer trace.Tracer
}

// RoundTrip makes the call a client span. Attributes: method, Logto's host, the path (the one the
// decision approved; never the query) and the status; never a header, so never the M2M bearer.
func (t *tracedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(req.Context(), "mgmtproxy.Logto", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", req.URL.Host),
			attribute.String("url.path", req.URL.Path),
		))
	defer span.End()
	out := req.Clone(ctx)
	tracing.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		span.SetStatus(codes.Error, "no answer from Logto")
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, resp.Status)
	}
	return resp, nil
}
