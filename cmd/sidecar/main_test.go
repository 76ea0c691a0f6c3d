package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if !errors.As(err, new(configError)) {
		t.Errorf("keygen without --public: %v, want a config error", err)
	}
}

func TestRunConfig(t *testing.T) {
	key := keypair(t)
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "x.rego"), []byte("package orgauthz\n\ndecision := {"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantErr    []string // substrings of the error; nil means success
		wantConfig bool     // exit status 2
		wantOut    string
	}{
		{name: "check ok", args: []string{"--check", "--issuer", "http://127.0.0.1:3001/oidc", "--decision-key", key, "--policies", "../../policies"}, wantOut: "config ok"},
		{name: "check ok from env", args: []string{"--check"}, env: map[string]string{"ORGAUTHZ_ISSUER": "http://127.0.0.1:3001/oidc", "ORGAUTHZ_DECISION_KEY": key, "ORGAUTHZ_POLICIES": "../../policies"}, wantOut: "config ok"},
		{name: "check broken policy", args: []string{"--check", "--issuer", "http://127.0.0.1:3001/oidc", "--decision-key", key, "--policies", broken}, wantErr: []string{"policy"}},
		{name: "check bad key", args: []string{"--check", "--issuer", "http://127.0.0.1:3001/oidc", "--decision-key", "../../go.mod", "--policies", broken}, wantErr: []string{"decision key", "policies"}},
		{name: "every problem", args: []string{"--decision-ttl", "1m", "--algorithms", "HS256"}, wantConfig: true, wantErr: []string{"--issuer is required", "--decision-key is required", "--decision-ttl", "HS256"}},
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
				if !strings.Contains(stdout.String(), tc.wantOut) {
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
			if got := errors.As(err, new(configError)); got != tc.wantConfig {
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
		"grpc-reflection", "max-body-bytes", "jwks-refresh", "config", "check", "keygen"} {
		if !strings.Contains(stderr.String(), name) {
			t.Errorf("--help does not mention %s", name)
		}
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
	err = run(ctx, []string{"--issuer", "http://127.0.0.1:1/oidc", "--decision-key", keypair(t), "--policies", "../../policies",
		"--grpc-addr", addr, "--http-addr", "127.0.0.1:0"}, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("run on a taken port = %v, want an error naming %s", err, addr)
	}
}
