package decision

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"
)

// Signer signs decisions with one Ed25519 private key. It is safe for concurrent use.
type Signer struct {
	key    ed25519.PrivateKey
	kid    string
	header string // the encoded protected header, the same for every decision
	ttl    time.Duration

	// Now is the clock; time.Now when nil. Tests set it.
	Now func() time.Time
}

// NewSigner returns a Signer for key whose decisions live ttl (whole seconds, at least one): DefaultTTL
// when ttl ≤ 0, MaxTTL when ttl is longer.
func NewSigner(key ed25519.PrivateKey, ttl time.Duration) *Signer {
	switch {
	case ttl <= 0:
		ttl = DefaultTTL
	case ttl > MaxTTL:
		ttl = MaxTTL
	case ttl < time.Second:
		ttl = time.Second
	}
	kid := KeyID(key.Public().(ed25519.PublicKey))
	h, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{Algorithm, Type, kid}) // cannot fail: three strings
	return &Signer{key: key, kid: kid, header: b64.EncodeToString(h), ttl: ttl.Truncate(time.Second)}
}

// LoadSigner reads a PKCS#8 Ed25519 private key PEM file (what `openssl genpkey -algorithm ed25519`
// writes) and returns a Signer for it.
func LoadSigner(pemPath string, ttl time.Duration) (*Signer, error) {
	key, err := readPrivateKey(pemPath)
	if err != nil {
		return nil, err
	}
	return NewSigner(key, ttl), nil
}

// KeyID returns the "kid" of the Signer's decisions.
func (s *Signer) KeyID() string { return s.kid }

// TTL returns the lifetime of the Signer's decisions.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Sign sets c's IssuedAt and ExpiresAt, and ID when empty (128 random bits), and returns the compact JWS.
func (s *Signer) Sign(c Claims) (string, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now().Unix()
	c.IssuedAt, c.ExpiresAt = t, t+int64(s.ttl/time.Second)
	if c.ID == "" {
		var id [16]byte
		rand.Read(id[:]) // never fails (crypto/rand panics on its own if it cannot read)
		c.ID = b64.EncodeToString(id[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("decision: sign: %w", err)
	}
	buf := make([]byte, 0, len(s.header)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(ed25519.SignatureSize))
	buf = append(buf, s.header...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig := ed25519.Sign(s.key, buf)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	if len(buf) > MaxSize {
		return "", fmt.Errorf("decision: sign: encoded decision is %d bytes, more than %d", len(buf), MaxSize)
	}
	return string(buf), nil
}
