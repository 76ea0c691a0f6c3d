// Package token verifies Logto access tokens for the sidecar: signature against the issuer's JWKS through
// go-oidc with a key set of our own, the time checks go-oidc leaves to us, the header and claim rules of
// DESIGN.md, and classification into one of the four token kinds. Verified claims are cached by the exact
// token; the cache never answers an authorization question, the policy does.
package token

import (
	"errors"
	"fmt"
)

// Kind is what a token is for; DESIGN.md's table of token kinds.
type Kind string

const (
	Organization    Kind = "organization"     // aud urn:logto:organization:<id>
	OrganizationAPI Kind = "organization_api" // aud the API resource, organization_id present
	GlobalAPI       Kind = "global_api"       // aud the API resource, no organization_id
	Admin           Kind = "admin"            // aud the admin resource, no organization_id
)

// Claims are the verified facts of one access token. They are shared between requests: never modify them.
type Claims struct {
	Kind           Kind
	Issuer         string
	Subject        string
	ClientID       string
	IsApp          bool   // sub == client_id
	OrganizationID string // the org context; "" when the token has none
	Audience       string
	Scopes         []string // the scope claim split on U+0020; empty when absent or ""
	IssuedAt       int64
	ExpiresAt      int64
	KeyID          string         // the kid that verified the signature
	Raw            map[string]any // every claim as decoded JSON (numbers as json.Number)
}

// ErrNotReady means no signing keys were ever loaded for the token's issuer: the sidecar answers 503.
var ErrNotReady = errors.New("token: no signing keys loaded yet")

// Error is a verification failure; the sidecar answers 401 with Reason as the body's code.
type Error struct {
	Reason string // short snake_case code, also a metric label: token_expired, invalid_signature, …
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("token: %s: %v", e.Reason, e.Err) }
func (e *Error) Unwrap() error { return e.Err }
