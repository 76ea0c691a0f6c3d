//go:build e2e

package faults

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// wantJSONError checks an error answer: the status, and a JSON body with a code that shows no
// secret.
func wantJSONError(t *testing.T, what string, status int, body string, want ...int) {
	t.Helper()
	ok := false
	for _, w := range want {
		ok = ok || status == w
	}
	if !ok {
		t.Errorf("%s: %d %q, want one of %v", what, status, body, want)
		return
	}
	var e struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Code == "" {
		t.Errorf("%s: body %q is not a JSON error with a code", what, body)
	}
	if strings.Contains(body, fakelogto.DemoM2MAppSecret) {
		t.Errorf("%s: the body shows the M2M secret", what)
	}
}

// Every way the Management API can fail ends in a 5xx with a JSON body, never a 2xx Logto did
// not give, and a redirect is never followed.
func TestManagementAPIFaults(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("mgmtproxy followed a redirect to %s (Authorization %q)", r.URL, r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	for _, tc := range []struct {
		name  string
		fault fakelogto.Fault
		hook  http.HandlerFunc
		want  []int
	}{
		{name: "500", fault: fakelogto.ServerError, want: []int{502}},
		{name: "503 plain text", fault: fakelogto.Down, want: []int{502}},
		{name: "reset", fault: fakelogto.Reset, want: []int{502}},
		{name: "slow", fault: fakelogto.Slow(time.Hour), want: []int{504}},
		{name: "401 twice", fault: fakelogto.Fault{Kind: fakelogto.FaultUnauthorized}, want: []int{502}},
		{name: "HTML 200", hook: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>proxy login</html>"))
		}, want: []int{502}},
		{name: "redirect", hook: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
		}, want: []int{502, 307}},
		{name: "10 MB member listing", hook: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`[{"id":"u1","name":"`))
			w.Write([]byte(strings.Repeat("x", 10<<20)))
			w.Write([]byte(`"}]`))
		}, want: []int{502}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTenant(t)
			s := startSidecar(t, tn, true)
			m := startMgmtproxy(t, tn, s, "--upstream-timeout", "2s")
			waitStatus(t, m.proc, m.url+"/readyz", http.StatusOK)
			tok := tn.aliceOrg(t)
			if status, body := m.do(t, "GET", acmePath+"/users", tok, ""); status != http.StatusOK {
				t.Fatalf("before the fault: %d %q", status, body)
			}
			if tc.hook != nil {
				tn.setHook("/api/", tc.hook)
			} else {
				tn.emu.SetFault(fakelogto.TargetManagement, tc.fault)
			}
			tn.emu.ResetCalls()
			start := time.Now()
			status, body := m.do(t, "GET", acmePath+"/users", tok, "")
			wantJSONErrorUnlessRedirect(t, "member listing during the fault", status, body, tc.want)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the answer took %v with --upstream-timeout 2s", d)
			}
			if tc.fault.Kind == fakelogto.FaultUnauthorized {
				if n := tn.emu.Calls(fakelogto.TargetManagement); n != 2 {
					t.Errorf("a 401 from Logto: %d Management API calls, want 2 (one retry with a new token)", n)
				}
				if n := tn.emu.Calls(fakelogto.TargetToken); n != 1 {
					t.Errorf("a 401 from Logto: %d token fetches, want 1", n)
				}
			}
			tn.setHook("/api/", nil)
			tn.emu.SetFault(fakelogto.TargetManagement, fakelogto.Fault{})
			if status, body := m.do(t, "GET", acmePath+"/users", tok, ""); status != http.StatusOK {
				t.Errorf("after the fault: %d %q, want 200", status, body)
			}
		})
	}
}

// wantJSONErrorUnlessRedirect accepts a redirect passed through as it is (not followed).
func wantJSONErrorUnlessRedirect(t *testing.T, what string, status int, body string, want []int) {
	t.Helper()
	if status >= 300 && status < 400 {
		for _, w := range want {
			if w == status {
				return
			}
		}
	}
	wantJSONError(t, what, status, body, want...)
}

// A non-idempotent request whose Logto call fails is answered 502 and not retried: Logto saw it
// once.
func TestPostNotRetried(t *testing.T) {
	tn := newTenant(t)
	s := startSidecar(t, tn, true)
	m := startMgmtproxy(t, tn, s)
	waitStatus(t, m.proc, m.url+"/readyz", http.StatusOK)
	tok := tn.aliceOrg(t)
	for _, f := range []fakelogto.Fault{fakelogto.Reset, fakelogto.ServerError} {
		tn.emu.SetFault(fakelogto.TargetManagement, f)
		tn.emu.ResetCalls()
		status, body := m.do(t, "POST", acmePath+"/users", tok, `{"userIds":["`+fakelogto.DemoCarolID+`"]}`)
		wantJSONError(t, "add member during the fault", status, body, http.StatusBadGateway)
		if n := tn.emu.Calls(fakelogto.TargetManagement); n != 1 {
			t.Errorf("fault %v: %d Management API calls for one POST, want 1 (no retry)", f.Kind, n)
		}
	}
}

// Without an M2M token mgmtproxy answers 5xx with JSON and sends nothing to the Management API;
// it does not hammer a failing token endpoint; and it recovers when the endpoint does.
func TestTokenEndpointFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   fakelogto.Fault
		recover bool // clear the fault and expect a 200 (not for a long Retry-After)
	}{
		{"down", fakelogto.Down, true},
		{"500", fakelogto.ServerError, true},
		{"reset", fakelogto.Reset, true},
		{"slow", fakelogto.Slow(time.Hour), true},
		{"HTML", fakelogto.HTML, true},
		{"truncated JSON", fakelogto.Fault{Kind: fakelogto.FaultInvalidJSON}, true},
		{"429 Retry-After 60", fakelogto.Fault{Kind: fakelogto.FaultTooMany, RetryAfter: time.Minute}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTenant(t)
			tn.emu.SetFault(fakelogto.TargetToken, tc.fault)
			s := startSidecar(t, tn, true)
			m := startMgmtproxy(t, tn, s, "--upstream-timeout", "2s")
			tok := tn.aliceOrg(t)
			for i := range 5 {
				status, body := m.do(t, "GET", acmePath, tok, "")
				wantJSONError(t, "GET without a token", status, body, 502, 503, 504)
				if i == 0 && t.Failed() {
					return
				}
			}
			if n := tn.emu.Calls(fakelogto.TargetManagement); n != 0 {
				t.Errorf("%d Management API calls without an M2M token, want 0", n)
			}
			if n := tn.emu.Calls(fakelogto.TargetToken); n > 4 {
				t.Errorf("%d token fetches for 5 requests (plus start-up), want backoff to keep it at most 4", n)
			}
			if !tc.recover {
				return
			}
			tn.emu.SetFault(fakelogto.TargetToken, fakelogto.Fault{})
			eventually(t, "a 200 once the token endpoint recovered", func() bool {
				status, _ := m.do(t, "GET", acmePath, tok, "")
				return status == http.StatusOK
			})
		})
	}
}

// A token answer without expires_in, or with 0, is used but treated as short-lived: requests
// succeed, and the token is fetched again rather than kept for an hour.
func TestTokenWithoutLifetime(t *testing.T) {
	for _, kind := range []fakelogto.FaultKind{fakelogto.FaultNoExpiry, fakelogto.FaultZeroExpiry} {
		t.Run(map[fakelogto.FaultKind]string{fakelogto.FaultNoExpiry: "no expires_in", fakelogto.FaultZeroExpiry: "expires_in 0"}[kind], func(t *testing.T) {
			t.Parallel()
			tn := newTenant(t)
			tn.emu.SetFault(fakelogto.TargetToken, fakelogto.Fault{Kind: kind})
			s := startSidecar(t, tn, true)
			m := startMgmtproxy(t, tn, s)
			tok := tn.aliceOrg(t)
			if status, body := m.do(t, "GET", acmePath, tok, ""); status != http.StatusOK {
				t.Fatalf("GET with a token without lifetime: %d %q, want 200", status, body)
			}
			first := tn.emu.Calls(fakelogto.TargetToken)
			eventually(t, "the short-lived token fetched again", func() bool {
				m.do(t, "GET", acmePath, tok, "")
				return tn.emu.Calls(fakelogto.TargetToken) > first
			})
		})
	}
}
