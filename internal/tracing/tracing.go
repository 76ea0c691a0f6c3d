// Package tracing is the OpenTelemetry set-up both binaries share: spans sent to an OTLP/HTTP
// collector (--otlp-endpoint, off when empty) and the W3C trace context (traceparent) read from a
// request and written into the next one. Off, nothing of it runs: callers keep a nil *Provider.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/orgauthz/orgauthz/internal/version"
)

// propagator reads and writes the W3C traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// Provider makes the spans of one binary and sends them in batches. It is safe for concurrent use.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// CheckEndpoint accepts an http(s) URL without user, query or fragment.
func CheckEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("not an http(s) URL without user, query or fragment")
	}
	return nil
}

// New returns a Provider sending to the OTLP/HTTP (protobuf) collector at endpoint: a URL without
// a path gets /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT does; one with a path is used as is.
// service is the service.name of the spans. Export failures go to log, never stop a request.
func New(endpoint, service string, log *slog.Logger) (*Provider, error) {
	if err := CheckEndpoint(endpoint); err != nil {
		return nil, fmt.Errorf("tracing: --otlp-endpoint %q: %w", endpoint, err)
	}
	u, _ := url.Parse(endpoint)
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("otlp export failed", "endpoint", u.Redacted(), "err", err)
	}))
	return NewWithExporter(exp, service), nil
}

// NewWithExporter returns a Provider batching spans to exp.
func NewWithExporter(exp sdktrace.SpanExporter, service string) *Provider {
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		// A sampled caller's trace is kept whole, an unsampled one is not recorded; a request without
		// a traceparent starts a sampled trace.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", service),
			attribute.String("service.version", version.String()),
		)),
	)
	return &Provider{tp: tp, tracer: tp.Tracer("github.com/orgauthz/orgauthz")}
}

// Tracer returns the Provider's tracer.
func (p *Provider) Tracer() trace.Tracer { return p.tracer }

// ForceFlush sends every ended span now.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// Shutdown sends the spans still batched and stops.
func (p *Provider) Shutdown(ctx context.Context) error { return p.tp.Shutdown(ctx) }

// Extract returns ctx with the remote span context of the traceparent (and tracestate) that get
// reads from a request's headers (get takes lower-case names); ctx unchanged when there is none or
// it is malformed.
func Extract(ctx context.Context, get func(name string) string) context.Context {
	return propagator.Extract(ctx, getter(get))
}

// Inject writes the span context of ctx into a request's headers as traceparent (and tracestate).
func Inject(ctx context.Context, h propagation.TextMapCarrier) { propagator.Inject(ctx, h) }

// TraceID returns the trace id of ctx's span, or else of the traceparent get reads, as 32 hex
// digits; "" when neither holds a valid one. Audit records carry it.
func TraceID(ctx context.Context, get func(name string) string) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	if get == nil || get("traceparent") == "" {
		return ""
	}
	if sc := trace.SpanContextFromContext(Extract(context.Background(), get)); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

type getter func(string) string

func (g getter) Get(key string) string { return g(key) }
func (g getter) Set(string, string)    {}
func (g getter) Keys() []string        { return nil }
