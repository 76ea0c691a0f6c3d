package mgmtproxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

// Rotation without downtime: with --decision-public-key naming a directory, a new key added while
// requests flow is accepted alongside the old, a broken file changes nothing, and once the old key is
// removed its decisions are refused decision_unknown_key. No request fails meanwhile.
func TestKeyRotationWhileServing(t *testing.T) {
	var dir string
	e := newEnv(t, func(c *Config) {
		dir = filepath.Dir(c.DecisionPublicKeys[0])
		c.DecisionPublicKeys = []string{dir}
	})
	oldSigner := e.signer
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newSigner := decision.NewSigner(priv, 10*time.Second)
	get := func(s *decision.Signer) (int, string) {
		path := "/api/organizations/" + e.org
		c := adminClaims("GET", path, "GET /api/organizations/{orgId}")
		e.signer = s
		defer func() { e.signer = oldSigner }()
		r := e.do(t, "GET", path, "", e.sign(t, c))
		var body struct{ Code string }
		if r.status != 200 {
			r.json(t, &body)
		}
		return r.status, body.Code
	}
	var mu sync.Mutex // e.signer is swapped by get
	do := func(s *decision.Signer) (int, string) { mu.Lock(); defer mu.Unlock(); return get(s) }

	// Requests with the old key flow throughout the addition.
	stop := make(chan struct{})
	var failures atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if status, code := do(oldSigner); status != 200 {
				failures.Add(1)
				t.Errorf("old key during the addition: %d %s", status, code)
			}
		}
	})
	if status, code := do(newSigner); code != "decision_unknown_key" {
		t.Fatalf("new key before it is added: %d %s, want decision_unknown_key", status, code)
	}
	writePublicKey(t, dir, "next.pub", pub)
	waitFor(t, "the new key to be accepted", func() bool { s, _ := do(newSigner); return s == 200 })
	close(stop)
	wg.Wait()

	// A broken file keeps the last good set.
	os.WriteFile(filepath.Join(dir, "broken.pub"), []byte("not a key"), 0o644)
	waitFor(t, "the broken file to be noticed", func() bool { return strings.Contains(e.logs.String(), "not reloaded") })
	for name, s := range map[string]*decision.Signer{"old": oldSigner, "new": newSigner} {
		if status, code := do(s); status != 200 {
			t.Errorf("%s key with a broken file beside it: %d %s", name, status, code)
		}
	}
	os.Remove(filepath.Join(dir, "broken.pub"))

	// Remove the old key: its decisions are refused, the new key's accepted.
	os.Remove(filepath.Join(dir, "decision.pub"))
	waitFor(t, "the old key to be refused", func() bool { _, code := do(oldSigner); return code == "decision_unknown_key" })
	if status, code := do(newSigner); status != 200 {
		t.Errorf("new key after the old one's removal: %d %s", status, code)
	}
	if !strings.Contains(e.logs.String(), `"kid":"`+oldSigner.KeyID()+`"`) {
		t.Error("no log line names the refused decision's kid")
	}
}

// The M2M secret file is reread when it changes: the next token fetch uses the new secret.
func TestSecretReload(t *testing.T) {
	e := newEnv(t)
	if err := os.WriteFile(e.proxy.cfg.M2MAppSecretFile, []byte("rotated-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new secret", func() bool {
		e.proxy.tokens.mu.Lock()
		defer e.proxy.tokens.mu.Unlock()
		return e.proxy.tokens.conf.ClientSecret == "rotated-secret"
	})
	os.WriteFile(e.proxy.cfg.M2MAppSecretFile, nil, 0o600) // empty: broken, the last good one stays
	waitFor(t, "the empty file to be noticed", func() bool { return strings.Contains(e.logs.String(), "m2m app secret not reloaded") })
	e.proxy.tokens.mu.Lock()
	s := e.proxy.tokens.conf.ClientSecret
	e.proxy.tokens.mu.Unlock()
	if s != "rotated-secret" {
		t.Error("an empty secret file replaced the secret")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
