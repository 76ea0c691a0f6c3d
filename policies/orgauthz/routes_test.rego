package orgauthz_test

import data.orgauthz

# Route matching: methods and literal segments exactly, placeholders only
# [0-9a-z]{1,32}, the segment count exactly; anything else is no_route.

_admin_all := _admin(["admin:org:read", "admin:org:write"])

test_lookalike_path_suffix if _denies("GET", "/api/organizations-admin", null, _admin_all, 403, "no_route")

test_lookalike_path_case if _denies("GET", "/api/Organizations", null, _admin_all, 403, "no_route")

test_lookalike_path_case_with_org if _denies(
	"GET", "/api/Organizations/o1", null, _org("o1", ["org:read"]), 403,
	"no_route",
)

test_lookalike_path_prefix if _denies(
	"GET", "/v1/api/organizations/o1", null, _org("o1", ["org:read"]), 403,
	"no_route",
)

test_extra_segment if _denies("GET", "/api/organizations/o1/extra", null, _org("o1", ["org:read"]), 403, "no_route")

test_extra_segment_after_route if _denies(
	"POST", "/bulk/organizations/delete/now", {"ids": []}, _admin_all, 403,
	"no_route",
)

test_missing_segment if _denies(
	"DELETE", "/api/organizations/o1/users/u2/roles", null, _org("o1", ["member:role:admin"]), 403,
	"no_route",
)

test_empty_segment if _denies("GET", "/api/organizations//users", null, _admin_all, 403, "no_route")

test_trailing_slash if _denies("GET", "/api/organizations/o1/", null, _org("o1", ["org:read"]), 403, "no_route")

test_org_id_33_chars if _denies(
	"GET", "/api/organizations/abcdefghijklmnopqrstuvwxyz0123456", null, _admin_all, 403,
	"no_route",
)

test_org_id_32_chars if _allows(
	"GET", "/api/organizations/abcdefghijklmnopqrstuvwxyz012345", null, _admin_all, "admin_permission",
	"GET /api/organizations/{orgId}",
)

test_org_id_upper_case if _denies("GET", "/api/organizations/O1", null, _org("O1", ["org:read"]), 403, "no_route")

test_org_id_punctuation if _denies("GET", "/api/organizations/o-1", null, _org("o-1", ["org:read"]), 403, "no_route")

test_org_id_dot_dot if _denies("GET", "/api/organizations/../users", null, _admin_all, 403, "no_route")

test_user_id_upper_case if _denies("DELETE", "/api/organizations/o1/users/U1", null, _org("o1", []), 403, "no_route")

test_role_id_underscore if _denies(
	"DELETE", "/api/organizations/o1/users/u2/roles/r_1", null, _org("o1", ["member:role:admin"]), 403,
	"no_route",
)

test_placeholder_literal_braces if _denies("GET", "/api/organizations/{orgId}", null, _admin_all, 403, "no_route")

test_head if _denies("HEAD", "/api/organizations/o1", null, _org("o1", ["org:read"]), 403, "no_route")

test_options if _denies("OPTIONS", "/api/organizations", null, _admin_all, 403, "no_route")

test_trace if _denies("TRACE", "/api/organizations/o1/users", null, _admin_all, 403, "no_route")

test_lower_case_method if _denies("get", "/api/organizations/o1", null, _org("o1", ["org:read"]), 403, "no_route")

test_method_not_in_row if _denies("PUT", "/api/organizations/o1", {"name": "n"}, _admin_all, 403, "no_route")

test_unknown_path if _denies("GET", "/healthz", null, _admin_all, 403, "no_route")

test_root_path if _denies("GET", "/", null, _admin_all, 403, "no_route")

# The rules are generic: a route a security team adds works from data alone,
# with any placeholder names and literals.

_team_routes := [
	{"method": "GET", "path": "/api/organizations/{orgId}/invitations", "org_token": {"scope": "invitation:read"}},
	{"method": "GET", "path": "/api/organizations/{orgId}/{thing}", "org_token": {"scope": "thing:read"}},
	{
		"method": "PATCH", "path": "/teams/{orgId}",
		"org_token": {"scope": "team:update", "body_keys_within": "updatable_fields"},
	},
	{
		"method": "PATCH", "path": "/teams/{orgId}/settings",
		"org_token": {"scope": "team:update", "body_keys_within": "no_such_list"},
	},
	{"method": "GET", "path": "/reports", "org_token": {"escalation_scope": "report:read"}},
	{"method": "GET", "path": "/broken", "org_token": {}},
	{"method": "GET", "path": "/null-column", "org_token": null},
]

_team_decide(method, path, body, token) := decision if {
	decision := orgauthz.decision with input as _input(method, path, body, token)
		with data.orgauthz.routes as _team_routes
		with data.orgauthz.updatable_fields as ["name"]
}

test_added_route if {
	_team_decide("GET", "/api/organizations/o1/invitations", null, _org("o1", ["invitation:read"])) == {
		"allow": true, "reason": "org_permission", "route": "GET /api/organizations/{orgId}/invitations",
		"headers": {},
	}
}

test_first_matching_row_wins if {
	_team_decide(
		"GET", "/api/organizations/o1/invitations", null,
		_org("o1", ["thing:read"]),
	).required_scopes == ["invitation:read"]
}

test_later_row_matches if {
	_team_decide(
		"GET", "/api/organizations/o1/widgets", null,
		_org("o1", ["thing:read"]),
	).route == "GET /api/organizations/{orgId}/{thing}"
}

test_added_route_wrong_org if {
	_team_decide(
		"GET", "/api/organizations/o2/widgets", null,
		_org("o1", ["thing:read"]),
	).reason == "wrong_organization"
}

test_added_route_body_list_from_data if {
	_team_decide(
		"PATCH", "/teams/o1", {"description": "d"},
		_org("o1", ["team:update"]),
	).reason == "forbidden_body_field"
}

test_unknown_list_name_allows_no_key if {
	_team_decide(
		"PATCH", "/teams/o1/settings", {"name": "n"},
		_org("o1", ["team:update"]),
	).reason == "forbidden_body_field"
}

test_updatable_fields_missing_allows_no_key if {
	decision := orgauthz.decision with input as _input(
		"PATCH", "/api/organizations/o1", {"name": "n"},
		_org("o1", ["org:update"]),
	)
		with data.orgauthz.routes as _routes
		with data.orgauthz.updatable_fields as {"name": "name"}
	decision.reason == "forbidden_body_field"
}

test_escalation_scope_alone if {
	_team_decide("GET", "/reports", null, _org("o1", ["report:read"])).allow == true
}

test_escalation_scope_alone_missing if {
	_team_decide("GET", "/reports", null, _org("o1", ["report:write"])) == {
		"allow": false, "status": 403, "reason": "missing_scope",
		"required_scopes": ["report:read"],
	}
}

test_column_without_scope_denies if {
	_team_decide("GET", "/broken", null, _org("o1", [])) == {
		"allow": false, "status": 403, "reason": "missing_scope",
		"required_scopes": [],
	}
}

test_null_column_denies if {
	_team_decide("GET", "/null-column", null, _org("o1", ["x"])).reason == "wrong_token_kind"
}

# A template must start with "/": one that does not matches nothing, rather
# than a request with one segment more or less.
test_template_without_leading_slash if {
	every path in ["/reports", "/reports/weekly", "/"] {
		decision := orgauthz.decision with input as _input("GET", path, null, _org("o1", ["report:read"]))
			with data.orgauthz.routes as [
				{"method": "GET", "path": "reports", "org_token": {"scope": "report:read"}},
				{"method": "GET", "path": "reports/weekly", "org_token": {"scope": "report:read"}},
			]
		decision.reason == "no_route"
	}
}

# Segments that are not an array never match, even when their count agrees
# with a template's.
test_segments_not_an_array if {
	every segments in [{"a": "api", "b": "organizations"}, "ab", {"0": "api", "1": "organizations"}] {
		decision := orgauthz.decision with input as object.union(
			_input("GET", "/api/organizations", null, _admin_all),
			{"request": {"method": "GET", "segments": segments}},
		)
			with data.orgauthz.routes as _routes
		decision.reason == "no_route"
	}
}

# The sidecar matches in Go and passes input.request.route; the policy then
# reads the row and parameters from it instead of matching again.

_decide_routed(method, path, route, token) := decision if {
	input_value := json.patch(
		_input(method, path, null, token),
		[{"op": "add", "path": "/request/route", "value": route}],
	)
	decision := orgauthz.decision with input as input_value
		with data.orgauthz.routes as _routes
}

test_sidecar_route_used if {
	# Row 2 is GET /api/organizations/{orgId}; the parameters come from the sidecar.
	_decide_routed(
		"GET", "/api/organizations/o1", {"index": 2, "params": {"orgId": "o1"}},
		_org("o1", ["org:read"]),
	) == {
		"allow": true, "reason": "org_permission", "route": "GET /api/organizations/{orgId}", "headers": {},
	}
}

test_sidecar_route_params_checked if {
	route := {"index": 2, "params": {"orgId": "o2"}}
	decision := _decide_routed("GET", "/api/organizations/o1", route, _org("o1", ["org:read"]))
	decision == {"allow": false, "status": 403, "reason": "wrong_organization"}
}

test_sidecar_no_route if {
	# null: the sidecar found no row; the policy does not match again.
	decision := _decide_routed("GET", "/api/organizations/o1", null, _org("o1", ["org:read"]))
	decision == {"allow": false, "status": 403, "reason": "no_route"}
}
