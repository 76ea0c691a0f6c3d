package decision

import (
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultReplayEntries bounds the replay cache of a Verifier made by NewVerifier: at the 30 s maximum
// lifetime it remembers every decision of a steady ~30 000 requests per second.
const DefaultReplayEntries = 1 << 20

// Verifier checks decisions against a set of public keys (several while keys rotate) and remembers every
// accepted decision ID until it expires, so each is accepted once. It is safe for concurrent use.
type Verifier struct {
	keys map[string]ed25519.PublicKey // by kid

	// Now is the clock; time.Now when nil. Tests set it.
	Now func() time.Time
	// MaxReplayEntries bounds the replay cache. When it is full of unexpired IDs, Verify rejects new
	// decisions (ReasonReplayFull) rather than forget one: fail closed.
	MaxReplayEntries int

	// Started is when the Verifier began. Its replay cache lives in memory, so a restarted process
	// would accept decisions already used before: Verify refuses (ReasonStale) every decision issued
	// more than Skew before Started. NewVerifier sets it to the current time.
	Started time.Time

	mu   sync.Mutex
	seen map[string]int64 // jti → exp
	exps expiryHeap
}

// maxUnix is 9999-12-31T23:59:59Z, the bound on iat and exp (as on Logto tokens): checked before any
// arithmetic, so none of it can overflow.
const maxUnix = 253402300799

// NewVerifier returns a Verifier that accepts decisions signed by any of keys.
func NewVerifier(keys []ed25519.PublicKey) *Verifier {
	v := &Verifier{
		keys:             make(map[string]ed25519.PublicKey, len(keys)),
		MaxReplayEntries: DefaultReplayEntries,
		Started:          time.Now(),
		seen:             make(map[string]int64),
	}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	return v
}

// LoadVerifier reads PKIX Ed25519 public key PEM files (what `openssl pkey -pubout` writes) and returns
// a Verifier that accepts decisions signed by any of them.
func LoadVerifier(pemPaths ...string) (*Verifier, error) {
	if len(pemPaths) == 0 {
		return nil, errors.New("decision: no public key files")
	}
	var (
		keys []ed25519.PublicKey
		errs []error
	)
	for _, p := range pemPaths {
		k, err := readPublicKey(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewVerifier(keys), nil
}

// KeyIDs returns the kids the Verifier accepts, in no particular order.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	return ids
}

// Verify checks that token is a decision signed by one of the Verifier's keys, current within Skew, for
// exactly this method and canonical path, and not seen before; it then records its ID. Every rejection
// is an *Error whose Reason says why, and names the kid once the header is read.
func (v *Verifier) Verify(token, method, path string) (*Claims, error) {
	if token == "" {
		return nil, fail(ReasonMissing, "")
	}
	if len(token) > MaxSize {
		return nil, fail(ReasonMalformed, fmt.Sprintf("longer than %d bytes", MaxSize))
	}
	h64, rest, ok1 := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return nil, fail(ReasonMalformed, "want three dot-separated parts")
	}
	hdr, err := b64.DecodeString(h64)
	if err != nil {
		return nil, fail(ReasonMalformed, "header is not base64url")
	}
	var h header
	if err := h.decode(hdr); err != nil {
		if errors.Is(err, errAlgorithm) {
			return nil, fail(ReasonAlgorithm, err.Error())
		}
		return nil, fail(ReasonMalformed, "header: "+err.Error())
	}
	kid := h.kid
	fail := func(r Reason, detail string) error { return &Error{Reason: r, Detail: detail, KeyID: kid} }
	key, ok := v.keys[kid]
	if !ok {
		return nil, fail(ReasonUnknownKey, "")
	}
	sig, err := b64.DecodeString(s64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fail(ReasonBadSignature, "signature is not 64 bytes of base64url")
	}
	if !ed25519.Verify(key, []byte(token[:len(h64)+1+len(p64)]), sig) {
		return nil, fail(ReasonBadSignature, "")
	}
	payload, err := b64.DecodeString(p64)
	if err != nil {
		return nil, fail(ReasonMalformed, "payload is not base64url")
	}
	c, err := decodeClaims(payload)
	if err != nil {
		return nil, fail(ReasonMalformed, "claims: "+err.Error())
	}

	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t, start := now().Unix(), v.Started.Unix()
	const skew, maxTTL = int64(Skew / time.Second), int64(MaxTTL / time.Second)
	// iat and exp are bounded first: every sum and difference below stays far from overflow.
	switch {
	case c.IssuedAt < 0 || c.IssuedAt > maxUnix || c.ExpiresAt < 0 || c.ExpiresAt > maxUnix:
		return nil, fail(ReasonMalformed, "iat or exp outside 1970 to 9999")
	case c.ExpiresAt <= c.IssuedAt:
		return nil, fail(ReasonMalformed, "exp is not after iat")
	case c.ExpiresAt-c.IssuedAt > maxTTL:
		return nil, fail(ReasonTTLTooLong, fmt.Sprintf("lifetime %d s exceeds %d s", c.ExpiresAt-c.IssuedAt, maxTTL))
	case t >= c.ExpiresAt+skew:
		return nil, fail(ReasonExpired, "")
	case c.IssuedAt > t+skew:
		return nil, fail(ReasonNotYetValid, "")
	case c.IssuedAt < start-skew:
		return nil, fail(ReasonStale, "issued before this process started")
	case c.Method != method:
		return nil, fail(ReasonMethodMismatch, "")
	case c.Path != path:
		return nil, fail(ReasonPathMismatch, "")
	}
	if err := v.remember(c.ID, c.ExpiresAt+skew, t); err != nil {
		return nil, &Error{Reason: ReasonOf(err), KeyID: kid}
	}
	return c, nil
}

// remember records id until the Unix second until, or says it was seen already.
func (v *Verifier) remember(id string, until, now int64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for len(v.exps) > 0 && v.exps[0].until <= now {
		delete(v.seen, v.exps[0].id)
		heap.Pop(&v.exps)
	}
	if _, dup := v.seen[id]; dup {
		return fail(ReasonReplayed, "")
	}
	if len(v.seen) >= v.MaxReplayEntries {
		return fail(ReasonReplayFull, "")
	}
	v.seen[id] = until
	heap.Push(&v.exps, expiry{id: id, until: until})
	return nil
}

type expiry struct {
	id    string
	until int64
}

// expiryHeap is a min-heap of replay cache entries by expiry, so expired ones leave in O(log n).
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type header struct{ alg, typ, kid string }

var errAlgorithm = errors.New("alg is not " + Algorithm)

// decode parses a header that has exactly the members alg, typ and kid, all strings.
func (h *header) decode(data []byte) error {
	var has [3]bool
	err := walkObject(data, func(key string, val json.Token) error {
		s, ok := val.(string)
		if !ok {
			return fmt.Errorf("%q is not a string", key)
		}
		switch key {
		case "alg":
			h.alg, has[0] = s, true
		case "typ":
			h.typ, has[1] = s, true
		case "kid":
			h.kid, has[2] = s, true
		default: // crit, jku, jwk, x5u, … are never honoured, so never accepted
			return fmt.Errorf("unexpected member %q", key)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case !has[0] || !has[1] || !has[2]:
		return errors.New("want alg, typ and kid")
	case h.alg != Algorithm:
		return errAlgorithm
	case h.typ != Type:
		return fmt.Errorf("typ is not %s", Type)
	}
	return nil
}

// validBodyHash reports whether h is a SHA-256 in strict base64url without padding: 43 characters.
func validBodyHash(h string) bool {
	if len(h) != b64.EncodedLen(sha256.Size) {
		return false
	}
	sum, err := b64.DecodeString(h)
	return err == nil && len(sum) == sha256.Size
}

// decodeClaims parses a flat claims object with exactly the members of Claims (org and b optional).
func decodeClaims(data []byte) (*Claims, error) {
	var (
		c    Claims
		seen = map[string]bool{}
	)
	err := walkObject(data, func(key string, val json.Token) error {
		var dst *string
		switch key {
		case "m":
			dst = &c.Method
		case "p":
			dst = &c.Path
		case "r":
			dst = &c.Route
		case "k":
			dst = &c.Kind
		case "org":
			dst = &c.Org
		case "sub":
			dst = &c.Subject
		case "jti":
			dst = &c.ID
		case "b":
			h, ok := val.(string)
			if !ok || !validBodyHash(h) {
				return errors.New(`"b" is not a base64url SHA-256`)
			}
			c.Body = h
		case "app":
			b, ok := val.(bool)
			if !ok {
				return fmt.Errorf("%q is not a boolean", key)
			}
			c.App = b
		case "iat", "exp":
			n, ok := val.(json.Number)
			if !ok {
				return fmt.Errorf("%q is not a number", key)
			}
			i, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not an integer", key)
			}
			if key == "iat" {
				c.IssuedAt = i
			} else {
				c.ExpiresAt = i
			}
		default:
			return fmt.Errorf("unexpected member %q", key)
		}
		if dst != nil {
			s, ok := val.(string)
			if !ok {
				return fmt.Errorf("%q is not a string", key)
			}
			*dst = s
		}
		seen[key] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, k := range [...]string{"m", "p", "r", "k", "app", "sub", "jti", "iat", "exp"} {
		if !seen[k] {
			return nil, fmt.Errorf("missing %q", k)
		}
	}
	if c.ID == "" {
		return nil, errors.New("empty jti")
	}
	return &c, nil
}
