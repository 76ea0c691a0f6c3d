package mgmtproxy

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/revocation"
)

// Every operation mgmtproxy performs is known to the revocation rules: a new one cannot skip revocation.
func TestEveryOperationKnownToRevocation(t *testing.T) {
	for _, op := range operations {
		ids := map[string]string{"orgId": "o1", "userId": "u1", "roleId": "r1"}
		ws, ok := revocation.OperationWatermarks(op.route, ids, []string{"o1"}, time.Now())
		if !ok {
			t.Errorf("%s is unknown to revocation.OperationWatermarks", op.route)
		}
		// What takes power away revokes; what only grants or reads does not.
		takesAway := op.method == http.MethodDelete || op.method == http.MethodPut || op.action == bulkDelete
		if takesAway != (len(ws) > 0) {
			t.Errorf("%s: %d watermarks, want some only when it takes power away", op.route, len(ws))
		}
	}
}

// sidecar is a stand-in for the sidecar's webhook listener with its own memory store.
func sidecar(t *testing.T, secret []byte) (*revocation.Store, string) {
	t.Helper()
	s, err := revocation.Open(t.Context(), "memory", revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(revocation.WebhookHandler(secret, nil, s))
	t.Cleanup(srv.Close)
	return s, srv.URL + revocation.WebhookPath
}

// The one-machine case: a removed member's tokens are refused by the sidecar (its own memory store)
// before mgmtproxy answers the removal, through the signed orgauthz event; mgmtproxy's store has them too.
func TestRemovalRevokesBeforeAnswering(t *testing.T) {
	secret := []byte("webhook-signing-key-0123456789ab")
	store, hook := sidecar(t, secret)
	secretFile := filepath.Join(t.TempDir(), "hook.key")
	os.WriteFile(secretFile, append(secret, '\n'), 0o600)
	e := newEnv(t, func(c *Config) {
		c.RevocationNotify = []string{hook}
		c.LogtoWebhookSecretFile = secretFile
	})
	bob := e.logto.AddUser("", "bob")
	e.logto.AddMember(e.org, bob, "member")
	issued := time.Now().Unix() - 1 // a token Bob got before the removal

	path := "/api/organizations/" + e.org + "/users/" + bob
	if r := e.allowed(t, "DELETE", path, "DELETE /api/organizations/{orgId}/users/{userId}", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE member = %d %s", r.status, r.body)
	}
	// No waiting: the answer came after the sidecar took the watermarks.
	for name, s := range map[string]*revocation.Store{"sidecar": store, "mgmtproxy": e.proxy.store} {
		if !s.Revoked(e.org, bob, issued, decision.KindOrganization) || !s.Revoked("", bob, issued, decision.KindGlobalAPI) {
			t.Errorf("%s: Bob's old tokens are not revoked", name)
		}
		if s.Revoked(e.org, e.user, issued, decision.KindOrganization) {
			t.Errorf("%s: Alice's token is revoked too", name)
		}
	}
	// A read revokes nothing, and Alice's new tokens (issued after the change) work.
	e.allowed(t, "GET", "/api/organizations/"+e.org, "GET /api/organizations/{orgId}", "")
	if store.Revoked(e.org, bob, time.Now().Unix()+2, decision.KindOrganization) {
		t.Error("a token issued after the removal is revoked")
	}
	audit, _ := os.ReadFile(e.auditPath)
	if strings.Contains(e.logs.String()+string(audit), string(secret)) {
		t.Error("the webhook signing key is in the log or the audit stream")
	}
}

// A sidecar that cannot be told does not keep the client from its answer (the change happened): it is
// logged and counted.
func TestNotifyFailureStillAnswers(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "hook.key")
	os.WriteFile(secretFile, []byte("right-key"), 0o600)
	_, hook := sidecar(t, []byte("another-key"))
	e := newEnv(t, func(c *Config) {
		c.RevocationNotify = []string{hook}
		c.LogtoWebhookSecretFile = secretFile
	})
	r := e.allowed(t, "DELETE", "/api/organizations/"+e.org, "DELETE /api/organizations/{orgId}", "")
	if r.status != http.StatusNoContent {
		t.Fatalf("DELETE organization = %d %s", r.status, r.body)
	}
	if got := metricValue(t, e, `orgauthz_mgmtproxy_revocation_failures_total{stage="notify"}`); got != "1" {
		t.Errorf("notify failures = %q, want 1", got)
	}
	if !strings.Contains(e.logs.String(), "revocation not delivered") {
		t.Error("no log line for the failed notification")
	}
	if !e.proxy.store.Revoked(e.org, "anyone", time.Now().Unix()-1, decision.KindOrganization) {
		t.Error("mgmtproxy's own store did not take the watermark")
	}
}

// metricValue returns the value of one sample line of /metrics.
func metricValue(t *testing.T, e *env, sample string) string {
	t.Helper()
	r := e.do(t, "GET", "/metrics", "", "")
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// A bulk delete revokes exactly the organizations Logto deleted.
func TestBulkDeleteRevokesWhatWasDeleted(t *testing.T) {
	e := newEnv(t)
	other := e.logto.AddOrganization("", "Other")
	r := e.bulk(t, "/bulk/organizations/delete", `{"ids":["`+e.org+`","nosuchorg1","`+other+`"]}`)
	if r.status != http.StatusOK {
		t.Fatalf("bulk delete = %d %s", r.status, r.body)
	}
	old := time.Now().Unix() - 1
	for org, want := range map[string]bool{e.org: true, other: true, "nosuchorg1": false} {
		if got := e.proxy.store.Revoked(org, "u1", old, decision.KindOrganization); got != want {
			t.Errorf("tokens of %s revoked = %v, want %v", org, got, want)
		}
	}
	recs := readAudit(t, e)
	if len(recs) != 1 || recs[0].Changes == nil || len(recs[0].Changes.Items) != 3 || len(recs[0].Calls) != 3 {
		t.Fatalf("bulk audit = %+v", recs)
	}
	for i, want := range []struct {
		id     string
		status int
	}{{e.org, 204}, {"nosuchorg1", 404}, {other, 204}} {
		if it := recs[0].Changes.Items[i]; it.ID != want.id || it.Status != want.status || (want.status == 404) != (it.Error != "") {
			t.Errorf("item %d = %+v, want %s %d", i, it, want.id, want.status)
		}
	}
}

// Redis unreachable: mgmtproxy cannot make the decision single-use across replicas, so it refuses
// (503 replay_store_unavailable) and calls nothing at Logto.
func TestClaimStoreDownRefuses(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RevocationStore = "redis://127.0.0.1:1/0" })
	before := len(e.management())
	r := e.allowed(t, "GET", "/api/organizations/"+e.org, "GET /api/organizations/{orgId}", "")
	var body struct{ Code string }
	r.json(t, &body)
	if r.status != http.StatusServiceUnavailable || body.Code != "replay_store_unavailable" {
		t.Errorf("with Redis down = %d %q, want 503 replay_store_unavailable", r.status, body.Code)
	}
	if n := len(e.management()) - before; n != 0 {
		t.Errorf("%d calls reached Logto with the store down", n)
	}
	if !strings.Contains(e.logs.String(), "revocation store unavailable") {
		t.Error("no log line says the store is unavailable")
	}
}

// readAudit closes the proxy (flushing the stream) and returns its records.
func readAudit(t *testing.T, e *env) []decisionlog.Record {
	t.Helper()
	if err := e.proxy.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []decisionlog.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r decisionlog.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// One record per request: the decision's jti, the token facts, the Logto calls and the ids changed;
// the reason on a refusal.
func TestAuditRecords(t *testing.T) {
	e := newEnv(t)
	bob := e.logto.AddUser("", "bob")
	c := decision.Claims{Method: "POST", Path: "/api/organizations", Route: "POST /api/organizations", Kind: decision.KindGlobalAPI, Subject: e.user, ID: decisionlog.NewID()}
	dec := e.sign(t, c)
	created := e.do(t, "POST", "/api/organizations", `{"name":"Audited"}`, dec)
	if created.status != http.StatusCreated {
		t.Fatalf("create = %d %s", created.status, created.body)
	}
	var org struct{ ID string }
	created.json(t, &org)
	add := e.allowed(t, "POST", "/api/organizations/"+org.ID+"/users", "POST /api/organizations/{orgId}/users", `{"userIds":["`+bob+`"]}`)
	if add.status != http.StatusCreated {
		t.Fatalf("add member = %d %s", add.status, add.body)
	}
	e.do(t, "GET", "/api/organizations", "", "")
	recs := readAudit(t, e)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	cr := recs[0]
	if cr.DecisionID != c.ID || !cr.Allow || cr.Status != 201 || cr.Route != "POST /api/organizations" ||
		cr.Token == nil || cr.Token.Subject != e.user || cr.Token.Kind != decision.KindGlobalAPI {
		t.Errorf("create record = %+v", cr)
	}
	if len(cr.Calls) != 3 || cr.Calls[0].Path != "/api/organizations" || cr.Calls[0].Status != 201 || cr.Calls[0].DurationNS <= 0 {
		t.Errorf("create calls = %+v, want create, add, roles", cr.Calls)
	}
	if ch := cr.Changes; ch == nil || ch.OrganizationID != org.ID || !ch.Created || len(ch.UserIDs) != 1 || ch.UserIDs[0] != e.user || len(ch.RoleNames) != 1 {
		t.Errorf("create changes = %+v", cr.Changes)
	}
	if ch := recs[1].Changes; ch == nil || ch.OrganizationID != org.ID || len(ch.UserIDs) != 1 || ch.UserIDs[0] != bob {
		t.Errorf("add member changes = %+v", recs[1].Changes)
	}
	if r := recs[2]; r.Allow || r.Status != 403 || r.Reason != "decision_missing" || r.DecisionID != "" || len(r.Calls) != 0 {
		t.Errorf("refusal record = %+v", r)
	}
}
