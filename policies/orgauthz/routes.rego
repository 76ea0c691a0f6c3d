package orgauthz

# Route matching. The rows live in data.orgauthz.routes; no rule here names a
# path. A row matches when its method equals the request's and its path
# template matches input.request.segments one for one: a literal segment
# exactly and case-sensitively, a placeholder such as {orgId} any segment of
# 1 to 32 characters from [0-9a-z]. The first matching row wins.

# _placeholder_pattern is what DESIGN allows for {orgId}, {userId}, {roleId}.
_placeholder_pattern := `^[0-9a-z]{1,32}$`

# _route is the first row of the route table that the request matches;
# undefined when none does.
_route := data.orgauthz.routes[min(_matching_rows)]

_matching_rows contains i if {
	some i, row in data.orgauthz.routes
	row.method == input.request.method
	_template_matches(row.path, input.request.segments)
}

# _params binds the matched template's placeholders to the request's
# segments, e.g. {"orgId": "o1"} for "/api/organizations/{orgId}".
_params[_placeholder_name(part)] := input.request.segments[i] if {
	some i, part in _template_parts(_route.path)
	_is_placeholder(part)
}

# _route_name is how the decision names a route: "<METHOD> <template>".
_route_name := concat(" ", [_route.method, _route.path])

_template_parts(template) := split(trim_prefix(template, "/"), "/")

_template_matches(template, segments) if {
	parts := _template_parts(template)
	count(parts) == count(segments)
	every i, part in parts {
		_segment_matches(part, segments[i])
	}
}

_segment_matches(part, segment) if {
	_is_placeholder(part)
	is_string(segment)
	regex.match(_placeholder_pattern, segment)
}

_segment_matches(part, segment) if {
	not _is_placeholder(part)
	part == segment
}

_is_placeholder(part) if {
	startswith(part, "{")
	endswith(part, "}")
}

_placeholder_name(part) := trim_suffix(trim_prefix(part, "{"), "}")
