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
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		name    string
		args    []string
		wantErr string // "" means success
		wantOut string
	}{
		{"help", []string{"--help"}, flag.ErrHelp.Error(), "--m2m-app-secret-file"},
		{"check ok", append([]string{"--check"}, base...), "", "configuration ok"},
		{"check reports every problem", []string{"--check", "--logto-endpoint", "ftp://x", "--bulk-concurrency", "0"}, "--m2m-app-id", ""},
		{"secret is not a flag", append([]string{"--check", "--m2m-app-secret", "x"}, base...), "flag provided but not defined", ""},
		{"unknown argument", append([]string{"--check", "extra"}, base...), "unexpected arguments", ""},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, getenv, &out)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: run = %v, want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: run = %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
		if tc.wantOut != "" && !strings.Contains(out.String(), tc.wantOut) {
			t.Errorf("%s: output %q lacks %q", tc.name, out.String(), tc.wantOut)
		}
		if strings.Contains(out.String(), "from-env-secret") {
			t.Errorf("%s: output shows the secret", tc.name)
		}
	}
	if err := run(context.Background(), []string{"--help"}, getenv, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
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
			}, &logs)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel = %v, want nil", err)
	}
}
