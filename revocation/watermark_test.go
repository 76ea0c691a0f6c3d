package revocation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

// testNow is the clock of tests that need none in particular: the time of the real deliveries.
const testNow = 1796395352

func memoryStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), "memory", Options{Now: func() time.Time { return time.Unix(testNow, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// token is what Revoked is asked about.
type token struct {
	org, user string
	iat       int64
	kind      string
}

func (tk token) String() string {
	return fmt.Sprintf("%s token of %q in %q at %d", tk.kind, tk.user, tk.org, tk.iat)
}

func TestRevoked(t *testing.T) {
	const nb = testNow
	orgTok := func(org, user string, iat int64) token { return token{org, user, iat, decision.KindOrganization} }
	tests := []struct {
		name    string
		w       Watermark
		revoked []token
		kept    []token
	}{{
		name: "member removed",
		w:    Watermark{Org: "o1", User: "u1", Kinds: OrgKinds, NotBefore: nb},
		revoked: []token{orgTok("o1", "u1", nb-1), orgTok("o1", "u1", 0),
			{"o1", "u1", nb - 1, decision.KindOrganizationAPI}},
		kept: []token{orgTok("o1", "u1", nb), orgTok("o1", "u1", nb+1), orgTok("o2", "u1", nb-1), orgTok("o1", "u2", nb-1),
			{"", "u1", nb - 1, decision.KindGlobalAPI}, {"", "u1", nb - 1, decision.KindAdmin}},
	}, {
		name:    "organization deleted",
		w:       Watermark{Org: "o1", Kinds: OrgKinds, NotBefore: nb},
		revoked: []token{orgTok("o1", "u1", nb-1), orgTok("o1", "app1", nb-1), {"o1", "u9", nb - 1, decision.KindOrganizationAPI}},
		kept:    []token{orgTok("o1", "u1", nb), orgTok("o2", "u1", nb-1), {"", "u1", nb - 1, decision.KindGlobalAPI}},
	}, {
		name: "user suspended",
		w:    Watermark{User: "u1", Kinds: AllKinds, NotBefore: nb},
		revoked: []token{orgTok("o1", "u1", nb-1), orgTok("o2", "u1", nb-1), {"", "u1", nb - 1, decision.KindGlobalAPI},
			{"", "u1", nb - 1, decision.KindAdmin}},
		kept: []token{orgTok("o1", "u2", nb-1), orgTok("o1", "u1", nb), {"", "u1", nb, decision.KindAdmin}},
	}, {
		name:    "global role cut",
		w:       Watermark{Kinds: GlobalKinds, NotBefore: nb},
		revoked: []token{{"", "u1", nb - 1, decision.KindGlobalAPI}, {"", "app1", nb - 1, decision.KindAdmin}},
		kept:    []token{orgTok("o1", "u1", nb-1), {"o1", "u1", nb - 1, decision.KindOrganizationAPI}, {"", "u1", nb, decision.KindAdmin}},
	}, {
		name:    "organization role cut",
		w:       Watermark{Kinds: OrgKinds, NotBefore: nb},
		revoked: []token{orgTok("o1", "u1", nb-1), orgTok("o2", "u2", nb-1)},
		kept:    []token{orgTok("o1", "u1", nb), {"", "u1", nb - 1, decision.KindGlobalAPI}},
	}, {
		name:    "unknown kind meets any kind's watermark",
		w:       Watermark{Org: "o1", Kinds: Organization, NotBefore: nb},
		revoked: []token{{"o1", "u1", nb - 1, "future_kind"}},
		kept:    []token{{"o1", "u1", nb, "future_kind"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := memoryStore(t)
			if err := s.Revoke(context.Background(), tc.w); err != nil {
				t.Fatal(err)
			}
			for _, tk := range tc.revoked {
				if !s.Revoked(tk.org, tk.user, tk.iat, tk.kind) {
					t.Errorf("after %+v, %s is accepted, want refused", tc.w, tk)
				}
			}
			for _, tk := range tc.kept {
				if s.Revoked(tk.org, tk.user, tk.iat, tk.kind) {
					t.Errorf("after %+v, %s is refused, want accepted", tc.w, tk)
				}
			}
		})
	}
}

// A token issued in the change's second is refused, one issued in the next second is accepted.
func TestSameSecond(t *testing.T) {
	s := memoryStore(t)
	change := time.Unix(1796395352, 98e6) // 14:42:32.098, like delivery 004
	if err := s.Revoke(context.Background(), memberChanged("o1", "u1", change)...); err != nil {
		t.Fatal(err)
	}
	for iat, want := range map[int64]bool{change.Unix() - 1: true, change.Unix(): true, change.Unix() + 1: false} {
		if got := s.Revoked("o1", "u1", iat, decision.KindOrganization); got != want {
			t.Errorf("change at %v: token with iat %d revoked = %v, want %v", change, iat, got, want)
		}
	}
}

func TestRevokeRejectsInvalid(t *testing.T) {
	s := memoryStore(t)
	for _, w := range []Watermark{
		{Org: "o:1", Kinds: OrgKinds, NotBefore: 1},
		{User: "u 1", Kinds: OrgKinds, NotBefore: 1},
		{Org: string(make([]byte, 65)), Kinds: OrgKinds, NotBefore: 1},
		{Org: "o1", NotBefore: 1},
		{Org: "o1", Kinds: 1 << 5, NotBefore: 1},
		{Org: "o1", Kinds: OrgKinds},
	} {
		if err := s.Revoke(context.Background(), Watermark{User: "ok", Kinds: AllKinds, NotBefore: 5}, w); err == nil {
			t.Errorf("Revoke(%+v) = nil, want an error", w)
		}
	}
	if st := s.Status(); st.Watermarks != 0 {
		t.Errorf("after refused Revokes, %d watermarks, want 0 (all or nothing)", st.Watermarks)
	}
}

// Watermarks older than Retention are dropped: every token they could refuse has expired.
func TestRetention(t *testing.T) {
	now := time.Unix(1796395352, 0)
	s, err := Open(context.Background(), "memory", Options{Retention: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.Revoke(ctx, userChanged("u1", now)...)
	now = now.Add(time.Hour)
	s.Revoke(ctx, userChanged("u2", now)...)
	if got := s.Status().Watermarks; got != 2 {
		t.Fatalf("after 1 h, %d watermarks, want 2", got)
	}
	now = now.Add(2 * time.Second)
	s.Revoke(ctx, userChanged("u3", now)...)
	if got := s.Status().Watermarks; got != 2 {
		t.Errorf("after 1 h 2 s, %d watermarks, want 2 (u1's dropped)", got)
	}
}

func TestClaimDecisionMemory(t *testing.T) {
	s := memoryStore(t)
	ctx, exp := context.Background(), time.Now().Add(10*time.Second)
	if err := s.ClaimDecision(ctx, "jti-1", exp); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := s.ClaimDecision(ctx, "jti-1", exp); err != ErrReplayed {
		t.Errorf("second claim = %v, want ErrReplayed", err)
	}
	if err := s.ClaimDecision(ctx, string(make([]byte, maxClaimBytes+1)), exp); err == nil {
		t.Error("claim of an oversized ID accepted")
	}
}

func TestClaimSetBoundedAndSwept(t *testing.T) {
	c := claimSet{max: 3}
	for i := range 3 {
		if err := c.claim(fmt.Sprint(i), 10, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.claim("x", 10, 0); err != errClaimsFull {
		t.Errorf("claim into a full set = %v, want errClaimsFull (fail closed)", err)
	}
	if err := c.claim("0", 20, 10); err != nil {
		t.Errorf("claim of an expired ID once its time passed = %v, want nil", err)
	}
}

func TestRevokedAllocatesNothing(t *testing.T) {
	s := benchStore(t, 10000)
	if n := testing.AllocsPerRun(100, func() { s.Revoked("o5000", "u5000", testNow, decision.KindOrganization) }); n != 0 {
		t.Errorf("Revoked allocates %v times, want 0", n)
	}
}

// benchStore holds n organization, n user and n member watermarks (plus tenant-wide ones when n > 0).
func benchStore(t testing.TB, n int) *Store {
	s := memoryStore(t)
	ws := make([]Watermark, 0, 3*n+1)
	for i := range n {
		ws = append(ws, Watermark{Org: fmt.Sprint("o", i), Kinds: OrgKinds, NotBefore: testNow},
			Watermark{User: fmt.Sprint("u", i), Kinds: AllKinds, NotBefore: testNow},
			Watermark{Org: fmt.Sprint("o", i), User: fmt.Sprint("u", i), Kinds: OrgKinds, NotBefore: testNow})
	}
	if n > 0 {
		ws = append(ws, Watermark{Kinds: GlobalKinds, NotBefore: testNow})
	}
	if err := s.Revoke(context.Background(), ws...); err != nil {
		t.Fatal(err)
	}
	return s
}

// BenchmarkRevoked is the sidecar's per-request cost: "none" is an empty set (revocation on, nothing
// revoked), "miss" a token none of 30 000 watermarks refuses (four lookups), "hit" a refused one.
func BenchmarkRevoked(b *testing.B) {
	for _, bc := range []struct {
		name      string
		n         int
		org, user string
		want      bool
	}{{"none", 0, "qalhpa13xzgs", "zq8qk5x57m55", false}, {"miss", 10000, "qalhpa13xzgs", "zq8qk5x57m55", false}, {"hit", 10000, "o7", "u9", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s, iat := benchStore(b, bc.n), int64(testNow+1)
			if bc.want {
				iat = testNow - 1
			}
			b.ReportAllocs()
			for b.Loop() {
				if s.Revoked(bc.org, bc.user, iat, decision.KindOrganization) != bc.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
