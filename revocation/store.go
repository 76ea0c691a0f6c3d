// Package revocation makes a change that takes power away effective at once, on every replica: a
// member removed from an organization, an organization deleted, a user suspended or deleted, a role's
// permissions cut. Logto access tokens live an hour and carry their permissions; this package keeps
// "not before" watermarks (per organization, per user, per member, per token kind) so the sidecar
// refuses the affected tokens issued before the change (401 token_revoked) while newer tokens work.
//
// Watermarks come from mgmtproxy's own successful changes (OperationWatermarks) and from Logto's
// webhooks (WebhookHandler). A Store keeps them in memory ("memory", one process) or shares them
// through Redis ("redis://host:port/db", many replicas): every write is published, and every replica
// also resyncs on a timer, so a new watermark applies everywhere within a second. Each watermark is
// dropped once every token it can refuse has expired (Options.Retention), so the state stays small.
//
// The same Store makes a signed decision single-use across mgmtproxy replicas (ClaimDecision).
package revocation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orgauthz/orgauthz/decision"
)

// Options tune a Store; the zero value is the documented defaults.
type Options struct {
	// Logger receives state changes (Redis lost, Redis back); never a token or secret. Default: discard.
	Logger *slog.Logger
	// Retention is how long a watermark is kept: the longest access token lifetime plus the verifier's
	// leeway on exp, after which every token it could refuse has expired anyway. Default 61 min
	// (Logto's 1 h tokens, the sidecar's default 60 s clock skew). Raise it when an API resource has a
	// longer token TTL in Logto: a shorter Retention forgets a revocation while tokens still live.
	Retention time.Duration
	// ResyncInterval is how often a Redis store rereads the shared set, catching any published change
	// it missed. Default 500 ms, so a lost message still applies within a second.
	ResyncInterval time.Duration
	// Timeout bounds each Redis round trip. Default 1 s.
	Timeout time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Retention <= 0 {
		o.Retention = time.Hour + time.Minute
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 500 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Errors callers branch on.
var (
	// ErrNotShared: Revoke applied the watermarks in this process but could not write them to Redis.
	// They are kept and written when Redis answers again; until then other replicas do not see them.
	ErrNotShared = errors.New("revocation: watermark applied locally, not yet shared (redis unavailable)")
	// ErrReplayed: ClaimDecision found the decision claimed already (here or on another replica).
	ErrReplayed = errors.New("revocation: decision already used")
	// ErrUnavailable: ClaimDecision could not reach the shared store; the caller must refuse (fail closed).
	ErrUnavailable = errors.New("revocation: decision store unavailable")
)

// Store holds the watermarks and decision claims. Its methods are safe for concurrent use.
type Store struct {
	opts    Options
	backend string // "memory" or "redis"

	current atomic.Pointer[set] // what Revoked reads

	mu      sync.Mutex      // guards scopes, pending and the replacement of current
	scopes  map[scope]int64 // every known watermark: scope → NotBefore
	pending map[scope]int64 // written here, not yet in Redis

	claims claimSet // decision IDs (memory) and webhook deliveries (always) already seen

	rdb         *redis.Client // nil for memory
	lastVersion string        // the shared set's epoch and generation at the last full load (sync loop only)
	ready       atomic.Bool   // the shared set was loaded at least once
	up          atomic.Bool   // the last Redis round trip succeeded
	errs        atomic.Uint64 // Redis failures
	synced      atomic.Int64  // Unix nanoseconds of the last successful resync
	lastErr     atomic.Pointer[string]
	stop        context.CancelFunc
	done        chan struct{}
}

// Open returns a Store for url: "memory" (or "") keeps everything in this process; "redis://host:port/db"
// (or "rediss://" for TLS, go-redis URL options allowed) shares watermarks and decision claims with every
// replica using the same Redis database. A Redis store tries one load within ctx and keeps retrying in
// the background: it is not Ready until a load succeeded, so Open fails only for a bad URL.
// Close releases it.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	opts.defaults()
	s := &Store{opts: opts, backend: "memory", scopes: map[scope]int64{}, pending: map[scope]int64{}}
	s.claims.max = maxClaims
	s.current.Store(newSet(nil))
	switch {
	case url == "" || url == "memory":
		s.ready.Store(true)
		s.up.Store(true)
		return s, nil
	case strings.HasPrefix(url, "redis://"), strings.HasPrefix(url, "rediss://"):
	default:
		return nil, errors.New(`revocation: store must be "memory" or a redis:// URL`)
	}
	ro, err := redis.ParseURL(url)
	if err != nil {
		// go-redis's message may quote the URL, and a URL may hold a password: say only what is wrong.
		return nil, errors.New("revocation: malformed redis URL")
	}
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = opts.Timeout, opts.Timeout, opts.Timeout
	ro.MaxRetries = 1
	ro.DisableIdentity = true // CLIENT SETINFO is Redis 7.2+; Debian 12 ships 7.0
	s.backend, s.rdb = "redis", redis.NewClient(ro)
	s.resync(ctx)
	bg, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.run(bg)
	return s, nil
}

// Close stops a Redis store's background sync and closes its connections.
func (s *Store) Close() error {
	if s.rdb == nil {
		return nil
	}
	s.stop()
	<-s.done
	return s.rdb.Close()
}

// Revoked reports whether a token is refused by a watermark: kind is the token kind (decision.Kind…),
// org its organization context ("" for global_api and admin tokens), user its subject and iat its
// issue time in whole Unix seconds. It takes no lock and allocates nothing: the sidecar's hot path.
func (s *Store) Revoked(org, user string, iat int64, kind string) bool {
	return s.current.Load().revoked(org, user, iat, kindIndex(kind))
}

// Revoke applies watermarks at once in this process and, with Redis, shares them before it returns.
// When Redis fails it returns an error wrapping ErrNotShared: the watermarks still hold here and are
// written when Redis answers again. An invalid watermark is an error and nothing is applied.
func (s *Store) Revoke(ctx context.Context, ws ...Watermark) error {
	for _, w := range ws {
		if err := w.validate(); err != nil {
			return err
		}
	}
	if len(ws) == 0 {
		return nil
	}
	s.mu.Lock()
	for _, w := range ws {
		sc := scope{w.Org, w.User, w.Kinds}
		if w.NotBefore > s.scopes[sc] {
			s.scopes[sc] = w.NotBefore
		}
		if s.rdb != nil && w.NotBefore > s.pending[sc] {
			s.pending[sc] = w.NotBefore
		}
	}
	s.publishLocked()
	s.mu.Unlock()
	if s.rdb == nil {
		return nil
	}
	if !s.up.Load() {
		// Known down: do not make the caller wait for a timeout; the sync loop writes them on recovery.
		return fmt.Errorf("%w: %s", ErrNotShared, s.Status().LastError)
	}
	if err := s.flush(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNotShared, err)
	}
	return nil
}

// publishLocked drops expired watermarks and gives Revoked a new snapshot. s.mu is held.
func (s *Store) publishLocked() {
	horizon := s.horizon()
	for sc, nb := range s.scopes {
		if nb < horizon {
			delete(s.scopes, sc)
		}
	}
	for sc, nb := range s.pending {
		if nb < horizon {
			delete(s.pending, sc)
		}
	}
	s.current.Store(newSet(s.scopes))
}

// horizon is the oldest NotBefore still worth keeping: any token issued before an older one has expired.
func (s *Store) horizon() int64 { return s.opts.Now().Add(-s.opts.Retention).Unix() }

// ClaimDecision marks a signed decision's jti as used until its exp (plus decision.Skew, the leeway
// mgmtproxy's verifier allows) and fails with ErrReplayed when it was used already. With Redis the
// claim is one atomic SET NX shared by every replica and outlives restarts; when Redis cannot be
// reached it fails with ErrUnavailable, and the caller must refuse the request.
func (s *Store) ClaimDecision(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" || len(jti) > maxClaimBytes {
		return errors.New("revocation: decision ID empty or too long")
	}
	until := exp.Add(decision.Skew)
	if s.rdb == nil {
		return s.claims.claim("d:"+jti, until.Unix(), s.opts.Now().Unix())
	}
	ttl := until.Sub(s.opts.Now())
	if ttl < time.Second {
		ttl = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	ok, err := s.rdb.SetNX(ctx, decisionKeyPrefix+jti, 1, ttl).Result()
	if err != nil {
		s.failed(err)
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok {
		return ErrReplayed
	}
	return nil
}

// Status is a Store's health, for /readyz and metrics.
type Status struct {
	Backend     string    // "memory" or "redis"
	Ready       bool      // the current set was loaded at least once: serve only when true
	Connected   bool      // the last Redis round trip succeeded (always true for memory)
	LastSync    time.Time // last successful resync with Redis (zero for memory)
	Watermarks  int       // watermarks in force here
	Pending     int       // watermarks applied here that Redis has not taken yet
	RedisErrors uint64    // Redis failures since Open
	LastError   string    // the last Redis failure, "" if none
}

// Status reports the Store's state. While Redis is down a Redis store keeps serving with the set it
// knows: it misses only watermarks written by other replicas after LastSync (and applies them within
// ResyncInterval of Redis answering again), and writes its own pending ones back then.
func (s *Store) Status() Status {
	s.mu.Lock()
	st := Status{Backend: s.backend, Watermarks: len(s.scopes), Pending: len(s.pending)}
	s.mu.Unlock()
	st.Ready, st.Connected, st.RedisErrors = s.ready.Load(), s.up.Load(), s.errs.Load()
	if ns := s.synced.Load(); ns != 0 {
		st.LastSync = time.Unix(0, ns)
	}
	if e := s.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// Ready reports whether the Store has loaded the current set at least once (always true for memory).
func (s *Store) Ready() bool { return s.ready.Load() }

// maxClaimBytes bounds a claimed ID.
const maxClaimBytes = 128

// maxClaims bounds the in-memory claim set; when it is full of unexpired claims new ones are refused.
const maxClaims = 1 << 20

// claimSet remembers IDs until their expiry, up to max. Expired entries are swept when the set has
// doubled since the last sweep, or when it is full and its oldest entry has expired, so a claim costs
// amortised O(1).
type claimSet struct {
	mu        sync.Mutex
	max       int
	seen      map[string]int64 // id → Unix second it may be forgotten
	nextSweep int
	oldest    int64 // no entry expires before this
}

var errClaimsFull = errors.New("revocation: too many unexpired claims")

func (c *claimSet) claim(id string, until, now int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int64{}
	}
	if exp, dup := c.seen[id]; dup && exp > now {
		return ErrReplayed
	}
	if len(c.seen) >= c.nextSweep || len(c.seen) >= c.max && c.oldest <= now {
		c.oldest = until
		for k, exp := range c.seen {
			if exp <= now {
				delete(c.seen, k)
			} else {
				c.oldest = min(c.oldest, exp)
			}
		}
		c.nextSweep = max(1024, 2*len(c.seen))
	}
	if len(c.seen) >= c.max {
		return errClaimsFull
	}
	c.seen[id] = until
	c.oldest = min(c.oldest, until)
	return nil
}
