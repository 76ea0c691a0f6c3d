package mgmtproxy

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
	"github.com/orgauthz/orgauthz/internal/testkit"
)

// seen is one request that reached Logto, as the spy in front of the emulator saw it.
type seen struct {
	method, target string
	header         http.Header
	body           string
}

// env is a Logto emulator behind a recording spy, a Proxy pointed at the spy, and the Proxy served on
// a real loopback socket.
type env struct {
	logto    *fakelogto.Server
	proxy    *Proxy
	url      string
	signer   *decision.Signer
	logs     *testkit.Buffer
	secret   string
	appID    string
	user     string // a user of the tenant, member of org with role admin
	org      string
	failNext func(r *http.Request) bool // the spy answers 500 to requests it returns true for
	// intercept, when set, answers in Logto's place every request it returns true for: a Logto
	// behaviour the emulator does not offer (a token without scope, a 403 auth.forbidden).
	intercept func(w http.ResponseWriter, r *http.Request) bool

	auditPath string // the --decision-log file

	mu        sync.Mutex
	seen      []seen
	decisions []string // every decision e.sign made
}

const testSecret = "s3cret-m2m-value-never-logged"

func newEnv(t testing.TB, configure ...func(*Config)) *env {
	t.Helper()
	logto, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatalf("fakelogto.New: %v", err)
	}
	if err := logto.Start(); err != nil {
		t.Fatalf("fakelogto.Start: %v", err)
	}
	t.Cleanup(func() { logto.Close() })

	e := &env{logto: logto, logs: &testkit.Buffer{}, secret: testSecret}
	e.appID = logto.AddM2MApp("", testSecret)
	logto.AddOrgRole("admin", "org:read")
	logto.AddOrgRole("member")
	e.user = logto.AddUser("", "alice", fakelogto.WithName("Alice"), fakelogto.WithEmail("alice@example.com"))
	e.org = logto.AddOrganization("", "Acme")
	logto.AddMember(e.org, e.user, "admin")

	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		e.mu.Lock()
		e.seen = append(e.seen, seen{r.Method, r.RequestURI, r.Header.Clone(), string(body)})
		fail, intercept := e.failNext, e.intercept
		e.mu.Unlock()
		if fail != nil && fail(r) {
			http.Error(w, `{"code":"unknown","message":"spy failure"}`, http.StatusInternalServerError)
			return
		}
		if intercept != nil && intercept(w, r) {
			return
		}
		logto.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(spy.Close)

	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.signer = decision.NewSigner(priv, 10*time.Second)
	pubPath := writePublicKey(t, dir, "decision.pub", pub)

	cfg := DefaultConfig()
	cfg.LogtoEndpoint = spy.URL
	cfg.M2MAppID = e.appID
	cfg.M2MAppSecretFile = filepath.Join(dir, "secret")
	if err := os.WriteFile(cfg.M2MAppSecretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.DecisionPublicKeys = []string{pubPath}
	cfg.BulkRate = "1000/1s"
	e.auditPath = filepath.Join(dir, "audit.jsonl")
	cfg.DecisionLog = e.auditPath
	for _, f := range configure {
		f(&cfg)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	settings, err := cfg.Validate()
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	e.proxy, err = New(t.Context(), settings, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(e.proxy)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	t.Cleanup(func() {
		// Whatever a test did, neither the secret, an M2M token nor a decision may be in the log or
		// the audit stream.
		if err := e.proxy.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		audit, _ := os.ReadFile(e.auditPath)
		for name, out := range map[string]string{"log": e.logs.String(), "audit stream": string(audit)} {
			if strings.Contains(out, testSecret) {
				t.Errorf("%s contains the M2M secret", name)
			}
			for _, tok := range e.bearers() {
				if strings.Contains(out, tok) {
					t.Errorf("%s contains an M2M token", name)
				}
			}
			e.mu.Lock()
			for _, d := range e.decisions {
				if strings.Contains(out, d) || strings.Contains(out, d[strings.LastIndex(d, ".")+1:]) {
					t.Errorf("%s contains a decision or its signature", name)
				}
			}
			e.mu.Unlock()
		}
	})
	return e
}

func writePublicKey(t testing.TB, dir, name string, pub ed25519.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// setIntercept makes f answer in Logto's place (env.intercept).
func (e *env) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.intercept = f
}

// bearers returns every bearer token the spy saw going to Logto.
func (e *env) bearers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, s := range e.seen {
		if b, ok := strings.CutPrefix(s.header.Get("Authorization"), "Bearer "); ok && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// management returns the requests that reached the Management API.
func (e *env) management() []seen {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []seen
	for _, s := range e.seen {
		if strings.HasPrefix(s.target, "/api/") {
			out = append(out, s)
		}
	}
	return out
}

// claims returns a decision for an admin, bound to method, path and route.
func adminClaims(method, path, route string) decision.Claims {
	return decision.Claims{Method: method, Path: path, Route: route, Kind: "admin", Subject: "superadmin1"}
}

func (e *env) sign(t *testing.T, c decision.Claims) string {
	t.Helper()
	tok, err := e.signer.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	e.mu.Lock()
	e.decisions = append(e.decisions, tok)
	e.mu.Unlock()
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response body %q: %v", r.body, err)
	}
}

// do sends method target with body and the given decision header ("" for none) and headers.
func (e *env) do(t *testing.T, method, target, body, dec string, headers ...string) *response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if dec != "" {
		req.Header.Set(decision.Header, dec)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &response{resp.StatusCode, resp.Header, b}
}

// allowed sends a request with a fresh admin decision for it.
func (e *env) allowed(t *testing.T, method, path, route, body string) *response {
	t.Helper()
	return e.do(t, method, path, body, e.sign(t, adminClaims(method, strings.SplitN(path, "?", 2)[0], route)))
}

// raw sends a request target byte for byte over a new connection, bypassing Go's client URL handling.
func (e *env) raw(t *testing.T, method, target, dec string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: mgmtproxy\r\n%s: %s\r\nConnection: close\r\n\r\n", method, target, decision.Header, dec)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("raw %s %q: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestForwardPassesLogtoAnswerAndCleansRequest(t *testing.T) {
	e := newEnv(t)
	path := "/api/organizations/" + e.org
	route := "GET /api/organizations/{orgId}"
	dec := e.sign(t, adminClaims("GET", path, route))
	resp := e.do(t, "GET", path+"?page=1&evil=1&q=acme&page_size=5", "", dec,
		"Authorization", "Bearer user-token", "Cookie", "session=abc", "X-Orgauthz-Subject", "root",
		"X-Forwarded-For", "10.0.0.1", "Forwarded", "for=1.2.3.4", "X-Http-Method-Override", "DELETE",
		"Idempotency-Key", "k1", "Accept-Language", "de")
	if resp.status != http.StatusOK {
		t.Fatalf("GET %s status = %d (%s), want 200", path, resp.status, resp.body)
	}
	var org map[string]any
	resp.json(t, &org)
	if org["id"] != e.org || org["name"] != "Acme" {
		t.Errorf("GET %s body = %s, want organization %s", path, resp.body, e.org)
	}
	mgmt := e.management()
	if len(mgmt) != 1 {
		t.Fatalf("Management API calls = %d, want 1", len(mgmt))
	}
	got := mgmt[0]
	// This operation documents no query parameters: all are dropped, the path is exactly the approved one.
	if got.target != path {
		t.Errorf("Logto got target %q, want %q", got.target, path)
	}
	for _, h := range []string{"Cookie", "X-Orgauthz-Subject", "X-Orgauthz-Decision", "X-Forwarded-For", "Forwarded", "X-Http-Method-Override", "Idempotency-Key"} {
		if v := got.header.Values(h); len(v) > 0 {
			t.Errorf("Logto got header %s: %q, want none", h, v)
		}
	}
	if a := got.header.Values("Authorization"); len(a) != 1 || a[0] == "Bearer user-token" || !strings.HasPrefix(a[0], "Bearer ") {
		t.Errorf("Logto got Authorization %q, want exactly the M2M bearer", a)
	}
	if got.header.Get("Accept-Language") != "de" {
		t.Errorf("Logto got Accept-Language %q, want de", got.header.Get("Accept-Language"))
	}
	for _, b := range e.bearers() {
		if bytes.Contains(resp.body, []byte(b)) || strings.Contains(fmt.Sprint(resp.header), b) {
			t.Error("the response carries the M2M token")
		}
	}
}

// TestForwardKeepsDocumentedQuery: each operation passes exactly the query parameters of Logto's API
// reference that mgmtproxy allows (operations.go), first value only, and drops the rest.
func TestForwardKeepsDocumentedQuery(t *testing.T) {
	e := newEnv(t)
	org, user := "/api/organizations/"+e.org, e.user
	const all = "?page=1&page_size=1&q=acme&includeSecrets=1&page=9&organizationRoleId=r1&showFeatured=true"
	for _, tc := range []struct {
		method, path, route, want string
	}{
		{"GET", "/api/organizations", "GET /api/organizations", "?page=1&page_size=1&q=acme"},
		// q on the member listing would search fields the listing reduction removes: dropped.
		{"GET", org + "/users", "GET /api/organizations/{orgId}/users", "?page=1&page_size=1"},
		{"GET", org + "/users/" + user + "/roles", "GET /api/organizations/{orgId}/users/{userId}/roles", "?page=1&page_size=1"},
		{"GET", org, "GET /api/organizations/{orgId}", ""},
		{"GET", "/api/users/" + user + "/organizations", "GET /api/users/{userId}/organizations", ""},
		{"DELETE", org + "/users/nosuchuser", "DELETE /api/organizations/{orgId}/users/{userId}", ""},
	} {
		t.Run(tc.route, func(t *testing.T) {
			e.mu.Lock()
			e.seen = nil
			e.mu.Unlock()
			resp := e.allowed(t, tc.method, tc.path+all, tc.route, "")
			if resp.status >= 500 {
				t.Fatalf("status = %d (%s)", resp.status, resp.body)
			}
			mgmt := e.management()
			if len(mgmt) != 1 {
				t.Fatalf("Management API calls = %d, want 1", len(mgmt))
			}
			if want := tc.path + tc.want; mgmt[0].target != want {
				t.Errorf("Logto got target %q, want %q", mgmt[0].target, want)
			}
		})
	}
}

// TestMemberRolesPaginated: Logto paginates a member's roles (logto-real/more/direct/004: Total-Number,
// a Link to its own host without /api). page and page_size reach it; its answer comes back with the
// Link under the public /api path. (The emulator does not paginate this route: the answer is the real one.)
func TestMemberRolesPaginated(t *testing.T) {
	e := newEnv(t)
	path := "/api/organizations/" + e.org + "/users/" + e.user + "/roles"
	logtoPath := strings.TrimPrefix(path, "/api")
	e.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path {
			return false
		}
		q := "?" + r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Total-Number", "2")
		w.Header().Set("Link", `<http://`+r.Host+logtoPath+`?page=1&page_size=1>; rel="first", <http://`+r.Host+logtoPath+`?page=2&page_size=1>; rel="last", <http://`+r.Host+logtoPath+`?page=2&page_size=1>; rel="next"`)
		if q != "?page=1&page_size=1" {
			w.Header().Del("Link")
		}
		fmt.Fprint(w, `[{"tenantId":"default","id":"626j8xkvdg1tk9ho5f0ck","name":"owner","description":"owner","type":"User"}]`)
		return true
	})
	resp := e.allowed(t, "GET", path+"?page=1&page_size=1", "GET /api/organizations/{orgId}/users/{userId}/roles", "")
	if resp.status != http.StatusOK {
		t.Fatalf("roles status = %d (%s), want 200", resp.status, resp.body)
	}
	if resp.header.Get("Total-Number") != "2" {
		t.Errorf("Total-Number = %q, want Logto's 2", resp.header.Get("Total-Number"))
	}
	want := `<` + path + `?page=1&page_size=1>; rel="first", <` + path + `?page=2&page_size=1>; rel="last", <` + path + `?page=2&page_size=1>; rel="next"`
	if link := resp.header.Get("Link"); link != want {
		t.Errorf("Link = %q, want %q", link, want)
	}
}

func TestLinkRewritten(t *testing.T) {
	e := newEnv(t)
	e.logto.AddOrganization("", "Beta")
	e.logto.AddOrganization("", "Gamma")
	resp := e.allowed(t, "GET", "/api/organizations?page=2&page_size=1", "GET /api/organizations", "")
	if resp.status != http.StatusOK {
		t.Fatalf("list status = %d (%s), want 200", resp.status, resp.body)
	}
	link := resp.header.Get("Link")
	want := `</api/organizations?page=1&page_size=1>; rel="first", </api/organizations?page=3&page_size=1>; rel="last", </api/organizations?page=1&page_size=1>; rel="prev", </api/organizations?page=3&page_size=1>; rel="next"`
	if link != want {
		t.Errorf("Link = %q\nwant %q", link, want)
	}
	if resp.header.Get("Total-Number") != "3" {
		t.Errorf("Total-Number = %q, want 3", resp.header.Get("Total-Number"))
	}
}

func TestRewriteLink(t *testing.T) {
	base := mustParse(t, "http://127.0.0.1:3001")
	prefixed := mustParse(t, "https://auth.example.com/logto")
	for _, tc := range []struct{ in, want string }{
		{`<http://127.0.0.1:3001/organizations?page=1>; rel="first"`, `</api/organizations?page=1>; rel="first"`},
		{`<http://127.0.0.1:3001/organizations/o1/users?page=2&page_size=5>; rel="next", <http://127.0.0.1:3001/organizations/o1/users?page=1&page_size=5>; rel="prev"`,
			`</api/organizations/o1/users?page=2&page_size=5>; rel="next", </api/organizations/o1/users?page=1&page_size=5>; rel="prev"`},
		{`<https://x.logto.app/api/organizations?page=1>; rel="first"`, `</api/organizations?page=1>; rel="first"`},
		{`<http://127.0.0.1:3001/../admin>; rel="first"`, ``},
		{`no angle brackets`, ``},
		{`<%zz>; rel="x"`, ``},
	} {
		if got := rewriteLink(tc.in, base); got != tc.want {
			t.Errorf("rewriteLink(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := rewriteLink(`<https://auth.example.com/logto/organizations?page=1>; rel="first"`, prefixed), `</api/organizations?page=1>; rel="first"`; got != want {
		t.Errorf("rewriteLink(prefixed base) = %q, want %q", got, want)
	}
}

func TestMemberFieldsReduced(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
		want   []string
	}{
		{"default", nil, []string{"id", "username", "name", "avatar", "primaryEmail", "organizationRoles"}},
		{"configured", []string{"id,name"}, []string{"id", "name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.fields != nil {
					c.MemberFields = tc.fields
				}
			})
			path := "/api/organizations/" + e.org + "/users"
			resp := e.allowed(t, "GET", path, "GET /api/organizations/{orgId}/users", "")
			if resp.status != http.StatusOK {
				t.Fatalf("GET %s status = %d (%s), want 200", path, resp.status, resp.body)
			}
			var users []map[string]json.RawMessage
			resp.json(t, &users)
			if len(users) != 1 {
				t.Fatalf("members = %s, want one", resp.body)
			}
			var keys []string
			for k := range users[0] {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(keys, want) {
				t.Errorf("member fields = %v, want %v (body %s)", keys, want, resp.body)
			}
			// Logto sent more: the reduction removed something real.
			if mgmt := e.management(); len(mgmt) != 1 {
				t.Fatalf("Management API calls = %d, want 1", len(mgmt))
			}
			if bytes.Contains(resp.body, []byte("customData")) || bytes.Contains(resp.body, []byte("identities")) {
				t.Errorf("member listing %s still carries private fields", resp.body)
			}
		})
	}
}

func TestReduceMembersHostile(t *testing.T) {
	for _, in := range []string{`{"id":"u1"}`, `[1,2]`, `not json`, `[{"id":"u1"}] trailing`, `[{"id":`} {
		if _, err := reduceMembers([]byte(in), []string{"id"}); err == nil {
			t.Errorf("reduceMembers(%q): nil error, want one", in)
		}
	}
	out, err := reduceMembers([]byte(`[{"id":"u1","secret":{"deep":[1]},"name":null}]`), []string{"name", "id"})
	if err != nil || string(out) != `[{"name":null,"id":"u1"}]` {
		t.Errorf("reduceMembers = %s, %v; want [{\"name\":null,\"id\":\"u1\"}]", out, err)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestEveryOperationForwardsTheApprovedPath is the differential test: for each operation, the request
// target Logto receives is byte for byte the path the decision approved (plus documented query only).
func TestEveryOperationForwardsTheApprovedPath(t *testing.T) {
	e := newEnv(t)
	ids := map[string]string{"{orgId}": e.org, "{userId}": e.user, "{roleId}": "r0le1d"}
	for _, op := range operations {
		if op.action == bulkCreate || op.action == bulkDelete {
			continue
		}
		path := "/" + strings.Join(op.segments, "/")
		for k, v := range ids {
			path = strings.ReplaceAll(path, k, v)
		}
		body := ""
		if op.method != "GET" && op.method != "DELETE" {
			body = `{}`
		}
		before := len(e.management())
		c := adminClaims(op.method, path, op.route)
		if body != "" {
			c.Body = decision.BodyHash([]byte(body)) // as the sidecar signs it when Envoy sends the body
		}
		resp := e.do(t, op.method, path+"?page=1&x=y", body, e.sign(t, c))
		mgmt := e.management()
		if len(mgmt) != before+1 {
			t.Errorf("%s: %d Management API calls, want 1 (status %d %s)", op.route, len(mgmt)-before, resp.status, resp.body)
			continue
		}
		want := path
		if slices.Contains(op.query, "page") {
			want += "?page=1"
		}
		if got := mgmt[len(mgmt)-1]; got.method != op.method || got.target != want {
			t.Errorf("%s: Logto got %s %s, want %s %s", op.route, got.method, got.target, op.method, want)
		}
	}
}

func TestOneLogLinePerRequest(t *testing.T) {
	e := newEnv(t)
	path := "/api/organizations/" + e.org
	dec := e.sign(t, adminClaims("GET", path, "GET /api/organizations/{orgId}"))
	wantStatus(t, "GET", e.do(t, "GET", path, "", dec), http.StatusOK, "")
	e.do(t, "DELETE", path, "", "")
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("request log lines = %d, want 2: %s", len(lines), e.logs.String())
	}
	if lines[0]["status"] != float64(200) || lines[0]["route"] != "GET /api/organizations/{orgId}" || lines[0]["decision_id"] == nil {
		t.Errorf("allowed request logged as %v", lines[0])
	}
	if lines[1]["status"] != float64(403) || lines[1]["reason"] != "decision_missing" {
		t.Errorf("refused request logged as %v", lines[1])
	}
	if strings.Contains(e.logs.String(), dec) {
		t.Error("the log contains the signed decision")
	}
}

// FuzzCanonicalPath: whatever the request target, an accepted path is made only of allowed segments.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/api/organizations", "/api/organizations/o1/users?x=1", "//a", "/a/../b", "/%2e", "/a;b", "/a/", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		r := &http.Request{RequestURI: target, URL: &url.URL{}}
		path, segs, ok := canonicalPath(r)
		if !ok {
			return
		}
		if len(path) > decision.MaxPathBytes || "/"+strings.Join(segs, "/") != path || strings.ContainsAny(path, "?%;\\#") {
			t.Errorf("canonicalPath(%q) accepted %q", target, path)
		}
		for _, s := range segs {
			if s == "" || s == "." || s == ".." {
				t.Errorf("canonicalPath(%q) accepted segment %q", target, s)
			}
		}
	})
}

// BenchmarkForward measures an approved GET through mgmtproxy to the emulator over loopback: the
// decision's verification, the forward, the log line and the audit record (make bench's mgmtproxy row).
func BenchmarkForward(b *testing.B) {
	e := newEnv(b)
	path := "/api/organizations/" + e.org
	decs := make([]string, b.N)
	for i := range decs {
		// Not e.sign: its record of every decision makes newEnv's leak check quadratic in b.N.
		d, err := e.signer.Sign(adminClaims("GET", path, "GET /api/organizations/{orgId}"))
		if err != nil {
			b.Fatal(err)
		}
		decs[i] = d
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		req.Header.Set(decision.Header, decs[i])
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
