package token

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/testkit"
)

func logLines(t *testing.T, l *testkit.Buffer, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestIssuersIndependent: with one issuer's JWKS failing, the other issuer's tokens verify, the
// failing one's are not_ready, Status names what is wrong with which issuer, and the failures are
// logged (issuer, URL, cause, next try) once per LogEvery however often the fetch fails.
func TestIssuersIndependent(t *testing.T) {
	good, bad := newJWKSServer(t, newECKey(t, "k1")), newJWKSServer(t)
	bad.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "gone", http.StatusNotFound) })
	k := newECKey(t, "k1")
	good.setKeys(t, k)
	var logs testkit.Buffer
	cfg := good.config()
	cfg.Issuers = []string{good.issuer(), bad.issuer()}
	cfg.JWKSURL = func(iss string) string { return iss + "/jwks" }
	cfg.RefreshMinGap = time.Nanosecond
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	v := newVerifier(t, cfg, false)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the good issuer's keys", v.Ready)
	waitFor("a second failed fetch of the bad issuer", func() bool { return bad.requests.Load() >= 2 })

	if got := verifyReason(t, v, k.sign(t, claimsFor(good.issuer(), nil))); got != "" {
		t.Errorf("token of the ready issuer: %q, want verified", got)
	}
	if got := verifyReason(t, v, k.sign(t, claimsFor(bad.issuer(), nil))); got != "not_ready" {
		t.Errorf("token of the failing issuer: %q, want not_ready", got)
	}
	for i := 0; i < 5; i++ { // unknown kids refetch too; those failures are rate-limited as well
		verifyReason(t, v, newECKey(t, "nope").sign(t, claimsFor(good.issuer(), nil)))
	}
	st := v.Status()
	if st[good.issuer()] != "" || !strings.Contains(st[bad.issuer()], "no keys loaded") || !strings.Contains(st[bad.issuer()], "404") {
		t.Errorf("Status() = %q, want the bad issuer's 404 and nothing for the good one", st)
	}
	lines := logLines(t, &logs, "jwks fetch failed")
	if len(lines) != 1 {
		t.Fatalf("%d jwks failure lines after %d failed fetches, want 1 per LogEvery:\n%s", len(lines), bad.requests.Load(), logs.String())
	}
	l := lines[0]
	if l["issuer"] != bad.issuer() || l["url"] != bad.issuer()+"/jwks" || !strings.Contains(l["err"].(string), "404") ||
		l["next_try"] == "" || l["level"] != "ERROR" || l["keys_loaded"] != false {
		t.Errorf("failure line = %v, want the issuer, URL, cause, next try, ERROR", l)
	}
}
