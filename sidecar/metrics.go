package sidecar

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orgauthz/orgauthz/internal/version"
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
	reasons       boundedLabel
	routes        boundedLabel
}

// maxLabelValues bounds the distinct reasons and routes of decisions_total: both come from the
// policy, which a mistake could make unbounded (a route naming an id instead of a template).
const maxLabelValues = 256

// boundedLabel passes the first maxLabelValues distinct values of a label and "other" after them.
type boundedLabel struct {
	seen sync.Map // string → struct{}
	n    atomic.Int32
}

func (b *boundedLabel) value(v string) string {
	if _, ok := b.seen.Load(v); ok || v == "" {
		return v
	}
	if b.n.Add(1) > maxLabelValues {
		b.n.Add(-1)
		return "other"
	}
	if _, loaded := b.seen.LoadOrStore(v, struct{}{}); loaded {
		b.n.Add(-1)
	}
	return v
}

// labelled is a collector of one metric whose label values are read at each scrape.
type labelled struct {
	desc    *prometheus.Desc
	collect func(desc *prometheus.Desc, ch chan<- prometheus.Metric)
}

func (c labelled) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c labelled) Collect(ch chan<- prometheus.Metric) { c.collect(c.desc, ch) }

// jwksFetches reports each issuer's key set fetches by result (ok, error); the issuers are the
// configured ones, so the label is bounded.
func jwksFetches(tokens *token.Verifier) labelled {
	return labelled{
		desc: prometheus.NewDesc("orgauthz_sidecar_jwks_fetches_total",
			"JWKS fetches by issuer and result: ok (keys installed) or error (failed or no usable key; the last good keys stayed).",
			[]string{"issuer", "result"}, nil),
		collect: func(desc *prometheus.Desc, ch chan<- prometheus.Metric) {
			for iss, f := range tokens.Fetches() {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(f.OK), iss, "ok")
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(f.Failed), iss, "error")
			}
		},
	}
}

// info is 1, labelled with the binary's version and the revision of the policy serving ("" before
// one loads), so a dashboard shows which policy every sidecar runs.
func info(pol *policy.Engine) labelled {
	return labelled{
		desc: prometheus.NewDesc("orgauthz_sidecar_info",
			"Always 1: the sidecar's version and the revision (hex SHA-256 of its files) of the policy serving.",
			[]string{"version", "policy_revision"}, nil),
		collect: func(desc *prometheus.Desc, ch chan<- prometheus.Metric) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, 1, version.String(), pol.Stats().Revision)
		},
	}
}

// newMetrics reads the verifier's and the policy engine's counters and ready at each scrape.
func newMetrics(tokens *token.Verifier, pol *policy.Engine, ready func() bool) *metrics {
	const ns = "orgauthz_sidecar"
	m := &metrics{
		registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "decisions_total",
			Help: "Checks answered, by result (allow, deny, error), reason and route template (\"\" when none; \"other\" past " +
				fmt.Sprint(maxLabelValues) + " distinct values).",
		}, []string{"result", "reason", "route"}),
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
		jwksFetches(tokens),
		info(pol),
		counter("policy_reloads_total", "Policies loaded and installed.",
			func() uint64 { return pol.Stats().Reloads }),
		counter("policy_reload_failures_total", "Policy loads rejected; the last good policy kept serving.",
			func() uint64 { return pol.Stats().ReloadFailures }),
		gauge("ready", "1 when signing keys and a policy are loaded.", ready),
		// go_gc_heap_live_bytes: the heap live at the last collection, what a leak grows
		// whatever GOGC is (go_memstats_heap_inuse_bytes also holds the garbage of the cycle).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) observe(v *verdict, latency time.Duration) {
	m.decisions.WithLabelValues(v.result(), m.reasons.value(v.reason), m.routes.value(v.route)).Inc()
	m.latency.Observe(latency.Seconds())
	if len(v.dropped) > 0 {
		m.headerDropped.Add(float64(len(v.dropped)))
	}
}

// listenMetrics listens on --metrics-addr and returns the server of /metrics there, or nils when
// the address is empty (/metrics is then on --http-addr).
func (s *Server) listenMetrics() (*http.Server, net.Listener, error) {
	if s.cfg.MetricsAddr == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("sidecar: metrics address %s: %w", s.cfg.MetricsAddr, err)
	}
	s.metricsAddr.Store(ln.Addr().String())
	metrics := promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          s.http.ErrorLog,
	}
	return srv, ln, nil
}
