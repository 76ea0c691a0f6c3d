package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"golang.org/x/net/http/httpguts"

	"github.com/orgauthz/orgauthz/sidecar/internal/policy"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// Bounds of what Explain reads.
const (
	maxExplainHeaders = 100
	// explainKeysWait bounds the wait for the issuers' keys when a token is verified online.
	explainKeysWait = 15 * time.Second
)

// ExplainRequest is one request for Explain, as `sidecar explain` reads it.
type ExplainRequest struct {
	Method string
	// URL is the request target ("/api/organizations/o1?x=1") or an absolute http(s) URL, whose
	// host becomes request.host. Nothing in it is decoded or cleaned: it is checked as a proxy's.
	URL string
	// Headers are "Name: value" lines; a repeated name is joined with ",", as Envoy does.
	Headers []string
	// Body is the request body; nil for none. A body with no Content-Type header is JSON.
	Body []byte
	// Token is a Logto access token, verified against the configured issuers (online).
	Token string
	// Claims are the claims of a token verified elsewhere, as JSON (offline); see token.ClaimsOf.
	Claims []byte
}

// Explanation is the sidecar's answer to one request with the why of it.
type Explanation struct {
	Allow          bool
	Status         int    // 200 on allow
	Reason         string // the answer's reason code
	Route          string // the route table's first matching row, "" when none
	RequiredScopes []string
	// Input is the policy input as the policy saw it (request.route included); nil when the request
	// was refused before the policy ran.
	Input ast.Value
	// Result is the decision document as the policy returned it; nil when the policy did not run.
	Result ast.Value
	steps  []policy.Step
	notes  []string
}

// Explain answers r as the server would, with the same request checks and the same input builder,
// and traces the policy in cfg.Policies to say which of its checks decided. A token that does not
// verify is a 401 Explanation, as the server's answer; an error means no answer could be made (a
// malformed request description, a policy that does not load, an issuer whose keys are unreachable).
func Explain(ctx context.Context, cfg Config, r ExplainRequest) (*Explanation, error) {
	raw, err := explainRaw(r)
	if err != nil {
		return nil, err
	}
	req, rej := parseRequest(raw, cfg.MaxBodyBytes)
	if rej != nil {
		return &Explanation{Status: rej.status, Reason: rej.reason}, nil
	}
	tc := token.Config{Issuers: cfg.Issuers, APIResource: cfg.APIResource, AdminResource: cfg.AdminResource,
		Algorithms: cfg.Algorithms, ClockSkew: cfg.ClockSkew, RefreshInterval: cfg.JWKSRefresh}
	var claims *token.Claims
	switch {
	case r.Claims != nil:
		claims, err = token.ClaimsOf(tc, r.Claims)
	case req.bearer != "":
		claims, err = verifyOnline(ctx, tc, req.bearer)
	}
	var te *token.Error
	switch {
	case errors.As(err, &te):
		return &Explanation{Status: http.StatusUnauthorized, Reason: te.Reason}, nil
	case err != nil:
		return nil, err
	}
	input, err := buildInput(req, claims)
	if err != nil {
		return nil, err
	}
	engine := policy.New(cfg.Policies, policy.Options{})
	if err := engine.Load(ctx); err != nil {
		return nil, fmt.Errorf("sidecar: policy directory %q: %w", cfg.Policies, err)
	}
	x, err := engine.Explain(ctx, input)
	if err != nil {
		return nil, err
	}
	d := x.Decision
	e := &Explanation{Allow: d.Allow, Status: d.Status, Route: x.Route, RequiredScopes: d.RequiredScopes,
		Input: input, Result: x.Result, steps: x.Steps, notes: x.Notes}
	if d.Allow {
		e.Status, e.Reason = http.StatusOK, reasonCode(d.Reason, "allowed")
	} else {
		e.Reason = reasonCode(d.Reason, "denied")
	}
	return e, nil
}

// explainRaw turns r into the common form of a proxy's request.
func explainRaw(r ExplainRequest) (*rawRequest, error) {
	raw := &rawRequest{method: r.Method, target: r.URL, headers: map[string]string{}, body: r.Body}
	if !strings.HasPrefix(r.URL, "/") {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("sidecar explain: URL %.100q is neither a path nor an http(s) URL", r.URL)
		}
		raw.host = u.Host
		rest := r.URL[len(u.Scheme)+len("://"):]
		raw.target = "/"
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			raw.target = rest[i:]
			if raw.target[0] == '?' {
				raw.target = "/" + raw.target
			}
		}
	}
	if len(r.Headers) > maxExplainHeaders {
		return nil, fmt.Errorf("sidecar explain: more than %d headers", maxExplainHeaders)
	}
	for _, h := range r.Headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("sidecar explain: header %.100q is not Name:value", h)
		}
		name, value = strings.ToLower(name), strings.TrimSpace(value)
		if old, ok := raw.headers[name]; ok {
			value = old + "," + value
		}
		raw.headers[name] = value
	}
	if h, ok := raw.headers["host"]; ok {
		raw.host = h
	}
	if r.Body != nil {
		if _, ok := raw.headers["content-type"]; !ok {
			raw.headers["content-type"] = "application/json"
		}
	}
	switch _, auth := raw.headers["authorization"]; {
	case r.Token != "" && r.Claims != nil:
		return nil, errors.New("sidecar explain: --token and --claims exclude each other")
	case (r.Token != "" || r.Claims != nil) && auth:
		return nil, errors.New("sidecar explain: an Authorization header and --token or --claims exclude each other")
	case r.Token != "":
		raw.headers["authorization"] = "Bearer " + r.Token
	}
	return raw, nil
}

// verifyOnline verifies a token as the server does, waiting a while for the issuers' keys.
func verifyOnline(ctx context.Context, tc token.Config, raw string) (*token.Claims, error) {
	ctx, cancel := context.WithTimeout(ctx, explainKeysWait)
	defer cancel()
	v, err := token.New(ctx, tc)
	if err != nil {
		return nil, fmt.Errorf("sidecar explain: %w", err)
	}
	for {
		c, err := v.Verify(ctx, raw)
		if !errors.Is(err, token.ErrNotReady) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sidecar explain: the issuer's keys did not load in %s: %v", explainKeysWait, v.Status())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// InputJSON is the policy input as JSON, for `opa eval -I`.
func (e *Explanation) InputJSON() ([]byte, error) {
	if e.Input == nil {
		return nil, fmt.Errorf("sidecar explain: refused with %d %s before the policy ran: no input", e.Status, e.Reason)
	}
	return indentJSON(e.Input)
}

// Write prints the explanation for a person.
func (e *Explanation) Write(w io.Writer) error {
	if e.Input != nil {
		in, err := indentJSON(e.Input)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "input:\n%s\n\n", in)
	}
	result := "deny"
	if e.Allow {
		result = "allow"
	}
	fmt.Fprintf(w, "decision: %s %d %s\n", result, e.Status, e.Reason)
	if e.Input == nil {
		fmt.Fprintln(w, "decided by: the sidecar's own checks, before the policy (see README's reason codes)")
		return nil
	}
	route := e.Route
	if route == "" {
		route = "(none matches)"
	}
	fmt.Fprintf(w, "route: %s\n", route)
	if len(e.RequiredScopes) > 0 {
		fmt.Fprintf(w, "required scopes (any one): %s\n", strings.Join(e.RequiredScopes, " "))
	}
	if e.Result != nil {
		fmt.Fprintf(w, "result: %s\n", e.Result)
	}
	fmt.Fprintln(w, "decided by (outermost first; the last one decided):")
	for _, s := range e.steps {
		fmt.Fprintf(w, "  %s  %s", s.Location, s.Rule)
		if len(s.Skipped) > 0 {
			fmt.Fprintf(w, "  (the branches at rows %s did not hold)", strings.Trim(fmt.Sprint(s.Skipped), "[]"))
		}
		fmt.Fprintf(w, "\n    %s\n", strings.ReplaceAll(s.Text, "\n", "\n    "))
	}
	for _, n := range e.notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func indentJSON(v ast.Value) ([]byte, error) {
	j, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(j, "", "  ")
}
