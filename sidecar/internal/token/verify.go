package token

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Verifier verifies Logto access tokens; it is safe for concurrent use.
type Verifier struct {
	cfg     Config
	issuers map[string]*issuer
	cache   *lru.Cache[[sha256.Size]byte, *entry] // nil when disabled
	stats   counters
	intern  interner
}

// issuer is one accepted issuer: its key set.
type issuer struct {
	keys *keySet
}

// entry is a cached verification. It is valid until its claims expire and while its key is still
// the one the issuer's current set holds under its kid.
type entry struct {
	claims Claims // by value: one allocation per cached verification
	keys   *keySet
	key    *verifyKey
}

type counters struct {
	cacheHits, cacheMisses       atomic.Uint64
	jwksFetches, jwksFetchErrors atomic.Uint64
	unknownKIDRefreshes          atomic.Uint64
	verified, rejected           atomic.Uint64
}

// Stats are counters since New, for metrics.
type Stats struct {
	CacheHits           uint64 // Verify answered from the cache
	CacheMisses         uint64 // Verify ran the full verification
	CacheEntries        int    // verifications cached now
	JWKSFetches         uint64 // key set fetches started, every issuer
	JWKSFetchErrors     uint64 // fetches that failed or brought no usable key; the old keys stayed
	UnknownKIDRefreshes uint64 // fetches caused by an unknown kid
	Verified            uint64 // full verifications that succeeded
	Rejected            uint64 // Verify calls that returned an error
}

// New validates cfg, applies its defaults and starts loading every issuer's keys in the
// background; Verify answers ErrNotReady for an issuer until its keys are loaded. The refresh
// loops and every fetch end with ctx.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v := &Verifier{cfg: cfg, issuers: make(map[string]*issuer, len(cfg.Issuers))}
	for _, s := range append([]string{cfg.APIResource, cfg.AdminResource}, cfg.Issuers...) {
		if s != "" {
			v.intern.str(s)
		}
	}
	if cfg.CacheSize > 0 {
		c, err := lru.New[[sha256.Size]byte, *entry](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("token: cache: %w", err)
		}
		v.cache = c
	}
	for _, iss := range cfg.Issuers {
		ks := newKeySet(ctx, iss, &v.cfg, &v.stats)
		v.issuers[iss] = &issuer{keys: ks}
		go ks.run(ctx)
	}
	return v, nil
}

// Ready reports whether keys were loaded at least once for some issuer. Issuers are independent:
// a token of an issuer with keys is verified while another issuer has none (its tokens get
// ErrNotReady).
func (v *Verifier) Ready() bool {
	for _, is := range v.issuers {
		if is.keys.ready() {
			return true
		}
	}
	return false
}

// Status says per issuer what is wrong with its keys, "" when nothing is.
func (v *Verifier) Status() map[string]string {
	out := make(map[string]string, len(v.issuers))
	for iss, is := range v.issuers {
		out[iss] = is.keys.status()
	}
	return out
}

// Stats returns the counters.
func (v *Verifier) Stats() Stats {
	s := Stats{
		CacheHits:           v.stats.cacheHits.Load(),
		CacheMisses:         v.stats.cacheMisses.Load(),
		JWKSFetches:         v.stats.jwksFetches.Load(),
		JWKSFetchErrors:     v.stats.jwksFetchErrors.Load(),
		UnknownKIDRefreshes: v.stats.unknownKIDRefreshes.Load(),
		Verified:            v.stats.verified.Load(),
		Rejected:            v.stats.rejected.Load(),
	}
	if v.cache != nil {
		s.CacheEntries = v.cache.Len()
	}
	return s
}

// Fetches are one issuer's key set fetches since New.
type Fetches struct {
	OK     uint64 // fetches that installed keys
	Failed uint64 // fetches that failed or brought no usable key
}

// Fetches returns each issuer's key set fetches.
func (v *Verifier) Fetches() map[string]Fetches {
	out := make(map[string]Fetches, len(v.issuers))
	for iss, is := range v.issuers {
		out[iss] = Fetches{OK: is.keys.fetched.Load(), Failed: is.keys.failed.Load()}
	}
	return out
}

// Verify verifies raw, a compact JWS access token, and returns its claims. A refused token is an
// *Error (401); ErrNotReady (503) means the token's issuer has no keys loaded yet. Other errors
// (the caller's ctx ended while keys were being fetched) are faults. The returned Claims are
// shared: never modify them.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > MaxTokenBytes {
		v.stats.rejected.Add(1)
		return nil, fail(ReasonTooLarge, "token is %d bytes, over %d", len(raw), MaxTokenBytes)
	}
	var key [sha256.Size]byte
	if v.cache != nil {
		key = cacheKey(raw)
		if e, ok := v.cache.Get(key); ok {
			if v.cfg.Now().Before(v.expiry(e.claims.ExpiresAt)) && e.keys.current(e.key.kid) == e.key {
				v.stats.cacheHits.Add(1)
				return &e.claims, nil
			}
			v.cache.Remove(key) // expired or its key is gone: verify afresh for the right reason
		}
		v.stats.cacheMisses.Add(1)
	}
	e, err := v.verify(ctx, raw)
	if err != nil {
		v.stats.rejected.Add(1)
		return nil, err
	}
	v.stats.verified.Add(1)
	if v.cache != nil {
		v.cache.Add(key, e)
	}
	return &e.claims, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*entry, error) {
	p, err := parse(raw, v.cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	// The issuer is decided from the unverified iss to pick the key set: a signature by that
	// issuer's key then proves iss, which is exactly a configured issuer.
	iss, err := stringClaim(p.payload, "iss", true)
	if err != nil {
		return nil, err
	}
	is, ok := v.issuers[iss]
	if !ok {
		return nil, fail(ReasonIssuer, "issuer %.100q not accepted", iss)
	}
	k, err := is.keys.verified(ctx, p)
	if err != nil {
		return nil, err
	}
	e := &entry{keys: is.keys, key: k}
	if err := v.claims(&e.claims, p.payload); err != nil {
		return nil, err
	}
	e.claims.KeyID = k.kid
	return e, nil
}

// claims checks the verified payload's types, times and audience and fills c.
func (v *Verifier) claims(c *Claims, m map[string]any) error {
	var iss, sub, clientID, jti, scope, orgID string
	for _, s := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"iss", &iss, true}, {"sub", &sub, true}, {"client_id", &clientID, true}, {"jti", &jti, false},
		{"scope", &scope, false}, {"organization_id", &orgID, false},
	} {
		val, err := stringClaim(m, s.name, s.required)
		if err != nil {
			return err
		}
		*s.dst = val
	}
	_, hasOrgID := m["organization_id"]
	if hasOrgID && !validOrganizationID(orgID) {
		return fail(ReasonClaims, "organization_id is not an organization id")
	}
	exp, _, err := timeClaim(m, "exp", true, false)
	if err != nil {
		return err
	}
	iat, _, err := timeClaim(m, "iat", true, true)
	if err != nil {
		return err
	}
	nbf, hasNBF, err := timeClaim(m, "nbf", false, true)
	if err != nil {
		return err
	}
	now, skew := v.cfg.Now(), v.cfg.ClockSkew
	switch {
	case !now.Before(v.expiry(exp)): // exp > now - skew
		return fail(ReasonExpired, "expired at %d", exp)
	case hasNBF && time.Unix(nbf, 0).After(now.Add(skew)):
		return fail(ReasonNotYetValid, "not valid before %d", nbf)
	case time.Unix(iat, 0).After(now.Add(skew)):
		return fail(ReasonIssuedInFuture, "issued at %d", iat)
	}
	aud, ok := m["aud"].(string) // an array, even of one, is refused: Logto always sends a string
	if !ok {
		return fail(ReasonAudience, "aud is not a single string")
	}
	kind, ctxOrg, err := v.classify(aud, hasOrgID, orgID)
	if err != nil {
		return err
	}

	// Share what recurs across tokens; an Organization token's org id is a part of its audience.
	iss, clientID = v.intern.str(iss), v.intern.str(clientID)
	if sub == clientID {
		sub = clientID
	}
	if kind == Organization {
		aud = v.intern.str(aud)
		ctxOrg = aud[len(orgAudiencePrefix):]
	} else {
		aud, ctxOrg = v.intern.str(aud), v.intern.str(ctxOrg)
	}
	_, hasScope := m["scope"]
	scope, scopes := v.intern.scope(scope)
	*c = Claims{
		Kind:           kind,
		Issuer:         iss,
		Subject:        sub,
		ClientID:       clientID,
		IsApp:          sub == clientID,
		HasScope:       hasScope,
		OrganizationID: ctxOrg,
		Audience:       aud,
		JTI:            jti,
		Scope:          scope,
		Scopes:         scopes,
		IssuedAt:       iat,
		ExpiresAt:      exp,
		NotBefore:      nbf,
		Extra:          extraClaims(m, jti, nbf),
	}
	return nil
}

// extraClaims returns what of the verified payload m the typed fields of Claims do not hold
// exactly, nil when that is nothing.
func extraClaims(m map[string]any, jti string, nbf int64) map[string]any {
	var extra map[string]any
	keep := func(name string) {
		if extra == nil {
			extra = make(map[string]any, 1)
		}
		extra[name] = m[name]
	}
	for name := range m {
		if !slices.Contains(logtoClaims[:], name) {
			keep(name)
		}
	}
	if _, ok := m["jti"]; ok && jti == "" {
		keep("jti")
	}
	if _, ok := m["nbf"]; ok && nbf == 0 {
		keep("nbf")
	}
	for _, name := range []string{"iat", "exp", "nbf"} {
		// A time spelled 1.7e9, 1.5 or -0 reads as whole seconds that print differently.
		if n, ok := m[name].(json.Number); ok && !isPlainInt(string(n)) {
			keep(name)
		}
	}
	return extra
}

// logtoClaims are the claims Claims holds in typed fields.
var logtoClaims = [...]string{"jti", "sub", "iat", "exp", "nbf", "scope", "client_id", "iss", "aud", "organization_id"}

// isPlainInt reports whether s is a non-negative decimal integer as strconv.FormatInt prints it.
func isPlainInt(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// expiry is when a token that expires at exp stops being accepted: exp plus the clock skew.
func (v *Verifier) expiry(exp int64) time.Time { return time.Unix(exp, 0).Add(v.cfg.ClockSkew) }

// classify maps the audience to a token kind (DESIGN "Token kinds") and returns the org context.
func (v *Verifier) classify(aud string, hasOrgID bool, orgID string) (Kind, string, error) {
	if id, ok := strings.CutPrefix(aud, orgAudiencePrefix); ok {
		if !validOrganizationID(id) {
			return "", "", fail(ReasonAudience, "organization audience with a malformed id")
		}
		if hasOrgID {
			return "", "", fail(ReasonAudience, "organization audience with organization_id")
		}
		return Organization, id, nil
	}
	switch {
	case aud == "":
	case aud == v.cfg.APIResource && hasOrgID:
		return OrganizationAPI, orgID, nil
	case aud == v.cfg.APIResource:
		return GlobalAPI, "", nil
	case aud == v.cfg.AdminResource && !hasOrgID:
		return Admin, "", nil
	}
	return "", "", fail(ReasonAudience, "audience %.100q not accepted", aud)
}

// validOrganizationID matches ^[0-9a-z]{1,32}$, the shape of Logto's organization ids.
func validOrganizationID(id string) bool {
	if id == "" || len(id) > maxOrganizationIDSize {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// cacheKey is the SHA-256 of the exact token: a fixed 32 bytes per entry instead of the token, and
// collision resistant, so a hit means these very bytes were verified.
func cacheKey(raw string) [sha256.Size]byte {
	// The digest only reads the bytes; viewing the string without a copy keeps the hit path free
	// of allocations.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// interner shares equal strings between cached verifications: the issuer, the audience, the
// application, the organization and the scope set recur across many tokens. It is bounded by a
// byte budget; once that is spent new values are returned as given.
type interner struct {
	mu     sync.Mutex
	spent  int
	strs   map[string]string
	scopes map[string]scopeSet
}

// scopeSet is a scope claim and its split, whose elements share the claim's bytes.
type scopeSet struct {
	claim string
	split []string
}

const (
	internBudget   = 1 << 20 // bytes, counting internOverhead per value
	internOverhead = 64      // a map slot and the value's headers, roughly
)

// str returns the shared copy of s.
func (in *interner) str(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if t, ok := in.strs[s]; ok {
		return t
	}
	if in.spend(len(s)) {
		if in.strs == nil {
			in.strs = make(map[string]string)
		}
		in.strs[s] = s
	}
	return s
}

// scope returns the shared copy of a scope claim and its split (splitScopes).
func (in *interner) scope(claim string) (string, []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if set, ok := in.scopes[claim]; ok {
		return set.claim, set.split
	}
	split := splitScopes(claim)
	if in.spend(len(claim) + len(split)*16) {
		if in.scopes == nil {
			in.scopes = make(map[string]scopeSet)
		}
		in.scopes[claim] = scopeSet{claim, split}
	}
	return claim, split
}

func (in *interner) spend(n int) bool {
	if in.spent+n+internOverhead > internBudget {
		return false
	}
	in.spent += n + internOverhead
	return true
}
