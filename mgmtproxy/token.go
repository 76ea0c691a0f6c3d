package mgmtproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"
)

// Token source tuning.
const (
	// shortLived is the lifetime assumed for a token whose response had no or a zero expires_in.
	shortLived = 60 * time.Second
	// maxRefreshMargin is how long before expiry a cached token is replaced at most; a quarter of the
	// token's lifetime when that is shorter.
	maxRefreshMargin = 30 * time.Second
	// Backoff after a failed fetch: doubling from minBackoff up to maxBackoff, or the Retry-After of a
	// 429 or 5xx answer up to maxRetryAfter.
	minBackoff    = time.Second
	maxBackoff    = time.Minute
	maxRetryAfter = 5 * time.Minute
)

// errTokenUnavailable marks every failure to get an M2M token: mgmtproxy answers 503 and calls nothing.
var errTokenUnavailable = errors.New("mgmtproxy: m2m token unavailable")

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

	group singleflight.Group

	mu       sync.Mutex
	tok      *oauth2.Token
	refresh  time.Time // when tok should be replaced
	retryAt  time.Time // no fetch before this after a failure
	failures int
	lastErr  error
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
	if s.tok != nil && now.Before(s.refresh) {
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
	tok, err := s.conf.Token(ctx)
	if s.fetched != nil {
		s.fetched(err == nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		wait := backoff(s.failures, err)
		s.retryAt = s.now().Add(wait)
		s.lastErr = cleanTokenError(err)
		return nil, fmt.Errorf("%w: %w", errTokenUnavailable, s.lastErr)
	}
	if tok.Expiry.IsZero() { // expires_in missing or 0: assume short-lived
		tok.Expiry = start.Add(shortLived)
	}
	margin := min(maxRefreshMargin, tok.Expiry.Sub(start)/4)
	s.tok, s.refresh, s.failures, s.retryAt, s.lastErr = tok, tok.Expiry.Add(-margin), 0, time.Time{}, nil
	return tok, nil
}

// invalidate drops the cached token if it is still bearer, the token Logto just refused, so the next
// Token call fetches a new one. A token another request already replaced stays.
func (s *tokenSource) invalidate(bearer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == bearer {
		s.tok = nil
	}
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
