package token

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// clock is a settable Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// TestClockSkewEdges checks exp > now - skew, nbf <= now + skew and iat <= now + skew at the last
// accepted second and the first refused one.
func TestClockSkewEdges(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t, k1)
	now := testNow.Unix()
	for _, skew := range []time.Duration{60 * time.Second, time.Second, 0} {
		cfg := srv.config()
		cfg.ClockSkew = skew
		cfg.CacheSize = 0
		v := newVerifier(t, cfg, true)
		s := int64(skew / time.Second)
		tests := []struct {
			name       string
			edits      map[string]any
			wantReason string
		}{
			{"exp at now-skew+1", map[string]any{"exp": now - s + 1}, ""},
			{"exp at now-skew", map[string]any{"exp": now - s}, ReasonExpired},
			{"nbf at now+skew", map[string]any{"nbf": now + s}, ""},
			{"nbf at now+skew+1", map[string]any{"nbf": now + s + 1}, ReasonNotYetValid},
			{"iat at now+skew", map[string]any{"iat": now + s}, ""},
			{"iat at now+skew+1", map[string]any{"iat": now + s + 1}, ReasonIssuedInFuture},
			{"iat fractional past the edge", map[string]any{"iat": float64(now+s) + 0.25}, ReasonIssuedInFuture},
		}
		for _, tc := range tests {
			tok := k1.sign(t, claimsFor(srv.issuer(), tc.edits))
			if got := verifyReason(t, v, tok); got != tc.wantReason {
				t.Errorf("skew %v, %s: reason = %q, want %q", skew, tc.name, got, tc.wantReason)
			}
		}
	}
}

// TestCacheExpiry checks that a cached verification ends with the same exp rule as a fresh one.
func TestCacheExpiry(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t, k1)
	clk := &clock{now: testNow}
	cfg := srv.config()
	cfg.Now = clk.Now
	v := newVerifier(t, cfg, true)
	exp := testNow.Unix() + 10
	tok := k1.sign(t, claimsFor(srv.issuer(), map[string]any{"exp": exp}))

	steps := []struct {
		at          time.Time
		wantReason  string
		wantHits    uint64
		wantEntries int
	}{
		{testNow, "", 0, 1},
		{time.Unix(exp+59, 999_999_999), "", 1, 1},
		{time.Unix(exp+60, 0), ReasonExpired, 1, 0},
		{testNow, "", 1, 1}, // the clock went back: verified afresh, cached again
	}
	for i, s := range steps {
		clk.set(s.at)
		if got := verifyReason(t, v, tok); got != s.wantReason {
			t.Fatalf("step %d at %v: reason = %q, want %q", i, s.at, got, s.wantReason)
		}
		if st := v.Stats(); st.CacheHits != s.wantHits || st.CacheEntries != s.wantEntries {
			t.Errorf("step %d: hits, entries = %d, %d, want %d, %d", i, st.CacheHits, st.CacheEntries, s.wantHits, s.wantEntries)
		}
	}
}

func TestCacheBounded(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t, k1)
	cfg := srv.config()
	cfg.CacheSize = 3
	v := newVerifier(t, cfg, true)
	for i := range 5 {
		tok := k1.sign(t, claimsFor(srv.issuer(), map[string]any{"jti": fmt.Sprint(i)}))
		if got := verifyReason(t, v, tok); got != "" {
			t.Fatalf("Verify(token %d) = %q", i, got)
		}
	}
	if got := v.Stats().CacheEntries; got != 3 {
		t.Errorf("Stats().CacheEntries = %d, want 3", got)
	}
}

// TestIssuerChoosesKeys checks that a token is verified only with the keys of the issuer its iss
// names, even when two issuers use the same kid.
func TestIssuerChoosesKeys(t *testing.T) {
	a, b := newECKey(t, "k1"), newECKey(t, "k1")
	srvA, srvB := newJWKSServer(t, a), newJWKSServer(t, b)
	cfg := srvA.config()
	cfg.Issuers = []string{srvA.issuer(), srvB.issuer()}
	urls := map[string]string{srvA.issuer(): srvA.URL + "/jwks", srvB.issuer(): srvB.URL + "/jwks"}
	cfg.JWKSURL = func(iss string) string { return urls[iss] }
	v := newVerifier(t, cfg, true)

	tests := []verifyTest{
		{name: "A signs for A", token: a.sign(t, claimsFor(srvA.issuer(), nil)), wantKind: Organization, wantOrg: "org1"},
		{name: "B signs for B", token: b.sign(t, claimsFor(srvB.issuer(), nil)), wantKind: Organization, wantOrg: "org1"},
		{name: "A signs for B", token: a.sign(t, claimsFor(srvB.issuer(), nil)), wantReason: ReasonSignature},
		{name: "B signs for A", token: b.sign(t, claimsFor(srvA.issuer(), nil)), wantReason: ReasonSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, v) })
	}
}

func TestClaims(t *testing.T) {
	k1 := newECKey(t, "k1")
	srv := newJWKSServer(t, k1)
	v := newVerifier(t, srv.config(), true)
	iat, exp := testNow.Unix()-60, testNow.Unix()+3600
	tests := []struct {
		name      string
		edits     map[string]any
		want      Claims
		wantExtra string // fmt of Extra
	}{
		{
			name:  "organization_api app token with a custom claim",
			edits: map[string]any{"aud": testAPI, "organization_id": "org7", "sub": "app1", "scope": "b a  b\ta", "extra": map[string]any{"n": 1.5}},
			want: Claims{
				Kind: OrganizationAPI, Issuer: srv.issuer(), Subject: "app1", ClientID: "app1", IsApp: true, HasScope: true,
				OrganizationID: "org7", Audience: testAPI, JTI: "jti-1", Scope: "b a  b\ta", Scopes: []string{"b", "a", "b\ta"},
				IssuedAt: iat, ExpiresAt: exp, KeyID: "k1",
			},
			wantExtra: "map[extra:map[n:1.5]]",
		},
		{
			name:  "organization token, nbf, no extra",
			edits: map[string]any{"nbf": iat},
			want: Claims{
				Kind: Organization, Issuer: srv.issuer(), Subject: "user1", ClientID: "app1", HasScope: true,
				OrganizationID: "org1", Audience: "urn:logto:organization:org1", JTI: "jti-1",
				Scope: "read:data write:data", Scopes: []string{"read:data", "write:data"},
				IssuedAt: iat, ExpiresAt: exp, NotBefore: iat, KeyID: "k1",
			},
			wantExtra: "map[]",
		},
		{
			name:  "scope empty, jti absent",
			edits: map[string]any{"aud": testAdmin, "scope": "", "jti": nil},
			want: Claims{
				Kind: Admin, Issuer: srv.issuer(), Subject: "user1", ClientID: "app1", HasScope: true,
				Audience: testAdmin, IssuedAt: iat, ExpiresAt: exp, KeyID: "k1",
			},
			wantExtra: "map[]",
		},
		{
			name:  "scope absent",
			edits: map[string]any{"aud": testAPI, "scope": nil},
			want: Claims{
				Kind: GlobalAPI, Issuer: srv.issuer(), Subject: "user1", ClientID: "app1",
				Audience: testAPI, JTI: "jti-1", IssuedAt: iat, ExpiresAt: exp, KeyID: "k1",
			},
			wantExtra: "map[]",
		},
		{
			name:  "Logto claims the fields cannot say exactly",
			edits: map[string]any{"jti": "", "nbf": 0, "exp": float64(exp) + 0.5, "iat": json.Number(fmt.Sprintf("%de0", iat))},
			want: Claims{
				Kind: Organization, Issuer: srv.issuer(), Subject: "user1", ClientID: "app1", HasScope: true,
				OrganizationID: "org1", Audience: "urn:logto:organization:org1",
				Scope: "read:data write:data", Scopes: []string{"read:data", "write:data"},
				IssuedAt: iat, ExpiresAt: exp, KeyID: "k1",
			},
			wantExtra: fmt.Sprintf("map[exp:%d.5 iat:%de0 jti: nbf:0]", exp, iat),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := mustJSON(t, claimsFor(srv.issuer(), tc.edits))
			c, err := v.Verify(context.Background(), k1.signJSON(t, mustJSON(t, k1.header()), payload))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			got := *c
			got.Extra = nil
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
				t.Errorf("Verify claims =\n%+v\nwant\n%+v", got, tc.want)
			}
			if got := fmt.Sprint(c.Extra); got != tc.wantExtra {
				t.Errorf("Extra = %s, want %s", got, tc.wantExtra)
			}
			if tc.wantExtra == "map[]" && c.Extra != nil {
				t.Errorf("Extra = %#v, want nil", c.Extra)
			}
			want, err := decodeObject(payload)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Map(); !reflect.DeepEqual(got, want) {
				t.Errorf("Map() =\n%#v\nwant the payload\n%#v", got, want)
			}
		})
	}
}

func TestSplitScopes(t *testing.T) {
	long := strings.Repeat("s1 s2 ", 100) + "s3"
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" ", []string{}},
		{"a", []string{"a"}},
		{"a b", []string{"a", "b"}},
		{"a  b ", []string{"a", "b"}},
		{" b a b a", []string{"b", "a"}},
		{"a\tb", []string{"a\tb"}},
		{"a\nb c", []string{"a\nb", "c"}},
		{"org:create org:create-x ORG:CREATE", []string{"org:create", "org:create-x", "ORG:CREATE"}},
		{"a\u00a0b", []string{"a\u00a0b"}},
		{long, []string{"s1", "s2", "s3"}},
	}
	for _, tc := range tests {
		if got := splitScopes(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitScopes(%.20q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Issuers: []string{"https://t.logto.app/oidc"}, APIResource: testAPI, AdminResource: testAdmin}.withSettings()
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr []string
	}{
		{"good", func(*Config) {}, nil},
		{"no issuers", func(c *Config) { c.Issuers = nil }, []string{"no issuers"}},
		{"relative issuer", func(c *Config) { c.Issuers = []string{"/oidc"} }, []string{"not an absolute"}},
		{"issuer with query", func(c *Config) { c.Issuers = []string{"https://a/oidc?x=1"} }, []string{"query"}},
		{"issuer twice", func(c *Config) { c.Issuers = []string{"https://a/oidc", "https://a/oidc"} }, []string{"twice"}},
		{"same resources", func(c *Config) { c.AdminResource = c.APIResource }, []string{"must differ"}},
		{"org audience as resource", func(c *Config) { c.APIResource = "urn:logto:organization:x" }, []string{"organization audience"}},
		{"HS256", func(c *Config) { c.Algorithms = []string{"HS256"} }, []string{`"HS256" is not supported`}},
		{"none", func(c *Config) { c.Algorithms = []string{"ES384", "none"} }, []string{`"none" is not supported`}},
		{"negative durations", func(c *Config) { c.FetchTimeout, c.ClockSkew = -1, -1 }, []string{"fetch timeout is negative", "clock skew is negative"}},
		{"huge skew", func(c *Config) { c.ClockSkew = time.Hour }, []string{"over 5m0s"}},
		{"no algorithms", func(c *Config) { c.Algorithms = []string{} }, []string{"no algorithms"}},
		{"no refresh", func(c *Config) { c.RefreshInterval = 0 }, []string{"refresh interval"}},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }, []string{"cache size"}},
		{"every problem at once", func(c *Config) { c.Issuers, c.Algorithms = nil, []string{"HS256"} }, []string{"no issuers", "HS256"}},
	}
	for _, tc := range tests {
		cfg := good
		tc.edit(&cfg)
		err := cfg.Validate()
		if (err != nil) != (tc.wantErr != nil) {
			t.Errorf("%s: Validate() = %v, want errors %q", tc.name, err, tc.wantErr)
			continue
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Validate() = %v, want it to mention %q", tc.name, err, w)
			}
		}
		if err != nil {
			if _, nerr := New(context.Background(), cfg); nerr == nil {
				t.Errorf("%s: New accepted an invalid config", tc.name)
			}
		}
	}
}

// TestCacheMemory bounds the memory one cached verification of a Logto org-level API token holds:
// about 100 bytes of LRU list element, 55 of LRU map slot, 224 of entry and the subject's and jti's
// bytes; the issuer, audience, client id, organization id and scopes are shared between entries.
func TestCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates tens of MB")
	}
	const n = 100_000
	srv := newJWKSServer(t, newECKey(t, "k1"))
	cfg := srv.config()
	cfg.CacheSize = n
	v := newVerifier(t, cfg, true)
	sig := b64(make([]byte, 96))
	hdr := b64([]byte(`{"alg":"ES384","typ":"at+jwt","kid":"UQn7VW3bYebH3R2lR2UwLK8p-ZBLAPXiBY31MVGSu5s"}`))
	key := &verifyKey{kid: "UQn7VW3bYebH3R2lR2UwLK8p-ZBLAPXiBY31MVGSu5s"}
	toks := make([]string, n)
	for i := range toks {
		// The shape of Logto's org-level API token: a user of one of 1000 organizations.
		toks[i] = hdr + "." + b64(mustJSON(t, map[string]any{
			"organization_id": fmt.Sprintf("nllrzhufp%03d", i%1000), "jti": fmt.Sprintf("CWYZ-h6VXmaqG26-%05d", i),
			"sub": fmt.Sprintf("ev66y8y%05d", i), "iat": testNow.Unix(), "exp": testNow.Unix() + 3600,
			"scope": "read:items write:items", "client_id": "ltb4wreigqynsue3rw9ik", "iss": srv.issuer(), "aud": testAPI,
		})) + "." + sig
	}
	before := heapInUse()
	for _, raw := range toks {
		p, err := parse(raw, v.cfg.Algorithms)
		if err != nil {
			t.Fatal(err)
		}
		e := &entry{key: key}
		if err := v.claims(&e.claims, p.payload); err != nil {
			t.Fatal(err)
		}
		v.cache.Add(cacheKey(raw), e)
	}
	perEntry := (heapInUse() - before) / n
	runtime.KeepAlive(toks)
	t.Logf("%d bytes per cached verification", perEntry)
	if perEntry > 450 {
		t.Errorf("a cached verification holds %d bytes, want at most 450", perEntry)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestInternerBound checks that equal values are shared and that a flood of distinct ones, as
// signed tokens of many organizations would bring, is retained only up to the byte budget.
func TestInternerBound(t *testing.T) {
	var in interner
	a := in.str(strings.Clone("app1"))
	if b := in.str(strings.Clone("app1")); unsafe.StringData(a) != unsafe.StringData(b) {
		t.Errorf("str(app1) twice gave two copies")
	}
	s1, l1 := in.scope(strings.Clone("read:a write:a"))
	s2, l2 := in.scope(strings.Clone("read:a write:a"))
	if unsafe.StringData(s1) != unsafe.StringData(s2) || &l1[0] != &l2[0] || !slices.Equal(l2, []string{"read:a", "write:a"}) {
		t.Errorf("scope twice = %q %q, %q %q, want one shared copy", s1, l1, s2, l2)
	}
	long := strings.Repeat("x", 4000)
	for i := range 2 * internBudget / 4000 {
		in.str(fmt.Sprintf("%d%s", i, long))
		in.scope(fmt.Sprintf("%d %s", i, long))
	}
	for i := range internBudget / internOverhead { // and small ones into what is left
		in.str(fmt.Sprint(i))
	}
	if in.spent > internBudget {
		t.Errorf("interner spent %d bytes, over its budget %d", in.spent, internBudget)
	}
	late := strings.Clone("app2")
	if got := in.str(late); unsafe.StringData(got) != unsafe.StringData(late) || in.strs["app2"] != "" {
		t.Errorf("str on a full interner did not return its argument unretained")
	}
}
