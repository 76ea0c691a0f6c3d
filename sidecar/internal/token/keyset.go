package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// verifyKey is one usable public key from an issuer's key set.
type verifyKey struct {
	kid  string
	pub  crypto.PublicKey
	alg  string   // the key's own alg; "" means any accepted algorithm of its type
	p384 *p384Key // ES384's faster verification, for a P-384 key (p384.go)
}

// allows reports whether a signature with alg may be checked with k: alg must fit the key's type
// and curve (no RS256 header on an EC key) and the key's own alg when it names one.
func (k *verifyKey) allows(alg string) bool {
	return (k.alg == "" || k.alg == alg) && algFits(alg, k.pub)
}

func algFits(alg string, pub crypto.PublicKey) bool {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	}
	return false
}

// minRSABits refuses RSA keys too short to trust.
const minRSABits = 2048

// keySet is one issuer's signing keys, an oidc.KeySet that closes go-oidc's RemoteKeySet gaps: the
// fetch is bounded in time and size, an unknown kid refetches at most once per RefreshMinGap (with
// concurrent callers sharing one fetch), a timer refetches, and a failed or empty fetch keeps the
// last good keys. It never looks at jku, x5u, jwk or x5c: keys come only from the configured URL.
type keySet struct {
	issuer  string
	url     string
	cfg     *Config
	stats   *counters
	baseCtx context.Context // the Verifier's lifetime; fetches never use a caller's context

	keys   atomic.Pointer[map[string]*verifyKey] // nil until the first good fetch
	loaded chan struct{}                         // closed at the first good fetch

	storeMu     sync.Mutex // orders stores, so that unchanged keys keep their identity
	flight      singleflight.Group
	gapMu       sync.Mutex
	lastUnknown time.Time // when an unknown kid last caused a fetch (monotonic clock)

	fetched, failed atomic.Uint64 // this issuer's fetches that installed keys, and that failed

	statusMu   sync.Mutex
	lastErr    error     // the last fetch's failure, nil after a good one
	lastLogged time.Time // when a failure was last logged
	suppressed int       // failures not logged since
}

var _ oidc.KeySet = (*keySet)(nil)

func newKeySet(ctx context.Context, issuer string, cfg *Config, stats *counters) *keySet {
	return &keySet{issuer: issuer, url: cfg.JWKSURL(issuer), cfg: cfg, stats: stats, baseCtx: ctx, loaded: make(chan struct{})}
}

// status says what is wrong with the set: "" when keys are loaded and the last fetch worked.
func (ks *keySet) status() string {
	ks.statusMu.Lock()
	defer ks.statusMu.Unlock()
	switch {
	case !ks.ready() && ks.lastErr == nil:
		return "no keys loaded yet"
	case !ks.ready():
		return "no keys loaded: " + ks.lastErr.Error()
	case ks.lastErr != nil:
		return "serving the last good keys; last fetch failed: " + ks.lastErr.Error()
	}
	return ""
}

// note records a fetch's outcome and logs it: a failure at most once per LogEvery (the others
// counted), a recovery always. next is when the set will be fetched again, at the latest.
func (ks *keySet) note(err error, next time.Duration) {
	ks.statusMu.Lock()
	defer ks.statusMu.Unlock()
	log := ks.cfg.Logger
	if err == nil {
		if ks.lastErr != nil {
			log.Info("jwks fetch recovered", "issuer", ks.issuer, "url", ks.url)
		}
		ks.lastErr, ks.suppressed = nil, 0
		return
	}
	ks.lastErr = err
	if !ks.lastLogged.IsZero() && time.Since(ks.lastLogged) < LogEvery {
		ks.suppressed++
		return
	}
	level := slog.LevelWarn // the last good keys keep serving
	if !ks.ready() {
		level = slog.LevelError // tokens of this issuer are 503
	}
	log.Log(ks.baseCtx, level, "jwks fetch failed", "issuer", ks.issuer, "url", ks.url, "err", err.Error(),
		"keys_loaded", ks.ready(), "next_try", next.String(), "suppressed", ks.suppressed)
	ks.lastLogged, ks.suppressed = time.Now(), 0
}

// ready reports whether keys were ever loaded.
func (ks *keySet) ready() bool { return ks.keys.Load() != nil }

// current returns the key with kid in the current set, or nil.
func (ks *keySet) current(kid string) *verifyKey {
	if m := ks.keys.Load(); m != nil {
		return (*m)[kid]
	}
	return nil
}

// key returns the key with kid, refetching the set once (rate-limited) when kid is unknown. It
// returns ErrNotReady at once when no set was ever loaded (run keeps trying to load one) and an
// *Error with unknown_key when the kid is still unknown after the refetch.
func (ks *keySet) key(ctx context.Context, kid string) (*verifyKey, error) {
	if !ks.ready() {
		return nil, ErrNotReady
	}
	if k := ks.current(kid); k != nil {
		return k, nil
	}
	if err := ks.refreshUnknown(ctx); err != nil {
		return nil, err
	}
	if k := ks.current(kid); k != nil {
		return k, nil
	}
	return nil, fail(ReasonUnknownKey, "no key with this kid")
}

// refreshUnknown refetches the set for an unknown kid unless one such refetch happened within
// RefreshMinGap. Callers arriving while a fetch runs wait for it instead of starting another.
func (ks *keySet) refreshUnknown(ctx context.Context) error {
	ch := ks.flight.DoChan("unknown-kid", func() (any, error) {
		ks.gapMu.Lock()
		if !ks.lastUnknown.IsZero() && time.Since(ks.lastUnknown) < ks.cfg.RefreshMinGap {
			ks.gapMu.Unlock()
			return nil, nil
		}
		ks.lastUnknown = time.Now()
		ks.gapMu.Unlock()
		ks.stats.unknownKIDRefreshes.Add(1)
		err := ks.refresh() // a failure keeps the old keys; the caller sees unknown_key
		ks.note(err, ks.cfg.RefreshInterval)
		return nil, err
	})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("token: waiting for jwks: %w", ctx.Err())
	}
}

// run loads the set now, retries with backoff (1s doubling up to 30s) until the first success,
// then refreshes every RefreshInterval until ctx ends.
func (ks *keySet) run(ctx context.Context) {
	maxBackoff := min(30*time.Second, ks.cfg.RefreshInterval)
	backoff := min(time.Second, maxBackoff)
	for {
		wait := ks.cfg.RefreshInterval
		err := ks.refresh()
		if err != nil && !ks.ready() {
			wait, backoff = backoff, min(2*backoff, maxBackoff)
		}
		ks.note(err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh fetches the set and installs it when it holds at least one usable key.
func (ks *keySet) refresh() error {
	ks.stats.jwksFetches.Add(1)
	keys, err := ks.fetch()
	if err != nil {
		ks.stats.jwksFetchErrors.Add(1)
		ks.failed.Add(1)
		return err
	}
	ks.store(keys)
	ks.fetched.Add(1)
	return nil
}

func (ks *keySet) fetch() ([]*verifyKey, error) {
	body, err := getDocument(ks.baseCtx, ks.cfg, "jwks", ks.url, "application/jwk-set+json, application/json", ks.cfg.MaxJWKSBytes)
	if err != nil {
		return nil, err
	}
	return parseKeySet(body, ks.cfg.Algorithms, ks.cfg.MaxKeys)
}

// getDocument GETs url within FetchTimeout and returns its 200 body of at most max bytes; what
// names the document in errors.
func getDocument(ctx context.Context, cfg *Config, what, url, accept string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("token: %s request: %w", what, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token: fetch %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token: fetch %s: status %d", what, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("token: read %s: %w", what, err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("token: %s over %d bytes", what, max)
	}
	return body, nil
}

// parseKeySet returns the usable keys of a JWKS document. Malformed or unusable keys are skipped
// rather than failing the set; a set with no usable key, or more than maxKeys keys, is an error.
func parseKeySet(body []byte, algs []string, maxKeys int) ([]*verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("token: jwks is not a JSON key set")
	}
	if len(set.Keys) > maxKeys {
		return nil, fmt.Errorf("token: jwks has %d keys, over %d", len(set.Keys), maxKeys)
	}
	var keys []*verifyKey
	seen := make(map[string]bool, len(set.Keys))
	for _, raw := range set.Keys {
		k := usableKey(raw, algs)
		if k == nil || seen[k.kid] {
			continue // a repeated kid is ambiguous: the first one wins
		}
		seen[k.kid] = true
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("token: jwks has no usable signing key")
	}
	return keys, nil
}

func usableKey(raw json.RawMessage, algs []string) *verifyKey {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return nil
	}
	if jwk.KeyID == "" || len(jwk.KeyID) > maxKeyIDBytes || !printableASCII(jwk.KeyID) {
		return nil
	}
	pub := jwk.Public().Key // a private key published by mistake is used for its public half only
	if r, ok := pub.(*rsa.PublicKey); ok && r.N.BitLen() < minRSABits {
		return nil
	}
	k := &verifyKey{kid: jwk.KeyID, pub: pub, alg: jwk.Algorithm}
	// ORGAUTHZ_BENCH_STDLIB_ECDSA=1 keeps crypto/ecdsa, for tests/bench to measure the tables' gain.
	if ec, ok := pub.(*ecdsa.PublicKey); ok && ec.Curve == elliptic.P384() && os.Getenv("ORGAUTHZ_BENCH_STDLIB_ECDSA") != "1" {
		k.p384 = newP384Key(ec)
	}
	if k.alg != "" {
		if !slices.Contains(algs, k.alg) || !algFits(k.alg, pub) {
			return nil
		}
		return k
	}
	for _, alg := range algs {
		if algFits(alg, pub) {
			return k
		}
	}
	return nil
}

// store installs keys as the current set. A key unchanged since the last set keeps its identity,
// which is how cached verifications stay valid across refreshes yet die with their key.
func (ks *keySet) store(keys []*verifyKey) {
	ks.storeMu.Lock()
	defer ks.storeMu.Unlock()
	m := make(map[string]*verifyKey, len(keys))
	for _, k := range keys {
		if old := ks.current(k.kid); old != nil && old.alg == k.alg && sameKey(old.pub, k.pub) {
			k = old
		}
		m[k.kid] = k
	}
	if ks.keys.Swap(&m) == nil {
		close(ks.loaded)
	}
}

func sameKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// verified looks up the key p's kid names (refetching, rate-limited, when it is unknown) and checks
// p's signature with it: the one key lookup and the one signature check of a token.
func (ks *keySet) verified(ctx context.Context, p *parsed) (*verifyKey, error) {
	k, err := ks.key(ctx, p.Kid)
	if err != nil {
		return nil, err
	}
	if !k.allows(p.Alg) {
		return nil, fail(ReasonAlgorithm, "alg %s does not fit key %.40q", p.Alg, k.kid)
	}
	if !k.verify(p.Alg, p.signingInput, p.signature) {
		return nil, fail(ReasonSignature, "signature does not verify with key %.40q", k.kid)
	}
	return k, nil
}

// jwsHashes are the digests of the supported algorithms (RFC 7518 section 3).
var jwsHashes = map[string]crypto.Hash{
	"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512,
	"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512,
	"PS256": crypto.SHA256, "PS384": crypto.SHA384, "PS512": crypto.SHA512,
}

// verify checks a JWS signature over signingInput with k, for an alg that k.allows: ECDSA as the
// fixed-length R||S of RFC 7518 3.4, RSASSA-PKCS1-v1_5, or RSASSA-PSS with a salt as long as the hash.
func (k *verifyKey) verify(alg, signingInput string, sig []byte) bool {
	h, ok := jwsHashes[alg]
	if !ok {
		return false
	}
	d := h.New()
	d.Write([]byte(signingInput))
	digest := d.Sum(nil)
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		if k.p384 != nil {
			return k.p384.verify(digest, sig)
		}
		n := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		return ecdsa.Verify(pub, digest, r, s)
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "PS") {
			return rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
	}
	return false
}

// VerifySignature implements oidc.KeySet for go-oidc's verifier: it parses jwt as this package
// does (so only access tokens, typ at+jwt, with an accepted alg), checks its signature with the
// key its kid names and returns the payload.
func (ks *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	p, err := parse(jwt, ks.cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	if _, err := ks.verified(ctx, p); err != nil {
		return nil, err
	}
	return p.payloadBytes, nil
}
