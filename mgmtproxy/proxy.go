// Package mgmtproxy is the credential-injecting proxy between Envoy and the Logto Management API. It
// knows a fixed list of operations (DESIGN's route table), accepts a request only with a signed decision
// from the sidecar for exactly that method and path (and body, when the decision binds one or the
// operation's policy reads it), and calls Logto with the M2M app's token, which it fetches with client
// credentials and caches. Users never hold Management API power; mgmtproxy never
// sends anything to Logto without a valid decision.
package mgmtproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/version"
	"github.com/orgauthz/orgauthz/revocation"
)

// Limits on what mgmtproxy reads.
const (
	maxBodyBytes     = 64 << 10 // request bodies; larger is 413
	maxUpstreamBytes = 8 << 20  // Logto answers mgmtproxy parses itself
	maxQueryValue    = 256      // one query parameter value
)

// Proxy is the mgmtproxy HTTP handler and server. Build it with New. It is split by job: approval.go
// checks the decision, upstream.go calls Logto, response.go maps statuses and shapes Logto's answers,
// token.go holds the M2M token, create.go and bulk.go are mgmtproxy's own operations.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	base     *url.URL                          // Logto's base URL
	verifier atomic.Pointer[decision.Verifier] // replaced when the key files change (reload.go)
	tokens   *tokenSource
	upstream http.RoundTripper // M2M bearer, 401 refetch, 403 auth.forbidden, metrics
	client   *http.Client      // for mgmtproxy's own calls (create-org steps, bulk)
	proxies  map[*operation]*httputil.ReverseProxy
	limiter  *rate.Limiter // paces bulk calls
	metrics  *metrics
	mux      *http.ServeMux // health, and metrics unless --metrics-addr
	metricsH http.Handler
	fields   []string // member fields kept
	store    *revocation.Store
	notify   *revocation.Notifier // nil without --revocation-notify
	auditLog *decisionlog.Logger  // nil for --decision-log off
	reloads  reloader
	closing  sync.Once
	closeErr error
}

// New builds a Proxy from the settings Config.Validate returned. ctx is the process lifetime: token
// fetches and the key and secret file watch use it. It calls nothing at Logto; /readyz says whether
// Logto issues a usable token. A Redis revocation store is tried once and retried in the background.
// Close releases the store and flushes the audit stream.
func New(ctx context.Context, s *Settings, logger *slog.Logger) (*Proxy, error) {
	if s == nil {
		return nil, errors.New("mgmtproxy: New needs the Settings of Config.Validate")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := s.cfg
	p := &Proxy{
		cfg:     cfg,
		log:     logger,
		base:    s.base,
		notify:  s.notify,
		proxies: map[*operation]*httputil.ReverseProxy{},
		limiter: rate.NewLimiter(s.bulkLimit, min(s.bulkBurst, cfg.BulkConcurrency)),
		metrics: newMetrics(),
		fields:  s.memberFields,
	}

	transport := UpstreamTransport(cfg.UpstreamTimeout)
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	tokenClient := &http.Client{Transport: transport, Timeout: cfg.UpstreamTimeout, CheckRedirect: noRedirect}
	p.tokens = &tokenSource{
		conf: clientcredentials.Config{
			ClientID:       cfg.M2MAppID,
			ClientSecret:   s.secret,
			TokenURL:       s.base.JoinPath("oidc", "token").String(),
			Scopes:         []string{"all"},
			EndpointParams: url.Values{"resource": {s.resource}},
			AuthStyle:      oauth2.AuthStyleInHeader, // Basic auth; auto-detection would send the secret twice on a 401
		},
		ctx:     context.WithValue(ctx, oauth2.HTTPClient, tokenClient),
		timeout: cfg.UpstreamTimeout,
		now:     time.Now,
		fetched: p.metrics.tokenFetched,
		log:     logger,
	}
	p.upstream = &upstream{next: &oauth2.Transport{Source: p.tokens, Base: p.traced(ctx, transport)}, tokens: p.tokens, metrics: p.metrics}
	p.client = &http.Client{Transport: p.upstream, CheckRedirect: noRedirect}

	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	for i := range operations {
		op := &operations[i]
		if op.action == bulkCreate || op.action == bulkDelete {
			continue
		}
		p.proxies[op] = &httputil.ReverseProxy{
			Rewrite:        p.rewrite,
			Transport:      p.upstream,
			ModifyResponse: p.modifyResponse(op),
			ErrorHandler:   p.proxyError,
			ErrorLog:       errLog,
			BufferPool:     copyBuffers,
		}
	}

	p.mux = http.NewServeMux()
	p.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	p.mux.HandleFunc("GET /readyz", p.serveReady)
	p.verifier.Store(s.verifier)
	var err error
	if p.store, err = revocation.Open(ctx, s.storeURL, revocation.Options{Logger: logger}); err != nil {
		return nil, fmt.Errorf("mgmtproxy: --revocation-store: %w", err)
	}
	if p.auditLog, err = decisionlog.Open(cfg.DecisionLog, decisionlog.Options{Service: "mgmtproxy", Version: version.String(), Log: logger}); err != nil {
		p.store.Close()
		return nil, fmt.Errorf("mgmtproxy: --decision-log: %w", err)
	}
	p.metrics.reg.MustRegister(p.auditLog.Collectors()...)
	p.metricsH = promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{})
	if cfg.MetricsAddr == "" {
		p.mux.Handle("GET /metrics", p.metricsH)
	}
	p.reloads = reloader{p: p, keyPaths: cfg.DecisionPublicKeys, secretPath: cfg.M2MAppSecretFile, secret: s.secret, interval: reloadInterval}
	p.reloads.start(ctx)
	return p, nil
}

// Close flushes the audit stream and closes the revocation store, once. Serve calls it when it returns.
func (p *Proxy) Close() error {
	p.closing.Do(func() { p.closeErr = errors.Join(p.auditLog.Close(), p.store.Close()) })
	return p.closeErr
}

// serveReady answers 200 when a usable M2M token is cached or can be fetched now, else 503 with the
// reason (m2m_token_unavailable, m2m_forbidden).
func (p *Proxy) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.UpstreamTimeout)
	defer cancel()
	if err := p.tokens.ready(ctx); err != nil {
		_, reason, msg := classify(err)
		p.log.Warn("not ready", "reason", reason, "err", err)
		writeError(w, http.StatusServiceUnavailable, reason, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Serve listens on Config.ListenAddr (and MetricsAddr when set) and serves until ctx ends, then shuts
// down gracefully and closes the Proxy.
func (p *Proxy) Serve(ctx context.Context) error {
	defer p.Close()
	ln, err := listen(p.cfg.ListenAddr)
	if err != nil {
		return err
	}
	if p.cfg.MetricsAddr == "" {
		return p.serve(ctx, ln, p, "mgmtproxy listening")
	}
	mln, err := listen(p.cfg.MetricsAddr)
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.metricsH)
	ctx, stop := context.WithCancel(ctx) // one server failing stops the other
	defer stop()
	errs := make(chan error, 2)
	go func() { errs <- p.serve(ctx, mln, mux, "mgmtproxy metrics listening") }()
	go func() { errs <- p.serve(ctx, ln, p, "mgmtproxy listening") }()
	err = <-errs
	stop()
	return errors.Join(err, <-errs)
}

// serve serves h on ln until ctx ends.
func (p *Proxy) serve(ctx context.Context, ln net.Listener, h http.Handler, msg string) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // a paced bulk request of 100 items takes a while
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		// Requests keep running after ctx ends (SIGTERM): Shutdown lets them finish, up to its limit.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(sctx)
	}()
	p.log.Info(msg, "addr", ln.Addr().String(), "logto", p.base.String(), "operations", len(operations))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mgmtproxy: serve: %w", err)
	}
	return <-done
}

// listen opens a TCP listener, or a Unix socket for "unix:/path" (replacing a stale socket file).
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("mgmtproxy: listen: %w", err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("mgmtproxy: listen: %w", err)
	}
	return ln, nil
}

// copyBuffers lends the reverse proxies the 32 KiB buffer each copies an answer through. Without it
// every forwarded request allocated one: two thirds of mgmtproxy's allocation, and so of its GC work.
// It keeps at most 64 idle buffers (2 MiB); a channel rather than a sync.Pool, whose Put of a slice
// would itself allocate.
var copyBuffers = make(bufferPool, 64)

type bufferPool chan []byte

func (b bufferPool) Get() []byte {
	select {
	case buf := <-b:
		return buf
	default:
		return make([]byte, 32<<10)
	}
}

func (b bufferPool) Put(buf []byte) {
	select {
	case b <- buf:
	default: // enough idle buffers: let this one go
	}
}

// ServeHTTP serves the health endpoints and otherwise one operation, after checking its decision.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
		p.mux.ServeHTTP(w, r)
		return
	}
	r = p.withTrace(r)
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	var req request
	x := &exchange{req: &req}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			p.log.Error("panic serving request", "panic", fmt.Sprint(v), "method", r.Method)
			if rec.status == 0 {
				writeError(rec, http.StatusInternalServerError, "internal_error", "mgmtproxy failed")
			}
		}
		status := p.logRequest(r, rec, &req, time.Since(start))
		p.audit(r, rec, x, start, status)
	}()
	if ref := p.approve(r, &req); ref != nil {
		p.refuse(rec, &req, ref)
		return
	}
	switch req.op.action {
	case createOrg:
		p.createOrganization(rec, r, &req)
	case bulkCreate, bulkDelete:
		p.bulk(rec, r, &req)
	default:
		p.forward(rec, r, &req)
	}
}

// refuse answers ref before any call to Logto.
func (p *Proxy) refuse(rec *recorder, req *request, ref *refusal) {
	p.metrics.rejections.WithLabelValues(ref.reason).Inc()
	rec.reason, req.refusal = ref.reason, ref
	writeError(rec, ref.status, ref.reason, ref.message)
}

// recorder remembers the status for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	reason string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequest writes the one log line of a request (never a token, a secret or a body) and returns the
// status answered.
func (p *Proxy) logRequest(r *http.Request, rec *recorder, req *request, d time.Duration) int {
	route := "none"
	if req.op != nil {
		route = req.op.route
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	p.metrics.requests.WithLabelValues(route, fmt.Sprint(status)).Inc()
	p.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", req.path),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	if rec.reason != "" {
		attrs = append(attrs, slog.String("reason", rec.reason))
	}
	if ref := req.refusal; ref != nil && ref.cause != nil {
		attrs = append(attrs, slog.String("error", ref.cause.Error()))
		if kid := ref.kid(); kid != "" {
			attrs = append(attrs, slog.String("kid", truncate(kid, 64)))
		}
	}
	if c := req.claims; c != nil {
		attrs = append(attrs, slog.String("decision_id", c.ID), slog.String("subject", c.Subject), slog.String("kind", c.Kind))
		if c.Org != "" {
			attrs = append(attrs, slog.String("organization_id", c.Org))
		}
	}
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	return status
}

// truncate cuts s to at most n bytes, for outside strings in log lines.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
