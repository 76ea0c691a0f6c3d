package sidecar

import (
	"encoding/json"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// The identity headers the sidecar sets on an allowed request (DESIGN, "Headers the sidecar sets").
const (
	headerDecisionID     = "x-orgauthz-decision-id"
	headerSubject        = "x-orgauthz-subject"
	headerOrganizationID = "x-orgauthz-organization-id"
	headerTokenKind      = "x-orgauthz-token-kind"
)

// Reasons of the sidecar's own 503s.
const (
	reasonNotReady      = "not_ready"
	reasonTokenError    = "token_error"
	reasonPolicyError   = "policy_error"
	reasonSignError     = "sign_error"
	reasonInternalError = "internal_error"
)

// verdict is the answer to one request: an allow (status 200) or a deny with its status.
type verdict struct {
	status  int
	reason  string
	route   string            // allow: the route template the policy matched
	headers map[string]string // allow: the policy's extra headers, already filtered
	scopes  []string          // 403: the scopes the policy said were missing
	claims  *token.Claims     // the verified token, nil without one
	signed  string            // allow: the signed decision
	err     error             // the fault behind a 503, for the log only
	dropped []string          // policy header names refused, for the log
	eval    *evaluation       // the policy's evaluation, nil when the policy did not run
}

func (v *verdict) allowed() bool { return v.status == http.StatusOK }

// result is the verdict's metric and log label.
func (v *verdict) result() string {
	switch {
	case v.allowed():
		return "allow"
	case v.status >= 500:
		return "error"
	}
	return "deny"
}

// header is one header of an answer, in the order it is sent.
type header struct{ name, value string }

// allowHeaders are the headers added to an allowed request: the identity headers, then the
// policy's.
func allowHeaders(id string, v *verdict) []header {
	hs := make([]header, 0, 5+len(v.headers))
	hs = append(hs, header{decision.Header, v.signed}, header{headerDecisionID, id})
	if c := v.claims; c != nil {
		hs = append(hs, header{headerSubject, c.Subject}, header{headerTokenKind, string(c.Kind)})
		if c.OrganizationID != "" {
			hs = append(hs, header{headerOrganizationID, c.OrganizationID})
		}
	}
	for k, val := range v.headers {
		hs = append(hs, header{k, val})
	}
	return hs
}

// headersToRemove are the request headers an allow strips: the credentials, and every
// x-orgauthz-* header the client sent that the allow does not overwrite.
func headersToRemove(req *request, id string, v *verdict) []string {
	names := []string{"authorization", "cookie"}
	if req == nil || len(req.clientHeaders) == 0 {
		return names
	}
	set := map[string]bool{}
	for _, h := range allowHeaders(id, v) {
		set[h.name] = true
	}
	for _, name := range req.clientHeaders {
		if !set[name] {
			names = append(names, name)
		}
	}
	return names
}

// denyHeaders are the headers of a denied answer.
func denyHeaders(id string, v *verdict) []header {
	hs := []header{{"content-type", "application/json"}, {headerDecisionID, id}}
	switch v.status {
	case http.StatusUnauthorized:
		hs = append(hs, header{"www-authenticate", `Bearer error="invalid_token"`})
	case http.StatusForbidden:
		h := `Bearer error="insufficient_scope"`
		if s := scopeParam(v.scopes); s != "" {
			h += `, scope="` + s + `"`
		}
		hs = append(hs, header{"www-authenticate", h})
	}
	return hs
}

// scopeParam joins scopes for WWW-Authenticate, leaving out any that are not RFC 6750 scope tokens.
func scopeParam(scopes []string) string {
	var ok []string
	for _, s := range scopes {
		valid := s != ""
		for i := 0; i < len(s) && valid; i++ {
			c := s[i]
			valid = c == 0x21 || (0x23 <= c && c <= 0x5B) || (0x5D <= c && c <= 0x7E)
		}
		if valid {
			ok = append(ok, s)
		}
	}
	return strings.Join(ok, " ")
}

// messages are the fixed texts of denied answers; nothing from the request is echoed.
var messages = map[int]string{
	http.StatusBadRequest:            "the request is malformed or ambiguous",
	http.StatusUnauthorized:          "a valid Logto access token is required",
	http.StatusForbidden:             "the request is not allowed",
	http.StatusRequestEntityTooLarge: "the request body is larger than the authorization service reads",
	http.StatusServiceUnavailable:    "the authorization service cannot decide now; retry later",
}

// denyBody is the JSON body of a denied answer: {"code": reason, "message": …}.
func denyBody(v *verdict) string {
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{v.reason, messages[v.status]}) // cannot fail: two strings
	return string(b)
}

// checkResponse turns a verdict into Envoy's CheckResponse, status always set. Its dynamic
// metadata (decision_id, result, reason, route) lets Envoy's access log name the decision.
func checkResponse(req *request, id string, v *verdict) *authv3.CheckResponse {
	meta := &structpb.Struct{Fields: map[string]*structpb.Value{
		"decision_id": structpb.NewStringValue(id),
		"result":      structpb.NewStringValue(v.result()),
		"reason":      structpb.NewStringValue(v.reason),
	}}
	if v.route != "" {
		meta.Fields["route"] = structpb.NewStringValue(v.route)
	}
	if v.allowed() {
		ok := &authv3.OkHttpResponse{HeadersToRemove: headersToRemove(req, id, v), Headers: headerOptions(allowHeaders(id, v))}
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: meta,
		}
	}
	code := codes.PermissionDenied
	switch v.status {
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		code = codes.InvalidArgument
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	}
	denied := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(v.status)},
		Body:    denyBody(v),
		Headers: headerOptions(denyHeaders(id, v)),
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(code)},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: meta,
	}
}

// headerOptions are hs as Envoy's header options, each overwriting, made in three allocations
// rather than two per header: this runs on every check.
func headerOptions(hs []header) []*corev3.HeaderValueOption {
	opts := make([]corev3.HeaderValueOption, len(hs))
	values := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		values[i].Key, values[i].Value = h.name, h.value
		opts[i].Header = &values[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

// writeHTTP writes a verdict as the HTTP check endpoints' answer: 200 with the identity headers,
// or the deny status, headers and JSON body.
func writeHTTP(w http.ResponseWriter, id string, v *verdict) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if v.allowed() {
		for _, hv := range allowHeaders(id, v) {
			h.Set(hv.name, hv.value)
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	for _, hv := range denyHeaders(id, v) {
		h.Set(hv.name, hv.value)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(v.status)
	_, _ = w.Write([]byte(denyBody(v)))
}

// filterPolicyHeaders keeps the policy's headers that may be set on a request: valid names and
// values, never credentials, routing, hop-by-hop, Envoy's or our own identity headers.
func filterPolicyHeaders(in map[string]string) (kept map[string]string, dropped []string) {
	for k, v := range in {
		name := strings.ToLower(k)
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) || reservedHeader(name) {
			dropped = append(dropped, k)
			continue
		}
		if kept == nil {
			kept = make(map[string]string, len(in))
		}
		kept[name] = v
	}
	return kept, dropped
}

func reservedHeader(name string) bool {
	switch name {
	case "authorization", "proxy-authorization", "cookie", "host", "connection", "keep-alive",
		"te", "trailer", "transfer-encoding", "upgrade", "content-length":
		return true
	}
	return strings.HasPrefix(name, ":") || strings.HasPrefix(name, "x-orgauthz-") || strings.HasPrefix(name, "x-envoy-")
}
