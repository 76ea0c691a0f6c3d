package mgmtproxy

import (
	"net/http"
	"strings"

	"github.com/orgauthz/orgauthz/decision"
)

// action says what mgmtproxy does with an operation beyond checking the decision.
type action int

const (
	forward     action = iota // pass to Logto as is
	createOrg                 // POST /api/organizations: create, and for a user add them with the creator roles
	listMembers               // forward, then reduce the user objects
	bulkCreate                // mgmtproxy's own: create many organizations
	bulkDelete                // mgmtproxy's own: delete many organizations
)

// operation is one entry of the fixed list of things mgmtproxy will do with its M2M power.
type operation struct {
	route    string // METHOD, space, path template, as DESIGN's route table writes it
	method   string
	segments []string // path template segments; "{…}" matches an ID
	query    []string // query parameters Logto documents for the operation and mgmtproxy passes; all others are dropped
	action   action
	// bodyChecked: the policy decides on the body too, so the decision must bind it ("b").
	bodyChecked bool
}

// Query parameters passed to Logto, per Logto's API reference and the real server (LOGTO.md):
//   - paginated lists take page (from 1) and page_size (at most 100); Logto answers Total-Number and Link;
//   - the organization listing also takes q, a search over fields the caller gets back anyway;
//   - the member listing does not pass q: Logto searches it over id, username, name, primaryEmail and
//     primaryPhone, with no way to narrow the fields, so a member:read holder could probe fields the
//     listing reduction removes (phone numbers). mgmtproxy does not search the reduced fields itself
//     either: that would break Logto's pagination and Total-Number. (organizationRoleId, a newer
//     filter, is not passed for the same reason when organizationRoles is not kept; it is left out.)
//   - GET /api/users/{userId}/organizations documents none.
var (
	pageQuery = []string{"page", "page_size"}
	orgQuery  = []string{"page", "page_size", "q"}
)

// operations is DESIGN's route table: decision.Operations (method, template, body check, shared with
// the sidecar's --check) with what mgmtproxy does for each. The policy decides who may use each;
// mgmtproxy only does these.
var operations = newOperations(map[string]operation{
	"POST /api/organizations":                             {action: createOrg},
	"GET /api/organizations":                              {query: orgQuery},
	"GET /api/organizations/{orgId}/users":                {query: pageQuery, action: listMembers},
	"GET /api/organizations/{orgId}/users/{userId}/roles": {query: pageQuery},
	"POST /bulk/organizations":                            {action: bulkCreate},
	"POST /bulk/organizations/delete":                     {action: bulkDelete},
})

// newOperations builds the operations from decision.Operations, adding the query and action of
// those in extra. A key of extra that names no operation is a programming error.
func newOperations(extra map[string]operation) []operation {
	var ops []operation
	for _, r := range decision.Operations() {
		op := extra[r.String()]
		delete(extra, r.String())
		op.route, op.method, op.bodyChecked = r.String(), r.Method, r.BodyChecked
		op.segments = strings.Split(strings.TrimPrefix(r.Template, "/"), "/")
		ops = append(ops, op)
	}
	for route := range extra {
		panic("mgmtproxy: " + route + " is not in decision.Operations")
	}
	return ops
}

// match returns the operation for method and the segments of a canonical path, and the values of its
// ID placeholders by name.
func match(method string, segments []string) (*operation, map[string]string) {
	for i := range operations {
		op := &operations[i]
		if op.method != method || len(op.segments) != len(segments) {
			continue
		}
		var ids map[string]string
		ok := true
		for j, t := range op.segments {
			if strings.HasPrefix(t, "{") {
				if !isID(segments[j]) {
					ok = false
					break
				}
				if ids == nil {
					ids = map[string]string{}
				}
				ids[strings.Trim(t, "{}")] = segments[j]
			} else if t != segments[j] {
				ok = false
				break
			}
		}
		if ok {
			return op, ids
		}
	}
	return nil, nil
}

// isID reports whether s may be an organization, user or role ID: [0-9a-z]{1,32}, as DESIGN says.
func isID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// canonicalPath returns the path of the request target and its segments when the path is canonical
// (decision.CanonicalPath, the same check the sidecar signed it under); the query plays no part.
func canonicalPath(r *http.Request) (string, []string, bool) {
	target := r.RequestURI
	if target == "" { // a request built in process (tests, ServeHTTP called directly)
		target = r.URL.RequestURI()
	}
	path, _, _ := strings.Cut(target, "?")
	segs, ok := decision.CanonicalPath(path)
	return path, segs, ok
}
