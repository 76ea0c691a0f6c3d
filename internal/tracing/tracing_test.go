package tracing_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/tracing"
	"github.com/orgauthz/orgauthz/internal/tracing/tracingtest"
)

func TestCheckEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"http://127.0.0.1:4318", true},
		{"https://otel.example.com/custom/v1/traces", true},
		{"otel-collector:4318", false},
		{"127.0.0.1:4318", false},
		{"grpc://127.0.0.1:4317", false},
		{"https://user:pass@otel.example.com", false},
		{"https://otel.example.com?x=1", false},
		{"https://otel.example.com#f", false},
		{"https://", false},
		{"", false},
	} {
		if err := tracing.CheckEndpoint(tc.endpoint); (err == nil) != tc.ok {
			t.Errorf("CheckEndpoint(%q) = %v, want ok %v", tc.endpoint, err, tc.ok)
		}
	}
}

// TestNewEndpointPath: a collector URL without a path gets /v1/traces; one with a path is used as is.
func TestNewEndpointPath(t *testing.T) {
	for _, suffix := range []string{"", "/", "/v1/traces"} {
		rec := tracingtest.NewReceiver(t)
		p, err := tracing.New(rec.URL()+suffix, "test-service", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("New(%q): %v", rec.URL()+suffix, err)
		}
		_, span := p.Tracer().Start(context.Background(), "op")
		span.End()
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("URL %q: Shutdown (flush) = %v", rec.URL()+suffix, err)
		}
		s := rec.Wait(t, 30*time.Second, "op", func(s tracingtest.Span) bool { return s.Name == "op" })
		if s.Service != "test-service" || s.ParentSpanID != "" {
			t.Errorf("URL %q: span = %+v, want a root span of test-service", rec.URL()+suffix, s)
		}
	}
}
