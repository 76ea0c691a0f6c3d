package sidecar

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestNotReadyWithoutPolicy: no policy at start-up means 503 for every request, never a guess.
func TestNotReadyWithoutPolicy(t *testing.T) {
	empty := t.TempDir()
	h := newHarness(t, false, func(c *Config) { c.Policies = empty })
	waitFor(t, "token keys", h.srv.tokens.Ready)
	if h.srv.Ready() {
		t.Fatal("Ready() = true without a policy")
	}
	tok := h.mint(*org("o1", "org:read"))
	for _, hdr := range []map[string]string{{"Authorization": "Bearer " + tok}, nil} {
		a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", hdr, "")))
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503", a.status)
		}
		checkDenyShape(t, a, 503, "not_ready")
	}
	if code := h.healthStatus(t); code != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health = %v, want NOT_SERVING", code)
	}
	if st := h.get(t, "/readyz", nil).StatusCode; st != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", st)
	}
	// A policy appearing later is picked up by the watcher.
	src := writePolicyDir(t)
	if err := os.CopyFS(empty, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "policy loaded by the watcher", h.srv.Ready)
	if a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, ""))); a.status != 200 {
		t.Errorf("after the policy appeared: status = %d, want 200", a.status)
	}
}

// TestNotReadyWithoutKeys: an issuer whose JWKS never loaded means 503, with or without a token.
func TestNotReadyWithoutKeys(t *testing.T) {
	h := newHarness(t, false, func(c *Config) { c.Issuers = []string{"http://127.0.0.1:1/oidc"} })
	waitFor(t, "policy", h.srv.policy.Ready)
	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", nil, "")))
	checkDenyShape(t, a, 503, "not_ready")
	if a.status != 503 {
		t.Errorf("status = %d, want 503", a.status)
	}
	if code := h.healthStatus(t); code != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health = %v, want NOT_SERVING", code)
	}
}

// TestPolicyReloadKeepsServing: broken, empty and deleted policy files are rejected; the last
// good policy keeps answering, and a good change is taken.
func TestPolicyReloadKeepsServing(t *testing.T) {
	dir := writePolicyDir(t)
	h := newHarness(t, true, func(c *Config) { c.Policies = dir })
	tok := h.mint(*org("o1", "org:read"))
	req := func() int {
		return readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, ""))).status
	}
	failures := h.srv.policy.Stats().ReloadFailures
	breakages := []func(){
		func() { write(t, filepath.Join(dir, "orgauthz", "broken.rego"), "package orgauthz\n\ndecision := {") },
		func() { write(t, filepath.Join(dir, "orgauthz", "broken.rego"), "") },
		func() {
			os.Remove(filepath.Join(dir, "orgauthz", "broken.rego"))
			os.Remove(filepath.Join(dir, "orgauthz", "decision.rego"))
		},
	}
	for i, breakIt := range breakages {
		breakIt()
		waitFor(t, "reload failure", func() bool { return h.srv.policy.Stats().ReloadFailures > failures })
		failures = h.srv.policy.Stats().ReloadFailures
		if got := req(); got != 200 {
			t.Fatalf("breakage %d: status = %d, want 200 from the last good policy", i, got)
		}
	}
	// A good policy that denies everything is installed.
	write(t, filepath.Join(dir, "orgauthz", "decision.rego"), "package orgauthz\n\ndecision := {\"allow\": false, \"status\": 403, \"reason\": \"closed\"}\n")
	waitFor(t, "new policy", func() bool { return req() == 403 })
	if !strings.Contains(h.get(t, "/metrics", nil).body, "orgauthz_sidecar_policy_reload_failures_total") {
		t.Error("/metrics lacks policy_reload_failures_total")
	}
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPanicIs503: a panic anywhere in the decision path is a 503, over gRPC and HTTP, and the
// server keeps serving.
func TestPanicIs503(t *testing.T) {
	h := newHarnessWith(t, true, func(s *Server) { s.beforeEval = func() { panic("injected") } })
	tok := h.mint(*org("o1", "org:read"))
	hdr := map[string]string{"Authorization": "Bearer " + tok}
	for range 2 {
		a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", hdr, "")))
		checkDenyShape(t, a, 503, "internal_error")
		if a.status != 503 {
			t.Fatalf("gRPC status = %d, want 503", a.status)
		}
	}
	resp := h.get(t, "/envoy/api/organizations/o1", hdr)
	if resp.StatusCode != 503 || !strings.Contains(resp.body, `"internal_error"`) {
		t.Errorf("HTTP /envoy status = %d body %q, want 503 internal_error", resp.StatusCode, resp.body)
	}
	if !strings.Contains(h.logs.String(), "panicked") {
		t.Error("the panic was not logged")
	}
}

// TestOversizedCheckRequest: a CheckRequest over the gRPC limit is refused by gRPC itself (Envoy
// then answers status_on_error, 503).
func TestOversizedCheckRequest(t *testing.T) {
	h := newHarness(t, true)
	in := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Body: strings.Repeat("a", 2<<20)},
	}}}
	_, err := h.auth.Check(context.Background(), in)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Check(2 MiB) error = %v, want ResourceExhausted", err)
	}
}

// TestHostileCheckRequests: requests no Envoy would send still get a deny, never an allow.
func TestHostileCheckRequests(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*admin("admin:org:read"))
	tests := []struct {
		name string
		in   *authv3.CheckRequest
		want int
	}{
		{"empty", &authv3.CheckRequest{}, 400},
		{"no method", httpCheck("", "/api/organizations", nil), 400},
		{"path and :path disagree", httpCheck("GET", "/api/organizations", map[string]string{":path": "/bulk/organizations"}), 400},
		{"method and :method disagree", httpCheck("GET", "/api/organizations", map[string]string{":method": "POST"}), 400},
		{"path from :path only", httpCheck("GET", "", map[string]string{":path": "/api/organizations", "authorization": "Bearer " + tok}), 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a := readAnswer(h.checkRaw(t, tc.in)); a.status != tc.want {
				t.Errorf("status = %d (%s), want %d", a.status, a.body, tc.want)
			}
		})
	}
}

func httpCheck(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: headers},
	}}}
}

// TestHealth: the gRPC health service answers SERVING once ready, and knows the ext_authz service.
func TestHealth(t *testing.T) {
	h := newHarness(t, true)
	if code := h.healthStatus(t); code != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health = %v, want SERVING", code)
	}
	_, err := h.health(t).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v, want NotFound", err)
	}
}

func (h *harness) health(t testing.TB) healthpb.HealthClient {
	conn, err := grpc.NewClient(strings.TrimPrefix(h.grpcAddr(), "tcp://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func (h *harness) healthStatus(t testing.TB) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := h.health(t).Check(context.Background(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatalf("health Check: %v", err)
	}
	return resp.GetStatus()
}

// TestReflection: server reflection only when asked for.
func TestReflection(t *testing.T) {
	for _, on := range []bool{false, true} {
		h := newHarness(t, true, func(c *Config) { c.GRPCReflection = on })
		conn, err := grpc.NewClient(h.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		var resp *reflectionpb.ServerReflectionResponse
		if err == nil {
			// A failed Send reports io.EOF; the stream's status comes from Recv.
			_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			resp, err = stream.Recv()
		}
		conn.Close()
		if !on {
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("reflection off: %v, want Unimplemented", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("reflection on: %v", err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !slices.Contains(names, authv3.Authorization_ServiceDesc.ServiceName) {
			t.Errorf("reflection lists %q, want the ext_authz service", names)
		}
	}
}

// TestIssuerDownOthersDecided: an issuer whose keys never load does not stop the decisions on
// another issuer's tokens; /readyz stays 200 and says which issuer is wrong and why.
func TestIssuerDownOthersDecided(t *testing.T) {
	const down = "http://127.0.0.1:1/oidc"
	h := newHarness(t, true, func(c *Config) { c.Issuers = append(c.Issuers, down) })
	tok := h.mint(*org("o1", "org:read"))
	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, "")))
	if a.status != 200 {
		t.Fatalf("token of the ready issuer: status %d (%s), want 200", a.status, a.body)
	}
	waitFor(t, "a failed fetch of the down issuer", func() bool { return h.srv.tokens.Status()[down] != "no keys loaded yet" })
	r := h.get(t, "/readyz", nil)
	var body struct {
		Keys, Policy bool
		Issuers      map[string]string
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != 200 || !body.Keys || !body.Policy || body.Issuers[h.logto.Issuer()] != "ok" ||
		!strings.Contains(body.Issuers[down], "no keys loaded: ") {
		t.Errorf("/readyz = %d %s, want 200 naming the down issuer's problem", r.StatusCode, r.body)
	}
	if !strings.Contains(h.logs.String(), `"msg":"jwks fetch failed","issuer":"`+down+`"`) {
		t.Errorf("no log line for the down issuer's failed fetch:\n%s", h.logs.String())
	}
}
