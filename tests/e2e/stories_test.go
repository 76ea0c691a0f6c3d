//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/orgauthz/orgauthz/internal/chain"
)

// Every way into the chain runs the same stories.

// TestEnvoyClient enters through the Envoy-faithful ext_authz client: a real gRPC Check to the
// sidecar, then the request forwarded to mgmtproxy with the sidecar's header mutations.
func TestEnvoyClient(t *testing.T) {
	h := newHarness(t, chain.NoFront, "")
	h.useEnvoyClient(t)
	runStories(t, h, traits{jsonDenials: true, dropsUnknownIdentityHeaders: true, sendsBody: true})
}

func TestCaddy(t *testing.T) {
	h := newHarness(t, chain.FrontCaddy, needCaddy(t))
	runStories(t, h, traits{jsonDenials: true, dropsUnknownIdentityHeaders: true})
}

func TestNginx(t *testing.T) {
	h := newHarness(t, chain.FrontNginx, needOnPath(t, "nginx"))
	// nginx answers auth_request denials with its own error page, and can only overwrite the
	// identity headers it knows by name.
	runStories(t, h, traits{})
}

func TestEnvoy(t *testing.T) {
	h := newHarness(t, chain.FrontEnvoy, needOnPath(t, "envoy"))
	runStories(t, h, traits{jsonDenials: true, dropsUnknownIdentityHeaders: true, sendsBody: true})
}

// traits are how front proxies legitimately differ.
type traits struct {
	jsonDenials                 bool // a 401/403 carries the sidecar's JSON body
	dropsUnknownIdentityHeaders bool // client-sent x-orgauthz-* headers of any name are removed
	sendsBody                   bool // the sidecar sees the request body (Envoy's with_request_body)
}

func runStories(t *testing.T, h *harness, tr traits) {
	for _, s := range []struct {
		name string
		run  func(*testing.T, *harness, traits)
	}{
		{"NoTokenIs401", storyNoToken},
		{"TamperedTokenIs401", storyTamperedToken},
		{"WrongOrganizationIs403", storyWrongOrganization},
		{"MissingPermissionIs403", storyMissingPermission},
		{"MemberAdd", storyAddMember},
		{"OrganizationAPIToken", storyOrganizationAPIToken},
		{"RoleAssignmentChecksTheBody", storyRoleAssignment},
		{"CreateOrganizationMakesCreatorAdmin", storyCreateOrganization},
		{"AdminBulkCreate", storyBulkCreate},
		{"ClientIdentityHeadersDoNotSurvive", storyForgedHeaders},
		{"PathTricksNeverReachLogto", storyPathTricks},
		{"MgmtproxyWithoutDecisionIs403", storyNoDecision},
		{"DecisionReplayIs403", storyReplay},
		{"LogtoFailureIs5xx", storyLogtoFailure},
		// Late: bob leaves acme.
		{"MemberLeaves", storyMemberLeaves},
		// Last: it kills the sidecar.
		{"SidecarDownFailsClosed", storySidecarDown},
	} {
		t.Run(s.name, func(t *testing.T) { s.run(t, h, tr) })
	}
}

// wantStatus fails the test unless the answer has status want.
func wantStatus(t *testing.T, what string, got answer, want int) {
	t.Helper()
	if got.status != want {
		t.Fatalf("%s: status = %d, want %d (answer %q)", what, got.status, want, got.body)
	}
}

// wantDenial checks a deny answer from the sidecar: status, the WWW-Authenticate challenge
// and, where the front proxy passes them on, the 403 challenge and the JSON body's code.
func wantDenial(t *testing.T, what string, got answer, status int, tr traits) {
	t.Helper()
	wantStatus(t, what, got, status)
	challenge := got.header.Get("WWW-Authenticate")
	if status == http.StatusUnauthorized && !strings.HasPrefix(challenge, "Bearer") {
		t.Errorf("%s: WWW-Authenticate = %q, want a Bearer challenge", what, challenge)
	}
	if !tr.jsonDenials {
		return
	}
	if want := `Bearer error="insufficient_scope"`; status == http.StatusForbidden && !strings.HasPrefix(challenge, want) {
		t.Errorf("%s: WWW-Authenticate = %q, want %q…", what, challenge, want)
	}
	var body struct {
		Code string `json:"code"`
	}
	got.decodeJSON(t, &body)
	if body.Code == "" {
		t.Errorf("%s: deny body %q has no code", what, got.body)
	}
}

// noManagementCalls runs f and fails the test if mgmtproxy called the Management API meanwhile.
func noManagementCalls(t *testing.T, h *harness, f func()) {
	t.Helper()
	before := h.logto.managementCalls()
	f()
	if n := h.logto.managementCalls() - before; n != 0 {
		t.Errorf("Management API calls = %d, want 0", n)
	}
}

func storyNoToken(t *testing.T, h *harness, tr traits) {
	path := "/api/organizations/" + h.acme() + "/users"
	noManagementCalls(t, h, func() {
		got := h.call(t, "GET", path, "", nil)
		wantDenial(t, "GET "+path+" without a token", got, http.StatusUnauthorized, tr)
		// A token in the query string or a cookie is no token.
		tok := h.aliceOrg(t)
		got = h.call(t, "GET", path+"?access_token="+tok, "", nil, "Cookie", "token="+tok)
		wantDenial(t, "GET "+path+" with the token in the query and a cookie", got, http.StatusUnauthorized, tr)
	})
}

// storyTamperedToken: bob grants himself member:add by editing his token, in a few ways.
func storyTamperedToken(t *testing.T, h *harness, tr traits) {
	tok := h.bobOrg(t)
	parts := strings.Split(tok, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(claims, &c); err != nil {
		t.Fatal(err)
	}
	c["scope"] = "org:read member:read member:add"
	forged, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := base64.RawURLEncoding.EncodeToString(forged)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`))
	path := "/api/organizations/" + h.acme() + "/users"
	noManagementCalls(t, h, func() {
		for _, c := range []struct{ name, token string }{
			{"payload edited", parts[0] + "." + payload + "." + parts[2]},
			{"alg none", none + "." + payload + "."},
			{"signature stripped", parts[0] + "." + parts[1] + "."},
			{"trailing garbage", tok + "x"},
		} {
			got := h.call(t, "POST", path, c.token, map[string]any{"userIds": []string{h.user("carol")}})
			wantDenial(t, "bob's token, "+c.name+": POST "+path, got, http.StatusUnauthorized, tr)
		}
	})
}

// otherOrg is an organization alice is not a member of: the emulator need not know it, the
// sidecar must refuse before anything is asked.
const otherOrg = "globex000001"

func storyWrongOrganization(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	noManagementCalls(t, h, func() {
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/organizations/" + otherOrg + "/users"},
			{"POST", "/api/organizations/" + otherOrg + "/users"},
			{"GET", "/api/organizations/" + otherOrg},
			// An org token is no admin token either.
			{"GET", "/api/organizations"},
			{"POST", "/bulk/organizations"},
		} {
			var body any
			if c.method == "POST" {
				body = map[string]any{"userIds": []string{h.user("carol")}}
			}
			got := h.call(t, c.method, c.path, tok, body)
			wantDenial(t, c.method+" "+c.path+" with acme's token", got, http.StatusForbidden, tr)
		}
	})
}

func storyMissingPermission(t *testing.T, h *harness, tr traits) {
	tok := h.bobOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"
	noManagementCalls(t, h, func() {
		got := h.call(t, "POST", path, tok, map[string]any{"userIds": []string{h.user("carol")}})
		wantDenial(t, "bob: POST "+path, got, http.StatusForbidden, tr)
	})
	// bob may still read the members: the chain works for him, only the permission is missing.
	wantStatus(t, "bob: GET "+path, h.call(t, "GET", path, tok, nil), http.StatusOK)
}

func storyAddMember(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"
	carol := h.user("carol")
	got := h.call(t, "POST", path, tok, map[string]any{"userIds": []string{carol}})
	if got.status != http.StatusCreated && got.status != http.StatusOK {
		t.Fatalf("alice: POST %s = %d, want 201 (answer %q)", path, got.status, got.body)
	}
	// Logto got exactly the approved request, with mgmtproxy's credentials, not alice's.
	sent := h.logto.last(t, "/api/")
	if sent.method != "POST" || sent.target != path {
		t.Errorf("Logto got %s %s, want POST %s", sent.method, sent.target, path)
	}
	if auth := sent.header.Get("Authorization"); !strings.HasPrefix(auth, "Bearer ") || strings.Contains(auth, tok) {
		t.Errorf("Logto got Authorization of %d bytes, want mgmtproxy's bearer token", len(auth))
	}

	got = h.call(t, "GET", path, tok, nil)
	wantStatus(t, "alice: GET "+path, got, http.StatusOK)
	var members []entity
	got.decodeJSON(t, &members)
	if !slices.ContainsFunc(members, func(m entity) bool { return m.ID == carol }) {
		t.Errorf("members of acme after adding carol = %s, want carol (%s) among them", got.body, carol)
	}
}

// storyOrganizationAPIToken is pattern 2: an API token scoped to an organization.
func storyOrganizationAPIToken(t *testing.T, h *harness, tr traits) {
	tok := h.token(t, chain.TokenRequest{UserID: h.user("alice"), OrganizationID: h.acme(), Resource: chain.APIResource,
		Scopes: []string{"member:read"}})
	path := "/api/organizations/" + h.acme() + "/users"
	got := h.call(t, "GET", path, tok, nil)
	wantStatus(t, "alice's organization API token: GET "+path, got, http.StatusOK)
	if kind := h.app.last(t, "/").header.Get("X-Orgauthz-Token-Kind"); kind != "organization_api" {
		t.Errorf("mgmtproxy got X-Orgauthz-Token-Kind = %q, want organization_api", kind)
	}
	noManagementCalls(t, h, func() {
		other := "/api/organizations/" + otherOrg + "/users"
		wantDenial(t, "alice's acme API token: GET "+other, h.call(t, "GET", other, tok, nil), http.StatusForbidden, tr)
		wantDenial(t, "alice's API token without member:add: POST "+path,
			h.call(t, "POST", path, tok, map[string]any{"userIds": []string{h.user("carol")}}), http.StatusForbidden, tr)
	})
}

// storyRoleAssignment: member:role may grant only assignable roles, named in the body, so the
// sidecar must see the body. Proxies that do not send it (forward_auth, auth_request) fail
// closed: every such request is refused.
func storyRoleAssignment(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	roles := "/api/organizations/" + h.acme() + "/users/" + h.user("carol") + "/roles"
	assign := func(role string) answer {
		return h.call(t, "POST", roles, tok, map[string]any{"organizationRoleNames": []string{role}})
	}
	noManagementCalls(t, h, func() {
		wantDenial(t, "alice: POST "+roles+" admin", assign("admin"), http.StatusForbidden, tr)
		self := "/api/organizations/" + h.acme() + "/users/" + h.user("alice") + "/roles"
		got := h.call(t, "POST", self, tok, map[string]any{"organizationRoleNames": []string{"member"}})
		wantDenial(t, "alice: POST "+self+" (herself)", got, http.StatusForbidden, tr)
	})
	if !tr.sendsBody {
		noManagementCalls(t, h, func() {
			wantDenial(t, "alice: POST "+roles+" member, body unseen", assign("member"), http.StatusForbidden, tr)
		})
		return
	}
	// carol joined acme in MemberAdd.
	got := assign("member")
	if got.status != http.StatusCreated && got.status != http.StatusOK {
		t.Fatalf("alice: POST %s member = %d, want 201 (answer %q)", roles, got.status, got.body)
	}
}

func storyCreateOrganization(t *testing.T, h *harness, tr traits) {
	tok := h.aliceGlobal(t)
	name := "alice-co-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	got := h.call(t, "POST", "/api/organizations", tok, map[string]any{"name": name})
	wantStatus(t, "alice: POST /api/organizations", got, http.StatusCreated)
	var org entity
	got.decodeJSON(t, &org)
	if org.ID == "" || org.Name != name {
		t.Fatalf("created organization = %s, want id and name %q", got.body, name)
	}

	path := "/api/users/" + h.user("alice") + "/organizations"
	got = h.call(t, "GET", path, tok, nil)
	wantStatus(t, "alice: GET "+path, got, http.StatusOK)
	var orgs []entity
	got.decodeJSON(t, &orgs)
	i := slices.IndexFunc(orgs, func(o entity) bool { return o.ID == org.ID })
	if i < 0 {
		t.Fatalf("alice's organizations = %s, want the new one %s", got.body, org.ID)
	}
	var roles []string
	for _, r := range orgs[i].OrganizationRoles {
		roles = append(roles, r.Name)
	}
	if !slices.Contains(roles, "admin") {
		t.Errorf("alice's roles in the organization she created = %v, want admin", roles)
	}

	// bob has no org:create: the same request is refused.
	bob := h.token(t, chain.TokenRequest{UserID: h.user("bob"), Resource: chain.APIResource, Scopes: []string{"org:create"}})
	noManagementCalls(t, h, func() {
		got := h.call(t, "POST", "/api/organizations", bob, map[string]any{"name": name + "-bob"})
		wantDenial(t, "bob: POST /api/organizations", got, http.StatusForbidden, tr)
	})
}

func storyBulkCreate(t *testing.T, h *harness, tr traits) {
	tok := h.carolAdmin(t)
	const n = 50
	var items []map[string]string
	for i := range n {
		items = append(items, map[string]string{"name": fmt.Sprintf("bulk-%02d", i)})
	}
	got := h.call(t, "POST", "/bulk/organizations", tok, map[string]any{"organizations": items})
	wantStatus(t, "carol: POST /bulk/organizations", got, http.StatusOK)
	var res struct {
		Results []struct {
			Index  int    `json:"index"`
			Status int    `json:"status"`
			ID     string `json:"id"`
		} `json:"results"`
	}
	got.decodeJSON(t, &res)
	if len(res.Results) != n {
		t.Fatalf("bulk results = %d, want %d", len(res.Results), n)
	}
	created := map[string]bool{}
	indexes := map[int]bool{}
	for _, r := range res.Results {
		if r.Status != http.StatusCreated || r.ID == "" {
			t.Errorf("bulk result %d = status %d id %q, want 201 and an id", r.Index, r.Status, r.ID)
		}
		created[r.ID] = true
		indexes[r.Index] = true
	}
	if len(created) != n || len(indexes) != n {
		t.Errorf("bulk results name %d distinct ids and %d distinct indexes, want %d of each", len(created), len(indexes), n)
	}

	// They exist at Logto: the admin's listing shows every one.
	got = h.call(t, "GET", "/api/organizations?page_size=100", tok, nil)
	wantStatus(t, "carol: GET /api/organizations", got, http.StatusOK)
	var orgs []entity
	got.decodeJSON(t, &orgs)
	for _, o := range orgs {
		delete(created, o.ID)
	}
	if len(created) != 0 {
		t.Errorf("%d bulk-created organizations missing from the listing", len(created))
	}

	// The bulk route is the admin's only.
	alice := h.aliceGlobal(t)
	noManagementCalls(t, h, func() {
		got := h.call(t, "POST", "/bulk/organizations", alice, map[string]any{"organizations": items[:1]})
		wantDenial(t, "alice: POST /bulk/organizations", got, http.StatusForbidden, tr)
	})
}

// entity is what the stories read of Logto's users and organizations.
type entity struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	OrganizationRoles []struct {
		Name string `json:"name"`
	} `json:"organizationRoles"`
}

func storyPathTricks(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	acme := "/api/organizations/" + h.acme()
	noManagementCalls(t, h, func() {
		for _, target := range []string{
			acme + "/users/../../" + otherOrg + "/users",
			acme + "/users/%2e%2e/%2e%2e/" + otherOrg + "/users",
			"/api/organizations/" + otherOrg + "%2Fusers",
			acme + "%2F..%2F" + otherOrg + "/users",
			acme + "/users/./",
			acme + "//users",
			acme + "/users/",
			acme + "/users;jsessionid=x",
			strings.ToUpper(acme) + "/users",
			"/API/organizations/" + h.acme() + "/users",
			"/x/../api/organizations/" + otherOrg + "/users",
			"/health?next=" + acme + "/users",
		} {
			got := h.call(t, "POST", target, tok, map[string]any{"userIds": []string{h.user("carol")}})
			if got.status < 400 {
				t.Errorf("POST %s = %d, want a 4xx (or nginx's 500)", target, got.status)
			}
		}
	})
}

// identityHeaders are the headers the sidecar sets and mgmtproxy trusts.
var identityHeaders = []string{
	"X-Orgauthz-Decision", "X-Orgauthz-Decision-Id", "X-Orgauthz-Subject",
	"X-Orgauthz-Organization-Id", "X-Orgauthz-Token-Kind",
}

func storyForgedHeaders(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"
	got := h.call(t, "GET", path, tok, nil,
		"X-Orgauthz-Decision", "forged.decision.value",
		"X-Orgauthz-Decision-Id", "forged",
		"X-Orgauthz-Subject", h.user("carol"),
		"X-Orgauthz-Organization-Id", otherOrg,
		"X-Orgauthz-Token-Kind", "admin",
		"X-Orgauthz-Extra", "forged",
		"Cookie", "session=forged",
	)
	wantStatus(t, "alice with forged identity headers: GET "+path, got, http.StatusOK)

	seen := h.app.last(t, "/")
	for _, c := range []struct{ name, want string }{
		{"X-Orgauthz-Subject", h.user("alice")},
		{"X-Orgauthz-Organization-Id", h.acme()},
		{"X-Orgauthz-Token-Kind", "organization"},
	} {
		if got := seen.header.Values(c.name); len(got) != 1 || got[0] != c.want {
			t.Errorf("mgmtproxy got %s = %q, want just %q", c.name, got, c.want)
		}
	}
	for _, name := range []string{"X-Orgauthz-Decision", "X-Orgauthz-Decision-Id"} {
		if got := seen.header.Values(name); len(got) != 1 || got[0] == "" || strings.Contains(got[0], "forged") {
			t.Errorf("mgmtproxy got %s = %q, want just the sidecar's", name, got)
		}
	}
	for _, name := range []string{"Authorization", "Cookie"} {
		if got := seen.header.Values(name); len(got) != 0 {
			t.Errorf("mgmtproxy got %s (%d values), want none: user credentials stop at the front", name, len(got))
		}
	}
	if tr.dropsUnknownIdentityHeaders {
		if got := seen.header.Values("X-Orgauthz-Extra"); len(got) != 0 {
			t.Errorf("mgmtproxy got X-Orgauthz-Extra = %q, want it dropped", got)
		}
	}
	// And the user's token never reaches Logto: every Management API call carries another bearer.
	for _, s := range h.logto.requests() {
		if strings.Contains(s.header.Get("Authorization"), tok) {
			t.Errorf("Logto got alice's token on %s %s", s.method, s.target)
		}
	}
}

func storyNoDecision(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"
	noManagementCalls(t, h, func() {
		for _, c := range []struct {
			name   string
			header http.Header
		}{
			{"no decision", http.Header{}},
			{"the user's token instead", http.Header{"Authorization": {"Bearer " + tok}}},
			{"a forged decision", http.Header{
				"X-Orgauthz-Decision":        {"eyJhbGciOiJub25lIn0.eyJtIjoiR0VUIn0."},
				"X-Orgauthz-Subject":         {h.user("alice")},
				"X-Orgauthz-Token-Kind":      {"admin"},
				"X-Orgauthz-Decision-Id":     {"forged"},
				"X-Orgauthz-Organization-Id": {h.acme()},
			}},
		} {
			got := h.direct(t, "GET", path, c.header)
			wantStatus(t, "mgmtproxy directly with "+c.name, got, http.StatusForbidden)
		}
	})
}

func storyReplay(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"

	// Capture two fresh decisions: the app tap keeps them from mgmtproxy.
	h.app.hold.Store(true)
	var captured []http.Header
	for range 2 {
		got := h.call(t, "GET", path, tok, nil)
		wantStatus(t, "GET "+path+" (held at the tap)", got, http.StatusNoContent)
		captured = append(captured, identity(h.app.last(t, "/").header))
	}
	h.app.hold.Store(false)

	noManagementCalls(t, h, func() {
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/organizations/" + h.acme()},
			{"GET", "/api/organizations/" + otherOrg + "/users"},
			{"DELETE", path + "/" + h.user("bob")},
			{"GET", path + "/"},
		} {
			got := h.direct(t, c.method, c.path, captured[0])
			wantStatus(t, "decision for GET "+path+" replayed on "+c.method+" "+c.path, got, http.StatusForbidden)
		}
	})

	// The other decision is good for its own request, once: so the 403s above were the binding.
	got := h.direct(t, "GET", path, captured[1])
	wantStatus(t, "decision used on its own request", got, http.StatusOK)
	noManagementCalls(t, h, func() {
		got := h.direct(t, "GET", path, captured[1])
		wantStatus(t, "decision used a second time", got, http.StatusForbidden)
	})
}

// storyMemberLeaves: a member may remove themself without member:remove, and no one else.
func storyMemberLeaves(t *testing.T, h *harness, tr traits) {
	tok := h.bobOrg(t)
	members := "/api/organizations/" + h.acme() + "/users/"
	noManagementCalls(t, h, func() {
		got := h.call(t, "DELETE", members+h.user("alice"), tok, nil)
		wantDenial(t, "bob: DELETE alice from acme", got, http.StatusForbidden, tr)
	})
	got := h.call(t, "DELETE", members+h.user("bob"), tok, nil)
	wantStatus(t, "bob: DELETE himself from acme", got, http.StatusNoContent)
	if sent := h.logto.last(t, "/api/"); sent.method != "DELETE" || sent.target != members+h.user("bob") {
		t.Errorf("Logto got %s %s, want DELETE %s", sent.method, sent.target, members+h.user("bob"))
	}
}

func storyLogtoFailure(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"
	h.logto.drop.Store(true)
	defer h.logto.drop.Store(false)
	got := h.call(t, "GET", path, tok, nil)
	wantStatus(t, "GET "+path+" while Logto drops connections", got, http.StatusBadGateway)
	var body struct {
		Code string `json:"code"`
	}
	got.decodeJSON(t, &body)
}

func storySidecarDown(t *testing.T, h *harness, tr traits) {
	tok := h.aliceOrg(t)
	path := "/api/organizations/" + h.acme() + "/users"
	if err := h.chain.Kill("sidecar"); err != nil {
		t.Fatal(err)
	}
	noManagementCalls(t, h, func() {
		for _, c := range []struct {
			method string
			body   any
		}{
			{"GET", nil},
			{"POST", map[string]any{"userIds": []string{h.user("carol")}}},
		} {
			method := c.method
			got := h.call(t, method, path, tok, c.body)
			if got.status < 500 {
				t.Errorf("%s %s with the sidecar down = %d, want a 5xx", method, path, got.status)
			}
		}
	})
}

// identity returns the x-orgauthz-* headers of h.
func identity(h http.Header) http.Header {
	out := http.Header{}
	for _, name := range identityHeaders {
		if v := h.Values(name); len(v) > 0 {
			out[name] = v
		}
	}
	return out
}
