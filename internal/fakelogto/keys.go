package fakelogto

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
)

// Signing algorithms the emulator can rotate to. Logto's default key is ES384; RS256 appears
// only after an operator rotates to an RSA key.
const (
	ES384 = "ES384"
	RS256 = "RS256"
)

var b64 = base64.RawURLEncoding

// signingKey is one key of the tenant's key set.
type signingKey struct {
	alg  string
	kid  string
	priv crypto.Signer

	// verified remembers signatures this key already found valid (SHA-256 of input and
	// signature), at most maxVerified. Logto verifies the bearer of every Management API call;
	// here a P-384 verification (~0.7 ms) ran under the server's lock for each one, which in
	// make bench delayed the load generator that shares the emulator's core.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]struct{}
}

const maxVerified = 4096

func newSigningKey(alg string) (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("fakelogto: unsupported key algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("fakelogto: generate %s key: %w", alg, err)
	}
	// Logto's kid is the RFC 7638 SHA-256 thumbprint of the public key, base64url (43 chars).
	thumb, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("fakelogto: key thumbprint: %w", err)
	}
	return &signingKey{alg: alg, kid: b64.EncodeToString(thumb), priv: priv}, nil
}

// sign returns the raw JWS signature of input for the key's own algorithm.
func (k *signingKey) sign(input []byte) ([]byte, error) {
	switch priv := k.priv.(type) {
	case *ecdsa.PrivateKey:
		sum := sha512.Sum384(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 96)
		r.FillBytes(sig[:48])
		s.FillBytes(sig[48:])
		return sig, nil
	case *rsa.PrivateKey:
		sum := sha256.Sum256(input)
		return rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, sum[:])
	}
	return nil, errors.New("unknown key type")
}

// verify reports whether sig is this key's valid signature of input.
func (k *signingKey) verify(input, sig []byte) bool {
	h := sha256.New()
	h.Write(input)
	h.Write([]byte{0}) // input has no NUL (base64url and '.'), so input and sig cannot shift
	h.Write(sig)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	k.mu.Lock()
	_, ok := k.verified[sum]
	k.mu.Unlock()
	if ok {
		return true
	}
	if !k.verifySignature(input, sig) {
		return false
	}
	k.mu.Lock()
	if k.verified == nil || len(k.verified) >= maxVerified {
		k.verified = make(map[[sha256.Size]byte]struct{})
	}
	k.verified[sum] = struct{}{}
	k.mu.Unlock()
	return true
}

func (k *signingKey) verifySignature(input, sig []byte) bool {
	switch pub := k.priv.Public().(type) {
	case *ecdsa.PublicKey:
		if len(sig) != 96 {
			return false
		}
		sum := sha512.Sum384(input)
		r := new(big.Int).SetBytes(sig[:48])
		s := new(big.Int).SetBytes(sig[48:])
		return ecdsa.Verify(pub, sum[:], r, s)
	case *rsa.PublicKey:
		sum := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
	}
	return false
}

// jwk is one entry of the JWKS, fields in the order Logto writes them.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	Alg string `json:"alg,omitempty"` // Logto publishes it for EC keys only
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	E   string `json:"e,omitempty"`
	N   string `json:"n,omitempty"`
}

func (k *signingKey) jwk() jwk {
	out := jwk{Use: "sig", Kid: k.kid}
	switch pub := k.priv.Public().(type) {
	case *ecdsa.PublicKey:
		b, _ := pub.Bytes() // uncompressed point: 0x04 || X || Y
		out.Kty, out.Alg, out.Crv = "EC", k.alg, "P-384"
		out.X, out.Y = b64.EncodeToString(b[1:49]), b64.EncodeToString(b[49:])
	case *rsa.PublicKey:
		out.Kty = "RSA"
		out.E = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
		out.N = b64.EncodeToString(pub.N.Bytes())
	}
	return out
}

// publicPEM is the PKIX PEM of the public key, the bytes an attacker feeds to HS256 in the
// classic algorithm-confusion attack.
func (k *signingKey) publicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// keySet is the tenant's published keys: current first, then the previous ones (newest first).
type keySet struct {
	keys []*signingKey
}

func (ks *keySet) current() *signingKey { return ks.keys[0] }

func (ks *keySet) byKid(kid string) *signingKey {
	for _, k := range ks.keys {
		if k.kid == kid {
			return k
		}
	}
	return nil
}

// Logto's claim order for access tokens; organization_id leads when present on API tokens.
var claimOrder = []string{"organization_id", "jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}

// encodeOrdered writes m as a JSON object with the keys of order first (in that order) and
// the rest sorted, so tokens have Logto's exact claim layout.
func encodeOrdered(m map[string]any, order []string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	seen := make(map[string]bool, len(m))
	keys := make([]string, 0, len(m))
	for _, k := range order {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
			seen[k] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	keys = append(keys, rest...)
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(m[k])
		if err != nil {
			return nil, fmt.Errorf("fakelogto: encode claim %q: %w", k, err)
		}
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(vb)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// signCompact builds a compact JWS from header and claims. The signature follows the header's
// "alg": "none" gives an empty signature, "HS256" an HMAC keyed with the key's public PEM
// (algorithm confusion); anything else is signed with key's own algorithm whatever the
// header says.
func signCompact(key *signingKey, header, claims map[string]any) (string, error) {
	hb, err := encodeOrdered(header, []string{"alg", "typ", "kid"})
	if err != nil {
		return "", err
	}
	cb, err := encodeOrdered(claims, claimOrder)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	var sig []byte
	switch header["alg"] {
	case "none":
	case "HS256":
		mac := hmac.New(sha256.New, key.publicPEM())
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	default:
		sig, err = key.sign([]byte(input))
		if err != nil {
			return "", fmt.Errorf("fakelogto: sign token: %w", err)
		}
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// verifyError names why a bearer was refused, with the code panva/jose (used by Logto) gives.
type verifyError struct {
	code, name string
}

func (e *verifyError) Error() string { return e.code }

var (
	errJWSInvalid    = &verifyError{"ERR_JWS_INVALID", "JWSInvalid"}
	errNoMatchingKey = &verifyError{"ERR_JWKS_NO_MATCHING_KEY", "JWKSNoMatchingKey"}
	errSigFailed     = &verifyError{"ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "JWSSignatureVerificationFailed"}
	errAlgNotAllowed = &verifyError{"ERR_JOSE_ALG_NOT_ALLOWED", "JOSEAlgNotAllowed"}
	errJWTExpired    = &verifyError{"ERR_JWT_EXPIRED", "JWTExpired"}
	errJWTClaim      = &verifyError{"ERR_JWT_CLAIM_VALIDATION_FAILED", "JWTClaimValidationFailed"}
	errJWTInvalid    = &verifyError{"ERR_JWT_INVALID", "JWTInvalid"}
)

// maxBearer bounds the size of a bearer token the Management API will look at.
const maxBearer = 16 << 10

// verify checks a compact JWS against the key set and returns its claims. It checks only the
// signature; the caller checks the claims.
func (ks *keySet) verify(token string) (map[string]any, error) {
	if len(token) > maxBearer {
		return nil, errJWSInvalid
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errJWSInvalid
	}
	hb, err1 := b64.DecodeString(parts[0])
	cb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, errJWSInvalid
	}
	var header struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hb, &header); err != nil || header.Alg == "" {
		return nil, errJWSInvalid
	}
	if header.Crit != nil {
		return nil, errJWSInvalid
	}
	key := ks.byKid(header.Kid)
	if key == nil {
		return nil, errNoMatchingKey
	}
	if header.Alg != key.alg {
		return nil, errAlgNotAllowed
	}
	if !key.verify([]byte(parts[0]+"."+parts[1]), sig) {
		return nil, errSigFailed
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(cb))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errJWTInvalid
	}
	return claims, nil
}
