package orgauthz

# METADATA
# title: Authorization decision
# description: >-
#   The sidecar's answer for one request: exactly one object for any input.
#   Allow: {"allow": true, "reason", "route", "headers"}. Deny: {"allow":
#   false, "status": 400|401|403, "reason"}, plus "required_scopes" when a
#   scope was missing. Each branch of the else chain excludes the ones after
#   it, so the result is never undefined or conflicting; policies/README.md
#   lists every reason.
# entrypoint: true
# scope: document
default decision := {"allow": false, "status": 403, "reason": "not_allowed"}

decision := {"allow": false, "status": 401, "reason": "missing_token"} if {
	not _has_token
} else := {"allow": false, "status": 403, "reason": "no_route"} if {
	not _route
} else := _verdict(_route, _kind, _column)

# _verdict decides the matched route for a present token, most specific
# first. It runs on every request, so it is a function of the per-request
# facts (reading a local value is cheaper than looking a rule up again), and
# each branch tests a flag of the row or column before anything costlier.
# kind and column are {} and null when the token's kind or the row's column
# is missing.
_verdict(route, kind, column) := _deny(403, "self_role_change") if {
	route.not_self == true
	_targets_self
} else := _allow(route, "self") if {
	route.user_self == true
	_is_user
	_targets_self
} else := _deny(403, "wrong_token_kind") if {
	not is_object(column)
} else := _deny(403, "wrong_organization") if {
	kind.org_token
	org_id := _org_id
	not input.token.organization_id == org_id
} else := _allow(route, "self") if {
	column.self_allowed == true
	_is_user
	_targets_self
} else := _deny(403, "app_not_allowed") if {
	kind.user_only
	not _is_user
} else := _allow(route, kind.reason) if {
	_has_scope(column.escalation_scope)
} else := _missing_scope if {
	not _has_scope(object.get(column, "scope", null))
} else := _allow(route, kind.reason) if {
	not column.body_keys_within
	not column.role_names_within
} else := _body_verdict

# _body_verdict applies the column's body checks ("body_keys_within",
# "role_names_within") once the scope is held; _verdict asks for it only
# when the column has one.
_body_verdict := _deny(403, "body_required") if {
	_body == null
} else := _deny(400, "invalid_body") if {
	not is_object(_body)
} else := _deny(403, "forbidden_body_field") if {
	some key, _ in _body
	_forbidden_key(key)
} else := _deny(400, "invalid_body") if {
	_column.role_names_within
	not _role_names_listed
} else := _deny(403, "role_not_assignable") if {
	_unassignable_role
} else := _allow(_route, _kind.reason)

# _allow names the route "<METHOD> <template>", as DESIGN's table does.
_allow(route, reason) := {
	"allow": true,
	"reason": reason,
	"route": concat(" ", [route.method, route.path]),
	"headers": {},
}

_deny(status, reason) := {"allow": false, "status": status, "reason": reason}

_missing_scope := {
	"allow": false,
	"status": 403,
	"reason": "missing_scope",
	"required_scopes": _required_scopes,
}
