// Package decision is the signed decision the sidecar attaches to every allowed request and mgmtproxy
// verifies before it calls Logto: a compact JWS signed with Ed25519 that binds the policy's answer to
// one method, one canonical path, one route and, when the proxy showed the sidecar a body, that exact body,
// for at most 30 seconds, usable once.
//
// The format is deliberately narrow, so it is parsed by hand rather than by a general JOSE library:
// exactly three base64url parts, a header of exactly {"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":…},
// a flat claims object without duplicate or unknown keys.
//
// It also holds the other fact both binaries must agree on: mgmtproxy's operations (Operations), which
// `sidecar --check` compares with a policy's route table (RouteDrift) without linking mgmtproxy.
package decision

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Header is the request header that carries the signed decision from the sidecar to mgmtproxy.
const Header = "x-orgauthz-decision"

const (
	// Algorithm is the only JWS algorithm signed and accepted.
	Algorithm = "EdDSA"
	// Type is the JWS "typ" header of every decision, so no other JWT can pass for one.
	Type = "orgauthz-decision+jwt"
	// MaxTTL bounds a decision's lifetime (exp − iat); longer ones are rejected.
	MaxTTL = 30 * time.Second
	// DefaultTTL is the lifetime NewSigner uses when given zero or less.
	DefaultTTL = 10 * time.Second
	// Skew is the clock difference between sidecar and mgmtproxy that Verify tolerates.
	Skew = 5 * time.Second
	// MaxSize bounds an encoded decision; larger ones are malformed without being decoded.
	MaxSize = 4 << 10
)

// The token kinds a decision names (DESIGN's table of token kinds): the sidecar classifies tokens
// into exactly these, and mgmtproxy branches on them.
const (
	KindOrganization    = "organization"     // aud urn:logto:organization:<id>
	KindOrganizationAPI = "organization_api" // aud the API resource, organization_id present
	KindGlobalAPI       = "global_api"       // aud the API resource, no organization_id
	KindAdmin           = "admin"            // aud the admin resource
)

// Claims are what the policy allowed, for whom, and until when.
type Claims struct {
	Method    string `json:"m"`             // request method, upper case
	Path      string `json:"p"`             // canonical path, no query
	Route     string `json:"r"`             // route template, e.g. "POST /api/organizations/{orgId}/users"
	Kind      string `json:"k"`             // token kind: organization, organization_api, global_api, admin
	App       bool   `json:"app"`           // the subject is an application (sub == client_id)
	Org       string `json:"org,omitempty"` // organization context of the token, if any
	Subject   string `json:"sub"`           // user or application ID
	Body      string `json:"b,omitempty"`   // BodyHash of the request body the policy saw; empty when it saw none
	ID        string `json:"jti"`           // unique per decision; Verify accepts each once
	IssuedAt  int64  `json:"iat"`           // Unix seconds
	ExpiresAt int64  `json:"exp"`           // Unix seconds, at most MaxTTL after IssuedAt
}

// Reason classifies a rejected decision. Its values are short and stable: they double as metric labels
// and response codes.
type Reason string

// The reasons Verify gives.
const (
	ReasonMissing        Reason = "decision_missing"
	ReasonMalformed      Reason = "decision_malformed"
	ReasonAlgorithm      Reason = "decision_alg"
	ReasonUnknownKey     Reason = "decision_unknown_key"
	ReasonBadSignature   Reason = "decision_bad_signature"
	ReasonExpired        Reason = "decision_expired"
	ReasonNotYetValid    Reason = "decision_not_yet_valid"
	ReasonTTLTooLong     Reason = "decision_ttl_too_long"
	ReasonMethodMismatch Reason = "decision_method_mismatch"
	ReasonPathMismatch   Reason = "decision_path_mismatch"
	ReasonStale          Reason = "decision_stale" // issued before this process's first Verify (a restart)
	ReasonReplayed       Reason = "decision_replayed"
	ReasonReplayFull     Reason = "decision_replay_cache_full"
)

// The reasons CheckBody gives.
const (
	ReasonBodyMismatch Reason = "decision_body_mismatch"
	ReasonBodyMissing  Reason = "decision_body_missing"
)

// Error is the error Verify returns: a Reason and a detail that never contains the token.
type Error struct {
	Reason Reason
	Detail string
	// KeyID is the decision's kid once its header was read, as sent (possibly unknown): log it, so an
	// operator sees which key a refused decision names. It is a JSON string of a bounded header.
	KeyID string
}

func (e *Error) Error() string {
	s := "decision: " + string(e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.KeyID != "" {
		s += fmt.Sprintf(" (kid %.64q)", e.KeyID)
	}
	return s
}

// Is makes errors.Is(err, &Error{Reason: r}) match any Error with reason r, whatever its detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// ReasonOf returns the Reason of an error from Verify, or ReasonMalformed for any other non-nil error.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}

func fail(r Reason, detail string) error { return &Error{Reason: r, Detail: detail} }

var b64 = base64.RawURLEncoding.Strict()

// BodyHash is the "b" claim for a request body: its SHA-256, base64url without padding (43 characters).
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return b64.EncodeToString(sum[:])
}

// CheckBody checks that body is the request body c was signed for. With a "b" claim, body's hash must
// equal it (ReasonBodyMismatch). Without one, the policy saw no body: that is accepted unless required,
// which says the route's policy reads the body, so an answer given without it proves nothing
// (ReasonBodyMissing).
func (c *Claims) CheckBody(body []byte, required bool) error {
	switch {
	case c.Body != "":
		got := BodyHash(body)
		if subtle.ConstantTimeCompare([]byte(got), []byte(c.Body)) != 1 {
			return fail(ReasonBodyMismatch, "")
		}
	case required:
		return fail(ReasonBodyMissing, "the route's policy reads the body but the decision binds none")
	}
	return nil
}

// KeyID is the RFC 7638 JWK thumbprint of pub, base64url without padding: the "kid" of its decisions.
func KeyID(pub ed25519.PublicKey) string {
	// The required members of an OKP JWK in lexicographic order, no whitespace (RFC 7638 §3, RFC 8037 §2).
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return b64.EncodeToString(sum[:])
}
