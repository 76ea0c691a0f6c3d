package mgmtproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// clock is a settable clock for the token source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// withClock gives e's token source a clock the test moves.
func withClock(e *env) *clock {
	c := &clock{t: time.Now()}
	e.proxy.tokens.now = c.now
	return c
}

func (e *env) getOrg(t *testing.T) *response {
	t.Helper()
	return e.allowed(t, "GET", "/api/organizations/"+e.org, "GET /api/organizations/{orgId}", "")
}

func wantStatus(t *testing.T, what string, resp *response, status int, code string) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("%s status = %d (%s), want %d", what, resp.status, resp.body, status)
	}
	if code == "" {
		return
	}
	var body apiError
	resp.json(t, &body)
	if body.Code != code {
		t.Errorf("%s code = %q, want %q", what, body.Code, code)
	}
}

func wantCalls(t *testing.T, e *env, target fakelogto.Target, want int) {
	t.Helper()
	if got := e.logto.Calls(target); got != want {
		t.Errorf("%s calls = %d, want %d", target, got, want)
	}
}

func TestConcurrentFirstRequestsFetchOneToken(t *testing.T) {
	// Generous limits: under the race detector on a busy machine 1000 requests queue for a while.
	e := newEnv(t, func(c *Config) { c.UpstreamTimeout = 5 * time.Minute })
	const n = 1000
	path := "/api/organizations/" + e.org
	// One instant for signing and verifying: on a loaded machine (the race detector, shared cores)
	// requests queue longer than a decision lives, and this test is about the token, not expiry.
	now := time.Now()
	e.signer.Now = func() time.Time { return now }
	e.proxy.verifier.Load().Now = e.signer.Now
	start := make(chan struct{})
	statuses := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			dec, err := e.signer.Sign(adminClaims("GET", path, "GET /api/organizations/{orgId}"))
			if err != nil {
				statuses <- "sign: " + err.Error()
				return
			}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", e.url+path, nil)
			req.Header.Set("x-orgauthz-decision", dec)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- "error: " + err.Error()
				return
			}
			var body apiError
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			statuses <- fmt.Sprint(resp.StatusCode, " ", body.Code)
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	ok, other := 0, map[string]int{}
	for s := range statuses {
		if s == "200 " {
			ok++
		} else {
			other[s]++
		}
	}
	if ok != n {
		t.Errorf("%d of %d concurrent requests answered 200; others by status and reason: %v", ok, n, other)
	}
	wantCalls(t, e, fakelogto.TargetToken, 1)
	wantCalls(t, e, fakelogto.TargetManagement, n)
}

func TestTokenCachedUntilShortlyBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	c := withClock(e)
	wantStatus(t, "first GET", e.getOrg(t), http.StatusOK, "")
	wantCalls(t, e, fakelogto.TargetToken, 1)
	c.add(time.Hour - 40*time.Second) // still more than the 30 s margin left
	wantStatus(t, "GET before the margin", e.getOrg(t), http.StatusOK, "")
	wantCalls(t, e, fakelogto.TargetToken, 1)
	c.add(15 * time.Second) // 25 s left: replace it
	wantStatus(t, "GET inside the margin", e.getOrg(t), http.StatusOK, "")
	wantCalls(t, e, fakelogto.TargetToken, 2)
	if b := e.bearers(); len(b) != 2 {
		t.Errorf("distinct bearers sent to Logto = %d, want 2", len(b))
	}
}

func TestTokenWithoutExpiryIsShortLived(t *testing.T) {
	for _, f := range []fakelogto.Fault{{Kind: fakelogto.FaultNoExpiry}, {Kind: fakelogto.FaultZeroExpiry}} {
		e := newEnv(t)
		c := withClock(e)
		e.logto.SetFault(fakelogto.TargetToken, f)
		wantStatus(t, "first GET", e.getOrg(t), http.StatusOK, "")
		c.add(40 * time.Second)
		wantStatus(t, "GET after 40 s", e.getOrg(t), http.StatusOK, "")
		wantCalls(t, e, fakelogto.TargetToken, 1)
		c.add(10 * time.Second) // 50 s: inside the margin of a 60 s token
		wantStatus(t, "GET after 50 s", e.getOrg(t), http.StatusOK, "")
		wantCalls(t, e, fakelogto.TargetToken, 2)
	}
}

func TestTokenTooManyRequestsHonoursRetryAfter(t *testing.T) {
	e := newEnv(t)
	c := withClock(e)
	e.logto.SetFault(fakelogto.TargetToken, fakelogto.Fault{Kind: fakelogto.FaultTooMany, RetryAfter: 30 * time.Second})
	for i := range 3 {
		wantStatus(t, "GET while rate limited", e.getOrg(t), http.StatusBadGateway, "m2m_token_unavailable")
		if i == 0 {
			c.add(20 * time.Second) // still inside Retry-After
		}
	}
	wantCalls(t, e, fakelogto.TargetToken, 1)
	wantCalls(t, e, fakelogto.TargetManagement, 0)
	e.logto.SetFault(fakelogto.TargetToken, fakelogto.Fault{})
	c.add(11 * time.Second)
	wantStatus(t, "GET after Retry-After", e.getOrg(t), http.StatusOK, "")
	wantCalls(t, e, fakelogto.TargetToken, 2)
}

func TestTokenEndpointFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault fakelogto.Fault
	}{
		{"down", fakelogto.Down},
		{"server error", fakelogto.ServerError},
		{"reset", fakelogto.Reset},
		{"html", fakelogto.HTML},
		{"invalid json", fakelogto.Fault{Kind: fakelogto.FaultInvalidJSON}},
		{"huge", fakelogto.Huge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := withClock(e)
			e.logto.SetFault(fakelogto.TargetToken, tc.fault)
			wantStatus(t, "GET", e.getOrg(t), http.StatusBadGateway, "m2m_token_unavailable")
			wantStatus(t, "GET again at once", e.getOrg(t), http.StatusBadGateway, "m2m_token_unavailable")
			wantCalls(t, e, fakelogto.TargetToken, 1) // backing off: not asked again
			wantCalls(t, e, fakelogto.TargetManagement, 0)
			resp := e.do(t, "GET", "/readyz", "", "")
			wantStatus(t, "readyz", resp, http.StatusServiceUnavailable, "m2m_token_unavailable")
			e.logto.SetFault(fakelogto.TargetToken, fakelogto.Fault{})
			c.add(2 * time.Second)
			wantStatus(t, "readyz after recovery", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
			wantStatus(t, "GET after recovery", e.getOrg(t), http.StatusOK, "")
			wantCalls(t, e, fakelogto.TargetToken, 2)
		})
	}
}

func TestTokenBadSecret(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.M2MAppSecretFile = ""
		c.M2MAppSecret = "wrong-secret-value"
	})
	resp := e.getOrg(t)
	wantStatus(t, "GET with a bad secret", resp, http.StatusBadGateway, "m2m_token_unavailable")
	wantCalls(t, e, fakelogto.TargetToken, 1) // Basic auth only: no second try with the secret in the form
	wantCalls(t, e, fakelogto.TargetManagement, 0)
	logs := e.logs.String()
	if strings.Contains(logs, "wrong-secret-value") || strings.Contains(string(resp.body), "wrong-secret-value") {
		t.Error("the secret appears in a log line or the response")
	}
	if !strings.Contains(logs, "invalid_client") {
		t.Errorf("log does not say why: %s", logs)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {50, time.Minute}} {
		if got := backoff(tc.n, errTokenUnavailable); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
	now := time.Date(2026, 11, 24, 19, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"99999999999", 24 * time.Hour, true},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
	} {
		got, ok := retryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// stubLogto answers in Logto's place: the token endpoint with tokenBody (a JSON object), and every
// Management API call with api's status and body. It returns the token requests' counter.
func stubLogto(e *env, tokenBody string, apiStatus int, apiBody string) *atomic.Int64 {
	var fetches atomic.Int64
	e.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch {
		case r.URL.Path == "/oidc/token":
			n := fetches.Add(1)
			w.Write([]byte(strings.Replace(tokenBody, "TOKEN", fmt.Sprintf("stub-m2m-token-%d", n), 1)))
		case strings.HasPrefix(r.URL.Path, "/api/"):
			w.WriteHeader(apiStatus)
			w.Write([]byte(apiBody))
		default:
			return false
		}
		return true
	})
	return &fetches
}

// TestTokenLifetimeClamped: whatever expires_in the token endpoint states — none, ≤ 0, tiny, absurd —
// mgmtproxy fetches at most once per minFetchInterval and keeps no token longer than maxLifetime.
func TestTokenLifetimeClamped(t *testing.T) {
	// Fetches after 5 GETs at 0 s, 9 s, 11 s, 51 s and 24 h + 51 s.
	steps := []time.Duration{0, 9 * time.Second, 2 * time.Second, 40 * time.Second, 24 * time.Hour}
	for _, tc := range []struct {
		name      string
		expiresIn string  // JSON member, "" for none
		want      []int64 // nil: the response is refused (no token, backoff)
	}{
		{"minus one", `"expires_in":-1,`, []int64{1, 1, 1, 2, 3}},          // short-lived 60 s: refresh at 45 s
		{"zero", `"expires_in":0,`, []int64{1, 1, 1, 2, 3}},                // the same
		{"absent", ``, []int64{1, 1, 1, 2, 3}},                             // the same
		{"min int32", `"expires_in":-2147483648,`, []int64{1, 1, 1, 2, 3}}, // the same
		{"one second", `"expires_in":1,`, []int64{1, 1, 2, 3, 4}},          // 10 s, never before 10 s
		{"fraction", `"expires_in":0.5,`, nil},                             // not an integer: no token, backoff
		{"an hour", `"expires_in":3600,`, []int64{1, 1, 1, 1, 2}},          // as stated
		{"a century", `"expires_in":3153600000,`, []int64{1, 1, 1, 1, 2}},  // 24 h at most
		{"beyond int64", `"expires_in":1e300,`, nil},                       // the same
		{"a string", `"expires_in":"3600",`, []int64{1, 1, 1, 2, 3}},       // not a number: short-lived
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := withClock(e)
			fetches := stubLogto(e, `{"access_token":"TOKEN",`+tc.expiresIn+`"token_type":"Bearer","scope":"all"}`, http.StatusOK, `{"id":"x"}`)
			if tc.want == nil {
				for range 5 {
					wantStatus(t, "GET", e.getOrg(t), http.StatusBadGateway, "m2m_token_unavailable")
				}
				if n := fetches.Load(); n != 1 {
					t.Errorf("token fetches = %d, want 1", n)
				}
				return
			}
			for i, d := range steps {
				c.add(d)
				for range 5 {
					wantStatus(t, "GET", e.getOrg(t), http.StatusOK, "")
				}
				if n := fetches.Load(); n != tc.want[i] {
					t.Errorf("after step %d (+%v): token fetches = %d, want %d", i, d, n, tc.want[i])
				}
			}
		})
	}
}

// TestM2MWithoutManagementRole: Logto gives an M2M app without the Management API role a token all
// the same (200, no scope: logto-real/more/m2m-no-role-real/003). mgmtproxy must not use it: 502
// m2m_forbidden to users, /readyz not ready, a log line saying what to fix, and no Management API call.
func TestM2MWithoutManagementRole(t *testing.T) {
	for _, tc := range []struct {
		name, scope string // scope: the JSON member, "" for none
		ok          bool
	}{
		{"no scope (real Logto)", ``, false},
		{"empty scope", `,"scope":""`, false},
		{"other scope", `,"scope":"read:org"`, false},
		{"all as a prefix", `,"scope":"allx"`, false},
		{"all upper case", `,"scope":"ALL"`, false},
		{"scope not a string", `,"scope":["all"]`, false},
		{"all among others", `,"scope":"openid all"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fetches := stubLogto(e, `{"access_token":"TOKEN","expires_in":3600,"token_type":"Bearer"`+tc.scope+`}`, http.StatusOK, `{"id":"x"}`)
			if tc.ok {
				wantStatus(t, "GET", e.getOrg(t), http.StatusOK, "")
				wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
				return
			}
			wantStatus(t, "GET", e.getOrg(t), http.StatusBadGateway, "m2m_forbidden")
			wantStatus(t, "GET again", e.getOrg(t), http.StatusBadGateway, "m2m_forbidden")
			wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, "m2m_forbidden")
			if n := fetches.Load(); n != 1 {
				t.Errorf("token fetches = %d, want 1 (backing off)", n)
			}
			if n := len(e.management()); n != 0 {
				t.Errorf("Management API calls = %d, want 0", n)
			}
			wantFixLogged(t, e)
		})
	}
}

// TestManagementAPIForbidden: a token Logto then refuses with 403 auth.forbidden (logto-real/more/
// m2m-no-role-real/004) is mgmtproxy's problem, not the user's: 502 m2m_forbidden on every path to
// Logto (forward, create-org, bulk), /readyz not ready. Any other 403 passes through.
func TestManagementAPIForbidden(t *testing.T) {
	const forbidden = `{"code":"auth.forbidden","message":"Forbidden. Please check your permissions."}`
	e := newEnv(t)
	c := withClock(e)
	stubLogto(e, `{"access_token":"TOKEN","expires_in":3600,"token_type":"Bearer","scope":"all"}`, http.StatusForbidden, forbidden)
	wantStatus(t, "GET", e.getOrg(t), http.StatusBadGateway, "m2m_forbidden")
	wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, "m2m_forbidden")
	wantFixLogged(t, e)

	c.add(time.Hour) // past the backoff: a new token, refused again on each path
	user := createClaims("global_api", e.user, false)
	resp, _ := e.create(t, user, `{"name":"F"}`)
	wantStatus(t, "create as a user", resp, http.StatusBadGateway, "m2m_forbidden")
	c.add(time.Hour)
	resp = e.allowed(t, "POST", "/api/organizations", "POST /api/organizations", `{"name":"F"}`)
	wantStatus(t, "create as admin", resp, http.StatusBadGateway, "m2m_forbidden")
	c.add(time.Hour)
	resp = e.bulk(t, "/bulk/organizations/delete", `{"ids":["`+e.org+`"]}`)
	var out struct {
		Results []bulkResult `json:"results"`
	}
	resp.json(t, &out)
	if len(out.Results) != 1 || out.Results[0].Status != http.StatusBadGateway || !strings.Contains(string(out.Results[0].Error), "m2m_forbidden") {
		t.Errorf("bulk delete = %d %s, want one item 502 m2m_forbidden", resp.status, resp.body)
	}

	// Another 403 (not auth.forbidden) is Logto's answer to this request: it passes, body and all.
	c.add(time.Hour)
	other := `{"code":"organization.forbidden","message":"no"}`
	stubLogto(e, `{"access_token":"TOKEN","expires_in":3600,"token_type":"Bearer","scope":"all"}`, http.StatusForbidden, other)
	resp = e.getOrg(t)
	if resp.status != http.StatusForbidden || string(resp.body) != other {
		t.Errorf("other 403 = %d %s, want Logto's 403 %s", resp.status, resp.body, other)
	}
	wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
}

// wantFixLogged checks the error log line that tells the operator what to fix, naming the app.
func wantFixLogged(t *testing.T, e *env) {
	t.Helper()
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "assign it a machine-to-machine role") &&
			strings.Contains(line, `"app_id":"`+e.appID+`"`) {
			return
		}
	}
	t.Errorf("no error log line naming app %s and the role to assign:\n%s", e.appID, e.logs.String())
}
