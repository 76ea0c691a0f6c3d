// Command demo is `make run`: it starts the whole orgauthz chain on loopback (the Logto
// emulator, the sidecar, mgmtproxy and a front proxy: Envoy when installed, else Caddy), gets
// real tokens from the emulator, and prints a walkthrough of ready-to-paste curl commands, each
// already run once with its actual status. Ctrl-C (or SIGTERM, SIGHUP, or the reader of its
// output going away) stops everything, removes the temporary keys and secret, and exits 0.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
)

const about = `demo (make run) starts the Logto emulator, the sidecar, mgmtproxy and a front proxy on
loopback and prints a walkthrough of curl commands. Every address can be moved, by flag or by
environment variable (ORGAUTHZ_DEMO_<FLAG>, e.g. ORGAUTHZ_DEMO_LOGTO_ADDR=127.0.0.1:3101 make run).

Usage: demo [flags]
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the demo and returns the exit status: 0 for a normal stop (a signal, or the
// output's reader gone), 1 for a failure, 2 for bad usage.
func realMain(args []string, stdout, stderr io.Writer) int {
	// Asking for SIGPIPE turns the runtime's "die on a write to a broken stdout" into EPIPE
	// errors, so `make run | tee log` stopped by Ctrl-C still cleans up.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "make run:", err)
		return 2
	}
	out := &stopOnBrokenOutput{w: stdout, stop: cancel}
	if err := run(ctx, opts, out); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "make run:", err)
		return 1
	}
	return 0 // finished, or stopped on purpose: nothing failed
}

// stopOnBrokenOutput writes to w; the first failed write (its reader is gone) stops the demo,
// since nobody can read the walkthrough any more.
type stopOnBrokenOutput struct {
	w    io.Writer
	stop func()
	once sync.Once
}

func (o *stopOnBrokenOutput) Write(b []byte) (int, error) {
	n, err := o.w.Write(b)
	if err != nil {
		o.once.Do(o.stop)
	}
	return n, err
}

// options are the demo's flags.
type options struct {
	addrs chain.Addrs
	front string // auto, envoy, caddy or none
	bin   string // prebuilt binaries; "" builds them
}

// addrFlags names each address's flag; its variable is ORGAUTHZ_DEMO_ + the flag in upper case
// with "_" for "-".
var addrFlags = []struct {
	part, flag, about string
	field             func(*chain.Addrs) *string
}{
	{"logto", "logto-addr", "the Logto emulator (Logto OSS itself defaults to 3001)", func(a *chain.Addrs) *string { return &a.Logto }},
	{"grpc", "grpc-addr", "the sidecar's ext_authz gRPC server", func(a *chain.Addrs) *string { return &a.GRPC }},
	{"http", "http-addr", "the sidecar's HTTP server", func(a *chain.Addrs) *string { return &a.HTTP }},
	{"mgmtproxy", "mgmtproxy-addr", "mgmtproxy", func(a *chain.Addrs) *string { return &a.Mgmtproxy }},
	{"front", "front-addr", "the front proxy, where the walkthrough sends requests", func(a *chain.Addrs) *string { return &a.Front }},
}

func envName(flag string) string {
	return "ORGAUTHZ_DEMO_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{addrs: chain.DefaultAddrs()}
	for _, f := range addrFlags {
		p := f.field(&o.addrs)
		fs.StringVar(p, f.flag, cmp.Or(os.Getenv(envName(f.flag)), *p), f.about+" (env "+envName(f.flag)+")")
	}
	fs.StringVar(&o.front, "front", cmp.Or(os.Getenv(envName("front")), "auto"), "front proxy: auto (Envoy when installed, else Caddy), envoy, caddy or none (env "+envName("front")+")")
	fs.StringVar(&o.bin, "bin", os.Getenv(envName("bin")), "use the fakelogto, sidecar and mgmtproxy binaries in this directory instead of building them (env "+envName("bin")+")")
	fs.Usage = func() {
		fmt.Fprint(stderr, about)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch o.front {
	case "auto", "envoy", "caddy", "none":
	default:
		return o, fmt.Errorf("--front %q: want auto, envoy, caddy or none", o.front)
	}
	return o, nil
}

// portHint rewrites CheckFree's errors into what to do: which address, and how to move it.
func portHint(err error) error {
	var errs []error
	for _, e := range unjoin(err) {
		var taken *chain.AddrTakenError
		if !errors.As(e, &taken) {
			errs = append(errs, e)
			continue
		}
		for _, f := range addrFlags {
			if f.part != taken.Part {
				continue
			}
			who := "another program"
			if f.part == "logto" {
				who = "another program (a Logto OSS server listens on 3001 by default)"
			}
			errs = append(errs, fmt.Errorf("%s address %s is taken by %s or an earlier make run: choose a free one with --%s or %s=127.0.0.1:<port>",
				taken.Name, taken.Addr, who, f.flag, envName(f.flag)))
		}
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func run(ctx context.Context, opts options, out io.Writer) error {
	root, err := chain.Root()
	if err != nil {
		return err
	}
	if err := opts.addrs.CheckFree(); err != nil {
		return portHint(err)
	}
	dir, err := os.MkdirTemp("", "orgauthz-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir) // the decision keys and the M2M secret
	// The log outlives the run, so a failure can be read after the temp files are gone.
	logPath := filepath.Join(os.TempDir(), "orgauthz-run.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()

	bin := opts.bin
	if bin == "" {
		fmt.Fprintln(out, "Building fakelogto, sidecar and mgmtproxy…")
		bin = filepath.Join(dir, "bin")
		if err := chain.Build(ctx, root, bin); err != nil {
			return err
		}
	}
	front, frontBin, err := pickFront(ctx, root, opts.front, out)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "Starting the chain with %s in front (logs: %s)…\n", cmp.Or(string(front), "no proxy"), logPath)
	c, err := chain.Start(ctx, chain.Config{
		Root: root, Dir: dir, Bin: bin, Addrs: opts.addrs,
		Front: front, FrontBin: frontBin, Log: log,
	})
	if err != nil {
		return fmt.Errorf("%w\n(full logs: %s)", err, logPath)
	}
	defer func() {
		// Write errors are ignored here: the output may be gone, the cleanup must still run.
		fmt.Fprintln(out, "\nStopping…")
		if err := c.Close(); err != nil {
			fmt.Fprintln(out, err)
		}
		fmt.Fprintln(out, "Stopped.")
	}()

	w, err := newWalkthrough(ctx, c)
	if err != nil {
		return err
	}
	if failed := w.print(ctx, out, front); failed > 0 {
		fmt.Fprintf(out, "\n✗ %d step(s) did not answer as expected: see the log.\n", failed)
	} else if front != chain.NoFront {
		fmt.Fprintln(out, "\n✓ Every step answered as expected.")
	}

	fmt.Fprintf(out, "\nThe chain keeps running: paste the commands above into another terminal. Logs: %s\nPress Ctrl-C to stop.\n", logPath)
	return c.Wait(ctx)
}

// pickFront resolves --front: Envoy when asked or (auto) installed, else Caddy, building
// Caddy first if needed; none starts no proxy.
func pickFront(ctx context.Context, root, choice string, out io.Writer) (chain.Front, string, error) {
	switch choice {
	case "none":
		return chain.NoFront, "", nil
	case "envoy", "auto":
		p, err := exec.LookPath("envoy")
		if err == nil {
			return chain.FrontEnvoy, p, nil
		}
		if choice == "envoy" {
			return "", "", errors.New("--front envoy: no envoy binary on PATH")
		}
	}
	progress := &buildProgress{out: out}
	caddy, err := chain.Caddy(ctx, root, progress)
	progress.done()
	if err != nil {
		return "", "", err
	}
	return chain.FrontCaddy, caddy, nil
}

// buildProgress turns go build -v's package list into a one-line counter.
type buildProgress struct {
	out io.Writer
	n   int
}

func (p *buildProgress) Write(b []byte) (int, error) {
	if p.n == 0 {
		fmt.Fprintln(p.out, "Envoy is not installed: building Caddy into bin/caddy (the first time takes a few minutes)…")
	}
	p.n += strings.Count(string(b), "\n")
	fmt.Fprintf(p.out, "\r  %d packages compiled", p.n)
	return len(b), nil
}

func (p *buildProgress) done() {
	if p.n > 0 {
		fmt.Fprintln(p.out)
	}
}

// walkthrough is the story `make run` tells, with the tokens it needs.
type walkthrough struct {
	chain  *chain.Chain
	front  string     // the front proxy's URL
	vars   []variable // exported for the curl commands, in order
	values map[string]string
}

type variable struct{ name, value, about string }

// otherOrg is an organization alice is not a member of.
const otherOrg = "globex000001"

func newWalkthrough(ctx context.Context, c *chain.Chain) (*walkthrough, error) {
	seed := c.Seed
	alice, carol, acme := seed.Users["alice"], seed.Users["carol"], seed.Organizations["acme"]
	tokens := &chain.Tokens{Endpoint: c.LogtoURL(), Seed: seed}
	w := &walkthrough{chain: c, front: c.FrontURL(), values: map[string]string{}}
	add := func(name, value, about string) {
		w.vars = append(w.vars, variable{name, value, about})
		w.values[name] = value
	}
	add("ACME", acme, "organization acme")
	add("ALICE", alice, "user alice, admin of acme")
	add("CAROL", carol, "user carol, super admin, not in acme")
	bob := seed.Users["bob"]
	add("BOB", bob, "user bob, member of acme")
	initech, err := newOrganization(ctx, tokens, "initech", bob)
	if err != nil {
		return nil, err
	}
	add("INITECH", initech, "organization initech, bob a member")
	for _, t := range []struct {
		name, about string
		req         chain.TokenRequest
	}{
		{"ALICE_ORG_TOKEN", "alice's organization token for acme",
			chain.TokenRequest{UserID: alice, OrganizationID: acme, Scopes: []string{"org:read", "member:read", "member:add", "member:remove", "member:role"}}},
		{"ALICE_TOKEN", "alice's token for " + chain.APIResource + " (org:create)",
			chain.TokenRequest{UserID: alice, Resource: chain.APIResource, Scopes: []string{"org:create"}}},
		{"CAROL_ADMIN_TOKEN", "carol's token for " + chain.AdminResource,
			chain.TokenRequest{UserID: carol, Resource: chain.AdminResource, Scopes: []string{"admin:org:read", "admin:org:write"}}},
		{"BOB_ORG_TOKEN", "bob's organization token for acme",
			chain.TokenRequest{UserID: bob, OrganizationID: acme, Scopes: []string{"org:read"}}},
		{"BOB_INITECH_TOKEN", "bob's organization token for initech",
			chain.TokenRequest{UserID: bob, OrganizationID: initech, Scopes: []string{"org:read"}}},
	} {
		tok, err := tokens.Get(ctx, t.req)
		if err != nil {
			return nil, err
		}
		add(t.name, tok, t.about)
	}
	return w, nil
}

// newOrganization creates an organization in the emulator, as the Logto Console would, with user a
// member of role "member", and returns its ID.
func newOrganization(ctx context.Context, tokens *chain.Tokens, name, user string) (string, error) {
	m2m, err := tokens.Management(ctx)
	if err != nil {
		return "", err
	}
	call := func(path string, body string, out any) error {
		req, err := http.NewRequestWithContext(ctx, "POST", tokens.Endpoint+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+m2m)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("demo: POST %s: %s %s", path, resp.Status, shorten(string(b), 160))
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	var org struct{ ID string }
	if err := call("/api/organizations", `{"name":"`+name+`"}`, &org); err != nil {
		return "", err
	}
	if err := call("/api/organizations/"+org.ID+"/users", `{"userIds":["`+user+`"]}`, nil); err != nil {
		return "", err
	}
	return org.ID, call("/api/organizations/"+org.ID+"/users/"+user+"/roles", `{"organizationRoleNames":["member"]}`, nil)
}

// step is one request of the walkthrough; path, token and body may name $VARIABLES.
type step struct {
	title  string
	method string
	path   string
	token  string // a variable name, or "" for no token
	body   string
	want   int
	// show summarises a successful answer's body; nil prints its start.
	show func(body []byte) string
	// needsBody marks a route whose policy reads the request body: only Envoy sends the sidecar
	// the body (Caddy's forward_auth sends none), so behind Caddy the step is explained, not run.
	needsBody bool
	// settle is waited before the step: Logto's webhook of the step before may still be in flight.
	settle time.Duration
}

func (w *walkthrough) steps() []step {
	return []step{
		{"No token: 401", "GET", "/api/organizations/$ACME/users", "", "", http.StatusUnauthorized, nil, false, 0},
		{"alice's acme token on another organization: 403", "GET", "/api/organizations/" + otherOrg + "/users", "ALICE_ORG_TOKEN", "", http.StatusForbidden, nil, false, 0},
		{"alice (member:add) adds carol to acme: 201", "POST", "/api/organizations/$ACME/users", "ALICE_ORG_TOKEN", `{"userIds":["$CAROL"]}`, http.StatusCreated, nil, false, 0},
		{"carol is now a member of acme", "GET", "/api/organizations/$ACME/users", "ALICE_ORG_TOKEN", "", http.StatusOK, listNames("members", "username"), false, 0},
		{"alice (org:create) creates an organization: 201", "POST", "/api/organizations", "ALICE_TOKEN", `{"name":"Alice Co"}`, http.StatusCreated, nil, false, 0},
		{"alice is a member of it, with the creator role admin", "GET", "/api/users/$ALICE/organizations", "ALICE_TOKEN", "", http.StatusOK, listNames("alice's organizations", "name"), false, 0},
		{"carol (super admin) creates three organizations in one call", "POST", "/bulk/organizations", "CAROL_ADMIN_TOKEN", `{"organizations":[{"name":"bulk-1"},{"name":"bulk-2"},{"name":"bulk-3"}]}`, http.StatusOK, nil, false, 0},
		{"alice (member:role) gives carol the member role in acme: 201", "POST", "/api/organizations/$ACME/users/$CAROL/roles", "ALICE_ORG_TOKEN", `{"organizationRoleNames":["member"]}`, http.StatusCreated, nil, true, 0},
		// Revocation: bob leaves acme; his acme token, issued before, is refused at once (Logto's
		// webhook, and mgmtproxy's own notice), while his token for another organization works.
		{"bob (member) reads acme: 200", "GET", "/api/organizations/$ACME", "BOB_ORG_TOKEN", "", http.StatusOK, nil, false, 0},
		{"alice (member:remove) removes bob from acme: 204", "DELETE", "/api/organizations/$ACME/users/$BOB", "ALICE_ORG_TOKEN", "", http.StatusNoContent, nil, false, 0},
		{"bob's acme token, issued before his removal, is revoked: 401 token_revoked", "GET", "/api/organizations/$ACME", "BOB_ORG_TOKEN", "", http.StatusUnauthorized, nil, false, 300 * time.Millisecond},
		{"bob's token for initech, another organization, still works: 200", "GET", "/api/organizations/$INITECH", "BOB_INITECH_TOKEN", "", http.StatusOK, nil, false, 0},
	}
}

// print runs and prints the walkthrough and returns how many steps did not answer as expected.
func (w *walkthrough) print(ctx context.Context, out io.Writer, front chain.Front) (failed int) {
	fmt.Fprintf(out, `
orgauthz is running on loopback:
  front proxy (%s)  %s   ← send requests here
  sidecar            gRPC %s, HTTP %s
  mgmtproxy          %s
  Logto emulator     %s   (issuer %s)

Tokens from the emulator (subject token + token exchange, valid for an hour):
`, front, w.front, w.chain.Addrs.GRPC, w.chain.Addrs.HTTP, w.chain.MgmtproxyURL(), w.chain.LogtoURL(), w.chain.Issuer())
	for _, v := range w.vars {
		fmt.Fprintf(out, "  # %s\n  export %s=%s\n", v.about, v.name, v.value)
	}
	if front == chain.NoFront {
		fmt.Fprintln(out, "\nNo front proxy (--front none): put your own in front of the sidecar and mgmtproxy; the walkthrough needs one.")
		return 0
	}
	fmt.Fprintln(out, "\nThe walkthrough (each command was just run once; its status is on the right):")
	client := &http.Client{Timeout: 30 * time.Second}
	for i, s := range w.steps() {
		if s.needsBody && front != chain.FrontEnvoy {
			fmt.Fprintf(out, "\n%d. %s\n   %s\n   – not run behind %s: its forward_auth sends the sidecar no request body, and this route's policy\n     reads the body (the roles granted), so it is refused with 403 insufficient_scope. Run it with Envoy\n     (--front envoy, envoy on PATH), which sends the body.\n", i+1, s.title, w.curl(s), front)
			continue
		}
		time.Sleep(s.settle)
		got, err := w.do(ctx, client, s)
		mark := "✓"
		switch {
		case err != nil:
			mark, got = "✗", err.Error()
			failed++
		case !strings.HasPrefix(got, fmt.Sprint(s.want)):
			mark = "✗ expected " + fmt.Sprint(s.want) + ", got"
			failed++
		}
		fmt.Fprintf(out, "\n%d. %s\n   %s\n   %s %s\n", i+1, s.title, w.curl(s), mark, got)
	}
	return failed
}

// curl renders s as a command for a shell where the variables are exported.
func (w *walkthrough) curl(s step) string {
	var b strings.Builder
	b.WriteString("curl -si")
	if s.method != "GET" {
		b.WriteString(" -X " + s.method)
	}
	if s.token != "" {
		fmt.Fprintf(&b, ` -H "Authorization: Bearer $%s"`, s.token)
	}
	if s.body != "" {
		fmt.Fprintf(&b, ` -H 'Content-Type: application/json' -d "%s"`, strings.ReplaceAll(s.body, `"`, `\"`))
	}
	fmt.Fprintf(&b, " %s%s", w.front, s.path)
	return b.String()
}

// do sends s and returns the status line and a short view of the body.
func (w *walkthrough) do(ctx context.Context, client *http.Client, s step) (string, error) {
	expand := func(v string) string { return os.Expand(v, func(name string) string { return w.values[name] }) }
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(expand(s.body))
	}
	req, err := http.NewRequestWithContext(ctx, s.method, w.front+expand(s.path), body)
	if err != nil {
		return "", err
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.values[s.token])
	}
	if s.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	view := shorten(string(b), 160)
	if s.show != nil && resp.StatusCode == s.want {
		view = s.show(b)
	}
	return resp.Status + "  " + view, nil
}

// listNames summarises a JSON array of users or organizations as their names (by the given
// field) and organization roles.
func listNames(what, field string) func([]byte) string {
	return func(b []byte) string {
		var items []map[string]any
		if err := json.Unmarshal(b, &items); err != nil {
			return shorten(string(b), 160)
		}
		var names []string
		for _, it := range items {
			name, _ := it[field].(string)
			var roles []string
			list, _ := it["organizationRoles"].([]any)
			for _, r := range list {
				if r, ok := r.(map[string]any); ok {
					if n, ok := r["name"].(string); ok {
						roles = append(roles, n)
					}
				}
			}
			if len(roles) > 0 {
				name += " (" + strings.Join(roles, ", ") + ")"
			}
			names = append(names, name)
		}
		return what + ": " + strings.Join(names, ", ")
	}
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
