// Package envoyclient is an ext_authz client that behaves like the Envoy configured in envoy/:
// it builds the CheckRequest Envoy would send for an *http.Request, calls a real gRPC
// Authorization service, and applies the CheckResponse the way Envoy does (forward with mutated
// headers, or answer with the denied response). Tests use it to drive the sidecar exactly as
// production traffic would, without an Envoy binary.
//
// Where Envoy's behaviour depends on its configuration, the package follows envoy/front-proxy.yaml:
// failure_mode_allow false, status_on_error 503, with_request_body with allow_partial_message
// false (a larger body is a 413 and no check), validate_mutations true and
// decoder_header_mutation_rules with disallow_is_error (an invalid or forbidden mutation is a 500).
//
// By default the request target is sent as given, which is what tests of the sidecar's own path
// checks need. Options.NormalizePath adds an approximation of the connection manager's
// normalize_path, merge_slashes and path_with_escaped_slashes_action: REJECT_REQUEST.
package envoyclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults, matching envoy/front-proxy.yaml.
const (
	DefaultMaxBody       = 16384                         // with_request_body.max_request_bytes
	DefaultStatusOnError = http.StatusServiceUnavailable // status_on_error
	DefaultDestination   = "127.0.0.1:8080"              // the front proxy's listener
	DefaultTimeout       = 2 * time.Second               // generous; the front proxy uses 0.25s
)

// ErrBodyTooLarge is returned by NewCheckRequest when Options.WithBody is set and the body is
// larger than Options.MaxBody. Envoy (allow_partial_message false) then answers 413 itself and
// never calls the authorization service; Client.Do does the same.
var ErrBodyTooLarge = errors.New("envoyclient: request body larger than max_request_bytes")

// ErrPathRejected is returned by NewCheckRequest when Options.NormalizePath is set and the
// connection manager would reject the path (an escaped slash or backslash); Envoy answers 400
// before any check, and Client.Do does the same.
var ErrPathRejected = errors.New("envoyclient: path rejected by the connection manager")

// Options says how the emulated Envoy builds CheckRequests.
type Options struct {
	// WithBody buffers the request body and sends it as attributes.request.http.body, as
	// with_request_body does. The body is restored on the request afterwards.
	WithBody bool
	// MaxBody is max_request_bytes. Default DefaultMaxBody.
	MaxBody int
	// Source is the downstream peer "ip:port". Default: r.RemoteAddr when it is one, else
	// "127.0.0.1:" plus a port derived from the stream id.
	Source string
	// Destination is the listener's local "ip:port". Default DefaultDestination.
	Destination string
	// Scheme of the downstream connection: sent as :scheme, scheme and x-forwarded-proto.
	// Default "https" when r.TLS is set, else "http".
	Scheme string
	// UseRemoteAddress mimics the connection manager's use_remote_address: true (as in
	// envoy/*.yaml): the source IP is appended to x-forwarded-for, and x-envoy-internal: true
	// is added when the source is a loopback or private address. The OPA example request was
	// captured with it off.
	UseRemoteAddress bool
	// NormalizePath applies the connection manager's path handling from envoy/*.yaml before the
	// check: %2F or %5C in the path (any case) is rejected, the fragment is dropped, a backslash counts
	// as "/", dot segments (also %2e-encoded) are removed and repeated slashes merged; the query is
	// left alone. It approximates the Chromium canonicaliser Envoy uses: other escapes are not
	// normalised.
	NormalizePath bool
	// ContextExtensions are sent as attributes.context_extensions (per-route check_settings).
	ContextExtensions map[string]string
	// Timeout bounds each Check call in Client.Do; past it the answer is status_on_error.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Now gives request.time. Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults(r *http.Request) Options {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Destination == "" {
		o.Destination = DefaultDestination
	}
	if o.Scheme == "" {
		o.Scheme = "http"
		if r.TLS != nil {
			o.Scheme = "https"
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// streamID is Envoy's per-stream id: a decimal uint64, here increasing from a random start.
var streamID atomic.Uint64

func init() {
	start, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		panic(err)
	}
	streamID.Store(start.Uint64())
}

// headersAddedByEnvoy are the request headers the connection manager adds before ext_authz runs;
// they are also forwarded upstream.
var headersAddedByEnvoy = []string{"x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-envoy-internal"}

// NewCheckRequest builds the CheckRequest Envoy sends for r: attributes.request.http with the
// stream id, method, lower-case headers (pseudo-headers included, repeated headers joined with
// ","), the raw request target as path (query included, nothing decoded), host, scheme,
// protocol and, with Options.WithBody, the body and its size; request.time; the source and
// destination socket addresses.
//
// The raw target is r.RequestURI when set (so tests can send targets url.URL would rewrite),
// else r.URL.RequestURI(). Values that are not valid UTF-8 are sent as they are: a real Envoy
// does the same, and the gRPC server then fails to decode the message, as it would here.
func NewCheckRequest(r *http.Request, opts Options) (*authv3.CheckRequest, error) {
	if r == nil || r.URL == nil {
		return nil, errors.New("envoyclient: nil request or URL")
	}
	opts = opts.withDefaults(r)
	if r.Method == "" {
		return nil, errors.New("envoyclient: empty method")
	}
	id := streamID.Add(1)

	source := opts.Source
	if source == "" {
		source = r.RemoteAddr
		if _, _, err := net.SplitHostPort(source); err != nil {
			source = "127.0.0.1:" + strconv.FormatUint(32768+id%28000, 10)
		}
	}
	src, err := socketAddress(source)
	if err != nil {
		return nil, fmt.Errorf("envoyclient: source: %w", err)
	}
	dst, err := socketAddress(opts.Destination)
	if err != nil {
		return nil, fmt.Errorf("envoyclient: destination: %w", err)
	}

	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	if opts.NormalizePath {
		if target, err = normalizePath(target); err != nil {
			return nil, err
		}
	}
	authority := r.Host
	if authority == "" {
		authority = r.URL.Host
	}

	headers := map[string]string{
		":authority": authority,
		":method":    r.Method,
		":path":      target,
		":scheme":    opts.Scheme,
	}
	for name, values := range r.Header {
		key := strings.ToLower(name)
		switch {
		case key == "host" || strings.HasPrefix(key, ":"):
			continue // Go keeps the host in r.Host; pseudo-headers cannot come from a client
		case key == "x-envoy-auth-partial-body":
			continue // Envoy never forwards a client's copy of its own marker
		case opts.UseRemoteAddress && strings.HasPrefix(key, "x-envoy-"):
			continue // edge Envoy strips x-envoy-* from external clients
		}
		for _, v := range values {
			if old, ok := headers[key]; ok {
				headers[key] = old + "," + v
			} else {
				headers[key] = v
			}
		}
	}
	switch {
	case r.ContentLength > 0:
		headers["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		headers["transfer-encoding"] = "chunked"
	}
	headers["x-forwarded-proto"] = opts.Scheme
	headers["x-request-id"] = newRequestID()
	if opts.UseRemoteAddress {
		ip := src.GetSocketAddress().GetAddress()
		if old, ok := headers["x-forwarded-for"]; ok {
			headers["x-forwarded-for"] = old + "," + ip
		} else {
			headers["x-forwarded-for"] = ip
		}
		delete(headers, "x-envoy-internal")
		if a, err := netip.ParseAddr(ip); err == nil && (a.IsLoopback() || a.IsPrivate()) {
			headers["x-envoy-internal"] = "true"
		}
	}

	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(id, 10),
		Method:   r.Method,
		Headers:  headers,
		Path:     target,
		Host:     authority,
		Scheme:   opts.Scheme,
		Protocol: protocol(r),
	}
	if opts.WithBody {
		body, err := readBody(r, opts.MaxBody)
		if err != nil {
			return nil, err
		}
		httpReq.Body = string(body)
		httpReq.Size = int64(len(body))
	}

	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: src},
		Destination:       &authv3.AttributeContext_Peer{Address: dst},
		Request:           &authv3.AttributeContext_Request{Time: timestamppb.New(opts.Now()), Http: httpReq},
		ContextExtensions: opts.ContextExtensions,
		MetadataContext:   &corev3.Metadata{},
	}}, nil
}

// normalizePath does what normalize_path, merge_slashes and escaped-slash rejection do to a
// request target; see Options.NormalizePath.
func normalizePath(target string) (string, error) {
	target, _, _ = strings.Cut(target, "#")
	p, query, hasQuery := strings.Cut(target, "?")
	lower := strings.ToLower(p)
	if !strings.HasPrefix(p, "/") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return "", ErrPathRejected
	}
	segments := strings.Split(strings.ReplaceAll(p[1:], `\`, "/"), "/")
	var out []string
	for i, seg := range segments {
		last := i == len(segments)-1
		switch strings.ToLower(seg) {
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	p = "/" + strings.Join(out, "/")
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if hasQuery {
		p += "?" + query
	}
	return p, nil
}

// readBody reads at most max bytes of r.Body and puts what it read back on r, so the request can
// still be forwarded.
func readBody(r *http.Request, max int) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > int64(max) {
		return nil, ErrBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("envoyclient: read body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > max {
		return nil, ErrBodyTooLarge
	}
	return body, nil
}

func socketAddress(hostport string) (*corev3.Address, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return nil, err
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().Unmap().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}, nil
}

// protocol names r's protocol as Envoy does ("HTTP/1.1", "HTTP/2", "HTTP/3").
func protocol(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "HTTP/2"
	case r.ProtoMajor == 3:
		return "HTTP/3"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "HTTP/1.0"
	default:
		return "HTTP/1.1"
	}
}

// newRequestID returns a random (version 4) UUID, as Envoy's default request id extension does.
func newRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Apply applies a CheckResponse as Envoy does. A status of OK (including an absent status:
// Envoy reads the proto default, code 0) allows: r's headers are mutated per the OkHttpResponse
// and Apply returns nil. Any other status denies: Apply returns the response Envoy would send,
// with the DeniedHttpResponse's status (403 when unset or 0), headers and body.
//
// Header mutations follow Envoy's ext_authz filter: append false (or unset) overwrites or adds;
// append true appends ",value" to an existing header and is ignored when the header is absent;
// headers_to_remove never removes pseudo-headers or host. A mutation with an invalid name or
// value, or one touching a pseudo-header, host or x-envoy-*, makes the answer a 500 (as with
// validate_mutations and decoder_header_mutation_rules.disallow_is_error), and r is left as it was.
// An error is returned only for a nil response or request.
func Apply(resp *authv3.CheckResponse, r *http.Request) (*http.Response, error) {
	if resp == nil || r == nil {
		return nil, errors.New("envoyclient: nil response or request")
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		return denied(resp.GetDeniedResponse(), r), nil
	}
	ok := resp.GetOkResponse()
	for _, h := range ok.GetHeaders() {
		if err := checkMutation(h.GetHeader().GetKey(), h.GetHeader().GetValue()); err != nil {
			return localReply(r, http.StatusInternalServerError, ""), nil
		}
	}
	for _, h := range ok.GetHeaders() {
		applyHeader(r.Header, h, false)
	}
	for _, name := range ok.GetHeadersToRemove() {
		key := strings.ToLower(name)
		if strings.HasPrefix(key, ":") || key == "host" {
			continue
		}
		r.Header.Del(key)
	}
	return nil, nil
}

// checkMutation rejects what validate_mutations and the default header mutation rules reject.
func checkMutation(key, value string) error {
	lower := strings.ToLower(key)
	switch {
	case !validHeader(key, value):
		return fmt.Errorf("envoyclient: invalid header mutation %q", key)
	case strings.HasPrefix(lower, ":"), lower == "host", strings.HasPrefix(lower, "x-envoy-"):
		return fmt.Errorf("envoyclient: disallowed header mutation %q", key)
	}
	return nil
}

func validHeader(key, value string) bool {
	return httpguts.ValidHeaderFieldName(key) && httpguts.ValidHeaderFieldValue(value)
}

// applyHeader applies one HeaderValueOption to h. On a denied response (local reply) append
// true adds a value; on a request it appends to an existing one, as Envoy's appendCopy does.
func applyHeader(h http.Header, opt *corev3.HeaderValueOption, localReply bool) {
	key, value := opt.GetHeader().GetKey(), opt.GetHeader().GetValue()
	exists := len(h.Values(key)) > 0
	//lint:ignore SA1019 Envoy still honours the deprecated append field, so its faithful client must too.
	if opt.GetAppend() != nil {
		switch {
		case !opt.GetAppend().GetValue(): //lint:ignore SA1019 as above
			h.Set(key, value)
		case localReply:
			h.Add(key, value)
		case exists:
			values := h.Values(key)
			values[0] += "," + value
		}
		return
	}
	switch opt.GetAppendAction() {
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !exists {
			h.Set(key, value)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if exists {
			h.Set(key, value)
		}
	default: // an unset append means false in ext_authz responses: overwrite or add
		h.Set(key, value)
	}
}

// denied builds the local reply for a denied check.
func denied(d *authv3.DeniedHttpResponse, r *http.Request) *http.Response {
	status := int(d.GetStatus().GetCode())
	if status <= 0 {
		status = http.StatusForbidden
	}
	resp := localReply(r, status, d.GetBody())
	for _, h := range d.GetHeaders() {
		if !validHeader(h.GetHeader().GetKey(), h.GetHeader().GetValue()) {
			continue // validate_mutations: an invalid header never reaches the client
		}
		applyHeader(resp.Header, h, true)
	}
	return resp
}

// localReply is a response Envoy generates itself.
func localReply(r *http.Request, status int, body string) *http.Response {
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}

// Client is an emulated Envoy: it checks each request with an Authorization service over a
// real gRPC connection, then forwards it or answers as Envoy would.
type Client struct {
	auth authv3.AuthorizationClient
	conn *grpc.ClientConn // owned when made by Dial
	opts Options
}

// New returns a Client over conn, which the caller keeps and closes.
func New(conn grpc.ClientConnInterface, opts Options) *Client {
	return &Client{auth: authv3.NewAuthorizationClient(conn), opts: opts}
}

// Dial connects to the Authorization service at addr ("127.0.0.1:9191") in plaintext, as the
// front proxy's orgauthz_sidecar cluster does. Close releases the connection.
func Dial(addr string, opts Options) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("envoyclient: dial %s: %w", addr, err)
	}
	c := New(conn, opts)
	c.conn = conn
	return c, nil
}

// Close closes a connection made by Dial.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Check sends the CheckRequest for r and returns the raw answer.
func (c *Client) Check(ctx context.Context, r *http.Request) (*authv3.CheckResponse, error) {
	req, err := NewCheckRequest(r, c.opts)
	if err != nil {
		return nil, err
	}
	return c.auth.Check(ctx, req)
}

// Do handles r as Envoy does: a body over MaxBody is 413; with Options.NormalizePath, a
// rejected path is 400; a failed, timed-out or undecodable
// check is status_on_error (503, empty body); a denial is the denied response; an allowed
// request is forwarded through next with Envoy's added headers (x-request-id,
// x-forwarded-proto, …) and the sidecar's mutations, and the OkHttpResponse's
// response_headers_to_add are added to next's response. r's headers are not modified; its body
// is consumed. The upstream receives exactly the request target that was checked.
func (c *Client) Do(r *http.Request, next http.RoundTripper) (*http.Response, error) {
	opts := c.opts.withDefaults(r)
	out := r.Clone(r.Context())
	if opts.UseRemoteAddress {
		for name := range out.Header {
			if strings.HasPrefix(strings.ToLower(name), "x-envoy-") {
				out.Header.Del(name)
			}
		}
	}

	req, err := NewCheckRequest(out, opts)
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		return localReply(r, http.StatusRequestEntityTooLarge, "Payload Too Large"), nil
	case errors.Is(err, ErrPathRejected):
		return localReply(r, http.StatusBadRequest, ""), nil
	case err != nil:
		return nil, err
	}
	// Forward exactly the target that was checked, byte for byte.
	out.RequestURI = "" // a client request must not carry it
	path, query, hasQuery := strings.Cut(req.GetAttributes().GetRequest().GetHttp().GetPath(), "?")
	out.URL.Opaque, out.URL.RawPath, out.URL.RawQuery, out.URL.ForceQuery = path, "", query, hasQuery && query == ""
	ctx, cancel := context.WithTimeout(r.Context(), opts.Timeout)
	resp, err := c.auth.Check(ctx, req)
	cancel()
	if err != nil {
		return localReply(r, DefaultStatusOnError, ""), nil
	}

	added := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	for _, name := range headersAddedByEnvoy {
		if v, ok := added[name]; ok {
			out.Header.Set(name, v)
		} else {
			out.Header.Del(name)
		}
	}
	if deny, err := Apply(resp, out); err != nil || deny != nil {
		return deny, err
	}
	upstream, err := next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		if checkMutation(h.GetHeader().GetKey(), h.GetHeader().GetValue()) == nil {
			applyHeader(upstream.Header, h, true)
		}
	}
	return upstream, nil
}

// Transport returns an http.RoundTripper that sends every request through c.Do to next, so an
// http.Client can stand in for a client calling through Envoy.
func (c *Client) Transport(next http.RoundTripper) http.RoundTripper {
	return transport{c, next}
}

type transport struct {
	c    *Client
	next http.RoundTripper
}

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) { return t.c.Do(r, t.next) }
