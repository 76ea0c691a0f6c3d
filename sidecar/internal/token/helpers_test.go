package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testNow is the clock of tests with their own keys.
var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

const (
	testAPI   = "https://api.example.test"
	testAdmin = "https://admin.example.test"
)

// signingKey is a test issuer key that signs compact JWS by hand, so that tests control every
// byte of the header and payload.
type signingKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

func newECKey(t testing.TB, kid string) *signingKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatalf("generate EC key: %v", err)
	}
	return &signingKey{kid: kid, alg: "ES384", priv: priv}
}

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

// newRSAKey returns an RS256 key; the RSA key itself is generated once per test binary.
func newRSAKey(t testing.TB, kid string) *signingKey {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return &signingKey{kid: kid, alg: "RS256", priv: rsaPriv}
}

// jwk is the public key as an issuer publishes it.
func (k *signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// header is the header Logto sends.
func (k *signingKey) header() map[string]any {
	return map[string]any{"alg": k.alg, "typ": "at+jwt", "kid": k.kid}
}

// sign signs claims under Logto's header.
func (k *signingKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return k.signJSON(t, mustJSON(t, k.header()), mustJSON(t, claims))
}

// signJSON signs the exact header and payload bytes given, with k's algorithm.
func (k *signingKey) signJSON(t testing.TB, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	return input + "." + b64(k.signature(t, k.alg, []byte(input)))
}

func (k *signingKey) signature(t testing.TB, alg string, input []byte) []byte {
	t.Helper()
	switch alg {
	case "ES384":
		d := sha512.Sum384(input)
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), d[:])
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		sig := make([]byte, 96)
		r.FillBytes(sig[:48])
		s.FillBytes(sig[48:])
		return sig
	case "RS256":
		d := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return sig
	}
	t.Fatalf("signature: unsupported alg %s", alg)
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// claimsFor returns a valid organization token's claims for iss at testNow, with edits applied
// (a nil value deletes the claim).
func claimsFor(iss string, edits map[string]any) map[string]any {
	c := map[string]any{
		"jti":       "jti-1",
		"sub":       "user1",
		"client_id": "app1",
		"iss":       iss,
		"aud":       "urn:logto:organization:org1",
		"iat":       testNow.Unix() - 60,
		"exp":       testNow.Unix() + 3600,
		"scope":     "read:data write:data",
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// jwksServer serves a key set that tests swap, and counts requests.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	handler  http.HandlerFunc
}

func newJWKSServer(t testing.TB, keys ...*signingKey) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		h := s.handler
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setHandler(h http.HandlerFunc) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

func (s *jwksServer) setBody(contentType string, body []byte) {
	s.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write(body)
	})
}

func (s *jwksServer) setKeys(t testing.TB, keys ...*signingKey) {
	t.Helper()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	s.setBody("application/jwk-set+json", mustJSON(t, set))
}

func (s *jwksServer) issuer() string { return s.URL + "/oidc" }

// testConfig is a Config for the server's issuer at testNow.
func (s *jwksServer) config() Config {
	return Config{
		Issuers:       []string{s.issuer()},
		APIResource:   testAPI,
		AdminResource: testAdmin,
		Now:           func() time.Time { return testNow },
	}.withSettings()
}

// testAlgorithms are Logto's, sidecar's default.
var testAlgorithms = []string{"ES384", "RS256"}

// withSettings fills the settings sidecar.Default gives the product (algorithms, skew, cache,
// refresh) where c leaves them zero.
func (c Config) withSettings() Config {
	if c.Algorithms == nil {
		c.Algorithms = testAlgorithms
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 60 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = 100_000
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 5 * time.Minute
	}
	return c
}

// newVerifier starts a Verifier that lives as long as the test and, when wait is set, waits for
// its keys.
func newVerifier(t testing.TB, cfg Config, wait bool) *Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if wait {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := waitReady(wctx, v); err != nil {
			t.Fatalf("keys never loaded: %v", err)
		}
	}
	return v
}

// waitReady blocks until every issuer's keys are loaded or ctx ends.
func waitReady(ctx context.Context, v *Verifier) error {
	for _, is := range v.issuers {
		select {
		case <-is.keys.loaded:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// reason returns err's Reason, "not_ready" for ErrNotReady, "" for nil, or the error text.
func reason(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Reason
	case errors.Is(err, ErrNotReady):
		return "not_ready"
	}
	return err.Error()
}
