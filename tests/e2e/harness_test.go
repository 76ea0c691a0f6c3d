//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
)

// harness is one running chain with taps on both of mgmtproxy's sides:
//
//	door ──► front proxy ──► app tap ──► mgmtproxy ──► logto tap ──► Logto emulator
//	              └──► sidecar ──► emulator's JWKS
type harness struct {
	chain  *chain.Chain
	door   door
	app    *tap // what reaches mgmtproxy
	logto  *tap // what mgmtproxy sends to Logto
	tokens *chain.Tokens

	secrets []string // user tokens that must never appear in an answer
}

// door is how a request enters the chain: a front proxy, or the Envoy-faithful client.
type door func(*http.Request) (*http.Response, error)

// newHarness starts a chain on free ports with the given front proxy (chain.NoFront: the
// caller sets h.door) and stops it when the test ends. opts adjust the chain's configuration.
func newHarness(t *testing.T, front chain.Front, frontBin string, opts ...func(*chain.Config)) *harness {
	t.Helper()
	// On a busy machine another program may take a port between FreeAddrs and the bind.
	for attempt := 1; ; attempt++ {
		h, err := startHarness(t, front, frontBin, opts...)
		if err == nil {
			return h
		}
		if !errors.Is(err, chain.ErrAddrInUse) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
	}
}

func startHarness(t *testing.T, front chain.Front, frontBin string, opts ...func(*chain.Config)) (*harness, error) {
	t.Helper()
	addrs, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		app:   newTap(t, "http://"+addrs.Mgmtproxy),
		logto: newTap(t, "http://"+addrs.Logto),
	}
	dir, err := os.MkdirTemp(build.dir, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "chain.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		log.Close()
		if t.Failed() {
			t.Logf("chain log: %s", logPath)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := chain.Config{
		Root:          build.root,
		Dir:           dir,
		Bin:           build.bin,
		Addrs:         addrs,
		Front:         front,
		FrontBin:      frontBin,
		AppUpstream:   h.app.addr(),
		LogtoUpstream: h.logto.url(),
		Log:           log,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := chain.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start chain (log %s): %w", logPath, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("stop chain: %v", err)
		}
	})
	h.chain = c
	h.tokens = &chain.Tokens{Endpoint: c.LogtoURL(), Seed: c.Seed}
	client := &http.Client{Timeout: 30 * time.Second}
	h.door = func(r *http.Request) (*http.Response, error) {
		r.URL.Scheme, r.URL.Host, r.Host = "http", c.Addrs.Front, c.Addrs.Front
		return client.Do(r)
	}
	return h, nil
}

// useEnvoyClient makes the door the Envoy-faithful client: a real gRPC Check to the sidecar, then
// the request forwarded to mgmtproxy with the sidecar's header mutations. It returns the client.
func (h *harness) useEnvoyClient(t *testing.T) *envoyclient.Client {
	t.Helper()
	c := h.dialSidecar(t, h.chain.Addrs.GRPC)
	upstream := &http.Transport{ResponseHeaderTimeout: 30 * time.Second}
	t.Cleanup(upstream.CloseIdleConnections)
	h.door = func(r *http.Request) (*http.Response, error) {
		r.Host = h.chain.Addrs.Front                    // what the client addressed
		r.URL.Scheme, r.URL.Host = "http", h.app.addr() // where Envoy's route sends it
		return c.Do(r, upstream)
	}
	return c
}

// dialSidecar returns an Envoy-faithful ext_authz client of the sidecar at grpcAddr.
func (h *harness) dialSidecar(t *testing.T, grpcAddr string) *envoyclient.Client {
	t.Helper()
	c, err := envoyclient.Dial(grpcAddr, envoyclient.Options{
		WithBody:         true,
		UseRemoteAddress: true,
		Destination:      h.chain.Addrs.Front,
		Timeout:          10 * time.Second, // the machine may be busy; a timeout would read as a 503
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// token gets a real token from the emulator and remembers it as a secret.
func (h *harness) token(t *testing.T, req chain.TokenRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := h.tokens.Get(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	h.secrets = append(h.secrets, tok)
	return tok
}

// The tokens of the demo users that the stories use.

func (h *harness) aliceOrg(t *testing.T) string {
	return h.token(t, chain.TokenRequest{UserID: h.user("alice"), OrganizationID: h.acme(),
		Scopes: []string{"org:read", "member:read", "member:add", "member:remove", "member:role"}})
}

func (h *harness) aliceGlobal(t *testing.T) string {
	return h.token(t, chain.TokenRequest{UserID: h.user("alice"), Resource: chain.APIResource, Scopes: []string{"org:create"}})
}

func (h *harness) bobOrg(t *testing.T) string {
	// bob asks for member:add too; his "member" role does not grant it.
	return h.token(t, chain.TokenRequest{UserID: h.user("bob"), OrganizationID: h.acme(),
		Scopes: []string{"org:read", "member:read", "member:add"}})
}

func (h *harness) carolAdmin(t *testing.T) string {
	return h.token(t, chain.TokenRequest{UserID: h.user("carol"), Resource: chain.AdminResource,
		Scopes: []string{"admin:org:read", "admin:org:write"}})
}

func (h *harness) user(name string) string { return h.chain.Seed.Users[name] }
func (h *harness) acme() string            { return h.chain.Seed.Organizations["acme"] }

// answer is a response read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// decodeJSON decodes the body into v or fails the test.
func (a answer) decodeJSON(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %q is not the JSON expected: %v", a.status, a.body, err)
	}
}

// call sends method path with an optional bearer token and JSON body through the door, and
// checks that no token the test knows of comes back in the answer.
func (h *harness) call(t *testing.T, method, path, token string, body any, extra ...string) answer {
	t.Helper()
	req := newRequest(t, method, path, token, body, extra...)
	return h.send(t, h.door, req)
}

// direct sends a request straight to mgmtproxy, bypassing the door and the sidecar.
func (h *harness) direct(t *testing.T, method, path string, header http.Header) answer {
	t.Helper()
	req := newRequest(t, method, h.chain.MgmtproxyURL()+path, "", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 30 * time.Second}
	return h.send(t, client.Do, req)
}

func (h *harness) send(t *testing.T, do door, req *http.Request) answer {
	t.Helper()
	resp, err := do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", req.Method, req.URL.Path, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: b}
	h.checkNoSecrets(t, req.Method+" "+req.URL.Path, a)
	return a
}

// checkNoSecrets fails the test when a user token or mgmtproxy's M2M token shows up in an
// answer's headers or body, whole or as its signature.
func (h *harness) checkNoSecrets(t *testing.T, what string, a answer) {
	t.Helper()
	secrets := append(slices.Clip(h.secrets), h.logto.bearers()...)
	var all bytes.Buffer
	a.header.Write(&all)
	all.Write(a.body)
	for _, s := range secrets {
		sig := s[strings.LastIndexByte(s, '.')+1:]
		if bytes.Contains(all.Bytes(), []byte(s)) || (len(sig) >= 16 && bytes.Contains(all.Bytes(), []byte(sig))) {
			t.Errorf("%s: the answer carries a token (%d bytes of answer)", what, all.Len())
		}
	}
}

func newRequest(t *testing.T, method, target, token string, body any, extra ...string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	if !strings.Contains(target, "://") {
		target = "http://front.invalid" + target // the door sets the real host
	}
	req, err := http.NewRequest(method, target, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Add(extra[i], extra[i+1])
	}
	return req
}

// tap is a reverse proxy that records what passes through it. When holding, it records a
// request and answers 204 itself, so a decision it carried stays unused; when dropping, it
// closes the connection of every request under /api/ without an answer, as a crashed
// upstream would.
type tap struct {
	srv  *httptest.Server
	hold atomic.Bool
	drop atomic.Bool

	mu   sync.Mutex
	seen []seen
}

// seen is one request as it arrived at the tap.
type seen struct {
	method string
	target string // the request target exactly as received
	header http.Header
}

func newTap(t *testing.T, target string) *tap {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u) // no X-Forwarded-* added: mgmtproxy sees what the front proxy sent
	}}
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.seen = append(tp.seen, seen{method: r.Method, target: r.RequestURI, header: r.Header.Clone()})
		tp.mu.Unlock()
		switch {
		case tp.hold.Load():
			w.WriteHeader(http.StatusNoContent)
			return
		case tp.drop.Load() && strings.HasPrefix(r.URL.Path, "/api/"):
			panic(http.ErrAbortHandler) // net/http closes the connection, logs nothing
		}
		// The body is read before proxying, as mgmtproxy does. Streamed, it races: an upstream
		// that answers the moment it has the last byte makes net/http close this inbound body
		// (writing our response header drains it) while the transport still reads it for a
		// final EOF; that read fails and the transport drops the upstream connection mid-answer
		// (golang/go#40747). Seen as a 502 on one item of the 50-item bulk create.
		const maxBody = 1 << 20
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		switch {
		case len(body) > maxBody:
			t.Errorf("the tap got a request body over %d bytes; raise its limit rather than pass it on cut", maxBody)
			panic(http.ErrAbortHandler)
		case err != nil:
			panic(http.ErrAbortHandler)
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(tp.srv.Close)
	return tp
}

func (tp *tap) url() string  { return tp.srv.URL }
func (tp *tap) addr() string { return tp.srv.Listener.Addr().String() }

// requests returns what the tap saw, in order.
func (tp *tap) requests() []seen {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]seen(nil), tp.seen...)
}

// last returns the latest request the tap saw under prefix.
func (tp *tap) last(t *testing.T, prefix string) seen {
	t.Helper()
	s := tp.requests()
	for i := len(s) - 1; i >= 0; i-- {
		if strings.HasPrefix(s[i].target, prefix) {
			return s[i]
		}
	}
	t.Fatalf("the tap saw no request under %s", prefix)
	return seen{}
}

// managementCalls counts the Management API requests (paths under /api/) the tap saw.
func (tp *tap) managementCalls() int {
	n := 0
	for _, s := range tp.requests() {
		if strings.HasPrefix(s.target, "/api/") {
			n++
		}
	}
	return n
}

// bearers returns every bearer token that passed, so answers can be checked for them.
func (tp *tap) bearers() []string {
	var out []string
	for _, s := range tp.requests() {
		if tok, ok := strings.CutPrefix(s.header.Get("Authorization"), "Bearer "); ok {
			out = append(out, tok)
		}
	}
	return out
}
