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
} else := _verdict

# _verdict decides a matched route for a present token, most specific first.
# It runs on every request: each branch tests a flag of the row or column
# before anything costlier, and the body checks only run for a column that
# has them.
_verdict := _deny(403, "self_role_change") if {
	_route.not_self == true
	_targets_self
} else := _allow("self") if {
	_route.user_self == true
	_is_user
	_targets_self
} else := _deny(403, "wrong_token_kind") if {
	not _has_column
} else := _deny(403, "wrong_organization") if {
	_is_org_kind
	not _org_matches
} else := _allow("self") if {
	_column.self_allowed == true
	_is_user
	_targets_self
} else := _deny(403, "app_not_allowed") if {
	input.token.kind == "global_api"
	not _is_user
} else := _allow(_permission_reason) if {
	_has_scope(_column.escalation_scope)
} else := _missing_scope if {
	not _has_column_scope
} else := _allow(_permission_reason) if {
	not _checks_body
} else := _body_verdict

# _body_verdict applies the column's body checks once the scope is held.
_body_verdict := _deny(403, "body_required") if {
	_body == null
} else := _deny(400, "invalid_body") if {
	not _body_is_object
} else := _deny(403, "forbidden_body_field") if {
	some key, _ in _body
	_forbidden_key(key)
} else := _deny(400, "invalid_body") if {
	_column.role_names_within
	not _role_names_listed
} else := _deny(403, "role_not_assignable") if {
	_unassignable_role
} else := _allow(_permission_reason)

_allow(reason) := {
	"allow": true,
	"reason": reason,
	"route": _route_name,
	"headers": {},
}

_deny(status, reason) := {"allow": false, "status": status, "reason": reason}

_missing_scope := {
	"allow": false,
	"status": 403,
	"reason": "missing_scope",
	"required_scopes": _required_scopes,
}
