package sidecar

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/revocation"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
)

// Reasons of the HTTP check endpoints' own refusals.
const (
	reasonUntrustedProxy   = "untrusted_proxy"
	reasonMissingForwarded = "missing_forwarded_request"
)

// envoyPrefix is the path_prefix of Envoy's HTTP ext_authz service: the original request target
// follows it.
const envoyPrefix = "/envoy"

// envoyHeadersToRemove is the response header in which Envoy's HTTP ext_authz client takes the
// names of request headers to remove.
const envoyHeadersToRemove = "x-envoy-auth-headers-to-remove"

// Handler returns the HTTP handler of the sidecar's HTTP address:
//
//	/healthz        200 while the process runs
//	/readyz         200 when keys (of some issuer), a policy and the revocation watermarks are loaded,
//	                else 503; says the revocation store's state (Redis down: serving the last set) and per issuer
//	                what is wrong with its keys ("ok" when nothing)
//	/metrics        Prometheus metrics of this Server, unless --metrics-addr serves them there only
//	/envoy/…        Envoy's HTTP ext_authz mode: the original method, the original target after /envoy,
//	                the body when Envoy sends it (with_request_body); only from --trusted-proxy peers
//	/logto/webhooks Logto's webhooks (revocation), POST, authenticated by their signature, from any peer
//	/forward-auth   nginx auth_request, Caddy forward_auth, Traefik forwardAuth: the original method and
//	                URI from X-Forwarded-Method/-Uri or X-Original-Method/-URI, honoured only from
//	                --trusted-proxy peers. No body is ever seen here: routes whose policy checks the
//	                body (PATCH an organization, assign roles) need Envoy with with_request_body.
//
// The check endpoints answer 200 with the identity headers on allow, and on deny the status,
// WWW-Authenticate and the JSON body. nginx turns any auth_request status other than 2xx, 401 and
// 403 into 500.
//
// Paths are dispatched on the raw request target, never a cleaned one, so the check endpoints see
// exactly what the client sent.
func (s *Server) Handler() http.Handler {
	metrics := promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.RequestURI
		if target == envoyPrefix || strings.HasPrefix(target, envoyPrefix+"/") || strings.HasPrefix(target, envoyPrefix+"?") {
			s.serveCheck(w, r, s.envoyRequest, true)
			return
		}
		path, _, _ := strings.Cut(target, "?")
		switch path {
		case "/forward-auth":
			s.serveCheck(w, r, s.forwardAuthRequest, false)
		case revocation.WebhookPath:
			s.serveWebhook(w, r)
		case "/healthz":
			writeStatus(w, http.StatusOK, map[string]bool{"alive": true})
		case "/readyz":
			keys, pol, rev := s.tokens.Ready(), s.policy.Ready(), s.revocationStatus()
			st := http.StatusOK
			if !keys || !pol || !rev.Ready {
				st = http.StatusServiceUnavailable
			}
			issuers := map[string]string{}
			for iss, problem := range s.tokens.Status() {
				issuers[iss] = cmp.Or(problem, "ok")
			}
			writeStatus(w, st, struct {
				Keys       bool              `json:"keys"`
				Policy     bool              `json:"policy"`
				Issuers    map[string]string `json:"issuers"`
				Revocation revocationStatus  `json:"revocation"`
			}{keys, pol, issuers, rev})
		case "/metrics":
			if s.cfg.MetricsAddr != "" { // served on --metrics-addr only
				http.NotFound(w, r)
				return
			}
			metrics.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

func writeStatus(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// serveCheck answers one HTTP check: read turns the request into the common form, or refuses it
// itself; then the decision path shared with gRPC. A panic is a 503. For Envoy, an allow also
// names the headers to strip from the request in x-envoy-auth-headers-to-remove.
func (s *Server) serveCheck(w http.ResponseWriter, r *http.Request, read func(*http.Request) (*rawRequest, *verdict), envoy bool) {
	start := time.Now()
	id := decisionlog.NewID()
	var span trace.Span
	defer func() {
		if p := recover(); p != nil {
			v := &verdict{status: http.StatusServiceUnavailable, reason: reasonInternalError, err: fmt.Errorf("sidecar: HTTP check panicked: %v", p)}
			s.record(&rawRequest{id: id}, nil, v, start)
			endSpan(span, id, nil, v)
			writeHTTP(w, id, v)
		}
	}()
	raw, v := read(r)
	raw.id = id
	ctx, span := s.startSpan(r.Context(), raw)
	var req *request
	if v == nil {
		req, v = s.decide(ctx, raw)
	}
	s.record(raw, req, v, start)
	endSpan(span, id, req, v)
	if envoy && v.allowed() {
		w.Header().Set(envoyHeadersToRemove, strings.Join(headersToRemove(req, id, v), ","))
	}
	writeHTTP(w, id, v)
}

// httpRawRequest is the common part of both HTTP check endpoints.
func httpRawRequest(r *http.Request) *rawRequest {
	raw := &rawRequest{
		method:  r.Method,
		host:    r.Host,
		headers: make(map[string]string, len(r.Header)),
	}
	for k, vs := range r.Header {
		raw.headers[strings.ToLower(k)] = strings.ToValidUTF8(strings.Join(vs, ","), "\uFFFD")
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		raw.source = ap.Addr().Unmap().String()
	}
	raw.requestID = raw.headers["x-request-id"]
	return raw
}

// envoyRequest reads a request of Envoy's HTTP ext_authz mode.
// Only --trusted-proxy peers may ask: the answer is a signed decision for whatever method, path and
// body the caller names, so an untrusted caller could otherwise mint one for mgmtproxy directly.
func (s *Server) envoyRequest(r *http.Request) (*rawRequest, *verdict) {
	raw := httpRawRequest(r)
	if !s.trustedPeer(r) {
		return raw, &verdict{status: http.StatusForbidden, reason: reasonUntrustedProxy}
	}
	raw.target = strings.TrimPrefix(r.RequestURI, envoyPrefix)
	if raw.target == "" || raw.target[0] == '?' {
		raw.target = "/" + raw.target
	}
	if r.Body != nil && r.ContentLength != 0 {
		// Read as much as a CheckRequest may carry, so both modes bind the same bodies; only the
		// first --max-body-bytes are parsed for the policy.
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRecvMsgBytes+1))
		if err == nil && len(body) <= maxRecvMsgBytes {
			raw.body = body
		} else {
			raw.partial = true
		}
	}
	raw.partial = raw.partial || envoyBodyIncomplete(raw.headers, raw.body)
	return raw, nil
}

// forwardAuthRequest reads a forward-auth subrequest: the original method and URI come from the
// proxy's headers, believed only when the peer is a trusted proxy.
func (s *Server) forwardAuthRequest(r *http.Request) (*rawRequest, *verdict) {
	raw := httpRawRequest(r)
	if !s.trustedPeer(r) {
		return raw, &verdict{status: http.StatusForbidden, reason: reasonUntrustedProxy}
	}
	method, okM := forwarded(r.Header, "X-Forwarded-Method", "X-Original-Method")
	uri, okU := forwarded(r.Header, "X-Forwarded-Uri", "X-Original-Uri")
	if !okM || !okU {
		return raw, &verdict{status: http.StatusBadRequest, reason: reasonMissingForwarded}
	}
	raw.method, raw.target = method, uri
	if host, ok := forwarded(r.Header, "X-Forwarded-Host"); ok {
		raw.host = host
	}
	return raw, nil
}

// forwarded returns the one value the given headers agree on: each present at most once, all
// present ones equal, at least one present.
func forwarded(h http.Header, names ...string) (string, bool) {
	value, found := "", false
	for _, n := range names {
		vs := h.Values(n)
		switch {
		case len(vs) == 0:
			continue
		case len(vs) > 1, found && vs[0] != value:
			return "", false
		}
		value, found = vs[0], true
	}
	return value, found
}

// trustedPeer reports whether r comes from a --trusted-proxy peer.
func (s *Server) trustedPeer(r *http.Request) bool {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := peer.Addr().Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
