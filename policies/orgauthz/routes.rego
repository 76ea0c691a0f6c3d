package orgauthz

# Route matching. The rows live in data.orgauthz.routes; no rule here names a
# path. A row matches when its method equals the request's and its path
# template matches input.request.segments one for one: a literal segment
# exactly and case-sensitively, a placeholder such as {orgId} any segment of
# 1 to 32 characters from [0-9a-z]. The first matching row wins. A template
# starts with "/"; one that does not matches nothing.
#
# This runs on every request, so each row is discarded by its cheapest test
# first: the method, then the segment count (the template's "/"s), and only
# then segment by segment. Facts about the match are rules without
# arguments, which OPA computes at most once per evaluation.

# _placeholder_pattern is what DESIGN allows for {orgId}, {userId}, {roleId}.
_placeholder_pattern := `^[0-9a-z]{1,32}$`

# _match is [index, template segments] of the first matching row.
_match := min(_matches) if not _placeholder_taken_literally

# _matches holds [index, template segments] of every matching row.
_matches contains [i, parts] if {
	routes := data.orgauthz.routes
	method := input.request.method
	segments := input.request.segments
	is_array(segments)
	n := count(segments)
	some i, row in routes
	row.method == method
	strings.count(row.path, "/") == n
	parts := split(trim_prefix(row.path, "/"), "/")
	count(parts) == n
	not _mismatch(parts, segments)
}

# _mismatch: a segment does not fit the template part at its position. An
# equal segment fits, except a placeholder's own spelling, which
# _placeholder_taken_literally excludes.
_mismatch(parts, segments) if {
	some i, part in parts
	part != segments[i]
	not _placeholder_fits(part, segments[i])
}

_placeholder_fits(part, segment) if {
	_is_placeholder(part)
	is_string(segment)
	regex.match(_placeholder_pattern, segment)
}

# _placeholder_taken_literally: the request spells out a placeholder of the
# first matching row, e.g. "/api/organizations/{orgId}". Such a segment fits
# no placeholder and no literal, so no row matches.
_placeholder_taken_literally if {
	some i, part in min(_matches)[1]
	part == input.request.segments[i]
	_is_placeholder(part)
}

# _route is the matched row; undefined when none matches.
_route := data.orgauthz.routes[_match[0]]

# _route_name is how the decision names a route: "<METHOD> <template>".
_route_name := concat(" ", [_route.method, _route.path])

# _org_id and _user_id are the request's segments at the matched template's
# {orgId} and {userId}; undefined when it has none.
_org_id := _param("{orgId}")

_user_id := _param("{userId}")

_param(placeholder) := input.request.segments[i] if {
	some i, part in _match[1]
	part == placeholder
}

_is_placeholder(part) if {
	startswith(part, "{")
	endswith(part, "}")
}
