package sidecar

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/tracing"
)

// serviceName is the service.name of the sidecar's spans.
const serviceName = "orgauthz-sidecar"

// startTracing sets up --otlp-endpoint; off (nil) when it is empty, so a check pays nothing.
func (s *Server) startTracing() error {
	if s.cfg.OTLPEndpoint == "" {
		return nil
	}
	p, err := tracing.New(s.cfg.OTLPEndpoint, serviceName, s.log)
	if err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	s.tracing = p
	return nil
}

// stopTracing sends the spans still batched.
func (s *Server) stopTracing(ctx context.Context) {
	if s.tracing != nil {
		if err := s.tracing.Shutdown(ctx); err != nil {
			s.log.Warn("otlp: spans lost at shutdown", "err", err)
		}
	}
}

// startSpan begins the span of one check as a child of the W3C traceparent the proxy sent (Envoy
// puts its own in the checked request's headers), or of a new trace. span is nil when tracing is off.
func (s *Server) startSpan(ctx context.Context, raw *rawRequest) (_ context.Context, span trace.Span) {
	if s.tracing == nil {
		return ctx, nil
	}
	ctx = tracing.Extract(ctx, func(name string) string { return raw.headers[name] })
	ctx, span = s.tracing.Tracer().Start(ctx, "sidecar.Check", trace.WithSpanKind(trace.SpanKindServer))
	raw.traceID = span.SpanContext().TraceID().String() // the audit record's, also without a traceparent
	return ctx, span
}

// endSpan records the verdict on the span and ends it. Attributes are the decision's bounded
// facts only: never a header value, a token or the path (which carries whatever the client
// typed), but the route template.
func endSpan(span trace.Span, id string, req *request, v *verdict) {
	if span == nil {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("orgauthz.decision_id", id),
		attribute.String("orgauthz.result", v.result()),
		attribute.String("orgauthz.reason", v.reason),
		attribute.Int("http.response.status_code", v.status),
	}
	if req != nil && decision.ValidMethod(req.method) {
		attrs = append(attrs, attribute.String("http.request.method", req.method))
	}
	if v.route != "" {
		attrs = append(attrs, attribute.String("http.route", v.route))
	}
	if c := v.claims; c != nil {
		attrs = append(attrs, attribute.String("orgauthz.token_kind", string(c.Kind)))
		if c.OrganizationID != "" {
			attrs = append(attrs, attribute.String("orgauthz.organization_id", c.OrganizationID))
		}
	}
	span.SetAttributes(attrs...)
	if v.status >= 500 {
		span.SetStatus(codes.Error, v.reason)
	}
	span.End()
}

// spanTraceID is the trace id of a check for its audit record: its span's when tracing is on (ctx from
// startSpan), else the one of the request's traceparent header; "" when there is none.
func spanTraceID(ctx context.Context, raw *rawRequest) string {
	return tracing.TraceID(ctx, func(name string) string { return raw.headers[name] })
}
