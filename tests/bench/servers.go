package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/internal/testkit"
)

// The servers, in the order they take turns and appear in the table. The orgauthz-* variants
// are the same sidecar binary: orgauthz-500 with the 500-row route table of testdata/, and,
// named with -servers only, one each with a change undone, to show that change's gain:
// orgauthz-rego-routes matches the route in Rego (ORGAUTHZ_BENCH_REGO_ROUTES=1), orgauthz-gogc100
// runs with Go's default GC setting instead of sidecar.TuneGC's, orgauthz-stdlib-ecdsa verifies ES384
// with crypto/ecdsa instead of the precomputed tables (ORGAUTHZ_BENCH_STDLIB_ECDSA=1). And
// orgauthz-no-audit runs with --decision-log off: what the audit stream costs.
var (
	serverNames = []string{"null", "opa-envoy", "opa-envoy+jwt-cache", "orgauthz", "orgauthz-500",
		"orgauthz-rego-routes", "orgauthz-gogc100", "orgauthz-stdlib-ecdsa", "orgauthz-no-audit"}
	defaultServers = serverNames[:5]
)

// variantEnv is the environment each orgauthz variant adds to -sidecar-env.
var variantEnv = map[string][]string{
	"orgauthz-rego-routes":  {"ORGAUTHZ_BENCH_REGO_ROUTES=1"},
	"orgauthz-gogc100":      {"GOGC=100", "GOMEMLIMIT=off"},
	"orgauthz-stdlib-ecdsa": {"ORGAUTHZ_BENCH_STDLIB_ECDSA=1"},
}

// variantArgs are the flags an orgauthz variant adds.
var variantArgs = map[string][]string{
	"orgauthz-no-audit": {"--decision-log", "off"},
}

func known(name string) bool { return slices.Contains(serverNames, name) }

func isOrgauthz(name string) bool { return strings.HasPrefix(name, "orgauthz") }

// server is a running server under test.
type server struct {
	name     string
	proc     *proc
	t        *target
	httpAddr string // orgauthz's health and metrics
	cold     source // the cold checks; a pool for servers that verify tokens, so none is sent twice
	pool     *pool
}

// scenario is a kind of load: warm or cold tokens, at saturation (rate 0) or a fixed rate;
// distinct sends warm tokens on paths that are all different (a new organization id each).
type scenario struct {
	name     string
	cold     bool
	rate     float64
	distinct bool
}

func (b *bench) scenarios() []scenario {
	r := b.o.rate
	return []scenario{
		{"warm", false, 0, false},
		{"cold", true, 0, false},
		{fmt.Sprintf("warm @%g/s", r), false, r, false},
		{fmt.Sprintf("cold @%g/s", r), true, r, false},
		{"warm, distinct paths", false, 0, true},
	}
}

// sample is what one timed run measured.
type sample struct {
	overloaded    bool    // a fixed-rate run the server could not keep up with
	others        float64 // share of the server's core spent on other work during the run; -1 unknown
	n             int
	rate          float64
	cpu           time.Duration // per check
	p50, p95, p99 time.Duration
}

// serverResults are the measurements of the servers and scenarios.
type serverResults struct {
	samples map[string]map[string][]sample // scenario, server
	peakRSS map[string]int64               // server → VmHWM after the scenarios
	// orgauthz with every cold token cached (or as many as its cache holds)
	cachedTokens             int
	cachedRSS, cachedHWM     int64
	cachedHeap, cachedGCGoal int64 // from the sidecar's /metrics; 0 when not there
}

// variant runs a server from another binary with extra environment (the profiling sidecar).
type variant struct {
	bin string
	env []string
}

func (b *bench) start(ctx context.Context, name string, v variant) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	issuer := b.logto.Issuer()
	t := &target{}
	var bin, readyURL string
	var args []string
	switch name {
	case "null":
		bin, args = b.bins["nullauthz"], []string{"--addr", addr}
		t.anyToken = true
	case "opa-envoy", "opa-envoy+jwt-cache":
		size := 0
		if name == "opa-envoy+jwt-cache" {
			size = b.o.warmTokens + b.o.coldTokens
		}
		bin = b.bins["opaenvoy"]
		args = []string{"--addr", addr, "--issuer", issuer, "--api-resource", apiResource,
			"--admin-resource", adminResource, "--jwt-cache-size", strconv.Itoa(size)}
	case "orgauthz", "orgauthz-500", "orgauthz-rego-routes", "orgauthz-gogc100", "orgauthz-stdlib-ecdsa", "orgauthz-no-audit":
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		policies := filepath.Join(b.root, "policies")
		if name == "orgauthz-500" {
			policies = b.policies500
		}
		bin = b.bins["sidecar"]
		args = []string{"--issuer", issuer, "--api-resource", apiResource, "--admin-resource", adminResource,
			"--policies", policies, "--grpc-addr", addr, "--http-addr", httpAddr,
			"--decision-key", b.privKey}
		args = append(args, variantArgs[name]...)
		readyURL = "http://" + httpAddr + "/readyz"
		t.decision = true
	default:
		return nil, fmt.Errorf("unknown server %q", name)
	}
	if v.bin != "" {
		bin = v.bin
	}
	p, err := startProc(name, b.dir, bin, b.cores, args, v.env)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, proc: p, t: t, httpAddr: strings.TrimSuffix(strings.TrimPrefix(readyURL, "http://"), "/readyz")}
	t.pid = p.pid()
	if t.conns, err = dial(addr, b.o.conns); err != nil {
		p.stop()
		return nil, err
	}
	ready := grpcReady(t)
	if readyURL != "" {
		ready = httpReady(readyURL)
	}
	if err := p.waitReady(ctx, time.Minute, ready); err != nil {
		s.stop()
		return nil, err
	}
	if t.anyToken {
		s.cold = &cycle{checks: b.cold}
	} else {
		s.pool = &pool{checks: b.cold}
		s.cold = s.pool
	}
	// Every warm token once, so the warm runs find them in any cache.
	o, err := run(ctx, t.pid, load{duration: time.Hour, workers: b.o.concurrency}, t.checks(&pool{checks: b.prime}))
	if err == nil {
		err = o.problem(t, false)
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: first pass over the warm tokens: %w", name, err)
	}
	return s, nil
}

func (s *server) stop() {
	s.t.close()
	s.proc.stop()
}

// problem reports wrong answers, and a pool used up when it must not be.
func (o outcome) problem(t *target, mustLast bool) error {
	if o.failures > 0 {
		return fmt.Errorf("%d of %d answers wrong; first: %s", o.failures, o.n, o.firstFail)
	}
	if mustLast && o.exhausted && !t.anyToken {
		return errors.New("the cold tokens ran out before the time was up: raise -cold-tokens")
	}
	return nil
}

func (b *bench) measureServers(ctx context.Context) (*serverResults, error) {
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, name := range b.o.servers {
		progress("starting %s", name)
		var v variant
		if isOrgauthz(name) {
			v.env = append(slices.Clone(variantEnv[name]), b.o.sidecarEnv...)
		}
		s, err := b.start(ctx, name, v)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
	}
	res := &serverResults{samples: map[string]map[string][]sample{}, peakRSS: map[string]int64{}}
	scenarios := b.scenarios()
	for rep := 1; rep <= b.o.repeats; rep++ {
		for _, sc := range scenarios {
			for _, s := range servers {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				progress("repeat %d/%d  %-14s %s", rep, b.o.repeats, sc.name, s.name)
				o, err := b.runOnce(ctx, s, sc, nil)
				if err != nil {
					return nil, fmt.Errorf("%s, %s, repeat %d: %w", s.name, sc.name, rep, err)
				}
				if res.samples[sc.name] == nil {
					res.samples[sc.name] = map[string][]sample{}
				}
				smp := o.sample(b.cores >= 0)
				smp.overloaded = sc.rate > 0 && (o.unsent > 0 || smp.rate < 0.95*sc.rate)
				res.samples[sc.name][s.name] = append(res.samples[sc.name][s.name], smp)
			}
		}
		if rep == 1 {
			if err := b.enoughColdTokens(servers); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range servers {
		hwm, err := memory(s.t.pid, "VmHWM")
		if err != nil {
			return nil, err
		}
		res.peakRSS[s.name] = hwm
		if s.name == "orgauthz" {
			if err := b.fillCache(ctx, s, res); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// enoughColdTokens fails after the first repeat, rather than minutes later, when a server's
// cold tokens cannot last the other repeats at the pace it used them in the first.
func (b *bench) enoughColdTokens(servers []*server) error {
	for _, s := range servers {
		if s.pool == nil {
			continue
		}
		used := s.pool.used()
		if need := used * b.o.repeats; need > len(b.cold) {
			return fmt.Errorf("%s used %d cold tokens in the first repeat, so %d repeats need about %d and there are %d: run again with -cold-tokens %d or more",
				s.name, used, b.o.repeats, need, len(b.cold), (need*5/4+9999)/10000*10000)
		}
	}
	return nil
}

// runOnce warms s up with warm tokens, then measures one run of sc; timed, when not nil, is
// called just before the timed run.
func (b *bench) runOnce(ctx context.Context, s *server, sc scenario, timed func() error) (outcome, error) {
	workers := b.o.concurrency
	if sc.rate > 0 {
		workers = b.o.rateWorkers
	}
	warm := &cycle{checks: b.warm}
	if b.o.warmup > 0 {
		o, err := run(ctx, s.t.pid, load{duration: b.o.warmup, rate: sc.rate, workers: workers}, s.t.checks(warm))
		if err == nil {
			err = o.problem(s.t, true)
		}
		if err != nil {
			return o, fmt.Errorf("warm-up: %w", err)
		}
	}
	var src source = warm
	switch {
	case sc.cold:
		src = s.cold
	case sc.distinct:
		src = &cycle{checks: b.distinct}
	}
	if timed != nil {
		if err := timed(); err != nil {
			return outcome{}, err
		}
	}
	o, err := run(ctx, s.t.pid, load{duration: b.o.duration, rate: sc.rate, workers: workers}, s.t.checks(src))
	if err == nil {
		err = o.problem(s.t, true)
	}
	return o, err
}

// fillCache sends orgauthz the cold tokens it has not seen yet, then reads its memory.
func (b *bench) fillCache(ctx context.Context, s *server, res *serverResults) error {
	left := len(b.cold) - s.pool.used()
	progress("orgauthz: sending the %d cold tokens not sent yet (%d distinct tokens in all)", left, len(b.cold)+len(b.prime))
	if b.cores >= 0 {
		// Nothing is timed now: let the sidecar use both cores (Go adjusts GOMAXPROCS to the
		// new affinity) to get through the signatures sooner.
		if out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", fmt.Sprintf("%d,%d", serverCore, loadCore), strconv.Itoa(s.t.pid)).CombinedOutput(); err != nil {
			progress("warning: widening the sidecar's affinity: %v: %s", err, out)
		}
	}
	o, err := run(ctx, s.t.pid, load{duration: time.Hour, workers: b.o.concurrency}, s.t.checks(s.pool))
	if err == nil {
		err = o.problem(s.t, false)
	}
	if err != nil {
		return fmt.Errorf("orgauthz: filling the token cache: %w", err)
	}
	res.cachedTokens = len(b.cold) + len(b.prime)
	if res.cachedRSS, err = memory(s.t.pid, "VmRSS"); err != nil {
		return err
	}
	if res.cachedHWM, err = memory(s.t.pid, "VmHWM"); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	m, err := testkit.ScrapeMetrics(sctx, "http://"+s.httpAddr+"/metrics")
	cancel()
	if err != nil {
		progress("warning: sidecar metrics: %v", err)
	} else {
		res.cachedHeap, res.cachedGCGoal = int64(m["go_memstats_heap_inuse_bytes"]), int64(m["go_memstats_next_gc_bytes"])
	}
	return nil
}
