package orgauthz_test

import data.orgauthz

# Each row of DESIGN's default route table: allowed with the right token,
# denied with the wrong organization, kind, subject or scopes.

# POST /api/organizations

test_create_org_org_token if _allows(
	"POST", "/api/organizations", {"name": "n"}, _org("o1", ["org:create"]), "org_permission",
	"POST /api/organizations",
)

test_create_org_org_api_token if _allows(
	"POST", "/api/organizations", {"name": "n"}, _org_api("o1", ["org:create"]), "org_permission",
	"POST /api/organizations",
)

test_create_org_org_app_token if _allows(
	"POST", "/api/organizations", {"name": "n"}, _app(_org("o1", ["org:create"])), "org_permission",
	"POST /api/organizations",
)

test_create_org_global_user if _allows(
	"POST", "/api/organizations", {"name": "n"}, _global(["org:create"]), "global_permission",
	"POST /api/organizations",
)

test_create_org_admin if _allows(
	"POST", "/api/organizations", {"name": "n"}, _admin(["admin:org:write"]), "admin_permission",
	"POST /api/organizations",
)

test_create_org_global_app if _denies(
	"POST", "/api/organizations", {"name": "n"}, _app(_global(["org:create"])), 403,
	"app_not_allowed",
)

test_create_org_global_is_app_missing if _denies(
	"POST", "/api/organizations", {"name": "n"}, object.remove(_global(["org:create"]), ["is_app"]), 403,
	"app_not_allowed",
)

test_create_org_global_without_scope if _lacks_scope(
	"POST", "/api/organizations", null, _global(["org:read"]),
	["org:create"],
)

test_create_org_global_admin_scope if _lacks_scope(
	"POST", "/api/organizations", null, _global(["admin:org:write"]),
	["org:create"],
)

test_create_org_org_admin_scope if _lacks_scope(
	"POST", "/api/organizations", null, _org("o1", ["admin:org:write"]),
	["org:create"],
)

test_create_org_admin_org_scope if _lacks_scope(
	"POST", "/api/organizations", null, _admin(["org:create"]),
	["admin:org:write"],
)

# GET /api/organizations: admin only

test_list_orgs_admin if _allows(
	"GET", "/api/organizations", null, _admin(["admin:org:read"]), "admin_permission",
	"GET /api/organizations",
)

test_list_orgs_admin_write_only if _lacks_scope(
	"GET", "/api/organizations", null, _admin(["admin:org:write"]),
	["admin:org:read"],
)

test_list_orgs_org_token_admin_scope if _denies(
	"GET", "/api/organizations", null, _org("o1", ["admin:org:read"]), 403,
	"wrong_token_kind",
)

test_list_orgs_org_api_token_admin_scope if _denies(
	"GET", "/api/organizations", null, _org_api("o1", ["admin:org:read"]), 403,
	"wrong_token_kind",
)

test_list_orgs_global_admin_scope if _denies(
	"GET", "/api/organizations", null, _global(["admin:org:read"]), 403,
	"wrong_token_kind",
)

# GET /api/organizations/{orgId}

test_get_org_org_token if _allows(
	"GET", "/api/organizations/o1", null, _org("o1", ["org:read"]), "org_permission",
	"GET /api/organizations/{orgId}",
)

test_get_org_org_api_token if _allows(
	"GET", "/api/organizations/o1", null, _org_api("o1", ["org:read"]), "org_permission",
	"GET /api/organizations/{orgId}",
)

test_get_org_admin if _allows(
	"GET", "/api/organizations/o1", null, _admin(["admin:org:read"]), "admin_permission",
	"GET /api/organizations/{orgId}",
)

test_get_org_wrong_org if _denies(
	"GET", "/api/organizations/o2", null, _org("o1", ["org:read"]), 403,
	"wrong_organization",
)

test_get_org_org_api_wrong_org if _denies(
	"GET", "/api/organizations/o2", null, _org_api("o1", ["org:read"]), 403,
	"wrong_organization",
)

test_get_org_org_api_without_org if _denies(
	"GET", "/api/organizations/o1", null, object.remove(_org_api("o1", ["org:read"]), ["organization_id"]), 403,
	"wrong_organization",
)

test_get_org_global if _denies("GET", "/api/organizations/o1", null, _global(["org:read"]), 403, "wrong_token_kind")

test_get_org_org_token_admin_scope if _lacks_scope(
	"GET", "/api/organizations/o1", null, _org("o1", ["admin:org:read"]),
	["org:read"],
)

test_get_org_admin_org_scope if _lacks_scope(
	"GET", "/api/organizations/o1", null, _admin(["org:read"]),
	["admin:org:read"],
)

# PATCH /api/organizations/{orgId}: body keys within updatable_fields

test_update_org_name if _allows(
	"PATCH", "/api/organizations/o1", {"name": "n"}, _org("o1", ["org:update"]), "org_permission",
	"PATCH /api/organizations/{orgId}",
)

test_update_org_name_and_description if _allows(
	"PATCH", "/api/organizations/o1", {"name": "n", "description": "d"}, _org_api("o1", ["org:update"]),
	"org_permission", "PATCH /api/organizations/{orgId}",
)

test_update_org_empty_object if _allows(
	"PATCH", "/api/organizations/o1", {}, _org("o1", ["org:update"]), "org_permission",
	"PATCH /api/organizations/{orgId}",
)

test_update_org_custom_data if _denies(
	"PATCH", "/api/organizations/o1", {"name": "n", "customData": {"plan": "pro"}}, _org("o1", ["org:update"]), 403,
	"forbidden_body_field",
)

test_update_org_mfa if _denies(
	"PATCH", "/api/organizations/o1", {"isMfaRequired": false}, _org("o1", ["org:update"]), 403,
	"forbidden_body_field",
)

test_update_org_branding if _denies(
	"PATCH", "/api/organizations/o1", {"branding": {"logoUrl": "x"}}, _org("o1", ["org:update"]), 403,
	"forbidden_body_field",
)

test_update_org_key_case if _denies(
	"PATCH", "/api/organizations/o1", {"Name": "n"}, _org("o1", ["org:update"]), 403,
	"forbidden_body_field",
)

test_update_org_null_body if _denies(
	"PATCH", "/api/organizations/o1", null, _org("o1", ["org:update"]), 403,
	"body_required",
)

test_update_org_array_body if _denies(
	"PATCH", "/api/organizations/o1", [{"name": "n"}], _org("o1", ["org:update"]), 400,
	"invalid_body",
)

test_update_org_string_body if _denies(
	"PATCH", "/api/organizations/o1", "name", _org("o1", ["org:update"]), 400,
	"invalid_body",
)

test_update_org_without_scope if _lacks_scope(
	"PATCH", "/api/organizations/o1", {"name": "n"}, _org("o1", ["org:read"]),
	["org:update"],
)

test_update_org_wrong_org if _denies(
	"PATCH", "/api/organizations/o2", {"name": "n"}, _org("o1", ["org:update"]), 403,
	"wrong_organization",
)

test_update_org_admin_skips_body_checks if _allows(
	"PATCH", "/api/organizations/o1", {"customData": {}, "isMfaRequired": true}, _admin(["admin:org:write"]),
	"admin_permission", "PATCH /api/organizations/{orgId}",
)

test_update_org_admin_null_body if _allows(
	"PATCH", "/api/organizations/o1", null, _admin(["admin:org:write"]), "admin_permission",
	"PATCH /api/organizations/{orgId}",
)

test_update_org_admin_read_only if _lacks_scope(
	"PATCH", "/api/organizations/o1", {"name": "n"}, _admin(["admin:org:read"]),
	["admin:org:write"],
)

# DELETE /api/organizations/{orgId}

test_delete_org_org_token if _allows(
	"DELETE", "/api/organizations/o1", null, _org("o1", ["org:delete"]), "org_permission",
	"DELETE /api/organizations/{orgId}",
)

test_delete_org_admin if _allows(
	"DELETE", "/api/organizations/o1", null, _admin(["admin:org:write"]), "admin_permission",
	"DELETE /api/organizations/{orgId}",
)

test_delete_org_wrong_org if _denies(
	"DELETE", "/api/organizations/o2", null, _org("o1", ["org:delete"]), 403,
	"wrong_organization",
)

test_delete_org_without_scope if _lacks_scope(
	"DELETE", "/api/organizations/o1", null, _org("o1", ["org:update", "org:read"]),
	["org:delete"],
)

test_delete_org_global if _denies(
	"DELETE", "/api/organizations/o1", null, _global(["org:delete"]), 403,
	"wrong_token_kind",
)

# GET /api/organizations/{orgId}/users

test_list_members_org_token if _allows(
	"GET", "/api/organizations/o1/users", null, _org("o1", ["member:read"]), "org_permission",
	"GET /api/organizations/{orgId}/users",
)

test_list_members_admin if _allows(
	"GET", "/api/organizations/o1/users", null, _admin(["admin:org:read"]), "admin_permission",
	"GET /api/organizations/{orgId}/users",
)

test_list_members_wrong_org if _denies(
	"GET", "/api/organizations/o2/users", null, _org_api("o1", ["member:read"]), 403,
	"wrong_organization",
)

test_list_members_without_scope if _lacks_scope(
	"GET", "/api/organizations/o1/users", null, _org("o1", ["org:read"]),
	["member:read"],
)

# POST /api/organizations/{orgId}/users

test_add_member_org_token if _allows(
	"POST", "/api/organizations/o1/users", {"userIds": ["u2"]}, _org("o1", ["member:add"]), "org_permission",
	"POST /api/organizations/{orgId}/users",
)

test_add_member_org_api_token if _allows(
	"POST", "/api/organizations/o1/users", {"userIds": ["u2"]}, _org_api("o1", ["member:add"]), "org_permission",
	"POST /api/organizations/{orgId}/users",
)

test_add_member_admin if _allows(
	"POST", "/api/organizations/o1/users", {"userIds": ["u2"]}, _admin(["admin:org:write"]), "admin_permission",
	"POST /api/organizations/{orgId}/users",
)

test_add_member_wrong_org if _denies(
	"POST", "/api/organizations/o2/users", {"userIds": ["u2"]}, _org("o1", ["member:add"]), 403,
	"wrong_organization",
)

test_add_member_without_scope if _lacks_scope(
	"POST", "/api/organizations/o1/users", {"userIds": ["u2"]}, _org("o1", ["member:read"]),
	["member:add"],
)

# DELETE /api/organizations/{orgId}/users/{userId}: member:remove, or yourself

test_remove_member_org_token if _allows(
	"DELETE", "/api/organizations/o1/users/u2", null, _org("o1", ["member:remove"]), "org_permission",
	"DELETE /api/organizations/{orgId}/users/{userId}",
)

test_remove_member_admin if _allows(
	"DELETE", "/api/organizations/o1/users/u2", null, _admin(["admin:org:write"]), "admin_permission",
	"DELETE /api/organizations/{orgId}/users/{userId}",
)

test_remove_self_without_scope if _allows(
	"DELETE", "/api/organizations/o1/users/u1", null, _org("o1", []), "self",
	"DELETE /api/organizations/{orgId}/users/{userId}",
)

test_remove_self_org_api if _allows(
	"DELETE", "/api/organizations/o1/users/u1", null, _org_api("o1", []), "self",
	"DELETE /api/organizations/{orgId}/users/{userId}",
)

test_remove_self_wrong_org if _denies(
	"DELETE", "/api/organizations/o2/users/u1", null, _org("o1", ["member:remove"]), 403,
	"wrong_organization",
)

test_remove_self_global if _denies(
	"DELETE", "/api/organizations/o1/users/u1", null, _global([]), 403,
	"wrong_token_kind",
)

test_remove_self_app_is_not_self if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/app1", null, _app(_org("o1", [])),
	["member:remove"],
)

test_remove_other_without_scope if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/u2", null, _org("o1", ["member:add"]),
	["member:remove"],
)

test_remove_self_admin_without_scope if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/u1", null, _admin([]),
	["admin:org:write"],
)

# GET /api/organizations/{orgId}/users/{userId}/roles

test_member_roles_org_token if _allows(
	"GET", "/api/organizations/o1/users/u2/roles", null, _org("o1", ["member:read"]), "org_permission",
	"GET /api/organizations/{orgId}/users/{userId}/roles",
)

test_member_roles_admin if _allows(
	"GET", "/api/organizations/o1/users/u2/roles", null, _admin(["admin:org:read"]), "admin_permission",
	"GET /api/organizations/{orgId}/users/{userId}/roles",
)

test_member_roles_own if _allows(
	"GET", "/api/organizations/o1/users/u1/roles", null, _org("o1", ["member:read"]), "org_permission",
	"GET /api/organizations/{orgId}/users/{userId}/roles",
)

test_member_roles_wrong_org if _denies(
	"GET", "/api/organizations/o2/users/u2/roles", null, _org("o1", ["member:read"]), 403,
	"wrong_organization",
)

test_member_roles_without_scope if _lacks_scope(
	"GET", "/api/organizations/o1/users/u2/roles", null, _org("o1", ["member:role"]),
	["member:read"],
)

# POST /api/organizations/{orgId}/users/{userId}/roles: member:role within
# assignable_roles, or member:role:admin; never on yourself

test_assign_member_role if _allows(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["member"]}, _org("o1", ["member:role"]),
	"org_permission", "POST /api/organizations/{orgId}/users/{userId}/roles",
)

test_assign_no_roles if _allows(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": []}, _org_api("o1", ["member:role"]),
	"org_permission", "POST /api/organizations/{orgId}/users/{userId}/roles",
)

test_assign_privileged_role if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["admin"]}, _org("o1", ["member:role"]),
	403, "role_not_assignable",
)

test_assign_privileged_role_among_others if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["member", "admin"]},
	_org("o1", ["member:role"]), 403, "role_not_assignable",
)

test_assign_role_name_case if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["Member"]}, _org("o1", ["member:role"]),
	403, "role_not_assignable",
)

test_assign_role_name_not_string if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": [["member"]]},
	_org("o1", ["member:role"]), 403, "role_not_assignable",
)

test_assign_role_ids if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleIds": ["r1"]}, _org("o1", ["member:role"]), 403,
	"forbidden_body_field",
)

test_assign_role_names_and_ids if _denies(
	"POST", "/api/organizations/o1/users/u2/roles",
	{"organizationRoleNames": ["member"], "organizationRoleIds": ["r1"]}, _org("o1", ["member:role"]), 403,
	"forbidden_body_field",
)

test_assign_role_extra_key if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["member"], "customData": {}},
	_org("o1", ["member:role"]), 403, "forbidden_body_field",
)

test_assign_role_names_not_array if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": "member"}, _org("o1", ["member:role"]),
	400, "invalid_body",
)

test_assign_role_empty_object if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", {}, _org("o1", ["member:role"]), 400,
	"invalid_body",
)

test_assign_role_null_body if _denies(
	"POST", "/api/organizations/o1/users/u2/roles", null, _org("o1", ["member:role"]), 403,
	"body_required",
)

test_assign_role_admin_scope_any_body if _allows(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleIds": ["r1"]}, _org("o1", ["member:role:admin"]),
	"org_permission", "POST /api/organizations/{orgId}/users/{userId}/roles",
)

test_assign_role_admin_scope_privileged if _allows(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["admin"]},
	_org_api("o1", ["member:role", "member:role:admin"]), "org_permission",
	"POST /api/organizations/{orgId}/users/{userId}/roles",
)

test_assign_role_admin if _allows(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["admin"]}, _admin(["admin:org:write"]),
	"admin_permission", "POST /api/organizations/{orgId}/users/{userId}/roles",
)

test_assign_role_self if _denies(
	"POST", "/api/organizations/o1/users/u1/roles", {"organizationRoleNames": ["member"]}, _org("o1", ["member:role"]),
	403, "self_role_change",
)

test_assign_role_self_role_admin if _denies(
	"POST", "/api/organizations/o1/users/u1/roles", {"organizationRoleNames": ["admin"]},
	_org("o1", ["member:role:admin"]), 403, "self_role_change",
)

test_assign_role_self_admin_kind if _denies(
	"POST", "/api/organizations/o1/users/u1/roles", {"organizationRoleNames": ["admin"]}, _admin(["admin:org:write"]),
	403, "self_role_change",
)

test_assign_role_wrong_org if _denies(
	"POST", "/api/organizations/o2/users/u2/roles", {"organizationRoleNames": ["member"]}, _org("o1", ["member:role"]),
	403, "wrong_organization",
)

test_assign_role_without_scope if _lacks_scope(
	"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["member"]}, _org("o1", ["member:read"]),
	["member:role", "member:role:admin"],
)

test_assign_role_custom_roles if {
	decision := orgauthz.decision with input as _input(
		"POST", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["editor"]},
		_org("o1", ["member:role"]),
	)
		with data.orgauthz.routes as _routes
		with data.orgauthz.assignable_roles as ["member", "editor"]
	decision.allow == true
}

# PUT /api/organizations/{orgId}/users/{userId}/roles: member:role:admin

test_replace_roles_org_token if _allows(
	"PUT", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["admin"]},
	_org("o1", ["member:role:admin"]), "org_permission", "PUT /api/organizations/{orgId}/users/{userId}/roles",
)

test_replace_roles_admin if _allows(
	"PUT", "/api/organizations/o1/users/u2/roles", {"organizationRoleIds": ["r1"]}, _admin(["admin:org:write"]),
	"admin_permission", "PUT /api/organizations/{orgId}/users/{userId}/roles",
)

test_replace_roles_member_role if _lacks_scope(
	"PUT", "/api/organizations/o1/users/u2/roles", {"organizationRoleNames": ["member"]}, _org("o1", ["member:role"]),
	["member:role:admin"],
)

test_replace_roles_self if _denies(
	"PUT", "/api/organizations/o1/users/u1/roles", {"organizationRoleNames": ["admin"]},
	_org("o1", ["member:role:admin"]), 403, "self_role_change",
)

test_replace_roles_self_admin_kind if _denies(
	"PUT", "/api/organizations/o1/users/u1/roles", {"organizationRoleNames": ["admin"]}, _admin(["admin:org:write"]),
	403, "self_role_change",
)

test_replace_roles_wrong_org if _denies(
	"PUT", "/api/organizations/o2/users/u2/roles", {}, _org_api("o1", ["member:role:admin"]), 403,
	"wrong_organization",
)

# DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}

test_remove_role_org_token if _allows(
	"DELETE", "/api/organizations/o1/users/u2/roles/r1", null, _org("o1", ["member:role:admin"]), "org_permission",
	"DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}",
)

test_remove_role_logto_role_id if _allows(
	"DELETE", "/api/organizations/o1/users/u2/roles/abcdefghij0123456789k", null, _org("o1", ["member:role:admin"]),
	"org_permission", "DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}",
)

test_remove_role_admin if _allows(
	"DELETE", "/api/organizations/o1/users/u2/roles/r1", null, _admin(["admin:org:write"]), "admin_permission",
	"DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}",
)

test_remove_role_self if _denies(
	"DELETE", "/api/organizations/o1/users/u1/roles/r1", null, _org("o1", ["member:role:admin"]), 403,
	"self_role_change",
)

test_remove_role_self_admin_kind if _denies(
	"DELETE", "/api/organizations/o1/users/u1/roles/r1", null, _admin(["admin:org:write"]), 403,
	"self_role_change",
)

test_remove_role_member_role if _lacks_scope(
	"DELETE", "/api/organizations/o1/users/u2/roles/r1", null, _org("o1", ["member:role"]),
	["member:role:admin"],
)

test_remove_role_wrong_org if _denies(
	"DELETE", "/api/organizations/o2/users/u2/roles/r1", null, _org("o1", ["member:role:admin"]), 403,
	"wrong_organization",
)

# GET /api/users/{userId}/organizations: a user's own list, or admin

test_own_orgs_org_token if _allows(
	"GET", "/api/users/u1/organizations", null, _org("o1", []), "self",
	"GET /api/users/{userId}/organizations",
)

test_own_orgs_org_api_token if _allows(
	"GET", "/api/users/u1/organizations", null, _org_api("o1", []), "self",
	"GET /api/users/{userId}/organizations",
)

test_own_orgs_global if _allows(
	"GET", "/api/users/u1/organizations", null, _global([]), "self",
	"GET /api/users/{userId}/organizations",
)

test_own_orgs_admin_kind_without_scope if _allows(
	"GET", "/api/users/u1/organizations", null, _admin([]), "self",
	"GET /api/users/{userId}/organizations",
)

test_other_orgs_admin if _allows(
	"GET", "/api/users/u2/organizations", null, _admin(["admin:org:read"]), "admin_permission",
	"GET /api/users/{userId}/organizations",
)

test_other_orgs_admin_app if _allows(
	"GET", "/api/users/u2/organizations", null, _app(_admin(["admin:org:read"])), "admin_permission",
	"GET /api/users/{userId}/organizations",
)

test_other_orgs_org_token if _denies(
	"GET", "/api/users/u2/organizations", null, _org("o1", ["member:read", "org:read"]), 403,
	"wrong_token_kind",
)

test_other_orgs_global if _denies(
	"GET", "/api/users/u2/organizations", null, _global(["admin:org:read"]), 403,
	"wrong_token_kind",
)

test_own_orgs_app if _denies("GET", "/api/users/app1/organizations", null, _app(_global([])), 403, "wrong_token_kind")

test_other_orgs_admin_without_scope if _lacks_scope(
	"GET", "/api/users/u2/organizations", null, _admin([]),
	["admin:org:read"],
)

# POST /bulk/organizations and POST /bulk/organizations/delete: admin only

test_bulk_create_admin if _allows(
	"POST", "/bulk/organizations", {"organizations": []}, _admin(["admin:org:write"]), "admin_permission",
	"POST /bulk/organizations",
)

test_bulk_delete_admin if _allows(
	"POST", "/bulk/organizations/delete", {"ids": []}, _admin(["admin:org:write"]), "admin_permission",
	"POST /bulk/organizations/delete",
)

test_bulk_create_org_token if _denies(
	"POST", "/bulk/organizations", {"organizations": []}, _org("o1", ["admin:org:write", "org:create"]), 403,
	"wrong_token_kind",
)

test_bulk_delete_org_api_token if _denies(
	"POST", "/bulk/organizations/delete", {"ids": []}, _org_api("o1", ["admin:org:write", "org:delete"]), 403,
	"wrong_token_kind",
)

test_bulk_delete_global if _denies(
	"POST", "/bulk/organizations/delete", {"ids": []}, _global(["admin:org:write"]), 403,
	"wrong_token_kind",
)

test_bulk_delete_admin_read_only if _lacks_scope(
	"POST", "/bulk/organizations/delete", {"ids": []}, _admin(["admin:org:read"]),
	["admin:org:write"],
)

# No token: 401 on every path, known or not, before anything else.

test_no_token_known_route if _denies("GET", "/api/organizations/o1", null, null, 401, "missing_token")

test_no_token_unknown_path if _denies("GET", "/nope", null, null, 401, "missing_token")

test_no_token_head if _denies("HEAD", "/api/organizations/o1", null, null, 401, "missing_token")

test_no_token_bulk if _denies("POST", "/bulk/organizations/delete", {"ids": ["o1"]}, null, 401, "missing_token")

test_token_absent if {
	decision := orgauthz.decision with input as object.remove(
		_input("GET", "/api/organizations/o1", null, null),
		["token"],
	)
		with data.orgauthz.routes as _routes
	decision == {"allow": false, "status": 401, "reason": "missing_token"}
}

test_token_not_object if _denies("GET", "/api/organizations/o1", null, "eyJhbGciOiJFUzM4NCJ9", 401, "missing_token")

# Token kinds the table does not know get no column.

test_unknown_kind if _denies(
	"GET", "/api/organizations/o1", null, object.union(_org("o1", ["org:read"]), {"kind": "id_token"}), 403,
	"wrong_token_kind",
)

test_missing_kind if _denies(
	"GET", "/api/organizations/o1", null, object.remove(_org("o1", ["org:read"]), ["kind"]), 403,
	"wrong_token_kind",
)

# The decision is exactly one object for any input, hostile ones included.

_hostile_inputs := [
	null,
	"",
	[],
	{},
	{"token": {}},
	{"token": {}, "request": null},
	{"token": _org("o1", ["org:read"]), "request": {}},
	{"token": _org("o1", ["org:read"]), "request": {"method": "GET", "segments": "api/organizations/o1"}},
	{"token": _org("o1", ["org:read"]), "request": {"method": "GET", "segments": ["api", "organizations", 1]}},
	{"token": _org("o1", ["org:read"]), "request": {"method": "GET", "segments": ["api", "organizations", null]}},
	{"token": _org("o1", ["org:read"]), "request": {"method": ["GET"], "segments": ["api", "organizations", "o1"]}},
	{"token": _org("o1", "org:read"), "request": {"method": "GET", "segments": ["api", "organizations", "o1"]}},
	{"token": _org("o1", {"a": "org:read"}), "request": {"method": "GET", "segments": ["api", "organizations", "o1"]}},
	{
		"token": object.union(_org("o1", ["org:read"]), {"organization_id": 1}),
		"request": {"method": "GET", "segments": ["api", "organizations", "o1"]},
	},
	{"token": _org("o1", ["org:update"]), "request": {"method": "PATCH", "segments": ["api", "organizations", "o1"]}},
	{
		"token": _org("o1", ["member:role"]),
		"request": {
			"method": "POST", "segments": ["api", "organizations", "o1", "users", "u2", "roles"],
			"body": {"organizationRoleNames": {"a": "member"}},
		},
	},
	{
		"token": object.union(_org("o1", []), {"subject": null}),
		"request": {"method": "DELETE", "segments": ["api", "organizations", "o1", "users", "u1"]},
	},
	_input("GET", "/", null, _admin(["admin:org:read"])),
	_input("GET", "", null, _admin(["admin:org:read"])),
]

test_decision_always_one_object if {
	every case in _hostile_inputs {
		decisions := [decision | decision := orgauthz.decision with input as case with data.orgauthz.routes as _routes]
		count(decisions) == 1
		is_object(decisions[0])
		is_boolean(decisions[0].allow)
		decisions[0].allow == false
	}
}

test_decision_without_route_table if {
	decision := orgauthz.decision with input as _input("GET", "/api/organizations/o1", null, _org("o1", ["org:read"]))
		with data.orgauthz.routes as null
	decision == {"allow": false, "status": 403, "reason": "no_route"}
}
