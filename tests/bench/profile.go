package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// profileSidecar runs the profiling build of the sidecar through a warm and a cold run and
// prints the top of each CPU profile on stderr.
func (b *bench) profileSidecar(ctx context.Context) error {
	progress("profiling: starting the sidecar built with a profiler")
	s, tmp, err := b.startSidecarprof(ctx, "BENCH_CPUPROFILE", "cpu.pprof")
	if err != nil {
		return err
	}
	defer s.stop()
	for _, sc := range b.scenarios()[:2] {
		progress("profiling: %s for %s", sc.name, b.o.duration)
		out := fmt.Sprintf("%s-%s.pprof", b.o.cpuprofile, sc.name)
		o, err := b.capture(ctx, s, sc, tmp, out)
		if err != nil {
			return fmt.Errorf("profiling %s: %w", sc.name, err)
		}
		progress("profiling: %s profile in %s, %.0f checks/s under the profiler; top entries:", sc.name, out, o.rate())
		top := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", b.bins["sidecarprof"], out)
		top.Stdout, top.Stderr = os.Stderr, os.Stderr
		if err := top.Run(); err != nil {
			return fmt.Errorf("go tool pprof: %w", err)
		}
	}
	return nil
}

// traceSidecar runs the tracing build of the sidecar through the warm and cold runs, untraced,
// so that its token cache holds what it holds in the warm run at a fixed rate of the table; then
// through that run, traced. The trace shows what a slow check waited for: the GC's mark phases,
// its workers' turns on the one P, the scheduler.
func (b *bench) traceSidecar(ctx context.Context) error {
	progress("tracing: starting the sidecar built with a tracer")
	s, tmp, err := b.startSidecarprof(ctx, "BENCH_TRACE", "exec.trace")
	if err != nil {
		return err
	}
	defer s.stop()
	scs := b.scenarios()
	for _, sc := range scs[:2] {
		progress("tracing: %s for %s, untraced", sc.name, b.o.duration)
		if _, err := b.runOnce(ctx, s, sc, nil); err != nil {
			return fmt.Errorf("tracing: %s: %w", sc.name, err)
		}
	}
	sc := scs[slices.IndexFunc(scs, func(sc scenario) bool { return sc.rate > 0 && !sc.cold && !sc.distinct })]
	progress("tracing: %s for %s", sc.name, b.o.duration)
	out := b.o.trace + "-warm-rate.trace"
	o, err := b.capture(ctx, s, sc, tmp, out)
	if err != nil {
		return fmt.Errorf("tracing %s: %w", sc.name, err)
	}
	progress("tracing: %s traced in %s: p50 %.2f ms, p95 %.2f, p99 %.2f, slowest %.2f (the tracer adds to them); read it with go tool trace %s",
		sc.name, out, ms(o.pct(50)), ms(o.pct(95)), ms(o.pct(99)), ms(o.pct(100)), out)
	return nil
}

// startSidecarprof starts sidecarprof with its profiler or tracer (env: BENCH_CPUPROFILE or
// BENCH_TRACE) writing to file in the run's directory, and returns it and that file's path.
func (b *bench) startSidecarprof(ctx context.Context, env, file string) (*server, string, error) {
	tmp := filepath.Join(b.dir, file)
	s, err := b.start(ctx, "orgauthz", variant{bin: b.bins["sidecarprof"], env: append([]string{env + "=" + tmp}, b.o.sidecarEnv...)})
	return s, tmp, err
}

// capture runs sc on s as runOnce does with sidecarprof's profiler or tracer on over the timed
// run, and copies what it wrote (tmp) to out.
func (b *bench) capture(ctx context.Context, s *server, sc scenario, tmp, out string) (outcome, error) {
	os.Remove(tmp)
	o, err := b.runOnce(ctx, s, sc, func() error { return s.proc.cmd.Process.Signal(syscall.SIGUSR1) })
	if err != nil {
		return o, err
	}
	if err := s.proc.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return o, err
	}
	if err := waitFile(ctx, tmp, 30*time.Second); err != nil {
		return o, err
	}
	return o, copyFile(tmp, out)
}

// waitFile waits until path exists.
func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not written after %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("empty profile")
	}
	return os.WriteFile(to, b, 0o644)
}
