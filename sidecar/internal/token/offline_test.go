package token

import (
	"errors"
	"strings"
	"testing"
)

// ClaimsOf checks claims as Verify does, at the token's iat, and refuses hostile documents.
func TestClaimsOf(t *testing.T) {
	cfg := Config{APIResource: "https://api.example.com", AdminResource: "https://admin.example.com"}
	// Issued and expired in 2026: explained as they were then.
	good := `{"iss":"https://t.logto.app/oidc","sub":"u1","client_id":"app1","aud":"https://api.example.com",` +
		`"organization_id":"o1","scope":"a b","iat":1790000000,"exp":1790003600}`
	c, err := ClaimsOf(cfg, []byte(good))
	if err != nil || c.Kind != OrganizationAPI || c.OrganizationID != "o1" || len(c.Scopes) != 2 || c.IsApp {
		t.Fatalf("ClaimsOf(good) = %+v, %v", c, err)
	}
	for name, tc := range map[string]struct{ doc, reason string }{
		"too large":     {`{"sub":"` + strings.Repeat("a", MaxTokenBytes) + `"}`, ReasonTooLarge},
		"duplicate key": {`{"sub":"u1","sub":"u2"}`, ReasonClaims},
		"deep":          {strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100), ReasonClaims},
		"not an object": {`["sub"]`, ReasonClaims},
		"trailing data": {good + "{}", ReasonClaims},
		"wrong aud":     {strings.Replace(good, "https://api.example.com", "https://other", 1), ReasonAudience},
		"no iat":        {strings.Replace(good, `"iat":1790000000,`, "", 1), ""},
	} {
		_, err := ClaimsOf(cfg, []byte(tc.doc))
		var te *Error
		if !errors.As(err, &te) || (tc.reason != "" && te.Reason != tc.reason) {
			t.Errorf("%s: ClaimsOf = %v, want a token error %q", name, err, tc.reason)
		}
	}
}
