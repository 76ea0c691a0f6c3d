// Command sidecarprof is cmd/sidecar's serve path with a CPU profiler or an execution tracer
// the benchmark switches on and off: SIGUSR1 starts it, SIGUSR2 stops it and writes the CPU
// profile to the file named by BENCH_CPUPROFILE, or the execution trace to the one named by
// BENCH_TRACE (complete once it has that name: it is written beside it and renamed). Flags, GC
// setting and logging are otherwise the sidecar's. It is a benchmark helper, not a product:
// `go run ./tests/bench -cpuprofile` uses it to show what the warm and cold checks spend their
// time on, `-trace` to show what a check at a fixed rate waits for.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/sidecar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sidecarprof:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	out, start, stop := os.Getenv("BENCH_CPUPROFILE"), pprof.StartCPUProfile, pprof.StopCPUProfile
	if t := os.Getenv("BENCH_TRACE"); t != "" {
		if out != "" {
			return errors.New("set BENCH_CPUPROFILE or BENCH_TRACE, not both")
		}
		out, start, stop = t, trace.Start, trace.Stop
	}
	if out == "" {
		return errors.New("neither BENCH_CPUPROFILE nor BENCH_TRACE is set")
	}
	sidecar.TuneGC(os.Getenv)
	cfg := sidecar.Default()
	if _, err := confload.Load(&cfg, confload.Options{Name: "sidecar", Args: os.Args[1:], Getenv: os.Getenv, Output: os.Stderr}); err != nil {
		return err
	}
	valid, err := cfg.Validate()
	if err != nil {
		return err
	}
	logs := confload.NewBurst(os.Stderr)
	defer logs.Close()
	s, err := sidecar.New(ctx, valid, valid.NewLogger(logs))
	if err != nil {
		return err
	}
	go profile(ctx, out, start, stop)
	return s.Serve(ctx)
}

// profile runs the profiler (or tracer) between SIGUSR1 and SIGUSR2, any number of times; each
// profile overwrites the last.
func profile(ctx context.Context, out string, start func(io.Writer) error, stop func()) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	var f *os.File
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sig:
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				var err error
				if f, err = os.Create(out + ".tmp"); err != nil {
					fmt.Fprintln(os.Stderr, "sidecarprof:", err)
					continue
				}
				if err := start(f); err != nil {
					fmt.Fprintln(os.Stderr, "sidecarprof:", err)
					f.Close()
					f = nil
				}
			case s == syscall.SIGUSR2 && f != nil:
				stop()
				err := f.Close()
				if err == nil {
					err = os.Rename(f.Name(), out)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "sidecarprof:", err)
				}
				f = nil
			}
		}
	}
}
