package revocation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

var webhookDir = filepath.Join("..", "..", "shared", "logto-real", "webhooks")

// delivery is one real Logto webhook delivery: the raw body exactly as signed, its signature header
// and its signed time.
type delivery struct {
	file      string
	body      []byte
	signature string
	createdAt time.Time
}

func loadDelivery(t *testing.T, file string) delivery {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(webhookDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Delivery struct {
			Headers map[string]string `json:"headers"`
			RawBody string            `json:"raw_body"`
			Body    struct {
				CreatedAt time.Time `json:"createdAt"`
			} `json:"body"`
		} `json:"delivery"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return delivery{file, []byte(f.Delivery.RawBody), f.Delivery.Headers[SignatureHeader], f.Delivery.Body.CreatedAt}
}

func realSecret(t *testing.T) []byte {
	t.Helper()
	key, err := LoadWebhookSecret(filepath.Join(webhookDir, "signing-key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// post sends body with the given signature headers to h and returns the status.
func post(h http.Handler, body []byte, sigs ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	for _, s := range sigs {
		r.Header.Add(SignatureHeader, s)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// The IDs in the real deliveries.
const (
	realOrg   = "qalhpa13xzgs"
	realU2    = "zq8qk5x57m55"
	realU3    = "4n8dhqk39cbs"
	realU1    = "23oajevdsn1x"
	realU4    = "9odyemsb8bta"
	realOrg2  = "32n9g08ssv9c"
	realLater = 3600 // a token issued an hour after any delivery
)

// TestRealDeliveries replays every real delivery, with its real signature and a clock set to its
// time, and checks the watermarks it leaves: which tokens issued a second before the event are
// refused, and that tokens issued after it work.
func TestRealDeliveries(t *testing.T) {
	nb := func(d delivery) int64 { return NotBefore(d.createdAt) }
	tests := []struct {
		file string
		want func(at int64) []Watermark // nil: nothing revoked
	}{
		{"001-Organization.Created.json", nil},
		{"002-Organization.Data.Updated.json", nil},
		{"003-Organization.Membership.Updated.json", nil}, // POST: members added
		{"004-Organization.Membership.Updated.json", func(at int64) []Watermark { // DELETE one member
			return []Watermark{{Org: realOrg, User: realU2, Kinds: OrgKinds, NotBefore: at}, {User: realU2, Kinds: GlobalAPI, NotBefore: at}}
		}},
		{"005-Organization.Membership.Updated.json", func(at int64) []Watermark { // PUT members: none named
			return []Watermark{{Org: realOrg, Kinds: OrgKinds, NotBefore: at}}
		}},
		{"006-OrganizationRole.Scopes.Updated.json", func(at int64) []Watermark { // PUT scopes
			return []Watermark{{Kinds: OrgKinds, NotBefore: at}}
		}},
		{"007-OrganizationRole.Scopes.Updated.json", nil}, // POST: scopes added
		{"008-OrganizationRole.Scopes.Updated.json", func(at int64) []Watermark { // DELETE a scope
			return []Watermark{{Kinds: OrgKinds, NotBefore: at}}
		}},
		{"009-OrganizationRole.Scopes.Updated.json", nil}, // a new role created with scopes: no holder yet
		{"010-Role.Scopes.Updated.json", nil},             // POST: scopes added
		{"011-Role.Scopes.Updated.json", func(at int64) []Watermark {
			return []Watermark{{Kinds: GlobalKinds, NotBefore: at}}
		}},
		{"012-User.SuspensionStatus.Updated.json", func(at int64) []Watermark { // suspended
			return []Watermark{{User: realU3, Kinds: AllKinds, NotBefore: at}}
		}},
		{"013-User.SuspensionStatus.Updated.json", nil}, // reactivated
		{"014-User.Deleted.json", func(at int64) []Watermark { return []Watermark{{User: realU1, Kinds: AllKinds, NotBefore: at}} }},
		{"015-User.Deleted.json", func(at int64) []Watermark { return []Watermark{{User: realU2, Kinds: AllKinds, NotBefore: at}} }},
		{"016-OrganizationRole.Deleted.json", func(at int64) []Watermark { return []Watermark{{Kinds: OrgKinds, NotBefore: at}} }},
		{"017-Role.Deleted.json", func(at int64) []Watermark { return []Watermark{{Kinds: GlobalKinds, NotBefore: at}} }},
		{"018-Organization.Deleted.json", func(at int64) []Watermark {
			return []Watermark{{Org: realOrg, Kinds: OrgKinds, NotBefore: at}}
		}},
		{"019-User.Deleted.json", func(at int64) []Watermark { return []Watermark{{User: realU3, Kinds: AllKinds, NotBefore: at}} }},
		{"020-User.Deleted.json", func(at int64) []Watermark { return []Watermark{{User: realU4, Kinds: AllKinds, NotBefore: at}} }},
		{"021-OrganizationRole.Deleted.json", func(at int64) []Watermark { return []Watermark{{Kinds: OrgKinds, NotBefore: at}} }},
		{"022-Organization.Created.json", nil},
		{"024-Organization.Deleted.json", func(at int64) []Watermark {
			return []Watermark{{Org: realOrg2, Kinds: OrgKinds, NotBefore: at}}
		}},
	}
	secret := realSecret(t)
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			d := loadDelivery(t, tc.file)
			var want []Watermark
			if tc.want != nil {
				want = tc.want(nb(d))
			}
			got, err := EventWatermarks(d.body)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("EventWatermarks = %+v, %v; want %+v", got, err, want)
			}

			s := memoryStore(t)
			s.opts.Now = func() time.Time { return d.createdAt }
			h := WebhookHandler(secret, func() time.Time { return d.createdAt.Add(20 * time.Millisecond) }, s)
			if w := post(h, d.body, d.signature); w.Code != http.StatusNoContent {
				t.Fatalf("POST %s = %d %s, want 204", tc.file, w.Code, w.Body)
			}
			if n := s.Status().Watermarks; n != len(want) {
				t.Errorf("%d watermarks in force, want %d", n, len(want))
			}
			// Each watermark refuses a matching token issued in the event's second and accepts one
			// issued in the next.
			for _, w := range want {
				org, user, kind := w.Org, w.User, kindOf(w.Kinds)
				if org == "" && w.Kinds&OrgKinds != 0 {
					org = "anyorg"
				}
				if user == "" {
					user = "anyuser"
				}
				if !s.Revoked(org, user, d.createdAt.Unix(), kind) {
					t.Errorf("%s token of %s in %q issued at the event is accepted, want refused", kind, user, org)
				}
				if s.Revoked(org, user, nb(d), kind) {
					t.Errorf("%s token of %s in %q issued after the event is refused, want accepted", kind, user, org)
				}
			}
		})
	}
}

// kindOf returns the name of the first kind in ks.
func kindOf(ks Kinds) string {
	for i, name := range []string{decision.KindOrganization, decision.KindOrganizationAPI, decision.KindGlobalAPI, decision.KindAdmin} {
		if ks&(1<<i) != 0 {
			return name
		}
	}
	return ""
}

// A removed member's organization token is refused from the removal on; other members keep working.
func TestRemovedMemberLosesAccess(t *testing.T) {
	d := loadDelivery(t, "004-Organization.Membership.Updated.json")
	s := memoryStore(t)
	issued := d.createdAt.Add(-30 * time.Minute).Unix()
	if s.Revoked(realOrg, realU2, issued, decision.KindOrganization) {
		t.Fatal("refused before any event")
	}
	h := WebhookHandler(realSecret(t), func() time.Time { return d.createdAt }, s)
	if w := post(h, d.body, d.signature); w.Code != http.StatusNoContent {
		t.Fatalf("POST = %d %s", w.Code, w.Body)
	}
	for _, c := range []struct {
		org, user, kind string
		want            bool
	}{
		{realOrg, realU2, decision.KindOrganization, true},
		{realOrg, realU2, decision.KindOrganizationAPI, true},
		{"", realU2, decision.KindGlobalAPI, true}, // Logto folds org-role API permissions into it
		{"", realU2, decision.KindAdmin, false},
		{realOrg, realU3, decision.KindOrganization, false},
		{realOrg2, realU2, decision.KindOrganization, false},
	} {
		if got := s.Revoked(c.org, c.user, issued, c.kind); got != c.want {
			t.Errorf("%s token of %s in %q: revoked = %v, want %v", c.kind, c.user, c.org, got, c.want)
		}
	}
}

func sign(key, body []byte) string { return Sign(key, body) }

func TestWebhookRefusals(t *testing.T) {
	secret := realSecret(t)
	d := loadDelivery(t, "004-Organization.Membership.Updated.json")
	tampered := []byte(strings.Replace(string(d.body), realU2, realU3, 1))
	other := loadDelivery(t, "023-Organization.Created.json") // signed by another hook's key
	big := append([]byte(`{"event":"Organization.Deleted","params":{"id":"o1"},"pad":"`), make([]byte, MaxWebhookBytes)...)
	for i := range big[58:] {
		big[58+i] = 'a'
	}
	big = append(big, `"}`...)
	hostile := eventAt(d.createdAt, `"event":"User.Deleted","params":{"userId":"u1:*"}`)
	tests := []struct {
		name   string
		body   []byte
		sigs   []string
		now    time.Time
		status int
		code   string
	}{
		{"unsigned", d.body, nil, d.createdAt, 401, "webhook_unsigned"},
		{"empty signature", d.body, []string{""}, d.createdAt, 401, "webhook_bad_signature"},
		{"signature of another body", tampered, []string{d.signature}, d.createdAt, 401, "webhook_bad_signature"},
		{"another hook's key", other.body, []string{other.signature}, other.createdAt, 401, "webhook_bad_signature"},
		{"signed with a guessed key", d.body, []string{sign([]byte("secret"), d.body)}, d.createdAt, 401, "webhook_bad_signature"},
		{"prefixed signature", d.body, []string{"sha256=" + d.signature}, d.createdAt, 401, "webhook_bad_signature"},
		{"truncated signature", d.body, []string{d.signature[:62]}, d.createdAt, 401, "webhook_bad_signature"},
		{"two signatures", d.body, []string{d.signature, d.signature}, d.createdAt, 401, "webhook_bad_signature"},
		{"stale", d.body, []string{d.signature}, d.createdAt.Add(WebhookMaxAge + time.Second), 400, "webhook_stale"},
		{"from the future", d.body, []string{d.signature}, d.createdAt.Add(-WebhookMaxAhead - time.Second), 400, "webhook_stale"},
		{"on the real clock", d.body, []string{d.signature}, time.Now(), 400, "webhook_stale"},
		{"oversized", big, []string{sign(secret, big)}, d.createdAt, 413, "webhook_too_large"},
		{"signed non-JSON", []byte("not json"), []string{sign(secret, []byte("not json"))}, d.createdAt, 400, "webhook_malformed"},
		{"signed, no createdAt", []byte(`{"event":"User.Deleted"}`), []string{sign(secret, []byte(`{"event":"User.Deleted"}`))}, d.createdAt, 400, "webhook_malformed"},
		{"signed, hostile ID", hostile, []string{sign(secret, hostile)}, d.createdAt, 400, "webhook_malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := memoryStore(t)
			h := WebhookHandler(secret, func() time.Time { return tc.now }, s)
			wantRefused(t, post(h, tc.body, tc.sigs...), s, tc.status, tc.code)
		})
	}
}

// wantRefused checks that w is the refusal status and code, and that s took no watermark.
func wantRefused(t *testing.T, w *httptest.ResponseRecorder, s *Store, status int, code string) {
	t.Helper()
	var body struct{ Code string }
	json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != status || body.Code != code {
		t.Errorf("POST = %d %q, want %d %q", w.Code, body.Code, status, code)
	}
	if n := s.Status().Watermarks; n != 0 {
		t.Errorf("a refused delivery left %d watermarks", n)
	}
}

// eventAt is a webhook body created at at with the given other fields.
func eventAt(at time.Time, fields string) []byte {
	return []byte(`{"createdAt":"` + at.UTC().Format(time.RFC3339Nano) + `",` + fields + `}`)
}

func TestWebhookReplayAndMethod(t *testing.T) {
	d := loadDelivery(t, "018-Organization.Deleted.json")
	s := memoryStore(t)
	h := WebhookHandler(realSecret(t), func() time.Time { return d.createdAt }, s)
	if w := post(h, d.body, d.signature); w.Code != http.StatusNoContent {
		t.Fatalf("first delivery = %d %s", w.Code, w.Body)
	}
	if w := post(h, d.body, d.signature); w.Code != http.StatusConflict {
		t.Errorf("replayed delivery = %d %s, want 409", w.Code, w.Body)
	}
	r := httptest.NewRequest(http.MethodGet, WebhookPath, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET = %d Allow %q, want 405 POST", w.Code, w.Header().Get("Allow"))
	}
}

// Where Logto omits the ID a rule needs, the watermark is coarser, never absent.
func TestEventMissingIDsRevokeCoarsely(t *testing.T) {
	at := time.Unix(testNow, 0).UTC().Format(time.RFC3339)
	for body, want := range map[string][]Watermark{
		`{"event":"Organization.Deleted","createdAt":"` + at + `"}`:                                   {{Kinds: OrgKinds, NotBefore: testNow + 1}},
		`{"event":"User.Deleted","createdAt":"` + at + `","data":{"id":"u7"}}`:                        {{User: "u7", Kinds: AllKinds, NotBefore: testNow + 1}},
		`{"event":"User.SuspensionStatus.Updated","createdAt":"` + at + `","params":{"userId":"u7"}}`: {{User: "u7", Kinds: AllKinds, NotBefore: testNow + 1}},
		`{"event":"Organization.Membership.Updated","createdAt":"` + at + `","params":{"id":"o7"}}`:   {{Org: "o7", Kinds: OrgKinds, NotBefore: testNow + 1}},
		`{"event":"Scope.Deleted","createdAt":"` + at + `"}`:                                          {{Kinds: OrganizationAPI | GlobalKinds, NotBefore: testNow + 1}},
		`{"event":"OrganizationScope.Deleted","createdAt":"` + at + `"}`:                              {{Kinds: Organization, NotBefore: testNow + 1}},
		`{"event":"PostSignIn","createdAt":"` + at + `"}`:                                             nil,
	} {
		got, err := EventWatermarks([]byte(body))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("EventWatermarks(%s) = %+v, %v; want %+v", body, got, err, want)
		}
	}
}

func TestLoadWebhookSecret(t *testing.T) {
	dir := t.TempDir()
	for content, ok := range map[string]bool{"k3y\n": true, "k3y": true, "\n": false, "": false, strings.Repeat("k", maxSecretBytes+1): false} {
		p := filepath.Join(dir, "s")
		os.WriteFile(p, []byte(content), 0o600)
		key, err := LoadWebhookSecret(p)
		if (err == nil) != ok || ok && string(key) != "k3y" {
			t.Errorf("LoadWebhookSecret(%.20q) = %q, %v; want ok=%v", content, key, err, ok)
		}
	}
}

func TestRevokeThroughStoreClock(t *testing.T) {
	// mgmtproxy's path: the operation's watermarks at the time Logto answered.
	s := memoryStore(t)
	at := time.Unix(testNow, 5e8)
	ws, ok := OperationWatermarks("DELETE /api/organizations/{orgId}/users/{userId}", map[string]string{"orgId": "o1", "userId": "u1"}, nil, at)
	if !ok {
		t.Fatal("route unknown")
	}
	if err := s.Revoke(context.Background(), ws...); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked("o1", "u1", testNow, decision.KindOrganization) || s.Revoked("o1", "u1", testNow+1, decision.KindOrganization) {
		t.Error("member removal through mgmtproxy: want tokens up to its second refused, later ones accepted")
	}
}
