package decisionlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// writeAll submits recs to a fresh Logger on a buffer, closes it and returns the lines written.
func writeAll(t *testing.T, opts Options, recs ...*Record) (lines []map[string]any, raw string) {
	t.Helper()
	var buf bytes.Buffer // read only after Close, which waits for the writer
	l := New(&buf, opts)
	for _, r := range recs {
		l.Submit(r)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	raw = buf.String()
	return decodeLines(t, raw), raw
}

func decodeLines(t *testing.T, raw string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(raw))
	sc.Buffer(nil, MaxRecordBytes+1)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// get follows a slash-separated path through decoded JSON.
func get(v any, path string) any {
	for _, k := range strings.Split(strings.Trim(path, "/"), "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// sidecarInput is a policy input as the sidecar builds it: an OPA value.
func sidecarInput(t testing.TB, headers map[string]any, body any) ast.Value {
	t.Helper()
	v, err := ast.InterfaceToValue(map[string]any{
		"request": map[string]any{
			"method": "POST", "path": "/api/organizations/o1/users",
			"segments": []any{"api", "organizations", "o1", "users"},
			"query":    map[string]any{"page": []any{"1"}},
			"host":     "app.example.com", "headers": headers, "body": body,
		},
		"token": map[string]any{
			"kind": "organization", "subject": "u1", "client_id": "app1", "is_app": false,
			"organization_id": "o1", "audience": "urn:logto:organization:o1",
			"scopes": []any{"member:add"}, "issued_at": 1795505128, "expires_at": 1795508728,
			"claims": map[string]any{"sub": "u1", "jti": "j1", "email": "alice@example.com"},
		},
		"source":             map[string]any{"address": "10.0.0.7"},
		"context_extensions": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func denyRecord(t testing.TB) *Record {
	return &Record{
		DecisionID: NewID(), Timestamp: time.Unix(1795505130, 0), Path: "orgauthz/decision",
		Input:  sidecarInput(t, map[string]any{"content-type": "application/json"}, map[string]any{"userIds": []any{"u2"}}),
		Result: map[string]any{"allow": false, "status": 403, "reason": "missing_scope", "required_scopes": []any{"member:add"}},
		Method: "POST", RequestPath: "/api/organizations/o1/users",
		Status: 403, Reason: "missing_scope", RequiredScopes: []string{"member:add"},
		Token:         &Token{Kind: "organization", Subject: "u1", ClientID: "app1", OrganizationID: "o1", Scopes: []string{"org:read"}},
		SourceAddress: "10.0.0.7", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "req-42",
		Bundles: map[string]Bundle{"policies": {Revision: "abc123"}},
		Metrics: &Metrics{Check: 250000, PolicyEval: 90000},
	}
}

// The sidecar's deny carries every field issue 11 asked for, in OPA's shape, one object per line.
func TestRecordShape(t *testing.T) {
	r := denyRecord(t)
	id := r.DecisionID
	lines, raw := writeAll(t, Options{Service: "sidecar", Version: "v1.2.3", Labels: map[string]string{"id": "pod-7"}}, r)
	if len(lines) != 1 || strings.Count(raw, "\n") != 1 {
		t.Fatalf("wrote %q, want exactly one line", raw)
	}
	got := lines[0]
	want := map[string]any{
		"decision_id": id, "timestamp": "2026-11-24T07:25:30Z", "path": "orgauthz/decision",
		"labels/service": "sidecar", "labels/version": "v1.2.3", "labels/id": "pod-7",
		"bundles/policies/revision": "abc123", "metrics/timer_check_ns": 250000.0,
		"method": "POST", "request_path": "/api/organizations/o1/users",
		"allow": false, "status": 403.0, "reason": "missing_scope",
		"token/kind": "organization", "token/subject": "u1", "token/client_id": "app1",
		"token/organization_id": "o1", "source_address": "10.0.0.7",
		"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "request_id": "req-42",
		"input/request/path": "/api/organizations/o1/users", "input/token/kind": "organization",
		"result/reason": "missing_scope",
	}
	for path, w := range want {
		if g := get(got, path); g != w {
			t.Errorf("%s = %#v, want %#v", path, g, w)
		}
	}
	if s, _ := json.Marshal(get(got, "required_scopes")); string(s) != `["member:add"]` {
		t.Errorf("required_scopes = %s, want [\"member:add\"]", s)
	}
	if s, _ := json.Marshal(get(got, "token/scopes")); string(s) != `["org:read"]` {
		t.Errorf("token/scopes = %s, want [\"org:read\"]", s)
	}
	// The verified claims are not kept (personal data; the token field has what an audit needs).
	if get(got, "input/token/claims") != nil || !strings.Contains(raw, `"erased":["/input/token/claims"]`) {
		t.Errorf("input.token.claims kept or not listed as erased: %s", raw)
	}
	if strings.Contains(raw, "alice@example.com") {
		t.Errorf("a claim's personal data reached the record: %s", raw)
	}
}

// mgmtproxy's record of the same request joins on decision_id and says what changed in Logto.
func TestMgmtproxyRecord(t *testing.T) {
	r := &Record{
		DecisionID: "AAECAwQFBgcICQoLDA0ODw", Method: "POST", RequestPath: "/api/organizations",
		Allow: true, Status: 201, Route: "POST /api/organizations",
		Token: &Token{Kind: "global_api", Subject: "u1"},
		Calls: []Call{
			{Method: "POST", Path: "/api/organizations", Status: 201, DurationNS: 1200000},
			{Method: "POST", Path: "/api/organizations/o9/users", Status: 201},
			{Method: "POST", Path: "/api/organizations/o9/users/roles", Status: 201},
		},
		Changes: &Changes{OrganizationID: "o9", Created: true, UserIDs: []string{"u1"}, RoleNames: []string{"admin"}},
		Metrics: &Metrics{Request: 3000000},
	}
	lines, raw := writeAll(t, Options{Service: "mgmtproxy"}, r)
	got := lines[0]
	for path, w := range map[string]any{
		"decision_id": "AAECAwQFBgcICQoLDA0ODw", "labels/service": "mgmtproxy", "status": 201.0,
		"changes/organization_id": "o9", "changes/created": true, "token/subject": "u1",
	} {
		if g := get(got, path); g != w {
			t.Errorf("%s = %#v, want %#v", path, g, w)
		}
	}
	for _, s := range []string{`"logto_calls":[{"method":"POST","path":"/api/organizations","status":201,"duration_ns":1200000}`,
		`"user_ids":["u1"]`, `"role_names":["admin"]`} {
		if !strings.Contains(raw, s) {
			t.Errorf("record lacks %s: %s", s, raw)
		}
	}

	bulk := &Record{DecisionID: NewID(), Status: 200, Changes: &Changes{Items: []Item{
		{Index: 0, Status: 201, ID: "o1"}, {Index: 1, Status: 422, Error: "organization.invalid_name"}}}}
	_, raw = writeAll(t, Options{}, bulk)
	if !strings.Contains(raw, `"items":[{"index":0,"status":201,"id":"o1"},{"index":1,"status":422,"error":"organization.invalid_name"}]`) {
		t.Errorf("bulk items not recorded: %s", raw)
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 22 || requestID(id) != id {
			t.Fatalf("NewID() = %q, want 22 base64url characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

// A client-chosen X-Request-Id is written only when it is a short run of safe characters.
func TestRequestIDBounded(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"req-42", "req-42"},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", "f47ac10b-58cc-4372-a567-0e02b2c3d479"},
		{strings.Repeat("a", 129), ""},
		{"a\"b", ""}, {"a\nb", ""}, {"a b", ""}, {"é", ""},
	} {
		r := &Record{DecisionID: NewID(), RequestID: tc.in}
		lines, _ := writeAll(t, Options{}, r)
		if g, _ := get(lines[0], "request_id").(string); g != tc.want {
			t.Errorf("request_id for %q = %q, want %q", tc.in, g, tc.want)
		}
	}
}

// A record over MaxRecordBytes loses its input, says so, and still records who did what.
func TestOversizeRecordLosesInput(t *testing.T) {
	r := denyRecord(t)
	r.Input = sidecarInput(t, map[string]any{"x-big": strings.Repeat("a", MaxRecordBytes)}, nil)
	lines, raw := writeAll(t, Options{}, r)
	if len(raw) > MaxRecordBytes+1 {
		t.Fatalf("line is %d bytes, over %d", len(raw), MaxRecordBytes)
	}
	if get(lines[0], "input") != nil || get(lines[0], "reason") != "missing_scope" || !strings.Contains(raw, `"erased":["/input"]`) {
		t.Errorf("oversize record = %s, want input erased and the audit fields kept", raw)
	}
}

// blockingWriter stalls every Write until released, like a full disk or a stuck pipe reader.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	n       int
	mu      sync.Mutex
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.mu.Lock()
	w.n += bytes.Count(p, []byte("\n"))
	w.mu.Unlock()
	return len(p), nil
}

// A stuck sink never makes Submit wait: the queue fills, then every further record is dropped and counted.
func TestSlowSinkDropsAndCounts(t *testing.T) {
	const queue, extra = 16, 50
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := New(w, Options{QueueSize: queue})
	l.Submit(denyRecord(t)) // the writer takes it and blocks writing it
	select {
	case <-w.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never wrote")
	}
	start := time.Now()
	for range queue + extra {
		l.Submit(denyRecord(t))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%d Submits took %v with a stuck sink, want no waiting", queue+extra, d)
	}
	if got := l.Dropped(); got != extra {
		t.Errorf("Dropped() = %d, want %d", got, extra)
	}
	if got := counterValue(t, l.dropped.WithLabelValues(dropQueueFull)); got != extra {
		t.Errorf("orgauthz_decision_log_dropped_total{reason=queue_full} = %v, want %d", got, extra)
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if w.n != queue+1 {
		t.Errorf("%d records written, want the %d queued ones", w.n, queue+1)
	}
	if got := counterValue(t, l.written); got != queue+1 {
		t.Errorf("orgauthz_decision_log_records_total = %v, want %d", got, queue+1)
	}
	l.Submit(denyRecord(t))
	if got := counterValue(t, l.dropped.WithLabelValues(dropClosed)); got != 1 {
		t.Errorf("a Submit after Close counted %v as closed, want 1", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteErrorCounted(t *testing.T) {
	l := New(failingWriter{}, Options{})
	for range 3 {
		l.Submit(denyRecord(t))
	}
	l.Close()
	if got := counterValue(t, l.dropped.WithLabelValues(dropWriteError)); got != 3 {
		t.Errorf("write errors counted %v, want 3", got)
	}
}

func TestOff(t *testing.T) {
	l, err := Open(SinkOff, Options{})
	if err != nil || l != nil {
		t.Fatalf("Open(off) = %v, %v; want a nil Logger", l, err)
	}
	l.Submit(denyRecord(t)) // no-ops, no panics
	l.SetMask(nil)
	if l.Enabled() || l.Dropped() != 0 || l.Collectors() != nil || l.Close() != nil {
		t.Error("the off Logger is not inert")
	}
}

func TestCheckSink(t *testing.T) {
	dir := t.TempDir()
	for sink, ok := range map[string]bool{
		"stdout": true, "off": true, filepath.Join(dir, "audit.log"): true,
		"": false, filepath.Join(dir, "missing", "audit.log"): false,
	} {
		if err := CheckSink(sink); (err == nil) != ok {
			t.Errorf("CheckSink(%q) = %v, want ok=%v", sink, err, ok)
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// FILE is appended to (never truncated), created 0600, and reopened after logrotate renames it
// (detected by itself) or removes it and sends SIGHUP.
func TestFileSinkAppendAndRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("{\"earlier\":true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Submit(denyRecord(t))
	waitFor(t, "the first record", func() bool { return countLines(path) == 2 })

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a reopen after rename", func() bool {
		l.Submit(denyRecord(t))
		return countLines(path) > 0
	})
	if countLines(rotated) < 2 {
		t.Errorf("the rotated file lost its lines")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("new audit file mode = %v, want 0600", m)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a reopen after SIGHUP", func() bool {
		l.Submit(denyRecord(t))
		return countLines(path) > 0
	})
	for _, m := range decodeLines(t, mustRead(t, path)) {
		if m["decision_id"] == nil {
			t.Errorf("reopened file holds a line without decision_id: %v", m)
		}
	}
}

// A stream that keeps the queue full does not keep the writer from its other events: a renamed
// file is still reopened, and every record is either written or counted as dropped.
func TestRotateUnderFullQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	in := sidecarInput(t, map[string]any{"content-type": "application/json"}, nil) // read, never changed
	var submitted atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			l.Submit(&Record{DecisionID: NewID(), Path: "orgauthz/decision", Input: in, Status: 403, Reason: "missing_scope"})
			submitted.Add(1)
		}
	})
	waitFor(t, "the first records", func() bool { return countLines(path) > 0 })
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a reopen after rename while the queue is full", func() bool { return countLines(path) > 0 })
	close(stop)
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() == 0 {
		t.Error("the queue never filled: the test did not test a full queue")
	}
	if got, want := int64(countLines(path)+countLines(rotated))+int64(l.Dropped()), submitted.Load(); got != want {
		t.Errorf("written %d + dropped %d = %d, submitted %d", countLines(path)+countLines(rotated), l.Dropped(), got, want)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Close writes everything queued before it returns.
func TestCloseDrains(t *testing.T) {
	const n = 500
	recs := make([]*Record, n)
	for i := range recs {
		recs[i] = denyRecord(t)
	}
	lines, _ := writeAll(t, Options{QueueSize: n}, recs...)
	if len(lines) != n {
		t.Errorf("%d lines after Close, want %d", len(lines), n)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestScrubbedJSONIsEncodingJSON: the writer's own JSON for input and result reads back exactly as
// encoding/json's rendering of the same values, for hostile strings, numbers, sets and nesting.
func TestScrubbedJSONIsEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\x7f", "nl\n\r\t", "<html>&amp;",
		"bad utf8 \xff\xfe", "sep \u2028\u2029", "emoji 🦀", "ok \ufffd", strings.Repeat("x", 3000)}
	var terms []*ast.Term
	for _, s := range strs {
		terms = append(terms, ast.StringTerm(s))
	}
	v := ast.NewObject(
		ast.Item(ast.StringTerm("strings"), ast.ArrayTerm(terms...)),
		ast.Item(ast.StringTerm("numbers"), ast.ArrayTerm(ast.IntNumberTerm(-3), ast.NumberTerm("1.5e300"), ast.NumberTerm("0.1"))),
		ast.Item(ast.StringTerm("set"), ast.SetTerm(ast.StringTerm("b"), ast.StringTerm("a"))),
		ast.Item(ast.StringTerm("nested"), ast.ObjectTerm(ast.Item(ast.StringTerm("k \"1\""), ast.ArrayTerm(ast.NullTerm(), ast.BooleanTerm(true))))),
		ast.Item(ast.StringTerm("keys\x01\u2028"), ast.ObjectTerm()),
	)
	for _, doc := range []any{v, map[string]any{"s": strs, "n": json.Number("42"), "m": map[string]string{"a": "b\x00"}}} {
		var s scrubber
		got := s.appendJSON(nil, "/result", doc)
		if !json.Valid(got) {
			t.Fatalf("not JSON: %q", got)
		}
		want := doc
		if av, ok := doc.(ast.Value); ok {
			want, _ = ast.JSON(av)
		}
		wantJSON, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(wantJSON, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("scrubbed JSON reads back as\n%v\nencoding/json's as\n%v", a, b)
		}
		if len(s.erased)+len(s.masked) != 0 {
			t.Errorf("nothing credential-shaped, yet erased %v, masked %v", s.erased, s.masked)
		}
	}
}
