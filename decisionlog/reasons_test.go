package decisionlog

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	rast "github.com/open-policy-agent/opa/v1/ast"
)

// The reason codes a record, a deny body or a metric label can carry are documented in one table, the
// "Reason codes" section of README.md. This test finds every reason the code and the policies can
// emit and fails when one is missing from that table: whoever adds a reason documents it there.

// moduleRoot is the repository root, seen from this package.
const moduleRoot = ".."

// notProduct are folders whose codes are not orgauthz's reasons: test tooling, and the Logto
// emulator, whose error codes are Logto's.
var notProduct = []string{"tests", "internal/fakelogto", "internal/envoyclient", "internal/chain", "cmd/demo", "cmd/fakelogto"}

// reasonShape is what a reason code looks like (the sidecar keeps a policy's reason only in this form).
var reasonShape = regexp.MustCompile(`^[a-z][a-z0-9_.:-]{1,63}$`)

// isReasonName reports whether an identifier names a reason: reasonX / ReasonX, reason, code.
func isReasonName(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "reason") || l == "code"
}

// goReasons finds the reasons the Go code of dir's package can emit, by where a string literal sits:
//   - the value of a constant or variable named reason…/Reason…;
//   - an argument for a parameter named reason… or code, of a function or func literal of the package;
//   - a struct field named reason… or code, keyed or by position (structs of the package);
//   - an assignment to a variable or field named reason… or code;
//   - a return value of a function at a result named reason… or code, or at a position that callers
//     in the package assign to a variable so named (`status, code, msg := classify(err)`).
func goReasons(t *testing.T, files []*ast.File) map[string]string {
	found := map[string]string{}
	add := func(e ast.Expr, where string) {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && reasonShape.MatchString(s) {
				found[s] = where
			}
		}
	}
	funcs := map[string][]int{}   // function → parameter indexes that take a reason
	results := map[string][]int{} // function → result indexes that are a reason
	structs := map[string][]int{} // struct type → field indexes that hold a reason
	reasonFields := func(fl *ast.FieldList) []int {
		var idx []int
		i := 0
		for _, f := range fl.List {
			if len(f.Names) == 0 {
				i++
				continue
			}
			for _, n := range f.Names {
				if isReasonName(n.Name) {
					idx = append(idx, i)
				}
				i++
			}
		}
		return idx
	}
	// Pass 1: declarations.
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch d := n.(type) {
			case *ast.FuncDecl:
				funcs[d.Name.Name] = reasonFields(d.Type.Params)
				if d.Type.Results != nil {
					results[d.Name.Name] = append(results[d.Name.Name], reasonFields(d.Type.Results)...)
				}
			case *ast.AssignStmt: // fail := func(status int, code, msg string) {…}
				for i, rhs := range d.Rhs {
					if fl, ok := rhs.(*ast.FuncLit); ok && i < len(d.Lhs) {
						if id, ok := d.Lhs[i].(*ast.Ident); ok {
							funcs[id.Name] = reasonFields(fl.Type.Params)
						}
					}
				}
				// status, code, msg := classify(err): classify's second result is a reason.
				if len(d.Rhs) == 1 && len(d.Lhs) > 1 {
					if call, ok := d.Rhs[0].(*ast.CallExpr); ok {
						if fn, ok := call.Fun.(*ast.Ident); ok {
							for i, l := range d.Lhs {
								if id, ok := l.(*ast.Ident); ok && isReasonName(id.Name) {
									results[fn.Name] = append(results[fn.Name], i)
								}
							}
						}
					}
				}
			case *ast.TypeSpec:
				if st, ok := d.Type.(*ast.StructType); ok {
					structs[d.Name.Name] = reasonFields(st.Fields)
				}
			case *ast.ValueSpec:
				for i, n := range d.Names {
					if isReasonName(n.Name) && i < len(d.Values) {
						add(d.Values[i], "constant "+n.Name)
					}
				}
			}
			return true
		})
	}
	// Pass 2: uses.
	for _, f := range files {
		var stack []ast.Node
		ast.Inspect(f, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			stack = append(stack, n)
			switch e := n.(type) {
			case *ast.CallExpr:
				if fn, ok := e.Fun.(*ast.Ident); ok {
					for _, i := range funcs[fn.Name] {
						if i < len(e.Args) {
							add(e.Args[i], "argument of "+fn.Name)
						}
					}
				}
			case *ast.CompositeLit:
				typ := ""
				switch tt := e.Type.(type) {
				case *ast.Ident:
					typ = tt.Name
				case *ast.SelectorExpr:
					typ = tt.Sel.Name
				}
				for i, el := range e.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && isReasonName(k.Name) {
							add(kv.Value, "field "+k.Name)
						}
					} else if slices.Contains(structs[typ], i) {
						add(el, "field of "+typ)
					}
				}
			case *ast.AssignStmt:
				for i, l := range e.Lhs {
					name := ""
					switch lt := l.(type) {
					case *ast.Ident:
						name = lt.Name
					case *ast.SelectorExpr:
						name = lt.Sel.Name
					}
					if isReasonName(name) && len(e.Lhs) == len(e.Rhs) {
						add(e.Rhs[i], "assignment to "+name)
					}
				}
			case *ast.ReturnStmt:
				if fn := enclosingFunc(stack); fn != "" {
					for _, i := range results[fn] {
						if i < len(e.Results) {
							add(e.Results[i], "result of "+fn)
						}
					}
				}
			}
			return true
		})
	}
	return found
}

// enclosingFunc names the innermost function declaration on the stack ("" inside a func literal,
// whose returns are not its enclosing function's).
func enclosingFunc(stack []ast.Node) string {
	for i := len(stack) - 1; i >= 0; i-- {
		switch f := stack[i].(type) {
		case *ast.FuncLit:
			return ""
		case *ast.FuncDecl:
			return f.Name.Name
		}
	}
	return ""
}

// regoReasons finds the reasons a policy module can return: the string value of a "reason" key in
// any object, and the string argument of a function at a parameter named reason.
func regoReasons(t *testing.T, path string) map[string]string {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rast.ParseModuleWithOpts(path, string(src), rast.ParserOptions{RegoVersion: rast.RegoV1})
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	found := map[string]string{}
	add := func(term *rast.Term, where string) {
		if s, ok := term.Value.(rast.String); ok && reasonShape.MatchString(string(s)) {
			found[string(s)] = where
		}
	}
	reasonArg := map[string]int{} // function → index of its "reason" parameter
	for _, r := range mod.Rules {
		for i, a := range r.Head.Args {
			if v, ok := a.Value.(rast.Var); ok && v == "reason" {
				reasonArg[r.Head.Ref().String()] = i
			}
		}
	}
	key := rast.StringTerm("reason")
	rast.WalkTerms(mod, func(term *rast.Term) bool {
		switch v := term.Value.(type) {
		case rast.Object:
			if r := v.Get(key); r != nil {
				add(r, "\"reason\" of an object")
			}
		case rast.Call:
			if i, ok := reasonArg[v[0].String()]; ok && i+1 < len(v) {
				add(v[i+1], "argument of "+v[0].String())
			}
		}
		return false
	})
	return found
}

// emittedReasons scans the module's Go packages and the policies.
func emittedReasons(t *testing.T) map[string]string {
	t.Helper()
	all := map[string]string{}
	pkgs := map[string][]*ast.File{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(moduleRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(moduleRoot, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || slices.Contains(notProduct, rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go"):
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			pkgs[filepath.Dir(rel)] = append(pkgs[filepath.Dir(rel)], f)
		case strings.HasPrefix(rel, "policies/") && strings.HasSuffix(rel, ".rego") && !strings.HasSuffix(rel, "_test.rego"):
			for r, where := range regoReasons(t, p) {
				all[r] = rel + ": " + where
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, files := range pkgs {
		for r, where := range goReasons(t, files) {
			all[r] = dir + ": " + where
		}
	}
	return all
}

// reasonTable reads the codes of README.md's "Reason codes" table: the backquoted codes of each row's
// first cell, with the row's other cells.
func reasonTable(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Reason codes\n")
	if !ok {
		t.Fatal(`README.md has no "## Reason codes" section`)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	code := regexp.MustCompile("`([^`]+)`")
	table := map[string][]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if !strings.HasPrefix(strings.TrimSpace(line), "|") || len(cells) < 2 {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[0], -1) {
			table[m[1]] = cells[1:]
		}
	}
	return table
}

// Every reason the code or the policies can emit is in README's table, with a status and what to do.
func TestEveryReasonDocumented(t *testing.T) {
	emitted := emittedReasons(t)
	table := reasonTable(t)
	// Sanity: the scan sees each kind of source, so a broken scan cannot pass by finding nothing.
	for _, r := range []string{"invalid_path", "token_expired", "decision_replayed", "missing_scope", "self", "upstream_timeout", "organization_setup_failed", "not_attempted"} {
		if _, ok := emitted[r]; !ok {
			t.Errorf("the scan did not find %q: the scanner no longer sees how reasons are written", r)
		}
	}
	var missing []string
	for r, where := range emitted {
		if _, ok := table[r]; !ok {
			missing = append(missing, r+" ("+where+")")
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("reason %s is not in README.md's \"Reason codes\" table: add a row with its status and what to do", m)
	}
	for code, cells := range table {
		if len(cells) < 3 || strings.TrimSpace(cells[1]) == "" || strings.TrimSpace(cells[len(cells)-1]) == "" {
			t.Errorf("README.md reason %q has no status or no \"what to do\"", code)
		}
	}
	// Reasons other engineers are adding today: documented ahead of the code.
	for _, r := range []string{"body_too_large", "body_required", "m2m_forbidden", "decision_stale", "token_revoked"} {
		if _, ok := table[r]; !ok {
			t.Errorf("README.md lacks %q", r)
		}
	}
}
