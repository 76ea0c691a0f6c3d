package token

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

var reasons = []string{
	ReasonMalformed, ReasonTooLarge, ReasonAlgorithm, ReasonType, ReasonUnknownKey, ReasonSignature,
	ReasonIssuer, ReasonAudience, ReasonClaims, ReasonExpired, ReasonNotYetValid, ReasonIssuedInFuture,
}

// FuzzVerify feeds arbitrary strings, seeded with near-valid tokens, to Verify: it must never panic,
// never accept anything but the one valid token, and refuse with a known reason that does not echo
// the input.
func FuzzVerify(f *testing.F) {
	k := newECKey(f, "k1")
	srv := newJWKSServer(f, k)
	cfg := srv.config()
	cfg.RefreshMinGap = 1 << 62 // one unknown-kid fetch at most, whatever the fuzzer sends
	v := newVerifier(f, cfg, true)
	good := k.sign(f, claimsFor(srv.issuer(), nil))
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(k.signJSON(f, []byte(`{"alg":"ES384","typ":"at+jwt","kid":"k1"}`), []byte(`{"a":[[[{"b":1e999}]]]}`)))
	f.Add(k.signJSON(f, []byte(`{"alg":"ES384","typ":"at+jwt","kid":"k1","kid":"k1"}`), []byte(`{}`)))
	f.Add("")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(context.Background(), raw)
		if err == nil {
			if raw != good {
				t.Fatalf("Verify accepted a token other than the valid one: kind %s", c.Kind)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !slices.Contains(reasons, e.Reason) {
			t.Fatalf("Verify error = %v, want an *Error with a known reason", err)
		}
		if len(raw) > 16 && strings.Contains(err.Error(), raw) {
			t.Fatalf("Verify error echoes the input")
		}
	})
}
