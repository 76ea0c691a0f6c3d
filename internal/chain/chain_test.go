package chain

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// The test binary doubles as a child process for the process tests: CHAIN_TEST_CHILD says
// what to do.
func TestMain(m *testing.M) {
	switch os.Getenv("CHAIN_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "serve": // serve /readyz on CHAIN_TEST_ADDR until SIGTERM
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		srv := &http.Server{Addr: os.Getenv("CHAIN_TEST_ADDR"), ReadHeaderTimeout: time.Second}
		go srv.ListenAndServe()
		fmt.Println("serving")
		<-ctx.Done()
		srv.Close()
	case "env":
		fmt.Printf("ORGAUTHZ_LEAK=%q ORGAUTHZ_SET=%q\n", os.Getenv("ORGAUTHZ_LEAK"), os.Getenv("ORGAUTHZ_SET"))
	case "fail":
		fmt.Fprintln(os.Stderr, "child: cannot bind 127.0.0.1:1: address already in use")
		os.Exit(3)
	}
}

func startChild(t *testing.T, mode string, log *bytes.Buffer) (*process, string) {
	return startNamedChild(t, "child", mode, &syncWriter{w: log})
}

// startNamedChild starts the test binary as a child; children sharing a log must share its
// syncWriter, as they do in Start.
func startNamedChild(t *testing.T, name, mode string, log *syncWriter) (*process, string) {
	t.Helper()
	addrs, err := FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(name, log,
		[]string{"CHAIN_TEST_CHILD=" + mode, "CHAIN_TEST_ADDR=" + addrs.Front}, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop() })
	return p, "http://" + addrs.Front
}

func TestProcessReadyAndStop(t *testing.T) {
	var log bytes.Buffer
	p, url := startChild(t, "serve", &log)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The child serves 404 for /readyz: serving, but not ready in the 200 sense.
	if err := p.waitServing(ctx, url+"/readyz"); err != nil {
		t.Fatalf("waitServing: %v", err)
	}
	if err := p.stop(); err != nil {
		t.Errorf("stop() = %v, want nil for a child that exits on SIGTERM", err)
	}
	if got, want := log.String(), "[child] serving\n"; !strings.Contains(got, want) {
		t.Errorf("log = %q, want it to contain %q", got, want)
	}
}

func TestProcessExitBeforeReady(t *testing.T) {
	var log bytes.Buffer
	p, url := startChild(t, "fail", &log)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := p.waitReady(ctx, url+"/readyz")
	if err == nil {
		t.Fatal("waitReady() = nil for a child that exited, want an error")
	}
	for _, want := range []string{"child exited", "exit status 3", "[child] child: cannot bind 127.0.0.1:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("waitReady() = %q, want it to contain %q", err, want)
		}
	}
	if !errors.Is(err, ErrAddrInUse) {
		t.Errorf("waitReady() = %q, want it to wrap ErrAddrInUse", err)
	}
}

func TestProcessEnvironment(t *testing.T) {
	t.Setenv("ORGAUTHZ_LEAK", "from the user's shell")
	var log bytes.Buffer
	p, err := startProcess("child", &syncWriter{w: &log}, []string{"CHAIN_TEST_CHILD=env", "ORGAUTHZ_SET=by the chain"}, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	if got, want := log.String(), `[child] ORGAUTHZ_LEAK="" ORGAUTHZ_SET="by the chain"`+"\n"; got != want {
		t.Errorf("child saw %q, want %q", got, want)
	}
}

func TestChainWaitKillClose(t *testing.T) {
	log := &syncWriter{w: io.Discard}
	a, url := startNamedChild(t, "a", "serve", log)
	b, _ := startNamedChild(t, "b", "serve", log)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.waitServing(ctx, url); err != nil {
		t.Fatal(err)
	}
	c := &Chain{procs: []*process{a, b}}

	if err := c.Kill("a"); err != nil {
		t.Fatalf("Kill(a) = %v", err)
	}
	if err := c.Kill("a"); err == nil {
		t.Error("Kill(a) again = nil, want an error: it is gone")
	}
	// A part that exits on its own ends Wait with its name.
	f, _ := startNamedChild(t, "f", "fail", log)
	c.procs = append(c.procs, f)
	if err := c.Wait(ctx); err == nil || !strings.Contains(err.Error(), "f exited") {
		t.Errorf("Wait() = %v, want f's exit", err)
	}
	// Close stops b, and reports f, which had died unasked; not a, which was killed on purpose.
	err := c.Close()
	if err == nil || !strings.Contains(err.Error(), "f exited") || strings.Contains(err.Error(), "b exited") {
		t.Errorf("Close() = %v, want only f's exit reported", err)
	}
	select {
	case <-b.done:
	default:
		t.Error("b still runs after Close")
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	lw := &lineWriter{prefix: "[x] ", w: &out}
	lw.Write([]byte("one\ntw"))
	lw.Write([]byte("o\nthree"))
	if got, want := out.String(), "[x] one\n[x] two\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
	if got, want := lw.tail(), "[x] one\n[x] two\n[x] three"; got != want {
		t.Errorf("tail() = %q, want %q", got, want)
	}

	// Hostile output: a line without end and many lines.
	out.Reset()
	lw = &lineWriter{prefix: "> ", w: &out}
	huge := bytes.Repeat([]byte("a"), 10*maxLine)
	lw.Write(huge)
	lw.Write(huge)
	lw.Write([]byte("\n"))
	if got := out.Len(); got != len("> ")+maxLine+1 {
		t.Errorf("a %d-byte line wrote %d bytes, want it cut to %d", 2*len(huge), got, maxLine)
	}
	for i := range 100 {
		fmt.Fprintf(lw, "line %d\n", i)
	}
	if got := strings.Count(lw.tail(), "\n") + 1; got != tailLines {
		t.Errorf("tail() has %d lines, want %d", got, tailLines)
	}
}

func TestParseSeed(t *testing.T) {
	_, demo := startEmulator(t)
	good, err := json.Marshal(demo)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"demo", string(good), ""},
		{"empty", "", "unexpected end of JSON"},
		{"not JSON", "<html>", "invalid character"},
		{"wrong types", `{"m2mApp": "x"}`, "cannot unmarshal"},
		{"missing apps", `{"users": {"alice": "a", "bob": "b", "carol": "c"}, "organizations": {"acme": "o"}}`, "missing m2mApp.id, m2mApp.secret, trafficApp.id, trafficApp.secret"},
		{"huge", `{"url": "` + strings.Repeat("x", maxSeed) + `"}`, "over 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseSeed(strings.NewReader(tc.in))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("parseSeed() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("parseSeed() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func startEmulator(t *testing.T) (*fakelogto.Server, Seed) {
	t.Helper()
	srv, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatal(err)
	}
	demo := srv.SeedDemo()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, demo
}

func TestTokensGet(t *testing.T) {
	srv, demo := startEmulator(t)
	tokens := &Tokens{Endpoint: srv.URL(), Seed: demo}
	alice, acme := demo.Users["alice"], demo.Organizations["acme"]
	tests := []struct {
		name string
		req  TokenRequest
		want map[string]any // claims
	}{
		{
			"organization token",
			TokenRequest{UserID: alice, OrganizationID: acme, Scopes: []string{"member:add", "org:read", "not:granted"}},
			// In the role's order, not the request's, as Logto lists organization scopes.
			map[string]any{"sub": alice, "aud": "urn:logto:organization:" + acme, "scope": "org:read member:add"},
		},
		{
			"organization API token",
			TokenRequest{UserID: alice, OrganizationID: acme, Resource: APIResource, Scopes: []string{"member:add"}},
			map[string]any{"sub": alice, "aud": APIResource, "organization_id": acme, "scope": "member:add"},
		},
		{
			"global API token",
			TokenRequest{UserID: alice, Resource: APIResource, Scopes: []string{"org:create"}},
			map[string]any{"sub": alice, "aud": APIResource, "scope": "org:create"},
		},
		{
			"admin token",
			TokenRequest{UserID: demo.Users["carol"], Resource: AdminResource, Scopes: []string{"admin:org:read", "admin:org:write"}},
			map[string]any{"sub": demo.Users["carol"], "aud": AdminResource, "scope": "admin:org:read admin:org:write"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := tokens.Get(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("Get() = %v", err)
			}
			claims := payload(t, tok)
			for k, want := range tc.want {
				if got := claims[k]; got != want {
					t.Errorf("claim %s = %v, want %v", k, got, want)
				}
			}
			if _, ok := tc.want["organization_id"]; !ok && claims["organization_id"] != nil {
				t.Errorf("claim organization_id = %v, want none", claims["organization_id"])
			}
		})
	}
}

func payload(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestTokensGetErrors(t *testing.T) {
	srv, demo := startEmulator(t)
	wrongSecret := demo
	wrongSecret.TrafficApp.Secret = "wrong"

	// A token endpoint that misbehaves in the ways a broken or hostile server can.
	hostile := func(body string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/api/subject-tokens" {
				w.WriteHeader(http.StatusCreated)
				w.Write([]byte(`{"subjectToken": "sub_x"}`))
				return
			}
			w.Write([]byte(body))
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return "http://" + ln.Addr().String()
	}

	tests := []struct {
		name     string
		endpoint string
		seed     Seed
		req      TokenRequest
		wantErr  string
	}{
		{"unknown user", srv.URL(), demo, TokenRequest{UserID: "nobody000001", Resource: APIResource}, "404"},
		{"not a member", srv.URL(), demo, TokenRequest{UserID: demo.Users["carol"], OrganizationID: demo.Organizations["acme"]}, "403"},
		{"wrong secret", srv.URL(), wrongSecret, TokenRequest{UserID: demo.Users["alice"], Resource: APIResource}, "401"},
		{"no access_token", hostile(`{"token_type": "Bearer"}`), demo, TokenRequest{UserID: "u"}, "no access_token"},
		{"not JSON", hostile(`<html>`), demo, TokenRequest{UserID: "u"}, "invalid character"},
		{"huge", hostile(`{"access_token": "` + strings.Repeat("x", 2*maxSeed) + `"}`), demo, TokenRequest{UserID: "u"}, "over 1048576 bytes"},
		{"down", closed(), demo, TokenRequest{UserID: "u"}, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tokens := &Tokens{Endpoint: tc.endpoint, Seed: tc.seed}
			tok, err := tokens.Get(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Get() = %q, %v; want an error containing %q", tok, err, tc.wantErr)
			}
			for _, secret := range []string{demo.M2MApp.Secret, demo.TrafficApp.Secret} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Get() error %q reveals a secret", err)
				}
			}
		})
	}
}

func TestFreeAddrsAreDistinctAndFree(t *testing.T) {
	a, err := FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	all := []string{a.Logto, a.GRPC, a.HTTP, a.Mgmtproxy, a.Front}
	slices.Sort(all)
	if len(slices.Compact(all)) != 5 {
		t.Errorf("FreeAddrs() = %+v, want 5 distinct addresses", a)
	}
	if err := a.CheckFree(); err != nil {
		t.Errorf("CheckFree() = %v, want nil", err)
	}
	ln, err := net.Listen("tcp", a.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = a.CheckFree()
	if err == nil || !strings.Contains(err.Error(), "sidecar HTTP address "+a.HTTP+" is taken") {
		t.Errorf("CheckFree() with %s taken = %v, want an error naming it", a.HTTP, err)
	}
}

// The front proxies' configs name the default addresses in the form render replaces.
func TestRenderFrontConfigs(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultAddrs()
	addrs := Addrs{Logto: "127.0.0.1:1", GRPC: "127.0.0.1:2", HTTP: "127.0.0.1:3", Mgmtproxy: "127.0.0.1:4", Front: "127.0.0.1:5"}
	tests := []struct {
		src      string
		oldnew   []string
		want     []string
		wantGone []string
	}{
		{
			"tests/nginx/nginx.conf",
			[]string{def.Front, addrs.Front, def.HTTP, addrs.HTTP, def.Mgmtproxy, addrs.Mgmtproxy},
			[]string{"listen 127.0.0.1:5;", "http://127.0.0.1:3/forward-auth;", "proxy_pass http://127.0.0.1:4;"},
			[]string{def.Front, def.HTTP, def.Mgmtproxy},
		},
		{
			"envoy/front-proxy.yaml",
			[]string{"port_value: 8080", "port_value: 5", "port_value: 9191", "port_value: 2", "port_value: 8081", "port_value: 4", "port_value: 9901", "port_value: 0"},
			[]string{"port_value: 5}", "port_value: 2}", "port_value: 4}", "port_value: 0}"},
			[]string{"port_value: 8080", "port_value: 9191", "port_value: 8081", "port_value: 9901"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			out, err := render(filepath.Join(root, tc.src), t.TempDir(), tc.oldnew...)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("rendered %s lacks %q", tc.src, w)
				}
			}
			for _, g := range tc.wantGone {
				if strings.Contains(string(b), g) {
					t.Errorf("rendered %s still has %q", tc.src, g)
				}
			}
		})
	}

	_, err = render(filepath.Join(root, "tests/nginx/nginx.conf"), t.TempDir(), "127.0.0.1:7777", "x")
	if err == nil || !strings.Contains(err.Error(), `no longer contains "127.0.0.1:7777"`) {
		t.Errorf("render() with an absent address = %v, want an error naming it", err)
	}
}
