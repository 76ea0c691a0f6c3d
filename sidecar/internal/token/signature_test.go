package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// TestSignatureEveryAlgorithm: verifyKey.verify accepts what go-jose, an independent JOSE
// implementation, signs with each supported algorithm, and refuses a changed payload, a changed
// signature, a signature of the wrong length and another key's signature.
func TestSignatureEveryAlgorithm(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKeys := map[string]*ecdsa.PrivateKey{}
	for alg, curve := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
		if ecKeys[alg], err = ecdsa.GenerateKey(curve, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, alg := range SupportedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			var priv crypto.Signer = rsaKey
			if k, ok := ecKeys[alg]; ok {
				priv = k
			}
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: priv}, nil)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := signer.Sign([]byte(`{"sub":"u1"}`))
			if err != nil {
				t.Fatal(err)
			}
			compact, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			i := strings.LastIndexByte(compact, '.')
			input := compact[:i]
			sig, err := decodePart(compact[i+1:])
			if err != nil {
				t.Fatal(err)
			}
			k := &verifyKey{kid: "k", pub: priv.Public()}
			if !k.allows(alg) || !k.verify(alg, input, sig) {
				t.Fatalf("verify(%s) of go-jose's signature = false", alg)
			}
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)/2] ^= 1
			for name, ok := range map[string]bool{
				"changed payload":   k.verify(alg, input+"A", sig),
				"changed signature": k.verify(alg, input, flipped),
				"short signature":   k.verify(alg, input, sig[:len(sig)-1]),
				"long signature":    k.verify(alg, input, append(sig, 0)),
				"empty signature":   k.verify(alg, input, nil),
				"another key":       (&verifyKey{pub: &other.PublicKey}).verify(alg, input, sig),
			} {
				if ok {
					t.Errorf("%s: verify = true", name)
				}
			}
		})
	}
	if (&verifyKey{pub: &rsaKey.PublicKey}).verify("HS256", "a.b", []byte("x")) {
		t.Error("verify(HS256) = true")
	}
}

// TestKeySetServesGoOIDC: the key set is still an oidc.KeySet that go-oidc's own verifier can use,
// and it refuses there what it refuses in Verify.
func TestKeySetServesGoOIDC(t *testing.T) {
	k := newECKey(t, "k1")
	srv := newJWKSServer(t, k)
	v := newVerifier(t, srv.config(), true)
	ov := oidc.NewVerifier(srv.issuer(), v.issuers[srv.issuer()].keys, &oidc.Config{
		SkipClientIDCheck: true, SkipExpiryCheck: true, SupportedSigningAlgs: testAlgorithms,
	})
	tok := k.sign(t, claimsFor(srv.issuer(), map[string]any{"aud": testAPI}))
	if _, err := ov.Verify(t.Context(), tok); err != nil {
		t.Fatalf("go-oidc Verify = %v", err)
	}
	if _, err := ov.Verify(t.Context(), tok[:len(tok)-2]+"AA"); err == nil {
		t.Error("go-oidc Verify of a changed signature = nil error")
	}
}
