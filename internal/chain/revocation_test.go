package chain

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMgmtproxyRevocationArgs: the chain gives mgmtproxy the revocation flags its --help lists, and
// none to a build without them.
func TestMgmtproxyRevocationArgs(t *testing.T) {
	dir := t.TempDir()
	script := func(name, help string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\ncat >&2 <<'X'\n"+help+"\nX\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := script("old", "  -listen-addr value\n  -decision-public-key value")
	storeOnly := script("store", "  -revocation-store value\n  -listen-addr value")
	full := script("full", "  -revocation-store value\n  -revocation-notify value\n  -logto-webhook-secret-file value")
	ctx := context.Background()
	tests := []struct {
		name, bin, store string
		want             []string
	}{
		{"older mgmtproxy", old, "memory", nil},
		{"memory without notify", storeOnly, "memory", nil},
		{"memory", full, "memory", []string{"--revocation-store", "memory", "--revocation-notify", "http://h/logto/webhooks", "--logto-webhook-secret-file", "k"}},
		{"redis", storeOnly, "redis://127.0.0.1:1/0", []string{"--revocation-store", "redis://127.0.0.1:1/0"}},
	}
	for _, tt := range tests {
		got, err := mgmtproxyRevocationArgs(ctx, tt.bin, tt.store, "http://h/logto/webhooks", "k")
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestWriteWebhookKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook-key")
	key, err := writeWebhookKey(path)
	if err != nil || len(key) != 32 {
		t.Fatalf("key %q, %v", key, err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != key {
		t.Errorf("file holds %q, want %q", b, key)
	}
	if again, _ := writeWebhookKey(path); again == key {
		t.Error("two keys are the same")
	}
}
