// Command fakelogto runs the Logto emulator (package internal/fakelogto) with a small demo
// tenant, for `make run` and local development. It is a development tool, not Logto: it keeps
// everything in memory, and its demo secrets are public. Never point production at it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

const about = `fakelogto is a DEVELOPMENT TOOL: an in-memory emulator of a Logto OSS tenant (OIDC discovery,
JWKS, token endpoint with client credentials and token exchange, subject tokens, and the
organizations part of the Management API, Logto's signed webhooks with --webhook-url). It seeds a demo tenant with fixed IDs and
development-only secrets, prints them, and serves until interrupted. Never use it in production.

Usage: fakelogto [flags]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "fakelogto:", err)
		stop()
		os.Exit(1)
	}
}

// run serves until ctx ends. Plain flags, not internal/confload: the emulator must not pick
// up ORGAUTHZ_* variables meant for the product binaries (an ORGAUTHZ_ADDR would move it).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakelogto", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3001", "listen address (Logto OSS listens on 3001)")
	publicURL := fs.String("public-url", "", "base URL to advertise in the issuer and links (default http://<addr>)")
	seedFile := fs.String("seed-file", "", "write the seeded IDs and secrets as JSON to this file, for scripts")
	ttl := fs.Duration("token-ttl", time.Hour, "access token lifetime")
	hookURL := fs.String("webhook-url", "", "send Logto webhooks (organization, membership, user and role changes) to this URL, e.g. the sidecar's http://127.0.0.1:8181/logto/webhooks")
	hookKeyFile := fs.String("webhook-signing-key-file", "", "file holding the webhook signing key (the sidecar's --logto-webhook-secret-file); required with --webhook-url")
	fs.Usage = func() {
		fmt.Fprint(stderr, about)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	srv, err := fakelogto.New(fakelogto.Config{Addr: *addr, PublicURL: *publicURL, TokenTTL: *ttl})
	if err != nil {
		return err
	}
	demo := srv.SeedDemo()
	if *hookURL != "" {
		if *hookKeyFile == "" {
			srv.Close()
			return errors.New("--webhook-url needs --webhook-signing-key-file")
		}
		key, err := os.ReadFile(*hookKeyFile)
		if err != nil || len(strings.TrimSpace(string(key))) == 0 {
			srv.Close()
			return fmt.Errorf("read webhook signing key: %v (want a non-empty file)", err)
		}
		srv.AddHook(fakelogto.Hook{URL: *hookURL, SigningKey: strings.TrimSpace(string(key))})
	}
	seed, err := json.MarshalIndent(demo, "", "  ")
	if err != nil {
		return err
	}
	if *seedFile != "" {
		if err := os.WriteFile(*seedFile, append(seed, '\n'), 0o600); err != nil {
			return fmt.Errorf("write seed file: %w", err)
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fakelogto (development tool) serving %s, issuer %s\nseeded demo tenant (dev-only secrets):\n%s\n", srv.URL(), srv.Issuer(), seed)

	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
