package mgmtproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/decisionlog"
)

// Upstream failures; response.go's classify maps each to the caller's status and reason.
var (
	errBadUpstream          = errors.New("mgmtproxy: unexpected answer from Logto")      // could not be processed
	errUpstreamStatus       = errors.New("mgmtproxy: Logto failed")                      // a 5xx answer
	errUpstreamUnauthorized = errors.New("mgmtproxy: Logto refused the M2M token twice") // 401 on a fresh token too
)

// UpstreamTransport is how mgmtproxy connects to Logto: bounded dials, TLS handshakes and waits
// for an answer's headers, and at most 128 connections whatever the load. The benchmarks' bare
// proxy (tests/bench/nullproxy) uses it too, so the two hops differ only in mgmtproxy's own work.
func UpstreamTransport(timeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.ResponseHeaderTimeout = timeout
	t.MaxIdleConnsPerHost = 64
	t.MaxConnsPerHost = 128
	return t
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

// rewrite points the outgoing request at Logto. forward already set the approved path, query and
// headers on the inbound request.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.base)
	pr.Out.Header = forwardHeaders(pr.In.Header)
}

// reply is a Logto answer read in full (bounded).
type reply struct {
	status int
	header http.Header
	body   []byte
}

// call makes one Management API call with the M2M token and reads the answer, for mgmtproxy's own
// steps (create-org, bulk). A non-2xx answer below 500 is a reply, not an error; errors are failures
// to get one.
func (p *Proxy) call(ctx context.Context, method, path string, body []byte) (*reply, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.UpstreamTimeout)
	defer cancel()
	u := p.base.JoinPath(path)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("mgmtproxy: %s %s: %w", method, path, err)
	}
	req.Header = forwardHeaders(nil)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mgmtproxy: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBytes+1))
	if err != nil {
		return nil, fmt.Errorf("mgmtproxy: %s %s: read answer: %w", method, path, err)
	}
	if len(raw) > maxUpstreamBytes {
		return nil, fmt.Errorf("%w: %s %s answered more than %d bytes", errBadUpstream, method, path, maxUpstreamBytes)
	}
	if resp.StatusCode >= 500 {
		return nil, fmt.Errorf("%w: %s %s answered %d", errUpstreamStatus, method, path, resp.StatusCode)
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: raw}, nil
}

// upstream sends Management API calls with the M2M bearer. A 401 means Logto refused the token before
// acting, so it marks that token for refetching and retries once; a second 401 is an error (502). A
// 403 auth.forbidden means the M2M app lacks the Management API role: an error (502), never the
// user's 403. No other failure is retried here: a non-idempotent request that may have reached Logto
// is never sent twice.
type upstream struct {
	next    http.RoundTripper // oauth2.Transport
	tokens  *tokenSource
	metrics *metrics
}

func (u *upstream) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	start := time.Now()
	defer func() {
		c := decisionlog.Call{Method: req.Method, Path: req.URL.Path, DurationNS: time.Since(start).Nanoseconds()}
		if err != nil {
			_, c.Error, _ = classify(err)
		} else {
			c.Status = resp.StatusCode
		}
		exchangeOf(req.Context()).call(c)
	}()
	resp, err = u.send(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		resp, err = u.retry(req, resp)
	}
	if err == nil && resp.StatusCode == http.StatusForbidden {
		return u.checkForbidden(resp)
	}
	return resp, err
}

// retry drops the token Logto refused with resp (a 401) and sends req once more.
func (u *upstream) retry(req *http.Request, resp *http.Response) (*http.Response, error) {
	discard(resp)
	u.tokens.invalidate(bearer(resp))
	again := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, errUpstreamUnauthorized
		}
		var err error
		if again.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	resp, err := u.send(again)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		discard(resp)
		return nil, errUpstreamUnauthorized
	}
	return resp, nil
}

// maxErrorPeek bounds how much of a 403 body is read to find Logto's error code.
const maxErrorPeek = 16 << 10

// checkForbidden passes a 403 through unless Logto's code is auth.forbidden, which it answers to a
// token without the "all" scope whatever the request: then the M2M app lacks its role, and every call
// would fail alike.
func (u *upstream) checkForbidden(resp *http.Response) (*http.Response, error) {
	peek, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorPeek))
	var body struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(peek, &body) == nil && body.Code == "auth.forbidden" {
		discard(resp)
		return nil, u.tokens.forbidden(bearer(resp))
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
	return resp, nil
}

// bearer is the M2M token resp's request carried.
func bearer(resp *http.Response) string {
	if resp.Request == nil {
		return ""
	}
	return strings.TrimPrefix(resp.Request.Header.Get("Authorization"), "Bearer ")
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
