package revocation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orgauthz/orgauthz/decision"
)

// redisServer is a real redis-server (Debian's) on 127.0.0.1 and a free port, without persistence.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// startRedis starts redis-server. Without it the test skips, except in CI (CI set), where it fails:
// .ci/run installs it.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (CI is set: .ci/run installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &redisServer{t: t, port: ln.Addr().(*net.TCPAddr).Port}
	ln.Close()
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	r.log = &bytes.Buffer{}
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir(), "--protected-mode", "yes")
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port)); err == nil {
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
	}
	r.t.Fatalf("redis-server did not answer on port %d: %s", r.port, r.log)
}

// kill stops redis-server at once (SIGKILL: no goodbye to clients), as a crash would.
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

func openRedis(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, Options{ResyncInterval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually waits up to d for cond, and reports how long it took.
func eventually(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return d, cond()
}

func TestRedisSharesWatermarks(t *testing.T) {
	r := startRedis(t)
	a, b := openRedis(t, r.url()), openRedis(t, r.url())
	for _, s := range []*Store{a, b} {
		if st := s.Status(); !st.Ready || !st.Connected || st.Backend != "redis" {
			t.Fatalf("fresh store: %+v, want ready and connected", st)
		}
	}
	now := time.Now()
	iat := now.Unix() - 60
	if err := a.Revoke(context.Background(), memberChanged("o1", "u1", now)...); err != nil {
		t.Fatal(err)
	}
	if !a.Revoked("o1", "u1", iat, decision.KindOrganization) {
		t.Fatal("the writing store does not refuse at once")
	}
	took, ok := eventually(time.Second, func() bool { return b.Revoked("o1", "u1", iat, decision.KindOrganization) })
	if !ok {
		t.Fatal("a watermark written through one store is not seen by the other within 1 s")
	}
	t.Logf("seen by the other store after %v", took)
	if b.Revoked("o1", "u2", iat, decision.KindOrganization) || b.Revoked("o1", "u1", now.Unix()+1, decision.KindOrganization) {
		t.Error("the other store refuses tokens the watermark does not cover")
	}

	// A store that starts now (a restarted sidecar) has the set before it reports ready.
	c := openRedis(t, r.url())
	if !c.Ready() || !c.Revoked("o1", "u1", iat, decision.KindOrganization) {
		t.Errorf("a new store: ready %v, refuses %v; want both", c.Ready(), c.Revoked("o1", "u1", iat, decision.KindOrganization))
	}
}

// Without pub/sub (a missed message), the periodic resync still applies a watermark within a second.
func TestRedisResyncWithoutMessage(t *testing.T) {
	r := startRedis(t)
	a, b := openRedis(t, r.url()), openRedis(t, r.url())
	// Write as another replica would, but publish nothing.
	w := Watermark{User: "u9", Kinds: AllKinds, NotBefore: time.Now().Unix() + 1}
	sc := scope{w.Org, w.User, w.Kinds}
	ctx := context.Background()
	if err := a.rdb.ZAdd(ctx, setKey, redis.Z{Score: float64(w.NotBefore), Member: sc.String()}).Err(); err != nil {
		t.Fatal(err)
	}
	// A watermark a day ahead (bad data) would refuse every token until then: ignored.
	future := scope{"", "u10", AllKinds}
	a.rdb.ZAdd(ctx, setKey, redis.Z{Score: float64(time.Now().Add(24 * time.Hour).Unix()), Member: future.String()})
	a.rdb.Incr(ctx, genKey)
	if _, ok := eventually(time.Second, func() bool { return b.Revoked("", "u9", w.NotBefore-1, decision.KindAdmin) }); !ok {
		t.Error("an unpublished watermark is not applied by the resync within 1 s")
	}
	if b.Revoked("", "u10", time.Now().Unix(), decision.KindAdmin) {
		t.Error("a watermark a day in the future is applied")
	}
}

func TestRedisDownKeepsLastKnownSetAndRecovers(t *testing.T) {
	r := startRedis(t)
	a, b := openRedis(t, r.url()), openRedis(t, r.url())
	ctx, now := context.Background(), time.Now()
	iat := now.Unix() - 60
	if err := a.Revoke(ctx, userChanged("u1", now)...); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(time.Second, func() bool { return b.Revoked("", "u1", iat, decision.KindAdmin) }); !ok {
		t.Fatal("not shared before the outage")
	}

	r.kill()
	if _, ok := eventually(3*time.Second, func() bool { return !b.Status().Connected }); !ok {
		t.Fatalf("status after redis died: %+v, want not connected", b.Status())
	}
	st := b.Status()
	if !st.Ready || st.RedisErrors == 0 || st.LastError == "" || st.Watermarks != 1 {
		t.Errorf("status while redis is down: %+v; want ready, errors counted, the last known watermark kept", st)
	}
	if !b.Revoked("", "u1", iat, decision.KindAdmin) {
		t.Error("the last known set is not kept while redis is down")
	}
	// A revocation during the outage holds where it was made and is shared when Redis returns.
	err := a.Revoke(ctx, memberChanged("o2", "u2", time.Now())...)
	if !errors.Is(err, ErrNotShared) {
		t.Errorf("Revoke while redis is down = %v, want ErrNotShared", err)
	}
	if !a.Revoked("o2", "u2", iat, decision.KindOrganization) || a.Status().Pending == 0 {
		t.Errorf("the outage's revocation: refused here %v, pending %d; want refused and pending",
			a.Revoked("o2", "u2", iat, decision.KindOrganization), a.Status().Pending)
	}
	// Decisions fail closed.
	if err := a.ClaimDecision(ctx, "jti-down", time.Now().Add(10*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ClaimDecision while redis is down = %v, want ErrUnavailable", err)
	}

	r.start() // empty: no persistence
	if _, ok := eventually(5*time.Second, func() bool {
		// Pending drains with the flush that follows a resync; a write-back of a watermark the empty
		// Redis lacks can be pending for a moment after the outage's revocation is already shared.
		return a.Status().Connected && b.Status().Connected && b.Revoked("o2", "u2", iat, decision.KindOrganization) &&
			a.Status().Pending == 0 && b.Status().Pending == 0
	}); !ok {
		t.Fatalf("after redis came back: a %+v, b %+v; want both connected, nothing pending and the outage's revocation shared", a.Status(), b.Status())
	}
	// The restarted Redis got the whole set back from the replicas: a new replica loads both.
	c := openRedis(t, r.url())
	if _, ok := eventually(2*time.Second, func() bool {
		return c.Ready() && c.Revoked("", "u1", iat, decision.KindAdmin) && c.Revoked("o2", "u2", iat, decision.KindOrganization)
	}); !ok {
		t.Errorf("a store opened after the restart: %+v; want both watermarks", c.Status())
	}
}

func TestRedisClaimDecisionSingleUse(t *testing.T) {
	r := startRedis(t)
	a, b := openRedis(t, r.url()), openRedis(t, r.url())
	ctx, exp := context.Background(), time.Now().Add(10*time.Second)
	if err := a.ClaimDecision(ctx, "jti-1", exp); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	for name, s := range map[string]*Store{"same replica": a, "other replica": b} {
		if err := s.ClaimDecision(ctx, "jti-1", exp); !errors.Is(err, ErrReplayed) {
			t.Errorf("replay through the %s = %v, want ErrReplayed", name, err)
		}
	}
	// Concurrent claims of one decision: exactly one wins.
	var wg sync.WaitGroup
	var wins atomic.Int32
	for i := range 20 {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			if s.ClaimDecision(ctx, "jti-race", exp) == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins := wins.Load(); wins != 1 {
		t.Errorf("%d of 20 concurrent claims won, want 1", wins)
	}
	// The claim expires with the decision (plus decision.Skew).
	ttl := a.rdb.PTTL(ctx, decisionKeyPrefix+"jti-1").Val()
	if want := time.Until(exp) + decision.Skew; ttl <= 0 || ttl > want+time.Second {
		t.Errorf("claim TTL %v, want about %v", ttl, want)
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	for _, u := range []string{"redis", "http://127.0.0.1:6379", "redis://user:pa ss@[::1", "postgres://x"} {
		if _, err := Open(context.Background(), u, Options{}); err == nil {
			t.Errorf("Open(%q) = nil error", u)
		}
	}
	// A store whose Redis is not there opens, but is not ready until a load succeeds.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := openRedis(t, fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	if st := s.Status(); st.Ready || st.Connected {
		t.Errorf("store without redis: %+v, want not ready", st)
	}
}
