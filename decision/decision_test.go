package decision

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed clock of these tests.
var t0 = time.Date(2026, 11, 24, 19, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return priv
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func sampleClaims() Claims {
	return Claims{
		Method: "POST", Path: "/api/organizations/o1/users", Route: "POST /api/organizations/{orgId}/users",
		Kind: "organization", Org: "o1", Subject: "u1",
	}
}

func newSigner(t testing.TB, key ed25519.PrivateKey, now time.Time) *Signer {
	t.Helper()
	s := NewSigner(key, 10*time.Second)
	s.Now = fixedClock(now)
	return s
}

func sign(t testing.TB, s *Signer, c Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

// forge signs arbitrary header and payload JSON with key, as an attacker holding a key (or a bug) might.
func forge(key ed25519.PrivateKey, header, payload string) string {
	in := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	return in + "." + b64.EncodeToString(ed25519.Sign(key, []byte(in)))
}

func goodHeader(key ed25519.PrivateKey) string {
	return `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"` + KeyID(pubOf(key)) + `"}`
}

func payload(iat, exp int64, extra string) string {
	return fmt.Sprintf(`{"m":"GET","p":"/api/organizations","r":"GET /api/organizations","k":"admin","app":false,"sub":"u1","jti":"j1","iat":%d,"exp":%d%s}`, iat, exp, extra)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	key := newKey(t)
	s := newSigner(t, key, t0)
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)

	want := sampleClaims()
	tok := sign(t, s, want)
	got, err := v.Verify(tok, want.Method, want.Path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.ID == "" || len(got.ID) != 22 {
		t.Errorf("Verify().ID = %q, want 22 base64url characters (128 bits)", got.ID)
	}
	want.ID, want.IssuedAt, want.ExpiresAt = got.ID, t0.Unix(), t0.Unix()+10
	if *got != want {
		t.Errorf("Verify() = %+v, want %+v", *got, want)
	}

	hdr, _, _ := strings.Cut(tok, ".")
	raw, _ := b64.DecodeString(hdr)
	if wantHdr := `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"` + s.KeyID() + `"}`; string(raw) != wantHdr {
		t.Errorf("header = %s, want %s", raw, wantHdr)
	}
	if s.KeyID() != KeyID(pubOf(key)) {
		t.Errorf("Signer.KeyID() = %q, want KeyID(pub) = %q", s.KeyID(), KeyID(pubOf(key)))
	}
}

func TestSignKeepsGivenIDAndOmitsEmptyOrg(t *testing.T) {
	key := newKey(t)
	s := newSigner(t, key, t0)
	c := sampleClaims()
	c.Org, c.ID, c.Kind, c.App = "", "my-id", "admin", true
	tok := sign(t, s, c)
	_, p, _ := strings.Cut(tok, ".")
	p, _, _ = strings.Cut(p, ".")
	raw, _ := b64.DecodeString(p)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["org"]; ok {
		t.Errorf("payload %s has org, want it omitted", raw)
	}
	if _, ok := m["b"]; ok {
		t.Errorf("payload %s has b, want it omitted without a body", raw)
	}
	if m["jti"] != "my-id" || m["app"] != true {
		t.Errorf("payload %s: want jti my-id and app true", raw)
	}
}

func TestNewSignerTTL(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, DefaultTTL}, {-time.Second, DefaultTTL}, {time.Minute, MaxTTL}, {30 * time.Second, 30 * time.Second},
		{15500 * time.Millisecond, 15 * time.Second}, {time.Millisecond, time.Second},
	} {
		if got := NewSigner(newKey(t), tc.in).TTL(); got != tc.want {
			t.Errorf("NewSigner(ttl %v).TTL() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// KeyID must be the RFC 7638 thumbprint; RFC 8037 appendix A.3 gives the expected value for its key.
func TestKeyIDRFC8037(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := KeyID(ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("KeyID(RFC 8037 A.3 key) = %q, want %q", got, want)
	}
}

type verifyTest struct {
	name   string
	token  func(t *testing.T) string
	method string // default GET
	path   string // default /api/organizations
	now    time.Time
	want   Reason // "" means accepted
}

func (tc verifyTest) run(t *testing.T, v *Verifier) {
	t.Helper()
	method, path := tc.method, tc.path
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/api/organizations"
	}
	now := tc.now
	if now.IsZero() {
		now = t0
	}
	v.Now, v.Started = fixedClock(now), t0.Add(-time.Minute)
	tok := tc.token(t)
	_, err := v.Verify(tok, method, path)
	if got := ReasonOf(err); got != tc.want {
		t.Errorf("Verify(%s) reason = %q (err %v), want %q", tc.name, got, err, tc.want)
	}
	if err != nil && strings.Contains(err.Error(), tok) && tok != "" {
		t.Errorf("Verify(%s) error %q echoes the token", tc.name, err)
	}
}

func TestVerify(t *testing.T) {
	key, other := newKey(t), newKey(t)
	s := newSigner(t, key, t0)
	otherSigner := newSigner(t, other, t0)
	getOrgs := Claims{Method: "GET", Path: "/api/organizations", Route: "GET /api/organizations", Kind: "admin", Subject: "u1"}
	signed := func(s *Signer, c Claims) func(t *testing.T) string {
		return func(t *testing.T) string { return sign(t, s, c) }
	}
	raw := func(tok string) func(*testing.T) string { return func(*testing.T) string { return tok } }
	hdr := goodHeader(key)
	iat := t0.Unix()
	tamper := func(t *testing.T) string {
		tok := sign(t, s, getOrgs)
		parts := strings.Split(tok, ".")
		p, _ := b64.DecodeString(parts[1])
		p = []byte(strings.Replace(string(p), `"k":"admin"`, `"k":"admiN"`, 1))
		return parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
	}
	hs256 := func(*testing.T) string {
		h := `{"alg":"HS256","typ":"orgauthz-decision+jwt","kid":"` + KeyID(pubOf(key)) + `"}`
		in := b64.EncodeToString([]byte(h)) + "." + b64.EncodeToString([]byte(payload(iat, iat+10, "")))
		return in + "." + b64.EncodeToString(make([]byte, 32))
	}
	algNone := b64.EncodeToString([]byte(`{"alg":"none","typ":"orgauthz-decision+jwt","kid":"`+KeyID(pubOf(key))+`"}`)) +
		"." + b64.EncodeToString([]byte(payload(iat, iat+10, ""))) + "."

	tests := []verifyTest{
		{name: "valid", token: signed(s, getOrgs)},
		{name: "missing", token: raw(""), want: ReasonMissing},
		{name: "expired at exp+skew", token: signed(s, getOrgs), now: t0.Add(10*time.Second + Skew), want: ReasonExpired},
		{name: "valid just before exp+skew", token: signed(s, getOrgs), now: t0.Add(10*time.Second + Skew - time.Second)},
		{name: "expired long ago", token: signed(s, getOrgs), now: t0.Add(time.Hour), want: ReasonExpired},
		{name: "iat at now+skew", token: signed(s, getOrgs), now: t0.Add(-Skew)},
		{name: "iat beyond now+skew", token: signed(s, getOrgs), now: t0.Add(-Skew - time.Second), want: ReasonNotYetValid},
		{name: "other path", token: signed(s, getOrgs), path: "/api/organizations/o2", want: ReasonPathMismatch},
		{name: "path with query", token: signed(s, getOrgs), path: "/api/organizations?x=1", want: ReasonPathMismatch},
		{name: "path case", token: signed(s, getOrgs), path: "/api/Organizations", want: ReasonPathMismatch},
		{name: "other method", token: signed(s, getOrgs), method: "POST", want: ReasonMethodMismatch},
		{name: "lower-case method", token: signed(s, getOrgs), method: "get", want: ReasonMethodMismatch},
		{name: "wrong key", token: signed(otherSigner, getOrgs), want: ReasonUnknownKey},
		{name: "wrong key claiming our kid", token: raw(forge(other, hdr, payload(iat, iat+10, ""))), want: ReasonBadSignature},
		{name: "alg none", token: raw(algNone), want: ReasonAlgorithm},
		{name: "alg HS256", token: hs256, want: ReasonAlgorithm},
		{name: "alg Ed25519", token: raw(forge(key, `{"alg":"Ed25519","typ":"orgauthz-decision+jwt","kid":"`+KeyID(pubOf(key))+`"}`, payload(iat, iat+10, ""))), want: ReasonAlgorithm},
		{name: "tampered payload", token: tamper, want: ReasonBadSignature},
		{name: "signature stripped", token: func(t *testing.T) string {
			tok := sign(t, s, getOrgs)
			return tok[:strings.LastIndex(tok, ".")+1]
		}, want: ReasonBadSignature},
		{name: "ttl 31s", token: raw(forge(key, hdr, payload(iat, iat+31, ""))), want: ReasonTTLTooLong},
		{name: "ttl 30s", token: raw(forge(key, hdr, payload(iat, iat+30, "")))},
		{name: "ttl an hour", token: raw(forge(key, hdr, payload(iat, iat+3600, ""))), want: ReasonTTLTooLong},
		{name: "exp before iat", token: raw(forge(key, hdr, payload(iat, iat-1, ""))), want: ReasonMalformed},
		// Times outside 1970..9999 are refused before any arithmetic, which would otherwise overflow:
		// exp − iat of MaxInt64 and MinInt64 wraps to −1, and exp + skew wraps negative.
		{name: "iat MinInt64 exp MaxInt64", token: raw(forge(key, hdr, payload(math.MinInt64, math.MaxInt64, ""))), want: ReasonMalformed},
		{name: "iat MinInt64 exp now", token: raw(forge(key, hdr, payload(math.MinInt64, iat+10, ""))), want: ReasonMalformed},
		{name: "iat MinInt64+1 exp MaxInt64", token: raw(forge(key, hdr, payload(math.MinInt64+1, math.MaxInt64-1, ""))), want: ReasonMalformed},
		{name: "iat and exp near MaxInt64", token: raw(forge(key, hdr, payload(math.MaxInt64-10, math.MaxInt64, ""))), want: ReasonMalformed},
		{name: "exp MaxInt64 minus skew", token: raw(forge(key, hdr, payload(math.MaxInt64-20, math.MaxInt64-4, ""))), want: ReasonMalformed},
		{name: "iat negative", token: raw(forge(key, hdr, payload(-5, 5, ""))), want: ReasonMalformed},
		{name: "exp after 9999", token: raw(forge(key, hdr, payload(253402300799, 253402300800, ""))), want: ReasonMalformed},
		{name: "exp in 9999", token: raw(forge(key, hdr, payload(253402300790, 253402300799, ""))), want: ReasonNotYetValid},
		{name: "iat 0", token: raw(forge(key, hdr, payload(0, 10, ""))), want: ReasonExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
			tc.run(t, v)
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	key := newKey(t)
	s := newSigner(t, key, t0)
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	c := sampleClaims()
	tok := sign(t, s, c)
	if _, err := v.Verify(tok, c.Method, c.Path); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	for i := range 3 {
		if _, err := v.Verify(tok, c.Method, c.Path); !errors.Is(err, &Error{Reason: ReasonReplayed}) {
			t.Errorf("Verify #%d of the same decision = %v, want %s", i+2, err, ReasonReplayed)
		}
	}
	// A new decision with the same jti is a replay too, whatever it binds.
	c.ID = "fixed"
	if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); err != nil {
		t.Fatalf("Verify(jti fixed): %v", err)
	}
	if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); ReasonOf(err) != ReasonReplayed {
		t.Errorf("Verify(second decision with jti fixed) = %v, want %s", err, ReasonReplayed)
	}
	// A rejected decision is not remembered: the same token verifies later on the right path.
	c.ID = ""
	tok = sign(t, s, c)
	if _, err := v.Verify(tok, c.Method, "/other"); ReasonOf(err) != ReasonPathMismatch {
		t.Fatalf("Verify(other path) = %v, want %s", err, ReasonPathMismatch)
	}
	if _, err := v.Verify(tok, c.Method, c.Path); err != nil {
		t.Errorf("Verify after a rejected attempt: %v", err)
	}
}

// TestVerifyStaleAfterRestart: the replay cache dies with the process, so a new Verifier (a restarted
// mgmtproxy) refuses every decision issued more than Skew before it started, used before or not.
func TestVerifyStaleAfterRestart(t *testing.T) {
	key := newKey(t)
	c := sampleClaims()
	old := sign(t, newSigner(t, key, t0), c)
	before := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	before.Now, before.Started = fixedClock(t0), t0.Add(-time.Minute)
	if _, err := before.Verify(old, c.Method, c.Path); err != nil {
		t.Fatalf("Verify before the restart: %v", err)
	}

	restart := t0.Add(10 * time.Second)
	after := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	after.Now, after.Started = fixedClock(restart), restart
	tests := []struct {
		name string
		iat  time.Time
		want Reason
	}{
		{"the decision used before the restart", t0, ReasonStale},
		{"issued more than skew before the start", restart.Add(-Skew - time.Second), ReasonStale},
		{"issued exactly skew before the start", restart.Add(-Skew), ""},
		{"issued after the start", restart, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := old
			if !tc.iat.Equal(t0) {
				tok = sign(t, newSigner(t, key, tc.iat), c)
			}
			_, err := after.Verify(tok, c.Method, c.Path)
			if got := ReasonOf(err); got != tc.want {
				t.Errorf("Verify = %v, want reason %q", err, tc.want)
			}
		})
	}
	if v := NewVerifier(nil); time.Since(v.Started) > time.Minute || time.Since(v.Started) < 0 {
		t.Errorf("NewVerifier().Started = %v, want the current time", v.Started)
	}
}

// TestVerifyErrorNamesKid: an operator must see which key a refused decision names.
func TestVerifyErrorNamesKid(t *testing.T) {
	key, other := newKey(t), newKey(t)
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	c := sampleClaims()
	long := strings.Repeat("k", 500)
	tests := []struct {
		name, tok, kid string
		want           Reason
	}{
		{"unknown key", sign(t, newSigner(t, other, t0), c), KeyID(pubOf(other)), ReasonUnknownKey},
		{"bad signature", forge(other, goodHeader(key), payload(t0.Unix(), t0.Unix()+10, "")), KeyID(pubOf(key)), ReasonBadSignature},
		{"long unknown kid", forge(other, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"`+long+`"}`, payload(t0.Unix(), t0.Unix()+10, "")), long, ReasonUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.tok, c.Method, c.Path)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.want || e.KeyID != tc.kid {
				t.Fatalf("Verify = %#v, want reason %s naming kid %.20s…", err, tc.want, tc.kid)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.kid[:min(len(tc.kid), 40)]) || len(msg) > 200 {
				t.Errorf("error %q: want the kid, bounded", msg)
			}
		})
	}
}

func TestVerifyReplayConcurrent(t *testing.T) {
	key := newKey(t)
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	c := sampleClaims()
	tok := sign(t, newSigner(t, key, t0), c)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(tok, c.Method, c.Path); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Errorf("50 concurrent Verify of one decision: %d accepted, want 1", ok)
	}
}

func TestVerifyReplayCacheBound(t *testing.T) {
	key := newKey(t)
	s := newSigner(t, key, t0)
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.MaxReplayEntries = 3
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	c := sampleClaims()
	for i := range 3 {
		if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); err != nil {
			t.Fatalf("Verify #%d: %v", i, err)
		}
	}
	if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); ReasonOf(err) != ReasonReplayFull {
		t.Fatalf("Verify with a full cache = %v, want %s", err, ReasonReplayFull)
	}
	// Once the remembered decisions expire they leave the cache and new ones fit again.
	later := t0.Add(10*time.Second + Skew)
	s.Now, v.Now = fixedClock(later), fixedClock(later)
	if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); err != nil {
		t.Errorf("Verify after the cache drained: %v", err)
	}
	if n := len(v.seen); n != 1 {
		t.Errorf("replay cache holds %d entries, want 1", n)
	}
}

func TestVerifyRotation(t *testing.T) {
	oldKey, newK, retired := newKey(t), newKey(t), newKey(t)
	v := NewVerifier([]ed25519.PublicKey{pubOf(oldKey), pubOf(newK)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	c := sampleClaims()
	for name, k := range map[string]ed25519.PrivateKey{"old": oldKey, "new": newK} {
		if _, err := v.Verify(sign(t, newSigner(t, k, t0), c), c.Method, c.Path); err != nil {
			t.Errorf("Verify(signed by %s key): %v", name, err)
		}
	}
	if _, err := v.Verify(sign(t, newSigner(t, retired, t0), c), c.Method, c.Path); ReasonOf(err) != ReasonUnknownKey {
		t.Errorf("Verify(signed by a key not listed) = %v, want %s", err, ReasonUnknownKey)
	}
	if got := len(v.KeyIDs()); got != 2 {
		t.Errorf("KeyIDs() has %d entries, want 2", got)
	}
}

// TestVerifyHostile feeds shapes an attacker or a buggy peer could send; none may verify, none may panic.
func TestVerifyHostile(t *testing.T) {
	key := newKey(t)
	iat := t0.Unix()
	hdr := goodHeader(key)
	kid := KeyID(pubOf(key))
	good := forge(key, hdr, payload(iat, iat+10, ""))
	parts := strings.Split(good, ".")
	goodB := BodyHash([]byte(`{"name":"x"}`))
	tests := []struct {
		name  string
		token string
		want  Reason
	}{
		{"one part", "abc", ReasonMalformed},
		{"two parts", parts[0] + "." + parts[1], ReasonMalformed},
		{"four parts", good + ".x", ReasonMalformed},
		{"five parts (JWE)", "a.b.c.d.e", ReasonMalformed},
		{"over 4 KiB", good + strings.Repeat("A", MaxSize), ReasonMalformed},
		{"JSON serialisation", `{"payload":"` + parts[1] + `","signatures":[]}`, ReasonMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], ReasonMalformed},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(parts[0]) + "+/." + parts[1] + "." + parts[2], ReasonMalformed},
		{"non-canonical signature bits", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + flipLast(parts[2]), ReasonBadSignature},
		{"trailing garbage", good + "AAAA", ReasonBadSignature},
		{"header not JSON", forge(key, `not json`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header array", forge(key, `[1]`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header duplicate alg", forge(key, `{"alg":"none","alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"`+kid+`"}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header crit", forge(key, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"`+kid+`","crit":["exp"]}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header jku", forge(key, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"`+kid+`","jku":"http://evil/jwks"}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header jwk", forge(key, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"`+kid+`","jwk":{"kty":"OKP"}}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header typ JWT", forge(key, `{"alg":"EdDSA","typ":"JWT","kid":"`+kid+`"}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header typ at+jwt", forge(key, `{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`"}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header no kid", forge(key, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt"}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header kid number", forge(key, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":7}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header case-variant key", forge(key, `{"ALG":"EdDSA","typ":"orgauthz-decision+jwt","kid":"`+kid+`"}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"header trailing data", forge(key, hdr+`{}`, payload(iat, iat+10, "")), ReasonMalformed},
		{"kid path traversal", forge(key, `{"alg":"EdDSA","typ":"orgauthz-decision+jwt","kid":"../../etc/passwd\u0000"}`, payload(iat, iat+10, "")), ReasonUnknownKey},
		{"payload not JSON", forge(key, hdr, `{"m":`), ReasonMalformed},
		{"payload duplicate path", forge(key, hdr, payload(iat, iat+10, `,"p":"/api/organizations/o2"`)), ReasonMalformed},
		{"payload case-variant key", forge(key, hdr, payload(iat, iat+10, `,"P":"/x"`)), ReasonMalformed},
		{"payload unknown member", forge(key, hdr, payload(iat, iat+10, `,"admin":true`)), ReasonMalformed},
		{"payload nested member", forge(key, hdr, `{"m":{"x":1},"p":"/api/organizations"}`), ReasonMalformed},
		{"payload exp float", forge(key, hdr, payload(iat, 0, "")[:len(payload(iat, 0, ""))-2]+fmt.Sprintf("%d.5}", iat+10)), ReasonMalformed},
		{"payload exp string", forge(key, hdr, strings.Replace(payload(iat, iat+10, ""), fmt.Sprintf(`"exp":%d`, iat+10), fmt.Sprintf(`"exp":"%d"`, iat+10), 1)), ReasonMalformed},
		{"payload app string", forge(key, hdr, strings.Replace(payload(iat, iat+10, ""), `"app":false`, `"app":"false"`, 1)), ReasonMalformed},
		{"payload no jti", forge(key, hdr, strings.Replace(payload(iat, iat+10, ""), `"jti":"j1",`, ``, 1)), ReasonMalformed},
		{"payload empty jti", forge(key, hdr, strings.Replace(payload(iat, iat+10, ""), `"jti":"j1"`, `"jti":""`, 1)), ReasonMalformed},
		{"payload trailing data", forge(key, hdr, payload(iat, iat+10, "")+`x`), ReasonMalformed},
		{"payload huge exp", forge(key, hdr, payload(iat, 0, "")[:len(payload(iat, 0, ""))-2]+"99999999999999999999999}"), ReasonMalformed},
		{"b empty", forge(key, hdr, payload(iat, iat+10, `,"b":""`)), ReasonMalformed},
		{"b number", forge(key, hdr, payload(iat, iat+10, `,"b":1`)), ReasonMalformed},
		{"b null", forge(key, hdr, payload(iat, iat+10, `,"b":null`)), ReasonMalformed},
		{"b 42 characters", forge(key, hdr, payload(iat, iat+10, `,"b":"`+goodB[:42]+`"`)), ReasonMalformed},
		{"b 44 characters", forge(key, hdr, payload(iat, iat+10, `,"b":"`+goodB+`A"`)), ReasonMalformed},
		{"b padded", forge(key, hdr, payload(iat, iat+10, `,"b":"`+goodB+`="`)), ReasonMalformed},
		{"b standard alphabet", forge(key, hdr, payload(iat, iat+10, `,"b":"+/`+goodB[2:]+`"`)), ReasonMalformed},
		{"b non-canonical bits", forge(key, hdr, payload(iat, iat+10, `,"b":"`+goodB[:42]+flipLast(goodB)+`"`)), ReasonMalformed},
		{"b hex SHA-256", forge(key, hdr, payload(iat, iat+10, `,"b":"`+strings.Repeat("ab", 32)+`"`)), ReasonMalformed},
		{"b duplicate", forge(key, hdr, payload(iat, iat+10, `,"b":"`+goodB+`","b":"`+goodB+`"`)), ReasonMalformed},
		{"b case-variant key", forge(key, hdr, payload(iat, iat+10, `,"B":"`+goodB+`"`)), ReasonMalformed},
	}
	for _, tc := range tests {
		v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
		v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
		_, err := v.Verify(tc.token, "GET", "/api/organizations")
		if got := ReasonOf(err); got != tc.want {
			t.Errorf("Verify(%s) reason = %q (err %v), want %q", tc.name, got, err, tc.want)
		}
	}
	// The untouched forged token is valid: the cases above fail for the reason they name.
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	if _, err := v.Verify(good, "GET", "/api/organizations"); err != nil {
		t.Fatalf("Verify(reference token): %v", err)
	}
	withB := forge(key, hdr, strings.Replace(payload(iat, iat+10, `,"b":"`+goodB+`"`), `"jti":"j1"`, `"jti":"j2"`, 1))
	if c, err := v.Verify(withB, "GET", "/api/organizations"); err != nil || c.Body != goodB {
		t.Fatalf("Verify(reference token with b) = %+v, %v; want b %q", c, err, goodB)
	}
}

// TestSignVerifyBody: a decision signed with a body hash carries it through Verify, and CheckBody
// accepts exactly that body.
func TestSignVerifyBody(t *testing.T) {
	key := newKey(t)
	s := newSigner(t, key, t0)
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	body := []byte(`{"organizationRoleNames":["member"]}`)
	c := sampleClaims()
	c.Body = BodyHash(body)
	got, err := v.Verify(sign(t, s, c), c.Method, c.Path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Body != c.Body || len(got.Body) != 43 {
		t.Errorf("Verify().Body = %q, want %q (43 characters)", got.Body, c.Body)
	}
	// SHA-256 of the empty input, a fixed value (FIPS 180-2), in base64url.
	if h := BodyHash(nil); h != "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" {
		t.Errorf("BodyHash(nil) = %q, want the SHA-256 of nothing", h)
	}
}

func TestCheckBody(t *testing.T) {
	body := []byte(`{"organizationRoleNames":["member"]}`)
	tests := []struct {
		name     string
		claim    string
		body     []byte
		required bool
		want     Reason // "" for accepted
	}{
		{"same body", BodyHash(body), body, false, ""},
		{"same body, required", BodyHash(body), body, true, ""},
		{"swapped body", BodyHash(body), []byte(`{"organizationRoleNames":["admin"]}`), true, ReasonBodyMismatch},
		{"one byte more", BodyHash(body), append(append([]byte(nil), body...), ' '), false, ReasonBodyMismatch},
		{"body dropped", BodyHash(body), nil, false, ReasonBodyMismatch},
		{"no b, no body", "", nil, false, ""},
		{"no b, a body the policy did not read", "", body, false, ""},
		{"no b, required", "", body, true, ReasonBodyMissing},
		{"no b, required, empty body", "", nil, true, ReasonBodyMissing},
	}
	for _, tc := range tests {
		c := Claims{Body: tc.claim}
		err := c.CheckBody(tc.body, tc.required)
		if got := ReasonOf(err); got != tc.want {
			t.Errorf("CheckBody(%s) = %v, want reason %q", tc.name, err, tc.want)
		}
	}
}

// flipLast returns the last base64url character of s with its unused low bits set, a non-canonical
// encoding of the same bytes that a strict decoder must refuse.
func flipLast(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	// 64 bytes encode to 86 characters; the last carries 4 bits and 2 unused ones.
	return string(alphabet[i|3])
}

func TestGenerateKeyLoadBack(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "decision.key"), filepath.Join(dir, "decision.pub")
	if err := GenerateKey(priv, pub); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	fi, err := os.Stat(priv)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("private key mode = %o, want 600", perm)
	}
	s, err := LoadSigner(priv, 5*time.Second)
	if err != nil {
		t.Fatalf("LoadSigner: %v", err)
	}
	s.Now = fixedClock(t0)
	v, err := LoadVerifier(pub)
	if err != nil {
		t.Fatalf("LoadVerifier: %v", err)
	}
	v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
	c := sampleClaims()
	if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); err != nil {
		t.Errorf("Verify(decision signed by the generated key): %v", err)
	}

	before, _ := os.ReadFile(priv)
	if err := GenerateKey(priv, filepath.Join(dir, "other.pub")); err == nil {
		t.Error("GenerateKey over an existing private key: nil error, want a refusal")
	}
	if err := GenerateKey(filepath.Join(dir, "other.key"), pub); err == nil {
		t.Error("GenerateKey over an existing public key: nil error, want a refusal")
	}
	if _, err := os.Stat(filepath.Join(dir, "other.key")); !os.IsNotExist(err) {
		t.Errorf("refused GenerateKey left other.key behind (stat err %v)", err)
	}
	if after, _ := os.ReadFile(priv); string(after) != string(before) {
		t.Error("refused GenerateKey changed the existing private key")
	}

	if cmd, err := exec.LookPath("openssl"); err == nil {
		// openssl reads our private key and derives the public key we wrote.
		out, err := exec.Command(cmd, "pkey", "-in", priv, "-pubout").Output()
		if err != nil {
			t.Fatalf("openssl pkey -pubout: %v", err)
		}
		want, _ := os.ReadFile(pub)
		if string(out) != string(want) {
			t.Errorf("openssl derived public key\n%s\nwant the written one\n%s", out, want)
		}
	}
}

// A pair written once by `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
const (
	opensslPrivPEM = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ6FoCFfCGO7odH481H55BRV/L9cV9rt/e4Hht5Jct/Q
-----END PRIVATE KEY-----
`
	opensslPubPEM = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAhvwAxzYCU7C44SFBn5r83qKBQaDUTpFtxC68f75IVSo=
-----END PUBLIC KEY-----
`
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOpenSSLKeys(t *testing.T) {
	dir := t.TempDir()
	type pair struct{ priv, pub string }
	pairs := map[string]pair{
		"fixed": {writeFile(t, dir, "fixed.key", opensslPrivPEM), writeFile(t, dir, "fixed.pub", opensslPubPEM)},
	}
	if cmd, err := exec.LookPath("openssl"); err == nil {
		priv, pub := filepath.Join(dir, "live.key"), filepath.Join(dir, "live.pub")
		if out, err := exec.Command(cmd, "genpkey", "-algorithm", "ed25519", "-out", priv).CombinedOutput(); err != nil {
			t.Fatalf("openssl genpkey: %v: %s", err, out)
		}
		if out, err := exec.Command(cmd, "pkey", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
			t.Fatalf("openssl pkey: %v: %s", err, out)
		}
		pairs["openssl now"] = pair{priv, pub}
	}
	for name, p := range pairs {
		s, err := LoadSigner(p.priv, 0)
		if err != nil {
			t.Fatalf("LoadSigner(%s): %v", name, err)
		}
		s.Now = fixedClock(t0)
		v, err := LoadVerifier(p.pub)
		if err != nil {
			t.Fatalf("LoadVerifier(%s): %v", name, err)
		}
		v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
		c := sampleClaims()
		if _, err := v.Verify(sign(t, s, c), c.Method, c.Path); err != nil {
			t.Errorf("%s: Verify: %v", name, err)
		}
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		signer        bool
	}{
		{"empty", "", false},
		{"not PEM", "hello", true},
		{"public key as private", opensslPubPEM, true},
		{"private key as public", opensslPrivPEM, false},
		{"two blocks", opensslPubPEM + opensslPubPEM, false},
		{"garbage DER", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", false},
		{"too large", opensslPubPEM + strings.Repeat("#", maxPEMBytes), false},
		{"EC key", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnGl+OfsgNIcC4W/FBnTnCh8ilG0O\nkrAdHcBY1t892q7Asem1lYRWZmpWKTEQgrDDuxKCaRiqb0NF60UqRYMbzw==\n-----END PUBLIC KEY-----\n", false},
	}
	for _, tc := range tests {
		p := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "_"), tc.content)
		var err error
		if tc.signer {
			_, err = LoadSigner(p, 0)
		} else {
			_, err = LoadVerifier(p)
		}
		if err == nil {
			t.Errorf("load %s: nil error, want one", tc.name)
		} else if !strings.HasPrefix(err.Error(), "decision: ") {
			t.Errorf("load %s: error %q lacks the package prefix", tc.name, err)
		}
	}
	if _, err := LoadVerifier(); err == nil {
		t.Error("LoadVerifier(): nil error, want one")
	}
	if _, err := LoadVerifier(filepath.Join(dir, "nope.pub")); err == nil {
		t.Error("LoadVerifier(missing file): nil error, want one")
	}
}

func BenchmarkSign(b *testing.B) {
	s := NewSigner(newKey(b), 10*time.Second)
	c := sampleClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	key := newKey(b)
	s := NewSigner(key, 30*time.Second)
	c := sampleClaims()
	toks := make([]string, 0, 4096)
	for range cap(toks) {
		toks = append(toks, sign(b, s, c))
	}
	v := NewVerifier([]ed25519.PublicKey{pubOf(key)})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(toks) {
			b.StopTimer()
			v = NewVerifier([]ed25519.PublicKey{pubOf(key)}) // a fresh replay cache
			i = 0
			b.StartTimer()
		}
		if _, err := v.Verify(toks[i], c.Method, c.Path); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// FuzzVerify: arbitrary input never panics and never verifies unless it is the untouched signed token.
func FuzzVerify(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s := NewSigner(priv, 10*time.Second)
	s.Now = fixedClock(t0)
	good, err := s.Sign(sampleClaims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(good + ".")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, tok string) {
		v := NewVerifier([]ed25519.PublicKey{pubOf(priv)})
		v.Now, v.Started = fixedClock(t0), t0.Add(-time.Minute)
		c := sampleClaims()
		if _, err := v.Verify(tok, c.Method, c.Path); err == nil && tok != good {
			t.Errorf("Verify(%q) accepted a token that is not the signed one", tok)
		}
	})
}
