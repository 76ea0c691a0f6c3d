package orgauthz_test

import data.orgauthz

# These tests run against the shipped data.json, not the tests' own copy, to
# catch drift from DESIGN's default route table and from what mgmtproxy knows.

# _design_rows: one allowed request per row of DESIGN's table, with the
# admin scope the row needs and, where there is one, an org token's scope.
_design_rows := [
	{
		"method": "POST", "path": "/api/organizations", "route": "POST /api/organizations", "admin": "admin:org:write",
		"org": "org:create",
	},
	{"method": "GET", "path": "/api/organizations", "route": "GET /api/organizations", "admin": "admin:org:read"},
	{
		"method": "GET", "path": "/api/organizations/o1", "route": "GET /api/organizations/{orgId}",
		"admin": "admin:org:read", "org": "org:read",
	},
	{
		"method": "PATCH", "path": "/api/organizations/o1", "route": "PATCH /api/organizations/{orgId}",
		"admin": "admin:org:write", "org": "org:update",
	},
	{
		"method": "DELETE", "path": "/api/organizations/o1", "route": "DELETE /api/organizations/{orgId}",
		"admin": "admin:org:write", "org": "org:delete",
	},
	{
		"method": "GET", "path": "/api/organizations/o1/users", "route": "GET /api/organizations/{orgId}/users",
		"admin": "admin:org:read", "org": "member:read",
	},
	{
		"method": "POST", "path": "/api/organizations/o1/users", "route": "POST /api/organizations/{orgId}/users",
		"admin": "admin:org:write", "org": "member:add",
	},
	{
		"method": "DELETE", "path": "/api/organizations/o1/users/u2",
		"route": "DELETE /api/organizations/{orgId}/users/{userId}", "admin": "admin:org:write", "org": "member:remove",
	},
	{
		"method": "GET", "path": "/api/organizations/o1/users/u2/roles",
		"route": "GET /api/organizations/{orgId}/users/{userId}/roles", "admin": "admin:org:read", "org": "member:read",
	},
	{
		"method": "POST", "path": "/api/organizations/o1/users/u2/roles",
		"route": "POST /api/organizations/{orgId}/users/{userId}/roles", "admin": "admin:org:write",
		"org": "member:role",
	},
	{
		"method": "PUT", "path": "/api/organizations/o1/users/u2/roles",
		"route": "PUT /api/organizations/{orgId}/users/{userId}/roles", "admin": "admin:org:write",
		"org": "member:role:admin",
	},
	{
		"method": "DELETE", "path": "/api/organizations/o1/users/u2/roles/r1",
		"route": "DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}", "admin": "admin:org:write",
		"org": "member:role:admin",
	},
	{
		"method": "GET", "path": "/api/users/u2/organizations", "route": "GET /api/users/{userId}/organizations",
		"admin": "admin:org:read",
	},
	{"method": "POST", "path": "/bulk/organizations", "route": "POST /bulk/organizations", "admin": "admin:org:write"},
	{
		"method": "POST", "path": "/bulk/organizations/delete", "route": "POST /bulk/organizations/delete",
		"admin": "admin:org:write",
	},
]

# A body every row's checks accept.
_design_body := {"name": "n", "organizationRoleNames": ["member"]}

_real(method, path, body, token) := decision if {
	decision := orgauthz.decision with input as _input(method, path, body, token)
}

test_real_data_admin_rows if {
	every row in _design_rows {
		_real(row.method, row.path, {"name": "n"}, _admin([row.admin])) == {
			"allow": true, "reason": "admin_permission", "route": row.route,
			"headers": {},
		}
		_real(row.method, row.path, {"name": "n"}, _admin([])).required_scopes == [row.admin]
	}
}

test_real_data_org_rows if {
	every row in [row | some row in _design_rows; row.org] {
		body := object.get({"PATCH": {"name": "n"}, "POST": {"organizationRoleNames": ["member"]}}, row.method, null)
		_real(row.method, row.path, body, _org("o1", [row.org])).allow == true
		_real(row.method, row.path, body, _org("o2", [row.org])).reason == _other_org_reason(row)
		_real(row.method, row.path, body, _org_api("o1", [row.admin])).required_scopes == _org_required_scopes(row)
		_real(row.method, row.path, body, _admin([row.org])).required_scopes == [row.admin]
		_real(row.method, row.path, body, _global([row.org])).reason == _global_reason(row)
	}
}

# Only role assignment has an escalation scope.
_org_required_scopes(row) := [row.org, "member:role:admin"] if row.org == "member:role"

else := [row.org]

# Only creating an organization takes a global_api user token.
_global_reason(row) := "global_permission" if row.route == "POST /api/organizations"

else := "wrong_token_kind"

# Only creating an organization needs no org context.
_other_org_reason(row) := "org_permission" if row.route == "POST /api/organizations"

else := "wrong_organization"

test_real_data_admin_only_rows if {
	every row in [row | some row in _design_rows; not row.org] {
		_real(row.method, row.path, _design_body, _org("o1", ["admin:org:read", "admin:org:write"])).allow == false
		_real(row.method, row.path, _design_body, _global(["admin:org:read", "admin:org:write"])).allow == false
	}
}

# The tests' own table is DESIGN's, and data.json keeps it, in order; rows a
# team adds (policies/README.md) come with their own tests against data.json.
# Whether mgmtproxy performs each row is `sidecar --check`'s warning and a Go
# test's (TestOperationsAreThePolicyRoutes), not a Rego test's.
test_real_data_keeps_test_table if {
	design := [[row.method, row.path] | some row in _routes]
	[pair | some row in data.orgauthz.routes; pair := [row.method, row.path]; pair in design] == design
}

test_real_data_rows_well_formed if {
	every row in data.orgauthz.routes {
		row.method == upper(row.method)
		startswith(row.path, "/")
		every column in [row[key] | some key in ["org_token", "global_api_user", "admin"]] {
			is_string(column.scope)
		}
		parts := split(trim_prefix(row.path, "/"), "/")
		every part in parts {
			not _bad_placeholder(part)
		}
		placeholders := [part | some part in parts; startswith(part, "{")]
		count(placeholders) == count({part | some part in placeholders})
	}
}

# Any {name} placeholder is accepted, as the sidecar's route matcher accepts it; only its form is checked.
_bad_placeholder(part) if {
	startswith(part, "{")
	not regex.match(`^\{[A-Za-z][A-Za-z0-9_]*\}$`, part)
}

test_real_data_safe_lists if {
	every field in ["customData", "isMfaRequired", "branding", "customCss", "id", "tenantId"] {
		not field in data.orgauthz.updatable_fields
	}

	# admin is the role mgmtproxy gives an organization's creator by default:
	# assignable, anyone with member:role could make others admins.
	not "admin" in data.orgauthz.assignable_roles
}

test_real_data_self_role_change if {
	_real(
		"POST", "/api/organizations/o1/users/u1/roles", _design_body,
		_admin(["admin:org:write"]),
	).reason == "self_role_change"
	_real(
		"PUT", "/api/organizations/o1/users/u1/roles", _design_body,
		_org("o1", ["member:role:admin"]),
	).reason == "self_role_change"
	_real(
		"DELETE", "/api/organizations/o1/users/u1/roles/r1", null,
		_org("o1", ["member:role:admin"]),
	).reason == "self_role_change"
}

test_real_data_no_token if {
	_real("GET", "/api/organizations", null, null) == {"allow": false, "status": 401, "reason": "missing_token"}
	_real("GET", "/nowhere", null, null) == {"allow": false, "status": 401, "reason": "missing_token"}
}
