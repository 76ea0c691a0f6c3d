package token

import (
	"net/http"
	"testing"
	"time"
)

// TestFetchesByIssuer: each issuer's key set fetches are counted apart, by result, so a dashboard
// shows which issuer's JWKS fails.
func TestFetchesByIssuer(t *testing.T) {
	up := newJWKSServer(t, newECKey(t, "k1"))
	down := newJWKSServer(t)
	down.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	cfg := up.config()
	cfg.Issuers = append(cfg.Issuers, down.issuer())
	v := newVerifier(t, cfg, false)
	deadline := time.Now().Add(30 * time.Second)
	for f := v.Fetches(); f[up.issuer()].OK == 0 || f[down.issuer()].Failed == 0; f = v.Fetches() {
		if time.Now().After(deadline) {
			t.Fatalf("Fetches() = %+v, want an ok fetch of %s and a failed one of %s", f, up.issuer(), down.issuer())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f := v.Fetches()
	if f[up.issuer()].Failed != 0 || f[down.issuer()].OK != 0 || len(f) != 2 {
		t.Errorf("Fetches() = %+v, want the up issuer's fetches ok only and the down one's failed only", f)
	}
}
