package decision

import (
	"fmt"
	"strings"
)

// Route is one row of a route table as the two binaries must agree on it: the decision's "r" is
// Method, a space and Template, and BodyChecked says the policy decides on the request body, so
// mgmtproxy requires the decision to bind it ("b").
type Route struct {
	Method      string
	Template    string // path template; a "{name}" segment matches one ID segment
	BodyChecked bool
}

// String is the route as the decision's "r" and DESIGN's table write it.
func (r Route) String() string { return r.Method + " " + r.Template }

// operations is what mgmtproxy performs with its M2M power (DESIGN's route table); mgmtproxy adds
// the query parameters and actions of each. It lives here, not in mgmtproxy, so that
// `sidecar --check` can compare a policy's route table with it without linking mgmtproxy.
var operations = []Route{
	{Method: "POST", Template: "/api/organizations"},
	{Method: "GET", Template: "/api/organizations"},
	{Method: "GET", Template: "/api/organizations/{orgId}"},
	{Method: "PATCH", Template: "/api/organizations/{orgId}", BodyChecked: true},
	{Method: "DELETE", Template: "/api/organizations/{orgId}"},
	{Method: "GET", Template: "/api/organizations/{orgId}/users"},
	{Method: "POST", Template: "/api/organizations/{orgId}/users"},
	{Method: "DELETE", Template: "/api/organizations/{orgId}/users/{userId}"},
	{Method: "GET", Template: "/api/organizations/{orgId}/users/{userId}/roles"},
	{Method: "POST", Template: "/api/organizations/{orgId}/users/{userId}/roles", BodyChecked: true},
	{Method: "PUT", Template: "/api/organizations/{orgId}/users/{userId}/roles"},
	{Method: "DELETE", Template: "/api/organizations/{orgId}/users/{userId}/roles/{roleId}"},
	{Method: "GET", Template: "/api/users/{userId}/organizations"},
	{Method: "POST", Template: "/bulk/organizations"},
	{Method: "POST", Template: "/bulk/organizations/delete"},
}

// Operations returns mgmtproxy's operations, in DESIGN's order (a copy).
func Operations() []Route { return append([]Route(nil), operations...) }

// PolicyRoutes reads the rows of a policy's route table (data.orgauthz.routes, decoded from JSON)
// as Routes: a row is body-checked when one of its token columns has "body_keys_within" or
// "role_names_within" (the body checks of checks.rego). Rows without a string method and path are
// left out: the sidecar refuses a policy with such a row anyway.
func PolicyRoutes(rows []any) []Route {
	var out []Route
	for _, r := range rows {
		row, _ := r.(map[string]any)
		method, mok := row["method"].(string)
		path, pok := row["path"].(string)
		if !mok || !pok {
			continue
		}
		route := Route{Method: method, Template: path}
		for _, col := range row {
			if c, ok := col.(map[string]any); ok {
				_, keys := c["body_keys_within"]
				_, roles := c["role_names_within"]
				route.BodyChecked = route.BodyChecked || keys || roles
			}
		}
		out = append(out, route)
	}
	return out
}

// SameShape reports whether two templates match the same paths: as many segments, the same literal
// segments, and placeholders at the same positions whatever their names ("{orgId}" and "{id}" are
// the same shape).
func SameShape(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		pa, pb := isPlaceholder(as[i]), isPlaceholder(bs[i])
		if pa != pb || !pa && as[i] != bs[i] {
			return false
		}
	}
	return true
}

func isPlaceholder(seg string) bool {
	return len(seg) >= 2 && seg[0] == '{' && seg[len(seg)-1] == '}'
}

// RouteDrift compares a policy's route table with mgmtproxy's operations and returns one line per
// row that mgmtproxy would not carry out as the policy allows it: a route it does not perform (same
// method and template shape), one it performs under another spelling of the template (mgmtproxy
// compares the decision's "r" exactly, so it refuses the decision), or one whose body check differs.
// None of these is an error: an application may send what the policy allows to another backend.
func RouteDrift(policy []Route) []string {
	var out []string
	for i, r := range policy {
		var op *Route
		for j := range operations {
			if operations[j].Method == r.Method && SameShape(operations[j].Template, r.Template) {
				op = &operations[j]
				break
			}
		}
		var why string
		switch {
		case op == nil:
			why = "mgmtproxy does not perform it: an allowed request sent through mgmtproxy gets 403 operation_not_allowed"
		case op.Template != r.Template:
			why = fmt.Sprintf("mgmtproxy performs it as %q and refuses a decision for another spelling (403 decision_route_mismatch)", op.String())
		case r.BodyChecked && !op.BodyChecked:
			why = "the policy checks the body but mgmtproxy does not require the decision to bind it"
		case !r.BodyChecked && op.BodyChecked:
			why = "mgmtproxy requires the decision to bind the body but the policy does not check it: a request whose body the proxy did not show the sidecar is refused (403)"
		default:
			continue
		}
		out = append(out, fmt.Sprintf("route %q (data.orgauthz.routes[%d]): %s", r.String(), i, why))
	}
	return out
}
