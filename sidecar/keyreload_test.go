package sidecar

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orgauthz/orgauthz/decision"
)

// allowedDecision asks for a route the token may use and returns the signed decision.
func (h *harness) allowedDecision(t *testing.T, tok string) string {
	t.Helper()
	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"authorization": "Bearer " + tok}, "")))
	if a.status != 200 || a.headers["x-orgauthz-decision"] == "" {
		t.Fatalf("GET /api/organizations/o1 status = %d (%s), want 200 with a decision", a.status, a.body)
	}
	return a.headers["x-orgauthz-decision"]
}

// decisionKID reads the kid of a signed decision's header.
func decisionKID(t *testing.T, jws string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(jws[:strings.IndexByte(jws, '.')])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(h, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// replaceFile writes data beside path and renames it over path, as an operator's tooling or
// Kubernetes does, so the sidecar never reads half a file.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestDecisionKeyReload: a new --decision-key file signs the next decisions without a restart, and
// a broken one leaves the last good key signing.
func TestDecisionKeyReload(t *testing.T) {
	h := newHarness(t, true)
	tok := h.mint(tokenSpec{kind: "organization", org: "o1", scopes: "org:read"})
	oldKID := decisionKID(t, h.allowedDecision(t, tok))

	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "new.pem"), filepath.Join(dir, "new.pub.pem")
	if err := decision.GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	newVerifier, err := decision.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	newKID := newVerifier.KeyIDs()[0]
	pemBytes, err := os.ReadFile(priv)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, h.cfg.DecisionKey, pemBytes)
	var d string
	waitFor(t, "decisions signed by the new key", func() bool {
		d = h.allowedDecision(t, tok)
		return decisionKID(t, d) == newKID
	})
	if _, err := newVerifier.Verify(d, "GET", "/api/organizations/o1"); err != nil {
		t.Errorf("the new public key refuses a decision after the rotation: %v", err)
	}
	if _, err := h.verifier.Verify(d, "GET", "/api/organizations/o1"); err == nil || !strings.Contains(err.Error(), newKID) {
		t.Errorf("the old public key's refusal = %v, want one naming kid %s", err, newKID)
	}
	if !strings.Contains(h.logs.String(), `"msg":"decision key reloaded","kid":"`+newKID+`","previous":"`+oldKID+`"`) {
		t.Errorf("no log line of the reload from %s to %s", oldKID, newKID)
	}

	replaceFile(t, h.cfg.DecisionKey, []byte("not a key"))
	waitFor(t, "the broken key file logged", func() bool {
		return strings.Contains(h.logs.String(), "decision key not reloaded: the last good key keeps signing")
	})
	if got := decisionKID(t, h.allowedDecision(t, tok)); got != newKID {
		t.Errorf("after a broken key file decisions are signed by %s, want the last good %s", got, newKID)
	}
}
