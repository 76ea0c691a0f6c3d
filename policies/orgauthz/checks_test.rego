package orgauthz_test

# Scopes are exact, case-sensitive members of the token's scope array.

test_scope_suffix_lookalike if _lacks_scope(
	"POST", "/api/organizations", {"name": "n"}, _global(["org:create-x"]),
	["org:create"],
)

test_scope_prefix_lookalike if _lacks_scope(
	"POST", "/api/organizations", {"name": "n"}, _global(["xorg:create"]),
	["org:create"],
)

test_scope_upper_case if _lacks_scope(
	"POST", "/api/organizations", {"name": "n"}, _global(["ORG:CREATE"]),
	["org:create"],
)

test_scope_unsplit if _lacks_scope(
	"POST", "/api/organizations", {"name": "n"}, _global(["org:read org:create"]),
	["org:create"],
)

test_scope_with_space if _lacks_scope(
	"POST", "/api/organizations", {"name": "n"}, _global([" org:create"]),
	["org:create"],
)

test_scope_tab_separated if _lacks_scope(
	"POST", "/api/organizations", {"name": "n"}, _global(["org:read\torg:create"]),
	["org:create"],
)

test_scope_admin_prefix if _lacks_scope(
	"GET", "/api/organizations", null, _admin(["admin:org:read:x", "admin:org"]),
	["admin:org:read"],
)

test_scope_role_admin_is_not_role if _lacks_scope(
	"PUT", "/api/organizations/o1/users/u2/roles", {}, _org("o1", ["member:role", "member:role:admin-x"]),
	["member:role:admin"],
)

test_scopes_as_string if _lacks_scope("GET", "/api/organizations/o1", null, _org("o1", "org:read"), ["org:read"])

test_scopes_as_object if _lacks_scope("GET", "/api/organizations/o1", null, _org("o1", {"s": "org:read"}), ["org:read"])

test_scopes_null if _lacks_scope("GET", "/api/organizations/o1", null, _org("o1", null), ["org:read"])

test_scopes_empty if _lacks_scope("GET", "/api/organizations/o1", null, _org("o1", []), ["org:read"])

test_scopes_duplicates if _allows(
	"GET", "/api/organizations/o1", null, _org("o1", ["org:read", "org:read"]), "org_permission",
	"GET /api/organizations/{orgId}",
)

# Organization context: the token's organization must be the path's.

test_org_prefix_lookalike if _denies(
	"GET", "/api/organizations/o12", null, _org("o1", ["org:read"]), 403,
	"wrong_organization",
)

test_org_case_lookalike if _denies(
	"GET", "/api/organizations/o1", null, _org("O1", ["org:read"]), 403,
	"wrong_organization",
)

test_org_number if _denies(
	"GET", "/api/organizations/1", null, object.union(_org("o1", ["org:read"]), {"organization_id": 1}), 403,
	"wrong_organization",
)

# Users and apps: only an explicit is_app false is a user.

test_app_self_removal_needs_scope if _allows(
	"DELETE", "/api/organizations/o1/users/app1", null, _app(_org("o1", ["member:remove"])), "org_permission",
	"DELETE /api/organizations/{orgId}/users/{userId}",
)

test_is_app_string if _denies(
	"POST", "/api/organizations", {"name": "n"}, object.union(_global(["org:create"]), {"is_app": "false"}), 403,
	"app_not_allowed",
)

test_is_app_null_not_self if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/u1", null, object.union(_org("o1", []), {"is_app": null}),
	["member:remove"],
)

test_subject_empty_not_self if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/u1", null, object.union(_org("o1", []), {"subject": ""}),
	["member:remove"],
)

test_subject_other_not_self if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/u1", null, object.union(_org("o1", []), {"subject": "u11"}),
	["member:remove"],
)

test_subject_case_not_self if _lacks_scope(
	"GET", "/api/users/u1/organizations", null, object.union(_admin([]), {"subject": "U1"}),
	["admin:org:read"],
)

# Body checks look at the parsed JSON only; the admin kind skips them.

test_body_nested_key_allowed if _allows(
	"PATCH", "/api/organizations/o1", {"description": "{\"customData\": 1}"}, _org("o1", ["org:update"]),
	"org_permission", "PATCH /api/organizations/{orgId}",
)

test_body_number if _denies("PATCH", "/api/organizations/o1", 1, _org("o1", ["org:update"]), 400, "invalid_body")

test_body_absent if {
	input_without_body := json.remove(
		_input("PATCH", "/api/organizations/o1", null, _org("o1", ["org:update"])),
		["request/body"],
	)
	decision := data.orgauthz.decision with input as input_without_body
		with data.orgauthz.routes as _routes
	decision.reason == "body_required"
}

test_body_ignored_without_checks if _allows(
	"POST", "/api/organizations/o1/users", {"customData": {}, "organizationRoleNames": ["admin"]},
	_org("o1", ["member:add"]), "org_permission", "POST /api/organizations/{orgId}/users",
)

test_role_names_null_entry if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": [null]}, _org("o1", ["member:role"]), 403,
	"role_not_assignable",
)

test_assignable_roles_missing if {
	decision := data.orgauthz.decision with input as _input(
		"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["member"]},
		_org("o1", ["member:role"]),
	)
		with data.orgauthz.routes as _routes
		with data.orgauthz.assignable_roles as "member"
	decision.reason == "role_not_assignable"
}
