package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/tracing"
	"github.com/orgauthz/orgauthz/revocation"
	"github.com/orgauthz/orgauthz/sidecar/internal/policy"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// Server bounds.
const (
	maxRecvMsgBytes = 1 << 20 // a CheckRequest: headers, a path and a bounded body
	shutdownTimeout = 10 * time.Second
)

var _ authv3.AuthorizationServer = (*Server)(nil)

// Server answers Envoy's ext_authz checks over gRPC and the same checks over HTTP. It is safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tokens  *token.Verifier
	policy  *policy.Engine
	signer  *signerFile
	trusted []netip.Prefix
	metrics *metrics
	grpc    *grpc.Server
	http    *http.Server
	revoc   *revocation.Store // revocation watermarks (revocation.go)
	webhook http.Handler      // POST /logto/webhooks; nil without a signing key

	metricsAddr atomic.Value      // string: where --metrics-addr listens, once it does
	tracing     *tracing.Provider // nil when --otlp-endpoint is empty

	// beforeEval, when set, runs in the decision path after the request is checked: tests use it
	// to inject a panic.
	beforeEval func()

	// auditState is the --decision-log stream, closed when ServeListeners returns.
	auditState auditState
	// opa is OPA's plugin manager (opa.go), nil without --opa-config; stopped when ServeListeners returns.
	opa *opaRuntime
}

// New builds a Server from a validated configuration. The token key sets start loading and the
// policy directory is loaded and watched; both follow ctx, which should live as long as the
// Server. A policy that does not load leaves the Server not ready (every check answers 503)
// until a good one appears.
func New(ctx context.Context, v *Valid, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := v.Config
	tc := v.tokens
	tc.Logger = logger
	tokens, err := token.New(ctx, tc)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     logger,
		tokens:  tokens,
		policy:  policy.New(cfg.Policies, policy.Options{}),
		signer:  newSignerFile(cfg.DecisionKey, v.signer, logger),
		trusted: v.trusted,
	}
	s.metrics = newMetrics(s.tokens, s.policy, s.Ready)
	if err := s.openRevocation(ctx, v.revoc); err != nil {
		return nil, err
	}
	s.signer.watch(ctx)
	if err := s.startTracing(); err != nil {
		return nil, err
	}
	if v.opa != nil {
		if s.opa, err = newOPARuntime(v.opa, logger); err != nil {
			return nil, fmt.Errorf("sidecar: --opa-config %s: %w", cfg.OPAConfig, err)
		}
	}
	if err := s.openAudit(); err != nil {
		return nil, fmt.Errorf("sidecar: --decision-log: %w", err)
	}
	if s.opa != nil {
		if err := s.startOPA(ctx, s.opa); err != nil {
			return nil, err
		}
	}
	if s.opa != nil && s.opa.policy != nil {
		logger.Info("policy comes from the --opa-config bundles, not --policies: every check answers 503 until a bundle is installed")
	} else {
		s.loadPolicyDir(ctx)
	}

	s.grpc = grpc.NewServer(
		// Long-lived workers keep the stack that OPA's recursive evaluator grew; a fresh goroutine per
		// check regrew and copied it every time (a quarter of the warm CPU profile in BENCHMARKS.md).
		// grpc-go hands a stream to a worker only if one is idle at that instant, so there are enough
		// for a burst of concurrent checks (32 per core measured ~5 % less CPU per check than 2).
		grpc.NumStreamWorkers(uint32(32*runtime.GOMAXPROCS(0))),
		grpc.MaxRecvMsgSize(maxRecvMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	)
	authv3.RegisterAuthorizationServer(s.grpc, s)
	healthpb.RegisterHealthServer(s.grpc, healthServer{s: s})
	if cfg.GRPCReflection {
		reflection.Register(s.grpc)
	}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// loadPolicyDir loads the --policies directory and watches it for changes.
func (s *Server) loadPolicyDir(ctx context.Context) {
	logger, cfg := s.log, s.cfg
	if err := s.policy.Load(ctx); err != nil {
		logger.Error("policy not loaded: every check answers 503 until a policy loads", "dir", cfg.Policies, "err", err)
	} else {
		logger.Info("policy loaded", "dir", cfg.Policies, "revision", s.policy.Stats().Revision)
	}
	go func() {
		err := s.policy.Watch(ctx, func(err error) {
			if err != nil {
				logger.Error("policy reload rejected; the last good policy keeps serving", "dir", cfg.Policies, "err", err)
				return
			}
			logger.Info("policy reloaded", "dir", cfg.Policies, "revision", s.policy.Stats().Revision)
		})
		if err != nil {
			logger.Error("policy directory not watched: changes need a restart", "dir", cfg.Policies, "err", err)
		}
	}()
}

// Ready reports whether the Server can decide: keys loaded for some issuer, a policy loaded and the
// revocation watermarks loaded once. Issuers are independent: the tokens of an issuer without keys
// are 503 not_ready, the others' are decided.
func (s *Server) Ready() bool { return s.tokens.Ready() && s.policy.Ready() && s.revoc.Ready() }

// Serve listens on the configured addresses and serves until ctx ends, then stops gracefully.
func (s *Server) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	gl, err := lc.Listen(ctx, "tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("sidecar: gRPC address %s: %w", s.cfg.GRPCAddr, err)
	}
	hl, err := lc.Listen(ctx, "tcp", s.cfg.HTTPAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("sidecar: HTTP address %s: %w", s.cfg.HTTPAddr, err)
	}
	return s.ServeListeners(ctx, gl, hl)
}

// ServeListeners serves gRPC on grpcLn, HTTP on httpLn and, when --metrics-addr is set, /metrics on
// a listener of its own at that address, until ctx ends or a server fails, then stops them gracefully (in-flight checks finish, at most shutdownTimeout). It takes
// ownership of the listeners and may be called once.
func (s *Server) ServeListeners(ctx context.Context, grpcLn, httpLn net.Listener) error {
	metricsSrv, metricsLn, err := s.listenMetrics()
	if err != nil {
		grpcLn.Close()
		httpLn.Close()
		return err
	}
	s.log.Info("sidecar serving", "grpc", grpcLn.Addr().String(), "http", httpLn.Addr().String(), "metrics", s.cfg.MetricsAddr)
	errc := make(chan error, 3)
	go func() {
		if err := s.grpc.Serve(grpcLn); err != nil {
			errc <- fmt.Errorf("sidecar: gRPC: %w", err)
			return
		}
		errc <- nil
	}()
	go func() {
		if err := s.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("sidecar: HTTP: %w", err)
			return
		}
		errc <- nil
	}()

	pending := 2
	if metricsSrv != nil {
		pending++
		go func() {
			if err := metricsSrv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("sidecar: metrics HTTP: %w", err)
				return
			}
			errc <- nil
		}()
	}

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc:
		pending--
		errs = append(errs, err)
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(shutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.grpc.Stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("sidecar: HTTP shutdown: %w", err))
	}
	if metricsSrv != nil {
		metricsSrv.Close() // a scrape needs no grace
	}
	s.stopTracing(sctx)
	for ; pending > 0; pending-- {
		errs = append(errs, <-errc)
	}
	if err := s.revoc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("sidecar: revocation store: %w", err))
	}
	if err := s.auditState.log.Close(); err != nil {
		errs = append(errs, fmt.Errorf("sidecar: --decision-log: %w", err))
	}
	octx, ocancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer ocancel()
	s.opa.stop(octx) // after the audit stream: its last records are uploaded
	return errors.Join(errs...)
}

// Check implements envoy.service.auth.v3.Authorization. Every outcome, a panic included, is a
// CheckResponse with its status set; it never returns an error, so Envoy's status_on_error is
// never needed to fail closed.
func (s *Server) Check(ctx context.Context, in *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	start := time.Now()
	var raw *rawRequest
	var span trace.Span
	defer func() {
		if p := recover(); p != nil {
			if raw == nil {
				raw = &rawRequest{id: decisionlog.NewID()}
			}
			v := &verdict{status: http.StatusServiceUnavailable, reason: reasonInternalError, err: fmt.Errorf("sidecar: check panicked: %v", p)}
			s.record(raw, nil, v, start)
			endSpan(span, raw.id, nil, v)
			resp, err = checkResponse(nil, raw.id, v), nil
		}
	}()
	raw = fromCheckRequest(in)
	ctx, span = s.startSpan(ctx, raw)
	req, v := s.decide(ctx, raw)
	s.record(raw, req, v, start)
	endSpan(span, raw.id, req, v)
	return checkResponse(req, raw.id, v), nil
}

// decide is the one decision path of every endpoint: DESIGN's request flow, steps 2 to 8.
func (s *Server) decide(ctx context.Context, raw *rawRequest) (*request, *verdict) {
	req, rej := parseRequest(raw, s.cfg.MaxBodyBytes)
	if rej != nil {
		return req, &verdict{status: rej.status, reason: rej.reason}
	}
	if s.beforeEval != nil {
		s.beforeEval()
	}
	unavailable := func(reason string, err error) (*request, *verdict) {
		return req, &verdict{status: http.StatusServiceUnavailable, reason: reason, err: err}
	}
	if !s.Ready() {
		return unavailable(reasonNotReady, nil)
	}
	var claims *token.Claims
	if req.bearer != "" {
		c, err := s.tokens.Verify(ctx, req.bearer)
		var te *token.Error
		switch {
		case errors.As(err, &te):
			return req, &verdict{status: http.StatusUnauthorized, reason: te.Reason}
		case errors.Is(err, token.ErrNotReady):
			return unavailable(reasonNotReady, err)
		case err != nil:
			return unavailable(reasonTokenError, err)
		}
		if !httpguts.ValidHeaderFieldValue(c.Subject) {
			// A subject the identity header cannot carry; Logto's never look like this.
			return req, &verdict{status: http.StatusUnauthorized, reason: token.ReasonClaims}
		}
		if s.revoked(c) {
			return req, &verdict{status: http.StatusUnauthorized, reason: reasonTokenRevoked, claims: c}
		}
		claims = c
	}
	input, err := buildInput(req, claims)
	if err != nil {
		return unavailable(reasonPolicyError, err)
	}
	evalStart := time.Now()
	d, err := s.policy.Eval(ctx, input)
	ev := evaluation{input: input, decision: d, duration: time.Since(evalStart)}
	switch {
	case errors.Is(err, policy.ErrNotReady):
		return unavailable(reasonNotReady, err)
	case err != nil:
		// No decision, so no mask to apply: the record keeps the timing, never the input.
		req, v := unavailable(reasonPolicyError, err)
		v.eval, v.claims = &evaluation{duration: ev.duration}, claims
		return req, v
	}
	// policy.Eval guarantees a deny's status is 400, 401 or 403 and that an allow names its route.
	if !d.Allow {
		return req, &verdict{status: d.Status, reason: reasonCode(d.Reason, "denied"), scopes: d.RequiredScopes, claims: claims, eval: &ev}
	}
	v := &verdict{status: http.StatusOK, reason: reasonCode(d.Reason, "allowed"), route: d.Route, claims: claims, eval: &ev}
	v.headers, v.dropped = filterPolicyHeaders(d.Headers)
	// The decision's jti is the decision id: the audit records of the sidecar and mgmtproxy join on it.
	dc := decision.Claims{ID: raw.id, Method: req.method, Path: req.path, Route: d.Route}
	if len(req.rawRequest.body) > 0 {
		// Bind the exact bytes the proxy showed us, so mgmtproxy refuses any other body with this decision.
		dc.Body = decision.BodyHash(req.rawRequest.body)
	}
	if claims != nil {
		dc.Kind, dc.App, dc.Org, dc.Subject = string(claims.Kind), claims.IsApp, claims.OrganizationID, claims.Subject
	}
	if v.signed, err = s.signer.Sign(dc); err != nil {
		return unavailable(reasonSignError, err)
	}
	return req, v
}

// reasonCode keeps a policy's reason when it is a short code, 1 to 64 of [a-z0-9_.:-], so a body
// or metric label never carries arbitrary policy text.
func reasonCode(reason, fallback string) string {
	if len(reason) == 0 || len(reason) > 64 {
		return fallback
	}
	for i := 0; i < len(reason); i++ {
		c := reason[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return fallback
		}
	}
	return reason
}

// record counts the verdict, writes its one log line and submits its audit record. Never a
// token, never a header value in the log line.
func (s *Server) record(raw *rawRequest, req *request, v *verdict, start time.Time) {
	latency := time.Since(start)
	s.metrics.observe(v, latency)
	s.audit(raw, req, v, latency)
	// Room for every attribute below, so the line's attributes are one allocation, not three.
	attrs := make([]slog.Attr, 0, 13)
	attrs = append(attrs,
		slog.String("decision_id", raw.id),
		slog.String("result", v.result()),
		slog.Int("status", v.status),
		slog.String("reason", v.reason),
	)
	if req != nil {
		if decision.ValidMethod(req.method) {
			attrs = append(attrs, slog.String("method", req.method))
		}
		if req.path != "" {
			attrs = append(attrs, slog.String("path", req.path))
		}
	}
	if v.route != "" {
		attrs = append(attrs, slog.String("route", v.route))
	}
	if c := v.claims; c != nil {
		attrs = append(attrs, slog.String("subject", c.Subject), slog.String("token_kind", string(c.Kind)))
		if c.OrganizationID != "" {
			attrs = append(attrs, slog.String("org", c.OrganizationID))
		}
	}
	attrs = append(attrs, slog.Duration("latency", latency))
	if len(v.dropped) > 0 {
		attrs = append(attrs, slog.Any("policy_headers_dropped", v.dropped))
	}
	level := slog.LevelInfo
	if v.err != nil {
		attrs = append(attrs, slog.String("err", v.err.Error()))
		level = slog.LevelError
	}
	s.log.LogAttrs(context.Background(), level, "decision", attrs...)
}

// healthServer answers gRPC health checks: SERVING when the Server is ready.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	s *Server
}

func (h healthServer) Check(_ context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	switch in.GetService() {
	case "", authv3.Authorization_ServiceDesc.ServiceName:
	default:
		return nil, status.Errorf(codes.NotFound, "unknown service")
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.s.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (h healthServer) List(ctx context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	resp := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for _, name := range []string{"", authv3.Authorization_ServiceDesc.ServiceName} {
		r, _ := h.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		resp.Statuses[name] = r
	}
	return resp, nil
}

func (h healthServer) Watch(*healthpb.HealthCheckRequest, healthpb.Health_WatchServer) error {
	return status.Error(codes.Unimplemented, "health watch is not supported; poll Check")
}
