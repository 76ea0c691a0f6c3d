package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orgauthz/orgauthz/internal/confload"
)

func publicKeyFile(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "decision.pub")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	key := publicKeyFile(t)
	env := map[string]string{"ORGAUTHZ_M2M_APP_SECRET": "from-env-secret"}
	getenv := func(k string) string { return env[k] }
	base := []string{"--logto-endpoint", "http://127.0.0.1:3001", "--m2m-app-id", "app1", "--decision-public-key", key}

	for _, tc := range []struct {
		name       string
		args       []string
		wantErr    []string // nil means success
		wantStatus int
		wantOut    string // stdout
		wantStderr string
	}{
		{"help", []string{"--help"}, nil, 0, "", "ORGAUTHZ_M2M_APP_SECRET (config file key m2m-app-secret)"},
		{"check ok", append([]string{"--check"}, base...), nil, 0, "mgmtproxy: configuration ok\n", ""},
		{"check reports every problem", []string{"--check", "--logto-endpoint", "ftp://x", "--bulk-concurrency", "0"},
			[]string{"--m2m-app-id", "--logto-endpoint", "--bulk-concurrency", "--decision-public-key is required"}, confload.ExitBadConfig, "", ""},
		{"parse and validation problems together", []string{"--check", "--nope", "--upstream-timeout", "soon", "--listen-addr", "127.0.0.1:0"},
			[]string{"flag provided but not defined: -nope", "--upstream-timeout", `--listen-addr "127.0.0.1:0"`, "--m2m-app-id is required", "--logto-endpoint is required"},
			confload.ExitBadConfig, "", "Usage of mgmtproxy:"},
		{"invalid without --check", []string{"--logto-endpoint", "http://logto.example.com"}, []string{"loopback"}, confload.ExitBadConfig, "", ""},
		{"secret is not a flag", append([]string{"--check", "--m2m-app-secret", "x"}, base...), []string{"flag provided but not defined"}, confload.ExitBadConfig, "", ""},
		{"redis password not in the URL", append([]string{"--check", "--revocation-store", "redis://:hunter2@127.0.0.1:6379/0"}, base...),
			[]string{"--redis-password-file or ORGAUTHZ_REDIS_PASSWORD"}, confload.ExitBadConfig, "", ""},
		{"notify needs the webhook secret", append([]string{"--check", "--revocation-notify", "http://127.0.0.1:9192/logto/webhooks", "--decision-log", "/nonexistent/dir/audit"}, base...),
			[]string{"--revocation-notify needs --logto-webhook-secret-file", "--decision-log"}, confload.ExitBadConfig, "", ""},
		{"unknown argument", append([]string{"--check", "extra"}, base...), []string{"unexpected arguments"}, confload.ExitBadConfig, "", ""},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tc.args, getenv, &stdout, &stderr)
		for _, want := range tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: run = %v, want an error containing %q", tc.name, err, want)
			}
		}
		if tc.wantErr == nil && err != nil && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: run = %v, want success", tc.name, err)
		}
		if got := confload.Report(err, &stderr); got != tc.wantStatus {
			t.Errorf("%s: exit status %d, want %d", tc.name, got, tc.wantStatus)
		}
		if stdout.String() != tc.wantOut {
			t.Errorf("%s: stdout %q, want %q", tc.name, stdout.String(), tc.wantOut)
		}
		if !strings.Contains(stderr.String(), tc.wantStderr) {
			t.Errorf("%s: stderr %q lacks %q", tc.name, stderr.String(), tc.wantStderr)
		}
		for _, w := range tc.wantErr { // report printed each problem once
			if n := strings.Count(stderr.String(), w); n != 1 {
				t.Errorf("%s: stderr has %q %d times, want once:\n%s", tc.name, w, n, stderr.String())
			}
		}
		if strings.Contains(stdout.String()+stderr.String(), "from-env-secret") || strings.Contains(stderr.String(), "hunter2") {
			t.Errorf("%s: output shows the secret", tc.name)
		}
	}
	if err := run(context.Background(), []string{"--help"}, getenv, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(--help) = %v, want flag.ErrHelp (exit 0)", err)
	}
}

// TestRunServesUntilCancelled starts the real server on a Unix socket and stops it with the context.
func TestRunServesUntilCancelled(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--listen-addr", "unix:" + sock, "--logto-endpoint", "http://127.0.0.1:1",
			"--m2m-app-id", "app1", "--decision-public-key", publicKeyFile(t)},
			func(k string) string {
				if k == "ORGAUTHZ_M2M_APP_SECRET" {
					return "s"
				}
				return ""
			}, &logs, &logs)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel = %v, want nil", err)
	}
}

func TestRunPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	getenv := func(k string) string {
		if k == "ORGAUTHZ_M2M_APP_SECRET" {
			return "s"
		}
		return ""
	}
	err = run(t.Context(), []string{"--listen-addr", ln.Addr().String(), "--logto-endpoint", "http://127.0.0.1:1",
		"--m2m-app-id", "app1", "--decision-public-key", publicKeyFile(t)}, getenv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("run on a taken port = %v, want an error naming %s", err, ln.Addr())
	}
	if got := confload.Report(err, io.Discard); got != confload.ExitFailure {
		t.Errorf("exit status for a taken port = %d, want %d", got, confload.ExitFailure)
	}
}
