package sidecar

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
	"github.com/orgauthz/orgauthz/internal/testkit"
)

const (
	apiResource   = "https://api.example.com"
	adminResource = "https://admin.example.com"
	policiesDir   = "../policies"
	// waitLimit bounds every wait for a background event; generous, the machine is shared.
	waitLimit = 60 * time.Second
)

// harness is a running Server on real sockets with a Logto emulator as its issuer.
type harness struct {
	logto    *fakelogto.Server
	srv      *Server
	cfg      Config
	auth     authv3.AuthorizationClient
	httpURL  string
	grpcLn   string
	logs     *testkit.Buffer
	auditLog string // the --decision-log file
	verifier *decision.Verifier
	// envoyMaxBody is Envoy's max_request_bytes; 0 means the sidecar's --max-body-bytes.
	envoyMaxBody int

	mu     sync.Mutex
	tokens []string // every token minted, so tests can prove none is logged or echoed
}

// harnessOption adjusts the Config or the Server before it serves.
type harnessOption func(*Config)

// newHarness starts the emulator and a Server with the real policies (unless an option says
// otherwise), and waits until the Server is ready when wantReady.
func newHarness(t testing.TB, wantReady bool, opts ...harnessOption) *harness {
	return newHarnessWith(t, wantReady, nil, opts...)
}

func newHarnessWith(t testing.TB, wantReady bool, before func(*Server), opts ...harnessOption) *harness {
	t.Helper()
	logto, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatalf("fakelogto.New: %v", err)
	}
	if err := logto.Start(); err != nil {
		t.Fatalf("fakelogto Start: %v", err)
	}
	t.Cleanup(func() { logto.Close() })

	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "decision.pem"), filepath.Join(dir, "decision.pub.pem")
	if err := decision.GenerateKey(priv, pub); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	verifier, err := decision.LoadVerifier(pub)
	if err != nil {
		t.Fatalf("LoadVerifier: %v", err)
	}
	cfg := Default()
	cfg.Issuers = []string{logto.Issuer()}
	cfg.APIResource, cfg.AdminResource = apiResource, adminResource
	cfg.Policies = policiesDir
	cfg.DecisionKey = priv
	cfg.DecisionTTL = 10 * time.Second
	cfg.DecisionLog = filepath.Join(dir, "decisions.jsonl")
	for _, o := range opts {
		o(&cfg)
	}

	h := &harness{logto: logto, cfg: cfg, logs: &testkit.Buffer{}, auditLog: cfg.DecisionLog, verifier: verifier}
	ctx, cancel := context.WithCancel(context.Background())
	valid, err := cfg.Validate()
	if err != nil {
		cancel()
		t.Fatalf("Validate: %v", err)
	}
	srv, err := New(ctx, valid, valid.NewLogger(h.logs))
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	if before != nil {
		before(srv)
	}
	h.srv = srv
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, gl, hl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListeners: %v", err)
		}
		h.assertNoTokenLogged(t)
	})
	h.httpURL = "http://" + hl.Addr().String()
	h.grpcLn = gl.Addr().String()
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.auth = authv3.NewAuthorizationClient(conn)
	if wantReady {
		waitFor(t, "server ready", srv.Ready)
	}
	return h
}

// waitFor polls cond until it holds; the limit is generous and only guards against a hang.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		<-tick.C
	}
}

func (h *harness) remember(tok string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens = append(h.tokens, tok)
	return tok
}

// assertNoTokenLogged fails when any minted token, or its signature alone, appears in the logs
// or the audit records.
func (h *harness) assertNoTokenLogged(t testing.TB) {
	audit, _ := os.ReadFile(h.auditLog)
	logs := h.logs.String() + string(audit)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, tok := range h.tokens {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(logs, tok) || (len(sig) > 16 && strings.Contains(logs, sig)) {
			t.Errorf("a token appears in the log")
		}
	}
}

// tokenSpec describes a Logto access token to mint.
type tokenSpec struct {
	kind   string // organization, organization_api, global_api, admin
	org    string
	sub    string // default "u1"
	app    bool   // sub == client_id
	scopes string
}

func (h *harness) mint(s tokenSpec) string {
	sub, client := s.sub, "app1"
	if sub == "" {
		sub = "u1"
	}
	if s.app {
		sub = client
	}
	var aud string
	switch s.kind {
	case "organization":
		aud = "urn:logto:organization:" + s.org
	case "organization_api", "global_api":
		aud = apiResource
	case "admin":
		aud = adminResource
	default:
		aud = s.kind // an arbitrary audience, for hostile cases
	}
	c := h.logto.Claims(sub, client, aud, s.scopes)
	if s.kind == "organization_api" {
		c["organization_id"] = s.org
	}
	return h.remember(h.logto.MintToken(c))
}

// envoyRequest is an HTTP request as a client sent it to Envoy, with a raw target.
func envoyRequest(method, target string, headers map[string]string, body string) *http.Request {
	r := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: "/"},
		RequestURI: target,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:     http.Header{},
		Host:       "app.example.com",
		RemoteAddr: "203.0.113.7:40000",
		Body:       http.NoBody,
	}
	for k, v := range headers {
		r.Header.Add(k, v)
	}
	if body != "" {
		r.Body = io.NopCloser(strings.NewReader(body))
		r.ContentLength = int64(len(body))
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
	}
	return r
}

// check sends r as Envoy would (with the body, as envoy/front-proxy.yaml configures).
func (h *harness) check(t testing.TB, r *http.Request) *authv3.CheckResponse {
	t.Helper()
	maxBody := h.envoyMaxBody
	if maxBody == 0 {
		maxBody = h.cfg.MaxBodyBytes
	}
	in, err := envoyclient.NewCheckRequest(r, envoyclient.Options{WithBody: true, MaxBody: maxBody})
	if err != nil {
		t.Fatalf("NewCheckRequest: %v", err)
	}
	return h.checkRaw(t, in)
}

func (h *harness) checkRaw(t testing.TB, in *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	resp, err := h.auth.Check(ctx, in)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// answer is a CheckResponse read the way a test wants it.
type answer struct {
	status  int               // 200 on allow
	headers map[string]string // allow: headers set; deny: response headers
	remove  []string          // allow: headers_to_remove
	body    string            // deny body
	grpc    int32
}

func readAnswer(resp *authv3.CheckResponse) answer {
	a := answer{headers: map[string]string{}, grpc: resp.GetStatus().GetCode()}
	if ok := resp.GetOkResponse(); ok != nil && a.grpc == 0 {
		a.status = http.StatusOK
		for _, h := range ok.GetHeaders() {
			a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		a.remove = ok.GetHeadersToRemove()
		return a
	}
	d := resp.GetDeniedResponse()
	a.status = int(d.GetStatus().GetCode())
	for _, h := range d.GetHeaders() {
		a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	a.body = d.GetBody()
	return a
}

// writePolicyDir copies the real policies into a temp dir that a test may change.
func writePolicyDir(t testing.TB) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(policiesDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(policiesDir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy policies: %v", err)
	}
	return dst
}

func (h *harness) grpcAddr() string { return h.grpcLn }

// httpAnswer is a response of the sidecar's HTTP address.
type httpAnswer struct {
	StatusCode int
	Header     http.Header
	body       string
}

// do sends method target to the sidecar's HTTP address with headers.
func (h *harness) do(t testing.TB, method, target string, headers map[string]string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, h.httpURL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Add(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return httpAnswer{resp.StatusCode, resp.Header, string(b)}
}

func (h *harness) get(t testing.TB, target string, headers map[string]string) httpAnswer {
	t.Helper()
	return h.do(t, http.MethodGet, target, headers)
}
