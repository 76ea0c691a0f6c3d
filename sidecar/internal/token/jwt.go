package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Reasons a token is refused; each is a 401 body code and a metric label.
const (
	ReasonMalformed      = "malformed_token"
	ReasonTooLarge       = "token_too_large"
	ReasonAlgorithm      = "unsupported_algorithm"
	ReasonType           = "invalid_type"
	ReasonUnknownKey     = "unknown_key"
	ReasonSignature      = "invalid_signature"
	ReasonIssuer         = "invalid_issuer"
	ReasonAudience       = "invalid_audience"
	ReasonClaims         = "invalid_claims"
	ReasonExpired        = "token_expired"
	ReasonNotYetValid    = "token_not_yet_valid"
	ReasonIssuedInFuture = "token_issued_in_future"
)

const (
	maxKeyIDBytes         = 256 // Logto's kids are 43-byte thumbprints
	maxJSONDepth          = 16
	orgAudiencePrefix     = "urn:logto:organization:"
	maxOrganizationIDSize = 32
)

func fail(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// header is the JOSE header of a compact JWS, checked before any key is looked up.
type header struct {
	Alg string
	Kid string
}

// parsed is a structurally valid compact JWS whose header passed the checks; its payload is not
// yet verified.
type parsed struct {
	header
	payload      map[string]any
	payloadBytes []byte
	signingInput string // the first two parts and the dot between them: what was signed
	signature    []byte
}

// rejectedHeaders are never honoured: a key or key location named by the token itself is the
// attacker's choice (RFC 8725 3.10), and no extension this verifier knows needs crit.
var rejectedHeaders = []string{"jku", "jwk", "x5u", "x5c", "crit", "enc", "zip", "b64"}

// parse checks the token's shape (three unpadded base64url parts, canonical encoding), decodes the
// header and the payload as strict JSON objects and checks the header against the accepted
// algorithms. It never verifies the signature.
func parse(raw string, algs []string) (*parsed, error) {
	if len(raw) > MaxTokenBytes {
		return nil, fail(ReasonTooLarge, "token is %d bytes, over %d", len(raw), MaxTokenBytes)
	}
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return nil, fail(ReasonMalformed, "not a compact JWS of three parts")
	}
	hb, err := decodePart(h64)
	if err != nil {
		return nil, fail(ReasonMalformed, "header: %w", err)
	}
	pb, err := decodePart(p64)
	if err != nil {
		return nil, fail(ReasonMalformed, "payload: %w", err)
	}
	sig, err := decodePart(s64)
	if err != nil {
		return nil, fail(ReasonMalformed, "signature: %w", err)
	}
	hm, err := decodeObject(hb)
	if err != nil {
		return nil, fail(ReasonMalformed, "header: %w", err)
	}
	h, err := checkHeader(hm, algs)
	if err != nil {
		return nil, err
	}
	pm, err := decodeObject(pb)
	if err != nil {
		return nil, fail(ReasonMalformed, "payload: %w", err)
	}
	return &parsed{header: h, payload: pm, payloadBytes: pb, signingInput: raw[:len(h64)+1+len(p64)], signature: sig}, nil
}

// decodePart decodes one non-empty part in strict unpadded base64url: no padding, no whitespace,
// no non-zero trailing bits, so each token has exactly one spelling.
func decodePart(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty part")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not canonical unpadded base64url")
	}
	return b, nil
}

func checkHeader(h map[string]any, algs []string) (header, error) {
	for _, name := range rejectedHeaders {
		if _, ok := h[name]; ok {
			return header{}, fail(ReasonMalformed, "header parameter %q is not accepted", name)
		}
	}
	alg, ok := h["alg"].(string)
	if !ok {
		return header{}, fail(ReasonAlgorithm, "alg missing or not a string")
	}
	if !slices.Contains(algs, alg) {
		return header{}, fail(ReasonAlgorithm, "alg %.20q not accepted", alg)
	}
	typ, ok := h["typ"].(string)
	if !ok || !(strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")) {
		return header{}, fail(ReasonType, "typ is not at+jwt")
	}
	if _, ok := h["cty"]; ok {
		return header{}, fail(ReasonMalformed, "cty present: nested tokens are not accepted")
	}
	kidv, ok := h["kid"]
	if !ok {
		return header{}, fail(ReasonUnknownKey, "kid missing")
	}
	kid, ok := kidv.(string)
	if !ok || kid == "" || len(kid) > maxKeyIDBytes || !printableASCII(kid) {
		return header{}, fail(ReasonMalformed, "kid is not a short printable string")
	}
	return header{Alg: alg, Kid: kid}, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeObject decodes b as one JSON object in valid UTF-8 with no duplicate keys at any depth and
// nothing after it. Numbers stay json.Number.
func decodeObject(b []byte) (map[string]any, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// decodeValue reads one JSON value token by token, so that duplicate object keys, which
// encoding/json silently resolves to the last one, are seen and refused.
func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	t, err := dec.Token()
	if err != nil {
		return nil, errors.New("invalid JSON")
	}
	switch t {
	case json.Delim('{'):
		m := make(map[string]any)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, errors.New("invalid JSON")
			}
			k := kt.(string) // the decoder only yields string keys inside an object
			if depth == 0 {
				k = internClaimName(k)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("duplicate key %.40q", k)
			}
			if m[k], err = decodeValue(dec, depth+1); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, errors.New("invalid JSON")
		}
		return m, nil
	case json.Delim('['):
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, errors.New("invalid JSON")
		}
		return a, nil
	default:
		if _, ok := t.(json.Delim); ok {
			return nil, errors.New("invalid JSON")
		}
		return t, nil
	}
}

// stringClaim returns the claim name, which must be a string when present.
func stringClaim(m map[string]any, name string, required bool) (string, error) {
	v, ok := m[name]
	if !ok {
		if required {
			return "", fail(ReasonClaims, "%s missing", name)
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fail(ReasonClaims, "%s is not a string", name)
	}
	if required && s == "" {
		return "", fail(ReasonClaims, "%s is empty", name)
	}
	return s, nil
}

// timeClaim returns the NumericDate claim name in whole seconds, rounded towards the stricter side:
// down for exp (roundUp false), up for nbf and iat.
func timeClaim(m map[string]any, name string, required, roundUp bool) (sec int64, present bool, err error) {
	v, ok := m[name]
	if !ok {
		if required {
			return 0, false, fail(ReasonClaims, "%s missing", name)
		}
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, fail(ReasonClaims, "%s is not a number", name)
	}
	if i, err := n.Int64(); err == nil {
		if i < 0 || i > maxNumericDate {
			return 0, false, fail(ReasonClaims, "%s out of range", name)
		}
		return i, true, nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return 0, false, fail(ReasonClaims, "%s out of range", name)
	}
	if roundUp {
		return int64(math.Ceil(f)), true, nil
	}
	return int64(math.Floor(f)), true, nil
}

// maxNumericDate is year 9999: far beyond any real token, small enough that time arithmetic
// cannot overflow.
const maxNumericDate = 253402300799

// splitScopes splits a scope claim on U+0020 only, dropping empty strings and repeats and keeping
// the order. The scopes share the claim's memory.
func splitScopes(s string) []string {
	if s == "" {
		return nil
	}
	scopes := make([]string, 0, strings.Count(s, " ")+1)
	var seen map[string]bool // only for long lists, where a linear search would be quadratic
	if cap(scopes) > 16 {
		seen = make(map[string]bool, cap(scopes))
	}
	for f := range strings.SplitSeq(s, " ") {
		switch {
		case f == "":
		case seen != nil:
			if !seen[f] {
				seen[f] = true
				scopes = append(scopes, f)
			}
		case !slices.Contains(scopes, f):
			scopes = append(scopes, f)
		}
	}
	return slices.Clip(scopes)
}

// internClaimName returns the constant for a registered or Logto claim name, so that the many
// cached claim maps share their keys' bytes instead of holding a copy each.
func internClaimName(k string) string {
	switch k {
	case "iss":
		return "iss"
	case "sub":
		return "sub"
	case "aud":
		return "aud"
	case "exp":
		return "exp"
	case "nbf":
		return "nbf"
	case "iat":
		return "iat"
	case "jti":
		return "jti"
	case "scope":
		return "scope"
	case "client_id":
		return "client_id"
	case "organization_id":
		return "organization_id"
	case "alg":
		return "alg"
	case "typ":
		return "typ"
	case "kid":
		return "kid"
	}
	return k
}
