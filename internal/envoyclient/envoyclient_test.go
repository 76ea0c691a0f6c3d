package envoyclient

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func newRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type headersTest struct {
	name  string
	build func(t *testing.T) *http.Request
	opts  Options
	want  map[string]string // header → value; "" means absent
	path  string
}

func (tc headersTest) run(t *testing.T) {
	req, err := NewCheckRequest(tc.build(t), tc.opts)
	if err != nil {
		t.Fatalf("NewCheckRequest: %v", err)
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	for name, want := range tc.want {
		got, ok := h.GetHeaders()[name]
		if want == "" && ok {
			t.Errorf("header %q = %q, want absent", name, got)
		}
		if want != "" && got != want {
			t.Errorf("header %q = %q, want %q", name, got, want)
		}
	}
	if tc.path != "" {
		if h.GetPath() != tc.path || h.GetHeaders()[":path"] != tc.path {
			t.Errorf("path = %q, :path = %q, want %q", h.GetPath(), h.GetHeaders()[":path"], tc.path)
		}
	}
	for name := range h.GetHeaders() {
		if name != strings.ToLower(name) {
			t.Errorf("header key %q is not lower-case", name)
		}
	}
}

func TestNewCheckRequestHeaders(t *testing.T) {
	tests := []headersTest{
		{
			name: "repeated headers joined with a comma",
			build: func(t *testing.T) *http.Request {
				r := newRequest(t, "GET", "http://app.example.com/api/organizations", "")
				r.Header.Add("Authorization", "Bearer a")
				r.Header.Add("Authorization", "Bearer b")
				r.Header.Add("X-Custom", "1")
				r.Header.Add("x-custom", "2")
				return r
			},
			want: map[string]string{"authorization": "Bearer a,Bearer b", "x-custom": "1,2"},
		},
		{
			name: "pseudo-headers and no host header",
			build: func(t *testing.T) *http.Request {
				r := newRequest(t, "DELETE", "http://app.example.com:8080/api/organizations/o1", "")
				r.Header.Set("Host", "evil.example.com") // ignored by Go's client too
				return r
			},
			want: map[string]string{":authority": "app.example.com:8080", ":method": "DELETE",
				":scheme": "http", "x-forwarded-proto": "http", "host": ""},
			path: "/api/organizations/o1",
		},
		{
			name: "raw request target kept undecoded",
			build: func(t *testing.T) *http.Request {
				r := newRequest(t, "GET", "http://h/", "")
				r.RequestURI = "/api/organizations/A%2F..%2FB/users;x=1?q=%2F#frag"
				return r
			},
			path: "/api/organizations/A%2F..%2FB/users;x=1?q=%2F#frag",
		},
		{
			name: "escaped URL path kept as written",
			build: func(t *testing.T) *http.Request {
				return newRequest(t, "GET", "http://h/api/organizations/a%2Fb/users?x=%2e%2e", "")
			},
			path: "/api/organizations/a%2Fb/users?x=%2e%2e",
		},
		{
			name: "client pseudo-header and partial-body marker dropped",
			build: func(t *testing.T) *http.Request {
				r := newRequest(t, "GET", "http://h/x", "")
				r.Header[":path"] = []string{"/admin"}
				r.Header.Set("X-Envoy-Auth-Partial-Body", "true")
				return r
			},
			want: map[string]string{":path": "/x", "x-envoy-auth-partial-body": ""},
		},
		{
			name: "use_remote_address appends the peer to x-forwarded-for",
			build: func(t *testing.T) *http.Request {
				r := newRequest(t, "GET", "http://h/x", "")
				r.Header.Set("X-Forwarded-For", "203.0.113.9")
				r.Header.Set("X-Envoy-Internal", "true")
				r.Header.Set("X-Envoy-Original-Path", "/admin")
				return r
			},
			opts: Options{UseRemoteAddress: true, Source: "198.51.100.7:40000"},
			want: map[string]string{"x-forwarded-for": "203.0.113.9,198.51.100.7", "x-envoy-internal": "",
				"x-envoy-original-path": ""},
		},
		{
			name: "use_remote_address marks a loopback peer internal",
			build: func(t *testing.T) *http.Request {
				return newRequest(t, "GET", "http://h/x", "")
			},
			opts: Options{UseRemoteAddress: true, Source: "127.0.0.1:40000"},
			want: map[string]string{"x-forwarded-for": "127.0.0.1", "x-envoy-internal": "true"},
		},
		{
			name: "https scheme",
			build: func(t *testing.T) *http.Request {
				return newRequest(t, "GET", "https://h/x", "")
			},
			opts: Options{Scheme: "https"},
			want: map[string]string{":scheme": "https", "x-forwarded-proto": "https"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestNewCheckRequestReplacesClientRequestID(t *testing.T) {
	r := newRequest(t, "GET", "http://h/x", "")
	r.Header.Set("X-Request-Id", "attacker-chosen")
	req, err := NewCheckRequest(r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]; !uuidRE.MatchString(got) {
		t.Errorf("x-request-id = %q, want a fresh UUID", got)
	}
}

func TestNewCheckRequestAttributes(t *testing.T) {
	r := newRequest(t, "GET", "http://h/x", "")
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.RemoteAddr = "[::1]:5000"
	var ids []uint64
	for range 3 {
		req, err := NewCheckRequest(r, Options{ContextExtensions: map[string]string{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		a := req.GetAttributes()
		id, err := strconv.ParseUint(a.GetRequest().GetHttp().GetId(), 10, 64)
		if err != nil {
			t.Fatalf("id %q: %v", a.GetRequest().GetHttp().GetId(), err)
		}
		ids = append(ids, id)
		if got := a.GetRequest().GetHttp().GetProtocol(); got != "HTTP/2" {
			t.Errorf("protocol = %q, want HTTP/2", got)
		}
		if got := a.GetSource().GetAddress().GetSocketAddress(); got.GetAddress() != "::1" || got.GetPortValue() != 5000 {
			t.Errorf("source = %v, want ::1 port 5000", got)
		}
		if got := a.GetDestination().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 8080 {
			t.Errorf("destination = %v, want 127.0.0.1:8080", got)
		}
		if got := a.GetContextExtensions()["k"]; got != "v" {
			t.Errorf("context_extensions[k] = %q, want v", got)
		}
		if a.GetRequest().GetTime() == nil {
			t.Error("request.time not set")
		}
		if h := a.GetRequest().GetHttp(); h.GetBody() != "" || h.GetSize() != 0 {
			t.Errorf("body %q size %d without WithBody, want none", h.GetBody(), h.GetSize())
		}
	}
	if !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Errorf("ids %v are not increasing", ids)
	}
}

func TestNewCheckRequestBody(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		chunked bool // unknown Content-Length, as a streamed upload
		max     int
		wantErr error
	}{
		{name: "within the limit", body: `{"name":"x"}`, max: 16},
		{name: "exactly the limit", body: strings.Repeat("a", 16), max: 16},
		{name: "over the limit", body: strings.Repeat("a", 17), max: 16, wantErr: ErrBodyTooLarge},
		{name: "over the limit, chunked", body: strings.Repeat("a", 17), chunked: true, max: 16, wantErr: ErrBodyTooLarge},
		{name: "1 MiB against the default limit", body: strings.Repeat("a", 1<<20), wantErr: ErrBodyTooLarge},
		{name: "chunked within the limit", body: "abc", chunked: true, max: 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(t, "POST", "http://h/api/organizations", tc.body)
			if tc.chunked {
				r.ContentLength = -1
			}
			req, err := NewCheckRequest(r, Options{WithBody: true, MaxBody: tc.max})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("NewCheckRequest error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			h := req.GetAttributes().GetRequest().GetHttp()
			if h.GetBody() != tc.body || h.GetSize() != int64(len(tc.body)) {
				t.Errorf("body %q size %d, want %q size %d", h.GetBody(), h.GetSize(), tc.body, len(tc.body))
			}
			if tc.chunked && h.GetHeaders()["transfer-encoding"] != "chunked" {
				t.Errorf("transfer-encoding = %q, want chunked", h.GetHeaders()["transfer-encoding"])
			}
			rest, err := io.ReadAll(r.Body)
			if err != nil || string(rest) != tc.body {
				t.Errorf("body left on the request = %q, %v; want %q to forward", rest, err, tc.body)
			}
		})
	}
}

func TestNewCheckRequestRejectsBadInput(t *testing.T) {
	ok := func(t *testing.T) *http.Request { return newRequest(t, "GET", "http://h/x", "") }
	tests := []struct {
		name  string
		build func(t *testing.T) *http.Request
		opts  Options
	}{
		{"nil request", func(*testing.T) *http.Request { return nil }, Options{}},
		{"empty method", func(t *testing.T) *http.Request { r := ok(t); r.Method = ""; return r }, Options{}},
		{"source without port", ok, Options{Source: "10.0.0.1"}},
		{"source host name", ok, Options{Source: "localhost:80"}},
		{"destination garbage", ok, Options{Destination: "\x00:\xff"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if req, err := NewCheckRequest(tc.build(t), tc.opts); err == nil {
				t.Errorf("NewCheckRequest = %v, want an error", req)
			}
		})
	}
}

func header(key, value string, appendVal *bool) *corev3.HeaderValueOption {
	h := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}}
	if appendVal != nil {
		h.Append = wrapperspb.Bool(*appendVal) //lint:ignore SA1019 the client must handle what a policy server may still send
	}
	return h
}

var (
	yes = new(true)
	no  = new(false)
)

func okResponse(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

func deniedResponse(code int32, d *authv3.DeniedHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: d},
	}
}

type applyTest struct {
	name        string
	resp        *authv3.CheckResponse
	in          http.Header
	wantHeader  http.Header // the request's headers after Apply (allowed)
	wantStatus  int         // 0: allowed
	wantRespHdr http.Header // subset of the denied response's headers
	wantBody    string
}

func (tc applyTest) run(t *testing.T) {
	r := newRequest(t, "GET", "http://h/x", "")
	r.Header = tc.in.Clone()
	resp, err := Apply(tc.resp, r)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if tc.wantStatus == 0 {
		if resp != nil {
			t.Fatalf("Apply = %d, want allowed", resp.StatusCode)
		}
		if !reflect.DeepEqual(r.Header, tc.wantHeader) {
			t.Errorf("headers after Apply = %v, want %v", r.Header, tc.wantHeader)
		}
		return
	}
	if resp == nil {
		t.Fatalf("Apply allowed (headers %v), want %d", r.Header, tc.wantStatus)
	}
	if resp.StatusCode != tc.wantStatus {
		t.Errorf("Apply status = %d, want %d", resp.StatusCode, tc.wantStatus)
	}
	for k := range tc.wantRespHdr {
		if got, want := resp.Header.Values(k), tc.wantRespHdr.Values(k); !reflect.DeepEqual(got, want) {
			t.Errorf("response header %s = %q, want %q", k, got, want)
		}
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != tc.wantBody {
		t.Errorf("response body = %q, %v; want %q", body, err, tc.wantBody)
	}
	if !reflect.DeepEqual(r.Header, tc.in) {
		t.Errorf("a denied Apply changed the request headers to %v", r.Header)
	}
}

func TestApply(t *testing.T) {
	in := http.Header{"Authorization": {"Bearer t"}, "X-Orgauthz-Subject": {"forged"}, "Accept": {"a", "b"}}
	tests := []applyTest{
		{
			name: "append false overwrites and adds",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				header("x-orgauthz-subject", "u1", no),
				header("x-orgauthz-token-kind", "organization", no),
				header("accept", "c", no),
			}}),
			in: in,
			wantHeader: http.Header{"Authorization": {"Bearer t"}, "X-Orgauthz-Subject": {"u1"},
				"X-Orgauthz-Token-Kind": {"organization"}, "Accept": {"c"}},
		},
		{
			name: "append true appends to an existing header, ignores an absent one",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				header("accept", "c", yes),
				header("x-new", "1", yes),
			}}),
			in:         in,
			wantHeader: http.Header{"Authorization": {"Bearer t"}, "X-Orgauthz-Subject": {"forged"}, "Accept": {"a,c", "b"}},
		},
		{
			name: "unset append overwrites",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				header("x-orgauthz-subject", "u1", nil),
			}}),
			in:         in,
			wantHeader: http.Header{"Authorization": {"Bearer t"}, "X-Orgauthz-Subject": {"u1"}, "Accept": {"a", "b"}},
		},
		{
			name: "add if absent",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "accept", Value: "z"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
				{Header: &corev3.HeaderValue{Key: "x-new", Value: "1"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
			}}),
			in: in,
			wantHeader: http.Header{"Authorization": {"Bearer t"}, "X-Orgauthz-Subject": {"forged"},
				"Accept": {"a", "b"}, "X-New": {"1"}},
		},
		{
			name:       "removals, never of pseudo-headers or host",
			resp:       okResponse(&authv3.OkHttpResponse{HeadersToRemove: []string{"authorization", "X-Orgauthz-Subject", ":path", "host", "absent"}}),
			in:         in,
			wantHeader: http.Header{"Accept": {"a", "b"}},
		},
		{
			name:       "absent status is OK, as Envoy reads the proto default",
			resp:       &authv3.CheckResponse{},
			in:         in,
			wantHeader: in,
		},
		{
			name: "status OK wins over a denied_response",
			resp: deniedResponse(int32(codes.OK), &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: 401}}),
			in:   in, wantHeader: in,
		},
		{
			name: "invalid header value is a 500",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				header("x-ok", "fine", no), header("x-bad", "a\r\nInjected: 1", no),
			}}),
			in: in, wantStatus: 500,
		},
		{
			name: "invalid header name is a 500",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{header("bad name", "v", no)}}),
			in:   in, wantStatus: 500,
		},
		{
			name: "pseudo-header mutation is a 500",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{header(":path", "/admin", no)}}),
			in:   in, wantStatus: 500,
		},
		{
			name: "host mutation is a 500",
			resp: okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{header("Host", "evil", no)}}),
			in:   in, wantStatus: 500,
		},
		{
			name: "denied with status, headers and body",
			resp: deniedResponse(int32(codes.Unauthenticated), &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					header("www-authenticate", `Bearer error="invalid_token"`, no),
					header("content-type", "application/json", no),
					header("x-a", "1", yes), header("x-a", "2", yes),
				},
				Body: `{"code":"invalid_token","message":"token expired"}`,
			}),
			in:         in,
			wantStatus: 401,
			wantRespHdr: http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`},
				"Content-Type": {"application/json"}, "X-A": {"1", "2"}},
			wantBody: `{"code":"invalid_token","message":"token expired"}`,
		},
		{
			name:        "denied without a status is 403",
			resp:        deniedResponse(int32(codes.PermissionDenied), &authv3.DeniedHttpResponse{Body: "no"}),
			in:          in,
			wantStatus:  403,
			wantRespHdr: http.Header{"Content-Type": {"text/plain"}},
			wantBody:    "no",
		},
		{
			name:       "denied without a denied_response is 403",
			resp:       &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Internal)}},
			in:         in,
			wantStatus: 403,
		},
		{
			name: "denied ignores an OkHttpResponse",
			resp: &authv3.CheckResponse{
				Status:       &status.Status{Code: int32(codes.PermissionDenied)},
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
			},
			in:         in,
			wantStatus: 403,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestApplyNil(t *testing.T) {
	if _, err := Apply(nil, newRequest(t, "GET", "http://h/", "")); err == nil {
		t.Error("Apply(nil response) error = nil, want an error")
	}
	if _, err := Apply(&authv3.CheckResponse{}, nil); err == nil {
		t.Error("Apply(nil request) error = nil, want an error")
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		target  string
		want    string
		wantErr error
	}{
		{target: "/api/organizations", want: "/api/organizations"},
		{target: "/api/./organizations", want: "/api/organizations"},
		{target: "/api/organizations/a/../b/users", want: "/api/organizations/b/users"},
		{target: "/api/organizations/A/%2e%2e/B", want: "/api/organizations/B"},
		{target: "/api/%2E./%2e/x", want: "/x"},
		{target: "//api///organizations//", want: "/api/organizations/"},
		{target: "/a/.", want: "/a/"},
		{target: "/a/..", want: "/"},
		{target: "/../../etc", want: "/etc"},
		{target: `/api\organizations`, want: "/api/organizations"},
		{target: "/x?y=/api/../organizations//z", want: "/x?y=/api/../organizations//z"},
		{target: "/x#/../admin", want: "/x"},
		{target: "/api/organizations;jsessionid=1", want: "/api/organizations;jsessionid=1"},
		{target: "/api/organizations/A%2F..%2FB/users", wantErr: ErrPathRejected},
		{target: "/api/organizations/A%2f", wantErr: ErrPathRejected},
		{target: "/api/%5Cx", wantErr: ErrPathRejected},
		{target: "/api/%5cx", wantErr: ErrPathRejected},
		{target: "*", wantErr: ErrPathRejected},
		{target: "http://evil/api", wantErr: ErrPathRejected},
	}
	for _, tc := range tests {
		r := newRequest(t, "GET", "http://h/", "")
		r.RequestURI = tc.target
		req, err := NewCheckRequest(r, Options{NormalizePath: true})
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("NewCheckRequest(%q) error = %v, want %v", tc.target, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got := req.GetAttributes().GetRequest().GetHttp().GetPath(); got != tc.want {
			t.Errorf("NewCheckRequest(%q) path = %q, want %q", tc.target, got, tc.want)
		}
	}
}
