package orgauthz

# Facts about the token and the body that the decision chain combines. Each
# helper answers one question and fails closed: a field of the wrong type or
# a missing field never counts in the caller's favour.
#
# Beware: in Rego `not f(x)` is undefined, not true, when x is undefined, so
# a negation here names a helper rule (`not _has_column`), never a call on a
# value that may be missing.

# _has_token: the sidecar verified a token. It passes null when the request
# carried none; anything but an object counts as none.
_has_token if is_object(input.token)

# _column is the part of the matched row that applies to the token's kind:
# "admin" for the admin kind, "org_token" for both organization kinds,
# "global_api_user" for global_api. Undefined when the row has none.
_column := _route[_column_names[input.token.kind]]

_column_names := {
	"admin": "admin",
	"organization": "org_token",
	"organization_api": "org_token",
	"global_api": "global_api_user",
}

_has_column if is_object(_column)

_is_org_kind if _column_names[input.token.kind] == "org_token"

# _permission_reason is the allow reason when a scope of _column granted it.
_permission_reason := {
	"admin": "admin_permission",
	"org_token": "org_permission",
	"global_api_user": "global_permission",
}[_column_names[input.token.kind]]

# _has_scope is exact, case-sensitive membership in the token's scopes,
# which the sidecar split on U+0020 only. Never a substring test.
_has_scope(scope) if {
	is_string(scope)
	is_array(input.token.scopes)
	scope in input.token.scopes
}

_has_column_scope if _has_scope(_column.scope)

# _required_scopes lists the scopes of _column, any one of which would let
# the caller in (the body checks aside).
_required_scopes := [scope |
	some key in ["scope", "escalation_scope"]
	scope := _column[key]
]

# _is_user: only an explicit false counts; an app has sub == client_id.
_is_user if input.token.is_app == false

# _targets_self: the route's {userId} is the caller. {userId} only matches a
# non-empty [0-9a-z] segment, so a missing or empty subject never targets it.
_targets_self if _user_id == input.token.subject

# _org_matches: an org token's organization must be the route's {orgId};
# routes without {orgId} (creating an organization) need no org context.
_org_matches if not _org_id

_org_matches if input.token.organization_id == _org_id

# Body checks, for a column with "body_keys_within" or "role_names_within".
# The named lists a row may refer to; a name not listed here, or a list that
# is not an array, allows nothing. (The names are spelt out:
# data.orgauthz[name] would include this package's own rules.)
_lists["updatable_fields"] := data.orgauthz.updatable_fields

_lists["assignable_roles"] := data.orgauthz.assignable_roles

_list(name) := _lists[name] if is_array(_lists[name])

_body := object.get(input.request, "body", null)

_body_is_object if is_object(_body)

_checks_body if _column.body_keys_within

_checks_body if _column.role_names_within

# _forbidden_key: a top-level body key the column does not allow.
_forbidden_key(key) if {
	_column.body_keys_within
	not _allowed_key(key)
}

_forbidden_key(key) if {
	_column.role_names_within
	key != "organizationRoleNames"
}

_allowed_key(key) if key in _list(_column.body_keys_within)

_role_names_listed if is_array(_body.organizationRoleNames)

# _unassignable_role: a role name the caller may not hand out.
_unassignable_role if {
	_column.role_names_within
	some name in _body.organizationRoleNames
	not _assignable(name)
}

_assignable(name) if name in _list(_column.role_names_within)
