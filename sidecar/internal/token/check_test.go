package token

import (
	"net/http"
	"strings"
	"testing"
)

// TestCheckIssuers: --check's online part passes for a served issuer and names each failure of
// the others: no discovery (404), a discovery naming another issuer, an empty key set, a huge
// discovery document.
func TestCheckIssuers(t *testing.T) {
	k := newECKey(t, "k1")
	serve := func(discovery func(iss string) (int, string), jwks string) *jwksServer {
		s := newJWKSServer(t, k)
		s.setHandler(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/oidc/.well-known/openid-configuration":
				code, body := discovery(s.issuer())
				w.WriteHeader(code)
				w.Write([]byte(body))
			case "/oidc/jwks":
				w.Write([]byte(jwks))
			default:
				http.NotFound(w, r)
			}
		})
		return s
	}
	good := func(iss string) (int, string) { return 200, `{"issuer":"` + iss + `"}` }
	keys := string(mustJSON(t, map[string]any{"keys": []any{k.jwk()}}))
	ok := serve(good, keys)
	cfg := ok.config()
	if err := CheckIssuers(t.Context(), cfg); err != nil {
		t.Fatalf("CheckIssuers(good) = %v", err)
	}
	bad := []struct {
		name string
		s    *jwksServer
		want string
	}{
		{"no discovery", serve(func(string) (int, string) { return 404, "" }, keys), "status 404"},
		{"another issuer", serve(func(string) (int, string) { return 200, `{"issuer":"https://evil.example/oidc"}` }, keys), "not the configured one"},
		{"empty key set", serve(good, `{"keys":[]}`), "no usable signing key"},
		{"huge discovery", serve(func(iss string) (int, string) {
			return 200, strings.Repeat(" ", maxDiscoveryBytes) + `{"issuer":"` + iss + `"}`
		}, keys), "over"},
	}
	cfg.Issuers = nil
	for _, b := range bad {
		cfg.Issuers = append(cfg.Issuers, b.s.issuer())
	}
	err := CheckIssuers(t.Context(), cfg)
	for _, b := range bad {
		if err == nil || !strings.Contains(err.Error(), b.s.issuer()) {
			t.Errorf("%s: CheckIssuers = %v, want it to name %s", b.name, err, b.s.issuer())
			continue
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.Contains(line, b.s.issuer()) && strings.Contains(line, b.want) {
				goto found
			}
		}
		t.Errorf("%s: CheckIssuers = %v, want %q for %s", b.name, err, b.want, b.s.issuer())
	found:
	}
}
