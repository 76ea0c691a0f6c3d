package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func verifyReason(t *testing.T, v *Verifier, raw string) string {
	t.Helper()
	_, err := v.Verify(context.Background(), raw)
	return reason(err)
}

func TestNotReadyUntilKeysLoad(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t)
	release := make(chan struct{})
	set := mustJSON(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k1.jwk()}})
	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		w.Write(set)
	})
	v := newVerifier(t, srv.config(), false)
	tok := k1.sign(t, claimsFor(srv.issuer(), nil))

	if v.Ready() {
		t.Fatalf("Ready() = true before the key set was served")
	}
	if got := verifyReason(t, v, tok); got != "not_ready" {
		t.Fatalf("Verify before keys: reason = %q, want not_ready", got)
	}
	if got := verifyReason(t, v, "not a token"); got != ReasonMalformed {
		t.Errorf("Verify(garbage) before keys: reason = %q, want %q", got, ReasonMalformed)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReady(ctx, v); err != nil {
		t.Fatalf("keys never loaded: %v", err)
	}
	if !v.Ready() {
		t.Errorf("Ready() = false after the key set loaded")
	}
	if got := verifyReason(t, v, tok); got != "" {
		t.Errorf("Verify after keys: reason = %q, want success", got)
	}
}

func TestNotReadyRetriesAfterFailure(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t)
	served := make(chan struct{}, 10)
	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
		served <- struct{}{}
	})
	v := newVerifier(t, srv.config(), false)
	<-served // the first fetch failed
	srv.setKeys(t, k1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReady(ctx, v); err != nil {
		t.Fatalf("keys never loaded after the issuer came back: %v", err)
	}
	if got := verifyReason(t, v, k1.sign(t, claimsFor(srv.issuer(), nil))); got != "" {
		t.Errorf("Verify after retry: reason = %q, want success", got)
	}
}

// TestRotation follows Logto's key rotation: a new kid verifies after one refetch, and a removed
// key stops verifying, for a cached token too.
func TestRotation(t *testing.T) {
	k1, k2, k3 := newECKey(t, "k1"), newECKey(t, "k2"), newRSAKey(t, "k3")
	srv := newJWKSServer(t, k1)
	cfg := srv.config()
	cfg.RefreshMinGap = time.Nanosecond // every unknown kid may refetch
	v := newVerifier(t, cfg, true)
	iss := srv.issuer()
	tok1, tok2 := k1.sign(t, claimsFor(iss, nil)), k2.sign(t, claimsFor(iss, nil))

	steps := []struct {
		name       string
		keys       []*signingKey
		token      string
		wantReason string
		wantFetch  int64
	}{
		{"k1 verifies", nil, tok1, "", 0},
		{"k1 from the cache", nil, tok1, "", 0},
		{"k2 not yet published", nil, tok2, ReasonUnknownKey, 1},
		{"k2 published: one refetch", []*signingKey{k1, k2}, tok2, "", 1},
		{"k1 still cached", nil, tok1, "", 0},
		{"k1 removed, seen at an unknown kid's refetch", []*signingKey{k2, k3}, k3.sign(t, claimsFor(iss, nil)), "", 1},
		{"cached k1 token refused", nil, tok1, ReasonUnknownKey, 1},
		{"k2 still verifies from the cache", nil, tok2, "", 0},
	}
	for _, s := range steps {
		if s.keys != nil {
			srv.setKeys(t, s.keys...)
		}
		before := srv.requests.Load()
		if got := verifyReason(t, v, s.token); got != s.wantReason {
			t.Fatalf("%s: reason = %q, want %q", s.name, got, s.wantReason)
		}
		if got := srv.requests.Load() - before; got != s.wantFetch {
			t.Errorf("%s: %d fetches, want %d", s.name, got, s.wantFetch)
		}
	}
	if s := v.Stats(); s.CacheHits != 3 {
		t.Errorf("Stats().CacheHits = %d, want 3", s.CacheHits)
	}
}

func TestTimedRefresh(t *testing.T) {
	k1, k2 := newECKey(t, "k1"), newECKey(t, "k2")
	srv := newJWKSServer(t, k1)
	cfg := srv.config()
	cfg.RefreshInterval = 10 * time.Millisecond
	cfg.RefreshMinGap = time.Hour
	v := newVerifier(t, cfg, true)

	served := make(chan struct{}, 100)
	set := mustJSON(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k2.jwk()}})
	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(set)
		select {
		case served <- struct{}{}:
		default:
		}
	})
	// A second timed fetch starts only after the first one was stored.
	<-served
	<-served
	if got := verifyReason(t, v, k2.sign(t, claimsFor(srv.issuer(), nil))); got != "" {
		t.Errorf("Verify(k2) after the timed refresh: reason = %q, want success", got)
	}
	if got := verifyReason(t, v, k1.sign(t, claimsFor(srv.issuer(), nil))); got != ReasonUnknownKey {
		t.Errorf("Verify(k1) after the timed refresh: reason = %q, want %q", got, ReasonUnknownKey)
	}
}

// TestBadKeySetKeepsKeys serves every kind of broken key set and checks that the last good keys
// keep verifying and that a new key in a refused set is not taken.
func TestBadKeySetKeepsKeys(t *testing.T) {
	k1, k2 := newECKey(t, "k1"), newECKey(t, "k2")
	k2JWK := string(mustJSON(t, k2.jwk()))
	manyKeys := `{"keys":[` + strings.Repeat(`{"kty":"EC"},`, 10_000) + k2JWK + `]}`
	hugeSet := `{"keys":[` + k2JWK + `],"pad":"` + strings.Repeat("x", 10<<20) + `"}`
	release := make(chan struct{})

	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }},
		{"404", http.NotFound},
		{"HTML", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html><body>Bad gateway</body></html>")
		}},
		{"empty keys", body(`{"keys":[]}`)},
		{"no keys member", body(`{}`)},
		{"keys not an array", body(`{"keys":{"kid":"k2"}}`)},
		{"JSON array", body(`[` + k2JWK + `]`)},
		{"only unusable keys", body(`{"keys":[{"kty":"oct","kid":"k2","k":"c2VjcmV0"},{"kty":"EC","kid":"x"}]}`)},
		{"10 000 keys", body(manyKeys)},
		{"10 MB", body(hugeSet)},
		{"redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }},
		{"slow body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"keys":[`))
			w.(http.Flusher).Flush()
			<-release // only the fetch timeout can end this
		}},
		{"slow headers", func(w http.ResponseWriter, _ *http.Request) { <-release }},
		{"connection closed", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
	}

	srv := newJWKSServer(t, k1)
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for handlers
	cfg := srv.config()
	cfg.RefreshMinGap = time.Nanosecond
	cfg.FetchTimeout = 500 * time.Millisecond
	cfg.CacheSize = 0 // every Verify looks its key up
	v := newVerifier(t, cfg, true)
	tok1, tok2 := k1.sign(t, claimsFor(srv.issuer(), nil)), k2.sign(t, claimsFor(srv.issuer(), nil))

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.setHandler(tc.handler)
			before := v.Stats()
			if got := verifyReason(t, v, tok2); got != ReasonUnknownKey {
				t.Errorf("Verify(k2) = %q, want %q: the bad set was taken", got, ReasonUnknownKey)
			}
			after := v.Stats()
			if after.JWKSFetches != before.JWKSFetches+1 || after.JWKSFetchErrors != before.JWKSFetchErrors+1 {
				t.Errorf("fetches, errors = +%d, +%d, want +1, +1", after.JWKSFetches-before.JWKSFetches,
					after.JWKSFetchErrors-before.JWKSFetchErrors)
			}
			if got := verifyReason(t, v, tok1); got != "" {
				t.Errorf("Verify(k1) = %q, want success with the last good keys", got)
			}
		})
	}
	if !v.Ready() {
		t.Errorf("Ready() = false after failed refreshes")
	}
}

func body(s string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, s)
	}
}

// TestUnknownKIDFlood sends 1000 tokens with made-up kids from 50 goroutines: the issuer must see
// one fetch in the window, shared by everyone waiting.
func TestUnknownKIDFlood(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t, k1)
	cfg := srv.config()
	cfg.RefreshMinGap = time.Hour
	v := newVerifier(t, cfg, true)
	before := srv.requests.Load()

	attacker := newECKey(t, "")
	const workers, perWorker = 50, 20
	tokens := make([][]string, workers)
	for w := range tokens {
		for i := range perWorker {
			attacker.kid = fmt.Sprintf("flood-%d-%d", w, i)
			tokens[w] = append(tokens[w], attacker.sign(t, claimsFor(srv.issuer(), nil)))
		}
	}
	var wg sync.WaitGroup
	reasons := make(chan string, workers*perWorker)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for _, tok := range tokens[w] {
				_, err := v.Verify(context.Background(), tok)
				reasons <- reason(err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(reasons)
	for r := range reasons {
		if r != ReasonUnknownKey {
			t.Fatalf("flood token reason = %q, want %q", r, ReasonUnknownKey)
		}
	}
	if got := srv.requests.Load() - before; got != 1 {
		t.Errorf("the issuer saw %d fetches during the flood, want 1", got)
	}
	if got := v.Stats().UnknownKIDRefreshes; got != 1 {
		t.Errorf("Stats().UnknownKIDRefreshes = %d, want 1", got)
	}
	if got := verifyReason(t, v, k1.sign(t, claimsFor(srv.issuer(), nil))); got != "" {
		t.Errorf("Verify(k1) after the flood = %q, want success", got)
	}
}

func TestParseKeySet(t *testing.T) {
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := newRSAKey(t, "r").priv
	jwk := func(key any, kid, alg, use string) string {
		return string(mustJSON(t, jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}))
	}
	tests := []struct {
		name     string
		keys     []string
		wantKids []string
		wantErr  bool
	}{
		{"Logto EC key", []string{jwk(&ec384.PublicKey, "a", "ES384", "sig")}, []string{"a"}, false},
		{"no alg, no use", []string{jwk(&ec384.PublicKey, "a", "", "")}, []string{"a"}, false},
		{"RSA key", []string{jwk(rsaKey.Public(), "r", "RS256", "sig")}, []string{"r"}, false},
		{"malformed keys skipped", []string{`{"kty":"EC","kid":"x","crv":"P-384","x":"!!"}`, `42`, `{"kty":"RSA"}`, jwk(&ec384.PublicKey, "a", "ES384", "sig")}, []string{"a"}, false},
		{"use enc skipped", []string{jwk(&ec384.PublicKey, "e", "", "enc"), jwk(&ec384.PublicKey, "a", "", "sig")}, []string{"a"}, false},
		{"P-256 not allowed", []string{jwk(&ec256.PublicKey, "p", "", "sig")}, nil, true},
		{"alg mismatching the key", []string{jwk(&ec384.PublicKey, "m", "RS256", "sig")}, nil, true},
		{"alg not accepted", []string{jwk(rsaKey.Public(), "m", "PS256", "sig")}, nil, true},
		{"RSA 1024", []string{jwk(&rsa1024.PublicKey, "s", "RS256", "sig")}, nil, true},
		{"symmetric key", []string{`{"kty":"oct","kid":"h","k":"c2VjcmV0","alg":"HS256"}`}, nil, true},
		{"kid missing", []string{jwk(&ec384.PublicKey, "", "ES384", "sig")}, nil, true},
		{"kid with NUL", []string{jwk(&ec384.PublicKey, "a\x00", "ES384", "sig")}, nil, true},
		{"private key published", []string{jwk(ec384, "a", "ES384", "sig")}, []string{"a"}, false},
		{"repeated kid: first wins", []string{jwk(&ec384.PublicKey, "a", "ES384", "sig"), jwk(rsaKey.Public(), "a", "RS256", "sig")}, []string{"a"}, false},
		{"too many keys", slices.Repeat([]string{jwk(&ec384.PublicKey, "a", "ES384", "sig")}, DefaultMaxKeys+1), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"keys":[` + strings.Join(tc.keys, ",") + `]}`
			keys, err := parseKeySet([]byte(doc), testAlgorithms, DefaultMaxKeys)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseKeySet error = %v, want error %v", err, tc.wantErr)
			}
			var kids []string
			for _, k := range keys {
				kids = append(kids, k.kid)
				if _, ok := k.pub.(crypto.Signer); ok {
					t.Errorf("key %q keeps a private key", k.kid)
				}
			}
			if fmt.Sprint(kids) != fmt.Sprint(tc.wantKids) {
				t.Errorf("parseKeySet kids = %q, want %q", kids, tc.wantKids)
			}
		})
	}
	if _, err := parseKeySet([]byte(`{"keys":`), testAlgorithms, DefaultMaxKeys); err == nil {
		t.Errorf("parseKeySet(truncated JSON) succeeded")
	}
}
