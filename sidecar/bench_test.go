package sidecar

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/testkit"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

func BenchmarkCanonicalPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := decision.CanonicalPath("/api/organizations/o1/users/u2/roles/r1"); !ok {
			b.Fatal("refused")
		}
	}
}

func benchClaims() *token.Claims {
	return &token.Claims{Kind: token.Organization, Issuer: "http://127.0.0.1:3001/oidc", Subject: "u1", ClientID: "app1",
		HasScope: true, OrganizationID: "o1", Audience: "urn:logto:organization:o1", JTI: "abc",
		Scope: "member:add org:read", Scopes: []string{"member:add", "org:read"},
		IssuedAt: 1795505128, ExpiresAt: 1795508728}
}

func benchRequest(b testing.TB) *request {
	raw := &rawRequest{
		method: "POST", target: "/api/organizations/o1/users?page=1", host: "app.example.com", source: "10.0.0.7",
		headers: map[string]string{"content-type": "application/json", "authorization": "Bearer a.b.c", "x-request-id": "r1",
			":method": "POST", ":path": "/api/organizations/o1/users?page=1", ":authority": "app.example.com", "user-agent": "bench"},
		body: []byte(`{"userIds":["u2"]}`),
	}
	req, rej := parseRequest(raw, 16<<10)
	if rej != nil {
		b.Fatalf("parseRequest: %+v", rej)
	}
	return req
}

func BenchmarkBuildInput(b *testing.B) {
	req, claims := benchRequest(b), benchClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := buildInput(req, claims); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckResponse(b *testing.B) {
	req := benchRequest(b)
	v := &verdict{status: 200, reason: "org_permission", route: "POST /api/organizations/{orgId}/users",
		claims: benchClaims(), signed: strings.Repeat("x", 400)}
	b.ReportAllocs()
	for b.Loop() {
		checkResponse(req, "r1", v)
	}
}

// allowedCheck returns a server and a CheckRequest it allows on a token already in its cache.
func allowedCheck(b *testing.B, opts ...harnessOption) (*Server, *authv3.CheckRequest) {
	h := newHarness(b, true, opts...)
	tok := h.mint(*org("o1", "member:add"))
	r := envoyRequest("POST", "/api/organizations/o1/users", map[string]string{"Authorization": "Bearer " + tok}, `{"userIds":["u2"]}`)
	in, err := envoyclient.NewCheckRequest(r, envoyclient.Options{WithBody: true})
	if err != nil {
		b.Fatal(err)
	}
	if resp, _ := h.srv.Check(context.Background(), in); readAnswer(resp).status != 200 {
		b.Fatalf("not allowed: %s", readAnswer(resp).body)
	}
	return h.srv, in
}

// BenchmarkCheck is a whole in-process Check on a token already in the cache: parse, verify
// (cache hit), input, policy, signing, response.
func BenchmarkCheck(b *testing.B) {
	srv, in := allowedCheck(b)
	benchChecks(b, srv, in)
}

// BenchmarkCheckNoAudit is BenchmarkCheck with --decision-log off: the difference is what the
// audit stream (the record, its scrub and encoding, the write) costs a check.
func BenchmarkCheckNoAudit(b *testing.B) {
	srv, in := allowedCheck(b, func(c *Config) { c.DecisionLog = decisionlog.SinkOff })
	benchChecks(b, srv, in)
}

// benchChecks runs in through srv.Check b.N times; every check must allow.
func benchChecks(b *testing.B, srv *Server, in *authv3.CheckRequest) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu, n := testkit.ProcessCPU(b), 0
	for b.Loop() {
		n++
		if resp, _ := srv.Check(ctx, in); resp.GetStatus().GetCode() != 0 {
			b.Fatal("denied")
		}
	}
	testkit.ReportCPU(b, cpu, n) // includes the audit writer's work and the threads woken for it
}

// BenchmarkCheckFreshGoroutine is BenchmarkCheck on a new goroutine per check, as grpc-go runs a
// stream without stream workers: the difference is the cost of regrowing the stack that OPA's
// evaluator needs, which is why the gRPC server keeps long-lived workers (NumStreamWorkers).
func BenchmarkCheckFreshGoroutine(b *testing.B) {
	srv, in := allowedCheck(b)
	ctx := context.Background()
	codes := make(chan int32)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		go func() {
			resp, _ := srv.Check(ctx, in)
			codes <- resp.GetStatus().GetCode()
		}()
		if <-codes != 0 {
			b.Fatal("denied")
		}
	}
}
