package mgmtproxy

import (
	"net/http"
	"strings"
	"sync"
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
	start := make(chan struct{})
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			// Signed just before sending, so a decision cannot expire while others queue.
			dec, err := e.signer.Sign(adminClaims("GET", path, "GET /api/organizations/{orgId}"))
			if err != nil {
				statuses <- -2
				return
			}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", e.url+path, nil)
			req.Header.Set("x-orgauthz-decision", dec)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- -1
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	ok, other := 0, map[int]int{}
	for s := range statuses {
		if s == http.StatusOK {
			ok++
		} else {
			other[s]++
		}
	}
	if ok != n {
		t.Errorf("%d of %d concurrent requests answered 200; others by status: %v", ok, n, other)
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
