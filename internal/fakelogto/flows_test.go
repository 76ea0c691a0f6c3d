package fakelogto

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// newDemo starts an emulator with the demo tenant.
func newDemo(t *testing.T, cfg Config) (*Server, Demo) {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	demo := srv.SeedDemo()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv, demo
}

// postForm posts a token request with Basic client credentials (none when id is "").
func postForm(t *testing.T, endpoint string, form url.Values, id, secret string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	return doJSON(t, req)
}

func doJSON(t *testing.T, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, raw := send(t, req)
	var body any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("%s %s: body %q: %v", req.Method, req.URL, raw, err)
		}
	}
	obj, _ := body.(map[string]any) // nil for arrays
	return resp, obj
}

// mgmtToken gets a Management API token by client credentials.
func mgmtToken(t *testing.T, srv *Server, id, secret string) string {
	t.Helper()
	resp, body := postForm(t, srv.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "resource": {srv.ManagementResource()}, "scope": {"all"},
	}, id, secret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client credentials: status %d, body %v", resp.StatusCode, body)
	}
	return body["access_token"].(string)
}

// api calls the Management API.
func api(t *testing.T, srv *Server, method, path, bearer, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return doJSON(t, req)
}

// fetchJWKS reads the key set over HTTP.
func fetchJWKS(t *testing.T, srv *Server) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(srv.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != jwksContentType {
		t.Errorf("JWKS Content-Type = %q, want %q", ct, jwksContentType)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

// verify checks tok against the published key set with go-jose and returns its header and
// claims; ok is false when no published key verifies it.
func verify(t *testing.T, srv *Server, tok string) (hdr jose.Header, claims map[string]any, ok bool) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES384, jose.RS256})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	hdr = jws.Signatures[0].Header
	set := fetchJWKS(t, srv)
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		return hdr, nil, false
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return hdr, nil, false
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return hdr, claims, true
}

type exchangeTest struct {
	name     string
	user     string
	org      string
	resource string
	scope    string
	wantAud  string
	wantOrg  string // organization_id claim; "" means absent
	wantScp  string
}

func (tc exchangeTest) run(t *testing.T, srv *Server, demo Demo, m2m string) {
	resp, body := api(t, srv, http.MethodPost, "/api/subject-tokens", m2m, `{"userId":"`+tc.user+`"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("subject token: status %d, want 201 (%v)", resp.StatusCode, body)
	}
	subject := body["subjectToken"].(string)
	if !strings.HasPrefix(subject, "sub_") || body["expiresIn"] != float64(600) {
		t.Errorf("subject token answer = %v, want sub_… and expiresIn 600", body)
	}
	form := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeAccessToken},
		"scope":              {tc.scope},
	}
	if tc.org != "" {
		form.Set("organization_id", tc.org)
	}
	if tc.resource != "" {
		form.Set("resource", tc.resource)
	}
	resp, body = postForm(t, srv.TokenURL(), form, demo.TrafficApp.ID, demo.TrafficApp.Secret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token exchange: status %d, want 200 (%v)", resp.StatusCode, body)
	}
	if body["scope"] != tc.wantScp {
		t.Errorf("response scope = %q, want %q", body["scope"], tc.wantScp)
	}
	hdr, claims, ok := verify(t, srv, body["access_token"].(string))
	if !ok {
		t.Fatal("token does not verify against the JWKS")
	}
	if hdr.Algorithm != ES384 || hdr.ExtraHeaders["typ"] != "at+jwt" {
		t.Errorf("header alg %q typ %v, want ES384 at+jwt", hdr.Algorithm, hdr.ExtraHeaders["typ"])
	}
	for claim, want := range map[string]any{
		"aud": tc.wantAud, "scope": tc.wantScp, "sub": tc.user, "client_id": demo.TrafficApp.ID, "iss": srv.Issuer(),
	} {
		if claims[claim] != want {
			t.Errorf("claim %s = %v, want %v", claim, claims[claim], want)
		}
	}
	if got, _ := claims["organization_id"].(string); got != tc.wantOrg {
		t.Errorf("organization_id = %q, want %q", got, tc.wantOrg)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 3600 {
		t.Errorf("exp - iat = %v, want 3600", exp-iat)
	}
	// A subject token is single use.
	resp, body = postForm(t, srv.TokenURL(), form, demo.TrafficApp.ID, demo.TrafficApp.Secret)
	if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("reused subject token: status %d error %v, want 400 invalid_grant", resp.StatusCode, body["error"])
	}
}

// TestTokenExchangeKinds gets each of the four user token kinds through Logto's
// subject-token and token-exchange flow and verifies it against the JWKS.
func TestTokenExchangeKinds(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	tests := []exchangeTest{
		{
			name: "organization", user: DemoAliceID, org: DemoAcmeID, scope: "org:read member:add org:create nope",
			wantAud: OrganizationAudience + DemoAcmeID, wantScp: "org:read member:add",
		},
		{
			name: "organization_api", user: DemoBobID, org: DemoAcmeID, resource: DemoAPIResource, scope: "org:read member:add",
			wantAud: DemoAPIResource, wantOrg: DemoAcmeID, wantScp: "org:read",
		},
		{
			// Logto folds permissions from organization roles into global API tokens.
			name: "global_api", user: DemoAliceID, resource: DemoAPIResource, scope: "org:create member:add admin:org:read",
			wantAud: DemoAPIResource, wantScp: "org:create member:add",
		},
		{
			name: "admin", user: DemoCarolID, resource: DemoAdminResource, scope: "admin:org:read admin:org:write org:create",
			wantAud: DemoAdminResource, wantScp: "admin:org:read admin:org:write",
		},
		{
			name: "organization token without permissions", user: DemoBobID, org: DemoAcmeID, scope: "member:add",
			wantAud: OrganizationAudience + DemoAcmeID, wantScp: "",
		},
		{
			name: "admin resource for a user without the global role", user: DemoAliceID, resource: DemoAdminResource, scope: "admin:org:read",
			wantAud: DemoAdminResource, wantScp: "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, srv, demo, m2m) })
	}
}

func TestTokenExchangeErrors(t *testing.T) {
	now := time.Unix(1795505128, 0)
	clock := func() time.Time { return now }
	srv, demo := newDemo(t, Config{Now: func() time.Time { return clock() }})
	other := srv.AddOrganization("", "other")
	tests := []struct {
		name       string
		form       url.Values
		advance    time.Duration
		id, secret string
		wantStatus int
		wantError  string
	}{
		{"non-member organization", url.Values{"organization_id": {other}}, 0, "", "", 403, "access_denied"},
		{"unknown organization", url.Values{"organization_id": {"nosuchorg000"}}, 0, "", "", 403, "access_denied"},
		{"unknown resource", url.Values{"resource": {"https://nope.example"}}, 0, "", "", 400, "invalid_target"},
		{"expired subject token", url.Values{"resource": {DemoAPIResource}}, 601 * time.Second, "", "", 400, "invalid_grant"},
		{"unknown subject token", url.Values{"resource": {DemoAPIResource}, "subject_token": {"sub_forged"}}, 0, "", "", 400, "invalid_grant"},
		{"wrong subject token type", url.Values{"resource": {DemoAPIResource}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}, 0, "", "", 400, "invalid_request"},
		{"M2M app may not exchange", url.Values{"resource": {DemoAPIResource}}, 0, demo.M2MApp.ID, demo.M2MApp.Secret, 400, "unauthorized_client"},
		{"wrong secret", url.Values{"resource": {DemoAPIResource}}, 0, demo.TrafficApp.ID, "nope", 401, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Unix(1795505128, 0)
			form := url.Values{
				"grant_type":         {grantTokenExchange},
				"subject_token":      {srv.SubjectToken(DemoAliceID)},
				"subject_token_type": {tokenTypeAccessToken},
			}
			for k, v := range tc.form {
				form[k] = v
			}
			now = now.Add(tc.advance)
			id, secret := demo.TrafficApp.ID, demo.TrafficApp.Secret
			if tc.id != "" {
				id, secret = tc.id, tc.secret
			}
			resp, body := postForm(t, srv.TokenURL(), form, id, secret)
			if resp.StatusCode != tc.wantStatus || body["error"] != tc.wantError {
				t.Errorf("status %d error %v, want %d %s (%v)", resp.StatusCode, body["error"], tc.wantStatus, tc.wantError, body)
			}
			if code, _ := body["code"].(string); code != "oidc."+tc.wantError {
				t.Errorf("code = %q, want %q", code, "oidc."+tc.wantError)
			}
		})
	}
}

func TestClientCredentials(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	srv.AddM2MOrgRole("machine", "org:read")
	srv.AddOrgRoleAPIScopes("machine", DemoAPIResource, "org:read")
	srv.AddOrgApp(DemoAcmeID, demo.M2MApp.ID, "machine")
	srv.AddGlobalRole("reporter", DemoAPIResource, "report:read")
	srv.AssignAppGlobalRole(demo.M2MApp.ID, "reporter")
	tests := []struct {
		name      string
		form      url.Values
		wantAud   string
		wantOrg   string
		wantScope any // nil: no scope claim
	}{
		{"management API with all", url.Values{"resource": {srv.ManagementResource()}, "scope": {"all"}}, srv.ManagementResource(), "", "all"},
		{"management API without scope", url.Values{"resource": {srv.ManagementResource()}}, srv.ManagementResource(), "", nil},
		{"organization token", url.Values{"organization_id": {DemoAcmeID}, "scope": {"org:read member:add"}}, OrganizationAudience + DemoAcmeID, "", "org:read"},
		{"organization API token", url.Values{"organization_id": {DemoAcmeID}, "resource": {DemoAPIResource}, "scope": {"org:read"}}, DemoAPIResource, DemoAcmeID, "org:read"},
		{"global API token", url.Values{"resource": {DemoAPIResource}, "scope": {"report:read org:create"}}, DemoAPIResource, "", "report:read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("grant_type", grantClientCredentials)
			// client_secret_post, the other authentication method
			tc.form.Set("client_id", demo.M2MApp.ID)
			tc.form.Set("client_secret", demo.M2MApp.Secret)
			resp, body := postForm(t, srv.TokenURL(), tc.form, "", "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200 (%v)", resp.StatusCode, body)
			}
			_, claims, ok := verify(t, srv, body["access_token"].(string))
			if !ok {
				t.Fatal("token does not verify")
			}
			if claims["aud"] != tc.wantAud || claims["scope"] != tc.wantScope || claims["sub"] != demo.M2MApp.ID {
				t.Errorf("aud %v scope %v sub %v, want %v %v %v", claims["aud"], claims["scope"], claims["sub"], tc.wantAud, tc.wantScope, demo.M2MApp.ID)
			}
			if got, _ := claims["organization_id"].(string); got != tc.wantOrg {
				t.Errorf("organization_id = %q, want %q", got, tc.wantOrg)
			}
			if body["scope"] != tc.wantScope {
				t.Errorf("response scope = %v, want %v", body["scope"], tc.wantScope)
			}
		})
	}
}

// TestManagementAPIRefusesForeignTokens: only tokens this server issued for the Management
// API, unexpired and with "all", are accepted; the real server's recorded tokens are not.
func TestManagementAPIRefusesForeignTokens(t *testing.T) {
	now := time.Now()
	srv, demo := newDemo(t, Config{Now: func() time.Time { return now }})
	other, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	mgmt := srv.ManagementResource()
	good := srv.Claims(demo.M2MApp.ID, demo.M2MApp.ID, mgmt, "all")
	with := func(k string, v any) map[string]any {
		c := maps(good)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	userTok, err := srv.IssueUserToken(UserTokenRequest{UserID: DemoAliceID, OrganizationID: DemoAcmeID, Scopes: []string{"org:read"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		auth       string
		wantStatus int
		wantCode   string
		wantData   string
	}{
		{"no header", "", 401, "auth.authorization_header_missing", ""},
		{"basic", "Basic " + "bTJtOnNlY3JldA==", 401, "auth.authorization_token_type_not_supported", ""},
		{"not a JWT", "Bearer not-a-jwt", 401, "auth.unauthorized", "ERR_JWS_INVALID"},
		{"empty bearer", "Bearer ", 401, "auth.unauthorized", "ERR_JWS_INVALID"},
		{"huge bearer", "Bearer " + strings.Repeat("a", 20000) + ".b.c", 401, "auth.unauthorized", "ERR_JWS_INVALID"},
		{"alg none", "Bearer " + srv.SignToken(map[string]any{"alg": "none", "typ": "at+jwt", "kid": srv.KeyIDs()[0]}, good), 401, "auth.unauthorized", "ERR_JOSE_ALG_NOT_ALLOWED"},
		{"HS256 with the public key", "Bearer " + srv.SignToken(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": srv.KeyIDs()[0]}, good), 401, "auth.unauthorized", "ERR_JOSE_ALG_NOT_ALLOWED"},
		{"unknown kid", "Bearer " + srv.SignToken(map[string]any{"alg": "ES384", "typ": "at+jwt", "kid": "../../etc/passwd"}, good), 401, "auth.unauthorized", "ERR_JWKS_NO_MATCHING_KEY"},
		{"crit header", "Bearer " + srv.SignToken(map[string]any{"alg": "ES384", "kid": srv.KeyIDs()[0], "crit": []string{"x"}}, good), 401, "auth.unauthorized", "ERR_JWS_INVALID"},
		{"another server's key", "Bearer " + other.MintToken(good), 401, "auth.unauthorized", "ERR_JWKS_NO_MATCHING_KEY"},
		{"payload altered", "Bearer " + alterPayload(srv.MintToken(good)), 401, "auth.unauthorized", "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"},
		{"expired", "Bearer " + srv.MintToken(with("exp", now.Unix())), 401, "auth.unauthorized", "ERR_JWT_EXPIRED"},
		{"no exp", "Bearer " + srv.MintToken(with("exp", nil)), 401, "auth.unauthorized", "ERR_JWT_CLAIM_VALIDATION_FAILED"},
		{"wrong issuer", "Bearer " + srv.MintToken(with("iss", srv.Issuer()+"/")), 401, "auth.unauthorized", "ERR_JWT_CLAIM_VALIDATION_FAILED"},
		{"user organization token", "Bearer " + userTok, 401, "auth.unauthorized", "ERR_JWT_CLAIM_VALIDATION_FAILED"},
		{"no all scope", "Bearer " + srv.MintToken(with("scope", nil)), 403, "auth.forbidden", ""},
		{"all as a substring", "Bearer " + srv.MintToken(with("scope", "allx xall")), 403, "auth.forbidden", ""},
		{"good", "Bearer " + srv.MintToken(good), 200, "", ""},
	}
	for _, file := range recordedFiles(t) {
		ex := loadRecorded(t, file)
		if auth := ex.Request.Headers["Authorization"]; strings.HasPrefix(auth, "Bearer eyJ") {
			tests = append(tests, struct {
				name       string
				auth       string
				wantStatus int
				wantCode   string
				wantData   string
			}{"real server's bearer from " + file, auth, 401, "auth.unauthorized", "ERR_JWKS_NO_MATCHING_KEY"})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/api/organizations/"+DemoAcmeID, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, body := doJSON(t, req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantCode == "" {
				return
			}
			if body["code"] != tc.wantCode {
				t.Errorf("code = %v, want %s", body["code"], tc.wantCode)
			}
			data, _ := body["data"].(map[string]any)
			if got, _ := data["code"].(string); got != tc.wantData {
				t.Errorf("data.code = %q, want %q", got, tc.wantData)
			}
		})
	}
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// alterPayload swaps the claims of a signed token for others, keeping the signature.
func alterPayload(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64.EncodeToString([]byte(`{"sub":"attacker","scope":"all"}`))
	return strings.Join(parts, ".")
}

// TestKeyRotation: a rotated-out key keeps verifying until dropped; RS256 keys publish as RSA.
func TestKeyRotation(t *testing.T) {
	for _, alg := range []string{ES384, RS256} {
		t.Run(alg, func(t *testing.T) {
			srv := newStarted(t, Config{})
			claims := srv.Claims("u1", "app", DemoAPIResource, "x")
			old := srv.MintToken(claims)
			oldKid := srv.KeyIDs()[0]
			kid, err := srv.RotateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			if got := srv.KeyIDs(); !slices.Equal(got, []string{kid, oldKid}) {
				t.Fatalf("KeyIDs = %v, want [%s %s]", got, kid, oldKid)
			}
			set := fetchJWKS(t, srv)
			jwkAlg := alg
			if alg == RS256 {
				jwkAlg = "" // Logto publishes RSA keys without "alg" (more/direct/001)
			}
			if len(set.Keys) != 2 || set.Keys[0].KeyID != kid || set.Keys[0].Algorithm != jwkAlg {
				t.Fatalf("JWKS after rotation = %v, want the new %s key first and the old one", set.Keys, alg)
			}
			fresh := srv.MintToken(claims)
			hdr, _, ok := verify(t, srv, fresh)
			if !ok || hdr.KeyID != kid || hdr.Algorithm != alg {
				t.Errorf("new token: verified %v kid %s alg %s, want true %s %s", ok, hdr.KeyID, hdr.Algorithm, kid, alg)
			}
			if _, _, ok := verify(t, srv, old); !ok {
				t.Error("token of the previous key no longer verifies before DropPreviousKeys")
			}
			srv.DropPreviousKeys()
			if _, _, ok := verify(t, srv, old); ok {
				t.Error("token of a dropped key still verifies")
			}
			if _, _, ok := verify(t, srv, fresh); !ok {
				t.Error("token of the current key stopped verifying")
			}
		})
	}
	srv := newStarted(t, Config{})
	if _, err := srv.RotateKey("HS256"); err == nil {
		t.Error("RotateKey(HS256) succeeded, want an error")
	}
}

// TestTokenClaimOrder checks Logto's exact claim layout on issued tokens.
func TestTokenClaimOrder(t *testing.T) {
	srv, _ := newDemo(t, Config{})
	tests := []struct {
		req  UserTokenRequest
		want []string
	}{
		{UserTokenRequest{UserID: DemoAliceID, OrganizationID: DemoAcmeID, Scopes: []string{"org:read"}}, []string{"jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}},
		{UserTokenRequest{UserID: DemoAliceID, OrganizationID: DemoAcmeID, Resource: DemoAPIResource}, []string{"organization_id", "jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}},
		{UserTokenRequest{UserID: DemoCarolID, Resource: DemoAdminResource, Scopes: []string{"admin:org:read"}}, []string{"jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}},
	}
	for _, tc := range tests {
		tok, err := srv.IssueUserToken(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if keys, _ := decodeSegment(t, tok, 1); !slices.Equal(keys, tc.want) {
			t.Errorf("IssueUserToken(%+v) claims = %v, want %v", tc.req, keys, tc.want)
		}
		if keys, _ := decodeSegment(t, tok, 0); !slices.Equal(keys, []string{"alg", "typ", "kid"}) {
			t.Errorf("header keys = %v, want [alg typ kid]", keys)
		}
	}
	if _, err := srv.IssueUserToken(UserTokenRequest{UserID: DemoCarolID, OrganizationID: DemoAcmeID}); err == nil {
		t.Error("IssueUserToken for a non-member succeeded, want an error")
	}
}

// TestDiscovery checks that the discovery document names this server.
func TestDiscovery(t *testing.T) {
	srv := newStarted(t, Config{})
	resp, err := http.Get(srv.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"issuer": srv.Issuer(), "jwks_uri": srv.JWKSURL(), "token_endpoint": srv.TokenURL()} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %s", k, doc[k], want)
		}
	}
}

// TestConcurrentUse drives the token endpoint, the Management API and the seeding methods
// from several goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	const workers = 8
	errs := make(chan error, workers)
	for i := range workers {
		go func() {
			errs <- func() error {
				uid := srv.AddUser("", fmt.Sprintf("worker%d", i))
				body := `{"userIds":["` + uid + `"]}`
				req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/api/organizations/"+DemoAcmeID+"/users", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+m2m)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					return fmt.Errorf("add member: status %d", resp.StatusCode)
				}
				srv.AddMember(DemoAcmeID, uid, "member")
				if _, err := srv.IssueUserToken(UserTokenRequest{UserID: uid, OrganizationID: DemoAcmeID, Scopes: []string{"org:read"}}); err != nil {
					return err
				}
				if i%2 == 0 {
					if _, err := srv.RotateKey(ES384); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(srv.Members(DemoAcmeID)); got != 2+workers {
		t.Errorf("acme has %d members, want %d", got, 2+workers)
	}
	if got := len(srv.KeyIDs()); got != 1+workers/2 {
		t.Errorf("%d keys published, want %d", got, 1+workers/2)
	}
}

// TestSetUpThroughManagementAPI sets a tenant up the way a script would on a real Logto and
// checks the tokens it then issues.
func TestSetUpThroughManagementAPI(t *testing.T) {
	srv := newStarted(t, Config{})
	srv.AddM2MApp("setupapp0000000000001", "setup-secret")
	m2m := mgmtToken(t, srv, "setupapp0000000000001", "setup-secret")
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		resp, out := api(t, srv, method, path, m2m, body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: status %d, want %d (%v)", method, path, resp.StatusCode, want, out)
		}
		return out
	}
	perm := call("POST", "/api/organization-scopes", `{"name":"member:add"}`, 201)["id"].(string)
	res := call("POST", "/api/resources", `{"name":"API","indicator":"https://api.test"}`, 201)["id"].(string)
	apiScope := call("POST", "/api/resources/"+res+"/scopes", `{"name":"items:read"}`, 201)["id"].(string)
	role := call("POST", "/api/organization-roles", `{"name":"admin","organizationScopeIds":["`+perm+`"],"resourceScopeIds":["`+apiScope+`"]}`, 201)["id"].(string)
	org := call("POST", "/api/organizations", `{"name":"Acme"}`, 201)["id"].(string)
	user := call("POST", "/api/users", `{"username":"dora"}`, 200)["id"].(string)
	call("POST", "/api/organizations/"+org+"/users", `{"userIds":["`+user+`"]}`, 201)
	call("POST", "/api/organizations/"+org+"/users/"+user+"/roles", `{"organizationRoleIds":["`+role+`"]}`, 201)
	web := call("POST", "/api/applications", `{"name":"web","type":"Traditional","customClientMetadata":{"allowTokenExchange":true}}`, 200)
	plain := call("POST", "/api/applications", `{"name":"plain","type":"Traditional"}`, 200)

	exchange := func(app map[string]any, form url.Values) (*http.Response, map[string]any) {
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", srv.SubjectToken(user))
		form.Set("subject_token_type", tokenTypeAccessToken)
		return postForm(t, srv.TokenURL(), form, app["id"].(string), app["secret"].(string))
	}
	resp, body := exchange(web, url.Values{"organization_id": {org}, "resource": {"https://api.test"}, "scope": {"items:read member:add"}})
	if resp.StatusCode != 200 || body["scope"] != "items:read" {
		t.Errorf("organization API token: status %d scope %v, want 200 items:read", resp.StatusCode, body["scope"])
	}
	resp, body = exchange(web, url.Values{"organization_id": {org}, "scope": {"member:add"}})
	if resp.StatusCode != 200 || body["scope"] != "member:add" {
		t.Errorf("organization token: status %d scope %v, want 200 member:add", resp.StatusCode, body["scope"])
	}
	resp, body = exchange(plain, url.Values{"organization_id": {org}})
	if resp.StatusCode != 400 || body["error"] != "unauthorized_client" {
		t.Errorf("app without allowTokenExchange: status %d error %v, want 400 unauthorized_client", resp.StatusCode, body["error"])
	}
}

// An M2M app without the Management API role gets a token without scope, and every
// Management API call with it is 403 auth.forbidden, as on the real server
// (more/m2m-no-role-real): the case mgmtproxy must report as misconfiguration, not 502.
func TestM2MAppWithoutRole(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	resp, body := postForm(t, srv.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "resource": {srv.ManagementResource()}, "scope": {"all"},
	}, demo.NoRoleM2MApp.ID, demo.NoRoleM2MApp.Secret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client credentials: status %d, want 200 (%v)", resp.StatusCode, body)
	}
	if _, ok := body["scope"]; ok {
		t.Errorf("token response has scope %v, want none", body["scope"])
	}
	for _, path := range []string{"/api/organizations", "/api/organizations/" + DemoAcmeID} {
		resp, body := api(t, srv, "GET", path, body["access_token"].(string), "")
		if resp.StatusCode != http.StatusForbidden || body["code"] != "auth.forbidden" {
			t.Errorf("GET %s: %d %v, want 403 auth.forbidden", path, resp.StatusCode, body["code"])
		}
	}
}

// After a key rotation that drops the old key, a cached Management API token is 401
// auth.unauthorized with ERR_JWKS_NO_MATCHING_KEY and a fresh one works (via-mgmtproxy-caddy/066-068).
func TestManagementTokenAfterRotation(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	cached := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	if _, err := srv.RotateKey(RS256); err != nil {
		t.Fatal(err)
	}
	srv.DropPreviousKeys()
	resp, body := api(t, srv, "GET", "/api/organizations", cached, "")
	data, _ := body["data"].(map[string]any)
	if resp.StatusCode != http.StatusUnauthorized || body["code"] != "auth.unauthorized" || data["code"] != "ERR_JWKS_NO_MATCHING_KEY" {
		t.Errorf("cached token after rotation: %d %v, want 401 auth.unauthorized ERR_JWKS_NO_MATCHING_KEY", resp.StatusCode, body)
	}
	if resp, _ := api(t, srv, "GET", "/api/organizations", mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("fresh token: status %d, want 200", resp.StatusCode)
	}
}
