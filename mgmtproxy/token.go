package mgmtproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"
)

// Token source tuning.
const (
	// shortLived is the lifetime assumed for a token whose response had no expires_in, or one ≤ 0.
	shortLived = 60 * time.Second
	// A lifetime Logto states is clamped to [minLifetime, maxLifetime]: a token endpoint answering
	// 1 s or a century must neither make mgmtproxy fetch on every request nor keep a token forever.
	minLifetime = 10 * time.Second
	maxLifetime = 24 * time.Hour
	// minFetchInterval: a token is never replaced sooner after its fetch, whatever its lifetime or a
	// 401 says, so a misbehaving Logto gets at most one token request per interval.
	minFetchInterval = 10 * time.Second
	// maxRefreshMargin is how long before expiry a cached token is replaced at most; a quarter of the
	// token's lifetime when that is shorter.
	maxRefreshMargin = 30 * time.Second
	// Backoff after a failed fetch: doubling from minBackoff up to maxBackoff, or the Retry-After of a
	// 429 or 5xx answer up to maxRetryAfter.
	minBackoff    = time.Second
	maxBackoff    = time.Minute
	maxRetryAfter = 5 * time.Minute
)

// errTokenUnavailable marks every failure to get a usable M2M token: mgmtproxy answers 502 (504 when
// the token endpoint timed out) and calls nothing.
var errTokenUnavailable = errors.New("mgmtproxy: m2m token unavailable")

// errM2MForbidden: Logto issued a token without the "all" scope, or answered 403 auth.forbidden to
// one: the M2M app lacks the Management API role, and no call can succeed until an operator adds it.
var errM2MForbidden = errors.New(`the M2M app has no Management API access: in Logto Console, assign it a machine-to-machine role with the Management API permission "all"`)

// tokenSource is an oauth2.TokenSource for the M2M app's Management API token: cached until shortly
// before expiry, fetched by one caller at a time, and after a failure not fetched again before the
// backoff has passed, so a failing Logto is not hammered. Its errors wrap errTokenUnavailable and never
// contain the token or the secret.
type tokenSource struct {
	conf    clientcredentials.Config
	ctx     context.Context // carries the HTTP client for oauth2 (oauth2.HTTPClient)
	timeout time.Duration
	now     func() time.Time
	fetched func(ok bool) // metrics hook, called once per fetch
	log     *slog.Logger

	group singleflight.Group

	mu        sync.Mutex
	tok       *oauth2.Token
	fetchedAt time.Time // when tok was fetched; it is kept at least minFetchInterval, unless a 401 refuted it
	refutedAt time.Time // when a 401 last forced a refetch: at most one per minFetchInterval
	refuted   bool      // Logto refused tok with a 401: replace it even if it is young
	refresh   time.Time // when tok should be replaced
	retryAt   time.Time // no fetch before this after a failure
	failures  int
	lastErr   error
}

// Token returns the cached token or fetches one.
func (s *tokenSource) Token() (*oauth2.Token, error) { return s.TokenContext(context.Background()) }

// TokenContext is Token for a caller that gives up when ctx ends; the fetch itself goes on for others.
func (s *tokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if tok, err, done := s.cached(); done {
		return tok, err
	}
	ch := s.group.DoChan("token", func() (any, error) {
		// Another flight may have finished between cached() and DoChan: check again, so concurrent
		// first requests cause exactly one fetch.
		if tok, err, done := s.cached(); done {
			return tok, err
		}
		return s.fetch()
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*oauth2.Token), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", errTokenUnavailable, ctx.Err())
	}
}

// cached returns the cached token, or the last error while backing off; done is false when a fetch is due.
func (s *tokenSource) cached() (tok *oauth2.Token, err error, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.tok != nil && (now.Before(s.refresh) || (!s.refuted && now.Before(s.fetchedAt.Add(minFetchInterval)))) {
		return s.tok, nil, true
	}
	if now.Before(s.retryAt) {
		return nil, fmt.Errorf("%w: backing off until %s after: %w", errTokenUnavailable, s.retryAt.UTC().Format(time.RFC3339), s.lastErr), true
	}
	return nil, nil, false
}

func (s *tokenSource) fetch() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	start := s.now()
	s.mu.Lock()
	conf := s.conf // setSecret may replace the secret
	s.mu.Unlock()
	tok, err := conf.Token(ctx)
	if s.fetched != nil {
		s.fetched(err == nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		return nil, s.failLocked(err)
	}
	if scope, _ := tok.Extra("scope").(string); !slices.Contains(strings.Fields(scope), "all") {
		return nil, s.failLocked(fmt.Errorf("%w (token granted scope %.100q)", errM2MForbidden, scope))
	}
	// The lifetime is read from expires_in itself, bounded before any arithmetic: oauth2's Expiry
	// would lie in the past for a negative one.
	lifetime := shortLived
	if secs, ok := tok.Extra("expires_in").(float64); ok && secs > 0 {
		lifetime = min(max(time.Duration(min(secs, maxLifetime.Seconds()))*time.Second, minLifetime), maxLifetime)
	}
	tok.Expiry = start.Add(lifetime)
	// Logto's Management API takes a Bearer token; never put whatever token_type an answer named in
	// the Authorization header (oauth2.Transport would).
	tok.TokenType = "Bearer"
	margin := min(maxRefreshMargin, lifetime/4)
	s.tok, s.fetchedAt, s.refresh, s.refuted = tok, start, tok.Expiry.Add(-margin), false
	s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
	return tok, nil
}

// setSecret replaces the M2M secret for the next fetches. The cached token stays (Logto keeps it valid);
// a backoff after a failure ends, so a fixed secret is tried at once.
func (s *tokenSource) setSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conf.ClientSecret = secret
	s.retryAt = time.Time{}
}

// failLocked records a failure to get a usable token: no token, no fetch before the backoff has
// passed (err's Retry-After, if any). It returns the error callers get until then.
func (s *tokenSource) failLocked(err error) error {
	s.tok = nil
	s.failures++
	s.retryAt = s.now().Add(backoff(s.failures, err))
	err = cleanTokenError(err)
	s.lastErr = err
	if errors.Is(err, errM2MForbidden) && s.log != nil {
		s.log.Error("Logto refuses mgmtproxy's M2M app", "app_id", s.conf.ClientID,
			"resource", s.conf.EndpointParams.Get("resource"), "err", err, "retry_at", s.retryAt.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%w: %w", errTokenUnavailable, err)
}

// invalidate marks the cached token for replacement if it is still bearer, the token Logto just
// refused with a 401: the next Token call fetches a new one, however young the token (Logto rotated
// its keys, or revoked it), but a 401 forces at most one fetch per minFetchInterval, so a Logto that
// refuses every token is not asked for one on every request. A token another request already
// replaced stays.
func (s *tokenSource) invalidate(bearer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == bearer {
		s.refresh = time.Time{}
		if now := s.now(); !now.Before(s.refutedAt.Add(minFetchInterval)) {
			s.refuted, s.refutedAt = true, now
		}
	}
}

// forbidden records that Logto answered 403 auth.forbidden to bearer: the app lacks the Management API
// role. The token is dropped and fetching backs off, so /readyz reports it until a new token works.
func (s *tokenSource) forbidden(bearer string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil || s.tok.AccessToken != bearer { // another request already recorded it, or got a new token
		return fmt.Errorf("%w: %w", errTokenUnavailable, errM2MForbidden)
	}
	return s.failLocked(fmt.Errorf("%w (Logto answered 403 auth.forbidden)", errM2MForbidden))
}

// ready reports whether a token is cached or can be fetched now.
func (s *tokenSource) ready(ctx context.Context) error {
	_, err := s.TokenContext(ctx)
	return err
}

// backoff returns how long to wait before the next fetch after the n-th failure in a row.
func backoff(n int, err error) time.Duration {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		code := re.Response.StatusCode
		if code == http.StatusTooManyRequests || code >= 500 {
			if d, ok := retryAfter(re.Response.Header.Get("Retry-After"), time.Now()); ok {
				return min(max(d, minBackoff), maxRetryAfter)
			}
		}
	}
	d := minBackoff << min(n-1, 6)
	return min(d, maxBackoff)
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(min(secs, 86400)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// cleanTokenError keeps what an operator needs from a token endpoint error: the status and Logto's
// error code, not a raw response body of unbounded content.
func cleanTokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		if re.ErrorCode != "" {
			return fmt.Errorf("token endpoint answered %d %s", re.Response.StatusCode, re.ErrorCode)
		}
		return fmt.Errorf("token endpoint answered %d", re.Response.StatusCode)
	}
	return err
}
