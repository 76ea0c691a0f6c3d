package policy

import (
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// routes500 is the generated 500-row route table of tests/bench.
const routes500 = "../../../tests/bench/testdata/routes500.json"

// policyWithRoutes is the shipped policy directory, its data.json replaced
// by dataFile when that is not "".
func policyWithRoutes(t testing.TB, dataFile string) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(policiesDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(policiesDir, p)
		if dataFile != "" && filepath.Base(p) == "data.json" {
			p = dataFile
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// regoMatcher prepares routes.rego's own matcher over dir.
func regoMatcher(t testing.TB, dir string) (*prepared, func(method string, segments []string) ast.Value) {
	t.Helper()
	snap, err := readDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := prepare(t.Context(), dir, snap, "data.orgauthz._rego_match")
	if err != nil {
		t.Fatal(err)
	}
	return p, func(method string, segments []string) ast.Value {
		rs, err := p.query.Eval(t.Context(), rego.EvalParsedInput(requestInput(method, segments)))
		if err != nil {
			t.Fatalf("%s %q: %v", method, segments, err)
		}
		if len(rs) == 0 {
			return ast.Null{}
		}
		return rs[0].Expressions[0].Value.(ast.Value)
	}
}

func requestInput(method string, segments []string) ast.Object {
	terms := make([]*ast.Term, len(segments))
	for i, s := range segments {
		terms[i] = ast.StringTerm(s)
	}
	return ast.NewObject(ast.Item(keyRequest, ast.ObjectTerm(
		ast.Item(keyMethod, ast.StringTerm(method)),
		ast.Item(keySegments, ast.ArrayTerm(terms...)),
	)))
}

var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get"}

// nearMisses are request paths derived from a template: a fitting one and
// the usual ways of almost fitting it.
func nearMisses(rng *rand.Rand, path string) [][]string {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	fill := func(f func(i int, part string) string) []string {
		out := make([]string, len(parts))
		for i, part := range parts {
			out[i] = f(i, part)
		}
		return out
	}
	id := func(n int) string {
		const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	fitting := fill(func(_ int, part string) string {
		if isPlaceholder(part) {
			return id(1 + rng.IntN(maxPlaceholderLen))
		}
		return part
	})
	with := func(i int, seg string) []string {
		out := append([]string(nil), fitting...)
		out[i] = seg
		return out
	}
	paths := [][]string{
		fitting,
		append(append([]string(nil), fitting...), "extra"),    // extra segment
		append([]string{"v1"}, fitting...),                    // look-alike prefix
		fitting[:len(fitting)-1],                              // one segment short
		fill(func(_ int, part string) string { return part }), // every placeholder spelt out
	}
	for i, part := range parts {
		if isPlaceholder(part) {
			paths = append(paths,
				with(i, part),                            // one placeholder spelt out
				with(i, strings.ToUpper(fitting[i])+"A"), // case
				with(i, id(maxPlaceholderLen+1)),         // too long
				with(i, id(maxPlaceholderLen)),           // longest
				with(i, fitting[i]+"-x"),                 // punctuation
				with(i, ""),                              // empty
			)
		} else {
			paths = append(paths,
				with(i, strings.ToUpper(part)), // case
				with(i, part+"s"),              // look-alike suffix
				with(i, strings.TrimSuffix(part, "s")),
				with(i, id(8)), // a literal given an id
			)
		}
	}
	return paths
}

// TestRouteIndexMatchesRego: the Go index and routes.rego's matcher give the
// same match, index and parameters, on every row of the shipped and of the
// 500-row table, on fitting and near-miss paths. The shipped table is tried
// with every method; the 500-row one (slow through Rego) with the row's own
// method, on the fitting path of every row and the near misses of every
// tenth.
func TestRouteIndexMatchesRego(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		allMethods bool
	}{{"default", "", true}, {"500 rows", routes500, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := policyWithRoutes(t, tc.data)
			p, regoMatch := regoMatcher(t, dir)
			rows := routeRows(t, dir)
			rng := rand.New(rand.NewPCG(1, 2))
			n, matched := 0, 0
			for i, row := range rows {
				for k, segments := range nearMisses(rng, row.Path) {
					try := methods
					if !tc.allMethods {
						if k > 0 && i%10 != 0 {
							break
						}
						try = []string{row.Method}
					}
					for _, method := range try {
						want := regoMatch(method, segments)
						got := ast.Value(ast.Null{})
						if rr := p.routes.match(method, segments); rr != nil {
							got = rr.routeValue(segments).Value
							matched++
						}
						if got.Compare(want) != 0 {
							t.Errorf("%s /%s: Go index %v, Rego %v", method, strings.Join(segments, "/"), got, want)
						}
						n++
					}
				}
			}
			if matched < len(rows) {
				t.Errorf("only %d of %d inputs matched a row, want at least one per row (%d)", matched, n, len(rows))
			}
			t.Logf("%d inputs, %d matched", n, matched)
		})
	}
}

type tableRow struct{ Method, Path string }

// routeRows lists the methods and path templates of dir's route table.
func routeRows(t testing.TB, dir string) []tableRow {
	t.Helper()
	snap, err := readDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Routes []tableRow }
	if err := json.Unmarshal(snap.files["orgauthz/data.json"].Data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Routes) == 0 {
		t.Fatalf("%s: no routes", dir)
	}
	return doc.Routes
}

var corpusSize = flag.Int("corpus", 3000, "inputs of TestDecisionPathsAgree (100000 for the full corpus)")

// TestDecisionPathsAgree: the decision with the route matched in Go equals
// the decision with the route matched in Rego (the old path), over a
// generated corpus of requests, tokens and bodies on the shipped table.
// `go test -run DecisionPathsAgree -corpus 100000` runs the full corpus.
func TestDecisionPathsAgree(t *testing.T) {
	dir := policyWithRoutes(t, "")
	newPath, oldPath := New(dir, Options{}), New(dir, Options{RegoRoutes: true})
	for _, e := range []*Engine{newPath, oldPath} {
		if err := e.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	rows := routeRows(t, dir)
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	kinds := []string{"organization", "organization_api", "global_api", "admin", "other"}
	scopes := []string{"org:create", "org:read", "org:update", "org:delete", "member:read", "member:add",
		"member:remove", "member:role", "member:role:admin", "admin:org:read", "admin:org:write", "ORG:READ"}
	ids := []string{"o1", "o2", "u1", "u2", "r1"}
	bodies := []string{`null`, `{}`, `{"name": "n"}`, `{"name": "n", "tenant": "x"}`, `[1]`, `"s"`,
		`{"organizationRoleNames": ["member"]}`, `{"organizationRoleNames": ["admin"]}`, `{"organizationRoleNames": "member"}`}
	stats := map[string]int{}
	for n := range *corpusSize {
		row := rows[rng.IntN(len(rows))]
		misses := nearMisses(rng, row.Path)
		segments := misses[0]
		if rng.IntN(4) == 0 {
			segments = misses[rng.IntN(len(misses))]
		}
		for i, part := range strings.Split(row.Path[1:], "/") {
			if isPlaceholder(part) && i < len(segments) && segments[i] != part && rng.IntN(2) == 0 {
				segments[i] = pick(ids) // ids that may equal the caller or its organization
			}
		}
		method := row.Method
		if rng.IntN(8) == 0 {
			method = pick(methods)
		}
		var tok ast.Value
		if rng.IntN(20) != 0 {
			var held []string
			for range rng.IntN(4) {
				held = append(held, pick(scopes))
			}
			kind, org := pick(kinds), pick(ids)
			tok = token(kind, "aud", org, strings.Join(held, " "))
			tok.(ast.Object).Insert(ast.StringTerm("subject"), ast.StringTerm(pick(ids)))
			tok.(ast.Object).Insert(ast.StringTerm("is_app"), ast.BooleanTerm(rng.IntN(4) == 0))
		}
		input := testInput(method, "/"+strings.Join(segments, "/"), tok)
		body := ast.MustParseTerm(pick(bodies))
		input.(ast.Object).Get(keyRequest).Value.(ast.Object).Insert(ast.StringTerm("body"), body)

		got, gotErr := newPath.Eval(t.Context(), input.(ast.Object).Copy())
		want, wantErr := oldPath.Eval(t.Context(), input)
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("input %d %v:\nGo route:   %+v, %v\nRego route: %+v, %v", n, input, got, gotErr, want, wantErr)
		}
		stats[want.Reason]++
	}
	t.Logf("%d inputs, decisions by reason: %v", *corpusSize, stats)
	if len(stats) < 10 {
		t.Errorf("the corpus reached only %d reasons, want at least 10: %v", len(stats), stats)
	}
}
