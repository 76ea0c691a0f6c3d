package token_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// FuzzJWKS serves arbitrary key set documents, seeded with the tenant's real JWKS and hostile
// variants, to a fresh Verifier through its exported API. Whatever the document, loading it never
// panics nor hangs; a token signed by a key that no served document ever contained (the
// attacker's, with the tenant's kid) never verifies; and the tenant's own token verifies only when
// the document still carries the tenant's public key.
func FuzzJWKS(f *testing.F) {
	// The key set is served from memory, not a socket: the fuzzer runs thousands of loads a
	// second, and minimising an input re-runs it many times.
	var body atomic.Pointer[[]byte]
	client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: http.StatusOK, Request: r,
			Header: http.Header{"Content-Type": {"application/jwk-set+json"}},
			Body:   io.NopCloser(bytes.NewReader(*body.Load())),
		}, nil
	})}
	const base = "https://tenant.logto.test"

	// The tenant and an attacker emulator both claim the same issuer; only the tenant's key is
	// ever served.
	tenant := newEmulator(f, base)
	attacker := newEmulator(f, base)
	aud := "urn:logto:organization:" + fakelogto.DemoAcmeID
	good := tenant.SignToken(nil, tenant.Claims(fakelogto.DemoAliceID, fakelogto.DemoTrafficAppID, aud, "org:read"))
	forged := attacker.SignToken(map[string]any{"kid": tenant.KeyIDs()[0]},
		attacker.Claims(fakelogto.DemoAliceID, fakelogto.DemoTrafficAppID, aud, "org:read"))
	real := jwksOf(f, tenant)
	x := between(real, `"x":"`, `"`)
	if x == "" {
		f.Fatalf("no x coordinate in the tenant's JWKS %s", real)
	}

	f.Add(real)
	f.Add(strings.Replace(real, `"keys":[`, `"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"`+tenant.KeyIDs()[0]+`","alg":"HS256"},`, 1))
	f.Add(strings.Replace(real, `"use":"sig"`, `"use":"enc"`, 1))
	f.Add(strings.Replace(real, `"ES384"`, `"none"`, 1))
	f.Add(strings.Replace(real, `"P-384"`, `"P-256"`, 1))
	f.Add(`{"keys":[]}`)
	f.Add(`{"keys":{}}`)
	f.Add(`<html>`)
	f.Add(`{"keys":[` + strings.Repeat(`{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"k"},`, 3) + `null]}`)
	f.Add(`{"keys":[{"kty":"EC","crv":"P-384","x":"` + x + `","y":"AA","kid":"` + tenant.KeyIDs()[0] + `"}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		b := []byte(doc)
		body.Store(&b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		v, err := token.New(ctx, token.Config{
			Issuers:         []string{tenant.Issuer()},
			Algorithms:      []string{"ES384", "RS256"},
			RefreshInterval: time.Hour,
			RefreshMinGap:   time.Hour, // the initial fetch only: at most one request per exec
			FetchTimeout:    5 * time.Second,
			HTTPClient:      client,
		})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !v.Ready() && v.Stats().JWKSFetchErrors == 0; time.Sleep(20 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatal("key set load neither succeeded nor failed in 10 s")
			}
		}
		if _, err := v.Verify(ctx, forged); err == nil {
			t.Fatal("a token signed by the attacker's key verified")
		}
		if _, err := v.Verify(ctx, good); err == nil && !strings.Contains(doc, x) {
			t.Fatal("the tenant's token verified with a key set that lacks the tenant's key")
		}
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func newEmulator(f *testing.F, publicURL string) *fakelogto.Server {
	s, err := fakelogto.New(fakelogto.Config{PublicURL: publicURL})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() }) // never started: only its handler and signing keys are used
	return s
}

// jwksOf reads the emulator's JWKS from its handler: its advertised URL is the fuzz server's.
func jwksOf(f *testing.F, s *fakelogto.Server) string {
	f.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oidc/jwks", nil))
	if rec.Code != http.StatusOK {
		f.Fatalf("GET /oidc/jwks = %d", rec.Code)
	}
	return strings.TrimSpace(rec.Body.String())
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}
