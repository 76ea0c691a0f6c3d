package mgmtproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

type bulkAnswer struct {
	Results []struct {
		Index  int             `json:"index"`
		Status int             `json:"status"`
		ID     string          `json:"id"`
		Error  json.RawMessage `json:"error"`
	} `json:"results"`
}

func (e *env) bulk(t *testing.T, path, body string) *response {
	t.Helper()
	return e.allowed(t, "POST", path, "POST "+path, body)
}

func TestBulkCreateAndDelete(t *testing.T) {
	e := newEnv(t)
	const n = 50
	bad := map[int]string{3: `{"name":5}`, 17: `{}`, 31: `"not an object"`, 44: `[1]`}
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"name":"bulk-%02d"}`, i)
		if b, ok := bad[i]; ok {
			items[i] = b
		}
	}
	resp := e.bulk(t, "/bulk/organizations", `{"organizations":[`+strings.Join(items, ",")+`]}`)
	wantStatus(t, "bulk create", resp, http.StatusOK, "")
	var got bulkAnswer
	resp.json(t, &got)
	if len(got.Results) != n {
		t.Fatalf("bulk create results = %d, want %d", len(got.Results), n)
	}
	var created []string
	for i, r := range got.Results {
		if r.Index != i {
			t.Errorf("result %d has index %d, want input order", i, r.Index)
		}
		if _, isBad := bad[i]; isBad {
			if r.Status != http.StatusBadRequest || len(r.Error) == 0 || r.ID != "" {
				t.Errorf("result %d = %+v, want 400 with an error", i, r)
			}
			continue
		}
		if r.Status != http.StatusCreated || r.ID == "" || r.Error != nil {
			t.Errorf("result %d = status %d id %q error %s, want 201 with an id", i, r.Status, r.ID, r.Error)
		}
		created = append(created, r.ID)
	}
	orgs := e.logto.Organizations()
	for _, id := range created {
		if !slices.Contains(orgs, id) {
			t.Errorf("created organization %s not in Logto", id)
		}
	}
	if len(orgs) != 1+n-len(bad) {
		t.Errorf("organizations in Logto = %d, want %d", len(orgs), 1+n-len(bad))
	}
	// Items that are not objects never reach Logto.
	if calls := e.logto.Calls(fakelogto.TargetManagement); calls != n-2 {
		t.Errorf("Management API calls = %d, want %d", calls, n-2)
	}

	ids := append([]string{}, created[:5]...)
	ids = append(ids, "zzzzzzzzzzzz", "NOT-AN-ID")
	raw, _ := json.Marshal(map[string][]string{"ids": ids})
	resp = e.bulk(t, "/bulk/organizations/delete", string(raw))
	wantStatus(t, "bulk delete", resp, http.StatusOK, "")
	resp.json(t, &got)
	wantStatuses := []int{204, 204, 204, 204, 204, 404, 400}
	for i, r := range got.Results {
		if r.Index != i || r.Status != wantStatuses[i] {
			t.Errorf("delete result %d = index %d status %d, want index %d status %d", i, r.Index, r.Status, i, wantStatuses[i])
		}
	}
	for _, id := range created[:5] {
		if slices.Contains(e.logto.Organizations(), id) {
			t.Errorf("organization %s still in Logto after bulk delete", id)
		}
	}
}

func TestBulkRejectsBadRequests(t *testing.T) {
	e := newEnv(t)
	many := strings.TrimSuffix(strings.Repeat(`{"name":"x"},`, maxBulkItems+1), ",")
	for _, tc := range []struct{ name, path, body string }{
		{"101 items", "/bulk/organizations", `{"organizations":[` + many + `]}`},
		{"no items", "/bulk/organizations", `{"organizations":[]}`},
		{"no field", "/bulk/organizations", `{}`},
		{"ids on create", "/bulk/organizations", `{"ids":["abc"]}`},
		{"both fields", "/bulk/organizations/delete", `{"ids":["abc"],"organizations":[{}]}`},
		{"unknown field", "/bulk/organizations/delete", `{"ids":["abc"],"force":true}`},
		{"not JSON", "/bulk/organizations/delete", `ids=abc`},
		{"trailing data", "/bulk/organizations/delete", `{"ids":["abc"]} {"ids":["def"]}`},
		{"array", "/bulk/organizations/delete", `["abc"]`},
	} {
		resp := e.bulk(t, tc.path, tc.body)
		if resp.status != http.StatusBadRequest {
			t.Errorf("%s: status = %d (%s), want 400", tc.name, resp.status, resp.body)
		}
	}
	if n := len(e.seen); n != 0 {
		t.Errorf("requests reaching Logto = %d, want 0", n)
	}
}

func TestBulkWithoutToken(t *testing.T) {
	e := newEnv(t)
	e.logto.SetFault(fakelogto.TargetToken, fakelogto.Down)
	resp := e.bulk(t, "/bulk/organizations", `{"organizations":[{"name":"a"},{"name":"b"}]}`)
	wantStatus(t, "bulk without a token", resp, http.StatusBadGateway, "m2m_token_unavailable")
	wantCalls(t, e, fakelogto.TargetManagement, 0)
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit float64
		burst int
		ok    bool
	}{
		{"150/10s", 15, 150, true},
		{"1/1m", 1.0 / 60, 1, true},
		{"0/10s", 0, 0, false},
		{"-5/10s", 0, 0, false},
		{"150", 0, 0, false},
		{"150/", 0, 0, false},
		{"x/10s", 0, 0, false},
		{"150/0s", 0, 0, false},
	} {
		l, b, err := parseRate(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (float64(l) != tc.limit || b != tc.burst)) {
			t.Errorf("parseRate(%q) = %v, %d, %v; want %v, %d, ok %v", tc.in, l, b, err, tc.limit, tc.burst, tc.ok)
		}
	}
}

func TestBulkPaced(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BulkRate, c.BulkConcurrency = "4/1s", 2 })
	if got, burst := float64(e.proxy.limiter.Limit()), e.proxy.limiter.Burst(); got != 4 || burst != 2 {
		t.Fatalf("limiter = %v/s burst %d, want 4/s burst 2", got, burst)
	}
	wantStatus(t, "readyz", e.do(t, "GET", "/readyz", "", ""), http.StatusOK, "")
	start := time.Now()
	resp := e.bulk(t, "/bulk/organizations", `{"organizations":[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"d"},{"name":"e"},{"name":"f"}]}`)
	wantStatus(t, "bulk create", resp, http.StatusOK, "")
	// A lower bound only, which load cannot break: 2 at once, then 4 more at 4 per second.
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("6 items at 4/s with burst 2 took %v, want at least ~1s", d)
	}
}

func TestDefaultBulkRateUnderLogtoLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { *c = withDefaults(*c) })
	l, b := float64(e.proxy.limiter.Limit()), e.proxy.limiter.Burst()
	// Over any 10 s window at most burst + 10 s × rate requests start.
	if worst := float64(b) + 10*l; worst >= 200 {
		t.Errorf("default pacing allows %v requests per 10 s, want under 200", worst)
	}
}

// withDefaults resets the settings newEnv changed for speed to DefaultConfig's.
func withDefaults(c Config) Config {
	d := DefaultConfig()
	c.BulkRate, c.BulkConcurrency = d.BulkRate, d.BulkConcurrency
	return c
}
