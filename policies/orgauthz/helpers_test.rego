package orgauthz_test

# Helpers shared by the tests of package orgauthz: tokens, inputs, and
# assertions that compare the whole decision, so each case fits on one line.

import data.orgauthz

# _routes is the route table the tests state for themselves: DESIGN's
# default table. data_test.rego checks the shipped data.json against DESIGN.
_routes := [
	{
		"method": "POST", "path": "/api/organizations", "org_token": {"scope": "org:create"},
		"global_api_user": {"scope": "org:create"}, "admin": {"scope": "admin:org:write"},
	},
	{"method": "GET", "path": "/api/organizations", "admin": {"scope": "admin:org:read"}},
	{
		"method": "GET", "path": "/api/organizations/{orgId}", "org_token": {"scope": "org:read"},
		"admin": {"scope": "admin:org:read"},
	},
	{
		"method": "PATCH", "path": "/api/organizations/{orgId}",
		"org_token": {"scope": "org:update", "body_keys_within": "updatable_fields"},
		"admin": {"scope": "admin:org:write"},
	},
	{
		"method": "DELETE", "path": "/api/organizations/{orgId}", "org_token": {"scope": "org:delete"},
		"admin": {"scope": "admin:org:write"},
	},
	{
		"method": "GET", "path": "/api/organizations/{orgId}/users", "org_token": {"scope": "member:read"},
		"admin": {"scope": "admin:org:read"},
	},
	{
		"method": "POST", "path": "/api/organizations/{orgId}/users", "org_token": {"scope": "member:add"},
		"admin": {"scope": "admin:org:write"},
	},
	{
		"method": "DELETE", "path": "/api/organizations/{orgId}/users/{userId}",
		"org_token": {"scope": "member:remove", "self_allowed": true}, "admin": {"scope": "admin:org:write"},
	},
	{
		"method": "GET", "path": "/api/organizations/{orgId}/users/{userId}/roles",
		"org_token": {"scope": "member:read"}, "admin": {"scope": "admin:org:read"},
	},
	{
		"method": "POST", "path": "/api/organizations/{orgId}/users/{userId}/roles", "not_self": true,
		"org_token": {
			"scope": "member:role", "role_names_within": "assignable_roles",
			"escalation_scope": "member:role:admin",
		},
		"admin": {"scope": "admin:org:write"},
	},
	{
		"method": "PUT", "path": "/api/organizations/{orgId}/users/{userId}/roles", "not_self": true,
		"org_token": {"scope": "member:role:admin"}, "admin": {"scope": "admin:org:write"},
	},
	{
		"method": "DELETE", "path": "/api/organizations/{orgId}/users/{userId}/roles/{roleId}", "not_self": true,
		"org_token": {"scope": "member:role:admin"}, "admin": {"scope": "admin:org:write"},
	},
	{
		"method": "GET", "path": "/api/users/{userId}/organizations", "user_self": true,
		"admin": {"scope": "admin:org:read"},
	},
	{"method": "POST", "path": "/bulk/organizations", "admin": {"scope": "admin:org:write"}},
	{"method": "POST", "path": "/bulk/organizations/delete", "admin": {"scope": "admin:org:write"}},
]

_updatable_fields := ["name", "description"]

_assignable_roles := ["member"]

# Tokens as the sidecar describes them after verification. The caller is
# user "u1" of app "app1"; _app turns a token into the app's own (M2M) token.
_token(kind, org, audience, scopes) := {
	"kind": kind,
	"subject": "u1",
	"client_id": "app1",
	"is_app": false,
	"organization_id": org,
	"audience": audience,
	"scopes": scopes,
	"issued_at": 1795505128,
	"expires_at": 1795508728,
	"claims": {},
}

_org(org, scopes) := _token("organization", org, concat("", ["urn:logto:organization:", org]), scopes)

_org_api(org, scopes) := _token("organization_api", org, "https://api.example.com", scopes)

_global(scopes) := _token("global_api", null, "https://api.example.com", scopes)

_admin(scopes) := _token("admin", null, "https://admin.example.com", scopes)

_app(token) := object.union(token, {"subject": "app1", "is_app": true})

# _input builds the policy input for a canonical path.
_input(method, path, body, token) := {
	"request": {
		"method": method,
		"path": path,
		"segments": split(trim_prefix(path, "/"), "/"),
		"query": {},
		"host": "app.example.com",
		"headers": {"content-type": "application/json"},
		"body": body,
	},
	"token": token,
	"source": {"address": "127.0.0.1"},
	"context_extensions": {},
}

# _decide evaluates the decision against the tests' own data.
_decide(method, path, body, token) := decision if {
	decision := orgauthz.decision with input as _input(method, path, body, token)
		with data.orgauthz.routes as _routes
		with data.orgauthz.updatable_fields as _updatable_fields
		with data.orgauthz.assignable_roles as _assignable_roles
}

_allows(method, path, body, token, reason, route) if {
	_decide(method, path, body, token) == {"allow": true, "reason": reason, "route": route, "headers": {}}
}

_denies(method, path, body, token, status, reason) if {
	_decide(method, path, body, token) == {"allow": false, "status": status, "reason": reason}
}

_lacks_scope(method, path, body, token, scopes) if {
	_decide(method, path, body, token) == {
		"allow": false, "status": 403, "reason": "missing_scope",
		"required_scopes": scopes,
	}
}
