package revocation

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

// mgmtproxy's watermarks reach a sidecar with a memory store of its own: Notifier posts the orgauthz
// event to WebhookHandler, which applies exactly those watermarks, at the event's time.
func TestNotifierReachesWebhookHandler(t *testing.T) {
	secret := []byte("shared-signing-key")
	at := time.Now().Truncate(time.Millisecond)
	sidecar := memoryStore(t)
	srv := httptest.NewServer(WebhookHandler(secret, nil, sidecar))
	defer srv.Close()

	ws, ok := OperationWatermarks("DELETE /api/organizations/{orgId}/users/{userId}", map[string]string{"orgId": "o1", "userId": "u1"}, nil, at)
	if !ok {
		t.Fatal("route unknown")
	}
	n := &Notifier{URLs: []string{srv.URL + WebhookPath}, Secret: secret, Client: &http.Client{Timeout: 2 * time.Second}}
	if err := n.Notify(context.Background(), ws, at); err != nil {
		t.Fatal(err)
	}
	before, after := at.Unix()-1, at.Unix()+1
	for _, c := range []struct {
		org, user string
		iat       int64
		kind      string
		want      bool
	}{
		{"o1", "u1", before, decision.KindOrganization, true},
		{"o1", "u1", before, decision.KindOrganizationAPI, true},
		{"", "u1", before, decision.KindGlobalAPI, true},
		{"o1", "u1", after, decision.KindOrganization, false},
		{"o1", "u2", before, decision.KindOrganization, false},
		{"o2", "u1", before, decision.KindOrganization, false},
		{"", "u1", before, decision.KindAdmin, false},
	} {
		if got := sidecar.Revoked(c.org, c.user, c.iat, c.kind); got != c.want {
			t.Errorf("%s token of %s in %q at %d: revoked = %v, want %v", c.kind, c.user, c.org, c.iat, got, c.want)
		}
	}

	// A second sidecar that refuses (wrong secret) is reported, the first still gets it.
	other := httptest.NewServer(WebhookHandler([]byte("another key"), nil, memoryStore(t)))
	defer other.Close()
	n.URLs = []string{srv.URL + WebhookPath, other.URL + WebhookPath}
	at2 := at.Add(time.Second)
	ws2, _ := OperationWatermarks("DELETE /api/organizations/{orgId}", map[string]string{"orgId": "o2"}, nil, at2)
	err := n.Notify(context.Background(), ws2, at2)
	if err == nil || !strings.Contains(err.Error(), "answered 401") || strings.Count(err.Error(), "revocation: notify") != 1 {
		t.Errorf("Notify with one mis-keyed sidecar = %v, want one 401 failure", err)
	}
	if !sidecar.Revoked("o2", "u9", at2.Unix(), decision.KindOrganization) {
		t.Error("the well-keyed sidecar did not apply the second event")
	}
}

// The orgauthz event is outside input like any delivery: bounded, known kinds, IDs of the ID alphabet,
// and its time is the signed createdAt (inside the window), never a time of the sender's choosing.
func TestRevokedEventHostile(t *testing.T) {
	secret := []byte("shared-signing-key")
	now := time.Now()
	ts := now.UTC().Format(time.RFC3339Nano)
	many := make([]string, MaxEventWatermarks+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"organizationId":"o%d","kinds":["organization"]}`, i)
	}
	event := func(createdAt, watermarks string) []byte {
		return []byte(`{"event":"orgauthz.Revoked","createdAt":"` + createdAt + `","watermarks":` + watermarks + `}`)
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"too many watermarks", event(ts, "["+strings.Join(many, ",")+"]"), 400, "webhook_malformed"},
		{"no watermarks", event(ts, "[]"), 400, "webhook_malformed"},
		{"watermarks missing", []byte(`{"event":"orgauthz.Revoked","createdAt":"` + ts + `"}`), 400, "webhook_malformed"},
		{"not an array", event(ts, `{"organizationId":"o1"}`), 400, "webhook_malformed"},
		{"unknown kind", event(ts, `[{"organizationId":"o1","kinds":["root"]}]`), 400, "webhook_malformed"},
		{"no kinds", event(ts, `[{"organizationId":"o1","kinds":[]}]`), 400, "webhook_malformed"},
		{"separator in an ID", event(ts, `[{"organizationId":"o1:*","kinds":["organization"]}]`), 400, "webhook_malformed"},
		{"over-long ID", event(ts, `[{"userId":"`+strings.Repeat("a", 65)+`","kinds":["admin"]}]`), 400, "webhook_malformed"},
		{"stale", event(now.Add(-WebhookMaxAge-time.Second).UTC().Format(time.RFC3339Nano), `[{"organizationId":"o1","kinds":["organization"]}]`), 400, "webhook_stale"},
		{"far future", event(now.Add(time.Hour).UTC().Format(time.RFC3339Nano), `[{"organizationId":"o1","kinds":["organization"]}]`), 400, "webhook_stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := memoryStore(t)
			wantRefused(t, post(WebhookHandler(secret, func() time.Time { return now }, s), tc.body, Sign(secret, tc.body)), s, tc.status, tc.code)
		})
	}
	// A notBefore field is ignored: the watermark is at createdAt.
	body := event(ts, `[{"organizationId":"o1","kinds":["organization"],"notBefore":99999999999}]`)
	s := memoryStore(t)
	if w := post(WebhookHandler(secret, func() time.Time { return now }, s), body, Sign(secret, body)); w.Code != http.StatusNoContent {
		t.Fatalf("POST = %d %s", w.Code, w.Body)
	}
	if s.Revoked("o1", "u1", now.Unix()+5, decision.KindOrganization) {
		t.Error("a token issued after createdAt is revoked: the sender placed the watermark in time")
	}
	if _, err := RevokedEventBody(make([]Watermark, MaxEventWatermarks+1), now); err == nil {
		t.Error("RevokedEventBody took too many watermarks")
	}
}
