package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/decision"
)

// The route table is data.orgauthz.routes. A policy without one is refused:
// with no routes every request would be denied while /readyz said ready.
//
// Interpreting the table in Rego was most of a check's cost, so Load also
// builds a routeIndex from it and Eval matches the request in Go, handing
// the policy the result as input.request.route: {"index": i, "params":
// {"orgId": ...}} for the first matching row, null when none matches. The
// policy still decides everything; routes.rego uses that field when present
// and otherwise matches by the same rules itself, which `opa test` exercises
// and a differential test compares with this code.

// Input keys Eval reads and writes (keyRoute is the decision's "route").
var (
	keyRequest  = ast.StringTerm("request")
	keyMethod   = ast.StringTerm("method")
	keySegments = ast.StringTerm("segments")
	keyIndex    = ast.StringTerm("index")
	keyParams   = ast.StringTerm("params")
)

// maxPlaceholderLen is the longest segment a placeholder matches.
const maxPlaceholderLen = 32

// routeIndex is the route table grouped by method and segment count, each
// group in table order, so the first match in a group is the table's first.
type routeIndex struct {
	groups map[routeKey][]*routeRow
	table  []decision.Route // the rows as mgmtproxy's table writes them, for --check
}

type routeKey struct {
	method string
	n      int
}

// routeRow is one row: its template split into segments, which of them are
// placeholders, and the terms Eval hands the policy, made once.
type routeRow struct {
	parts       []string
	placeholder []bool
	index       *ast.Term
	paramKeys   []*ast.Term // by position; nil for a literal segment
	nparams     int
}

// routeError explains a missing or malformed route table, including the
// usual cause of its absence: a --policies one directory too deep.
func routeError(docs map[string]any, why string) error {
	hint := "the route table is the \"routes\" array of data.json in the orgauthz/ directory under the policy directory"
	if _, ok := docs["routes"]; ok {
		hint = "the directory holds the routes at data.routes, not data.orgauthz.routes: point --policies at the directory that contains orgauthz/ (one level up)"
	}
	return fmt.Errorf("data.orgauthz.routes %s: %s", why, hint)
}

// buildRouteIndex reads data.orgauthz.routes from the loaded documents. It
// refuses a missing or empty table and rows the Rego matcher could not read
// safely (not an object, method or path not a string, a placeholder named
// twice in one template).
func buildRouteIndex(docs map[string]any) (*routeIndex, error) {
	org, _ := docs["orgauthz"].(map[string]any)
	raw, present := org["routes"]
	if !present {
		return nil, routeError(docs, "is missing")
	}
	rows, ok := raw.([]any)
	if !ok {
		return nil, routeError(docs, "is not an array")
	}
	if len(rows) == 0 {
		return nil, routeError(docs, "is empty")
	}
	idx := &routeIndex{groups: map[routeKey][]*routeRow{}, table: decision.PolicyRoutes(rows)}
	var errs []error
	for i, r := range rows {
		row, _ := r.(map[string]any)
		method, mok := row["method"].(string)
		path, pok := row["path"].(string)
		if row == nil || !mok || !pok {
			errs = append(errs, fmt.Errorf("data.orgauthz.routes[%d]: want an object with string \"method\" and \"path\"", i))
			continue
		}
		if !strings.HasPrefix(path, "/") {
			continue // matches nothing, as in routes.rego
		}
		rr := &routeRow{index: ast.IntNumberTerm(i)}
		rr.parts = strings.Split(path[1:], "/")
		rr.placeholder = make([]bool, len(rr.parts))
		rr.paramKeys = make([]*ast.Term, len(rr.parts))
		seen := map[string]bool{}
		for j, part := range rr.parts {
			if !isPlaceholder(part) {
				continue
			}
			name := strings.Trim(part, "{}")
			if seen[name] {
				errs = append(errs, fmt.Errorf("data.orgauthz.routes[%d]: %q names {%s} twice", i, path, name))
			}
			seen[name] = true
			rr.placeholder[j] = true
			rr.paramKeys[j] = ast.StringTerm(name)
			rr.nparams++
		}
		key := routeKey{method, len(rr.parts)}
		idx.groups[key] = append(idx.groups[key], rr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return idx, nil
}

// isPlaceholder reports whether a template segment is "{...}".
func isPlaceholder(part string) bool {
	return len(part) >= 2 && part[0] == '{' && part[len(part)-1] == '}'
}

// fitsPlaceholder reports whether a request segment is what a placeholder
// matches: 1 to 32 characters from [0-9a-z] (DESIGN's ids).
func fitsPlaceholder(seg string) bool {
	if len(seg) == 0 || len(seg) > maxPlaceholderLen {
		return false
	}
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// match returns the first row matching method and segments, or nil. A
// segment fits a literal it equals, or a placeholder it fits; if the first
// matching row's placeholder is spelt out by the request ("{orgId}" sent
// literally), nothing matches.
func (idx *routeIndex) match(method string, segments []string) *routeRow {
	for _, rr := range idx.groups[routeKey{method, len(segments)}] {
		if rr.fits(segments) {
			for j, part := range rr.parts {
				if rr.placeholder[j] && segments[j] == part {
					return nil
				}
			}
			return rr
		}
	}
	return nil
}

func (rr *routeRow) fits(segments []string) bool {
	for j, part := range rr.parts {
		if seg := segments[j]; seg != part && !(rr.placeholder[j] && fitsPlaceholder(seg)) {
			return false
		}
	}
	return true
}

// routeValue is input.request.route for the matched row: its index and its
// placeholders' segments by name.
func (rr *routeRow) routeValue(segments []string) *ast.Term {
	params := make([][2]*ast.Term, 0, rr.nparams)
	for j, key := range rr.paramKeys {
		if key != nil {
			params = append(params, [2]*ast.Term{key, ast.StringTerm(segments[j])})
		}
	}
	return ast.ObjectTerm(
		ast.Item(keyIndex, rr.index),
		ast.Item(keyParams, ast.ObjectTerm(params...)),
	)
}

// withRoute sets input.request.route from the index when the input has a
// request with a string method and an array of string segments (the
// sidecar's always does); other inputs are left to the policy.
func (idx *routeIndex) withRoute(input ast.Value) {
	obj, ok := input.(ast.Object)
	if !ok {
		return
	}
	reqTerm := obj.Get(keyRequest)
	if reqTerm == nil {
		return
	}
	req, ok := reqTerm.Value.(ast.Object)
	if !ok {
		return
	}
	segments, ok := stringArray(req.Get(keySegments))
	if !ok {
		return
	}
	method, ok := stringValue(req.Get(keyMethod))
	if !ok {
		return
	}
	route := ast.NullTerm()
	if rr := idx.match(method, segments); rr != nil {
		route = rr.routeValue(segments)
	}
	req.Insert(keyRoute, route)
}

func stringValue(t *ast.Term) (string, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}

// stringArray reads an array of strings.
func stringArray(t *ast.Term) ([]string, bool) {
	if t == nil {
		return nil, false
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok {
		return nil, false
	}
	out := make([]string, arr.Len())
	for i := range out {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return nil, false
		}
		out[i] = string(s)
	}
	return out, true
}
