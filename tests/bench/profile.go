package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// profileSidecar runs the profiling build of the sidecar through a warm and a cold run and
// prints the top of each CPU profile on stderr.
func (b *bench) profileSidecar(ctx context.Context) error {
	tmp := filepath.Join(b.dir, "cpu.pprof")
	progress("profiling: starting the sidecar built with a profiler")
	s, err := b.start(ctx, "orgauthz", variant{bin: b.bins["sidecarprof"], env: append([]string{"BENCH_CPUPROFILE=" + tmp}, b.o.sidecarEnv...)})
	if err != nil {
		return err
	}
	defer s.stop()
	for _, sc := range b.scenarios()[:2] {
		warm := &cycle{checks: b.warm}
		o, err := run(ctx, s.t.pid, load{duration: b.o.warmup, workers: b.o.concurrency}, s.t.checks(warm))
		if err == nil {
			err = o.problem(s.t, true)
		}
		if err != nil {
			return fmt.Errorf("profiling warm-up: %w", err)
		}
		os.Remove(tmp)
		if err := s.proc.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			return err
		}
		progress("profiling: %s for %s", sc.name, b.o.duration)
		var src source = warm
		if sc.cold {
			src = s.cold
		}
		o, err = run(ctx, s.t.pid, load{duration: b.o.duration, workers: b.o.concurrency}, s.t.checks(src))
		if err == nil {
			err = o.problem(s.t, true)
		}
		if err != nil {
			return fmt.Errorf("profiling %s: %w", sc.name, err)
		}
		if err := s.proc.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
			return err
		}
		if err := waitFile(ctx, tmp, 30*time.Second); err != nil {
			return fmt.Errorf("profiling %s: %w", sc.name, err)
		}
		out := fmt.Sprintf("%s-%s.pprof", b.o.cpuprofile, sc.name)
		if err := copyFile(tmp, out); err != nil {
			return err
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
