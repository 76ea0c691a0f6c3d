package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"math/big"
	mrand "math/rand/v2"
	"testing"
)

// jwsSig signs digest with key in the JWS form R||S.
func jwsSig(t testing.TB, key *ecdsa.PrivateKey, digest []byte) []byte {
	t.Helper()
	r, s, err := ecdsa.Sign(rand.Reader, key, digest)
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 96)
	r.FillBytes(sig[:48])
	s.FillBytes(sig[48:])
	return sig
}

// reference is crypto/ecdsa's answer for a JWS signature.
func reference(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if len(sig) != 96 {
		return false
	}
	return ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:]))
}

// TestP384AgreesWithCryptoECDSA: the table-based ES384 check gives crypto/ecdsa's answer on valid
// signatures and on every way of getting one wrong: a flipped bit anywhere, another message, another
// key, R and S out of range (0, n, n+1, all ones), S replaced by n−S (ECDSA accepts both), R and S
// swapped, wrong lengths.
func TestP384AgreesWithCryptoECDSA(t *testing.T) {
	n := elliptic.P384().Params().N
	rng := mrand.New(mrand.NewPCG(1, 2))
	var keys []*ecdsa.PrivateKey
	for range 3 {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	fill := func(v *big.Int) []byte { return v.FillBytes(make([]byte, 48)) }
	checks, valid := 0, 0
	for round := range 150 {
		key := keys[round%len(keys)]
		fast := newP384Key(&key.PublicKey)
		if fast.tableOnce() == nil {
			t.Fatal("no table for a valid P-384 key: every check would fall back to crypto/ecdsa")
		}
		msg := make([]byte, 1+rng.IntN(200))
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		digest := sha512.Sum384(msg)
		sig := jwsSig(t, key, digest[:])
		other := sha512.Sum384(append(msg, 0))
		r, s := sig[:48], sig[48:]
		sInt := new(big.Int).SetBytes(s)
		cases := map[string][]byte{
			"valid":      sig,
			"high S":     append(append([]byte{}, r...), fill(new(big.Int).Sub(n, sInt))...),
			"swapped":    append(append([]byte{}, s...), r...),
			"R zero":     append(make([]byte, 48), s...),
			"S zero":     append(append([]byte{}, r...), make([]byte, 48)...),
			"R = n":      append(fill(n), s...),
			"S = n":      append(append([]byte{}, r...), fill(n)...),
			"R = n+1":    append(fill(new(big.Int).Add(n, big.NewInt(1))), s...),
			"S all ones": append(append([]byte{}, r...), bytesOf(0xff, 48)...),
			"short":      sig[:95],
			"long":       append(append([]byte{}, sig...), 0),
			"other key":  jwsSig(t, keys[(round+1)%len(keys)], digest[:]),
		}
		for i := range 8 {
			bad := append([]byte{}, sig...)
			bad[rng.IntN(96)] ^= 1 << rng.IntN(8)
			cases["flipped bit "+string(rune('0'+i))] = bad
		}
		for name, c := range cases {
			for _, d := range [][]byte{digest[:], other[:]} {
				want := reference(&key.PublicKey, d, c)
				if got := fast.verify(d, c); got != want {
					t.Fatalf("round %d, %s: table check = %v, crypto/ecdsa = %v", round, name, got, want)
				}
				checks++
				if want {
					valid++
				}
			}
		}
	}
	// Both must have been exercised: a check that always refused would agree on every invalid case.
	if valid < 300 || checks-valid < 3000 {
		t.Fatalf("%d checks, %d valid: the corpus does not exercise both answers", checks, valid)
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// BenchmarkES384 compares one ES384 verification by crypto/ecdsa with the table-based one (the
// table built once, before timing, as it is per key).
func BenchmarkES384(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	digest := sha512.Sum384([]byte("payload"))
	sig := jwsSig(b, key, digest[:])
	b.Run("crypto-ecdsa", func(b *testing.B) {
		for b.Loop() {
			if !reference(&key.PublicKey, digest[:], sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("table", func(b *testing.B) {
		k := newP384Key(&key.PublicKey)
		k.verify(digest[:], sig)
		for b.Loop() {
			if !k.verify(digest[:], sig) {
				b.Fatal("refused")
			}
		}
	})
}
