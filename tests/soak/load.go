package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
)

// Config says how hard and how long to soak.
type Config struct {
	Duration     time.Duration // measured load, after Warmup
	Warmup       time.Duration
	ChecksPerSec int // every check the sidecar answers, the mgmtproxy requests' included
	MgmtPerSec   int
	Bin          string
	Verbose      bool
}

func defaultConfig() Config {
	return Config{Duration: 10 * time.Minute, Warmup: 10 * time.Second, ChecksPerSec: 1000, MgmtPerSec: 100}
}

func (c Config) validate() error {
	var errs []error
	if c.Duration < 10*time.Second || c.Duration > 2*time.Hour {
		errs = append(errs, fmt.Errorf("-duration %v: want 10s to 2h", c.Duration))
	}
	if c.Warmup < 0 || c.Warmup > 10*time.Minute {
		errs = append(errs, fmt.Errorf("-warmup %v: want 0 to 10m", c.Warmup))
	}
	if c.MgmtPerSec < 0 || c.ChecksPerSec < c.MgmtPerSec || c.ChecksPerSec > 20000 {
		errs = append(errs, fmt.Errorf("want 0 <= -mgmt-per-sec (%d) <= -checks-per-sec (%d) <= 20000", c.MgmtPerSec, c.ChecksPerSec))
	}
	return errors.Join(errs...)
}

// scenario is one kind of request and the answer it must get.
type scenario struct {
	name   string
	method string
	path   string
	token  string // "" sends no Authorization
	body   string
	want   int
}

// scenarios are the checks-only mix (allowed and denied for each reason the policy gives) and
// the mgmtproxy mix (reads, so the tenant's state stays the same through a long soak).
func scenarios(ctx context.Context, c *chain.Chain) (checks, mgmt []scenario, secrets []string, err error) {
	tokens := &chain.Tokens{Endpoint: c.LogtoURL(), Seed: c.Seed}
	acme, alice, bob, carol := c.Seed.Organizations["acme"], c.Seed.Users["alice"], c.Seed.Users["bob"], c.Seed.Users["carol"]
	get := func(req chain.TokenRequest) string {
		if err != nil {
			return ""
		}
		var tok string
		tok, err = tokens.Get(ctx, req)
		secrets = append(secrets, tok)
		return tok
	}
	aliceOrg := get(chain.TokenRequest{UserID: alice, OrganizationID: acme, Scopes: []string{"org:read", "member:read", "member:add"}})
	bobOrg := get(chain.TokenRequest{UserID: bob, OrganizationID: acme, Scopes: []string{"org:read", "member:read"}})
	carolAdmin := get(chain.TokenRequest{UserID: carol, Resource: chain.AdminResource, Scopes: []string{"admin:org:read", "admin:org:write"}})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("get tokens: %w", err)
	}
	org := "/api/organizations/" + acme
	checks = []scenario{
		{"org read", "GET", org, aliceOrg, "", 200},
		{"member list", "GET", org + "/users?page=1&page_size=20", bobOrg, "", 200},
		{"member add (body checked)", "POST", org + "/users", aliceOrg, `{"userIds":["` + carol + `"]}`, 200},
		{"admin list", "GET", "/api/organizations", carolAdmin, "", 200},
		{"other org", "GET", "/api/organizations/other0000001", aliceOrg, "", 403},
		{"missing scope", "DELETE", org, bobOrg, "", 403},
		{"no token", "GET", org, "", "", 401},
		{"bad token", "GET", org, aliceOrg[:len(aliceOrg)-4] + "AAAA", "", 401},
		{"ambiguous path", "GET", "/api/organizations/" + acme + "/../x", aliceOrg, "", 400},
	}
	mgmt = []scenario{
		{"mgmtproxy org read", "GET", org, aliceOrg, "", 200},
		{"mgmtproxy member list", "GET", org + "/users", bobOrg, "", 200},
		{"mgmtproxy member roles", "GET", org + "/users/" + bob + "/roles", aliceOrg, "", 200},
		{"mgmtproxy own orgs", "GET", "/api/users/" + alice + "/organizations", aliceOrg, "", 200},
		{"mgmtproxy admin list", "GET", "/api/organizations?page=1", carolAdmin, "", 200},
	}
	return checks, mgmt, secrets, nil
}

// tally counts a stream's outcomes; safe for concurrent use.
type tally struct {
	sent, failed, dropped atomic.Int64
	mu                    sync.Mutex
	samples               []string // the first few failures
	latencies             []time.Duration
}

func (t *tally) fail(format string, args ...any) {
	t.failed.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < 5 {
		t.samples = append(t.samples, fmt.Sprintf(format, args...))
	}
}

func (t *tally) took(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latencies = append(t.latencies, d)
}

func (t *tally) percentile(p float64) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.latencies) == 0 {
		return 0
	}
	slices.Sort(t.latencies)
	return t.latencies[min(len(t.latencies)-1, int(p*float64(len(t.latencies))))]
}

// generate sends perSec requests a second until ctx ends or total are sent, each by one of
// workers goroutines; a tick that finds every worker busy and the queue full is counted as
// dropped (the chain, or this machine, fell behind). Latency is measured from when a request
// was due, so a stall is not hidden by waiting (open loop).
func generate(ctx context.Context, perSec, workers int, total int64, t *tally, send func(ctx context.Context, i int64) error) {
	if perSec == 0 {
		return
	}
	due := make(chan time.Time, perSec) // at most a second of backlog
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for at := range due {
				i := next.Add(1)
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := send(rctx, i)
				cancel()
				if err != nil && ctx.Err() == nil {
					t.fail("%v", err)
				}
				t.took(time.Since(at))
			}
		})
	}
	const tick = 10 * time.Millisecond
	start := time.Now()
	ticker := time.NewTicker(tick)
	defer func() {
		ticker.Stop()
		close(due)
		wg.Wait()
	}()
	for t.sent.Load()+t.dropped.Load() < total {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			// Everything due by now, so a late tick catches up instead of lowering the rate.
			want := min(total, int64(now.Sub(start).Seconds()*float64(perSec)))
			for t.sent.Load()+t.dropped.Load() < want {
				select {
				case due <- now:
					t.sent.Add(1)
				default:
					t.dropped.Add(1)
				}
			}
		}
	}
}

// checker sends checks-only scenarios round robin and compares each answer with the scenario's.
func checker(client *envoyclient.Client, list []scenario, secrets []string) func(context.Context, int64) error {
	return func(ctx context.Context, i int64) error {
		sc := list[int(i)%len(list)]
		r, err := newRequest(ctx, sc, "http://app.example.com")
		if err != nil {
			return err
		}
		resp, err := client.Check(ctx, r)
		if err != nil {
			return fmt.Errorf("%s: check: %v", sc.name, err)
		}
		got := 200
		if d := resp.GetDeniedResponse(); d != nil {
			got = int(d.GetStatus().GetCode())
			for _, s := range secrets {
				if strings.Contains(d.GetBody(), s) {
					return fmt.Errorf("%s: the deny body echoes a token", sc.name)
				}
			}
		} else if resp.GetOkResponse() == nil {
			got = 0
		}
		if got != sc.want {
			return fmt.Errorf("%s: status %d, want %d", sc.name, got, sc.want)
		}
		return nil
	}
}

// forwarder sends mgmtproxy scenarios through the emulated Envoy to mgmtproxy.
func forwarder(client *envoyclient.Client, next http.RoundTripper, base string, list []scenario) func(context.Context, int64) error {
	return func(ctx context.Context, i int64) error {
		sc := list[int(i)%len(list)]
		r, err := newRequest(ctx, sc, base)
		if err != nil {
			return err
		}
		resp, err := client.Do(r, next)
		if err != nil {
			return fmt.Errorf("%s: %v", sc.name, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != sc.want {
			return fmt.Errorf("%s: status %d, want %d", sc.name, resp.StatusCode, sc.want)
		}
		return nil
	}
}

func newRequest(ctx context.Context, sc scenario, base string) (*http.Request, error) {
	var body io.Reader
	if sc.body != "" {
		body = strings.NewReader(sc.body)
	}
	r, err := http.NewRequestWithContext(ctx, sc.method, base+sc.path, body)
	if err != nil {
		return nil, err
	}
	r.RequestURI = sc.path // exactly this target, ".." included
	if sc.token != "" {
		r.Header.Set("Authorization", "Bearer "+sc.token)
	}
	if sc.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	return r, nil
}
