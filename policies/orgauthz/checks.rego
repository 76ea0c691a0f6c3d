package orgauthz

# Facts about the token and the body that the decision chain combines. Each
# helper answers one question and fails closed: a field of the wrong type or
# a missing field never counts in the caller's favour.
#
# Beware: in Rego `not f(x)` is undefined, not true, when x is undefined, so
# a negation here names a helper rule (`not _has_token`) or calls a
# function on a value that is always defined
# (`not _has_scope(object.get(column, "scope", null))`).

# _has_token: the sidecar verified a token. It passes null when the request
# carried none; anything but an object counts as none.
_has_token if is_object(input.token)

# _kind is how the token's kind reads a row: the column that applies, the
# allow reason when that column's scope is held, whether an org context
# applies, and whether only users (not apps) may use the column. {} for any
# other kind.
_kind := kind if {
	kind := {
		"admin": {"column": "admin", "reason": "admin_permission"},
		"organization": {"column": "org_token", "reason": "org_permission", "org_token": true},
		"organization_api": {"column": "org_token", "reason": "org_permission", "org_token": true},
		"global_api": {"column": "global_api_user", "reason": "global_permission", "user_only": true},
	}[input.token.kind]
} else := {}

# _column is the part of the matched row that applies to the token's kind;
# null when the row has none.
_column := column if {
	column := _route[_kind.column]
} else := null

# _has_scope is exact, case-sensitive membership in the token's scopes,
# which the sidecar split on U+0020 only. Never a substring test.
_has_scope(scope) if {
	is_string(scope)
	is_array(input.token.scopes)
	scope in input.token.scopes
}

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

# Body checks. The named lists a row may refer to; a name not listed here, or
# a list that is not an array, allows nothing. (The names are spelt out:
# data.orgauthz[name] would include this package's own rules.)
_lists["updatable_fields"] := data.orgauthz.updatable_fields

_lists["assignable_roles"] := data.orgauthz.assignable_roles

_list(name) := _lists[name] if is_array(_lists[name])

_body := object.get(input.request, "body", null)

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
