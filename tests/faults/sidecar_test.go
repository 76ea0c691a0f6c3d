//go:build e2e

package faults

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// A JWKS that stalls while the sidecar starts leaves it not ready: every check is 503, never an
// allow. When the key set comes back, the sidecar becomes ready by itself and allows.
func TestJWKSStallAtStartup(t *testing.T) {
	tn := newTenant(t)
	tn.emu.SetFault(fakelogto.TargetJWKS, fakelogto.Slow(time.Hour))
	s := startSidecar(t, tn, false)
	tok := tn.aliceOrg(t)
	if got := s.check(t, "GET", acmePath, tok); got != http.StatusServiceUnavailable {
		t.Errorf("check with no keys loaded = %d, want 503", got)
	}
	waitStatus(t, s.proc, "http://"+s.http+"/readyz", http.StatusServiceUnavailable)
	tn.emu.SetFault(fakelogto.TargetJWKS, fakelogto.Fault{})
	waitStatus(t, s.proc, "http://"+s.http+"/readyz", http.StatusOK)
	if got := s.check(t, "GET", acmePath, tok); got != http.StatusOK {
		t.Errorf("check after the JWKS recovered = %d, want 200", got)
	}
}

// When Logto rotates its key and the key set then misbehaves in any way, the token signed by the
// new key is refused (401) within the fetch bound, tokens of the last good keys keep working, and
// once the key set is healthy again the new key verifies (after the refetch window).
func TestJWKSFaultsKeepLastGoodKeys(t *testing.T) {
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the sidecar followed a redirect to %s", r.URL)
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer attacker.Close()
	for _, tc := range []struct {
		name  string
		fault fakelogto.Fault
		hook  http.HandlerFunc // instead of fault, answered by the door
	}{
		{name: "stall", fault: fakelogto.Slow(time.Hour)},
		{name: "503", fault: fakelogto.Down},
		{name: "reset", fault: fakelogto.Reset},
		{name: "HTML", fault: fakelogto.HTML},
		{name: "truncated JSON", fault: fakelogto.Fault{Kind: fakelogto.FaultInvalidJSON}},
		{name: "no keys", fault: fakelogto.EmptyKeys},
		{name: "10 MB", fault: fakelogto.Huge},
		{name: "10 000 keys", fault: fakelogto.ManyKeys},
		{name: "redirect", hook: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, attacker.URL+"/jwks", http.StatusFound)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTenant(t)
			s := startSidecar(t, tn, true)
			old := tn.aliceOrg(t)
			if got := s.check(t, "GET", acmePath, old); got != http.StatusOK {
				t.Fatalf("before the fault: %d, want 200", got)
			}
			if _, err := tn.emu.RotateKey("ES384"); err != nil {
				t.Fatal(err)
			}
			fresh := tn.aliceOrg(t) // signed by the new key, which the sidecar has not seen
			if tc.hook != nil {
				tn.setHook("/oidc/jwks", tc.hook)
			} else {
				tn.emu.SetFault(fakelogto.TargetJWKS, tc.fault)
			}
			before := tn.hitCount("/oidc/jwks")
			start := time.Now()
			if got := s.check(t, "GET", acmePath, fresh); got != http.StatusUnauthorized {
				t.Errorf("new-key token while the JWKS fails = %d, want 401", got)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("the check took %v: the key set fetch is not bounded (5 s)", d)
			}
			if tn.hitCount("/oidc/jwks") == before {
				t.Errorf("the unknown kid caused no key set fetch: the fault was not exercised")
			}
			if got := s.check(t, "GET", acmePath, old); got != http.StatusOK {
				t.Errorf("last good key's token while the JWKS fails = %d, want 200", got)
			}
			tn.setHook("/oidc/jwks", nil)
			tn.emu.SetFault(fakelogto.TargetJWKS, fakelogto.Fault{})
			eventually(t, "the new key verifies once the JWKS is healthy", func() bool {
				return s.check(t, "GET", acmePath, fresh) == http.StatusOK
			})
		})
	}
}

// A flood of tokens with made-up kids costs Logto at most one key set fetch per refetch window
// (10 s), and every such token is 401.
func TestUnknownKIDFlood(t *testing.T) {
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	tn.emu.ResetCalls()
	claims := tn.emu.Claims(fakelogto.DemoAliceID, fakelogto.DemoTrafficAppID, "urn:logto:organization:"+fakelogto.DemoAcmeID, "org:read")
	start := time.Now()
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				tok := tn.emu.SignToken(map[string]any{"kid": fmt.Sprintf("made-up-%d-%d", w, i)}, claims)
				if s.check(t, "GET", acmePath, tok) != http.StatusUnauthorized {
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	windows := int(time.Since(start)/(10*time.Second)) + 1
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of 320 made-up-kid tokens were not 401", n)
	}
	if n := tn.emu.Calls(fakelogto.TargetJWKS); n > windows {
		t.Errorf("320 unknown kids in %v caused %d key set fetches, want at most %d (one per 10 s window)", time.Since(start).Round(time.Millisecond), n, windows)
	}
}

// With Logto entirely down (JWKS, token endpoint, Management API), the sidecar keeps deciding with
// the keys it has, through failed timed refreshes: allowed stays allowed, denied stays denied, and
// it stays ready.
func TestLogtoDownKeysCached(t *testing.T) {
	tn := newTenant(t)
	s := startSidecar(t, tn, true, "--jwks-refresh", "10s")
	tok := tn.aliceOrg(t)
	for _, target := range []fakelogto.Target{fakelogto.TargetJWKS, fakelogto.TargetToken, fakelogto.TargetManagement, fakelogto.TargetDiscovery} {
		tn.emu.SetFault(target, fakelogto.Down)
	}
	tn.emu.ResetCalls()
	eventually(t, "a timed refresh against the downed JWKS", func() bool { return tn.emu.Calls(fakelogto.TargetJWKS) > 0 })
	for _, c := range []struct {
		path, token string
		want        int
	}{{acmePath, tok, 200}, {"/api/organizations/other0000001", tok, 403}, {acmePath, "", 401}} {
		if got := s.check(t, "GET", c.path, c.token); got != c.want {
			t.Errorf("GET %s with Logto down = %d, want %d", c.path, got, c.want)
		}
	}
	waitStatus(t, s.proc, "http://"+s.http+"/readyz", http.StatusOK)
}

// Rewriting the policy directory while checks run, with valid and broken modules, never changes
// an answer: broken versions are rejected and the last good policy keeps serving, with no 503.
func TestPolicyChurnUnderLoad(t *testing.T) {
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	tok := tn.aliceOrg(t)
	cases := []expect{{acmePath, tok, 200}, {"/api/organizations/other0000001", tok, 403}, {acmePath, "", 401}, {acmePath + "/users", tok, 200}}
	stop := make(chan struct{})
	result := make(chan *load)
	go func() { result <- s.hammer(t, cases, stop) }()
	dir := filepath.Join(s.policies, "orgauthz")
	churn := filepath.Join(dir, "churn.rego")
	versions := []string{
		"package orgauthz\n\n_churn := 1\n",
		"package orgauthz\n\ndecision := {", // syntax error
		"package orgauthz\n\n_churn := 2\n",
		"",                                  // empty module
		"package orgauthz\n\n_churn := y\n", // unsafe variable: does not compile
	}
	deadline := time.Now().Add(8 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		v := versions[i%len(versions)]
		tmp := churn + ".tmp"
		if err := os.WriteFile(tmp, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, churn); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		if i%7 == 6 {
			os.Remove(churn)
			time.Sleep(150 * time.Millisecond)
		}
	}
	os.Remove(churn)
	close(stop)
	l := <-result
	checks := l.right.Load() + l.refused.Load() + l.wrong.Load()
	if n := l.refused.Load() + l.wrong.Load(); n > 0 {
		t.Errorf("%d of %d checks during policy churn got another answer (%d of them 503); first other than 503: %v", n, checks, l.refused.Load(), l.firstWrong.Load())
	}
	if checks < 100 {
		t.Errorf("only %d checks ran during the churn", checks)
	}
	t.Logf("%d checks during 8 s of policy churn", checks)
}

// A policy that compiles but conflicts at evaluation (a second decision) is taken on reload, and
// then every check is 503: denied, never allowed, until the policy is fixed.
func TestConflictingPolicyFailsClosed(t *testing.T) {
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	tok := tn.aliceOrg(t)
	other := "/api/organizations/other0000001"
	churn := filepath.Join(s.policies, "orgauthz", "churn.rego")
	if err := os.WriteFile(churn, []byte("package orgauthz\n\ndecision := {\"allow\": true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the conflicting policy taken", func() bool { return s.check(t, "GET", acmePath, tok) == http.StatusServiceUnavailable })
	for _, c := range []expect{{acmePath, tok, 503}, {other, tok, 503}, {acmePath, "", 503}} {
		if got := s.check(t, "GET", c.path, c.token); got != c.want {
			t.Errorf("GET %s under a conflicting policy = %d, want %d", c.path, got, c.want)
		}
	}
	os.Remove(churn)
	eventually(t, "the fixed policy taken", func() bool { return s.check(t, "GET", acmePath, tok) == http.StatusOK })
	if got := s.check(t, "GET", other, tok); got != http.StatusForbidden {
		t.Errorf("GET %s after the fix = %d, want 403", other, got)
	}
}
