package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
	"github.com/orgauthz/orgauthz/sidecar"
)

func noEnv(string) string { return "" }

// keypair writes a decision key pair with `sidecar keygen` and returns the private key's path.
func keypair(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	priv := filepath.Join(dir, "d.pem")
	if err := run(context.Background(), []string{"keygen", "--private", priv, "--public", filepath.Join(dir, "d.pub.pem")}, noEnv, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	return priv
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "d.pem"), filepath.Join(dir, "d.pub.pem")
	args := []string{"keygen", "--private", priv, "--public", pub}
	if err := run(context.Background(), args, noEnv, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	for path, want := range map[string]string{priv: "PRIVATE KEY", pub: "PUBLIC KEY"} {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), "-----BEGIN "+want+"-----") {
			t.Errorf("%s = %q, %v; want a %s PEM", path, b, err, want)
		}
	}
	before, _ := os.ReadFile(priv)
	if err := run(context.Background(), args, noEnv, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("second keygen over the same files succeeded, want a refusal")
	}
	if after, _ := os.ReadFile(priv); !bytes.Equal(before, after) {
		t.Error("second keygen changed the private key")
	}
	err := run(context.Background(), []string{"keygen", "--private", filepath.Join(dir, "x.pem")}, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
	if !confload.IsInvalidConfig(err) {
		t.Errorf("keygen without --public: %v, want a config error", err)
	}
}

func TestRunConfig(t *testing.T) {
	key := keypair(t)
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "x.rego"), []byte("package orgauthz\n\ndecision := {"), 0o644); err != nil {
		t.Fatal(err)
	}
	valid := []string{"--issuer", "http://127.0.0.1:3001/oidc", "--api-resource", "https://api.example.com",
		"--admin-resource", "https://admin.example.com", "--decision-key", key, "--policies", "../../policies"}
	// with returns valid with the settings in args (name, value pairs, or a bare --check) changed.
	with := func(args ...string) []string {
		out := append([]string{}, valid...)
		for i := 0; i < len(args); i++ {
			if args[i] == "--check" {
				out = append([]string{"--check", "--check-offline"}, out...)
				continue
			}
			j := slices.Index(out, args[i])
			if j < 0 {
				t.Fatalf("with(%q): %s is not in valid", args, args[i])
			}
			out[j+1] = args[i+1]
			i++
		}
		return out
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantErr    []string // substrings of the error; nil means success
		wantConfig bool     // exit status 2
		wantOut    string
	}{
		{name: "check ok", args: with("--check"), wantOut: "sidecar: configuration ok\n"},
		{name: "check ok from env", args: []string{"--check"}, env: map[string]string{"ORGAUTHZ_ISSUER": "https://tenant.logto.app/oidc", "ORGAUTHZ_CHECK_OFFLINE": "true",
			"ORGAUTHZ_API_RESOURCE": "https://api.example.com", "ORGAUTHZ_ADMIN_RESOURCE": "https://admin.example.com",
			"ORGAUTHZ_DECISION_KEY": key, "ORGAUTHZ_POLICIES": "../../policies"}, wantOut: "sidecar: configuration ok\n"},
		{name: "check broken policy", args: with("--check", "--policies", broken), wantConfig: true, wantErr: []string{"policy"}},
		{name: "check bad key", args: with("--check", "--decision-key", "../../go.mod", "--policies", broken), wantConfig: true,
			wantErr: []string{"decision key", "policy directory"}},
		{name: "check reports everything at once", args: []string{"--check", "--nope", "--decision-key", "../../go.mod", "--policies", "no-such-dir"},
			env: map[string]string{"ORGAUTHZ_CLOCK_SKEW": "soon"}, wantConfig: true,
			wantErr: []string{"-nope", "ORGAUTHZ_CLOCK_SKEW", "--issuer is required", "--api-resource is required", "decision key",
				`policy directory "no-such-dir" (relative to `}},
		{name: "serving checks the key and policies first", args: with("--decision-key", "../../go.mod"), wantConfig: true, wantErr: []string{"decision key"}},
		{name: "every problem", args: []string{"--decision-ttl", "1m", "--algorithms", "HS256"}, wantConfig: true, wantErr: []string{"--issuer is required", "--decision-key is required", "--decision-ttl", "HS256"}},
		{name: "parse and validation problems together", args: []string{"--nope", "--grpc-addr", "127.0.0.1:0"}, wantConfig: true,
			wantErr: []string{"-nope", "--grpc-addr", "--issuer is required", "--admin-resource is required"}},
		{name: "cleartext issuer", args: with("--check", "--issuer", "http://logto.example.com/oidc"), wantConfig: true, wantErr: []string{"loopback"}},
		{name: "unknown flag", args: []string{"--nope"}, wantConfig: true, wantErr: []string{"nope"}},
		{name: "bad duration", args: []string{"--clock-skew", "soon"}, wantConfig: true, wantErr: []string{"clock-skew"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			getenv := func(k string) string { return tc.env[k] }
			err := run(context.Background(), tc.args, getenv, &stdout, &stderr)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("run(%q) = %v", tc.args, err)
				}
				if stdout.String() != tc.wantOut {
					t.Errorf("run(%q) printed %q, want %q", tc.args, stdout.String(), tc.wantOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("run(%q) = nil, want an error", tc.args)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("run(%q) error lacks %q:\n%v", tc.args, want, err)
				}
			}
			if got := confload.IsInvalidConfig(err); got != tc.wantConfig {
				t.Errorf("run(%q) config error = %v, want %v", tc.args, got, tc.wantConfig)
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--help"}, noEnv, &bytes.Buffer{}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(--help) = %v, want flag.ErrHelp", err)
	}
	for _, name := range []string{"issuer", "api-resource", "admin-resource", "policies", "grpc-addr", "http-addr",
		"decision-key", "decision-ttl", "clock-skew", "token-cache-size", "log-level", "algorithms", "trusted-proxy",
		"grpc-reflection", "max-body-bytes", "jwks-refresh", "decision-log", "config", "check", "keygen", "explain"} {
		if !strings.Contains(stderr.String(), name) {
			t.Errorf("--help does not mention %s", name)
		}
	}
	// The GC setting as --help states it is the one TuneGC applies.
	gc := fmt.Sprintf("GOGC=%d with a soft limit of %d MiB", sidecar.GCPercent, sidecar.MemoryLimit>>20)
	if !strings.Contains(strings.Join(strings.Fields(stderr.String()), " "), gc) {
		t.Errorf("--help does not say %q", gc)
	}
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free.Close() // a port that was free a moment ago; the test needs only the taken one to fail
	err = run(ctx, []string{"--issuer", "http://127.0.0.1:1/oidc", "--api-resource", "https://api.example.com",
		"--admin-resource", "https://admin.example.com", "--decision-key", keypair(t), "--policies", "../../policies",
		"--grpc-addr", addr, "--http-addr", free.Addr().String()}, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("run on a taken port = %v, want an error naming %s", err, addr)
	}
	if got := confload.Report(err, io.Discard); got != confload.ExitFailure {
		t.Errorf("exit status for a taken port = %d, want %d", got, confload.ExitFailure)
	}
}

// TestBadFlagOutput runs what main does for bad flags: the usage once, the error once, status 2.
func TestBadFlagOutput(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		usage     string
		wantError string
	}{
		{[]string{"--nope"}, "Usage of sidecar:", "flag provided but not defined: -nope"},
		{[]string{"keygen", "--nope"}, "Usage of sidecar keygen:", "flag provided but not defined: -nope"},
	} {
		var stderr bytes.Buffer
		status := confload.Report(run(context.Background(), tc.args, noEnv, &bytes.Buffer{}, &stderr), &stderr)
		if status != confload.ExitBadConfig {
			t.Errorf("%q: exit status %d, want %d", tc.args, status, confload.ExitBadConfig)
		}
		if n := strings.Count(stderr.String(), tc.usage); n != 1 {
			t.Errorf("%q: usage printed %d times, want once:\n%s", tc.args, n, stderr.String())
		}
		if n := strings.Count(stderr.String(), tc.wantError); n != 1 {
			t.Errorf("%q: error printed %d times, want once:\n%s", tc.args, n, stderr.String())
		}
	}
}

// TestServesWithoutPolicy: a policy directory with nothing loadable is not a start-up failure. The
// sidecar serves, not ready (503), as DESIGN asks, and ends cleanly with its context.
func TestServesWithoutPolicy(t *testing.T) {
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--issuer", "http://127.0.0.1:1/oidc", "--api-resource", "https://api.example.com",
			"--admin-resource", "https://admin.example.com", "--decision-key", keypair(t), "--policies", t.TempDir(),
			"--grpc-addr", addrs[0], "--http-addr", addrs[1]}, noEnv, &bytes.Buffer{}, io.Discard)
	}()
	status := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("run ended before serving: %v", err)
		default:
		}
		if resp, err := http.Get("http://" + addrs[1] + "/readyz"); err == nil {
			status = resp.StatusCode
			resp.Body.Close()
			break
		}
	}
	if status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with no policy = %d, want 503", status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after its context ended = %v, want nil", err)
	}
}

// TestCheckFetchesIssuers: --check fetches each issuer's discovery and JWKS once: fine for the Logto
// emulator, a failure naming the issuer when nothing answers there; --check-offline skips it.
func TestCheckFetchesIssuers(t *testing.T) {
	logto := startLogto(t)
	key := keypair(t)
	args := func(issuer string, extra ...string) []string {
		return append([]string{"--check", "--issuer", issuer, "--api-resource", "https://api.example.com",
			"--admin-resource", "https://admin.example.com", "--decision-key", key, "--policies", "../../policies"}, extra...)
	}
	const down = "http://127.0.0.1:1/oidc"
	none := func(string) string { return "" }
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), args(logto.Issuer()), none, &stdout, &stderr); err != nil {
		t.Errorf("--check against the emulator = %v", err)
	}
	err := run(t.Context(), args(down), none, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), down) || !strings.Contains(err.Error(), "discovery") {
		t.Errorf("--check with nothing at the issuer = %v, want a discovery failure naming it", err)
	}
	if err := run(t.Context(), args(down, "--check-offline"), none, &stdout, &stderr); err != nil {
		t.Errorf("--check --check-offline = %v, want nil", err)
	}
}

// startLogto starts a Logto emulator on loopback for the test.
func startLogto(t *testing.T) *fakelogto.Server {
	t.Helper()
	logto, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := logto.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logto.Close() })
	return logto
}
