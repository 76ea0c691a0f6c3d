package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"math/big"
	"sync"

	"filippo.io/nistec"
)

// ES384 verification with precomputed tables.
//
// Logto signs every access token with ES384, and a token not yet in the cache costs one ECDSA
// verification: with crypto/ecdsa that is most of a cold check, mostly the constant-time u2·Q for
// the issuer's key. Verification handles only public values (the token, its signature, the key), so
// it need not run in constant time: precomputing j·16^i·P for the key and for the generator once
// (96×15 points, about 300 KB a key) turns u1·G + u2·Q into at most 192 point additions with direct
// table lookups. The point arithmetic is Go's own (filippo.io/nistec is crypto/internal/nistec,
// exported); crypto/ecdsa stays the reference, and the tests hold the two equal on valid, corrupted
// and edge-case signatures.

// p384Table holds j·16^i·P for i < 96 and 1 ≤ j ≤ 15 (at [i][j-1]).
type p384Table [96][15]*nistec.P384Point

func newP384Table(p *nistec.P384Point) *p384Table {
	t := new(p384Table)
	base := nistec.NewP384Point().Set(p)
	for i := range t {
		t[i][0] = nistec.NewP384Point().Set(base)
		for j := 1; j < 15; j++ {
			t[i][j] = nistec.NewP384Point().Add(t[i][j-1], base)
		}
		base.Add(t[i][14], base) // 16·base
	}
	return t
}

// addMul adds k·P to acc, for k a 48-byte big-endian scalar and t P's table.
func (t *p384Table) addMul(acc *nistec.P384Point, k *[48]byte) {
	for i := range t {
		b := k[47-i/2]
		if i%2 == 1 {
			b >>= 4
		}
		if b &= 0xf; b != 0 {
			acc.Add(acc, t[i][b-1])
		}
	}
}

var (
	p384Order     = elliptic.P384().Params().N
	p384Generator = sync.OnceValue(func() *p384Table { return newP384Table(nistec.NewP384Point().SetGenerator()) })
)

// p384Key is a P-384 public key whose table is built on its first verification.
type p384Key struct {
	pub   *ecdsa.PublicKey
	once  sync.Once
	table *p384Table // nil if the key did not convert (never for a key crypto/ecdsa accepts)
}

func newP384Key(pub *ecdsa.PublicKey) *p384Key {
	return &p384Key{pub: pub}
}

func (k *p384Key) tableOnce() *p384Table {
	k.once.Do(func() {
		e, err := k.pub.ECDH()
		if err != nil {
			return
		}
		p, err := nistec.NewP384Point().SetBytes(e.Bytes()) // checks the point is on the curve
		if err != nil {
			return
		}
		k.table = newP384Table(p)
	})
	return k.table
}

// verify reports whether sig, the JWS form R||S (RFC 7518 3.4), is k's ECDSA signature of digest
// (SHA-384, so exactly the order's 384 bits: no truncation).
func (k *p384Key) verify(digest, sig []byte) bool {
	if len(sig) != 96 || len(digest) != 48 {
		return false
	}
	t := k.tableOnce()
	if t == nil {
		return ecdsa.Verify(k.pub, digest, new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:]))
	}
	n := p384Order
	r, s := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
		return false
	}
	w := new(big.Int).ModInverse(s, n) // n is prime and 0 < s < n: always invertible
	u1 := new(big.Int).SetBytes(digest)
	u1.Mul(u1, w).Mod(u1, n)
	u2 := w.Mul(r, w).Mod(w, n)
	var b1, b2 [48]byte
	u1.FillBytes(b1[:])
	u2.FillBytes(b2[:])
	acc := nistec.NewP384Point() // the point at infinity
	p384Generator().addMul(acc, &b1)
	t.addMul(acc, &b2)
	x, err := acc.BytesX() // an error for the point at infinity
	if err != nil {
		return false
	}
	v := new(big.Int).SetBytes(x)
	return v.Mod(v, n).Cmp(r) == 0
}
