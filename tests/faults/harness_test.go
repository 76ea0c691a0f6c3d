//go:build e2e

package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
	"github.com/orgauthz/orgauthz/internal/testkit"
)

// waitLimit bounds every wait for a process or a background event; generous, the machine is shared.
const waitLimit = 60 * time.Second

// tenant is a Logto emulator behind a door: every request to Logto goes through the door,
// which counts it and answers in the emulator's place for a path a test has hooked.
type tenant struct {
	emu  *fakelogto.Server
	url  string // the door's base URL, which the emulator advertises as its own
	mu   sync.Mutex
	hook map[string]http.HandlerFunc // by path prefix
	hits map[string]int
}

func newTenant(t *testing.T) *tenant {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &tenant{url: "http://" + ln.Addr().String(), hook: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	tn.emu, err = fakelogto.New(fakelogto.Config{PublicURL: tn.url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.emu.Close() })
	tn.emu.SeedDemo()
	door := &http.Server{Handler: http.HandlerFunc(tn.serve), ReadHeaderTimeout: 10 * time.Second}
	go door.Serve(ln)
	t.Cleanup(func() { door.Close() })
	return tn
}

func (tn *tenant) serve(w http.ResponseWriter, r *http.Request) {
	tn.mu.Lock()
	tn.hits[r.URL.Path]++
	var h http.HandlerFunc
	for prefix, hh := range tn.hook {
		if strings.HasPrefix(r.URL.Path, prefix) {
			h = hh
		}
	}
	tn.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	tn.emu.Handler().ServeHTTP(w, r)
}

// setHook answers requests whose path starts with prefix with h instead of the emulator;
// nil removes the hook.
func (tn *tenant) setHook(prefix string, h http.HandlerFunc) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if h == nil {
		delete(tn.hook, prefix)
		return
	}
	tn.hook[prefix] = h
}

// hitCount is how many requests for path reached the door, hooked or not.
func (tn *tenant) hitCount(path string) int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.hits[path]
}

// token issues a user token the way Logto's token exchange would.
func (tn *tenant) token(t *testing.T, req fakelogto.UserTokenRequest) string {
	t.Helper()
	tok, err := tn.emu.IssueUserToken(req)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// aliceOrg is alice's organization token for acme, where she is admin.
func (tn *tenant) aliceOrg(t *testing.T) string {
	return tn.token(t, fakelogto.UserTokenRequest{UserID: fakelogto.DemoAliceID, OrganizationID: fakelogto.DemoAcmeID,
		Scopes: []string{"org:read", "member:read", "member:add"}})
}

// proc is a running binary whose output is kept for the test's log.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testkit.Buffer
	done chan struct{}
	err  error
}

// start runs a built binary; it is stopped (SIGTERM, then kill) when the test ends, and its
// output is logged if the test failed. The child gets no ORGAUTHZ_* variable of ours.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testkit.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(build.bin, name), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORGAUTHZ_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits up to grace for the exit (then kills); it returns the exit error.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// wantCleanExit waits for the process to exit after SIGTERM and wants status 0.
func (p *proc) wantCleanExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exit after SIGTERM: %v, want status 0", p.name, p.err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s still running %v after SIGTERM", p.name, waitLimit)
	}
}

// waitStatus polls url until it answers want.
func waitStatus(t *testing.T, p *proc, url string, want int) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(waitLimit)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v", p.name, p.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s: %s never answered %d (last: %s)", p.name, url, want, last)
}

// sidecar is a running sidecar binary and an Envoy-faithful client of it.
type sidecar struct {
	*proc
	grpc, http string // addresses
	policies   string
	pub        string // the decision public key file, for mgmtproxy
	client     *envoyclient.Client
}

// startSidecar starts a sidecar trusting tn, with a private copy of the default policies and
// extra flags; it waits until the sidecar is ready when ready is set.
func startSidecar(t *testing.T, tn *tenant, ready bool, flags ...string) *sidecar {
	t.Helper()
	dir := t.TempDir()
	addrs, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{grpc: addrs.GRPC, http: addrs.HTTP, policies: filepath.Join(dir, "policies"), pub: filepath.Join(dir, "decision.pub")}
	if err := os.CopyFS(s.policies, os.DirFS(filepath.Join(build.root, "policies"))); err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(dir, "decision.key")
	if err := decision.GenerateKey(priv, s.pub); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--issuer", tn.url + "/oidc",
		"--api-resource", chain.APIResource,
		"--admin-resource", chain.AdminResource,
		"--policies", s.policies,
		"--grpc-addr", s.grpc,
		"--http-addr", s.http,
		"--decision-key", priv,
	}, flags...)
	s.proc = start(t, "sidecar", args...)
	if ready {
		waitStatus(t, s.proc, "http://"+s.http+"/readyz", http.StatusOK)
	} else {
		waitStatus(t, s.proc, "http://"+s.http+"/healthz", http.StatusOK)
	}
	s.client, err = envoyclient.Dial(s.grpc, envoyclient.Options{WithBody: true, UseRemoteAddress: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.client.Close() })
	return s
}

// check asks the sidecar about method path with token ("" for none), as Envoy does, and returns
// the status Envoy would act on: 200 for an allow, the deny's status, or status_on_error (503)
// when the check itself failed.
func (s *sidecar) check(t *testing.T, method, path, token string) int {
	t.Helper()
	r, err := http.NewRequest(method, "http://app.example.com"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = path
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, r)
	switch {
	case err != nil:
		return envoyclient.DefaultStatusOnError
	case resp.GetOkResponse() != nil:
		return http.StatusOK
	case resp.GetDeniedResponse() != nil:
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	return envoyclient.DefaultStatusOnError
}

// expect is a check and the status it must get.
type expect struct {
	path, token string
	want        int
}

// load is the outcome of checks sent round robin by 8 clients.
type load struct {
	right, refused, wrong atomic.Int64 // refused: 503, the sidecar could not or would not answer
	firstWrong            atomic.Value
}

// hammer sends cases round robin from 8 clients until stop is closed, the sidecar has exited,
// or waitLimit passes, and counts the outcomes.
func (s *sidecar) hammer(t *testing.T, cases []expect, stop <-chan struct{}) *load {
	t.Helper()
	l := &load{}
	deadline := time.Now().Add(waitLimit)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				case <-s.done:
					return
				default:
				}
				c := cases[i%len(cases)]
				switch got := s.check(t, "GET", c.path, c.token); got {
				case c.want:
					l.right.Add(1)
				case http.StatusServiceUnavailable:
					l.refused.Add(1)
				default:
					l.wrong.Add(1)
					l.firstWrong.CompareAndSwap(nil, fmt.Sprintf("GET %s = %d, want %d", c.path, got, c.want))
				}
			}
		})
	}
	wg.Wait()
	return l
}

// acmePath is the organization alice's token may read.
const acmePath = "/api/organizations/" + fakelogto.DemoAcmeID

// mgmtproxy is a running mgmtproxy binary behind the sidecar, entered as the front proxy does.
type mgmtproxy struct {
	*proc
	url     string
	sidecar *sidecar
}

func startMgmtproxy(t *testing.T, tn *tenant, s *sidecar, flags ...string) *mgmtproxy {
	t.Helper()
	addrs, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "m2m-secret")
	if err := os.WriteFile(secret, []byte(fakelogto.DemoM2MAppSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--listen-addr", addrs.Mgmtproxy,
		"--logto-endpoint", tn.url,
		"--m2m-app-id", fakelogto.DemoM2MAppID,
		"--m2m-app-secret-file", secret,
		"--decision-public-key", s.pub,
	}, flags...)
	m := &mgmtproxy{proc: start(t, "mgmtproxy", args...), url: "http://" + addrs.Mgmtproxy, sidecar: s}
	waitStatus(t, m.proc, m.url+"/healthz", http.StatusOK)
	return m
}

// do sends method path through the emulated Envoy (check, then forward with the decision) to
// mgmtproxy and returns the status and body the client gets.
func (m *mgmtproxy) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, m.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := m.sidecar.client.Do(r, &http.Transport{ResponseHeaderTimeout: 2 * waitLimit})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// eventually retries cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitLimit)
		}
	}
}
