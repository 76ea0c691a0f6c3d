package sidecar

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orgauthz/orgauthz/sidecar/internal/policy"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// metrics are the Server's Prometheus metrics, in a registry of its own so that several Servers
// (tests) never collide.
type metrics struct {
	registry      *prometheus.Registry
	decisions     *prometheus.CounterVec
	latency       prometheus.Histogram
	headerDropped prometheus.Counter
	webhooks      *prometheus.CounterVec // by answer status (revocation.go)
}

// newMetrics reads the verifier's and the policy engine's counters and ready at each scrape.
func newMetrics(tokens *token.Verifier, pol *policy.Engine, ready func() bool) *metrics {
	const ns = "orgauthz_sidecar"
	m := &metrics{
		registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "decisions_total",
			Help: "Checks answered, by result (allow, deny, error) and reason.",
		}, []string{"result", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "check_duration_seconds",
			Help:    "Time to answer one check, from request to response.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		headerDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "policy_headers_dropped_total",
			Help: "Headers a policy asked for that the sidecar refused to set.",
		}),
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() bool) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help},
			func() float64 {
				if f() {
					return 1
				}
				return 0
			})
	}
	m.registry.MustRegister(
		m.decisions, m.latency, m.headerDropped,
		counter("token_cache_hits_total", "Token verifications answered from the claims cache.",
			func() uint64 { return tokens.Stats().CacheHits }),
		counter("token_cache_misses_total", "Token verifications done in full.",
			func() uint64 { return tokens.Stats().CacheMisses }),
		counter("jwks_fetches_total", "JWKS fetches started, every issuer.",
			func() uint64 { return tokens.Stats().JWKSFetches }),
		counter("jwks_fetch_errors_total", "JWKS fetches that failed or brought no usable key.",
			func() uint64 { return tokens.Stats().JWKSFetchErrors }),
		counter("policy_reloads_total", "Policies loaded and installed.",
			func() uint64 { return pol.Stats().Reloads }),
		counter("policy_reload_failures_total", "Policy loads rejected; the last good policy kept serving.",
			func() uint64 { return pol.Stats().ReloadFailures }),
		gauge("ready", "1 when signing keys and a policy are loaded.", ready),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) observe(v *verdict, latency time.Duration) {
	m.decisions.WithLabelValues(v.result(), v.reason).Inc()
	m.latency.Observe(latency.Seconds())
	if len(v.dropped) > 0 {
		m.headerDropped.Add(float64(len(v.dropped)))
	}
}
