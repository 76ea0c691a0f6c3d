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
	rate float64
	// Fixed-rate runs, each repeat two of them: direct (straight to the emulator) alternating
	// with proxied (through mgmtproxy), then hopDirect alternating with hop (through nullproxy).
	direct, proxied, hopDirect, hop []sample
	saturation                      sample // through mgmtproxy with mgmtConcurrency requests in flight
	tokenRequests                   int    // client credentials requests mgmtproxy made in its whole life
	peakRSS, hopRSS                 int64  // mgmtproxy's and nullproxy's peaks
}

// added is what the path through adds to f in each repeat over the path from, measured together.
func added(through, from []sample, f func(sample) float64) []float64 {
	v := make([]float64, len(through))
	for i := range v {
		v[i] = f(through[i]) - f(from[i])
	}
	return v
}

// byMgmt is what mgmtproxy adds to f in each repeat.
func (mg *mgmtResult) byMgmt(f func(sample) float64) []float64 {
	return added(mg.proxied, mg.direct, f)
}

// byHop is what a bare hop (nullproxy) adds to f in each repeat.
func (mg *mgmtResult) byHop(f func(sample) float64) []float64 {
	return added(mg.hop, mg.hopDirect, f)
}

// ownWork is what mgmtproxy adds to f beyond a bare hop, in each repeat.
func (mg *mgmtResult) ownWork(f func(sample) float64) []float64 {
	v := mg.byMgmt(f)
	for i, h := range mg.byHop(f) {
		v[i] -= h
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
	hopAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	hop, err := startProc("nullproxy", b.dir, b.bins["nullproxy"], b.cores,
		[]string{"--listen-addr", hopAddr, "--upstream", lg.URL()}, []string{"NULLPROXY_AUTHORIZATION=Bearer " + bearer})
	if err != nil {
		return nil, err
	}
	defer hop.stop()
	if err := hop.waitReady(ctx, time.Minute, httpReady("http://"+hopAddr+path)); err != nil {
		return nil, err
	}
	signer, err := decision.LoadSigner(b.privKey, decision.MaxTTL)
	if err != nil {
		return nil, err
	}
	direct := func(ctx context.Context, _ int) (string, bool) {
		return get(ctx, client, lg.URL()+path, "authorization", "Bearer "+bearer), true
	}
	viaHop := func(ctx context.Context, _ int) (string, bool) {
		return get(ctx, client, "http://"+hopAddr+path, "accept", "application/json"), true
	}
	res := &mgmtResult{rate: b.o.mgmtRate}
	// Direct and proxied requests alternate in one run, each path at the rate, so that what the
	// host does during the run (other processes, the emulator's collections) falls on both alike
	// and the difference is the proxy's. Then the same with nullproxy instead of mgmtproxy: what
	// one more HTTP hop costs on this host (a process to wake, two more sockets to cross), so
	// that the rest is mgmtproxy's own work. One proxy at a time, so they never queue behind each
	// other on the server core.
	together := load{duration: b.o.duration, rate: 2 * b.o.mgmtRate, workers: b.o.rateWorkers}
	for rep := 1; rep <= b.o.repeats; rep++ {
		progress("repeat %d/%d  mgmtproxy @%g/s: direct and through mgmtproxy, alternating; then the same with nullproxy", rep, b.o.repeats, b.o.mgmtRate)
		through, err := b.throughProxy(ctx, client, signer, "http://"+addr, path, int(b.o.mgmtRate*b.o.duration.Seconds()))
		if err != nil {
			return nil, err
		}
		d, v, err := b.alternate(ctx, together, direct, way{through, p.pid()}, "through mgmtproxy", true)
		if err != nil {
			return nil, err
		}
		res.direct, res.proxied = append(res.direct, d), append(res.proxied, v)
		if d, v, err = b.alternate(ctx, together, direct, way{viaHop, hop.pid()}, "through nullproxy", false); err != nil {
			return nil, err
		}
		res.hopDirect, res.hop = append(res.hopDirect, d), append(res.hop, v)
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
	if res.hopRSS, err = memory(hop.pid(), "VmHWM"); err != nil {
		return nil, err
	}
	return res, nil
}

// alternate runs the direct requests alternating with those of via (named name in errors) and
// returns both samples; mustLast: via's calls must last the whole run (signed decisions).
func (b *bench) alternate(ctx context.Context, l load, direct fire, via way, name string, mustLast bool) (sample, sample, error) {
	o, err := runTogether(ctx, l, way{direct, 0}, via)
	if err != nil {
		return sample{}, sample{}, err
	}
	if err := o[0].problem(&target{}, false); err != nil {
		return sample{}, sample{}, fmt.Errorf("emulator direct: %w", err)
	}
	if err := o[1].problem(&target{}, mustLast); err != nil {
		return sample{}, sample{}, fmt.Errorf("%s: %w", name, err)
	}
	return o[0].sample(b.cores >= 0), o[1].sample(b.cores >= 0), nil
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
