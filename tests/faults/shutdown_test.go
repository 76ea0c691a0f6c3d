//go:build e2e

package faults

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// SIGTERM while checks are in flight (held inside the sidecar by a slow key set fetch for a new
// key): every one of them is answered, and answered right, before the sidecar exits 0; a check
// sent after the signal is not answered by a sidecar that is going away, so Envoy's
// status_on_error (503) denies it.
func TestSIGTERMDrainsChecks(t *testing.T) {
	knownDefect(t, "the sidecar's key set fetch runs on the signal context, so SIGTERM cancels it and the checks waiting on it answer 401 instead of 200")
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	if _, err := tn.emu.RotateKey("ES384"); err != nil {
		t.Fatal(err)
	}
	fresh := tn.aliceOrg(t) // new kid: its first check waits for the key set
	release := make(chan struct{})
	tn.setHook("/oidc/jwks", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(3 * time.Second):
		}
		tn.emu.Handler().ServeHTTP(w, r)
	})
	const inFlight = 8
	var wg sync.WaitGroup
	statuses := make([]int, inFlight)
	for i := range inFlight {
		wg.Go(func() { statuses[i] = s.check(t, "GET", acmePath, fresh) })
	}
	eventually(t, "the checks waiting on the key set", func() bool { return tn.hitCount("/oidc/jwks") > 1 })
	time.Sleep(200 * time.Millisecond)
	s.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("in-flight check %d at SIGTERM = %d, want 200 (drained, and the new key is valid)", i, st)
		}
	}
	s.wantCleanExit(t)
	if got := s.check(t, "GET", acmePath, fresh); got != http.StatusServiceUnavailable {
		t.Errorf("check after the sidecar exited = %d, want Envoy's status_on_error 503", got)
	}
}

// SIGTERM under a steady stream of checks: no answer is ever wrong (no allow of a request that
// should be denied, no deny of an allowed one); checks that find the sidecar gone fail closed.
func TestSIGTERMUnderLoadNoWrongAnswer(t *testing.T) {
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	tok := tn.aliceOrg(t)
	cases := []expect{{acmePath, tok, 200}, {"/api/organizations/other0000001", tok, 403}, {acmePath, "", 401}}
	go func() {
		time.Sleep(2 * time.Second)
		s.cmd.Process.Signal(syscall.SIGTERM)
	}()
	l := s.hammer(t, cases, nil)
	s.wantCleanExit(t)
	if n := l.wrong.Load(); n > 0 {
		t.Errorf("%d wrong answers around SIGTERM; first: %v", n, l.firstWrong.Load())
	}
	if l.right.Load() < 10 {
		t.Errorf("only %d checks answered before SIGTERM", l.right.Load())
	}
	t.Logf("%d answered right, %d refused (sidecar gone: Envoy answers 503), %d wrong", l.right.Load(), l.refused.Load(), l.wrong.Load())
}

// SIGTERM while mgmtproxy waits on Logto for requests it already accepted: they complete with
// Logto's answer, and mgmtproxy exits 0.
func TestSIGTERMDrainsMgmtproxy(t *testing.T) {
	knownDefect(t, "mgmtproxy's http.Server BaseContext is the signal context, so SIGTERM cancels the Logto calls of accepted requests: 502 upstream_unavailable instead of Logto's answer")
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	m := startMgmtproxy(t, tn, s)
	waitStatus(t, m.proc, m.url+"/readyz", http.StatusOK)
	tok := tn.aliceOrg(t)
	tn.emu.SetFault(fakelogto.TargetManagement, fakelogto.Slow(2*time.Second))
	tn.emu.ResetCalls()
	const inFlight = 4
	var wg sync.WaitGroup
	statuses := make([]int, inFlight)
	bodies := make([]string, inFlight)
	for i := range inFlight {
		wg.Go(func() { statuses[i], bodies[i] = m.do(t, "GET", acmePath, tok, "") })
	}
	eventually(t, "the requests waiting on Logto", func() bool { return tn.emu.Calls(fakelogto.TargetManagement) == inFlight })
	m.cmd.Process.Signal(syscall.SIGTERM)
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("request %d in flight at SIGTERM = %d %q, want 200 (drained)", i, st, bodies[i])
		}
	}
	m.wantCleanExit(t)
}
