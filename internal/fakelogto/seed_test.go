package fakelogto

import (
	"net/http"
	"slices"
	"testing"
)

// TestSeedingMisusePanics: seeding is test setup, so a malformed or duplicate ID or an
// unknown name panics instead of seeding something else.
func TestSeedingMisusePanics(t *testing.T) {
	srv, _ := newDemo(t, Config{})
	tests := []struct {
		name string
		seed func()
	}{
		{"user ID with upper case", func() { srv.AddUser("Alice0000001", "x") }},
		{"user ID with a slash", func() { srv.AddUser("a/../b", "x") }},
		{"duplicate user ID", func() { srv.AddUser(DemoAliceID, "other") }},
		{"duplicate username", func() { srv.AddUser("", "alice") }},
		{"duplicate organization", func() { srv.AddOrganization(DemoAcmeID, "again") }},
		{"duplicate role name", func() { srv.AddOrgRole("admin") }},
		{"member with an unknown role", func() { srv.AddMember(DemoAcmeID, DemoCarolID, "owner") }},
		{"member of an unknown organization", func() { srv.AddMember("nosuchorg", DemoCarolID) }},
		{"API scopes of an unknown role", func() { srv.AddOrgRoleAPIScopes("owner", DemoAPIResource, "x") }},
		{"Management API as an API resource", func() { srv.AddAPIResource(srv.ManagementResource()) }},
		{"app without a secret", func() { srv.AddM2MApp("", "") }},
		{"traffic app in an organization", func() { srv.AddOrgApp(DemoAcmeID, DemoTrafficAppID) }},
		{"unknown global role", func() { srv.AssignGlobalRole(DemoBobID, "root") }},
		{"subject token of an unknown user", func() { srv.SubjectToken("nosuchuser") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.seed()
		})
	}
	// None of it changed the tenant.
	if got := srv.Members(DemoAcmeID); !slices.Equal(got, []string{DemoAliceID, DemoBobID}) {
		t.Errorf("acme members = %v", got)
	}
}

func TestSeedingGeneratesLogtoShapedIDs(t *testing.T) {
	srv := newStarted(t, Config{})
	for _, tc := range []struct {
		kind string
		id   string
		n    int
	}{
		{"user", srv.AddUser("", "u"), shortIDLen},
		{"organization", srv.AddOrganization("", "o"), shortIDLen},
		{"organization role", srv.AddOrgRole("r", "s"), longIDLen},
		{"M2M app", srv.AddM2MApp("", "secret"), longIDLen},
		{"global role", srv.AddGlobalRole("g", DemoAPIResource, "x"), longIDLen},
	} {
		if len(tc.id) != tc.n || !idPattern.MatchString(tc.id) {
			t.Errorf("%s ID %q, want %d characters of [0-9a-z]", tc.kind, tc.id, tc.n)
		}
	}
	if got := srv.Organizations(); len(got) != 1 {
		t.Errorf("Organizations() = %v, want one", got)
	}
}

// TestManagementAPIAfterRotation: a Management API token signed before a rotation to RS256
// keeps working until the previous key is dropped; one signed after works throughout.
func TestManagementAPIAfterRotation(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	before := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	if _, err := srv.RotateKey(RS256); err != nil {
		t.Fatal(err)
	}
	after := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	if hdr, _ := decodeSegment(t, after, 0); !slices.Equal(hdr, []string{"alg", "typ", "kid"}) {
		t.Errorf("RS256 token header keys = %v", hdr)
	}
	check := func(tok string, want int) {
		t.Helper()
		if resp, body := api(t, srv, http.MethodGet, "/api/organizations/"+DemoAcmeID, tok, ""); resp.StatusCode != want {
			t.Errorf("status %d, want %d (%v)", resp.StatusCode, want, body)
		}
	}
	check(before, 200)
	check(after, 200)
	srv.DropPreviousKeys()
	check(before, 401)
	check(after, 200)
}
