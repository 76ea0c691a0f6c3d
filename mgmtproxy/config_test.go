package mgmtproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validConfig returns a Config that passes Validate, with its files in a temporary directory.
func validConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.LogtoEndpoint = "http://127.0.0.1:3001"
	c.M2MAppID = "m2mapp"
	c.M2MAppSecretFile = filepath.Join(dir, "secret")
	if err := os.WriteFile(c.M2MAppSecretFile, []byte("  sekrit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.DecisionPublicKeys = []string{writePublicKey(t, dir, "d.pub", pub)}
	return c
}

func TestValidate(t *testing.T) {
	if _, err := func() (*Settings, error) { c := validConfig(t); return c.Validate() }(); err != nil {
		t.Fatalf("Validate(valid config) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"listen addr", func(c *Config) { c.ListenAddr = "8081" }, []string{"--listen-addr"}},
		{"unix without path", func(c *Config) { c.ListenAddr = "unix:" }, []string{"socket path"}},
		{"unix relative path", func(c *Config) { c.ListenAddr = "unix:m.sock" }, []string{"absolute socket path"}},
		{"listen port 0", func(c *Config) { c.ListenAddr = "127.0.0.1:0" }, []string{"--listen-addr", "1 to 65535"}},
		{"listen port too large", func(c *Config) { c.ListenAddr = "0.0.0.0:70000" }, []string{"--listen-addr"}},
		{"listen named port", func(c *Config) { c.ListenAddr = "127.0.0.1:http" }, []string{"--listen-addr"}},
		{"endpoint cleartext to a network host", func(c *Config) { c.LogtoEndpoint = "http://logto.internal:3001" }, []string{"--logto-endpoint", "loopback"}},
		{"endpoint cleartext to a private address", func(c *Config) { c.LogtoEndpoint = "http://10.1.2.3" }, []string{"--logto-endpoint", "loopback"}},
		{"endpoint cleartext to a loopback look-alike", func(c *Config) { c.LogtoEndpoint = "http://localhost.example.com" }, []string{"--logto-endpoint", "loopback"}},
		{"endpoint missing", func(c *Config) { c.LogtoEndpoint = "" }, []string{"--logto-endpoint is required"}},
		{"endpoint with credentials", func(c *Config) { c.LogtoEndpoint = "http://u:p@logto" }, []string{"--logto-endpoint"}},
		{"endpoint ftp", func(c *Config) { c.LogtoEndpoint = "ftp://logto" }, []string{"--logto-endpoint"}},
		{"no app id", func(c *Config) { c.M2MAppID = "" }, []string{"--m2m-app-id"}},
		{"both secrets", func(c *Config) { c.M2MAppSecret = "x" }, []string{"not both"}},
		{"no secret", func(c *Config) { c.M2MAppSecretFile = "" }, []string{"is required"}},
		{"missing secret file", func(c *Config) { c.M2MAppSecretFile = "/nonexistent/secret" }, []string{"secret file"}},
		{"bad resource", func(c *Config) { c.ManagementResource = "not a url" }, []string{"--management-resource"}},
		{"no creator role", func(c *Config) { c.CreatorRoles = nil }, []string{"--creator-role"}},
		{"no public key", func(c *Config) { c.DecisionPublicKeys = nil }, []string{"--decision-public-key is required"}},
		{"unreadable public key", func(c *Config) { c.DecisionPublicKeys = []string{"/nonexistent.pub"} }, []string{"--decision-public-key"}},
		{"bulk rate", func(c *Config) { c.BulkRate = "fast" }, []string{"--bulk-rate"}},
		{"bulk concurrency", func(c *Config) { c.BulkConcurrency = 0 }, []string{"--bulk-concurrency"}},
		{"timeout", func(c *Config) { c.UpstreamTimeout = 0 }, []string{"--upstream-timeout"}},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, []string{"--log-level"}},
		{"member field", func(c *Config) { c.MemberFields = []string{"id", "bad field"} }, []string{"--member-fields"}},
		{"everything at once", func(c *Config) { *c = Config{} }, []string{
			"--listen-addr", "--logto-endpoint", "--m2m-app-id", "ORGAUTHZ_M2M_APP_SECRET", "--creator-role",
			"--decision-public-key", "--bulk-rate", "--bulk-concurrency", "--upstream-timeout", "--log-level", "--member-fields"}},
	} {
		c := validConfig(t)
		tc.change(&c)
		_, err := c.Validate()
		if err == nil {
			t.Errorf("Validate(%s) = nil, want an error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%s) = %q, want it to mention %q", tc.name, err, w)
			}
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"https endpoint", func(c *Config) { c.LogtoEndpoint = "https://tenant.logto.app" }},
		{"localhost endpoint", func(c *Config) { c.LogtoEndpoint = "http://localhost:3001" }},
		{"IPv6 loopback endpoint", func(c *Config) { c.LogtoEndpoint = "http://[::1]:3001/" }},
		{"every interface", func(c *Config) { c.ListenAddr = ":8081" }},
		{"unix socket", func(c *Config) { c.ListenAddr = "unix:/run/orgauthz/m.sock" }},
	} {
		c := validConfig(t)
		tc.change(&c)
		if _, err := c.Validate(); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", tc.name, err)
		}
	}
}

func TestSecretNeverInErrors(t *testing.T) {
	c := validConfig(t)
	c.M2MAppSecretFile = ""
	c.M2MAppSecret = "env-secret-value"
	if s, err := c.secret(); err != nil || s != "env-secret-value" {
		t.Fatalf("secret() = %q, %v; want the environment value", s, err)
	}
	c.M2MAppSecretFile = "/nonexistent"
	if _, err := c.Validate(); err == nil || strings.Contains(err.Error(), "env-secret-value") {
		t.Errorf("Validate with both secrets = %v, want an error without the secret", err)
	}
	c = validConfig(t)
	if s, err := c.secret(); err != nil || s != "sekrit" {
		t.Errorf("secret() from file = %q, %v; want the trimmed file content", s, err)
	}
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, []byte(strings.Repeat("x", maxSecretBytes+1)), 0o600)
	c.M2MAppSecretFile = big
	if _, err := c.secret(); err == nil {
		t.Error("secret() from an oversized file: nil error")
	}
}

func TestManagementResource(t *testing.T) {
	for _, tc := range []struct{ endpoint, set, want string }{
		{"http://127.0.0.1:3001", "", "https://default.logto.app/api"},
		{"https://acme.logto.app", "", "https://acme.logto.app/api"},
		{"https://acme.logto.app/", "", "https://acme.logto.app/api"},
		{"https://evil.acme.logto.app", "", "https://default.logto.app/api"},
		{"https://logto.app", "", "https://default.logto.app/api"},
		{"https://auth.example.com", "", "https://default.logto.app/api"},
		{"https://auth.example.com", "https://acme.logto.app/api", "https://acme.logto.app/api"},
	} {
		c := Config{LogtoEndpoint: tc.endpoint, ManagementResource: tc.set}
		base, _ := c.logtoBase()
		if got := c.managementResource(base); got != tc.want {
			t.Errorf("managementResource(%q, %q) = %q, want %q", tc.endpoint, tc.set, got, tc.want)
		}
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(t.Context(), nil, nil); err == nil {
		t.Error("New(nil settings) = nil error")
	}
}

func TestServeUnixSocket(t *testing.T) {
	c := validConfig(t)
	sock := filepath.Join(t.TempDir(), "m.sock")
	c.ListenAddr = "unix:" + sock
	s, err := c.Validate()
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p, err := New(t.Context(), s, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var resp *http.Response
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err = client.Get("http://mgmtproxy/healthz")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // waiting for the listener, not asserting time
	}
	if err != nil {
		t.Fatalf("GET /healthz over the socket: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz status = %d, want 200", resp.StatusCode)
	}
	cancel()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
}
