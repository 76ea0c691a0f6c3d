package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// mgmtResult is what the mgmtproxy runs measured.
type mgmtResult struct {
	rate            float64
	direct, proxied []sample // fixed-rate runs: straight to the emulator, through mgmtproxy
	saturation      sample   // through mgmtproxy with mgmtConcurrency requests in flight
	tokenRequests   int      // client credentials requests mgmtproxy made in its whole life
	peakRSS         int64
}

// added is what mgmtproxy added to f in each repeat: through it minus direct, measured together.
func (mg *mgmtResult) added(f func(sample) float64) []float64 {
	v := make([]float64, len(mg.proxied))
	for i := range v {
		v[i] = f(mg.proxied[i]) - f(mg.direct[i])
	}
	return v
}

// maxBody bounds the answers read in the mgmtproxy runs.
const maxBody = 1 << 20

const mgmtSecret = "bench-m2m-secret"

func (b *bench) measureMgmt(ctx context.Context) (*mgmtResult, error) {
	lg := b.logto
	app := lg.AddM2MApp("", mgmtSecret)
	org := lg.AddOrganization("", "Bench")
	path := "/api/organizations/" + org
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute},
		Timeout:   30 * time.Second,
	}
	bearer, err := m2mToken(ctx, client, lg, app)
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	before := lg.Calls(fakelogto.TargetToken)
	progress("starting mgmtproxy")
	p, err := startProc("mgmtproxy", b.dir, b.bins["mgmtproxy"], b.cores,
		[]string{"--listen-addr", addr, "--logto-endpoint", lg.URL(), "--m2m-app-id", app, "--decision-public-key", b.pubKey},
		append([]string{"ORGAUTHZ_M2M_APP_SECRET=" + mgmtSecret}, b.o.mgmtproxyEnv...))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := p.waitReady(ctx, time.Minute, httpReady("http://"+addr+"/readyz")); err != nil {
		return nil, err
	}
	signer, err := decision.LoadSigner(b.privKey, decision.MaxTTL)
	if err != nil {
		return nil, err
	}
	direct := func(ctx context.Context, _ int) (string, bool) {
		return get(ctx, client, lg.URL()+path, "authorization", "Bearer "+bearer), true
	}
	res := &mgmtResult{rate: b.o.mgmtRate}
	// Direct and proxied requests alternate in one run, each path at the rate, so that what the
	// host does during the run (other processes, the emulator's collections) falls on both alike
	// and the difference is mgmtproxy's.
	together := load{duration: b.o.duration, rate: 2 * b.o.mgmtRate, workers: b.o.rateWorkers}
	for rep := 1; rep <= b.o.repeats; rep++ {
		progress("repeat %d/%d  mgmtproxy @%g/s: direct and through mgmtproxy, alternating", rep, b.o.repeats, b.o.mgmtRate)
		through, err := b.throughProxy(ctx, client, signer, "http://"+addr, path, int(b.o.mgmtRate*b.o.duration.Seconds()))
		if err != nil {
			return nil, err
		}
		o, err := runTogether(ctx, p.pid(), together, direct, through)
		if err == nil {
			err = o[0].problem(&target{}, false)
		}
		if err != nil {
			return nil, fmt.Errorf("emulator direct: %w", err)
		}
		if err = o[1].problem(&target{}, true); err != nil {
			return nil, fmt.Errorf("through mgmtproxy: %w", err)
		}
		res.direct = append(res.direct, o[0].sample(b.cores >= 0))
		res.proxied = append(res.proxied, o[1].sample(b.cores >= 0))
	}
	progress("mgmtproxy: %d requests in flight for %s (M2M token requests are counted)", b.o.mgmtConcurrency, b.o.duration)
	through, err := b.throughProxy(ctx, client, signer, "http://"+addr, path, int(5000*b.o.duration.Seconds()))
	if err != nil {
		return nil, err
	}
	o, err := run(ctx, p.pid(), load{duration: b.o.duration, workers: b.o.mgmtConcurrency}, through)
	if err == nil {
		err = o.problem(&target{}, false)
	}
	if err != nil {
		return nil, fmt.Errorf("through mgmtproxy at concurrency %d: %w", b.o.mgmtConcurrency, err)
	}
	res.saturation = o.sample(b.cores >= 0)
	res.tokenRequests = lg.Calls(fakelogto.TargetToken) - before
	if res.peakRSS, err = memory(p.pid(), "VmHWM"); err != nil {
		return nil, err
	}
	return res, nil
}

// sample summarises o; the core figure only means something when the server was pinned.
func (o outcome) sample(pinned bool) sample {
	others := -1.0
	if pinned && o.others >= 0 {
		others = o.others.Seconds() / o.elapsed.Seconds()
	}
	return sample{n: o.n, rate: o.rate(), cpu: o.cpuPerCheck(), p50: o.pct(50), p95: o.pct(95), p99: o.pct(99), others: others}
}

// throughProxy signs n decisions for GET path, as the sidecar would on allow, and returns a
// fire that sends each once through mgmtproxy. Decisions live 30 s: sign just before a run.
func (b *bench) throughProxy(ctx context.Context, client *http.Client, signer *decision.Signer, base, path string, n int) (fire, error) {
	decisions := make([]string, n)
	for i := range decisions {
		d, err := signer.Sign(decision.Claims{
			Method: http.MethodGet, Path: path, Route: "GET /api/organizations/{orgId}",
			Kind: "organization", Org: strings.TrimPrefix(path, "/api/organizations/"), Subject: "u1",
		})
		if err != nil {
			return nil, err
		}
		decisions[i] = d
	}
	var next atomic.Int64
	return func(ctx context.Context, _ int) (string, bool) {
		i := next.Add(1) - 1
		if i >= int64(len(decisions)) {
			return "", false
		}
		return get(ctx, client, base+path, "x-orgauthz-decision", decisions[i]), true
	}, nil
}

// get fetches url with one extra header and says what is wrong unless the answer is a 200.
func get(ctx context.Context, client *http.Client, url, header, value string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set(header, value)
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("status %d: %.200s", resp.StatusCode, body)
	}
	return ""
}

// m2mToken gets a Management API token for app by client credentials, for the direct runs.
func m2mToken(ctx context.Context, client *http.Client, lg *fakelogto.Server, app string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {lg.ManagementResource()}, "scope": {"all"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, lg.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(app, mgmtSecret)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("m2m token: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("m2m token: status %d, %v", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}
