package fakelogto

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var hooksDir = filepath.Join(realDir, "webhooks")

// realDelivery is one delivery a real Logto sent (shared/logto-real/webhooks).
type realDelivery struct {
	Delivery struct {
		Headers map[string]string `json:"headers"`
		RawBody string            `json:"raw_body"`
	} `json:"delivery"`
}

func loadDelivery(t *testing.T, file string) realDelivery {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(hooksDir, file))
	if err != nil {
		t.Fatalf("the recorded Logto webhooks must sit beside the repository: %v", err)
	}
	var d realDelivery
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return d
}

// SignHook computes what the real Logto sent in every recorded delivery.
func TestSignHookMatchesRealLogto(t *testing.T) {
	key, err := os.ReadFile(filepath.Join(hooksDir, "signing-key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(hooksDir, "0[0-9][0-9]-*.*.json"))
	if len(files) != 24 {
		t.Fatalf("%d recorded deliveries, want 24", len(files))
	}
	for _, f := range files {
		if filepath.Base(f) == "023-Organization.Created.json" {
			continue // went to a second hook whose signing key was not kept
		}
		d := loadDelivery(t, filepath.Base(f))
		if got, want := SignHook(strings.TrimSpace(string(key)), []byte(d.Delivery.RawBody)), d.Delivery.Headers[HookSignatureHeader]; got != want {
			t.Errorf("%s: SignHook = %s, want %s", filepath.Base(f), got, want)
		}
	}
}

// delivery is one POST the receiver got.
type delivery struct {
	header http.Header
	body   []byte
}

// hookReceiver records deliveries and answers status.
type hookReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []delivery
	ch  chan struct{}
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	t.Helper()
	rec := &hookReceiver{ch: make(chan struct{}, 100)}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rec.mu.Lock()
		rec.got = append(rec.got, delivery{r.Header.Clone(), body})
		rec.mu.Unlock()
		rec.ch <- struct{}{}
		w.WriteHeader(status)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *hookReceiver) deliveries() []delivery {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.got)
}

// wait waits for n more deliveries.
func (rec *hookReceiver) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-rec.ch:
		case <-time.After(5 * time.Second):
			t.Fatal("no webhook delivery within 5 s")
		}
	}
}

// Each Management API change Logto reports produces one delivery shaped like the real one for
// that event (headers, key order, who is named) whose signature verifies; member role changes
// produce none.
func TestWebhooksLikeLogto(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	rec := newHookReceiver(t, http.StatusOK)
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)

	// Register through Logto's POST /api/hooks; the answer has the real one's shape.
	var created map[string]any
	resp, created := api(t, srv, "POST", "/api/hooks", m2m,
		`{"name":"rec","events":["Organization.Membership.Updated","Organization.Deleted","Organization.Created","Organization.Data.Updated","OrganizationRole.Scopes.Updated","User.Deleted"],"config":{"url":"`+rec.URL+`/hook"}}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/hooks: %d %v", resp.StatusCode, created)
	}
	var realCreate struct {
		Response struct {
			Body any `json:"body"`
		} `json:"response"`
	}
	raw, _ := os.ReadFile(filepath.Join(hooksDir, "000-hook-create.json"))
	json.Unmarshal(raw, &realCreate)
	compareShape(t, "hook", realCreate.Response.Body, created, func(s string) string { return s })
	key, _ := created["signingKey"].(string)
	hookID, _ := created["id"].(string)
	if len(key) != 32 {
		t.Fatalf("signingKey %q, want 32 characters", key)
	}

	acme, alice, bob := DemoAcmeID, DemoAliceID, DemoBobID
	var orgID string
	steps := []struct {
		name, method, path, body string
		real                     string // recorded delivery of the same event; "" = Logto sends none
		want                     map[string]any
	}{
		{"create organization", "POST", "/api/organizations", `{"name":"wh <&> \u2028 東京","description":"webhook"}`, "001-Organization.Created.json", nil},
		{"patch organization", "PATCH", "/api/organizations/{org}", `{"description":"changed"}`, "002-Organization.Data.Updated.json", map[string]any{"params": map[string]any{"id": "{org}"}}},
		{"add members", "POST", "/api/organizations/{org}/users", `{"userIds":["` + alice + `","` + bob + `"]}`, "003-Organization.Membership.Updated.json", map[string]any{"organizationId": "{org}", "params": map[string]any{"id": "{org}"}}},
		{"assign member role", "POST", "/api/organizations/" + acme + "/users/" + bob + "/roles", `{"organizationRoleNames":["admin"]}`, "", nil},
		{"replace member roles", "PUT", "/api/organizations/" + acme + "/users/" + bob + "/roles", `{"organizationRoleNames":["member"]}`, "", nil},
		{"remove member role", "DELETE", "/api/organizations/" + acme + "/users/" + bob + "/roles/orgrolemember00000001", "", "", nil},
		{"remove one member", "DELETE", "/api/organizations/{org}/users/" + bob, "", "004-Organization.Membership.Updated.json", map[string]any{"organizationId": "{org}", "params": map[string]any{"id": "{org}", "userId": bob}}},
		{"create role with permissions", "POST", "/api/organization-roles", `{"name":"wh-role","organizationScopeIds":["{scope}"]}`, "009-OrganizationRole.Scopes.Updated.json", nil},
		{"delete user", "DELETE", "/api/users/" + DemoCarolID, "", "015-User.Deleted.json", map[string]any{"params": map[string]any{"userId": DemoCarolID}}},
		{"delete organization", "DELETE", "/api/organizations/{org}", "", "018-Organization.Deleted.json", map[string]any{"params": map[string]any{"id": "{org}"}}},
	}
	srv.mu.Lock()
	scopeID := srv.t.permissions["org:read"].id
	srv.mu.Unlock()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			fill := func(s string) string {
				return strings.NewReplacer("{org}", orgID, "{scope}", scopeID).Replace(s)
			}
			before := len(rec.deliveries())
			resp, body := api(t, srv, st.method, fill(st.path), m2m, fill(st.body))
			if resp.StatusCode >= 300 {
				t.Fatalf("%s %s: %d %v", st.method, st.path, resp.StatusCode, body)
			}
			if orgID == "" {
				orgID, _ = body["id"].(string)
			}
			if st.real == "" {
				return // checked at the end: once the server is closed every delivery is in
			}
			rec.wait(t, 1)
			got := rec.deliveries()[before]
			real := loadDelivery(t, st.real)
			for _, h := range []string{"Content-Type", "User-Agent"} {
				if g, w := got.header.Get(h), real.Delivery.Headers[strings.ToLower(h)]; g != w {
					t.Errorf("%s = %q, want %q", h, g, w)
				}
			}
			if g := got.header.Get(HookSignatureHeader); g != SignHook(key, got.body) {
				t.Errorf("signature %q does not verify over the raw body", g)
			}
			if g, w := objectKeys(got.body), objectKeys([]byte(real.Delivery.RawBody)); !slices.Equal(g, w) {
				t.Errorf("body keys %v, want %v (order included)", g, w)
			}
			var gv, rv map[string]any
			json.Unmarshal(got.body, &gv)
			json.Unmarshal([]byte(real.Delivery.RawBody), &rv)
			compareShape(t, "delivery", rv, gv, func(s string) string { return s })
			for _, k := range []string{"event", "method", "status", "matchedRoute"} {
				if gv[k] != rv[k] {
					t.Errorf("%s = %v, want %v", k, gv[k], rv[k])
				}
			}
			if gv["hookId"] != hookID {
				t.Errorf("hookId = %v, want %s", gv["hookId"], hookID)
			}
			for k, w := range st.want {
				wj, _ := json.Marshal(w)
				gj, _ := json.Marshal(gv[k])
				if fill(string(wj)) != string(gj) {
					t.Errorf("%s = %s, want %s", k, gj, fill(string(wj)))
				}
			}
		})
	}
	if err := srv.Close(); err != nil { // waits for deliveries in flight
		t.Fatal(err)
	}
	var events []string
	for _, d := range rec.deliveries() {
		var v struct{ Event, Path string }
		json.Unmarshal(d.body, &v)
		events = append(events, v.Event+" "+v.Path)
		if strings.Contains(v.Path, "/roles") && strings.HasPrefix(v.Path, "/organizations/") {
			t.Errorf("delivery for a member role change %s: Logto sends none", v.Path)
		}
	}
	if len(events) != 7 {
		t.Errorf("%d deliveries, want 7 (one per reported change): %v", len(events), events)
	}
	// The organization name's <, >, & and U+2028 are sent as JSON.stringify writes them.
	if first := rec.deliveries()[0].body; !bytes.Contains(first, []byte("wh <&> \u2028 東京")) {
		t.Errorf("Organization.Created body %s, want the name unescaped as JSON.stringify writes it", first)
	}
}

// Logto makes one attempt: a receiver answering 500 is not called again.
func TestWebhookNotRetried(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	rec := newHookReceiver(t, http.StatusInternalServerError)
	srv.AddHook(Hook{URL: rec.URL, SigningKey: "k", Events: []string{EventOrganizationCreated}})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	if resp, _ := api(t, srv, "POST", "/api/organizations", m2m, `{"name":"x"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	rec.wait(t, 1)
	srv.Close()
	if n := len(rec.deliveries()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// POST /api/hooks is outside input: bad bodies are 400 and register nothing.
func TestCreateHookHostile(t *testing.T) {
	srv, demo := newDemo(t, Config{})
	m2m := mgmtToken(t, srv, demo.M2MApp.ID, demo.M2MApp.Secret)
	for _, body := range []string{
		`{}`, `{"name":"x","events":[],"config":{"url":"http://127.0.0.1:1/"}}`,
		`{"name":"x","events":["Organization.Created"],"config":{"url":"file:///etc/passwd"}}`,
		`{"name":"x","events":["Organization.Created"],"config":{}}`, `{"name":"x","events":"Organization.Created","config":{"url":"http://h/"}}`,
	} {
		if resp, got := api(t, srv, "POST", "/api/hooks", m2m, body); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /api/hooks %s: %d %v, want 400", body, resp.StatusCode, got)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.hooks) != 0 {
		t.Errorf("%d hooks registered, want 0", len(srv.hooks))
	}
}
