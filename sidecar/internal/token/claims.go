// Package token verifies Logto access tokens for the sidecar: one strict parse of the compact JWS, one
// key lookup by kid in the issuer's key set (an oidc.KeySet of our own that closes go-oidc's
// RemoteKeySet gaps, DESIGN step 4), one signature check on the parts already decoded, the time checks
// with one skew, the header and claim rules of DESIGN.md, and classification into one of the four token
// kinds. go-oidc's verifier would parse the token twice more (its own parse, then go-jose's in the key
// set) and check nothing this package does not. Verified claims are cached by the exact token; the
// cache never answers an authorization question, the policy does.
package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/orgauthz/orgauthz/decision"
)

// Kind is what a token is for; DESIGN.md's table of token kinds.
type Kind string

// The names are the signed decision's (decision.Kind…), so sidecar and mgmtproxy cannot drift apart.
const (
	Organization    Kind = decision.KindOrganization
	OrganizationAPI Kind = decision.KindOrganizationAPI
	GlobalAPI       Kind = decision.KindGlobalAPI
	Admin           Kind = decision.KindAdmin
)

// Claims are the verified facts of one access token. They are shared between requests: never modify them.
//
// Logto's claims (jti, sub, iat, exp, nbf, scope, client_id, iss, aud, organization_id) are held in
// typed fields, every other claim in Extra: a cached verification stays small and building the
// policy input needs no reflection. Map reassembles the whole payload.
type Claims struct {
	Kind           Kind
	Issuer         string   // iss
	Subject        string   // sub
	ClientID       string   // client_id
	IsApp          bool     // sub == client_id
	HasScope       bool     // the token has a scope claim, possibly ""
	OrganizationID string   // the org context: aud's id for Organization, organization_id for OrganizationAPI, else ""
	Audience       string   // aud
	JTI            string   // jti; "" when absent
	Scope          string   // the scope claim as sent; "" when absent
	Scopes         []string // Scope split on U+0020; empty when absent or ""
	IssuedAt       int64    // iat in whole seconds, rounded up
	ExpiresAt      int64    // exp in whole seconds, rounded down
	NotBefore      int64    // nbf in whole seconds, rounded up; 0 when absent
	KeyID          string   // the kid that verified the signature
	// Extra holds the claims the fields above do not: every claim that is not Logto's, and the
	// rare Logto claim a field cannot say exactly (a time not spelled as a whole number, nbf 0, an
	// empty jti), as decoded JSON with numbers as json.Number. An Extra entry takes precedence over
	// its field's value in Map. nil when there is none, the usual case.
	Extra map[string]any
}

// Map returns every verified claim as decoded JSON (numbers as json.Number): what the token's
// payload says. It allocates a new map on each call; values taken from Extra are shared.
func (c *Claims) Map() map[string]any {
	m := make(map[string]any, 10+len(c.Extra))
	m["iss"], m["sub"], m["aud"], m["client_id"] = c.Issuer, c.Subject, c.Audience, c.ClientID
	m["iat"], m["exp"] = numericDate(c.IssuedAt), numericDate(c.ExpiresAt)
	if c.JTI != "" {
		m["jti"] = c.JTI
	}
	if c.NotBefore != 0 {
		m["nbf"] = numericDate(c.NotBefore)
	}
	if c.HasScope {
		m["scope"] = c.Scope
	}
	if c.Kind == OrganizationAPI { // the only kind whose token carries organization_id
		m["organization_id"] = c.OrganizationID
	}
	maps.Copy(m, c.Extra)
	return m
}

func numericDate(sec int64) json.Number { return json.Number(strconv.FormatInt(sec, 10)) }

// ErrNotReady means no signing keys were ever loaded for the token's issuer: the sidecar answers 503.
var ErrNotReady = errors.New("token: no signing keys loaded yet")

// Error is a verification failure; the sidecar answers 401 with Reason as the body's code.
type Error struct {
	Reason string // short snake_case code, also a metric label: token_expired, invalid_signature, …
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("token: %s: %v", e.Reason, e.Err) }
func (e *Error) Unwrap() error { return e.Err }
