package sidecar

import (
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
)

// TestPartialBodyNeverAllowed: every way a proxy can show the sidecar only part of a body (or two
// bodies) is 413 body_too_large, before the token is even looked at; a whole body, however it is
// sent, is bound by the allow's "b"; no body at all (a proxy that sends none) stays an allow that
// binds none. The route (GET of an organization) does not read the body, so only the body rules
// decide.
func TestPartialBodyNeverAllowed(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(*org("o1", "org:read"))
	const body = `{"name":"x"}`
	type mutate func(*authv3.AttributeContext_HttpRequest)
	setHeader := func(k, v string) mutate {
		return func(r *authv3.AttributeContext_HttpRequest) { r.Headers[k] = v }
	}
	tests := []struct {
		name     string
		body     string
		mutate   []mutate
		wantBody string // the body an allow binds
		partial  bool   // want 413 body_too_large
	}{
		{name: "whole body", body: body, wantBody: body},
		{name: "whole body, Envoy says not partial", body: body, mutate: []mutate{setHeader(partialBodyHeader, "false")}, wantBody: body},
		{name: "whole body as raw_body", body: body, mutate: []mutate{func(r *authv3.AttributeContext_HttpRequest) { r.RawBody, r.Body = []byte(r.Body), "" }}, wantBody: body},
		{name: "raw_body and body equal", body: body, mutate: []mutate{func(r *authv3.AttributeContext_HttpRequest) { r.RawBody = []byte(r.Body) }}, wantBody: body},
		{name: "no body sent, with a length", body: "", mutate: []mutate{setHeader("content-length", "12")}, wantBody: ""},
		{name: "Envoy says partial", body: body, mutate: []mutate{setHeader(partialBodyHeader, "true")}, partial: true},
		{name: "Envoy says partial, no bytes yet", body: "", mutate: []mutate{setHeader(partialBodyHeader, "true"), setHeader("content-length", "12")}, partial: true},
		{name: "partial flag not false", body: body, mutate: []mutate{setHeader(partialBodyHeader, "TRUE")}, partial: true},
		{name: "buffered, no bytes, with a length", body: "", mutate: []mutate{setHeader(partialBodyHeader, "false"), setHeader("content-length", "12")}, partial: true},
		{name: "length above the bytes", body: body, mutate: []mutate{setHeader("content-length", "13")}, partial: true},
		{name: "length below the bytes", body: body, mutate: []mutate{setHeader("content-length", "3")}, partial: true},
		{name: "length not a number", body: body, mutate: []mutate{setHeader("content-length", "12,12")}, partial: true},
		{name: "raw_body and body differ", body: body, mutate: []mutate{func(r *authv3.AttributeContext_HttpRequest) { r.RawBody = []byte(`{"name":"y"}`) }}, partial: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}, tc.body)
			in, err := envoyclient.NewCheckRequest(r, envoyclient.Options{WithBody: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.mutate {
				m(in.GetAttributes().GetRequest().GetHttp())
			}
			a := readAnswer(h.checkRaw(t, in))
			if tc.partial {
				if a.status != http.StatusRequestEntityTooLarge {
					t.Fatalf("status = %d (%s), want 413", a.status, a.body)
				}
				checkDenyShape(t, a, 413, reasonBodyTooLarge)
				return
			}
			if a.status != http.StatusOK {
				t.Fatalf("status = %d (%s), want 200", a.status, a.body)
			}
			c, err := h.verifier.Verify(a.headers[decision.Header], "GET", "/api/organizations/o1")
			if err != nil {
				t.Fatalf("decision does not verify: %v", err)
			}
			if want := bodyClaim(tc.wantBody); c.Body != want {
				t.Errorf("decision b = %q, want %q", c.Body, want)
			}
		})
	}
}

// TestEnvoyHTTPPartialBody: Envoy's HTTP mode binds a whole body larger than --max-body-bytes (as
// gRPC mode does), and refuses with 413 one it cannot read whole or that Envoy marks partial.
func TestEnvoyHTTPPartialBody(t *testing.T) {
	h := newHarness(t, true, func(c *Config) { c.MaxBodyBytes = 64 })
	tok := h.mint(*org("o1", "org:read"))
	big := `{"name":"` + strings.Repeat("a", 100) + `"}`
	huge := `{"name":"` + strings.Repeat("a", maxRecvMsgBytes) + `"}`
	tests := []struct {
		name, body string
		headers    map[string]string
		want       int
	}{
		{"over --max-body-bytes, whole", big, nil, 200},
		{"over what a check carries", huge, nil, 413},
		{"Envoy says partial", big, map[string]string{"X-Envoy-Auth-Partial-Body": "true"}, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", h.httpURL+"/envoy/api/organizations/o1", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != 200 {
				return
			}
			c, err := h.verifier.Verify(resp.Header.Get(decision.Header), "GET", "/api/organizations/o1")
			if err != nil {
				t.Fatalf("decision does not verify: %v", err)
			}
			if want := bodyClaim(tc.body); c.Body != want {
				t.Errorf("decision b = %q, want %q", c.Body, want)
			}
		})
	}
}
