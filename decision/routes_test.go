package decision

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSameShape(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"/api/organizations/{orgId}", "/api/organizations/{id}", true},
		{"/api/organizations/{orgId}/users/{userId}", "/api/organizations/{a}/users/{b}", true},
		{"/api/organizations/{orgId}", "/api/organizations/o1", false},
		{"/api/organizations/{orgId}", "/api/organizations", false},
		{"/api/organizations/{orgId}/users", "/api/organizations/{orgId}/Users", false},
		{"/api/organization-invitations", "/api/organizations", false},
		{"/api/organizations/{", "/api/organizations/{}", false},
	} {
		if got := SameShape(tc.a, tc.b); got != tc.want {
			t.Errorf("SameShape(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// policyRows decodes a route table as the sidecar's loader does (JSON).
func policyRows(t *testing.T, table string) []Route {
	t.Helper()
	var rows []any
	if err := json.Unmarshal([]byte(table), &rows); err != nil {
		t.Fatal(err)
	}
	return PolicyRoutes(rows)
}

func TestRouteDrift(t *testing.T) {
	rows := policyRows(t, `[
		{"method": "GET", "path": "/api/organizations/{id}", "org_token": {"scope": "org:read"}},
		{"method": "PATCH", "path": "/api/organizations/{orgId}", "admin": {"scope": "admin:org:write"}},
		{"method": "POST", "path": "/api/organizations/{orgId}/users",
		 "org_token": {"scope": "member:add", "body_keys_within": "updatable_fields"}},
		{"method": "GET", "path": "/api/organization-invitations", "admin": {"scope": "admin:org:read"}},
		{"method": "get", "path": "/api/organizations"},
		{"method": "POST", "path": "/api/organizations/{orgId}/users/{userId}/roles",
		 "org_token": {"scope": "member:role", "role_names_within": "assignable_roles"}},
		{"method": "DELETE", "path": "/api/organizations/{orgId}"}
	]`)
	got := RouteDrift(rows)
	want := []string{
		`"GET /api/organizations/{id}" (data.orgauthz.routes[0]): mgmtproxy performs it as "GET /api/organizations/{orgId}"`,
		`"PATCH /api/organizations/{orgId}" (data.orgauthz.routes[1]): mgmtproxy requires the decision to bind the body`,
		`"POST /api/organizations/{orgId}/users" (data.orgauthz.routes[2]): the policy checks the body`,
		`"GET /api/organization-invitations" (data.orgauthz.routes[3]): mgmtproxy does not perform it`,
		`"get /api/organizations" (data.orgauthz.routes[4]): mgmtproxy does not perform it`,
	}
	if len(got) != len(want) {
		t.Fatalf("RouteDrift = %d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d = %s\nwant it to contain %s", i, got[i], want[i])
		}
	}
}

// A table of any shape the JSON decoder yields reads without a panic; rows without a string method
// and path are left out (the sidecar refuses them), and nothing is invented.
func TestPolicyRoutesHostile(t *testing.T) {
	rows := policyRows(t, `[null, 1, "GET /x", [], {}, {"method": 1, "path": "/x"}, {"method": "GET"},
		{"method": "GET", "path": 7}, {"method": "GET", "path": "", "admin": null, "org_token": []},
		{"method": "GET", "path": "/api/organizations/{orgId}", "org_token": "body_keys_within"}]`)
	if len(rows) != 2 || rows[0].Template != "" || rows[1].BodyChecked {
		t.Fatalf("PolicyRoutes = %+v", rows)
	}
	if got := RouteDrift(rows); len(got) != 1 || !strings.Contains(got[0], `"GET "`) {
		t.Errorf("RouteDrift = %q, want the empty template named", got)
	}
}

func TestOperationsIsACopy(t *testing.T) {
	ops := Operations()
	ops[0].Template = "/changed"
	if Operations()[0].Template == "/changed" {
		t.Error("Operations shares its array with the caller")
	}
}
