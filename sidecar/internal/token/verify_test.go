package token

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// verifyTest is one token and the answer Verify must give.
type verifyTest struct {
	name       string
	token      string
	wantReason string // "" for success
	wantKind   Kind
	wantOrg    string
}

func (tc verifyTest) run(t *testing.T, v *Verifier) {
	t.Helper()
	c, err := v.Verify(context.Background(), tc.token)
	if got := reason(err); got != tc.wantReason {
		t.Fatalf("Verify(%s) reason = %q, want %q (err: %v)", tc.name, got, tc.wantReason, err)
	}
	if err != nil {
		if len(tc.token) > 20 && strings.Contains(err.Error(), tc.token) {
			t.Errorf("Verify(%s) error contains the token", tc.name)
		}
		return
	}
	if c.Kind != tc.wantKind || c.OrganizationID != tc.wantOrg {
		t.Errorf("Verify(%s) kind, org = %q, %q, want %q, %q", tc.name, c.Kind, c.OrganizationID, tc.wantKind, tc.wantOrg)
	}
	payload, err := decodePart(strings.Split(tc.token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if want, err := decodeObject(payload); err != nil || !reflect.DeepEqual(c.Map(), want) {
		t.Errorf("Verify(%s) Map() =\n%v\nwant the payload\n%v (%v)", tc.name, c.Map(), want, err)
	}
}

// hostileFixture is an issuer with an ES384 key k1 and an RSA key r1, and an attacker's server
// that must never be asked for anything.
type hostileFixture struct {
	srv      *jwksServer
	attacker *jwksServer
	ec, rsa  *signingKey
	evil     *signingKey // same kid as ec, not published
	iss      string
}

func newHostileFixture(t *testing.T) *hostileFixture {
	ec, rs := newECKey(t, "k1"), newRSAKey(t, "r1")
	f := &hostileFixture{ec: ec, rsa: rs, evil: newECKey(t, "k1"), srv: newJWKSServer(t, ec, rs)}
	f.attacker = newJWKSServer(t, f.evil)
	f.iss = f.srv.issuer()
	return f
}

// withHeader signs claims under Logto's header with edits (nil deletes).
func (f *hostileFixture) withHeader(t *testing.T, k *signingKey, edits map[string]any, claims map[string]any) string {
	h := k.header()
	for name, val := range edits {
		if val == nil {
			delete(h, name)
		} else {
			h[name] = val
		}
	}
	return k.signJSON(t, mustJSON(t, h), mustJSON(t, claims))
}

func (f *hostileFixture) claims(edits map[string]any) map[string]any { return claimsFor(f.iss, edits) }

func TestVerifyHostile(t *testing.T) {
	f := newHostileFixture(t)
	v := newVerifier(t, f.srv.config(), true)
	good := f.ec.sign(t, f.claims(nil))
	h64, rest, _ := strings.Cut(good, ".")
	p64, s64, _ := strings.Cut(rest, ".")
	otherPayload := b64(mustJSON(t, f.claims(map[string]any{"sub": "admin"})))
	pubDER, err := x509.MarshalPKIXPublicKey(f.ec.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(secret []byte) string {
		input := b64(mustJSON(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": "k1"})) + "." + p64
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	hdr := func(h string) string { return b64([]byte(h)) }
	sigWith := func(header, payload string) string {
		return f.ec.signJSON(t, []byte(header), []byte(payload))
	}
	payloadJSON := string(mustJSON(t, f.claims(nil)))
	evilJWK := string(mustJSON(t, f.evil.jwk()))

	tests := []verifyTest{
		{name: "valid ES384", token: good, wantKind: Organization, wantOrg: "org1"},
		{name: "valid RS256", token: f.rsa.sign(t, f.claims(nil)), wantKind: Organization, wantOrg: "org1"},
		{name: "typ upper case", token: f.withHeader(t, f.ec, map[string]any{"typ": "AT+JWT"}, f.claims(nil)), wantKind: Organization, wantOrg: "org1"},
		{name: "typ application/at+jwt", token: f.withHeader(t, f.ec, map[string]any{"typ": "application/at+jwt"}, f.claims(nil)), wantKind: Organization, wantOrg: "org1"},

		// Algorithms and keys.
		{name: "alg none", token: hdr(`{"alg":"none","typ":"at+jwt","kid":"k1"}`) + "." + p64 + ".", wantReason: ReasonMalformed},
		{name: "alg none with signature", token: hdr(`{"alg":"none","typ":"at+jwt","kid":"k1"}`) + "." + p64 + "." + s64, wantReason: ReasonAlgorithm},
		{name: "HS256 with public key PEM", token: hs256(pubPEM), wantReason: ReasonAlgorithm},
		{name: "HS256 with public key DER", token: hs256(pubDER), wantReason: ReasonAlgorithm},
		{name: "RS256 header on EC key", token: f.withHeader(t, f.rsa, map[string]any{"kid": "k1"}, f.claims(nil)), wantReason: ReasonAlgorithm},
		{name: "ES384 header on RSA key", token: f.withHeader(t, f.ec, map[string]any{"kid": "r1"}, f.claims(nil)), wantReason: ReasonAlgorithm},
		{name: "ES256", token: sigWith(`{"alg":"ES256","typ":"at+jwt","kid":"k1"}`, payloadJSON), wantReason: ReasonAlgorithm},
		{name: "alg not a string", token: sigWith(`{"alg":["ES384"],"typ":"at+jwt","kid":"k1"}`, payloadJSON), wantReason: ReasonAlgorithm},
		{name: "signed by another key under a known kid", token: f.evil.sign(t, f.claims(nil)), wantReason: ReasonSignature},
		{name: "kid unknown", token: f.withHeader(t, f.ec, map[string]any{"kid": "k2"}, f.claims(nil)), wantReason: ReasonUnknownKey},
		{name: "kid missing", token: f.withHeader(t, f.ec, map[string]any{"kid": nil}, f.claims(nil)), wantReason: ReasonUnknownKey},
		{name: "kid huge", token: f.withHeader(t, f.ec, map[string]any{"kid": strings.Repeat("k", 4000)}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "kid path", token: f.withHeader(t, f.ec, map[string]any{"kid": "../../jwks"}, f.claims(nil)), wantReason: ReasonUnknownKey},
		{name: "kid quotes", token: f.withHeader(t, f.ec, map[string]any{"kid": `k1" or "1"="1`}, f.claims(nil)), wantReason: ReasonUnknownKey},
		{name: "kid NUL", token: f.withHeader(t, f.ec, map[string]any{"kid": "k1\x00"}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "kid number", token: f.withHeader(t, f.ec, map[string]any{"kid": 1}, f.claims(nil)), wantReason: ReasonMalformed},

		// Keys and key locations named by the token: refused, never fetched.
		{name: "jku", token: f.withHeader(t, f.evil, map[string]any{"jku": f.attacker.URL + "/jwks"}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "x5u", token: f.withHeader(t, f.evil, map[string]any{"x5u": f.attacker.URL + "/cert.pem"}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "jwk", token: sigWith(`{"alg":"ES384","typ":"at+jwt","kid":"k1","jwk":`+evilJWK+`}`, payloadJSON), wantReason: ReasonMalformed},
		{name: "x5c", token: f.withHeader(t, f.evil, map[string]any{"x5c": []string{b64(pubDER)}}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "crit unknown", token: f.withHeader(t, f.ec, map[string]any{"crit": []string{"urn:example:x"}, "urn:example:x": 1}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "crit exp", token: f.withHeader(t, f.ec, map[string]any{"crit": []string{"exp"}}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "b64 false", token: f.withHeader(t, f.ec, map[string]any{"b64": false, "crit": []string{"b64"}}, f.claims(nil)), wantReason: ReasonMalformed},

		// Shapes.
		{name: "empty", token: "", wantReason: ReasonMalformed},
		{name: "opaque", token: "TcIaIDLh30w3Z3_MUarhFUtSSWkDlUUPH-FF_MlIE8M", wantReason: ReasonMalformed},
		{name: "two parts", token: h64 + "." + p64, wantReason: ReasonMalformed},
		{name: "signature stripped", token: h64 + "." + p64 + ".", wantReason: ReasonMalformed},
		{name: "four parts", token: good + "." + s64, wantReason: ReasonMalformed},
		{name: "JWE", token: hdr(`{"alg":"RSA-OAEP","enc":"A256GCM","typ":"at+jwt"}`) + ".AAAA.AAAA.AAAA.AAAA", wantReason: ReasonMalformed},
		{name: "JSON serialisation", token: `{"payload":"` + p64 + `","protected":"` + h64 + `","signature":"` + s64 + `"}`, wantReason: ReasonMalformed},
		{name: "nested JWT cty", token: f.withHeader(t, f.ec, map[string]any{"cty": "JWT"}, f.claims(nil)), wantReason: ReasonMalformed},
		{name: "nested JWT payload", token: f.ec.signJSON(t, mustJSON(t, f.ec.header()), []byte(good)), wantReason: ReasonMalformed},
		{name: "payload a JSON string", token: sigWith(string(mustJSON(t, f.ec.header())), `"`+good+`"`), wantReason: ReasonMalformed},
		{name: "header an array", token: sigWith(`["ES384"]`, payloadJSON), wantReason: ReasonMalformed},
		{name: "1 MB", token: good + strings.Repeat("A", 1<<20), wantReason: ReasonTooLarge},
		{name: "one byte over 8 KiB", token: good + strings.Repeat("A", MaxTokenBytes+1-len(good)), wantReason: ReasonTooLarge},
		{name: "payload altered", token: h64 + "." + otherPayload + "." + s64, wantReason: ReasonSignature},
		{name: "signature zeros", token: h64 + "." + p64 + "." + b64(make([]byte, 96)), wantReason: ReasonSignature},
		{name: "signature short", token: h64 + "." + p64 + "." + s64[:64], wantReason: ReasonSignature},
		{name: "trailing dot", token: good + ".", wantReason: ReasonMalformed},
		{name: "trailing garbage in signature", token: good + "AA", wantReason: ReasonSignature},
		{name: "trailing space", token: good + " ", wantReason: ReasonMalformed},
		{name: "padding", token: h64 + "=." + p64 + "." + s64, wantReason: ReasonMalformed},
		{name: "standard base64", token: h64 + "." + p64 + "." + strings.NewReplacer("-", "+", "_", "/").Replace(s64) + "+", wantReason: ReasonMalformed},
		{name: "leading whitespace", token: " " + good, wantReason: ReasonMalformed},
		{name: "invalid UTF-8 payload", token: sigWith(string(mustJSON(t, f.ec.header())), `{"sub":"`+"\xff"+`"}`), wantReason: ReasonMalformed},
		{name: "duplicate header key", token: sigWith(`{"alg":"ES384","alg":"none","typ":"at+jwt","kid":"k1"}`, payloadJSON), wantReason: ReasonMalformed},
		{name: "duplicate payload key", token: sigWith(string(mustJSON(t, f.ec.header())), strings.Replace(payloadJSON, `{`, `{"sub":"admin",`, 1)), wantReason: ReasonMalformed},
		{name: "duplicate nested key", token: sigWith(string(mustJSON(t, f.ec.header())), strings.Replace(payloadJSON, `{`, `{"x":{"a":1,"a":2},`, 1)), wantReason: ReasonMalformed},
		{name: "JSON after the payload", token: sigWith(string(mustJSON(t, f.ec.header())), payloadJSON+`{}`), wantReason: ReasonMalformed},
		{name: "deep nesting", token: sigWith(string(mustJSON(t, f.ec.header())), `{"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`), wantReason: ReasonMalformed},

		// Type.
		{name: "typ JWT", token: f.withHeader(t, f.ec, map[string]any{"typ": "JWT"}, f.claims(nil)), wantReason: ReasonType},
		{name: "typ missing", token: f.withHeader(t, f.ec, map[string]any{"typ": nil}, f.claims(nil)), wantReason: ReasonType},
		{name: "typ at+jwt with suffix", token: f.withHeader(t, f.ec, map[string]any{"typ": "at+jwt; x"}, f.claims(nil)), wantReason: ReasonType},

		// Times.
		{name: "expired", token: f.ec.sign(t, f.claims(map[string]any{"exp": testNow.Unix() - 3600})), wantReason: ReasonExpired},
		{name: "exp missing", token: f.ec.sign(t, f.claims(map[string]any{"exp": nil})), wantReason: ReasonClaims},
		{name: "exp string", token: f.ec.sign(t, f.claims(map[string]any{"exp": fmt.Sprint(testNow.Unix() + 60)})), wantReason: ReasonClaims},
		{name: "exp negative", token: f.ec.sign(t, f.claims(map[string]any{"exp": -1})), wantReason: ReasonClaims},
		{name: "exp huge", token: f.ec.sign(t, f.claims(map[string]any{"exp": 1e300})), wantReason: ReasonClaims},
		{name: "exp fractional", token: f.ec.sign(t, f.claims(map[string]any{"exp": float64(testNow.Unix()) + 0.5})), wantKind: Organization, wantOrg: "org1"},
		{name: "iat missing", token: f.ec.sign(t, f.claims(map[string]any{"iat": nil})), wantReason: ReasonClaims},
		{name: "iat in the future", token: f.ec.sign(t, f.claims(map[string]any{"iat": testNow.Unix() + 3600})), wantReason: ReasonIssuedInFuture},
		{name: "nbf in the future", token: f.ec.sign(t, f.claims(map[string]any{"nbf": testNow.Unix() + 3600})), wantReason: ReasonNotYetValid},
		{name: "nbf string", token: f.ec.sign(t, f.claims(map[string]any{"nbf": "0"})), wantReason: ReasonClaims},

		// Issuers.
		{name: "issuer unknown", token: f.ec.sign(t, f.claims(map[string]any{"iss": "https://evil.example/oidc"})), wantReason: ReasonIssuer},
		{name: "issuer trailing slash", token: f.ec.sign(t, f.claims(map[string]any{"iss": f.iss + "/"})), wantReason: ReasonIssuer},
		{name: "issuer https", token: f.ec.sign(t, f.claims(map[string]any{"iss": strings.Replace(f.iss, "http:", "https:", 1)})), wantReason: ReasonIssuer},
		{name: "issuer lookalike prefix", token: f.ec.sign(t, f.claims(map[string]any{"iss": f.iss + "-evil"})), wantReason: ReasonIssuer},
		{name: "issuer prefix", token: f.ec.sign(t, f.claims(map[string]any{"iss": strings.TrimSuffix(f.iss, "/oidc")})), wantReason: ReasonIssuer},
		{name: "issuer other tenant", token: f.ec.sign(t, f.claims(map[string]any{"iss": "http://127.0.0.1:3002/oidc"})), wantReason: ReasonIssuer},
		{name: "issuer case", token: f.ec.sign(t, f.claims(map[string]any{"iss": strings.ToUpper(f.iss)})), wantReason: ReasonIssuer},
		{name: "issuer missing", token: f.ec.sign(t, f.claims(map[string]any{"iss": nil})), wantReason: ReasonClaims},
		{name: "issuer number", token: f.ec.sign(t, f.claims(map[string]any{"iss": 1})), wantReason: ReasonClaims},

		// Audiences.
		{name: "aud array of two orgs", token: f.ec.sign(t, f.claims(map[string]any{"aud": []string{"urn:logto:organization:org1", "urn:logto:organization:org2"}})), wantReason: ReasonAudience},
		{name: "aud array of one", token: f.ec.sign(t, f.claims(map[string]any{"aud": []string{"urn:logto:organization:org1"}})), wantReason: ReasonAudience},
		{name: "aud missing", token: f.ec.sign(t, f.claims(map[string]any{"aud": nil})), wantReason: ReasonAudience},
		{name: "aud empty", token: f.ec.sign(t, f.claims(map[string]any{"aud": ""})), wantReason: ReasonAudience},
		{name: "aud Management API", token: f.ec.sign(t, f.claims(map[string]any{"aud": "https://default.logto.app/api"})), wantReason: ReasonAudience},
		{name: "aud client id", token: f.ec.sign(t, f.claims(map[string]any{"aud": "app1"})), wantReason: ReasonAudience},
		{name: "aud other API", token: f.ec.sign(t, f.claims(map[string]any{"aud": "https://other.example.test"})), wantReason: ReasonAudience},
		{name: "aud API with trailing slash", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAPI + "/"})), wantReason: ReasonAudience},
		{name: "aud org id empty", token: f.ec.sign(t, f.claims(map[string]any{"aud": "urn:logto:organization:"})), wantReason: ReasonAudience},
		{name: "aud org id upper case", token: f.ec.sign(t, f.claims(map[string]any{"aud": "urn:logto:organization:ORG1"})), wantReason: ReasonAudience},
		{name: "aud org id with slash", token: f.ec.sign(t, f.claims(map[string]any{"aud": "urn:logto:organization:org1/../org2"})), wantReason: ReasonAudience},
		{name: "aud org id too long", token: f.ec.sign(t, f.claims(map[string]any{"aud": "urn:logto:organization:" + strings.Repeat("a", 33)})), wantReason: ReasonAudience},
		{name: "aud org with organization_id", token: f.ec.sign(t, f.claims(map[string]any{"organization_id": "org2"})), wantReason: ReasonAudience},
		{name: "aud admin with organization_id", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAdmin, "organization_id": "org1"})), wantReason: ReasonAudience},

		// Kinds.
		{name: "organization_api", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAPI, "organization_id": "org9"})), wantKind: OrganizationAPI, wantOrg: "org9"},
		{name: "global_api", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAPI})), wantKind: GlobalAPI},
		{name: "admin", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAdmin})), wantKind: Admin},

		// Claim types.
		{name: "scope array", token: f.ec.sign(t, f.claims(map[string]any{"scope": []string{"read:data"}})), wantReason: ReasonClaims},
		{name: "scope number", token: f.ec.sign(t, f.claims(map[string]any{"scope": 1})), wantReason: ReasonClaims},
		{name: "scope absent", token: f.ec.sign(t, f.claims(map[string]any{"scope": nil})), wantKind: Organization, wantOrg: "org1"},
		{name: "organization_id number", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAPI, "organization_id": 1})), wantReason: ReasonClaims},
		{name: "organization_id empty", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAPI, "organization_id": ""})), wantReason: ReasonClaims},
		{name: "organization_id with slash", token: f.ec.sign(t, f.claims(map[string]any{"aud": testAPI, "organization_id": "a/../b"})), wantReason: ReasonClaims},
		{name: "organization_id null", token: sigWith(string(mustJSON(t, f.ec.header())), strings.Replace(payloadJSON, `{`, `{"organization_id":null,`, 1)), wantReason: ReasonClaims},
		{name: "sub number", token: f.ec.sign(t, f.claims(map[string]any{"sub": 1})), wantReason: ReasonClaims},
		{name: "sub missing", token: f.ec.sign(t, f.claims(map[string]any{"sub": nil})), wantReason: ReasonClaims},
		{name: "sub empty", token: f.ec.sign(t, f.claims(map[string]any{"sub": ""})), wantReason: ReasonClaims},
		{name: "client_id missing", token: f.ec.sign(t, f.claims(map[string]any{"client_id": nil})), wantReason: ReasonClaims},
		{name: "client_id object", token: f.ec.sign(t, f.claims(map[string]any{"client_id": map[string]any{}})), wantReason: ReasonClaims},
		{name: "jti number", token: f.ec.sign(t, f.claims(map[string]any{"jti": 7})), wantReason: ReasonClaims},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, v) })
	}
	if n := f.attacker.requests.Load(); n != 0 {
		t.Errorf("attacker's server got %d requests, want 0", n)
	}
}
