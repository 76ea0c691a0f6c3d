package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// Bounds on what a request may carry into the policy. Larger requests are refused (400) or, for
// a body, given to the policy as null.
const (
	maxQueryBytes  = 8 << 10
	maxQueryParams = 100
	maxJSONDepth   = 32
)

// Reasons for requests refused before the token or the policy is looked at. Each is a response
// body's code and a metric label.
const (
	reasonInvalidMethod     = "invalid_method"
	reasonMethodOverride    = "method_override"
	reasonInvalidPath       = "invalid_path"
	reasonInvalidQuery      = "invalid_query"
	reasonInvalidConnection = "invalid_connection_header"
	reasonInvalidAuth       = "invalid_authorization"
	reasonMultipleTokens    = "multiple_tokens"
	reasonBodyTooLarge      = "body_too_large"
)

// partialBodyHeader is the header Envoy's with_request_body adds to the checked request: "true"
// when it buffered only part of the body (allow_partial_message), "false" when all of it.
const partialBodyHeader = "x-envoy-auth-partial-body"

// methodOverrideHeaders would let a client make the app see another method than the policy did.
var methodOverrideHeaders = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// rawRequest is what a proxy told us about one request, before any checking: the common form of
// a CheckRequest and of the HTTP check endpoints' requests.
type rawRequest struct {
	id         string            // decision id: decisionlog.NewID, never taken from the request
	traceID    string            // the Check span's trace id when tracing is on (tracing.go)
	requestID  string            // the client's or proxy's X-Request-Id, for the audit record only
	method     string            // as sent
	target     string            // raw request target: path and query, nothing decoded
	host       string            // authority
	headers    map[string]string // lower-case names, repeated headers joined with ","
	body       []byte            // nil when the proxy sent none
	partial    bool              // the proxy sent only part of the body, or which bytes it is is unknown
	source     string            // peer address, no port
	extensions map[string]string // Envoy per-route context extensions
}

// request is a checked request: canonical method and path, and what the policy may see.
type request struct {
	*rawRequest
	path          string              // canonical path, no query
	segments      []string            // path split on "/", each non-empty
	query         map[string][]string // parsed query; never used for routing
	bearer        string              // the token, "" when there is no Authorization header
	inputHeaders  map[string]string   // headers without credentials and x-orgauthz-*
	body          ast.Value           // parsed JSON body, nil when absent or not JSON
	clientHeaders []string            // client-sent x-orgauthz-* names, removed on allow
}

// rejection refuses a request before any token or policy is consulted.
type rejection struct {
	status int
	reason string
}

// fromCheckRequest reads the request part of an Envoy CheckRequest.
func fromCheckRequest(in *authv3.CheckRequest) *rawRequest {
	attrs := in.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	raw := &rawRequest{
		method:     h.GetMethod(),
		target:     h.GetPath(),
		host:       h.GetHost(),
		headers:    make(map[string]string, len(h.GetHeaders())),
		source:     attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		extensions: attrs.GetContextExtensions(),
	}
	for k, v := range h.GetHeaders() {
		raw.headers[strings.ToLower(k)] = v
	}
	// With encode_raw_headers Envoy sends header_map instead: one entry per value.
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if v == "" {
			v = string(hv.GetRawValue())
		}
		if old, ok := raw.headers[k]; ok {
			v = old + "," + v
		}
		raw.headers[k] = v
	}
	switch rawBody, body := h.GetRawBody(), h.GetBody(); {
	case len(rawBody) > 0 && body != "" && string(rawBody) != body:
		raw.partial = true // two different bodies: which one the upstream gets is unknown
	case len(rawBody) > 0:
		raw.body = rawBody
	case body != "":
		raw.body = []byte(body)
	}
	raw.partial = raw.partial || envoyBodyIncomplete(raw.headers, raw.body)
	if raw.target == "" {
		raw.target = raw.headers[":path"]
	}
	if raw.method == "" {
		raw.method = raw.headers[":method"]
	}
	if raw.host == "" {
		raw.host = raw.headers[":authority"]
	}
	raw.id, raw.requestID = decisionlog.NewID(), raw.headers["x-request-id"]
	return raw
}

// envoyBodyIncomplete reports whether the body Envoy sent (nil: none) may not be the whole request
// body: Envoy says it is partial, or the request's Content-Length disagrees with the bytes sent.
// No body and no partial-body header is a proxy that does not send bodies (Envoy without
// with_request_body): not partial, and its allows bind no body.
func envoyBodyIncomplete(headers map[string]string, body []byte) bool {
	flag, buffered := headers[partialBodyHeader]
	if buffered && flag != "false" {
		return true
	}
	if body == nil && !buffered {
		return false
	}
	cl, ok := headers["content-length"]
	if !ok {
		return false // chunked or HTTP/2 without a length: what Envoy buffered is all there was
	}
	n, err := strconv.ParseUint(cl, 10, 63)
	return err != nil || n != uint64(len(body))
}

// parseRequest checks raw as DESIGN's request flow steps 1 to 3 say. A rejection is a 400 or a
// 401 decided before the token is verified or the policy runs.
func parseRequest(raw *rawRequest, maxBody int) (*request, *rejection) {
	req := &request{rawRequest: raw}
	if !decision.ValidMethod(raw.method) {
		return req, &rejection{400, reasonInvalidMethod}
	}
	if m, ok := raw.headers[":method"]; ok && m != raw.method {
		return req, &rejection{400, reasonInvalidMethod}
	}
	for _, h := range methodOverrideHeaders {
		if _, ok := raw.headers[h]; ok {
			return req, &rejection{400, reasonMethodOverride}
		}
	}
	if p, ok := raw.headers[":path"]; ok && p != raw.target {
		return req, &rejection{400, reasonInvalidPath}
	}
	path, rawQuery, _ := strings.Cut(raw.target, "?")
	segments, ok := decision.CanonicalPath(path)
	if !ok {
		return req, &rejection{400, reasonInvalidPath}
	}
	req.path, req.segments = path, segments
	query, ok := parseQuery(rawQuery)
	if !ok {
		return req, &rejection{400, reasonInvalidQuery}
	}
	req.query = query
	if c, ok := raw.headers["connection"]; ok && hidesIdentity(c) {
		return req, &rejection{400, reasonInvalidConnection}
	}
	if raw.partial {
		// An allow must bind the body the upstream gets, and a part of it is not that body.
		return req, &rejection{413, reasonBodyTooLarge}
	}

	req.inputHeaders = make(map[string]string, len(raw.headers))
	for k, v := range raw.headers {
		switch {
		case strings.HasPrefix(k, "x-orgauthz-"):
			req.clientHeaders = append(req.clientHeaders, k)
		case k == "authorization", k == "cookie", k == "proxy-authorization":
		default:
			req.inputHeaders[k] = v
		}
	}
	if auth, ok := raw.headers["authorization"]; ok {
		tok, rej := parseBearer(auth)
		if rej != nil {
			return req, rej
		}
		req.bearer = tok
	}
	if raw.body != nil && len(raw.body) <= maxBody && isJSON(raw.headers["content-type"]) {
		if v, err := parseJSON(raw.body); err == nil {
			req.body = v
		}
	}
	return req, nil
}

// parseQuery parses a raw query strictly (no ";" separators, valid escapes) within bounds.
func parseQuery(raw string) (map[string][]string, bool) {
	if raw == "" {
		return map[string][]string{}, true
	}
	if len(raw) > maxQueryBytes || strings.Count(raw, "&") >= maxQueryParams {
		return nil, false
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, false
	}
	return q, true
}

// hidesIdentity reports whether a Connection header names a header the sidecar sets or removes:
// a proxy honouring it would drop the decision on the way to mgmtproxy, or keep a credential.
func hidesIdentity(connection string) bool {
	for name := range strings.SplitSeq(connection, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if strings.HasPrefix(name, "x-orgauthz-") || name == "authorization" || name == "cookie" {
			return true
		}
	}
	return false
}

// parseBearer reads an Authorization value (DESIGN step 3): "Bearer", case-insensitive, exactly
// one space and a compact JWS of three base64url parts, at most token.MaxTokenBytes. Envoy joins
// repeated headers with ",", so a comma means two tokens.
func parseBearer(v string) (string, *rejection) {
	const scheme = "Bearer "
	if strings.IndexByte(v, ',') >= 0 {
		return "", &rejection{401, reasonMultipleTokens}
	}
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)-1], scheme[:len(scheme)-1]) || v[len(scheme)-1] != ' ' {
		return "", &rejection{401, reasonInvalidAuth}
	}
	tok := v[len(scheme):]
	if len(tok) > token.MaxTokenBytes {
		return "", &rejection{401, token.ReasonTooLarge}
	}
	dots, partLen := 0, 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '.':
			if partLen == 0 {
				return "", &rejection{401, token.ReasonMalformed}
			}
			dots, partLen = dots+1, 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			partLen++
		default:
			return "", &rejection{401, token.ReasonMalformed}
		}
	}
	if dots != 2 || partLen == 0 {
		return "", &rejection{401, token.ReasonMalformed}
	}
	return tok, nil
}

// isJSON reports whether a Content-Type is application/json or application/*+json.
func isJSON(contentType string) bool {
	if contentType == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

var (
	errDuplicateKey = errors.New("duplicate object key")
	errTooDeep      = fmt.Errorf("nested deeper than %d", maxJSONDepth)
)

// parseJSON decodes one JSON value straight into an OPA value: numbers kept exact, duplicate
// object keys and trailing data refused, nesting bounded. The caller bounds the size.
func parseJSON(data []byte) (ast.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSON(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("sidecar: body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("sidecar: body: data after the JSON value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder, depth int) (ast.Value, error) {
	if depth > maxJSONDepth {
		return nil, errTooDeep
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := ast.NewObject()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key := ast.StringTerm(k.(string))
				if obj.Get(key) != nil {
					return nil, errDuplicateKey
				}
				v, err := decodeJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj.Insert(key, ast.NewTerm(v))
			}
			_, err := dec.Token() // '}'
			return obj, err
		case '[':
			var terms []*ast.Term
			for dec.More() {
				v, err := decodeJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				terms = append(terms, ast.NewTerm(v))
			}
			_, err := dec.Token() // ']'
			return ast.NewArray(terms...), err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return ast.String(t), nil
	case json.Number:
		// OPA's own check: a number it cannot hold (1E70000, 0E10000000000000000000) leaves the body
		// unparsed, as OPA's JSON conversion refuses it; no body the policy reads has one.
		n, err := ast.NumberChecked(string(t))
		if err != nil {
			return nil, fmt.Errorf("number %.20s…: %w", t, err)
		}
		return n, nil
	case bool:
		return ast.Boolean(t), nil
	case nil:
		return ast.Null{}, nil
	}
	return nil, fmt.Errorf("unexpected token %T", tok)
}
