package token

import (
	"context"
	"fmt"
	"testing"
)

// benchVerifier serves one real-shaped ES384 key and returns a verifier and a token for it.
func benchVerifier(b *testing.B, cacheSize int) (*Verifier, string) {
	k := newECKey(b, "UQn7VW3bYebH3R2lR2UwLK8p-ZBLAPXiBY31MVGSu5s")
	srv := newJWKSServer(b, k)
	cfg := srv.config()
	cfg.CacheSize = cacheSize
	v := newVerifier(b, cfg, true)
	tok := k.sign(b, claimsFor(srv.issuer(), map[string]any{
		"aud": testAPI, "organization_id": "nllrzhufpsd2", "jti": "CWYZ-h6VXmaqG26-JnSWY",
		"sub": "ev66y8ynoxks", "client_id": "ltb4wreigqynsue3rw9ik", "scope": "read:items write:items",
	}))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatalf("Verify: %v", err)
	}
	return v, tok
}

// BenchmarkVerifyCached is the product's hot path: a token seen before.
func BenchmarkVerifyCached(b *testing.B) {
	v, tok := benchVerifier(b, 100_000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	if s := v.Stats(); s.CacheMisses != 1 {
		b.Fatalf("cache misses = %d, want 1", s.CacheMisses)
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	v, tok := benchVerifier(b, 100_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyES384Cold is a full verification: parse, ES384 signature, claims.
func BenchmarkVerifyES384Cold(b *testing.B) {
	v, tok := benchVerifier(b, 0) // no cache
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRejectMalformed is what a flood of garbage costs.
func BenchmarkVerifyRejectMalformed(b *testing.B) {
	v, _ := benchVerifier(b, 100_000)
	ctx := context.Background()
	toks := make([]string, 64)
	for i := range toks {
		toks[i] = fmt.Sprintf("eyJhbGciOiJub25lIn0.eyJzdWIiOiIlZCJ9.%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.Verify(ctx, toks[i%len(toks)]); err == nil {
			b.Fatal("garbage verified")
		}
		i++
	}
}
