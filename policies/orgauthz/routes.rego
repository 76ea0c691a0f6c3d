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
# then segment by segment. The facts about the match are rules without
# arguments, which OPA computes at most once per evaluation.

# _match is [row, template segments] of the first matching row; undefined
# when none matches.
_match := [routes[first[0]], first[1]] if {
	routes := data.orgauthz.routes
	method := input.request.method
	segments := input.request.segments
	is_array(segments)
	n := count(segments)
	first := min({[i, parts] |
		some i, row in routes
		row.method == method
		strings.count(row.path, "/") == n
		parts := split(trim_prefix(row.path, "/"), "/")
		count(parts) == n
		not _mismatch(parts, segments)
	})
	not _placeholder_spelt_out(first[1], segments)
}

# _mismatch: a segment fits neither the template's literal nor its
# placeholder at its position. One regex tests both halves of a placeholder
# fit: the part is "{...}" and the segment is [0-9a-z]{1,32}, what DESIGN
# allows for {orgId}, {userId}, {roleId}. A segment equal to the part fits,
# unless it spells out a placeholder, which _placeholder_spelt_out excludes.
# The sidecar's segments are strings; any other value makes concat fail,
# which its strict engine answers with 503, never an allow.
_mismatch(parts, segments) if {
	some i, part in parts
	part != segments[i]
	not regex.match(`^\{[^/]*\}/[0-9a-z]{1,32}$`, concat("/", [part, segments[i]]))
}

# _placeholder_spelt_out: the request spells out a placeholder of the
# template, e.g. "/api/organizations/{orgId}". Such a segment fits no
# placeholder and no literal, so no row matches.
_placeholder_spelt_out(parts, segments) if {
	some i, part in parts
	part == segments[i]
	startswith(part, "{")
	endswith(part, "}")
}

# _route is the matched row.
_route := _match[0]

# _org_id and _user_id are the request's segments at the matched template's
# {orgId} and {userId}; undefined when it has none.
_org_id := input.request.segments[i] if {
	some i, part in _match[1]
	part == "{orgId}"
}

_user_id := input.request.segments[i] if {
	some i, part in _match[1]
	part == "{userId}"
}
