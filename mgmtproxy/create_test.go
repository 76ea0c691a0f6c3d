package mgmtproxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/orgauthz/orgauthz/decision"
)

const createRoute = "POST /api/organizations"

func createClaims(kind, sub string, app bool) decision.Claims {
	return decision.Claims{Method: "POST", Path: "/api/organizations", Route: createRoute, Kind: kind, App: app, Subject: sub}
}

// create posts a new organization with a decision for c and returns the answer and the new org's ID.
func (e *env) create(t *testing.T, c decision.Claims, body string) (*response, string) {
	t.Helper()
	resp := e.do(t, "POST", "/api/organizations", body, e.sign(t, c))
	var org struct {
		ID string `json:"id"`
	}
	if resp.status == http.StatusCreated {
		resp.json(t, &org)
	}
	return resp, org.ID
}

func TestCreateOrganization(t *testing.T) {
	for _, tc := range []struct {
		name        string
		kind        string
		app         bool
		wantMembers bool
	}{
		{"user with a global API token", "global_api", false, true},
		{"user with an organization token", "organization", false, true},
		{"user with an organization API token", "organization_api", false, true},
		{"admin", "admin", false, false},
		{"app", "global_api", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			sub := e.user
			if tc.app {
				sub = e.appID
			}
			resp, id := e.create(t, createClaims(tc.kind, sub, tc.app), `{"name":"New Co","description":"d"}`)
			wantStatus(t, "create", resp, http.StatusCreated, "")
			if !slices.Contains(e.logto.Organizations(), id) {
				t.Fatalf("organization %q not in Logto", id)
			}
			members := e.logto.Members(id)
			if tc.wantMembers {
				if !slices.Equal(members, []string{e.user}) {
					t.Errorf("members = %v, want the creator %s", members, e.user)
				}
				if roles := e.logto.MemberRoles(id, e.user); !slices.Equal(roles, []string{"admin"}) {
					t.Errorf("creator roles = %v, want [admin]", roles)
				}
			} else if len(members) != 0 {
				t.Errorf("members = %v, want none: %s only creates", members, tc.name)
			}
		})
	}
}

func TestCreateOrganizationRejectedByLogto(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.create(t, createClaims("global_api", e.user, false), `{"name":5}`)
	wantStatus(t, "create with a bad body", resp, http.StatusBadRequest, "guard.invalid_input")
	if n := len(e.management()); n != 1 {
		t.Errorf("Management API calls = %d, want 1 (no setup after a refused creation)", n)
	}
}

func TestCreateOrganizationUndo(t *testing.T) {
	for _, tc := range []struct {
		name      string
		roles     []string
		sub       string // "" is the seeded user
		failUndo  bool
		wantCode  string
		wantCalls []string
	}{
		{"role assignment fails", []string{"ghost"}, "", false, "organization_setup_failed",
			[]string{"POST /api/organizations", "POST users", "POST roles", "DELETE"}},
		{"adding the creator fails", nil, "nosuchuser01", false, "organization_setup_failed",
			[]string{"POST /api/organizations", "POST users", "DELETE"}},
		{"undo fails too", []string{"ghost"}, "", true, "organization_setup_failed_undo_failed",
			[]string{"POST /api/organizations", "POST users", "POST roles", "DELETE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.roles != nil {
					c.CreatorRoles = tc.roles
				}
			})
			if tc.failUndo {
				e.failNext = func(r *http.Request) bool { return r.Method == http.MethodDelete }
			}
			sub := tc.sub
			if sub == "" {
				sub = e.user
			}
			before := e.logto.Organizations()
			resp, _ := e.create(t, createClaims("global_api", sub, false), `{"name":"Doomed"}`)
			var body setupError
			resp.json(t, &body)
			if resp.status != http.StatusBadGateway || body.Code != tc.wantCode {
				t.Fatalf("create status = %d code %q (%s), want 502 %q", resp.status, body.Code, resp.body, tc.wantCode)
			}
			var calls []string
			for _, s := range e.management() {
				switch {
				case s.method == "POST" && s.target == "/api/organizations":
					calls = append(calls, "POST /api/organizations")
				case s.method == "POST" && strings.HasSuffix(s.target, "/users"):
					calls = append(calls, "POST users")
				case s.method == "POST" && strings.HasSuffix(s.target, "/roles"):
					calls = append(calls, "POST roles")
				default:
					calls = append(calls, s.method)
				}
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("Management API calls = %v, want %v", calls, tc.wantCalls)
			}
			after := e.logto.Organizations()
			undoFailures := 0
			if m := e.do(t, "GET", "/metrics", "", ""); strings.Contains(string(m.body), "\norgauthz_mgmtproxy_create_org_undo_failures_total 1\n") {
				undoFailures = 1
			}
			if tc.failUndo {
				if len(after) != len(before)+1 || body.OrganizationID == "" || !slices.Contains(after, body.OrganizationID) {
					t.Errorf("organizations %v → %v, organizationId %q: want the left-behind organization named", before, after, body.OrganizationID)
				}
				if undoFailures != 1 {
					t.Errorf("undo failure metric = %d, want 1", undoFailures)
				}
				if !strings.Contains(e.logs.String(), body.OrganizationID) {
					t.Error("log does not name the left-behind organization")
				}
			} else {
				if !slices.Equal(after, before) {
					t.Errorf("organizations after the undo = %v, want %v", after, before)
				}
				if undoFailures != 0 {
					t.Errorf("undo failure metric = %d, want 0", undoFailures)
				}
			}
		})
	}
}

func TestCreateOrganizationBadSubject(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.create(t, createClaims("global_api", "../admin", false), `{"name":"X"}`)
	wantStatus(t, "create with a path in sub", resp, http.StatusForbidden, "bad_subject")
	if n := len(e.seen); n != 0 {
		t.Errorf("requests reaching Logto = %d, want 0", n)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	e.do(t, "GET", "/api/organizations", "", "")
	wantStatus(t, "GET org", e.getOrg(t), http.StatusOK, "")
	resp := e.do(t, "GET", "/metrics", "", "")
	if resp.status != http.StatusOK {
		t.Fatalf("metrics status = %d", resp.status)
	}
	for _, want := range []string{
		`orgauthz_mgmtproxy_rejections_total{reason="decision_missing"} 1`,
		`orgauthz_mgmtproxy_upstream_responses_total{code="200"} 1`,
		`orgauthz_mgmtproxy_token_fetches_total{result="ok"} 1`,
		fmt.Sprintf(`orgauthz_mgmtproxy_requests_total{code="200",route=%q} 1`, "GET /api/organizations/{orgId}"),
		"\ngo_gc_heap_live_bytes ", "\ngo_memstats_heap_inuse_bytes ",
	} {
		if !strings.Contains(string(resp.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if h := e.do(t, "GET", "/healthz", "", ""); h.status != http.StatusOK {
		t.Errorf("healthz status = %d, want 200", h.status)
	}
}
