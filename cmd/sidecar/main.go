// Command sidecar is the orgauthz authorization server: Envoy's ext_authz over gRPC, and the same
// checks over HTTP for nginx, Caddy and Traefik. See package sidecar.
//
//	sidecar [flags]                                  serve until SIGINT or SIGTERM
//	sidecar --check [flags]                          validate the configuration, load the key, compile the policies, fetch the issuers' keys
//	sidecar keygen --private key.pem --public pub.pem  write an Ed25519 key pair for signed decisions
//	sidecar explain [flags] METHOD URL               answer one request as the server would and say why
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

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/internal/version"
	"github.com/orgauthz/orgauthz/sidecar"
)

const about = `sidecar answers Envoy's ext_authz checks for orgauthz. For each request it canonicalises the
method and path (anything ambiguous is 400), verifies the Logto access token (401 when invalid),
evaluates the Rego policy in --policies (403 when it denies) and, on allow, adds a signed decision
(x-orgauthz-decision) for mgmtproxy. When it cannot decide it answers 503, never allow.

gRPC ext_authz v3 and grpc.health.v1 listen on --grpc-addr; --http-addr serves /healthz, /readyz,
/metrics, /envoy/… (Envoy's HTTP ext_authz mode) and /forward-auth (nginx auth_request, Caddy
forward_auth, Traefik forwardAuth; X-Forwarded-Method/-Uri honoured only from --trusted-proxy).

A verified token issued before a change that took power away (member removed, organization or user
deleted, user suspended, role permissions cut) is 401 token_revoked before the policy runs. The
watermarks live in --revocation-store (memory, or a redis:// URL shared by every replica and
mgmtproxy; password from --redis-password-file or ORGAUTHZ_REDIS_PASSWORD) and arrive as Logto's
signed webhooks at POST /logto/webhooks on --http-addr, on only with --logto-webhook-secret-file.

Settings come from flags, ORGAUTHZ_* environment variables and a YAML file (--config), flags
winning. --issuer must be https, or http to a loopback host (127.0.0.0/8, ::1, localhost).
--check validates the configuration, loads the decision key, compiles the policies, fetches each
issuer's discovery document and JWKS once (failing on a 404, another issuer's discovery or no usable
key; --check-offline skips this) and prints "sidecar: configuration ok". It also prints a WARNING line
on stderr, without failing, for each policy route mgmtproxy would not carry out as the policy allows
it (not performed, another spelling of the template, another body check): fine only for routes the
application sends to another backend (policies/README.md). Serving starts without a loadable policy: not ready, every check 503,
until a good policy appears in --policies.

--opa-config FILE runs OPA's plugin manager on OPA's own configuration (services, keys, labels,
bundles, decision_logs, status): with bundles the policy comes from the activated (signed) bundles,
checked as a policy directory is, and --policies is not read (not ready until one is installed);
with decision_logs every audit record is also uploaded in OPA's batched protocol.

--decision-key is reread when the file changes (rotation without restart; a broken file leaves the
last good key signing). --metrics-addr moves /metrics to an address of its own. --otlp-endpoint sends
a span per check to an OTLP/HTTP collector, continuing the W3C traceparent of the checked request.

Memory: the sidecar runs the Go GC at GOGC=1000 with a soft limit of 112 MiB (GOMEMLIMIT) unless GOGC
or GOMEMLIMIT is set in its environment: few collections (the slowest checks at a steady rate were
those that arrived during GC marking): the heap grows to 11 times its live size, or to the limit,
before it is collected. RSS up to about 135 MB, also with 100 000 cached tokens.

Exit status: 0 after --check or --help; 2 for an invalid configuration, with every problem on
stderr; 1 when serving fails, e.g. a listen address already in use.

  sidecar keygen --private PATH --public PATH   writes an Ed25519 key pair (never overwrites)
  sidecar explain [--policies DIR] [--token JWT --issuer URL | --claims FILE] [--header K:V]... [--body FILE] METHOD URL
                                                answers one request as the server would and says why (explain --help)`

func main() {
	sidecar.TuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(confload.Report(err, os.Stderr))
}

// run is the program: keygen, --check, or serve until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if version.Requested(args) {
		version.Print(stdout, "sidecar")
		return nil
	}
	if len(args) > 0 && args[0] == "keygen" {
		return keygen(args[1:], stderr)
	}
	if len(args) > 0 && args[0] == "explain" {
		return explain(ctx, args[1:], getenv, stdout, stderr)
	}
	cfg := sidecar.Default()
	res, err := confload.Load(&cfg, confload.Options{Name: "sidecar", Args: args, Getenv: getenv, Output: stderr, About: about,
		Check: "validate the configuration, load the decision key, compile the policies and fetch the issuers' discovery and JWKS (see --check-offline), then exit"})
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	// Whatever Load could not read, check the rest too, so that one run reports every problem.
	if res.Check {
		warnings, cerr := cfg.Check(ctx)
		for _, w := range warnings {
			fmt.Fprintln(stderr, "sidecar: WARNING: policy "+w)
		}
		if err := errors.Join(err, cerr); err != nil {
			return confload.InvalidConfig(err)
		}
		fmt.Fprintln(stdout, "sidecar: configuration ok")
		return nil
	}
	valid, verr := cfg.Validate()
	if err := errors.Join(err, verr); err != nil {
		return confload.InvalidConfig(err)
	}
	// New loads the policy itself. A policy that does not load is not a start-up failure: the
	// sidecar serves, not ready, answering 503 until a good policy appears (DESIGN).
	// The key sets and the policy watcher outlive the signal until serving has drained: a check in
	// flight at SIGTERM that waits for a key set fetch must still be answered, not refused.
	life, stopLife := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLife()
	logs := confload.NewBurst(stderr) // a line per check: written in bursts, not one write(2) each
	defer logs.Close()
	s, err := sidecar.New(life, valid, valid.NewLogger(logs))
	if err != nil {
		return confload.InvalidConfig(err)
	}
	return s.Serve(ctx)
}

// keygen writes a new decision key pair.
func keygen(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sidecar keygen", flag.ContinueOnError)
	priv := fs.String("private", "", "path of the Ed25519 PKCS#8 private key to write (mode 0600), for --decision-key")
	pub := fs.String("public", "", "path of the PKIX public key to write, for mgmtproxy")
	// The usage goes to stderr once; the error is left to report, not printed here as well.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage of sidecar keygen:")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return confload.InvalidConfig(fmt.Errorf("sidecar keygen: %w", err))
	}
	if *priv == "" || *pub == "" || fs.NArg() > 0 {
		fs.Usage()
		return confload.InvalidConfig(errors.New("sidecar keygen: --private and --public are required, and nothing else"))
	}
	if err := decision.GenerateKey(*priv, *pub); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s and %s\n", *priv, *pub)
	return nil
}
