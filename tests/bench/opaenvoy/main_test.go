package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

const (
	testAPI   = "https://api.example.com"
	testAdmin = "https://admin.example.com"
)

func newLogto(t *testing.T) *fakelogto.Server {
	t.Helper()
	lg, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	if err := lg.Start(); err != nil {
		t.Fatal(err)
	}
	return lg
}

func newTestServer(t *testing.T, lg *fakelogto.Server, jwtCache int) *server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := config{issuer: lg.Issuer(), apiResource: testAPI, adminResource: testAdmin, jwtCacheSize: jwtCache}
	jwks, err := fetchJWKS(ctx, cfg.issuer+"/jwks")
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(context.Background(), cfg, jwks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkRequest(t *testing.T, method, target, token, body string) *authv3.CheckRequest {
	t.Helper()
	r, err := http.NewRequest(method, "http://app.example.com"+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	req, err := envoyclient.NewCheckRequest(r, envoyclient.Options{WithBody: true})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestCheck shows the baseline answers the benchmark mix as orgauthz must: allowed routes
// allowed, a missing scope or another organization 403, a bad token 401.
func TestCheck(t *testing.T) {
	lg := newLogto(t)
	orgToken := lg.MintToken(lg.Claims("u1", "app1", "urn:logto:organization:o1", "org:read member:add"))
	apiClaims := lg.Claims("u1", "app1", testAPI, "org:read")
	apiClaims["organization_id"] = "o1"
	apiToken := lg.MintToken(apiClaims)
	expired := lg.Claims("u1", "app1", "urn:logto:organization:o1", "org:read")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	otherIssuer := lg.Claims("u1", "app1", "urn:logto:organization:o1", "org:read")
	otherIssuer["iss"] = "http://127.0.0.1:1/oidc"
	tampered := orgToken[:len(orgToken)-4] + "AAAA"
	if tampered == orgToken {
		tampered = orgToken[:len(orgToken)-4] + "BBBB"
	}

	type test struct {
		name, method, target, token, body string
		allow                             bool
		status                            int32
	}
	tests := []test{
		{"org token, org:read", "GET", "/api/organizations/o1", orgToken, "", true, 0},
		{"org token, member:add with a body", "POST", "/api/organizations/o1/users", orgToken, `{"userIds":["u2"]}`, true, 0},
		{"org-level API token", "GET", "/api/organizations/o1?x=1", apiToken, "", true, 0},
		{"missing scope", "DELETE", "/api/organizations/o1", orgToken, "", false, 403},
		{"another organization", "GET", "/api/organizations/o2", orgToken, "", false, 403},
		{"admin route", "GET", "/api/organizations", orgToken, "", false, 403},
		{"unknown route", "GET", "/api/organizations-admin", orgToken, "", false, 403},
		{"no token", "GET", "/api/organizations/o1", "", "", false, 401},
		{"expired", "GET", "/api/organizations/o1", lg.MintToken(expired), "", false, 401},
		{"other issuer", "GET", "/api/organizations/o1", lg.MintToken(otherIssuer), "", false, 401},
		{"unknown audience", "GET", "/api/organizations/o1", lg.MintToken(lg.Claims("u1", "app1", "https://other.example.com", "org:read")), "", false, 401},
		{"bad signature", "GET", "/api/organizations/o1", tampered, "", false, 401},
		{"alg none", "GET", "/api/organizations/o1", lg.SignToken(map[string]any{"alg": "none", "typ": "at+jwt"}, lg.Claims("u1", "app1", "urn:logto:organization:o1", "org:read")), "", false, 401},
		{"not a JWT", "GET", "/api/organizations/o1", "abc", "", false, 401},
	}
	for _, cache := range []int{0, 100} {
		s := newTestServer(t, lg, cache)
		for range 2 { // the second pass answers from the io_jwt cache when it is on
			for _, tc := range tests {
				resp, err := s.Check(context.Background(), checkRequest(t, tc.method, tc.target, tc.token, tc.body))
				if err != nil {
					t.Fatalf("cache %d, %s: Check: %v", cache, tc.name, err)
				}
				if got := resp.GetOkResponse() != nil; got != tc.allow {
					t.Errorf("cache %d, %s: allowed = %v, want %v", cache, tc.name, got, tc.allow)
				}
				if !tc.allow {
					if got := int32(resp.GetDeniedResponse().GetStatus().GetCode()); got != tc.status {
						t.Errorf("cache %d, %s: status = %d, want %d", cache, tc.name, got, tc.status)
					}
				}
			}
		}
	}
}

func TestRequestToInput(t *testing.T) {
	req := checkRequest(t, "POST", "/api/organizations/o1/users?page=2&q=a&q=b", "", `{"userIds":["u2"]}`)
	in, err := requestToInput(req)
	if err != nil {
		t.Fatal(err)
	}
	path, _ := in["parsed_path"].([]any)
	if len(path) != 4 || path[0] != "api" || path[3] != "users" {
		t.Errorf("parsed_path = %v, want [api organizations o1 users]", in["parsed_path"])
	}
	q, _ := in["parsed_query"].(map[string]any)
	if qs, _ := q["q"].([]any); len(qs) != 2 || qs[1] != "b" {
		t.Errorf("parsed_query = %v, want q: [a b]", q)
	}
	body, _ := in["parsed_body"].(map[string]any)
	if ids, _ := body["userIds"].([]any); len(ids) != 1 || ids[0] != "u2" {
		t.Errorf("parsed_body = %v, want {userIds: [u2]}", in["parsed_body"])
	}
	if in["truncated_body"] != false {
		t.Errorf("truncated_body = %v, want false", in["truncated_body"])
	}
	attrs, _ := in["attributes"].(map[string]any)
	if attrs["request"] == nil {
		t.Errorf("input has no attributes.request (protojson of the CheckRequest): %v", in)
	}
}

func TestParseBodyHostile(t *testing.T) {
	json := map[string]string{"content-type": "application/json"}
	for _, tc := range []struct {
		name      string
		headers   map[string]string
		body      string
		truncated bool
		wantErr   bool
	}{
		{name: "not JSON content", headers: map[string]string{"content-type": "text/plain"}, body: "{"},
		{name: "broken JSON", headers: json, body: `{"a":`, wantErr: true},
		{name: "truncated by Envoy", headers: map[string]string{"content-type": "application/json", "content-length": "100"}, body: `{"a":1}`, truncated: true},
		{name: "bad content-length", headers: map[string]string{"content-type": "application/json", "content-length": "x"}, body: `{}`, wantErr: true},
		{name: "deep nesting", headers: json, body: strings.Repeat("[", 100000), wantErr: true},
	} {
		_, truncated, err := parseBody(tc.headers, tc.body)
		if (err != nil) != tc.wantErr || truncated != tc.truncated {
			t.Errorf("%s: parseBody = truncated %v, err %v; want truncated %v, error %v", tc.name, truncated, err, tc.truncated, tc.wantErr)
		}
	}
}

func TestFetchJWKSHostile(t *testing.T) {
	lg := newLogto(t)
	for _, tc := range []struct {
		name  string
		fault fakelogto.Fault
	}{
		{"server error", fakelogto.ServerError},
		{"HTML", fakelogto.HTML},
		{"huge", fakelogto.Huge},
		{"reset", fakelogto.Reset},
	} {
		lg.SetFault(fakelogto.TargetJWKS, tc.fault)
		if _, err := fetchJWKS(context.Background(), lg.JWKSURL()); err == nil {
			t.Errorf("fetchJWKS with fault %s: no error", tc.name)
		}
	}
}
