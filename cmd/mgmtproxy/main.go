// Command mgmtproxy calls the Logto Management API for requests the sidecar allowed: it verifies each
// request's signed decision, then forwards it with the M2M app's token. See package mgmtproxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/mgmtproxy"
)

const about = `mgmtproxy forwards allowed requests to the Logto Management API with machine-to-machine
credentials. Each request needs the sidecar's signed decision (x-orgauthz-decision) for exactly its
method and path; without one it answers 403 and calls nothing. Settings come from flags, ORGAUTHZ_*
environment variables and a YAML file (--config), flags winning. The M2M secret comes from
--m2m-app-secret-file or ORGAUTHZ_M2M_APP_SECRET, never a flag value.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(1)
	}
}

// run loads the configuration and serves until ctx ends; with --check it only validates.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg := mgmtproxy.DefaultConfig()
	res, err := confload.Load(&cfg, confload.Options{Name: "mgmtproxy", Args: args, Getenv: getenv, Output: stderr, About: about})
	if err != nil {
		return err
	}
	if res.Check {
		if err := cfg.Validate(); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "mgmtproxy: configuration ok")
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevelValue()}))
	p, err := mgmtproxy.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return p.Serve(ctx)
}
