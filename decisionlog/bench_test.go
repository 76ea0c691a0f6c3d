package decisionlog

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/internal/testkit"
)

// BenchmarkSubmit is the cost a decision pays for its audit record: a fresh id, a Record filled from
// values the sidecar already holds (its input, the decision) and Submit. A receiver that does nothing
// keeps the queue from filling, so every Submit is a real enqueue, not the cheaper drop.
func BenchmarkSubmit(b *testing.B) {
	in := sidecarInput(b, map[string]any{"content-type": "application/json"}, map[string]any{"userIds": []any{"u2"}})
	bundles := map[string]Bundle{"policies": {Revision: "abc123"}}
	counters := New(io.Discard, Options{})
	defer counters.Close()
	l := &Logger{queue: make(chan *Record, DefaultQueueSize), drops: counters.drops}
	go func() {
		for range l.queue { // a writer that costs nothing, so the queue never fills
		}
	}()
	defer close(l.queue)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testkit.ProcessCPU(b)
	for range b.N {
		l.Submit(&Record{
			DecisionID: NewID(), Timestamp: time.Now(), Path: "orgauthz/decision", Input: in,
			Method: "POST", RequestPath: "/api/organizations/o1/users",
			Allow: true, Status: 200, Reason: "org_permission", Route: "POST /api/organizations/{orgId}/users",
			Token:         &Token{Kind: "organization", Subject: "u1", ClientID: "app1", OrganizationID: "o1", Scopes: []string{"member:add"}},
			SourceAddress: "10.0.0.7", RequestID: "req-42", Bundles: bundles,
			Metrics: &Metrics{Check: 250000, PolicyEval: 90000},
		})
	}
	testkit.ReportCPU(b, cpu, b.N)
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

// BenchmarkWrite is the writer goroutine's cost per record (conversion, credential removal, JSON),
// off the decision path: it bounds the sustained rate before records are dropped.
func BenchmarkWrite(b *testing.B) {
	l := New(io.Discard, Options{})
	defer l.Close()
	in := sidecarInput(b, map[string]any{"content-type": "application/json"}, map[string]any{"userIds": []any{"u2"}})
	b.ReportAllocs()
	cpu := testkit.ProcessCPU(b)
	n := 0
	for b.Loop() {
		n++
		r := &Record{
			DecisionID: NewID(), Timestamp: time.Now(), Path: "orgauthz/decision", Input: in,
			Result: map[string]any{"allow": false, "status": 403, "reason": "missing_scope"},
			Status: 403, Reason: "missing_scope", RequiredScopes: []string{"member:add"},
			Token: &Token{Kind: "organization", Subject: "u1", ClientID: "app1", OrganizationID: "o1", Scopes: []string{"org:read"}},
		}
		if _, ok := l.encode(r); !ok {
			b.Fatal("encode failed")
		}
	}
	testkit.ReportCPU(b, cpu, n)
}

// BenchmarkJSONBaseline calibrates the machine: encoding/json on a record already in plain form.
func BenchmarkJSONBaseline(b *testing.B) {
	in, _ := ast.JSON(sidecarInput(b, map[string]any{"content-type": "application/json"}, map[string]any{"userIds": []any{"u2"}}))
	r := &Record{DecisionID: NewID(), Input: in, Token: &Token{Kind: "organization", Subject: "u1"}}
	cpu := testkit.ProcessCPU(b)
	n := 0
	for b.Loop() {
		n++
		json.Marshal(r)
	}
	testkit.ReportCPU(b, cpu, n)
}
