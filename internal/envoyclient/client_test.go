package envoyclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// authServer is an Authorization service on a real socket whose answer each test chooses.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	answer func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)

	mu       sync.Mutex
	requests []*authv3.CheckRequest
}

func (s *authServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	return s.answer(ctx, req)
}

func (s *authServer) checks() []*authv3.CheckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), s.requests...)
}

// newClient starts s on 127.0.0.1 and returns a Client dialled to it.
func newClient(t *testing.T, s *authServer, opts Options) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := Dial(lis.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// upstream records what reached it.
type upstream struct {
	srv *httptest.Server
	got chan *http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{got: make(chan *http.Request, 10)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		u.got <- r
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) received() []*http.Request {
	var out []*http.Request
	for {
		select {
		case r := <-u.got:
			out = append(out, r)
		default:
			return out
		}
	}
}

func allow(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{header("x-orgauthz-subject", "u1", no)},
			HeadersToRemove:      []string{"authorization"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{header("x-orgauthz-decision-id", "d1", no)},
		}},
	}, nil
}

func TestClientDoAllowed(t *testing.T) {
	s := &authServer{answer: allow}
	c := newClient(t, s, Options{WithBody: true})
	up := newUpstream(t)

	r := newRequest(t, "POST", up.srv.URL+"/api/organizations?page=1", `{"name":"acme"}`)
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("X-Orgauthz-Subject", "forged")
	resp, err := c.Do(r, http.DefaultTransport)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("Do = %d %v, want the upstream's 201", resp.StatusCode, resp.Header)
	}
	if got := resp.Header.Get("X-Orgauthz-Decision-Id"); got != "d1" {
		t.Errorf("response x-orgauthz-decision-id = %q, want d1 (response_headers_to_add)", got)
	}

	reqs := up.received()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	fwd := reqs[0]
	checks := s.checks()
	if len(checks) != 1 {
		t.Fatalf("server got %d checks, want 1", len(checks))
	}
	sent := checks[0].GetAttributes().GetRequest().GetHttp()
	for _, tc := range []struct{ name, got, want string }{
		{"authorization", fwd.Header.Get("Authorization"), ""},
		{"x-orgauthz-subject", fwd.Header.Get("X-Orgauthz-Subject"), "u1"},
		{"x-request-id", fwd.Header.Get("X-Request-Id"), sent.GetHeaders()["x-request-id"]},
		{"x-forwarded-proto", fwd.Header.Get("X-Forwarded-Proto"), "http"},
		{"path", fwd.URL.RequestURI(), "/api/organizations?page=1"},
		{"checked body", sent.GetBody(), `{"name":"acme"}`},
	} {
		if tc.got != tc.want {
			t.Errorf("forwarded %s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if body, _ := io.ReadAll(fwd.Body); string(body) != `{"name":"acme"}` {
		t.Errorf("forwarded body = %q, want the original", body)
	}
	if r.Header.Get("X-Orgauthz-Subject") != "forged" {
		t.Error("Do changed the caller's request headers")
	}
}

type doTest struct {
	name       string
	answer     func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
	opts       Options
	body       string
	wantStatus int
	wantBody   string
	wantChecks int
}

func (tc doTest) run(t *testing.T) {
	s := &authServer{answer: tc.answer}
	c := newClient(t, s, tc.opts)
	up := newUpstream(t)
	r := newRequest(t, "POST", up.srv.URL+"/api/organizations", tc.body)
	resp, err := c.Do(r, http.DefaultTransport)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
		t.Errorf("Do = %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
	}
	if n := len(up.received()); n != 0 {
		t.Errorf("upstream got %d requests, want 0", n)
	}
	if n := len(s.checks()); n != tc.wantChecks {
		t.Errorf("server got %d checks, want %d", n, tc.wantChecks)
	}
}

func TestClientDoNotForwarded(t *testing.T) {
	tests := []doTest{
		{
			name: "denied",
			answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return deniedResponse(int32(codes.PermissionDenied), &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: `{"code":"missing_scope"}`,
				}), nil
			},
			wantStatus: 403, wantBody: `{"code":"missing_scope"}`, wantChecks: 1,
		},
		{
			name: "server error is status_on_error",
			answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, grpcstatus.Error(codes.Internal, "boom")
			},
			wantStatus: 503, wantChecks: 1,
		},
		{
			name: "timeout is status_on_error",
			answer: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				<-ctx.Done() // answers only once the client has given up
				return allow(ctx, nil)
			},
			opts:       Options{Timeout: 50 * time.Millisecond},
			wantStatus: 503, wantChecks: 1,
		},
		{
			name:       "body over the limit is 413 without a check",
			answer:     allow,
			opts:       Options{WithBody: true, MaxBody: 8},
			body:       "123456789",
			wantStatus: 413, wantBody: "Payload Too Large", wantChecks: 0,
		},
		{
			name: "invalid mutation is 500",
			answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{header("x-a", "1\n2", no)}}), nil
			},
			wantStatus: 500, wantChecks: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestClientDoNonUTF8IsStatusOnError(t *testing.T) {
	s := &authServer{answer: allow}
	c := newClient(t, s, Options{})
	up := newUpstream(t)
	r := newRequest(t, "GET", up.srv.URL+"/api/organizations", "")
	r.Header.Set("Authorization", "Bearer \xff\xfe")
	resp, err := c.Do(r, http.DefaultTransport)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("Do = %d, want 503 (a proto3 string cannot carry the header)", resp.StatusCode)
	}
	if n := len(up.received()); n != 0 {
		t.Errorf("upstream got %d requests, want 0", n)
	}
}

func TestDialUnreachableIsStatusOnError(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	c, err := Dial(addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Do(newRequest(t, "GET", "http://127.0.0.1:1/x", ""), roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("must not be forwarded")
	}))
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if resp.StatusCode != 503 {
		t.Errorf("Do = %d, want 503", resp.StatusCode)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestClientDoForwardsTheCheckedTarget: the upstream sees byte for byte the path the sidecar
// approved, including targets url.URL would rewrite.
func TestClientDoForwardsTheCheckedTarget(t *testing.T) {
	tests := []struct {
		target, want string
		normalize    bool
		wantStatus   int
	}{
		{target: "/api/organizations/o1/users?page=1&q=%2F", want: "/api/organizations/o1/users?page=1&q=%2F", wantStatus: 201},
		{target: "/api/organizations/o1;x=1", want: "/api/organizations/o1;x=1", wantStatus: 201},
		{target: "/api/Organizations/%6F1", want: "/api/Organizations/%6F1", wantStatus: 201},
		{target: "/api/x/../organizations//o1", want: "/api/organizations/o1", normalize: true, wantStatus: 201},
		{target: "/api/organizations/A%2F..%2FB", normalize: true, wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			s := &authServer{answer: allow}
			c := newClient(t, s, Options{NormalizePath: tc.normalize})
			up := newUpstream(t)
			r := newRequest(t, "GET", up.srv.URL+"/ignored", "")
			r.RequestURI = tc.target
			resp, err := c.Do(r, http.DefaultTransport)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("Do = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			reqs, checks := up.received(), s.checks()
			if tc.wantStatus != 201 {
				if len(reqs) != 0 || len(checks) != 0 {
					t.Errorf("upstream got %d requests and server %d checks, want 0 and 0", len(reqs), len(checks))
				}
				return
			}
			if len(reqs) != 1 || len(checks) != 1 {
				t.Fatalf("upstream got %d requests and server %d checks, want 1 and 1", len(reqs), len(checks))
			}
			checked := checks[0].GetAttributes().GetRequest().GetHttp().GetPath()
			if got := reqs[0].RequestURI; got != tc.want || checked != tc.want {
				t.Errorf("forwarded %q, checked %q, want %q for both", got, checked, tc.want)
			}
		})
	}
}

func TestClientTransport(t *testing.T) {
	s := &authServer{answer: allow}
	c := newClient(t, s, Options{})
	up := newUpstream(t)
	hc := &http.Client{Transport: c.Transport(http.DefaultTransport)}
	resp, err := hc.Get(up.srv.URL + "/api/organizations")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || len(s.checks()) != 1 {
		t.Errorf("Get = %d after %d checks, want 201 after 1", resp.StatusCode, len(s.checks()))
	}
}
