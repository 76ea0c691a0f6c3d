// Command demo is `make run`: it starts the whole orgauthz chain on the default loopback ports
// (the Logto emulator, the sidecar, mgmtproxy and a front proxy: Envoy when installed, else
// Caddy), gets real tokens from the emulator, and prints a walkthrough of ready-to-paste curl
// commands, each already run once with its actual status. Ctrl-C stops everything and removes
// the temporary files.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	root, err := chain.Root()
	if err != nil {
		return err
	}
	addrs := chain.DefaultAddrs()
	if err := addrs.CheckFree(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "orgauthz-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The log outlives the run, so a failure can be read after the temp files are gone.
	logPath := filepath.Join(os.TempDir(), "orgauthz-run.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()

	fmt.Fprintln(out, "Building fakelogto, sidecar and mgmtproxy…")
	bin := filepath.Join(dir, "bin")
	if err := chain.Build(ctx, root, bin); err != nil {
		return err
	}
	front, frontBin, err := pickFront(ctx, root, out)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "Starting the chain with %s in front (logs: %s)…\n", front, logPath)
	c, err := chain.Start(ctx, chain.Config{
		Root: root, Dir: dir, Bin: bin, Addrs: addrs,
		Front: front, FrontBin: frontBin, Log: log,
	})
	if err != nil {
		return fmt.Errorf("%w\n(full logs: %s)", err, logPath)
	}
	defer func() {
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
	} else {
		fmt.Fprintln(out, "\n✓ Every step answered as expected.")
	}

	fmt.Fprintf(out, "\nThe chain keeps running: paste the commands above into another terminal. Logs: %s\nPress Ctrl-C to stop.\n", logPath)
	return c.Wait(ctx)
}

// pickFront chooses Envoy when it is installed, else Caddy, building Caddy first if needed.
func pickFront(ctx context.Context, root string, out io.Writer) (chain.Front, string, error) {
	if p, err := exec.LookPath("envoy"); err == nil {
		return chain.FrontEnvoy, p, nil
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
	} {
		tok, err := tokens.Get(ctx, t.req)
		if err != nil {
			return nil, err
		}
		add(t.name, tok, t.about)
	}
	return w, nil
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
}

func (w *walkthrough) steps() []step {
	return []step{
		{"No token: 401", "GET", "/api/organizations/$ACME/users", "", "", http.StatusUnauthorized, nil},
		{"alice's acme token on another organization: 403", "GET", "/api/organizations/" + otherOrg + "/users", "ALICE_ORG_TOKEN", "", http.StatusForbidden, nil},
		{"alice (member:add) adds carol to acme: 201", "POST", "/api/organizations/$ACME/users", "ALICE_ORG_TOKEN", `{"userIds":["$CAROL"]}`, http.StatusCreated, nil},
		{"carol is now a member of acme", "GET", "/api/organizations/$ACME/users", "ALICE_ORG_TOKEN", "", http.StatusOK, listNames("members", "username")},
		{"alice (org:create) creates an organization: 201", "POST", "/api/organizations", "ALICE_TOKEN", `{"name":"Alice Co"}`, http.StatusCreated, nil},
		{"alice is a member of it, with the creator role admin", "GET", "/api/users/$ALICE/organizations", "ALICE_TOKEN", "", http.StatusOK, listNames("alice's organizations", "name")},
		{"carol (super admin) creates three organizations in one call", "POST", "/bulk/organizations", "CAROL_ADMIN_TOKEN", `{"organizations":[{"name":"bulk-1"},{"name":"bulk-2"},{"name":"bulk-3"}]}`, http.StatusOK, nil},
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
	fmt.Fprintln(out, "\nThe walkthrough (each command was just run once; its status is on the right):")
	client := &http.Client{Timeout: 30 * time.Second}
	for i, s := range w.steps() {
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
