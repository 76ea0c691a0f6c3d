// Package chain starts the whole orgauthz request path as real processes on loopback: the Logto
// emulator, the sidecar, mgmtproxy and a front proxy (Caddy, nginx or Envoy). The end-to-end
// tests and the `make run` walkthrough both use it.
package chain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Resource indicators the chain configures: the app's API and its admin API.
const (
	APIResource   = "https://api.example.com"
	AdminResource = "https://admin.example.com"
)

// Addrs are the loopback host:port addresses of the chain's parts.
type Addrs struct {
	Logto     string // the Logto emulator
	GRPC      string // the sidecar's ext_authz gRPC server
	HTTP      string // the sidecar's HTTP server: /readyz, /forward-auth
	Mgmtproxy string
	Front     string // the front proxy, where clients send requests
}

// DefaultAddrs are the fixed addresses of `make run`.
func DefaultAddrs() Addrs {
	return Addrs{
		Logto:     "127.0.0.1:3001",
		GRPC:      "127.0.0.1:9191",
		HTTP:      "127.0.0.1:9192",
		Mgmtproxy: "127.0.0.1:8081",
		Front:     "127.0.0.1:8080",
	}
}

// FreeAddrs picks free loopback ports for every part. A port is free when picked; another
// program could take it before the chain binds it, which Start then reports.
func FreeAddrs() (Addrs, error) {
	var a Addrs
	for _, p := range []*string{&a.Logto, &a.GRPC, &a.HTTP, &a.Mgmtproxy, &a.Front} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Addrs{}, fmt.Errorf("chain: free port: %w", err)
		}
		defer ln.Close() // held until all are picked, so no two are the same
		*p = ln.Addr().String()
	}
	return a, nil
}

// CheckFree reports every address that something already listens on, each as an
// *AddrTakenError (joined).
func (a Addrs) CheckFree() error {
	var errs []error
	for _, p := range []struct{ part, name, addr string }{
		{"logto", "Logto emulator", a.Logto}, {"grpc", "sidecar gRPC", a.GRPC}, {"http", "sidecar HTTP", a.HTTP},
		{"mgmtproxy", "mgmtproxy", a.Mgmtproxy}, {"front", "front proxy", a.Front},
	} {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			errs = append(errs, &AddrTakenError{Part: p.part, Name: p.name, Addr: p.addr, Err: err})
			continue
		}
		ln.Close()
	}
	return errors.Join(errs...)
}

// AddrTakenError says that one of the chain's addresses is in use.
type AddrTakenError struct {
	Part string // logto, grpc, http, mgmtproxy or front: the Addrs field
	Name string // the part for people, e.g. "sidecar HTTP"
	Addr string
	Err  error
}

func (e *AddrTakenError) Error() string {
	return fmt.Sprintf("chain: %s address %s is taken: %v", e.Name, e.Addr, e.Err)
}

func (e *AddrTakenError) Unwrap() error { return e.Err }

// Front names a front proxy.
type Front string

const (
	NoFront    Front = ""      // none: clients call the sidecar and mgmtproxy themselves
	FrontCaddy Front = "caddy" // tests/caddy/Caddyfile
	FrontNginx Front = "nginx" // tests/nginx/nginx.conf
	FrontEnvoy Front = "envoy" // envoy/front-proxy.yaml
)

// Config says how to start a chain.
type Config struct {
	Root string // repository root (see Root)
	Dir  string // a private directory for keys, configs and the seed; the caller removes it
	Bin  string // directory holding the binaries Build wrote
	// Addrs are the listen addresses; every part must be free.
	Addrs Addrs
	// Front is the front proxy to start, FrontBin its executable.
	Front    Front
	FrontBin string
	// AppUpstream, when set, is where the front proxy sends allowed requests instead of
	// mgmtproxy, so a test can watch what passes.
	AppUpstream string
	// LogtoUpstream, when set, is the base URL mgmtproxy calls Logto at instead of the
	// emulator's, so a test can count and inspect Management API calls.
	LogtoUpstream string
	// Log receives every child's output, one prefixed line at a time.
	Log io.Writer
	// ReadyTimeout bounds the wait for each part. Default 60 s (generous: the machine may be
	// busy compiling).
	ReadyTimeout time.Duration
	// RevocationStore is the sidecar's and mgmtproxy's --revocation-store: "" for memory, where
	// mgmtproxy tells the sidecar of its revocations through --revocation-notify, or a redis:// URL
	// both share (Redis is the caller's to run).
	RevocationStore string
}

// Chain is a running chain. Close stops it.
type Chain struct {
	Addrs Addrs
	Seed  Seed
	// WebhookKey is the signing key of the emulator's webhook to the sidecar (the sidecar's
	// --logto-webhook-secret-file), so a test can sign the deliveries the emulator never sends.
	WebhookKey string
	// MgmtproxyRevokes: mgmtproxy was given the revocation store (and, with memory, told to notify
	// the sidecar), so its changes revoke tokens. False when the mgmtproxy binary has no such flags.
	MgmtproxyRevokes bool

	cfg         Config
	sidecarArgs []string // the first sidecar's flags but its addresses, for AddSidecar
	log         *syncWriter
	procs       []*process // in start order
}

// LogtoURL is the emulator's base URL, e.g. http://127.0.0.1:3001.
func (c *Chain) LogtoURL() string { return "http://" + c.Addrs.Logto }

// Issuer is the emulator's OIDC issuer, which the sidecar trusts.
func (c *Chain) Issuer() string { return c.LogtoURL() + "/oidc" }

// FrontURL is where clients send requests.
func (c *Chain) FrontURL() string { return "http://" + c.Addrs.Front }

// MgmtproxyURL is mgmtproxy's base URL, for calls that bypass the front proxy.
func (c *Chain) MgmtproxyURL() string { return "http://" + c.Addrs.Mgmtproxy }

// Start starts the emulator, the sidecar, mgmtproxy and the front proxy in that order, each
// ready before the next starts. On error, whatever started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Chain, err error) {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	c := &Chain{Addrs: cfg.Addrs, cfg: cfg}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	log := &syncWriter{w: cfg.Log}
	if cfg.Log == nil {
		log.w = io.Discard
	}
	c.log = log
	bin := func(name string) string { return filepath.Join(cfg.Bin, name) }
	start := func(name string, env []string, path string, args ...string) (*process, error) {
		p, err := startProcess(name, log, env, path, args...)
		if err == nil {
			c.procs = append(c.procs, p)
		}
		return p, err
	}
	ready := func(p *process, url string) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
		defer cancel()
		return p.waitReady(ctx, url)
	}

	// The emulator's webhook goes to the sidecar, signed with a key both read from one file.
	webhookKey := filepath.Join(cfg.Dir, "webhook-key")
	if c.WebhookKey, err = writeWebhookKey(webhookKey); err != nil {
		return nil, err
	}
	seedFile := filepath.Join(cfg.Dir, "seed.json")
	logto, err := start("fakelogto", nil, bin("fakelogto"), "--addr", cfg.Addrs.Logto, "--seed-file", seedFile,
		"--webhook-url", "http://"+cfg.Addrs.HTTP+webhookPath, "--webhook-signing-key-file", webhookKey)
	if err != nil {
		return nil, err
	}
	if err := ready(logto, c.Issuer()+"/.well-known/openid-configuration"); err != nil {
		return nil, err
	}
	if c.Seed, err = ReadSeed(seedFile); err != nil {
		return nil, err
	}

	priv, pub := filepath.Join(cfg.Dir, "decision.key"), filepath.Join(cfg.Dir, "decision.pub")
	if err := run(ctx, bin("sidecar"), "keygen", "--private", priv, "--public", pub); err != nil {
		return nil, err
	}
	store := cmp.Or(cfg.RevocationStore, "memory")
	c.sidecarArgs = []string{
		"--issuer", c.Issuer(),
		"--api-resource", APIResource,
		"--admin-resource", AdminResource,
		"--policies", filepath.Join(cfg.Root, "policies"),
		"--decision-key", priv,
		"--revocation-store", store,
		"--logto-webhook-secret-file", webhookKey,
	}
	if err := c.AddSidecar(ctx, cfg.Addrs.GRPC, cfg.Addrs.HTTP); err != nil {
		return nil, err
	}

	secret := filepath.Join(cfg.Dir, "m2m-secret")
	if err := os.WriteFile(secret, []byte(c.Seed.M2MApp.Secret), 0o600); err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	logtoUpstream := cmp.Or(cfg.LogtoUpstream, c.LogtoURL())
	mgmtArgs := []string{
		"--listen-addr", cfg.Addrs.Mgmtproxy,
		"--logto-endpoint", logtoUpstream,
		"--m2m-app-id", c.Seed.M2MApp.ID,
		"--m2m-app-secret-file", secret,
		"--decision-public-key", pub,
	}
	revocationArgs, err := mgmtproxyRevocationArgs(ctx, bin("mgmtproxy"), store, "http://"+cfg.Addrs.HTTP+webhookPath, webhookKey)
	if err != nil {
		return nil, err
	}
	c.MgmtproxyRevokes = revocationArgs != nil
	mgmtproxy, err := start("mgmtproxy", nil, bin("mgmtproxy"), append(mgmtArgs, revocationArgs...)...)
	if err != nil {
		return nil, err
	}
	if err := ready(mgmtproxy, c.MgmtproxyURL()+"/readyz"); err != nil {
		return nil, err
	}

	if cfg.Front == NoFront {
		return c, nil
	}
	front, err := startFront(cfg, start)
	if err != nil {
		return nil, err
	}
	// The front proxies have no readiness endpoint here; any answer means they listen.
	rctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	if err := front.waitServing(rctx, c.FrontURL()+"/.orgauthz-probe"); err != nil {
		return nil, err
	}
	return c, nil
}

type starter func(name string, env []string, path string, args ...string) (*process, error)

func startFront(cfg Config, start starter) (*process, error) {
	upstream := cmp.Or(cfg.AppUpstream, cfg.Addrs.Mgmtproxy)
	switch cfg.Front {
	case FrontCaddy:
		host, _, _ := net.SplitHostPort(cfg.Addrs.Front)
		env := []string{
			"ORGAUTHZ_FRONT_HOST=" + host,
			"ORGAUTHZ_FRONT_PORT=" + port(cfg.Addrs.Front),
			"ORGAUTHZ_HTTP_ADDR=" + cfg.Addrs.HTTP,
			"ORGAUTHZ_LISTEN_ADDR=" + upstream,
			// Caddy keeps state under these; keep it out of the user's home.
			"XDG_CONFIG_HOME=" + filepath.Join(cfg.Dir, "caddy"),
			"XDG_DATA_HOME=" + filepath.Join(cfg.Dir, "caddy"),
		}
		return start("caddy", env, cfg.FrontBin, "run", "--adapter", "caddyfile",
			"--config", filepath.Join(cfg.Root, "tests", "caddy", "Caddyfile"))
	case FrontNginx:
		prefix := filepath.Join(cfg.Dir, "nginx")
		conf, err := render(filepath.Join(cfg.Root, "tests", "nginx", "nginx.conf"), prefix,
			DefaultAddrs().Front, cfg.Addrs.Front,
			DefaultAddrs().HTTP, cfg.Addrs.HTTP,
			DefaultAddrs().Mgmtproxy, upstream,
		)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o700); err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		return start("nginx", nil, cfg.FrontBin, "-p", prefix, "-c", conf, "-e", "stderr", "-g", "daemon off;")
	case FrontEnvoy:
		conf, err := render(filepath.Join(cfg.Root, "envoy", "front-proxy.yaml"), filepath.Join(cfg.Dir, "envoy"),
			"port_value: "+port(DefaultAddrs().Front), "port_value: "+port(cfg.Addrs.Front),
			"port_value: "+port(DefaultAddrs().GRPC), "port_value: "+port(cfg.Addrs.GRPC),
			"port_value: "+port(DefaultAddrs().Mgmtproxy), "port_value: "+port(upstream),
			"port_value: 9901", "port_value: 0", // the admin listener: any free port
		)
		if err != nil {
			return nil, err
		}
		return start("envoy", nil, cfg.FrontBin, "-c", conf, "--use-dynamic-base-id", "--log-level", "warn")
	}
	return nil, fmt.Errorf("chain: unknown front proxy %q", cfg.Front)
}

// render copies the config file src into dir with each old string of oldnew (pairs, as for
// strings.NewReplacer) replaced by its new one. An old string the file no longer contains is
// an error: the file changed its format, and the chain would silently use the defaults.
func render(src, dir string, oldnew ...string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("chain: %w", err)
	}
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(string(b), oldnew[i]) {
			return "", fmt.Errorf("chain: %s no longer contains %q: update internal/chain to its format", src, oldnew[i])
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("chain: %w", err)
	}
	out := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(out, []byte(strings.NewReplacer(oldnew...).Replace(string(b))), 0o600); err != nil {
		return "", fmt.Errorf("chain: %w", err)
	}
	return out, nil
}

// Close stops the parts in reverse order and reports what went wrong: a part that had
// already exited, or one that had to be killed.
func (c *Chain) Close() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		if err := c.procs[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	c.procs = nil
	return errors.Join(errs...)
}

// Kill kills a part ("fakelogto", "sidecar", "mgmtproxy" or the front proxy's name) at once,
// as a crash would, and waits for it to be gone. The rest keeps running.
func (c *Chain) Kill(part string) error {
	for i, p := range c.procs {
		if p.name == part {
			p.cmd.Process.Kill()
			<-p.done
			c.procs = slices.Delete(c.procs, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("chain: no part %q", part)
}

// Wait blocks until ctx ends (nil) or a part exits on its own (an error naming it).
func (c *Chain) Wait(ctx context.Context) error {
	exited := make(chan *process, len(c.procs))
	for _, p := range c.procs {
		go func() {
			select {
			case <-p.done:
				exited <- p
			case <-ctx.Done():
			}
		}()
	}
	select {
	case p := <-exited:
		return p.exitError()
	case <-ctx.Done():
		return nil
	}
}

// run runs a short command to completion.
func run(ctx context.Context, path string, args ...string) error {
	p, err := startProcess(filepath.Base(path), io.Discard, nil, path, args...)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		if p.err != nil {
			return p.exitError()
		}
		return nil
	case <-ctx.Done():
		p.stop()
		return fmt.Errorf("chain: %s %s: %w", filepath.Base(path), strings.Join(args, " "), ctx.Err())
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
