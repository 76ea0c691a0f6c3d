package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// MaskQuery is the rule OPA consults to mask its decision logs, and so do we.
const MaskQuery = "data.system.log.mask"

// maxMaskRules bounds the rules one evaluation may return.
const maxMaskRules = 1000

// Mask is a prepared system.log.mask rule. As in OPA, it is evaluated with the whole record as input
// (input.input is the policy input, input.result the decision, input.route, input.token, … the rest)
// and returns a set whose members are JSON paths under /input or /result to erase
// ("/input/request/headers/x-user-email") or objects {"op": "remove"|"upsert", "path": …, "value": …}.
// Erased paths are listed in the record's erased field, upserted ones in masked; a path that does not
// exist is skipped. Unlike OPA, which drops the whole event when the mask fails, a record whose mask
// fails keeps its audit fields but loses input and result (both listed as erased): failing closed
// without losing who did what.
type Mask struct {
	pq rego.PreparedEvalQuery
}

// NewMask prepares MaskQuery against a compiled policy set and its data, as the sidecar already has
// them for its decision query. It returns nil (no masking) when no rule defines the mask.
func NewMask(ctx context.Context, compiler *ast.Compiler, store storage.Store) (*Mask, error) {
	if len(compiler.GetRules(ast.MustParseRef(MaskQuery))) == 0 {
		return nil, nil
	}
	pq, err := rego.New(
		rego.Query(MaskQuery),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true), // a builtin error fails the mask (closed), not skips a rule
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("decisionlog: prepare %s: %w", MaskQuery, err)
	}
	return &Mask{pq: pq}, nil
}

// LoadMask compiles the Rego modules and data documents under dir (tests excluded) and prepares
// MaskQuery from them: for a binary with no policy set of its own, or a mask kept apart from the
// policies. It returns nil (no masking) when no rule defines the mask.
func LoadMask(ctx context.Context, dir string) (*Mask, error) {
	res, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).Filtered([]string{dir},
		func(_ string, info fs.FileInfo, _ int) bool {
			name := info.Name()
			if info.IsDir() {
				return strings.HasPrefix(name, ".") && name != "." && name != ".."
			}
			return strings.HasSuffix(name, "_test.rego") ||
				!(strings.HasSuffix(name, ".rego") || name == "data.json" || name == "data.yaml")
		})
	if err != nil {
		return nil, fmt.Errorf("decisionlog: load mask from %s: %w", dir, err)
	}
	compiler := ast.NewCompiler().WithStrict(true)
	if compiler.Compile(res.ParsedModules()); compiler.Failed() {
		return nil, fmt.Errorf("decisionlog: compile mask in %s: %w", dir, compiler.Errors)
	}
	return NewMask(ctx, compiler, inmem.NewFromObject(res.Documents))
}

// maskRule is one member of the mask's result.
type maskRule struct {
	remove bool
	path   string   // as written, for erased/masked
	parts  []string // after the /input or /result root, unescaped
	root   string   // "input" or "result"
	value  any
}

// rules evaluates the mask for the record's JSON form.
func (m *Mask) rules(ctx context.Context, event any) ([]maskRule, error) {
	rs, err := m.pq.Eval(ctx, rego.EvalInput(event))
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // undefined: nothing to mask
	}
	raw, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("mask is %T, want a set", rs[0].Expressions[0].Value)
	}
	if len(raw) > maxMaskRules {
		return nil, fmt.Errorf("mask returned %d rules, over %d", len(raw), maxMaskRules)
	}
	out := make([]maskRule, 0, len(raw))
	for _, r := range raw {
		rule, err := parseMaskRule(r)
		if err != nil {
			return nil, err
		}
		out = append(out, rule)
	}
	return out, nil
}

// parseMaskRule reads a string path (erase) or an {"op", "path", "value"} object, as OPA does.
func parseMaskRule(r any) (maskRule, error) {
	rule := maskRule{remove: true}
	switch t := r.(type) {
	case string:
		rule.path = t
	case map[string]any:
		op, _ := t["op"].(string)
		switch op {
		case "", "remove":
		case "upsert":
			rule.remove = false
			rule.value = t["value"]
		default:
			return rule, fmt.Errorf("mask op %.40q is not supported", op)
		}
		rule.path, _ = t["path"].(string)
	default:
		return rule, fmt.Errorf("mask rule of type %T", r)
	}
	if !strings.HasPrefix(rule.path, "/") {
		return rule, fmt.Errorf("mask path %.80q is not slash-prefixed", rule.path)
	}
	parts := strings.Split(rule.path[1:], "/")
	rule.root = parts[0]
	if rule.root != "input" && rule.root != "result" {
		return rule, fmt.Errorf("mask prefix %.40q not allowed (only /input and /result)", rule.root)
	}
	for _, p := range parts[1:] {
		u, err := url.PathUnescape(p)
		if err != nil {
			return rule, fmt.Errorf("mask path %.80q: %w", rule.path, err)
		}
		rule.parts = append(rule.parts, u)
	}
	return rule, nil
}

var errNoPath = errors.New("no such path")

// apply applies the rule to rec's input or result and lists it in erased or masked when it took effect.
func (r maskRule) apply(rec *Record) {
	doc := &rec.Input
	if r.root == "result" {
		doc = &rec.Result
	}
	if *doc == nil {
		return
	}
	var err error
	switch {
	case len(r.parts) == 0 && r.remove:
		*doc = nil
	case len(r.parts) == 0:
		*doc = r.value
	case r.remove:
		*doc, err = remove(*doc, r.parts)
	default:
		err = upsert(*doc, r.parts, r.value)
	}
	if err != nil {
		return
	}
	if r.remove {
		rec.Erased = append(rec.Erased, r.path)
	} else {
		rec.Masked = append(rec.Masked, r.path)
	}
}

// remove deletes the member at parts under node and returns node (a new slice when an array shrinks).
func remove(node any, parts []string) (any, error) {
	key, rest := parts[0], parts[1:]
	switch t := node.(type) {
	case map[string]any:
		child, ok := t[key]
		if !ok {
			return node, errNoPath
		}
		if len(rest) == 0 {
			delete(t, key)
			return t, nil
		}
		c, err := remove(child, rest)
		t[key] = c
		return t, err
	case []any:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(t) {
			return node, errNoPath
		}
		if len(rest) == 0 {
			return slices.Delete(t, i, i+1), nil
		}
		c, err := remove(t[i], rest)
		t[i] = c
		return t, err
	}
	return node, errNoPath
}

// upsert sets the member at parts under node, creating missing objects on the way, as OPA does.
func upsert(node any, parts []string, value any) error {
	for i, key := range parts {
		last := i == len(parts)-1
		switch t := node.(type) {
		case map[string]any:
			if last {
				t[key] = value
				return nil
			}
			child, ok := t[key]
			if !ok {
				child = map[string]any{}
				t[key] = child
			}
			node = child
		case []any:
			j, err := strconv.Atoi(key)
			if err != nil || j < 0 || j >= len(t) {
				return errNoPath
			}
			if last {
				t[j] = value
				return nil
			}
			node = t[j]
		default:
			return errNoPath
		}
	}
	return nil
}
