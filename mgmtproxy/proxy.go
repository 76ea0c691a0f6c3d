// Package mgmtproxy is the credential-injecting proxy between Envoy and the Logto Management API. It
// knows a fixed list of operations (DESIGN's route table), accepts a request only with a signed decision
// from the sidecar for exactly that method and path (and body, when the decision binds one or the
// operation's policy reads it), and calls Logto with the M2M app's token, which it fetches with client
// credentials and caches. Users never hold Management API power; mgmtproxy never
// sends anything to Logto without a valid decision.
package mgmtproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"

	"github.com/orgauthz/orgauthz/decision"
)

// Limits on what mgmtproxy reads.
const (
	maxBodyBytes     = 64 << 10 // request bodies; larger is 413
	maxUpstreamBytes = 8 << 20  // Logto answers mgmtproxy parses itself
	maxQueryValue    = 256      // one query parameter value
)

// Proxy is the mgmtproxy HTTP handler and server. Build it with New.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	base     *url.URL // Logto's base URL
	verifier *decision.Verifier
	tokens   *tokenSource
	upstream http.RoundTripper // M2M bearer, 401 refetch, metrics
	client   *http.Client      // for mgmtproxy's own calls (create-org steps, bulk)
	proxies  map[*operation]*httputil.ReverseProxy
	limiter  *rate.Limiter // paces bulk calls
	metrics  *metrics
	mux      *http.ServeMux // health and metrics
	fields   []string       // member fields kept
}

// New checks cfg and builds a Proxy. ctx is the process lifetime: token fetches use it. It makes no
// network call; /readyz says whether Logto issues a token.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base, _ := cfg.logtoBase()
	secret, _ := cfg.secret()
	verifier, _ := decision.LoadVerifier(cfg.DecisionPublicKeys...)
	limit, burst, _ := parseRate(cfg.BulkRate)

	p := &Proxy{
		cfg:      cfg,
		log:      logger,
		base:     base,
		verifier: verifier,
		proxies:  map[*operation]*httputil.ReverseProxy{},
		limiter:  rate.NewLimiter(limit, min(burst, cfg.BulkConcurrency)),
		metrics:  newMetrics(),
		fields:   cfg.memberFields(),
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport.TLSHandshakeTimeout = 5 * time.Second
	transport.ResponseHeaderTimeout = cfg.UpstreamTimeout
	transport.MaxIdleConnsPerHost = 64
	transport.MaxConnsPerHost = 128 // never open more than this to Logto, whatever the load

	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	tokenClient := &http.Client{Transport: transport, Timeout: cfg.UpstreamTimeout, CheckRedirect: noRedirect}
	p.tokens = &tokenSource{
		conf: clientcredentials.Config{
			ClientID:       cfg.M2MAppID,
			ClientSecret:   secret,
			TokenURL:       base.JoinPath("oidc", "token").String(),
			Scopes:         []string{"all"},
			EndpointParams: url.Values{"resource": {cfg.managementResource()}},
			AuthStyle:      oauth2.AuthStyleInHeader, // Basic auth; auto-detection would send the secret twice on a 401
		},
		ctx:     context.WithValue(ctx, oauth2.HTTPClient, tokenClient),
		timeout: cfg.UpstreamTimeout,
		now:     time.Now,
		fetched: p.metrics.tokenFetched,
	}
	p.upstream = &upstream{next: &oauth2.Transport{Source: p.tokens, Base: transport}, tokens: p.tokens, metrics: p.metrics}
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
		}
	}

	p.mux = http.NewServeMux()
	p.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	p.mux.HandleFunc("GET /readyz", p.serveReady)
	p.mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{}))
	return p, nil
}

func (p *Proxy) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.UpstreamTimeout)
	defer cancel()
	if err := p.tokens.ready(ctx); err != nil {
		p.log.Warn("not ready", "err", err)
		writeError(w, http.StatusServiceUnavailable, "m2m_token_unavailable", "no Management API token from Logto")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Serve listens on Config.ListenAddr and serves until ctx ends, then shuts down gracefully.
func (p *Proxy) Serve(ctx context.Context) error {
	ln, err := listen(p.cfg.ListenAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // a paced bulk request of 100 items takes a while
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(sctx)
	}()
	p.log.Info("mgmtproxy listening", "addr", ln.Addr().String(), "logto", p.base.String(), "operations", len(operations))
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

// request is what ServeHTTP approved: the operation, the decision, and what may go to Logto.
type request struct {
	op     *operation
	claims *decision.Claims
	path   string
	ids    map[string]string
	query  url.Values
	body   []byte
}

// ServeHTTP serves the health endpoints and otherwise one operation, after checking its decision.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
		p.mux.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	var req request
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
		p.logRequest(r, rec, &req, time.Since(start))
	}()
	if code, msg := p.approve(r, &req); code != "" {
		p.metrics.rejections.WithLabelValues(code).Inc()
		rec.reason = code
		status := http.StatusForbidden
		switch code {
		case "body_too_large":
			status = http.StatusRequestEntityTooLarge
		case "bad_request":
			status = http.StatusBadRequest
		}
		writeError(rec, status, code, msg)
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

// approve fills req or returns the code and message of a refusal. Nothing reaches Logto before it
// returns "".
func (p *Proxy) approve(r *http.Request, req *request) (code, msg string) {
	if !decision.ValidMethod(r.Method) {
		return "operation_not_allowed", "method not allowed"
	}
	path, segs, ok := canonicalPath(r)
	if !ok {
		return "path_not_canonical", "the path is not canonical"
	}
	req.path = path
	vals := r.Header.Values(decision.Header)
	token := ""
	if len(vals) > 1 {
		return string(decision.ReasonMalformed), "more than one decision"
	} else if len(vals) == 1 {
		token = vals[0]
	}
	claims, err := p.verifier.Verify(token, r.Method, path)
	if err != nil {
		return string(decision.ReasonOf(err)), "no valid decision for this request"
	}
	req.claims = claims
	switch claims.Kind {
	case decision.KindOrganization, decision.KindOrganizationAPI, decision.KindGlobalAPI, decision.KindAdmin:
	default:
		return "decision_kind_unknown", "the decision names no known token kind"
	}
	op, ids := match(r.Method, segs)
	if op == nil {
		return "operation_not_allowed", "mgmtproxy does not perform this operation"
	}
	if claims.Route != op.route {
		return "decision_route_mismatch", "the decision is for another route"
	}
	req.op, req.ids = op, ids
	if org, ok := ids["orgId"]; ok && claims.Org != org && (claims.Org != "" || claims.Kind == decision.KindOrganization || claims.Kind == decision.KindOrganizationAPI) {
		return "decision_org_mismatch", "the decision is for another organization"
	}
	if (op.action == bulkCreate || op.action == bulkDelete) && claims.Kind != decision.KindAdmin {
		return "admin_only", "bulk operations need an admin token"
	}

	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "bad_request", "the query string is malformed"
	}
	req.query = url.Values{}
	for _, k := range op.query {
		if v := q.Get(k); v != "" {
			if len(v) > maxQueryValue {
				return "bad_request", "query parameter " + k + " is too long"
			}
			req.query.Set(k, v)
		}
	}

	// The body goes to Logto for these methods; for any method, a decision that binds one has it checked.
	sends := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
	if sends || claims.Body != "" || op.bodyChecked {
		if r.ContentLength > maxBodyBytes {
			return "body_too_large", fmt.Sprintf("the body exceeds %d bytes", maxBodyBytes)
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return "bad_request", "could not read the body"
		}
		if len(body) > maxBodyBytes {
			return "body_too_large", fmt.Sprintf("the body exceeds %d bytes", maxBodyBytes)
		}
		if err := claims.CheckBody(body, op.bodyChecked); err != nil {
			return string(decision.ReasonOf(err)), "the decision is not for this request body"
		}
		if sends {
			req.body = body // exactly the bytes checked
		}
	}
	return "", ""
}

// forward passes the approved request to Logto through the operation's reverse proxy.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.UpstreamTimeout)
	defer cancel()
	in := r.WithContext(ctx)
	in.URL = &url.URL{Path: req.path, RawQuery: req.query.Encode()}
	in.Header = forwardHeaders(r.Header)
	in.Body, in.ContentLength, in.GetBody = nil, 0, nil
	if req.body != nil {
		in.Body, in.ContentLength = io.NopCloser(bytes.NewReader(req.body)), int64(len(req.body))
		in.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(req.body)), nil }
	}
	p.proxies[req.op].ServeHTTP(w, in)
}

// forwardHeaders is the allowlist of request headers Logto gets. Everything else stays behind:
// hop-by-hop and forwarding headers, the user's Authorization and Cookie, every x-orgauthz-* header,
// method overrides, Accept-Encoding (the transport negotiates compression itself) and idempotency keys
// (which would let net/http retry a POST).
func forwardHeaders(in http.Header) http.Header {
	out := http.Header{"User-Agent": {"orgauthz-mgmtproxy"}}
	for _, k := range []string{"Accept", "Accept-Language", "Content-Type"} {
		if v := in.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// rewrite points the outgoing request at Logto. ServeHTTP already set the approved path, query and
// headers on the inbound request.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.base)
	pr.Out.Header = forwardHeaders(pr.In.Header)
}

// Upstream failures that become 502.
var (
	errBadUpstream    = errors.New("mgmtproxy: unexpected answer from Logto") // could not be processed
	errUpstreamStatus = errors.New("mgmtproxy: Logto failed")                 // a 5xx answer
)

// modifyResponse returns the response hook for op: Logto's status and body pass, its Link header is
// rewritten to the public /api path, cookies are dropped, member listings are reduced.
func (p *Proxy) modifyResponse(op *operation) func(*http.Response) error {
	return func(resp *http.Response) error {
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%w: Logto answered %d", errUpstreamStatus, resp.StatusCode)
		}
		resp.Header.Del("Set-Cookie")
		if v := resp.Header.Values("Link"); len(v) > 0 {
			if link := rewriteLink(strings.Join(v, ", "), p.base); link != "" {
				resp.Header.Set("Link", link)
			} else {
				resp.Header.Del("Link")
			}
		}
		if op.action != listMembers || resp.StatusCode != http.StatusOK {
			return nil
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBytes+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("mgmtproxy: read member listing: %w", err)
		}
		if len(raw) > maxUpstreamBytes {
			return fmt.Errorf("%w: member listing larger than %d bytes", errBadUpstream, maxUpstreamBytes)
		}
		out, err := reduceMembers(raw, p.fields)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", fmt.Sprint(len(out)))
		resp.Header.Del("ETag") // the body changed
		resp.Header.Del("Content-Encoding")
		return nil
	}
}

// reduceMembers keeps only fields (in that order) of each user object in a JSON array.
func reduceMembers(raw []byte, fields []string) ([]byte, error) {
	var users []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &users); err != nil {
		return nil, fmt.Errorf("%w: member listing is not a JSON array of objects", errBadUpstream)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, u := range users {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		n := 0
		for _, f := range fields {
			v, ok := u[f]
			if !ok {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(f)
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
			n++
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// rewriteLink turns Logto's Link header, whose targets name Logto's own host without /api, into
// path-absolute references under the public /api path. It returns "" when a part cannot be parsed.
func rewriteLink(v string, base *url.URL) string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		end := strings.IndexByte(part, '>')
		if part[0] != '<' || end < 0 {
			return ""
		}
		u, err := url.Parse(part[1:end])
		if err != nil {
			return ""
		}
		path := strings.TrimPrefix(u.EscapedPath(), strings.TrimSuffix(base.EscapedPath(), "/"))
		if !strings.HasPrefix(path, "/api/") {
			path = "/api" + path
		}
		if strings.Contains(path, "..") || strings.Contains(path, "//") {
			return ""
		}
		target := path
		if u.RawQuery != "" {
			target += "?" + u.RawQuery
		}
		out = append(out, "<"+target+">"+part[end+1:])
	}
	return strings.Join(out, ", ")
}

// proxyError answers a failed call to Logto: 503 without a token, 504 on a timeout, 502 otherwise.
// The body never carries Logto's error text or anything of the token.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	p.log.Warn("upstream call failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	if rec, ok := w.(*recorder); ok {
		rec.reason = code
	}
	writeError(w, status, code, msg)
}

// classify maps an upstream failure to the status, code and message the caller gets.
func classify(err error) (int, string, string) {
	var ne net.Error
	switch {
	case errors.Is(err, errTokenUnavailable):
		return http.StatusServiceUnavailable, "m2m_token_unavailable", "mgmtproxy could not get a Management API token from Logto"
	case errors.Is(err, errUpstreamUnauthorized):
		return http.StatusBadGateway, "upstream_unauthorized", "Logto refused mgmtproxy's credentials"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "upstream_timeout", "Logto did not answer in time"
	case errors.Is(err, errUpstreamStatus):
		return http.StatusBadGateway, "upstream_error", "Logto failed to answer the request"
	case errors.Is(err, errBadUpstream):
		return http.StatusBadGateway, "upstream_bad_response", "Logto's answer could not be processed"
	}
	return http.StatusBadGateway, "upstream_unavailable", "Logto could not be reached"
}

// errUpstreamUnauthorized: Logto refused a freshly fetched M2M token too.
var errUpstreamUnauthorized = errors.New("mgmtproxy: Logto refused the M2M token twice")

// upstream sends Management API calls with the M2M bearer. A 401 means Logto refused the token before
// acting, so it drops that token and retries once with a new one; a second 401 is an error (502). No
// other failure is retried here: a non-idempotent request that may have reached Logto is never sent twice.
type upstream struct {
	next    http.RoundTripper // oauth2.Transport
	tokens  *tokenSource
	metrics *metrics
}

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := u.send(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	bearer := ""
	if resp.Request != nil {
		bearer = strings.TrimPrefix(resp.Request.Header.Get("Authorization"), "Bearer ")
	}
	discard(resp)
	u.tokens.invalidate(bearer)
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, errUpstreamUnauthorized
		}
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	resp, err = u.send(retry)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		discard(resp)
		return nil, errUpstreamUnauthorized
	}
	return resp, nil
}

func (u *upstream) send(req *http.Request) (*http.Response, error) {
	resp, err := u.next.RoundTrip(req)
	if err != nil {
		if !errors.Is(err, errTokenUnavailable) {
			u.metrics.upstream.WithLabelValues("error").Inc()
		}
		return nil, err
	}
	u.metrics.upstreamStatus(resp.StatusCode)
	return resp, nil
}

// discard drains a little of resp's body, so the connection can be reused, and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
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

// logRequest writes the one log line of a request: never a token, a secret or a body.
func (p *Proxy) logRequest(r *http.Request, rec *recorder, req *request, d time.Duration) {
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
	if c := req.claims; c != nil {
		attrs = append(attrs, slog.String("decision_id", c.ID), slog.String("subject", c.Subject), slog.String("kind", c.Kind))
		if c.Org != "" {
			attrs = append(attrs, slog.String("organization_id", c.Org))
		}
	}
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal_error","message":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

// apiError is the body of every error mgmtproxy itself answers, shaped like Logto's and the sidecar's.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}
