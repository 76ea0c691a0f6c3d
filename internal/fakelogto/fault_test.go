package fakelogto

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type faultTest struct {
	name   string
	target Target
	fault  Fault
	check  func(t *testing.T, resp *http.Response, body []byte, err error)
}

// request sends one request to target the way a client of that endpoint would.
func request(t *testing.T, srv *Server, target Target, demo Demo) (*http.Response, []byte, error) {
	t.Helper()
	var req *http.Request
	switch target {
	case TargetJWKS:
		req, _ = http.NewRequest(http.MethodGet, srv.JWKSURL(), nil)
	case TargetDiscovery:
		req, _ = http.NewRequest(http.MethodGet, srv.Issuer()+"/.well-known/openid-configuration", nil)
	case TargetToken:
		form := url.Values{"grant_type": {grantClientCredentials}, "resource": {srv.ManagementResource()}, "scope": {"all"}}
		req, _ = http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(demo.M2MApp.ID, demo.M2MApp.Secret)
	case TargetManagement:
		req, _ = http.NewRequest(http.MethodGet, srv.URL()+"/api/organizations", nil)
		req.Header.Set("Authorization", "Bearer "+srv.MintToken(srv.Claims(demo.M2MApp.ID, demo.M2MApp.ID, srv.ManagementResource(), "all")))
	}
	// A fresh transport per request: a reset connection must not poison the next one.
	client := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp, body, err
}

func wantStatus(code int) func(*testing.T, *http.Response, []byte, error) {
	return func(t *testing.T, resp *http.Response, body []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
		if resp.StatusCode != code {
			t.Errorf("status %d, want %d (body %.200s)", resp.StatusCode, code, body)
		}
	}
}

func wantKeys(n int) func(*testing.T, *http.Response, []byte, error) {
	return func(t *testing.T, resp *http.Response, body []byte, err error) {
		t.Helper()
		wantStatus(http.StatusOK)(t, resp, body, err)
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatalf("key set does not parse: %v", err)
		}
		if len(set.Keys) != n {
			t.Errorf("%d keys, want %d", len(set.Keys), n)
		}
	}
}

func TestFaults(t *testing.T) {
	tests := []faultTest{
		{"no fault", TargetJWKS, Fault{}, wantKeys(1)},
		{"JWKS down", TargetJWKS, Down, wantStatus(http.StatusServiceUnavailable)},
		{"token down", TargetToken, Down, wantStatus(http.StatusServiceUnavailable)},
		{"management down", TargetManagement, Down, wantStatus(http.StatusServiceUnavailable)},
		{"discovery down", TargetDiscovery, Down, wantStatus(http.StatusServiceUnavailable)},
		{"server error 502", TargetManagement, Fault{Kind: FaultServerError, Status: 502}, wantStatus(http.StatusBadGateway)},
		{"server error default", TargetToken, ServerError, wantStatus(http.StatusInternalServerError)},
		{"too many", TargetToken, Fault{Kind: FaultTooMany, RetryAfter: 7 * time.Second}, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusTooManyRequests)(t, resp, body, err)
			if got := resp.Header.Get("Retry-After"); got != "7" {
				t.Errorf("Retry-After = %q, want 7", got)
			}
		}},
		{"too many default Retry-After", TargetManagement, TooMany, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusTooManyRequests)(t, resp, body, err)
			if got := resp.Header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After = %q, want 1", got)
			}
		}},
		{"reset", TargetManagement, Reset, func(t *testing.T, resp *http.Response, _ []byte, err error) {
			if err == nil {
				t.Errorf("request succeeded with status %d, want a connection error", resp.StatusCode)
			}
		}},
		{"reset token", TargetToken, Reset, func(t *testing.T, resp *http.Response, _ []byte, err error) {
			if err == nil {
				t.Errorf("request succeeded with status %d, want a connection error", resp.StatusCode)
			}
		}},
		{"HTML", TargetJWKS, HTML, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusOK)(t, resp, body, err)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || json.Valid(body) {
				t.Errorf("Content-Type %q valid JSON %v, want an HTML page", ct, json.Valid(body))
			}
		}},
		{"invalid JSON", TargetToken, Fault{Kind: FaultInvalidJSON}, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusOK)(t, resp, body, err)
			if json.Valid(body) {
				t.Errorf("body %q is valid JSON", body)
			}
		}},
		{"empty keys", TargetJWKS, EmptyKeys, wantKeys(0)},
		{"many keys", TargetJWKS, ManyKeys, wantKeys(10000)},
		{"huge", TargetJWKS, Huge, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusOK)(t, resp, body, err)
			if len(body) < 10<<20 || !json.Valid(body) {
				t.Errorf("body of %d bytes, valid %v, want valid JSON of at least 10 MiB", len(body), json.Valid(body))
			}
		}},
		{"no expiry", TargetToken, Fault{Kind: FaultNoExpiry}, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusOK)(t, resp, body, err)
			var tok map[string]any
			json.Unmarshal(body, &tok)
			if _, ok := tok["expires_in"]; ok || tok["access_token"] == nil {
				t.Errorf("body %s, want an access token without expires_in", body)
			}
		}},
		{"zero expiry", TargetToken, Fault{Kind: FaultZeroExpiry}, func(t *testing.T, resp *http.Response, body []byte, err error) {
			wantStatus(http.StatusOK)(t, resp, body, err)
			var tok map[string]any
			json.Unmarshal(body, &tok)
			if tok["expires_in"] != float64(0) {
				t.Errorf("expires_in = %v, want 0", tok["expires_in"])
			}
		}},
		{"slow then served", TargetJWKS, Slow(time.Millisecond), wantKeys(1)},
	}
	srv, demo := newDemo(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetFault(tc.target, tc.fault)
			defer srv.SetFault(tc.target, Fault{})
			srv.ResetCalls()
			resp, body, err := request(t, srv, tc.target, demo)
			tc.check(t, resp, body, err)
			if got := srv.Calls(tc.target); got != 1 {
				t.Errorf("Calls(%v) = %d, want 1", tc.target, got)
			}
		})
	}
}

// TestSlowFaultHoldsUntilClientGivesUp: a client with a deadline gets a timeout, and the
// request is counted.
func TestSlowFaultHoldsUntilClientGivesUp(t *testing.T) {
	srv, _ := newDemo(t, Config{})
	srv.SetFault(TargetJWKS, Slow(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.JWKSURL(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("request answered %d, want a timeout", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a deadline", err)
	}
	if got := srv.Calls(TargetJWKS); got != 1 {
		t.Errorf("Calls = %d, want 1", got)
	}
}

// TestFaultTimes: a fault with Times applies that often, then the target recovers.
func TestFaultTimes(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	srv.SetFault(TargetToken, Fault{Kind: FaultTooMany, Times: 2})
	want := []int{429, 429, 200, 200}
	for i, code := range want {
		resp, _, err := request(t, srv, TargetToken, demo)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != code {
			t.Errorf("request %d: status %d, want %d", i+1, resp.StatusCode, code)
		}
	}
	if got := srv.Calls(TargetToken); got != len(want) {
		t.Errorf("Calls = %d, want %d", got, len(want))
	}
	if got := srv.Calls(TargetJWKS); got != 0 {
		t.Errorf("Calls(JWKS) = %d, want 0", got)
	}
	srv.ResetCalls()
	if got := srv.Calls(TargetToken); got != 0 {
		t.Errorf("Calls after ResetCalls = %d, want 0", got)
	}
}

// TestFaultMatch: a fault limited by Match hits only the matching requests, and Times counts
// only those.
func TestFaultMatch(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	srv.SetFault(TargetManagement, Fault{
		Kind:  FaultServerError,
		Times: 1,
		Match: func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/users")
		},
	})
	steps := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/organizations", `{"name":"n"}`, 201},
		{"POST", "/api/organizations/" + DemoAcmeID + "/users", `{"userIds":["` + DemoCarolID + `"]}`, 500},
		{"GET", "/api/organizations/" + DemoAcmeID, "", 200},
		{"POST", "/api/organizations/" + DemoAcmeID + "/users", `{"userIds":["` + DemoCarolID + `"]}`, 201},
	}
	for i, st := range steps {
		if resp, body := api(t, srv, st.method, st.path, m2m, st.body); resp.StatusCode != st.want {
			t.Errorf("step %d %s %s: status %d, want %d (%v)", i+1, st.method, st.path, resp.StatusCode, st.want, body)
		}
	}
}

// TestFaultUnauthorized: the Management API refuses a token it issued, as Logto does for a
// revoked or expired one.
func TestFaultUnauthorized(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	srv.SetFault(TargetManagement, Fault{Kind: FaultUnauthorized, Times: 1})
	for i, want := range []int{401, 200} {
		resp, body := api(t, srv, "GET", "/api/organizations/"+DemoAcmeID, m2m, "")
		if resp.StatusCode != want {
			t.Errorf("request %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
		if want == 401 && body["code"] != "auth.unauthorized" {
			t.Errorf("code = %v, want auth.unauthorized", body["code"])
		}
	}
}

// TestRateLimit: beyond n requests per window the target answers 429 with the time left in
// the window, and serves again in the next window.
func TestRateLimit(t *testing.T) {
	now := time.Unix(1795505128, 0)
	srv, demo := newDemo(t, Config{Now: func() time.Time { return now }})
	srv.SetRateLimit(TargetToken, 2, 10*time.Second)
	now = now.Add(4 * time.Second)
	for i, want := range []int{200, 200, 429} {
		resp, _, err := request(t, srv, TargetToken, demo)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Errorf("request %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
		if want == 429 && resp.Header.Get("Retry-After") != "6" {
			t.Errorf("Retry-After = %q, want 6", resp.Header.Get("Retry-After"))
		}
	}
	now = now.Add(6 * time.Second)
	if resp, _, err := request(t, srv, TargetToken, demo); err != nil || resp.StatusCode != 200 {
		t.Errorf("next window: %v %v, want 200", resp.StatusCode, err)
	}
	if got := srv.Calls(TargetToken); got != 4 {
		t.Errorf("Calls = %d, want 4 (refused requests count)", got)
	}
	srv.SetRateLimit(TargetToken, 0, 0)
	for range 3 {
		if resp, _, err := request(t, srv, TargetToken, demo); err != nil || resp.StatusCode != 200 {
			t.Fatalf("after removing the limit: %v %v, want 200", resp.StatusCode, err)
		}
	}
}
