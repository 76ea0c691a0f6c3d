package sidecar

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestInputClaimsArePayload holds the policy contract's input.token.claims to "all verified
// claims": for tokens of every kind, with and without scope and with claims that are not Logto's,
// the claims object equals the signed payload exactly.
func TestInputClaimsArePayload(t *testing.T) {
	h := newHarness(t, true)
	tests := []struct {
		name  string
		aud   string
		sub   string
		scope string
		edits map[string]any // set as given, null included
	}{
		{name: "organization", aud: "urn:logto:organization:o1", sub: "u1", scope: "member:add org:read"},
		{name: "organization_api app", aud: apiResource, sub: "app1", scope: "read:items",
			edits: map[string]any{"organization_id": "o1"}},
		{name: "global_api without scope", aud: apiResource, sub: "u1"},
		{name: "admin with empty scope and nbf", aud: adminResource, sub: "u1",
			edits: map[string]any{"scope": "", "nbf": json.Number("1")}},
		{name: "custom claims", aud: apiResource, sub: "u1", scope: "read:items", edits: map[string]any{
			"organization_id": "o1", "roles": []any{"admin", "viewer"}, "tenant": map[string]any{"id": "t1", "n": 1.5, "ok": true},
			"email_verified": false, "note": nil, "big": json.Number("12345678901234567890"),
		}},
		{name: "Logto claims spelled unusually", aud: "urn:logto:organization:o1", sub: "u1", scope: "a",
			edits: map[string]any{"jti": "", "nbf": json.Number("0"), "exp": json.Number("4102444800.5")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := h.logto.Claims(tc.sub, "app1", tc.aud, tc.scope)
			for k, v := range tc.edits {
				claims[k] = v
			}
			tok := h.remember(h.logto.MintToken(claims))
			c, err := h.srv.tokens.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			req, rej := parseRequest(&rawRequest{method: "GET", target: "/api/items", host: "app.example.com",
				headers: map[string]string{"authorization": "Bearer " + tok}, source: "10.0.0.7"}, 16<<10)
			if rej != nil {
				t.Fatalf("parseRequest: %+v", rej)
			}
			in, err := buildInput(req, c)
			if err != nil {
				t.Fatalf("buildInput: %v", err)
			}
			got, err := in.Find(ast.Ref{ast.StringTerm("token"), ast.StringTerm("claims")})
			if err != nil {
				t.Fatalf("input.token.claims: %v", err)
			}
			if want := payloadValue(t, tok); got.Compare(want) != 0 {
				t.Errorf("input.token.claims =\n%v\nwant the payload\n%v", got, want)
			}
		})
	}
}

// payloadValue is the token's payload decoded as OPA reads JSON.
func payloadValue(t *testing.T, tok string) ast.Value {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
