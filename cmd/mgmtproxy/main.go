// Command mgmtproxy calls the Logto Management API for requests the sidecar allowed: it verifies each
// request's signed decision, then forwards it with the M2M app's token. See package mgmtproxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/internal/version"
	"github.com/orgauthz/orgauthz/mgmtproxy"
)

const about = `mgmtproxy forwards allowed requests to the Logto Management API with machine-to-machine
credentials. Each request needs the sidecar's signed decision (x-orgauthz-decision) for exactly its
method and path; without one it answers 403 and calls nothing. When Logto fails, is slow, or
refuses mgmtproxy's M2M app (no Management API role: reason m2m_forbidden), it answers 502 or 504;
/readyz answers 503 until a usable M2M token can be had. The README lists every status and reason.

Settings come from flags, ORGAUTHZ_* environment variables and a YAML file (--config), flags
winning. The M2M secret comes from --m2m-app-secret-file or ORGAUTHZ_M2M_APP_SECRET (config file
key m2m-app-secret), never a flag value. --logto-endpoint must be https, or http to a loopback host
(127.0.0.0/8, ::1, localhost). --check validates the configuration, reading the secret and key
files, as serving does first, and prints "mgmtproxy: configuration ok".

Each decision is single-use through --revocation-store (memory, or Redis shared with the sidecars
and replicas; Redis unreachable answers 503 replay_store_unavailable). After Logto made a change
that takes power away, mgmtproxy records its revocation watermarks there, and with
--revocation-notify posts them, signed with --logto-webhook-secret-file, to the sidecars' POST
/logto/webhooks, before it answers. The Redis password comes from --redis-password-file or
ORGAUTHZ_REDIS_PASSWORD, never the URL. The audit stream (--decision-log) has one JSON record per
request on stdout, separate from these log lines on stderr. The --decision-public-key files (or
directories of *.pub files) and the M2M secret file are reread when they change.

Exit status: 0 after --check or --help; 2 for an invalid configuration, with every problem on
stderr; 1 when serving fails, e.g. a listen address already in use.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(confload.Report(err, os.Stderr))
}

// run loads the configuration and serves until ctx ends; with --check it only validates.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if version.Requested(args) {
		version.Print(stdout, "mgmtproxy")
		return nil
	}
	cfg := mgmtproxy.DefaultConfig()
	res, err := confload.Load(&cfg, confload.Options{Name: "mgmtproxy", Args: args, Getenv: getenv, Output: stderr, About: about,
		Check: "validate the configuration, reading the secret and key files, then exit"})
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	// Whatever Load could not read, validate the rest too, so that one run reports every problem.
	settings, verr := cfg.Validate()
	if err := errors.Join(err, verr); err != nil {
		return confload.InvalidConfig(err)
	}
	if res.Check {
		fmt.Fprintln(stdout, "mgmtproxy: configuration ok")
		return nil
	}
	level, err := confload.ParseLevel(cfg.LogLevel)
	if err != nil {
		return confload.InvalidConfig(fmt.Errorf("mgmtproxy: --log-level: %w", err))
	}
	logs := confload.NewBurst(stderr)
	defer logs.Close()
	logger := confload.NewLogger(logs, level)
	p, err := mgmtproxy.New(ctx, settings, logger)
	if err != nil {
		return err
	}
	return p.Serve(ctx)
}
