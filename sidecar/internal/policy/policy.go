// Package policy evaluates the authorization policy: Rego modules and their
// data read from a directory, compiled strictly, prepared once and swapped
// atomically when the directory changes.
//
// A policy may not call builtins that reach the network or expose the
// process (http.send, net.lookup_ip_addr, opa.runtime): it runs on every
// request, and a security team's policy must not call out. A policy that
// uses them fails to load, exactly as a syntax error does.
package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
)

// DefaultQuery is the document the sidecar asks for.
const DefaultQuery = "data.orgauthz.decision"

// ErrNotReady is returned by Eval before a policy has loaded.
var ErrNotReady = errors.New("policy: no policy loaded")

// Options tune an Engine. The zero value is ready to use.
type Options struct {
	// Query is the data reference evaluated for each request. Default
	// DefaultQuery.
	Query string
	// Now is the evaluation time seen by time builtins. Default time.Now.
	Now func() time.Time
	// RegoRoutes leaves route matching to the policy's Rego (no
	// input.request.route): the old decision path, for the differential
	// tests and for measuring the index's gain (the environment variable
	// ORGAUTHZ_BENCH_REGO_ROUTES=1 sets it too, for tests/bench).
	RegoRoutes bool
}

// Stats describe the engine's reload history.
type Stats struct {
	Reloads        uint64    // successful loads that installed a new policy
	ReloadFailures uint64    // rejected loads (an unchanged broken tree counts once)
	LastReload     time.Time // when the current policy was installed
	Revision       string    // hex SHA-256 of the loaded files' names and contents
}

// Engine holds the current prepared policy. It is safe for concurrent use:
// Eval runs lock-free on the policy installed when it starts, while Load and
// Watch replace it.
type Engine struct {
	dir        string
	query      string
	now        func() time.Time
	regoRoutes bool

	current atomic.Pointer[prepared]

	loadMu    sync.Mutex // serialises loads
	failedRev string     // revision of the last rejected tree, guarded by loadMu
	failedErr error      // its error, guarded by loadMu
	statsMu   sync.Mutex
	stats     Stats
}

// prepared is one loaded policy.
type prepared struct {
	query    rego.PreparedEvalQuery
	routes   *routeIndex
	revision string
	mask     *decisionlog.Mask             // the directory's system.log.mask, nil when none
	bundles  map[string]decisionlog.Bundle // the OPA bundles it came from (LoadStore); nil for a directory
}

// New returns an Engine for the policy directory dir. It loads nothing:
// call Load (and Watch to follow changes).
func New(dir string, opts Options) *Engine {
	e := &Engine{dir: dir, query: opts.Query, now: opts.Now,
		regoRoutes: opts.RegoRoutes || os.Getenv("ORGAUTHZ_BENCH_REGO_ROUTES") == "1"}
	if e.query == "" {
		e.query = DefaultQuery
	}
	if e.now == nil {
		e.now = time.Now
	}
	return e
}

// Ready reports whether a policy is loaded.
func (e *Engine) Ready() bool { return e.current.Load() != nil }

// Bundles names the OPA bundles (name → manifest revision) the serving policy came from
// (LoadStore); nil for a policy directory or before a policy loads.
func (e *Engine) Bundles() map[string]decisionlog.Bundle {
	if p := e.current.Load(); p != nil {
		return p.bundles
	}
	return nil
}

// Stats returns a snapshot of the reload counters.
func (e *Engine) Stats() Stats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	return e.stats
}

// Load reads the directory (recursively: *.rego except *_test.rego, and
// data.json / data.yaml, whose directory names their place under data),
// compiles it strictly and prepares the query. On success the new policy
// replaces the old one atomically; on failure the last good policy keeps
// serving and the error is returned.
func (e *Engine) Load(ctx context.Context) error {
	_, err := e.load(ctx)
	return err
}

// load is Load, also reporting whether the outcome changed: a tree identical
// to the serving one (or to the last rejected one) is not compiled again.
func (e *Engine) load(ctx context.Context) (changed bool, err error) {
	return e.install(ctx, e.dir, func() (*snapshot, error) { return readDir(e.dir) })
}

// install reads a snapshot with read (under loadMu, so loads apply in order), compiles it as
// the policy from source and installs it; the last good policy keeps serving when it fails.
func (e *Engine) install(ctx context.Context, source string, read func() (*snapshot, error)) (changed bool, err error) {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()

	snap, err := read()
	if err != nil {
		return true, e.reject("", err)
	}
	if cur := e.current.Load(); cur != nil && cur.revision == snap.revision {
		// Back to the serving files after a rejected change: nothing to
		// compile, but the outcome changed.
		recovered := e.failedErr != nil
		e.failedErr, e.failedRev = nil, ""
		return recovered, nil
	}
	if e.failedErr != nil && e.failedRev == snap.revision {
		return false, e.failedErr
	}
	p, err := prepare(ctx, source, snap, e.query)
	if err != nil {
		return true, e.reject(snap.revision, err)
	}
	if e.regoRoutes {
		p.routes = nil
	}
	e.failedErr, e.failedRev = nil, ""
	e.current.Store(p)
	e.statsMu.Lock()
	e.stats.Reloads++
	e.stats.LastReload = time.Now()
	e.stats.Revision = snap.revision
	e.statsMu.Unlock()
	return true, nil
}

// reject records a failed load of the tree with revision rev (loadMu held).
func (e *Engine) reject(rev string, err error) error {
	e.failedRev, e.failedErr = rev, err
	e.statsMu.Lock()
	e.stats.ReloadFailures++
	e.statsMu.Unlock()
	return err
}

// Check reads and compiles the policy in dir as Load does, without an
// Engine: for `sidecar --check` and CI. It returns the policy's route table,
// which --check compares with mgmtproxy's (decision.RouteDrift).
func Check(ctx context.Context, dir string) ([]decision.Route, error) {
	snap, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	p, err := prepare(ctx, dir, snap, DefaultQuery)
	if err != nil {
		return nil, err
	}
	return p.routes.table, nil
}

// prepare compiles the snapshot of dir, builds its route index and prepares
// query against it.
func prepare(ctx context.Context, dir string, snap *snapshot, query string) (*prepared, error) {
	ref, err := ast.ParseRef(query)
	if err != nil || len(ref) < 2 || !ref.HasPrefix(ast.DefaultRootRef) {
		return nil, fmt.Errorf("policy: query %q is not a reference under data", query)
	}
	caps := capabilities()
	res, err := loader.NewFileLoader().
		WithFS(snap.files).
		WithRegoVersion(ast.RegoV1).
		WithCapabilities(caps).
		WithProcessAnnotation(true).
		Filtered([]string{"."}, nil)
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	if err := checkDataObjects(snap.files, res.Documents); err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	routes, err := buildRouteIndex(res.Documents)
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	compiler := ast.NewCompiler().
		WithStrict(true).
		WithCapabilities(caps).
		WithEnablePrintStatements(false)
	compiler.Compile(res.ParsedModules())
	if compiler.Failed() {
		return nil, fmt.Errorf("policy: compile %s: %w%s", dir, compiler.Errors, deniedHint(compiler.Errors))
	}
	if len(compiler.GetRules(ref)) == 0 {
		return nil, fmt.Errorf("policy: compile %s: no rule defines %s", dir, query)
	}
	// Data read as AST values: no per-request conversion of the route table.
	store := inmem.NewFromObjectWithOpts(res.Documents,
		inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(query),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.Capabilities(caps),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Strict(true),
		rego.StrictBuiltinErrors(true),
		rego.GenerateJSON(keepValue),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare %s: %w", query, err)
	}
	// The audit mask is compiled with the policy and swapped with it: a mask that does not prepare
	// rejects the load, as a policy error does.
	mask, err := decisionlog.NewMask(ctx, compiler, store)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &prepared{query: pq, routes: routes, revision: snap.revision, mask: mask, bundles: snap.bundles}, nil
}

// keepValue hands results back as AST values: Eval reads the decision
// straight from them instead of converting to Go maps first.
func keepValue(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

// deniedBuiltins reach outside the process or expose it.
var deniedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}

// deniedHint explains an "undefined function" error for a denied builtin.
func deniedHint(errs ast.Errors) string {
	for _, e := range errs {
		for _, name := range deniedBuiltins {
			if e.Code == ast.TypeErr && strings.HasSuffix(e.Message, "undefined function "+name) {
				return fmt.Sprintf(" (%s is not allowed in orgauthz policies: they run on every request and must not call out)", name)
			}
		}
	}
	return ""
}

// capabilities are this OPA version's, minus deniedBuiltins and with no
// network hosts allowed.
var capabilities = sync.OnceValue(func() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
		return slices.Contains(deniedBuiltins, b.Name)
	})
	caps.AllowNet = []string{}
	return caps
})

// Eval evaluates the query for input and returns the policy's decision. It
// sets input.request.route (see routes.go) when input has a request. Any
// failure — no policy, an evaluation error, an undefined, conflicting or
// malformed result — is an error, never a Decision.
func (e *Engine) Eval(ctx context.Context, input ast.Value) (Decision, error) {
	p := e.current.Load()
	if p == nil {
		return Decision{}, ErrNotReady
	}
	d, _, err := e.eval(ctx, p, input, nil)
	return d, err
}

// eval is Eval on the policy p, traced when tracer is not nil (Explain); it also returns the
// decision document as the policy gave it.
func (e *Engine) eval(ctx context.Context, p *prepared, input ast.Value, tracer topdown.QueryTracer) (d Decision, v ast.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, v, err = Decision{}, nil, fmt.Errorf("policy: evaluation panicked: %v", r)
		}
	}()
	if p.routes != nil {
		p.routes.withRoute(input)
	}
	// OPA would start a goroutine per evaluation to watch ctx; an AfterFunc
	// cancels the same way without one. Metrics nobody reads are not kept.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	opts := []rego.EvalOption{rego.EvalParsedInput(input), rego.EvalTime(e.now()),
		rego.EvalExternalCancel(cancel), rego.EvalMetrics(metrics.NoOp())}
	if tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(tracer))
	}
	rs, err := p.query.Eval(ctx, opts...)
	if err != nil {
		return Decision{}, nil, fmt.Errorf("policy: eval: %w", err)
	}
	switch len(rs) {
	case 0:
		return Decision{}, nil, fmt.Errorf("policy: %s is undefined", e.query)
	case 1:
	default:
		return Decision{}, nil, fmt.Errorf("policy: %s has %d results", e.query, len(rs))
	}
	if len(rs[0].Expressions) != 1 {
		return Decision{}, nil, fmt.Errorf("policy: %s has %d expressions", e.query, len(rs[0].Expressions))
	}
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return Decision{}, nil, fmt.Errorf("policy: %s: unexpected result type %T", e.query, rs[0].Expressions[0].Value)
	}
	d, err = parseDecision(v)
	if err != nil {
		return Decision{}, nil, fmt.Errorf("policy: %s: %w", e.query, err)
	}
	d.Revision, d.Mask, d.Bundles = p.revision, p.mask, p.bundles
	return d, v, nil
}
