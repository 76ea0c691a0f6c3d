package revocation

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis layout. Watermarks live in one sorted set, member the scope's shared form, score its
// NotBefore: ZADD GT keeps the latest per scope, ZRANGEBYSCORE reads the live ones, ZREMRANGEBYSCORE
// drops the expired. A generation counter, bumped by every write, lets a resync skip the read when
// nothing changed; the epoch, a random value the first writer after a Redis start sets, tells a
// restarted Redis (whose counter starts again) from an unchanged one. Every write is also published
// so replicas apply it at once.
const (
	setKey            = "orgauthz:revocation:watermarks"
	genKey            = "orgauthz:revocation:generation"
	epochKey          = "orgauthz:revocation:epoch"
	channel           = "orgauthz:revocation"
	decisionKeyPrefix = "orgauthz:decision:"
)

// maxMessageBytes bounds a published message read from Redis.
const maxMessageBytes = maxScopeBytes + 1 + 20

// flush writes the pending watermarks to Redis in one transaction, bumps the generation and publishes
// each; on success they are no longer pending.
func (s *Store) flush(ctx context.Context) error {
	s.mu.Lock()
	batch := make(map[scope]int64, len(s.pending))
	for sc, nb := range s.pending {
		batch[sc] = nb
	}
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for sc, nb := range batch {
			p.ZAddGT(ctx, setKey, redis.Z{Score: float64(nb), Member: sc.String()})
		}
		p.ZRemRangeByScore(ctx, setKey, "-inf", "("+strconv.FormatInt(s.horizon(), 10))
		p.Expire(ctx, setKey, s.opts.Retention+time.Minute)
		p.Incr(ctx, genKey)
		p.SetNX(ctx, epochKey, rand.Text(), 0) // a fresh value only if Redis has none: it restarted
		for sc, nb := range batch {
			p.Publish(ctx, channel, sc.String()+"="+strconv.FormatInt(nb, 10))
		}
		return nil
	})
	if err != nil {
		s.failed(err)
		return err
	}
	s.mu.Lock()
	for sc, nb := range batch {
		if s.pending[sc] <= nb {
			delete(s.pending, sc)
		}
	}
	s.mu.Unlock()
	s.reachable()
	return nil
}

// run applies published watermarks as they arrive and resyncs every ResyncInterval, until ctx ends.
func (s *Store) run(ctx context.Context) {
	defer close(s.done)
	ps := s.rdb.Subscribe(ctx, channel)
	defer ps.Close()
	msgs := ps.Channel() // go-redis resubscribes after a lost connection; the resync covers the gap
	tick := time.NewTicker(s.opts.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			s.applyMessage(m.Payload)
		case <-tick.C:
			s.resync(ctx)
		}
	}
}

// applyMessage merges one published "<scope>=<NotBefore>"; a malformed one is ignored (the resync
// reads the set itself).
func (s *Store) applyMessage(msg string) {
	if len(msg) > maxMessageBytes {
		return
	}
	k, v, ok := strings.Cut(msg, "=")
	sc, err := parseScope(k)
	nb, err2 := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || err2 != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if nb > s.scopes[sc] && s.plausible(nb) {
		s.scopes[sc] = nb
		s.publishLocked()
	}
}

// resync writes pending watermarks, then, when the shared set's generation moved, reads the whole live
// set and merges it with what this process knows (watermarks only ever rise, so merging is always
// right). Watermarks known here that Redis lacks — Redis restarted empty — are written back.
func (s *Store) resync(ctx context.Context) {
	if s.flush(ctx) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	v, err := s.rdb.MGet(ctx, epochKey, genKey).Result()
	if err != nil {
		s.failed(err)
		return
	}
	epoch, _ := v[0].(string)
	gen, _ := v[1].(string)
	version := epoch + "/" + gen
	if s.ready.Load() && version == s.lastVersion && epoch != "" {
		s.synced.Store(s.opts.Now().UnixNano())
		s.reachable()
		return
	}
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, setKey, &redis.ZRangeBy{
		Min: strconv.FormatInt(s.horizon(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		s.failed(err)
		return
	}
	shared := make(map[scope]int64, len(zs))
	for _, z := range zs {
		m, ok := z.Member.(string)
		if !ok {
			continue
		}
		if sc, err := parseScope(m); err == nil && s.plausible(int64(z.Score)) {
			shared[sc] = int64(z.Score)
		}
	}
	s.mu.Lock()
	for sc, nb := range shared {
		if nb > s.scopes[sc] {
			s.scopes[sc] = nb
		}
	}
	missing := 0
	for sc, nb := range s.scopes {
		if shared[sc] < nb && s.pending[sc] < nb {
			s.pending[sc] = nb
			missing++
		}
	}
	s.publishLocked()
	s.mu.Unlock()
	s.lastVersion = version
	s.ready.Store(true)
	s.synced.Store(s.opts.Now().UnixNano())
	s.reachable()
	if missing > 0 {
		s.opts.Logger.Warn("revocation: writing back watermarks the shared set lacks", "count", missing)
		_ = s.flush(ctx)
	}
}

// plausible reports whether a NotBefore read from Redis is not far in the future: a bad entry there
// must not refuse every token until that time. Webhook watermarks are at most WebhookMaxAhead ahead.
func (s *Store) plausible(nb int64) bool {
	return nb <= s.opts.Now().Add(2*WebhookMaxAhead).Unix()
}

// failed records a Redis failure, logging only the transition from reachable.
func (s *Store) failed(err error) {
	s.errs.Add(1)
	msg := err.Error()
	s.lastErr.Store(&msg)
	if s.up.Swap(false) || s.errs.Load() == 1 {
		s.opts.Logger.Error("revocation: redis unreachable; serving the last known watermarks", "err", msg)
	}
}

// reachable records a successful Redis round trip, logging the recovery.
func (s *Store) reachable() {
	if !s.up.Swap(true) && s.errs.Load() > 0 {
		s.opts.Logger.Info("revocation: redis reachable again")
	}
}
