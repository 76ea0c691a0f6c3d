package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/sidecar"
)

const explainAbout = `sidecar explain answers one request as the server would and says why: the policy input (built
by the server's own code), the decision, the matched route and the policy branches that decided,
from OPA's trace. Exit status 0 on allow, 1 on deny, 2 on a usage error or when no answer can be
made (a policy that does not load, an issuer whose keys cannot be fetched).

  sidecar explain [--policies DIR] [--token JWT --issuer URL | --claims FILE] [--header K:V]... [--body FILE] METHOD URL

--token is verified against --issuer (online). --claims is a JSON file of a verified token's
claims (offline), checked as the server checks claims at the token's own iat; --api-resource and
--admin-resource classify its kind. Every setting the server has not given here comes from the
same ORGAUTHZ_* environment variables and --config file as the server's. --input prints only the
input, for 'opa eval -I -d policies data.orgauthz.decision'.`

// maxExplainFile bounds --claims and --body files.
const maxExplainFile = 1 << 20

// errDenied is explain's exit status 1: the request is denied (the explanation is on stdout).
var errDenied = errors.New("sidecar explain: denied")

// explain is `sidecar explain`.
func explain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sidecar explain", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		configFile = fs.String("config", getenv(confload.EnvPrefix+"CONFIG"), "the server's YAML config file, for defaults")
		policies   = fs.String("policies", "", "directory of Rego policies and data (default: the server's --policies)")
		apiRes     = fs.String("api-resource", "", "the app's API resource indicator (default: the server's)")
		adminRes   = fs.String("admin-resource", "", "the admin resource indicator (default: the server's)")
		tok        = fs.String("token", "", "a Logto access token, verified against --issuer (online)")
		claimsFile = fs.String("claims", "", "a JSON file of a verified token's claims (offline)")
		bodyFile   = fs.String("body", "", "a file holding the request body (JSON unless a Content-Type header says otherwise)")
		inputOnly  = fs.Bool("input", false, "print only the policy input, as JSON")
		issuers    multiFlag
		headers    multiFlag
	)
	fs.Var(&issuers, "issuer", "accepted Logto issuer, for --token (repeatable; default: the server's)")
	fs.Var(&headers, "header", "a request header, Name:value (repeatable)")
	usage := func() {
		fmt.Fprintln(stderr, explainAbout)
		fmt.Fprintln(stderr, "\nFlags:")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	bad := func(format string, a ...any) error {
		usage()
		return confload.InvalidConfig(fmt.Errorf("sidecar explain: "+format, a...))
	}
	// Flags may come before, between or after METHOD and URL.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return err
			}
			return bad("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 {
		return bad("want METHOD and URL, got %d arguments", len(pos))
	}
	if *tok != "" && *claimsFile != "" {
		return bad("--token and --claims exclude each other")
	}

	// The server's settings, from its environment and config file; the flags above win.
	cfg := sidecar.Default()
	var cargs []string
	if *configFile != "" {
		cargs = []string{"--config", *configFile}
	}
	if _, err := confload.Load(&cfg, confload.Options{Name: "sidecar", Args: cargs, Getenv: getenv, Output: io.Discard}); err != nil {
		return confload.InvalidConfig(err)
	}
	for _, s := range []struct {
		dst *string
		val string
	}{{&cfg.Policies, *policies}, {&cfg.APIResource, *apiRes}, {&cfg.AdminResource, *adminRes}} {
		if s.val != "" {
			*s.dst = s.val
		}
	}
	if len(issuers) > 0 {
		cfg.Issuers = issuers
	}
	r := sidecar.ExplainRequest{Method: pos[0], URL: pos[1], Headers: headers, Token: *tok}
	var err error
	if *claimsFile != "" {
		if r.Claims, err = readBounded(*claimsFile); err != nil {
			return confload.InvalidConfig(err)
		}
	}
	if *bodyFile != "" {
		if r.Body, err = readBounded(*bodyFile); err != nil {
			return confload.InvalidConfig(err)
		}
	}
	x, err := sidecar.Explain(ctx, cfg, r)
	if err != nil {
		return confload.InvalidConfig(err)
	}
	if *inputOnly {
		in, err := x.InputJSON()
		if err != nil {
			return confload.InvalidConfig(err)
		}
		fmt.Fprintf(stdout, "%s\n", in)
	} else if err := x.Write(stdout); err != nil {
		return err
	}
	if !x.Allow {
		return fmt.Errorf("%w: %d %s", errDenied, x.Status, x.Reason)
	}
	return nil
}

// readBounded reads a file of at most maxExplainFile bytes.
func readBounded(path string) ([]byte, error) {
	b, err := confload.ReadFile(path, maxExplainFile)
	if err != nil {
		return nil, fmt.Errorf("sidecar explain: %w", err)
	}
	return b, nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
