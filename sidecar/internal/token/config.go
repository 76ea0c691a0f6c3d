package token

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults applied by New to the zero values of the knobs no flag sets. The settings an operator
// chooses (algorithms, clock skew, cache size, refresh interval) have no default here: their one
// default is sidecar.Default, and their zero value means zero.
const (
	DefaultRefreshMinGap = 10 * time.Second
	DefaultFetchTimeout  = 5 * time.Second
	DefaultMaxJWKSBytes  = 1 << 20
	DefaultMaxKeys       = 100

	// MaxTokenBytes bounds a raw token (DESIGN: at most 8 KiB); longer ones are token_too_large.
	MaxTokenBytes = 8 << 10
	// MaxClockSkew bounds ClockSkew: more would let expired tokens live noticeably longer.
	MaxClockSkew = 5 * time.Minute
)

// SupportedAlgorithms are the asymmetric JWS algorithms a key set can hold keys for. "none" and the
// HMAC family are deliberately absent: a public key must never double as a shared secret.
var SupportedAlgorithms = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Config says which tokens a Verifier accepts and how it keeps the issuers' keys.
type Config struct {
	// Issuers are the exact iss values accepted, e.g. "http://127.0.0.1:3001/oidc". There is no
	// normalisation: a trailing slash or another scheme is another issuer. Required.
	Issuers []string
	// APIResource is the app's API resource indicator (--api-resource): tokens with this audience are
	// organization_api (with organization_id) or global_api (without). "" accepts no such tokens.
	APIResource string
	// AdminResource is the indicator whose permissions only global roles grant (--admin-resource):
	// tokens with this audience and no organization_id are admin. "" accepts no admin tokens.
	AdminResource string
	// Algorithms are the accepted JWS algorithms, a non-empty subset of SupportedAlgorithms.
	Algorithms []string
	// ClockSkew is the one leeway for exp, nbf and iat, 0 to MaxClockSkew.
	ClockSkew time.Duration
	// CacheSize bounds the verified-claims LRU; 0 disables the cache.
	CacheSize int
	// JWKSURL maps an issuer to its key set URL; default issuer+"/jwks", where Logto publishes it.
	JWKSURL func(issuer string) string
	// RefreshInterval is how often each issuer's key set is refetched; positive.
	RefreshInterval time.Duration
	// RefreshMinGap is the least time between two refetches caused by unknown kids; default 10s.
	// A flood of tokens with made-up kids therefore costs the issuer at most one fetch per gap.
	RefreshMinGap time.Duration
	// FetchTimeout bounds one key set fetch, body included; default 5s.
	FetchTimeout time.Duration
	// MaxJWKSBytes bounds a key set body; a bigger one is refused whole. Default 1 MiB.
	MaxJWKSBytes int64
	// MaxKeys bounds the keys in a key set; a set with more is refused whole. Default 100.
	MaxKeys int
	// HTTPClient fetches key sets. Default: a clone of http.DefaultTransport that follows no redirects.
	// A client given here SHOULD NOT follow redirects either.
	HTTPClient *http.Client
	// Now is the clock for exp, nbf and iat; default time.Now. Key refresh timing uses the real clock.
	Now func() time.Time
	// Logger gets the key sets' fetch failures (at most one line per issuer per LogEvery) and
	// recoveries; default none.
	Logger *slog.Logger
}

// LogEvery is the least time between two logged fetch failures of one issuer; the lines between
// are counted in the next one's "suppressed".
const LogEvery = time.Minute

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Issuers = slices.Clone(c.Issuers)
	c.Algorithms = slices.Clone(c.Algorithms)
	if c.JWKSURL == nil {
		c.JWKSURL = func(issuer string) string { return issuer + "/jwks" }
	}
	if c.RefreshMinGap == 0 {
		c.RefreshMinGap = DefaultRefreshMinGap
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.MaxJWKSBytes == 0 {
		c.MaxJWKSBytes = DefaultMaxJWKSBytes
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once. Zero knobs that have defaults are fine.
func (c Config) Validate() error {
	var errs []error
	if len(c.Issuers) == 0 {
		errs = append(errs, errors.New("token: no issuers configured"))
	}
	for i, iss := range c.Issuers {
		u, err := url.Parse(iss)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			errs = append(errs, fmt.Errorf("token: issuer %q is not an absolute http(s) URL", iss))
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			errs = append(errs, fmt.Errorf("token: issuer %q has a query, fragment or user info", iss))
		case slices.Contains(c.Issuers[:i], iss):
			errs = append(errs, fmt.Errorf("token: issuer %q listed twice", iss))
		}
	}
	for _, r := range []struct{ name, v string }{{"api resource", c.APIResource}, {"admin resource", c.AdminResource}} {
		if strings.HasPrefix(r.v, orgAudiencePrefix) {
			errs = append(errs, fmt.Errorf("token: %s %q is an organization audience", r.name, r.v))
		}
	}
	if c.APIResource != "" && c.APIResource == c.AdminResource {
		errs = append(errs, errors.New("token: api resource and admin resource must differ"))
	}
	if len(c.Algorithms) == 0 {
		errs = append(errs, errors.New("token: no algorithms accepted"))
	}
	for _, alg := range c.Algorithms {
		if !slices.Contains(SupportedAlgorithms, alg) {
			errs = append(errs, fmt.Errorf("token: algorithm %q is not supported", alg))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"clock skew", c.ClockSkew}, {"refresh min gap", c.RefreshMinGap}, {"fetch timeout", c.FetchTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("token: %s is negative", d.name))
		}
	}
	if c.ClockSkew > MaxClockSkew {
		errs = append(errs, fmt.Errorf("token: clock skew %v is over %v", c.ClockSkew, MaxClockSkew))
	}
	if c.RefreshInterval <= 0 {
		errs = append(errs, errors.New("token: refresh interval is not positive"))
	}
	if c.CacheSize < 0 || c.MaxJWKSBytes < 0 || c.MaxKeys < 0 {
		errs = append(errs, errors.New("token: cache size and jwks size limits must not be negative"))
	}
	return errors.Join(errs...)
}
