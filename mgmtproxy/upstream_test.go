package mgmtproxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

func TestUnauthorizedRefetchesOnce(t *testing.T) {
	e := newEnv(t)
	c := withClock(e)
	wantStatus(t, "warm-up GET", e.getOrg(t), http.StatusOK, "")
	e.logto.ResetCalls()
	c.add(minFetchInterval)

	// Logto refuses the cached token once: a new token, the same request again, Logto's answer.
	e.logto.SetFault(fakelogto.TargetManagement, fakelogto.Fault{Kind: fakelogto.FaultServerError, Status: 401, Times: 1})
	wantStatus(t, "GET after one 401", e.getOrg(t), http.StatusOK, "")
	wantCalls(t, e, fakelogto.TargetToken, 1)
	wantCalls(t, e, fakelogto.TargetManagement, 2)

	// A POST with a body is resent whole.
	e.logto.ResetCalls()
	c.add(minFetchInterval)
	e.logto.SetFault(fakelogto.TargetManagement, fakelogto.Fault{Kind: fakelogto.FaultServerError, Status: 401, Times: 1})
	resp := e.allowed(t, "POST", "/api/organizations", "POST /api/organizations", `{"name":"Retried"}`)
	wantStatus(t, "POST after one 401", resp, http.StatusCreated, "")
	mgmt := e.management()
	last := mgmt[len(mgmt)-2:]
	if last[0].body != `{"name":"Retried"}` || last[1].body != last[0].body {
		t.Errorf("bodies Logto got = %q, %q; want the same body twice", last[0].body, last[1].body)
	}

	// Logto keeps refusing: 502, after exactly one refetch and one retry.
	e.logto.ResetCalls()
	c.add(minFetchInterval)
	e.logto.SetFault(fakelogto.TargetManagement, fakelogto.Fault{Kind: fakelogto.FaultServerError, Status: 401})
	wantStatus(t, "GET with 401 twice", e.getOrg(t), http.StatusBadGateway, "upstream_unauthorized")
	wantCalls(t, e, fakelogto.TargetToken, 1)
	wantCalls(t, e, fakelogto.TargetManagement, 2)

	// Within minFetchInterval of that fetch, further 401s never fetch again: each request is retried
	// with the same token and answered 502.
	e.logto.ResetCalls()
	for range 5 {
		wantStatus(t, "GET with 401 inside the fetch interval", e.getOrg(t), http.StatusBadGateway, "upstream_unauthorized")
	}
	wantCalls(t, e, fakelogto.TargetToken, 0)

	// A token refused moments after its fetch (Logto rotated its keys) is still replaced at once, once
	// the last 401-forced fetch is minFetchInterval old.
	e.logto.ResetCalls()
	c.add(minFetchInterval)
	e.logto.SetFault(fakelogto.TargetManagement, fakelogto.Fault{})
	wantStatus(t, "GET on a fresh token", e.getOrg(t), http.StatusOK, "")
	e.logto.ResetCalls()
	e.logto.SetFault(fakelogto.TargetManagement, fakelogto.Fault{Kind: fakelogto.FaultServerError, Status: 401, Times: 1})
	wantStatus(t, "GET after a 401 on a young token", e.getOrg(t), http.StatusOK, "")
	wantCalls(t, e, fakelogto.TargetToken, 1)
}

func TestUpstreamFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		fault  fakelogto.Fault
		status int
		code   string
	}{
		{"500 on GET", "GET", fakelogto.ServerError, http.StatusBadGateway, "upstream_error"},
		{"503 plain text", "GET", fakelogto.Down, http.StatusBadGateway, "upstream_error"},
		{"reset on GET", "GET", fakelogto.Reset, http.StatusBadGateway, "upstream_unavailable"},
		{"reset on POST", "POST", fakelogto.Reset, http.StatusBadGateway, "upstream_unavailable"},
		{"500 on POST", "POST", fakelogto.ServerError, http.StatusBadGateway, "upstream_error"},
		{"429 passes", "GET", fakelogto.TooMany, http.StatusTooManyRequests, "guard.too_many_requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
			e.logto.SetFault(fakelogto.TargetManagement, tc.fault)
			var resp *response
			if tc.method == "POST" {
				resp = e.allowed(t, "POST", "/api/organizations", "POST /api/organizations", `{"name":"X"}`)
			} else {
				resp = e.getOrg(t)
			}
			wantStatus(t, tc.name, resp, tc.status, tc.code)
			if tc.method == "POST" {
				wantCalls(t, e, fakelogto.TargetManagement, 1) // never sent twice
			}
		})
	}
}

func TestUpstreamSlow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UpstreamTimeout = 2 * time.Second })
	wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
	e.logto.SetFault(fakelogto.TargetManagement, fakelogto.Slow(time.Minute))
	wantStatus(t, "GET from a slow Logto", e.getOrg(t), http.StatusGatewayTimeout, "upstream_timeout")
	wantStatus(t, "POST to a slow Logto", e.allowed(t, "POST", "/api/organizations", "POST /api/organizations", `{"name":"S"}`), http.StatusGatewayTimeout, "upstream_timeout")
	wantCalls(t, e, fakelogto.TargetManagement, 2)
}

func TestUpstreamUnreachable(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
	// Point the warm proxy at a port nobody listens on.
	ln := listenLoopback(t)
	addr := ln.Addr().String()
	ln.Close()
	e.proxy.base = mustParse(t, "http://"+addr)
	wantStatus(t, "GET with Logto gone", e.getOrg(t), http.StatusBadGateway, "upstream_unavailable")
}

// TestForbiddenPeekKeepsOtherBodies: to spot auth.forbidden, mgmtproxy reads the start of every 403;
// any other 403 reaches the caller byte for byte, however large or malformed.
func TestForbiddenPeekKeepsOtherBodies(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"not JSON", "Forbidden"},
		{"empty", ""},
		{"code not a string", `{"code":["auth.forbidden"]}`},
		{"larger than the peek", `{"code":"organization.forbidden","pad":"` + strings.Repeat("x", 3*maxErrorPeek) + `"}`},
		{"auth.forbidden beyond the peek", `{"pad":"` + strings.Repeat("x", maxErrorPeek) + `","code":"auth.forbidden"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			stubLogto(e, `{"access_token":"TOKEN","expires_in":3600,"token_type":"Bearer","scope":"all"}`, http.StatusForbidden, tc.body)
			resp := e.getOrg(t)
			if resp.status != http.StatusForbidden || string(resp.body) != tc.body {
				t.Errorf("status %d, body of %d bytes; want Logto's 403 with its %d bytes", resp.status, len(resp.body), len(tc.body))
			}
			wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
		})
	}
}
