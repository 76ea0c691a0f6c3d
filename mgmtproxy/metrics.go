package mgmtproxy

import (
	"regexp"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics live in the Proxy's own registry, so several Proxies (tests) never collide.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec   // route, code
	duration     *prometheus.HistogramVec // route
	upstream     *prometheus.CounterVec   // code ("error" when no answer)
	tokenFetches *prometheus.CounterVec   // result
	rejections   *prometheus.CounterVec   // reason
	undoFailures prometheus.Counter
	// revocationFailures: watermarks of a change that the store did not take or a sidecar did not get.
	revocationFailures *prometheus.CounterVec // stage: store, notify
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgauthz_mgmtproxy_requests_total",
			Help: "Requests answered, by operation route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orgauthz_mgmtproxy_request_duration_seconds",
			Help:    "Time to answer a request, by operation route.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"route"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgauthz_mgmtproxy_upstream_responses_total",
			Help: "Management API calls, by Logto's status code (\"error\" when Logto did not answer).",
		}, []string{"code"}),
		tokenFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgauthz_mgmtproxy_token_fetches_total",
			Help: "M2M token requests to Logto's token endpoint, by result.",
		}, []string{"result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgauthz_mgmtproxy_rejections_total",
			Help: "Requests refused before any call to Logto, by reason (decision_* reasons come from the signed decision).",
		}, []string{"reason"}),
		undoFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgauthz_mgmtproxy_create_org_undo_failures_total",
			Help: "Organizations left behind because setting them up failed and deleting them failed too (the log names them).",
		}),
		revocationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgauthz_mgmtproxy_revocation_failures_total",
			Help: "Changes whose revocation watermarks the store did not take (stage store: not shared through Redis yet) or a --revocation-notify sidecar did not get (stage notify).",
		}, []string{"stage"}),
	}
	m.revocationFailures.WithLabelValues("store")
	m.revocationFailures.WithLabelValues("notify")
	m.reg.MustRegister(m.requests, m.duration, m.upstream, m.tokenFetches, m.rejections, m.undoFailures, m.revocationFailures,
		// go_gc_heap_live_bytes, as the sidecar's: the heap live at the last collection.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) upstreamStatus(code int) { m.upstream.WithLabelValues(strconv.Itoa(code)).Inc() }

func (m *metrics) tokenFetched(ok bool) {
	if ok {
		m.tokenFetches.WithLabelValues("ok").Inc()
	} else {
		m.tokenFetches.WithLabelValues("error").Inc()
	}
}
