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

# The sidecar matches the same rows by the same rules in Go, once per
# request, and passes the result as input.request.route: {"index": i,
# "params": {"orgId": "o1", ...}} for the first matching row, null when none
# matches. Without that field (opa test, opa eval) this file matches the rows
# itself; the sidecar's differential test checks both agree.

# _match is {"index", "params"} of the first matching row; undefined when
# none matches.
_match := input.request.route if {
	is_object(input.request.route)
} else := _rego_match if not _matched_by_sidecar

_matched_by_sidecar if is_object(input.request.route)

_matched_by_sidecar if is_null(input.request.route)

_rego_match := {"index": first[0], "params": params} if {
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
	params := {trim(part, "{}"): segments[i] |
		some i, part in first[1]
		_is_placeholder(part)
	}
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
	_is_placeholder(part)
}

_is_placeholder(part) if {
	startswith(part, "{")
	endswith(part, "}")
	count(part) >= 2
}

# _route is the matched row.
_route := data.orgauthz.routes[_match.index]

# _org_id and _user_id are the request's segments at the matched template's
# {orgId} and {userId}; undefined when it has none.
_org_id := _match.params.orgId

_user_id := _match.params.userId
