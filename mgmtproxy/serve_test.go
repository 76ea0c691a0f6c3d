package mgmtproxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/testkit"
)

// --metrics-addr serves /metrics there only; the listen address answers 404 for it and serves the rest.
func TestMetricsAddr(t *testing.T) {
	e := newEnv(t)
	cfg := e.proxy.cfg
	cfg.MetricsAddr = "127.0.0.1:9"
	cfg.DecisionLog = "off"
	s, err := cfg.Validate()
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.ListenAddr, s.cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0" // Validate wants a real port
	logs := &testkit.Buffer{}
	p, err := New(t.Context(), s, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	addrs := map[string]string{}
	waitFor(t, "both listeners", func() bool {
		for line := range strings.SplitSeq(logs.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Addr != "" {
				addrs[l.Msg] = "http://" + l.Addr
			}
		}
		return len(addrs) == 2
	})
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	main, metrics := addrs["mgmtproxy listening"], addrs["mgmtproxy metrics listening"]
	if code, body := get(metrics + "/metrics"); code != 200 || !strings.Contains(body, "orgauthz_mgmtproxy_revocation_failures_total") {
		t.Errorf("metrics address /metrics = %d", code)
	}
	if code, _ := get(main + "/metrics"); code != http.StatusNotFound {
		t.Errorf("listen address /metrics = %d, want 404", code)
	}
	if code, _ := get(main + "/healthz"); code != 200 {
		t.Errorf("listen address /healthz = %d", code)
	}
	if code, _ := get(metrics + "/healthz"); code != http.StatusNotFound {
		t.Errorf("metrics address /healthz = %d, want 404", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
