package sidecar

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/revocation"
)

const webhookSecret = "whsec-test-key-0123456789abcdef"

// withWebhooks turns revocation webhooks on with webhookSecret.
func withWebhooks(t testing.TB) harnessOption {
	path := filepath.Join(t.TempDir(), "webhook-key")
	if err := os.WriteFile(path, []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.LogtoWebhookSecretFile = path }
}

// postWebhook sends a Logto-shaped delivery signed with secret and returns the answer's status.
func (h *harness) postWebhook(t testing.TB, secret string, event map[string]any) int {
	t.Helper()
	body, _ := json.Marshal(event)
	return h.postRawWebhook(t, body, signWebhook(secret, body))
}

// postRawWebhook posts body with the signature header sig ("" for none) and returns the status.
func (h *harness) postRawWebhook(t testing.TB, body []byte, sig string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.httpURL+revocation.WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(revocation.SignatureHeader, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// signWebhook is a delivery's logto-signature-sha-256.
func signWebhook(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// mintAt mints the token s describes, issued at iat.
func (h *harness) mintAt(s tokenSpec, iat time.Time) string {
	sub := s.sub
	if sub == "" {
		sub = "u1"
	}
	c := h.logto.Claims(sub, "app1", "urn:logto:organization:"+s.org, s.scopes)
	c["iat"] = iat.Unix()
	return h.remember(h.logto.MintToken(c))
}

// TestRevokedTokenRefusedEverywhere: after Logto says a member was removed, their token issued
// before is 401 token_revoked on gRPC and both HTTP check modes, before the policy runs; their token
// issued after, and another member's, still work.
func TestRevokedTokenRefusedEverywhere(t *testing.T) {
	h := newHarness(t, true, withWebhooks(t))
	now := time.Now()
	old := h.mintAt(tokenSpec{org: "o1", sub: "u1", scopes: "org:read"}, now.Add(-20*time.Second))
	other := h.mintAt(tokenSpec{org: "o1", sub: "u2", scopes: "org:read"}, now.Add(-20*time.Second))
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	if a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", bearer(old), ""))); a.status != 200 {
		t.Fatalf("before the removal: %d %s", a.status, a.body)
	}

	// The change happened 10 s ago (Logto stamps createdAt): tokens issued before it are refused.
	st := h.postWebhook(t, webhookSecret, map[string]any{
		"event": "Organization.Membership.Updated", "createdAt": now.Add(-10 * time.Second).UTC().Format(time.RFC3339Nano),
		"method": "DELETE", "organizationId": "o1", "params": map[string]string{"id": "o1", "userId": "u1"},
	})
	if st != http.StatusNoContent {
		t.Fatalf("webhook answered %d, want 204", st)
	}

	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", bearer(old), "")))
	if a.status != 401 || !strings.Contains(a.body, `"token_revoked"`) || a.headers["www-authenticate"] != `Bearer error="invalid_token"` {
		t.Errorf("gRPC with the old token: %d %q %q, want 401 token_revoked invalid_token", a.status, a.body, a.headers["www-authenticate"])
	}
	for _, target := range []string{"/envoy/api/organizations/o1", "/forward-auth"} {
		hs := bearer(old)
		hs["X-Forwarded-Method"], hs["X-Forwarded-Uri"] = "GET", "/api/organizations/o1"
		r := h.get(t, target, hs)
		if r.StatusCode != 401 || !strings.Contains(r.body, `"token_revoked"`) || r.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s with the old token: %d %q %q", target, r.StatusCode, r.body, r.Header.Get("WWW-Authenticate"))
		}
	}
	fresh := h.mintAt(tokenSpec{org: "o1", sub: "u1", scopes: "org:read"}, now)
	for name, tok := range map[string]string{"a token issued after the change": fresh, "another member's token": other} {
		if a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", bearer(tok), ""))); a.status != 200 {
			t.Errorf("%s: %d %s, want 200", name, a.status, a.body)
		}
	}

	if st := h.postWebhook(t, "another-key", map[string]any{"event": "Organization.Deleted",
		"createdAt": now.UTC().Format(time.RFC3339Nano), "params": map[string]string{"id": "o1"}}); st != http.StatusUnauthorized {
		t.Errorf("mis-signed webhook answered %d, want 401", st)
	}
	if a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", bearer(fresh), ""))); a.status != 200 {
		t.Errorf("a mis-signed webhook revoked a token: %d", a.status)
	}

	ready := h.get(t, "/readyz", nil)
	var rz struct {
		Revocation revocationStatus `json:"revocation"`
	}
	if err := json.Unmarshal([]byte(ready.body), &rz); err != nil || ready.StatusCode != 200 ||
		rz.Revocation.Backend != "memory" || rz.Revocation.Watermarks != 2 || !rz.Revocation.Webhooks {
		t.Errorf("/readyz: %d %s", ready.StatusCode, ready.body)
	}
	metrics := h.get(t, "/metrics", nil).body
	for _, want := range []string{
		`orgauthz_sidecar_webhooks_total{status="204"} 1`,
		`orgauthz_sidecar_webhooks_total{status="401"} 1`,
		`orgauthz_sidecar_revocation_watermarks 2`,
		`orgauthz_sidecar_decisions_total{reason="token_revoked",result="deny",route=""} 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestWebhookHostile: the endpoint any peer may reach refuses what is not one signed delivery, and a
// refused delivery adds no watermark.
func TestWebhookHostile(t *testing.T) {
	h := newHarness(t, true, withWebhooks(t))
	sign := func(body []byte) string { return signWebhook(webhookSecret, body) }
	huge := bytes.Repeat([]byte("a"), 256<<10)
	tests := []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"unsigned", []byte(`{"event":"Organization.Deleted"}`), "", 401},
		{"signature of another body", []byte(`{"event":"Organization.Deleted"}`), sign([]byte(`{}`)), 401},
		{"256 KiB body", huge, sign(huge), 413},
		{"signed garbage", []byte("\xff\x00not json"), sign([]byte("\xff\x00not json")), 400},
		{"signed, stale", []byte(`{"event":"Organization.Deleted","createdAt":"2020-01-01T00:00:00Z","params":{"id":"o1"}}`),
			sign([]byte(`{"event":"Organization.Deleted","createdAt":"2020-01-01T00:00:00Z","params":{"id":"o1"}}`)), 400},
	}
	for _, tt := range tests {
		if got := h.postRawWebhook(t, tt.body, tt.sig); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if r := h.get(t, revocation.WebhookPath, nil); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", r.StatusCode)
	}
	if n := h.srv.revoc.Status().Watermarks; n != 0 {
		t.Errorf("%d watermarks after refused deliveries, want 0", n)
	}
}

// TestWebhooksOffWithoutKey: without --logto-webhook-secret-file nobody can add watermarks over HTTP.
func TestWebhooksOffWithoutKey(t *testing.T) {
	h := newHarness(t, true)
	if st := h.postWebhook(t, webhookSecret, map[string]any{"event": "Organization.Deleted",
		"createdAt": time.Now().UTC().Format(time.RFC3339Nano), "params": map[string]string{"id": "o1"}}); st != http.StatusNotFound {
		t.Errorf("webhook without a key answered %d, want 404", st)
	}
}

// TestRedisUnreachableNotReady: a sidecar whose Redis never answered has not loaded the current set,
// so it is not ready and refuses to decide (503), and /readyz says why.
func TestRedisUnreachableNotReady(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	h := newHarness(t, false, func(c *Config) { c.RevocationStore = "redis://" + addr + "/0" })
	waitFor(t, "keys and policy", func() bool { return h.srv.tokens.Ready() && h.srv.policy.Ready() })
	if h.srv.Ready() {
		t.Fatal("ready without the revocation set")
	}
	tok := h.mint(*org("o1", "org:read"))
	if a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, ""))); a.status != 503 {
		t.Errorf("check while the set is not loaded: %d, want 503", a.status)
	}
	r := h.get(t, "/readyz", nil)
	if r.StatusCode != 503 || !strings.Contains(r.body, `"backend":"redis"`) || !strings.Contains(r.body, "not loaded yet") {
		t.Errorf("/readyz: %d %s", r.StatusCode, r.body)
	}
}

func TestRevocationConfig(t *testing.T) {
	dir := t.TempDir()
	pwFile, empty := filepath.Join(dir, "pw"), filepath.Join(dir, "empty")
	os.WriteFile(pwFile, []byte(" s3cret\n"), 0o600)
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name    string
		c       Config
		wantURL string
		wantErr string
	}{
		{name: "memory", c: Config{RevocationStore: "memory"}, wantURL: "memory"},
		{name: "redis", c: Config{RevocationStore: "redis://127.0.0.1:6379/2"}, wantURL: "redis://127.0.0.1:6379/2"},
		{name: "password file", c: Config{RevocationStore: "redis://127.0.0.1:6379/0", RedisPasswordFile: pwFile}, wantURL: "redis://:s3cret@127.0.0.1:6379/0"},
		{name: "password env", c: Config{RevocationStore: "rediss://u@r.example:6380/0", RedisPassword: "p"}, wantURL: "rediss://u:p@r.example:6380/0"},
		{name: "password in URL", c: Config{RevocationStore: "redis://:leak@127.0.0.1:6379/0"}, wantErr: "not the URL"},
		{name: "both passwords", c: Config{RevocationStore: "redis://127.0.0.1:6379/0", RedisPassword: "p", RedisPasswordFile: pwFile}, wantErr: "not both"},
		{name: "empty password file", c: Config{RevocationStore: "redis://127.0.0.1:6379/0", RedisPasswordFile: empty}, wantErr: "empty"},
		{name: "password for memory", c: Config{RevocationStore: "memory", RedisPassword: "p"}, wantErr: "is memory"},
		{name: "other scheme", c: Config{RevocationStore: "memcached://x"}, wantErr: `"memory" or redis://`},
		{name: "no webhook key file", c: Config{RevocationStore: "memory", LogtoWebhookSecretFile: filepath.Join(dir, "absent")}, wantErr: "--logto-webhook-secret-file"},
		{name: "empty webhook key", c: Config{RevocationStore: "memory", LogtoWebhookSecretFile: empty}, wantErr: "--logto-webhook-secret-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := tt.c.revocationConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "leak") || strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error holds a password: %v", err)
				}
				return
			}
			if err != nil || rc.storeURL != tt.wantURL {
				t.Errorf("got %q, %v; want %q", rc.storeURL, err, tt.wantURL)
			}
		})
	}
}

// revocationBenchCases are the stores the revocation benchmarks compare: none (what a sidecar
// without revocations does: one load and compare) and 30,000 watermarks of every shape that miss
// the token, so each lookup does all three map lookups.
var revocationBenchCases = []struct {
	name string
	n    int
}{{"none", 0}, {"30k-watermarks", 10_000}}

func fillWatermarks(b *testing.B, srv *Server, n int) {
	if n == 0 {
		return
	}
	nb := time.Now().Unix()
	ws := []revocation.Watermark{{Kinds: revocation.AllKinds, NotBefore: 1}} // tenant-wide, older than any token
	for i := range n {
		org, user := fmt.Sprintf("org%07d", i), fmt.Sprintf("user%07d", i)
		ws = append(ws, revocation.Watermark{Org: org, Kinds: revocation.OrgKinds, NotBefore: nb},
			revocation.Watermark{User: user, Kinds: revocation.AllKinds, NotBefore: nb},
			revocation.Watermark{Org: "o1", User: user, Kinds: revocation.OrgKinds, NotBefore: nb})
	}
	if err := srv.revoc.Revoke(context.Background(), ws...); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCheckRevocation is BenchmarkCheck without and with watermarks: compare the two (ns/op
// ratio); nothing is asserted.
func BenchmarkCheckRevocation(b *testing.B) {
	for _, bc := range revocationBenchCases {
		b.Run(bc.name, func(b *testing.B) {
			srv, in := allowedCheck(b)
			fillWatermarks(b, srv, bc.n)
			benchChecks(b, srv, in)
		})
	}
}

// BenchmarkRevokedLookup is the revocation step alone, the whole difference between the two
// cases of BenchmarkCheckRevocation, which a shared machine's noise can hide.
func BenchmarkRevokedLookup(b *testing.B) {
	for _, bc := range revocationBenchCases {
		b.Run(bc.name, func(b *testing.B) {
			srv, _ := allowedCheck(b)
			fillWatermarks(b, srv, bc.n)
			c := benchClaims()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if srv.revoked(c) {
					b.Fatal("revoked")
				}
			}
		})
	}
}
