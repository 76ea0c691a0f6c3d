package fakelogto

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestTokenEndpointHostileInput: the token endpoint's form parser is bounded and strict.
func TestTokenEndpointHostileInput(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := "Basic " + basic(demo.M2MApp.ID, demo.M2MApp.Secret)
	good := "grant_type=client_credentials&resource=" + url.QueryEscape(srv.ManagementResource()) + "&scope=all"
	tests := []struct {
		name        string
		contentType string
		auth        string
		body        string
		wantStatus  int
		wantError   string
	}{
		{"good", "application/x-www-form-urlencoded", m2m, good, 200, ""},
		{"body over 64 KiB", "application/x-www-form-urlencoded", m2m, good + "&pad=" + strings.Repeat("a", 70<<10), 413, "invalid_request"},
		{"duplicate parameter", "application/x-www-form-urlencoded", m2m, good + "&resource=https%3A%2F%2Fapi.example.com", 400, "invalid_request"},
		{"JSON body", "application/json", m2m, `{"grant_type":"client_credentials"}`, 400, "invalid_request"},
		{"no content type", "", m2m, good, 400, "invalid_request"},
		{"bad escape", "application/x-www-form-urlencoded", m2m, "grant_type=%zz", 400, "invalid_request"},
		{"no grant type", "application/x-www-form-urlencoded", m2m, "resource=x", 400, "invalid_request"},
		{"password grant", "application/x-www-form-urlencoded", m2m, "grant_type=password&username=a&password=b", 400, "unsupported_grant_type"},
		{"no client authentication", "application/x-www-form-urlencoded", "", good, 400, "invalid_request"},
		{"two authentication methods", "application/x-www-form-urlencoded", m2m, good + "&client_secret=" + demo.M2MApp.Secret, 400, "invalid_request"},
		{"client id mismatch", "application/x-www-form-urlencoded", m2m, good + "&client_id=other", 400, "invalid_request"},
		{"unknown client", "application/x-www-form-urlencoded", "Basic " + basic("nosuchapp", "x"), good, 401, "invalid_client"},
		{"empty secret", "application/x-www-form-urlencoded", "Basic " + basic(demo.M2MApp.ID, ""), good, 401, "invalid_client"},
		{"secret prefix", "application/x-www-form-urlencoded", "Basic " + basic(demo.M2MApp.ID, demo.M2MApp.Secret[:5]), good, 401, "invalid_client"},
		{"malformed basic", "application/x-www-form-urlencoded", "Basic !!!", good, 400, "invalid_request"},
		{"traffic app client credentials", "application/x-www-form-urlencoded", "Basic " + basic(demo.TrafficApp.ID, demo.TrafficApp.Secret), good, 400, "unauthorized_client"},
		{"no resource nor organization", "application/x-www-form-urlencoded", m2m, "grant_type=client_credentials&scope=all", 400, "invalid_target"},
		{"organization the app is not in", "application/x-www-form-urlencoded", m2m, "grant_type=client_credentials&organization_id=" + DemoAcmeID, 403, "access_denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, body := doJSON(t, req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.wantStatus, body)
			}
			if got, _ := body["error"].(string); got != tc.wantError {
				t.Errorf("error = %q, want %q", got, tc.wantError)
			}
			if tc.wantError == "invalid_client" && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("invalid_client with Basic credentials has no WWW-Authenticate")
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

// TestScopeSplitting: only U+0020 separates scopes; "all" hidden in other whitespace or a
// longer word grants nothing.
func TestScopeSplitting(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	for _, scope := range []string{"all\tx", "x\nall", "allx", "ALL", "al l", ""} {
		resp, body := postForm(t, srv.TokenURL(), url.Values{
			"grant_type": {grantClientCredentials}, "resource": {srv.ManagementResource()}, "scope": {scope},
		}, demo.M2MApp.ID, demo.M2MApp.Secret)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scope %q: status %d", scope, resp.StatusCode)
		}
		if _, ok := body["scope"]; ok {
			t.Errorf("scope %q granted %v, want nothing", scope, body["scope"])
		}
	}
}

// TestManagementAPIHostileInput: Management API bodies and queries are bounded and strictly
// typed, with Logto's error codes.
func TestManagementAPIHostileInput(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	orgs := "/api/organizations"
	members := orgs + "/" + DemoAcmeID + "/users"
	roles := members + "/" + DemoBobID + "/roles"
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"create", "POST", orgs, `{"name":"ok"}`, 201, ""},
		{"body over 1 MiB", "POST", orgs, `{"name":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "request.entity_too_large"},
		{"not JSON", "POST", orgs, `{"name":`, 400, ""},                       // koa-body: a message, no code,
		{"trailing data", "POST", orgs, `{"name":"a"} {"name":"b"}`, 400, ""}, // koa-body: a message, no code,
		{"array body", "POST", orgs, `[{"name":"a"}]`, 400, "guard.invalid_input"},
		{"null body", "POST", orgs, `null`, 400, ""}, // koa-body: a message, no code,
		{"name missing", "POST", orgs, `{}`, 400, "guard.invalid_input"},
		{"name a number", "POST", orgs, `{"name":1}`, 400, "guard.invalid_input"},
		{"customData an array", "POST", orgs, `{"name":"a","customData":[1]}`, 400, "guard.invalid_input"},
		{"isMfaRequired a string", "PATCH", orgs + "/" + DemoAcmeID, `{"isMfaRequired":"true"}`, 400, "guard.invalid_input"},
		{"deeply nested customData", "POST", orgs, `{"name":"a","customData":{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`, 400, ""}, // koa-body: a message, no code,
		{"userIds not an array", "POST", members, `{"userIds":"` + DemoCarolID + `"}`, 400, "guard.invalid_input"},
		{"userIds with a number", "POST", members, `{"userIds":[1]}`, 400, "guard.invalid_input"},
		{"userIds with an empty ID", "POST", members, `{"userIds":[""]}`, 400, "guard.invalid_input"},
		{"unknown user", "POST", members, `{"userIds":["nosuchuser00"]}`, 422, "entity.relation_foreign_key_not_found"},
		{"role names not an array", "POST", roles, `{"organizationRoleNames":"admin"}`, 400, "guard.invalid_input"},
		{"unknown role id", "POST", roles, `{"organizationRoleIds":["nosuchrole"]}`, 422, "entity.relation_foreign_key_not_found"},
		{"unknown role name", "PUT", roles, `{"organizationRoleNames":["owner"]}`, 422, "organization.role_names_not_found"},
		{"roles of a non-member", "PUT", members + "/" + DemoCarolID + "/roles", `{"organizationRoleNames":["member"]}`, 422, "organization.require_membership"},
		{"page 0", "GET", orgs + "?page=0", "", 400, "guard.invalid_pagination"},
		{"page not a number", "GET", orgs + "?page=1e3", "", 400, "guard.invalid_pagination"},
		{"page_size 0", "GET", members + "?page_size=0", "", 400, "guard.invalid_pagination"},
		{"page_size 101", "GET", members + "?page_size=101", "", 400, "guard.invalid_pagination"},
		{"negative page_size", "GET", orgs + "?page_size=-1", "", 400, "guard.invalid_pagination"},
		{"page beyond the last", "GET", orgs + "?page=9223372036854775807&page_size=100", "", 200, ""},
		{"page beyond int64", "GET", orgs + "?page=9223372036854775808", "", 400, "guard.invalid_pagination"},
		{"role type not in the enum", "POST", "/api/organization-roles", `{"name":"x","type":"Admin"}`, 400, "guard.invalid_input"},
		{"role with an unknown permission", "POST", "/api/organization-roles", `{"name":"x","organizationScopeIds":["nope"]}`, 422, "entity.relation_foreign_key_not_found"},
		{"duplicate role", "POST", "/api/organization-roles", `{"name":"admin"}`, 422, "entity.unique_integrity_violation"},
		{"duplicate permission", "POST", "/api/organization-scopes", `{"name":"org:read"}`, 422, "entity.unique_integrity_violation"},
		{"duplicate resource", "POST", "/api/resources", `{"name":"x","indicator":"` + DemoAPIResource + `"}`, 422, "resource.resource_identifier_in_use"},
		{"global role with an unknown scope", "POST", "/api/roles", `{"name":"x","description":"x","scopeIds":["nope"]}`, 404, "entity.not_exists_with_id"},
		{"application of an unsupported type", "POST", "/api/applications", `{"name":"x","type":"SPA"}`, 400, "guard.invalid_input"},
		{"traffic app in an organization", "POST", orgs + "/" + DemoAcmeID + "/applications", `{"applicationIds":["` + DemoTrafficAppID + `"]}`, 422, "entity.relation_foreign_key_not_found"},
		{"roles of an app not in the organization", "POST", orgs + "/" + DemoAcmeID + "/applications/" + DemoM2MAppID + "/roles", `{"organizationRoleIds":["orgroleadmin000000001"]}`, 422, "organization.require_membership"},
		{"unknown route", "GET", "/api/organizations-admin", "", 404, ""},
		{"unknown method", "PUT", orgs, `{}`, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := api(t, srv, tc.method, tc.path, m2m, tc.body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.wantStatus, body)
			}
			if got, _ := body["code"].(string); got != tc.wantCode {
				t.Errorf("code = %q, want %q", got, tc.wantCode)
			}
		})
	}
	// Nothing above changed acme's members or bob's roles.
	if got := srv.Members(DemoAcmeID); strings.Join(got, ",") != DemoAliceID+","+DemoBobID {
		t.Errorf("acme members = %v, want [alice bob]", got)
	}
	if got := srv.MemberRoles(DemoAcmeID, DemoBobID); strings.Join(got, ",") != "member" {
		t.Errorf("bob's roles = %v, want [member]", got)
	}
}

func basic(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(id, secret)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// The emulator remembers the bearer signatures it verified; what it remembers must not let
// through a token it did not sign, nor one whose key is gone.
func TestManagementAPIBearerAfterItsSignatureWasRemembered(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	for range 2 {
		if resp, body := api(t, srv, "GET", "/api/organizations", m2m, ""); resp.StatusCode != 200 {
			t.Fatalf("valid bearer: status %d (%v)", resp.StatusCode, body)
		}
	}
	parts := strings.Split(m2m, ".")
	sig := []byte(parts[2])
	sig[10] ^= 'A' ^ 'B' // a different signature, still base64url
	if sig[10] == parts[2][10] {
		t.Fatal("signature unchanged")
	}
	otherClaims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","scope":"all"}`))
	for name, tok := range map[string]string{
		"signature changed": parts[0] + "." + parts[1] + "." + string(sig),
		"claims changed":    parts[0] + "." + otherClaims + "." + parts[2],
		"signature moved":   parts[0] + "." + parts[1] + parts[2][:4] + "." + parts[2][4:],
	} {
		resp, body := api(t, srv, "GET", "/api/organizations", tok, "")
		if resp.StatusCode != 401 {
			t.Errorf("%s: status %d, want 401 (%v)", name, resp.StatusCode, body)
		}
	}
	if _, err := srv.RotateKey(ES384); err != nil {
		t.Fatal(err)
	}
	srv.DropPreviousKeys()
	if resp, body := api(t, srv, "GET", "/api/organizations", m2m, ""); resp.StatusCode != 401 {
		t.Errorf("bearer of a dropped key: status %d, want 401 (%v)", resp.StatusCode, body)
	}
}
