package token

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tokens a real Logto OSS 1.37.1 server issued (see LOGTO.md), verified against the key set it
// published.
const realDir = "../../../../shared/logto-real"

const (
	realIssuer = "http://127.0.0.1:3001/oidc"
	realAPI    = "https://api.capture.test"
)

// realNow is inside every real token's hour of validity (iat 1795505128 = 2026-11-24 07:25:28 UTC
// to 1795507955, exp from 1795508726).
var realNow = time.Unix(1795508000, 0)

type realToken struct {
	Raw    string `json:"raw"`
	Token  string `json:"token"` // opaque tokens
	Opaque bool   `json:"opaque"`
}

func readRealToken(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realDir, "tokens", name))
	if err != nil {
		t.Fatalf("read real token: %v", err)
	}
	var rt realToken
	if err := json.Unmarshal(b, &rt); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	if rt.Opaque {
		return rt.Token
	}
	return rt.Raw
}

// newRealVerifier serves the real key set and verifies with the clock at now.
func newRealVerifier(t testing.TB, now func() time.Time) *Verifier {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realDir, "02-default-jwks.json"))
	if err != nil {
		t.Fatalf("read real jwks: %v", err)
	}
	var exchange struct {
		Response struct {
			Body json.RawMessage `json:"body"`
		} `json:"response"`
	}
	if err := json.Unmarshal(b, &exchange); err != nil {
		t.Fatalf("decode real jwks: %v", err)
	}
	srv := newJWKSServer(t)
	srv.setBody("application/jwk-set+json; charset=utf-8", exchange.Response.Body)
	return newVerifier(t, Config{
		Issuers:       []string{realIssuer},
		APIResource:   realAPI,
		AdminResource: testAdmin,
		JWKSURL:       func(string) string { return srv.URL + "/oidc/jwks" },
		Now:           now,
	}.withSettings(), true)
}

type realTest struct {
	file       string
	wantReason string
	wantKind   Kind
	wantOrg    string
	wantApp    bool
	wantScopes []string
}

var realTests = []realTest{
	{file: "user-organization-token.json", wantKind: Organization, wantOrg: "nllrzhufpsd2", wantScopes: []string{"read:data", "write:data"}},
	{file: "user-organization-token-partial-scope.json", wantKind: Organization, wantOrg: "nllrzhufpsd2", wantScopes: []string{"read:data"}},
	{file: "m2m-organization-token.json", wantKind: Organization, wantOrg: "nllrzhufpsd2", wantApp: true, wantScopes: []string{"read:data"}},
	{file: "user-org-api-resource-token.json", wantKind: OrganizationAPI, wantOrg: "nllrzhufpsd2", wantScopes: []string{"read:items", "write:items"}},
	{file: "m2m-org-api-resource-token.json", wantKind: OrganizationAPI, wantOrg: "nllrzhufpsd2", wantApp: true, wantScopes: []string{"read:items"}},
	{file: "m2m-org-api-resource-token-no-perms.json", wantKind: OrganizationAPI, wantOrg: "nllrzhufpsd2", wantApp: true},
	{file: "user-global-api-resource-token.json", wantKind: GlobalAPI, wantScopes: []string{"read:items", "write:items"}},
	{file: "user-global-api-resource-token-bob.json", wantKind: GlobalAPI, wantScopes: []string{"read:items"}},
	{file: "m2m-management-api.json", wantReason: ReasonAudience},
	{file: "m2m-management-api-3.json", wantReason: ReasonAudience},
	{file: "m2m-management-api-no-scope.json", wantReason: ReasonAudience},
	{file: "admin-tenant-m-default-mapi.json", wantReason: ReasonIssuer}, // the admin tenant, port 3002
	{file: "user-no-resource-token.json", wantReason: ReasonMalformed},   // opaque
}

func (tc realTest) run(t *testing.T, v *Verifier) {
	raw := readRealToken(t, tc.file)
	c, err := v.Verify(context.Background(), raw)
	if got := reason(err); got != tc.wantReason {
		t.Fatalf("Verify(%s) reason = %q, want %q", tc.file, got, tc.wantReason)
	}
	if err != nil {
		return
	}
	if c.Kind != tc.wantKind {
		t.Errorf("Verify(%s) kind = %q, want %q", tc.file, c.Kind, tc.wantKind)
	}
	if c.OrganizationID != tc.wantOrg {
		t.Errorf("Verify(%s) organization = %q, want %q", tc.file, c.OrganizationID, tc.wantOrg)
	}
	if c.IsApp != tc.wantApp {
		t.Errorf("Verify(%s) IsApp = %v, want %v", tc.file, c.IsApp, tc.wantApp)
	}
	if !slices.Equal(c.Scopes, tc.wantScopes) {
		t.Errorf("Verify(%s) scopes = %q, want %q", tc.file, c.Scopes, tc.wantScopes)
	}
	if c.Issuer != realIssuer || c.KeyID != "UQn7VW3bYebH3R2lR2UwLK8p-ZBLAPXiBY31MVGSu5s" {
		t.Errorf("Verify(%s) issuer, kid = %q, %q", tc.file, c.Issuer, c.KeyID)
	}
	if len(c.JTI) != 21 || c.ExpiresAt-c.IssuedAt != 3600 || c.Extra != nil {
		t.Errorf("Verify(%s) jti = %q, lifetime = %d, extra = %v", tc.file, c.JTI, c.ExpiresAt-c.IssuedAt, c.Extra)
	}
	payload, err := decodePart(strings.Split(raw, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if want, err := decodeObject(payload); err != nil || !reflect.DeepEqual(c.Map(), want) {
		t.Errorf("Verify(%s) Map() =\n%v\nwant the payload\n%v (%v)", tc.file, c.Map(), want, err)
	}
}

func TestRealLogtoTokens(t *testing.T) {
	v := newRealVerifier(t, func() time.Time { return realNow })
	for _, tc := range realTests {
		t.Run(tc.file, func(t *testing.T) {
			tc.run(t, v)
			tc.run(t, v) // the second answer comes from the cache and must be the same
		})
	}
	if s := v.Stats(); s.CacheHits != 8 || s.Verified != 8 {
		t.Errorf("Stats() hits, verified = %d, %d, want 8, 8", s.CacheHits, s.Verified)
	}
}

func TestRealTokensExpiredOnRealClock(t *testing.T) {
	v := newRealVerifier(t, time.Now)
	for _, tc := range realTests {
		if tc.wantReason != "" {
			continue
		}
		_, err := v.Verify(context.Background(), readRealToken(t, tc.file))
		if got := reason(err); got != ReasonExpired {
			t.Errorf("Verify(%s) on the real clock: reason = %q, want %q", tc.file, got, ReasonExpired)
		}
	}
}

// TestRealTokensByteFlip changes each byte of each real token (every 7th position under -short)
// and expects every variant refused.
func TestRealTokensByteFlip(t *testing.T) {
	v := newRealVerifier(t, func() time.Time { return realNow })
	step := 1
	if testing.Short() {
		step = 7
	}
	for _, tc := range realTests {
		if tc.wantReason != "" {
			continue
		}
		raw := readRealToken(t, tc.file)
		for i := 0; i < len(raw); i += step {
			for _, c := range []byte{raw[i] ^ 0x01, raw[i] ^ 0x20, '.'} {
				if c == raw[i] {
					continue
				}
				b := []byte(raw)
				b[i] = c
				if claims, err := v.Verify(context.Background(), string(b)); err == nil {
					t.Fatalf("Verify(%s with byte %d = %q) = %s token, want an error", tc.file, i, c, claims.Kind)
				}
			}
		}
	}
}
