// Command soak holds the built chain (Logto emulator, sidecar, mgmtproxy) under a steady load on
// loopback and judges whether it stays healthy: every answer the expected one, the rates met, and
// the heap, goroutines and open file descriptors of the sidecar and mgmtproxy flat from the first
// to the last minute (read from their /metrics). It prints one verdict line per criterion and
// exits 1 when any fails.
//
//	go run ./tests/soak -duration 10m
//
// The load: -checks-per-sec ext_authz checks built as Envoy builds them (internal/envoyclient)
// over gRPC, of which -mgmt-per-sec are requests that, once allowed, go on to mgmtproxy with the
// sidecar's signed decision, as the front proxy delivers them. Everything listens on 127.0.0.1
// ports picked at start.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := defaultConfig()
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load runs (after a warm-up of -warmup)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load before measuring starts (caches, connections, GC settle)")
	fs.IntVar(&cfg.ChecksPerSec, "checks-per-sec", cfg.ChecksPerSec, "ext_authz checks per second, the mgmtproxy requests' checks included")
	fs.IntVar(&cfg.MgmtPerSec, "mgmt-per-sec", cfg.MgmtPerSec, "of those, requests per second that go on to mgmtproxy")
	fs.StringVar(&cfg.Bin, "bin", "", "directory with fakelogto, sidecar and mgmtproxy already built (default: build them into a temp dir)")
	fs.BoolVar(&cfg.Verbose, "v", false, "print the chain's logs to stderr")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	ok, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// run builds (unless cfg.Bin is set) and starts the chain, soaks it and prints the report. It
// reports whether every criterion passed.
func run(ctx context.Context, cfg Config, out io.Writer) (bool, error) {
	if err := cfg.validate(); err != nil {
		return false, err
	}
	root, err := chain.Root()
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "orgauthz-soak-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	if cfg.Bin == "" {
		cfg.Bin = filepath.Join(dir, "bin")
		bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err := chain.Build(bctx, root, cfg.Bin)
		cancel()
		if err != nil {
			return false, err
		}
	}
	addrs, err := chain.FreeAddrs()
	if err != nil {
		return false, err
	}
	var log io.Writer = io.Discard
	if cfg.Verbose {
		log = os.Stderr
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	c, err := chain.Start(sctx, chain.Config{Root: root, Dir: dir, Bin: cfg.Bin, Addrs: addrs, Log: log})
	cancel()
	if err != nil {
		return false, err
	}
	defer c.Close()

	res, err := soak(ctx, cfg, c)
	if err != nil {
		return false, err
	}
	return res.report(out, cfg), nil
}
