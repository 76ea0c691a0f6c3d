// Command bench measures what authorization costs per request: `make bench`.
//
// It starts each ext_authz server on loopback pinned to core 0 — null (the floor), opa-envoy
// (the baseline: OPA-Envoy's way, io_jwt cache off and on) and orgauthz (the real sidecar
// binary with the default policies/) — and drives them in turns from core 1 with its own gRPC
// load generator, sending CheckRequests built and marshalled beforehand with Logto ES384
// tokens signed by the in-process Logto emulator. Every answer is checked against the
// expected one; a wrong answer or a server that does not come up ends the run with exit 1.
// It then measures mgmtproxy in front of the emulator, with requests straight to the emulator
// alternating with those through mgmtproxy. Progress goes to stderr; one Markdown
// table, and the targets, go to stdout. See BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// Cores: the servers run on serverCore, the generator (and the in-process emulator) on loadCore.
const (
	serverCore = 0
	loadCore   = 1
)

type options struct {
	duration, warmup   time.Duration
	repeats            int
	concurrency, conns int
	rate               float64
	rateWorkers        int
	warmTokens         int
	coldTokens         int
	servers            []string
	mgmt               bool
	mgmtRate           float64
	mgmtConcurrency    int
	quick              bool
	noPin              bool
	cpuprofile         string
	trace              string
	sidecarEnv         []string
	mgmtproxyEnv       []string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 4*time.Second, "timed length of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "untimed load before each run")
	fs.IntVar(&o.repeats, "repeats", 3, "runs of each scenario and server (median and spread)")
	fs.IntVar(&o.concurrency, "concurrency", 16, "checks in flight at saturation")
	fs.IntVar(&o.conns, "conns", 2, "gRPC connections to each server")
	fs.Float64Var(&o.rate, "rate", 1000, "checks per second of the fixed-rate scenarios")
	fs.IntVar(&o.rateWorkers, "rate-workers", 64, "most checks in flight at the fixed rate")
	fs.IntVar(&o.warmTokens, "warm-tokens", 1000, "distinct tokens reused by the warm scenarios")
	fs.IntVar(&o.coldTokens, "cold-tokens", 100_000, "distinct tokens for the cold scenarios; orgauthz is sent all of them before its cached-token RSS is read; the run stops after the first repeat when they would not last the others")
	servers := fs.String("servers", strings.Join(defaultServers, ","), "servers to measure, comma-separated, from "+strings.Join(serverNames, ", ")+
		" (the orgauthz-* variants undo one change each, or turn the audit stream off: see BENCHMARKS.md)")
	fs.BoolVar(&o.mgmt, "mgmtproxy", true, "measure mgmtproxy in front of the Logto emulator")
	fs.Float64Var(&o.mgmtRate, "mgmt-rate", 200, "requests per second of each way (direct, through mgmtproxy, through nullproxy) in the mgmtproxy latency runs")
	fs.IntVar(&o.mgmtConcurrency, "mgmt-concurrency", 64, "requests in flight in the mgmtproxy M2M token run")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1 s runs, one repeat, 5000 cold tokens")
	fs.Func("sidecar-env", "`NAME=VALUE` added to the sidecar's environment (repeatable), e.g. GODEBUG=adaptivestackstart=1 to try a runtime setting", envFlag(&o.sidecarEnv))
	fs.Func("mgmtproxy-env", "`NAME=VALUE` added to mgmtproxy's environment (repeatable), e.g. GOGC=400", envFlag(&o.mgmtproxyEnv))
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "also profile the sidecar's CPU in a warm and a cold run: writes `PREFIX`-warm.pprof and PREFIX-cold.pprof and prints their top entries on stderr")
	fs.StringVar(&o.trace, "trace", "", "also trace the sidecar (runtime/trace) in a warm run at -rate, after untraced warm and cold runs: writes `PREFIX`-warm-rate.trace, for go tool trace")
	fs.BoolVar(&o.noPin, "no-pin", false, "do not pin servers and generator to cores")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.quick {
		o.duration, o.warmup, o.repeats, o.coldTokens = time.Second, 200*time.Millisecond, 1, 5000
	}
	o.servers = strings.Split(*servers, ",")
	var errs []error
	for _, s := range o.servers {
		if !known(s) {
			errs = append(errs, fmt.Errorf("unknown server %q (want %s)", s, strings.Join(serverNames, ", ")))
		}
	}
	if o.duration <= 0 || o.repeats < 1 || o.concurrency < 1 || o.conns < 1 || o.rate <= 0 || o.rateWorkers < 1 ||
		o.warmTokens < 1 || o.coldTokens < 1 || o.mgmtRate <= 0 || o.mgmtConcurrency < 1 {
		errs = append(errs, errors.New("durations, counts and rates must be positive"))
	}
	return o, errors.Join(errs...)
}

// envFlag appends each NAME=VALUE it is given to env.
func envFlag(env *[]string) func(string) error {
	return func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		*env = append(*env, v)
		return nil
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = benchmark(ctx, o, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAIL:", err)
		stop()
		os.Exit(1)
	}
}

// bench is the state shared by the runs.
type bench struct {
	o           options
	dir         string
	root        string
	bins        map[string]string
	logto       *fakelogto.Server
	warm        []check // every shape for each warm token
	prime       []check // one check per warm token
	cold        []check // one check per cold token
	distinct    []check // warm tokens on a different organization's path each (403)
	policies500 string  // the default policies with the 500-row route table
	privKey     string  // decision signing key (PEM) for the sidecar
	pubKey      string
	cores       int // -1 when not pinning
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func benchmark(ctx context.Context, o options, stdout io.Writer) error {
	began := time.Now()
	b := &bench{o: o, bins: map[string]string{}, cores: serverCore}
	switch {
	case o.noPin:
		b.cores = -1
	case runtime.NumCPU() < 2:
		progress("warning: %d CPU: not pinning", runtime.NumCPU())
		b.cores = -1
	default:
		if _, err := exec.LookPath("taskset"); err != nil {
			return fmt.Errorf("taskset not found (util-linux); use -no-pin to run unpinned: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "orgauthz-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b.dir = dir
	if err := b.build(ctx); err != nil {
		return err
	}
	if err := b.prepare(); err != nil {
		return err
	}
	defer b.logto.Close()
	if b.cores >= 0 {
		// After the build, so the compiler had both cores; threads started later inherit this.
		if err := pinSelf(loadCore); err != nil {
			return err
		}
		runtime.GOMAXPROCS(1)
	}

	res, err := b.measureServers(ctx)
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		if err := b.profileSidecar(ctx); err != nil {
			return err
		}
	}
	if o.trace != "" {
		if err := b.traceSidecar(ctx); err != nil {
			return err
		}
	}
	var mg *mgmtResult
	if o.mgmt {
		if mg, err = b.measureMgmt(ctx); err != nil {
			return err
		}
	}
	report(stdout, b, res, mg)
	progress("done in %s", time.Since(began).Round(time.Second))
	return nil
}

// build compiles the servers into the temporary directory.
func (b *bench) build(ctx context.Context) error {
	pkgs := map[string]string{"nullauthz": "./tests/bench/nullauthz", "opaenvoy": "./tests/bench/opaenvoy", "sidecar": "./cmd/sidecar"}
	if b.o.mgmt {
		pkgs["mgmtproxy"] = "./cmd/mgmtproxy"
		pkgs["nullproxy"] = "./tests/bench/nullproxy"
	}
	if b.o.cpuprofile != "" || b.o.trace != "" {
		pkgs["sidecarprof"] = "./tests/bench/sidecarprof"
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	b.root = root
	args := []string{"build", "-o", b.dir + string(filepath.Separator)}
	for name, pkg := range pkgs {
		args = append(args, pkg)
		b.bins[name] = filepath.Join(b.dir, name)
	}
	progress("building %d binaries", len(pkgs))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run from inside the orgauthz module")
	}
	return filepath.Dir(gomod), nil
}

// prepare starts the Logto emulator, signs the tokens and builds the CheckRequests.
func (b *bench) prepare() error {
	lg, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		return err
	}
	if err := lg.Start(); err != nil {
		lg.Close()
		return err
	}
	b.logto = lg
	b.privKey, b.pubKey = filepath.Join(b.dir, "decision.pem"), filepath.Join(b.dir, "decision.pub.pem")
	if err := decision.GenerateKey(b.privKey, b.pubKey); err != nil {
		return err
	}
	t0 := time.Now()
	progress("signing %d warm and %d cold ES384 tokens", b.o.warmTokens, b.o.coldTokens)
	warm := mintTokens(lg, 0, b.o.warmTokens)
	cold := mintTokens(lg, b.o.warmTokens, b.o.coldTokens)
	progress("signed in %s; building CheckRequests", time.Since(t0).Round(time.Millisecond))
	if b.warm, err = buildChecks(warm, true); err != nil {
		return err
	}
	if b.prime, err = buildChecks(warm, false); err != nil {
		return err
	}
	if b.cold, err = buildChecks(cold, false); err != nil {
		return err
	}
	if b.distinct, err = distinctChecks(warm, distinctPaths); err != nil {
		return err
	}
	b.policies500 = filepath.Join(b.dir, "policies500")
	return copyPolicies(filepath.Join(b.root, "policies"), b.policies500, filepath.Join(b.root, routes500))
}
