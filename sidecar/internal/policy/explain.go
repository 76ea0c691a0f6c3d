package policy

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Explanation is a decision with the why of it, for `sidecar explain`.
type Explanation struct {
	Decision Decision
	// Result is the decision document exactly as the policy returned it.
	Result ast.Value
	// Route is "METHOD /template" of the route table's first row matching the request, "" when
	// none matches.
	Route string
	// Steps are the branches that produced the decision, outermost first: the entry point's
	// branch, then each else-chain branch whose value it took. The last one decided.
	Steps []Step
	// Notes are the policy's trace() messages, in order (as opa eval --explain=notes prints them).
	Notes []string
}

// Step is one rule branch that held.
type Step struct {
	Rule     string // the rule's path, e.g. data.orgauthz._verdict
	Location string // file:row of the branch
	Text     string // the branch's source, as written
	Skipped  []int  // rows of the same chain's earlier branches, which did not hold
}

// Explain evaluates input exactly as Eval does (the same prepared query, the same route match
// added to input) and traces the evaluation to say which branches decided.
func (e *Engine) Explain(ctx context.Context, input ast.Value) (Explanation, error) {
	p := e.current.Load()
	if p == nil {
		return Explanation{}, ErrNotReady
	}
	buf := topdown.NewBufferTracer()
	d, v, err := e.eval(ctx, p, input, buf)
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{Decision: d, Result: v, Steps: steps(*buf, e.query)}
	if p.routes != nil {
		x.Route = p.routes.template(input)
	}
	for _, ev := range *buf {
		if ev.Op == topdown.NoteOp {
			x.Notes = append(x.Notes, ev.Message)
		}
	}
	return x, nil
}

// steps follows the trace from the entry point's branch that held down through the branches whose
// value it took: the last rule a branch's query completed computed its value (the compiler moves
// the head's value into the end of the body), and it is followed while it is a branch of an else
// chain, whose choice is a check. A plain rule (a constructor such as _deny(…)) ends the walk.
func steps(events []*topdown.Event, query string) []Step {
	chained := map[string]bool{}
	for _, ev := range events {
		if r, ok := ev.Node.(*ast.Rule); ok && ev.Op == topdown.EnterOp && r.Else != nil {
			chained[rulePath(r)] = true
		}
	}
	var cur *topdown.Event
	for _, ev := range events {
		if r, ok := ev.Node.(*ast.Rule); ok && ev.Op == topdown.ExitOp && rulePath(r) == query {
			cur = ev
		}
	}
	var out []Step
	for cur != nil {
		r := cur.Node.(*ast.Rule)
		out = append(out, Step{Rule: rulePath(r), Location: where(r.Location), Text: branchText(r), Skipped: skipped(events, cur)})
		var next *topdown.Event
		for _, ev := range events {
			if _, ok := ev.Node.(*ast.Rule); ok && ev.Op == topdown.ExitOp && ev.ParentID == cur.QueryID && ev != cur {
				next = ev
			}
		}
		if next == nil || !chained[rulePath(next.Node.(*ast.Rule))] || len(out) > 32 {
			break
		}
		cur = next
	}
	return out
}

// rulePath is the rule's full name, e.g. data.orgauthz.decision: what the deprecated Rule.Path gives.
func rulePath(r *ast.Rule) string { return r.Ref().GroundPrefix().String() }

// skipped lists the rows of the branches of exit's chain entered before it under the same parent.
func skipped(events []*topdown.Event, exit *topdown.Event) []int {
	path := rulePath(exit.Node.(*ast.Rule))
	var out []int
	for _, ev := range events {
		if ev == exit {
			break
		}
		if r, ok := ev.Node.(*ast.Rule); ok && ev.Op == topdown.EnterOp && ev.ParentID == exit.ParentID &&
			rulePath(r) == path && ev.QueryID != exit.QueryID && r.Location != nil {
			out = append(out, r.Location.Row)
		}
	}
	return out
}

func where(l *ast.Location) string {
	if l == nil {
		return "?"
	}
	return fmt.Sprintf("%s:%d", l.File, l.Row)
}

// branchText is the branch's source as written, without the branches after it (a branch's
// location text runs to the end of its chain).
func branchText(r *ast.Rule) string {
	if r.Location == nil {
		return r.String()
	}
	text := r.Location.Text
	if next := r.Else; next != nil && next.Location != nil && next.Location.File == r.Location.File {
		if n := next.Location.Offset - r.Location.Offset; n > 0 && n <= len(text) {
			text = text[:n]
		}
	}
	return strings.TrimSpace(string(text))
}

// template is "METHOD /template" of the first row matching input's request, "" when none.
func (idx *routeIndex) template(input ast.Value) string {
	obj, ok := input.(ast.Object)
	if !ok {
		return ""
	}
	t := obj.Get(keyRequest)
	if t == nil {
		return ""
	}
	req, ok := t.Value.(ast.Object)
	if !ok {
		return ""
	}
	method, mok := stringValue(req.Get(keyMethod))
	segments, sok := stringArray(req.Get(keySegments))
	if !mok || !sok {
		return ""
	}
	if rr := idx.match(method, segments); rr != nil {
		return method + " /" + strings.Join(rr.parts, "/")
	}
	return ""
}
