package main

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func TestPercentile(t *testing.T) {
	o := outcome{}
	for i := 1; i <= 100; i++ {
		o.lat = append(o.lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := o.pct(tc.p); got != tc.want {
			t.Errorf("pct(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := (outcome{}).pct(99); got != 0 {
		t.Errorf("pct of no latencies = %v, want 0", got)
	}
}

func TestJudge(t *testing.T) {
	allowed := &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: "x-orgauthz-decision", Value: "d"}},
		}}},
	}
	bare := &authv3.CheckResponse{
		Status:       &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
	denied := func(grpcCode codes.Code, http typev3.StatusCode) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(grpcCode)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: http},
			}},
		}
	}
	forbid := want{status: 403}
	for _, tc := range []struct {
		name   string
		target target
		want   want
		resp   *authv3.CheckResponse
		ok     bool
	}{
		{"allowed as expected", target{decision: true}, allowAll, allowed, true},
		{"allowed without a decision", target{decision: true}, allowAll, bare, false},
		{"allowed when denied expected", target{}, forbid, bare, false},
		{"denied as expected", target{}, forbid, denied(codes.PermissionDenied, 403), true},
		{"denied with another status", target{}, forbid, denied(codes.PermissionDenied, 401), false},
		{"denied when allowed expected", target{}, allowAll, denied(codes.PermissionDenied, 403), false},
		{"deny status with grpc OK", target{}, forbid, denied(codes.OK, 403), false},
		{"empty answer", target{}, forbid, &authv3.CheckResponse{}, false},
		{"null server allows all", target{anyToken: true}, forbid, bare, true},
	} {
		got := tc.target.judge(&check{want: tc.want}, tc.resp)
		if (got == "") != tc.ok {
			t.Errorf("%s: judge = %q, want ok %v", tc.name, got, tc.ok)
		}
	}
}

// recorder is an ext_authz server that keeps the requests it gets.
type recorder struct {
	authv3.UnimplementedAuthorizationServer
	got chan *authv3.CheckRequest
}

func (r recorder) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r.got <- req
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

// TestRawCodec shows that pre-marshalled requests reach the server unchanged.
func TestRawCodec(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := recorder{got: make(chan *authv3.CheckRequest, 1)}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, rec)
	go s.Serve(ln)
	defer s.Stop()
	conns, err := dial(ln.Addr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{conns: conns}
	defer tg.close()

	sent := nullCheck()
	sent.Attributes.Request.Http.Headers["authorization"] = "Bearer x.y.z"
	raw, err := proto.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	src := &pool{checks: []check{{raw: raw, want: allowAll}}}
	f := tg.checks(src)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if problem, more := f(ctx, 0); problem != "" || !more {
		t.Fatalf("fire = %q, %v; want \"\", true", problem, more)
	}
	got := <-rec.got
	if !proto.Equal(got, sent) {
		t.Errorf("server got %v, want %v", got, sent)
	}
	if _, more := f(ctx, 0); more {
		t.Errorf("fire on a used-up pool: more = true, want false")
	}
}

// TestRunTogether shows that calls run together alternate between the fires and that each
// call's latency and failure is counted against its own fire, at a fixed rate and in a
// closed loop.
func TestRunTogether(t *testing.T) {
	fast := func(context.Context, int) (string, bool) { return "", true }
	slow := func(ctx context.Context, _ int) (string, bool) {
		time.Sleep(5 * time.Millisecond)
		return "wrong", true
	}
	for _, l := range []load{
		{duration: 500 * time.Millisecond, rate: 400, workers: 16},
		{duration: 200 * time.Millisecond, workers: 4},
	} {
		o, err := runTogether(context.Background(), l, way{fast, os.Getpid()}, way{slow, 0})
		if err != nil {
			t.Fatal(err)
		}
		if len(o) != 2 {
			t.Fatalf("%+v: %d outcomes, want 2", l, len(o))
		}
		if o[1].n == 0 || max(o[0].n-o[1].n, o[1].n-o[0].n) > l.workers {
			t.Errorf("%+v: %d fast and %d slow calls, want them alternating", l, o[0].n, o[1].n)
		}
		if l.rate > 0 && (o[0].n != 100 || o[1].n != 100) {
			t.Errorf("%+v: %d fast and %d slow calls, want 100 each (400/s for 0.5 s)", l, o[0].n, o[1].n)
		}
		if o[0].failures != 0 || o[1].failures != o[1].n || o[1].firstFail != "wrong" {
			t.Errorf("%+v: failures %d (fast), %d of %d %q (slow), want 0 and all", l, o[0].failures, o[1].failures, o[1].n, o[1].firstFail)
		}
		if p := o[1].pct(1); p < 5*time.Millisecond {
			t.Errorf("%+v: slow fire's fastest call %v, want ≥ 5ms", l, p)
		}
		if p := o[0].pct(50); p >= 5*time.Millisecond {
			t.Errorf("%+v: fast fire's median %v, want < 5ms", l, p)
		}
		if o[1].cpu != 0 {
			t.Errorf("%+v: CPU %v for the way with no process, want 0", l, o[1].cpu)
		}
	}
}
