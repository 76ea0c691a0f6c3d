package revocation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var createdAt = regexp.MustCompile(`"createdAt":"[^"]*"`)

// FuzzWebhook sends correctly signed bodies of any shape through the handler, as a Logto with a
// leaked key or a buggy mgmtproxy could: it never panics, answers one of its documented statuses,
// and a body it refuses leaves no watermark behind.
func FuzzWebhook(f *testing.F) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	stamp := at.Format("2006-01-02T15:04:05.000Z")
	for _, s := range []string{
		`{"event":"Organization.Membership.Updated","createdAt":"` + stamp + `","organizationId":"o1","params":{"userId":"u1"}}`,
		`{"event":"Organization.Deleted","createdAt":"` + stamp + `","params":{"id":"o1"}}`,
		`{"event":"User.Deleted","createdAt":"` + stamp + `","data":{"id":"u1"}}`,
		`{"event":"orgauthz.Revoked","createdAt":"` + stamp + `","watermarks":[{"org":"o1","user":"u1","kinds":["organization"]}]}`,
		`{"event":"User.SuspensionStatus.Updated","createdAt":"` + stamp + `","data":{"id":"u1","isSuspended":true}}`,
		`{"event":"Role.Scopes.Updated","createdAt":"` + stamp + `"}`,
		`{"createdAt":1e400}`, `[]`, `null`, ``,
	} {
		f.Add(s)
	}
	// The real deliveries, restamped to the fuzzer's clock so that they apply.
	files, _ := filepath.Glob(filepath.Join(webhookDir, "0*.json"))
	for _, file := range files {
		var rec struct {
			Delivery struct {
				RawBody string `json:"raw_body"`
			} `json:"delivery"`
		}
		if b, err := os.ReadFile(file); err == nil && json.Unmarshal(b, &rec) == nil && rec.Delivery.RawBody != "" {
			f.Add(createdAt.ReplaceAllString(rec.Delivery.RawBody, `"createdAt":"`+stamp+`"`))
		}
	}
	secret := []byte("fuzz-signing-key")
	f.Fuzz(func(t *testing.T, body string) {
		store, err := Open(context.Background(), "memory", Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		h := WebhookHandler(secret, func() time.Time { return at }, store)
		req := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(body))
		req.Header.Set(SignatureHeader, Sign(secret, []byte(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusNoContent, http.StatusAccepted:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if n := store.Status().Watermarks; n != 0 {
				t.Fatalf("refused %d, yet %d watermarks applied", rec.Code, n)
			}
		default:
			t.Fatalf("signed body answered %d (%s)", rec.Code, rec.Body)
		}
	})
}
