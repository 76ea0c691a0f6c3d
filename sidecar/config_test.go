package sidecar

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

// validConfig returns a Config that passes Validate, with a decision key of its own.
func validConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	c := Default()
	c.Issuers = []string{"http://127.0.0.1:3001/oidc"}
	c.APIResource, c.AdminResource = "https://api.example.com", "https://admin.example.com"
	c.DecisionKey = filepath.Join(dir, "decision.pem")
	if err := decision.GenerateKey(c.DecisionKey, filepath.Join(dir, "decision.pub.pem")); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	good := validConfig(t)
	v, err := good.Validate()
	if err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	// What New builds from: the parsed values, the settings' one default each, nothing re-read.
	if v.signer == nil || v.level != slog.LevelInfo || len(v.trusted) != 2 || v.tokens.ClockSkew != good.ClockSkew ||
		v.tokens.CacheSize != good.TokenCacheSize || v.tokens.RefreshInterval != good.JWKSRefresh || !slices.Equal(v.tokens.Algorithms, good.Algorithms) {
		t.Errorf("Validate(good) = %+v, want the parsed settings", v)
	}
	bad := Config{
		Issuers:        []string{"ftp://x", "http://x/oidc?q=1", "http://tenant.logto.app/oidc"},
		APIResource:    "https://same",
		AdminResource:  "https://same",
		GRPCAddr:       "nope",
		HTTPAddr:       "127.0.0.1:0",
		DecisionTTL:    time.Minute,
		ClockSkew:      time.Hour,
		TokenCacheSize: -1,
		LogLevel:       "loud",
		Algorithms:     []string{"HS256", "none"},
		TrustedProxies: []string{"10.0.0.0/33", "not-an-ip"},
		MaxBodyBytes:   -1,
		JWKSRefresh:    time.Second,
		DecisionLog:    "/no/such/dir/d.jsonl",
	}
	_, err = bad.Validate()
	if err == nil {
		t.Fatal("Validate(bad) = nil")
	}
	for _, want := range []string{
		`--issuer "ftp://x"`, `--issuer "http://x/oidc?q=1"`, `--issuer "http://tenant.logto.app/oidc": http is allowed only to a loopback host`,
		"--admin-resource must differ", "--policies is required", `--grpc-addr "nope"`, `--http-addr "127.0.0.1:0"`,
		"--decision-key is required", "--decision-ttl", "--clock-skew", "--token-cache-size", "--log-level",
		`"HS256"`, `"none"`, `"10.0.0.0/33"`, `"not-an-ip"`, "--max-body-bytes", "--jwks-refresh",
		"--decision-log: decisionlog: sink \"/no/such/dir/d.jsonl\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q:\n%v", want, err)
		}
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 18 {
		t.Errorf("Validate reported %d problems, want each of 18 separately:\n%v", len(joined.Unwrap()), err)
	}
	none := Config{}
	_, err = none.Validate()
	for _, want := range []string{"--issuer is required", "--api-resource is required", "--admin-resource is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(zero) = %v, want %q", err, want)
		}
	}
}

func TestConfigValidateSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string // "" means valid
	}{
		{"https issuer", func(c *Config) { c.Issuers = []string{"https://tenant.logto.app/oidc"} }, ""},
		{"loopback issuers", func(c *Config) {
			c.Issuers = []string{"http://127.0.0.1:3001/oidc", "http://[::1]:3001/oidc", "http://localhost:3001/oidc"}
		}, ""},
		{"cleartext issuer", func(c *Config) { c.Issuers = []string{"http://logto.internal:3001/oidc"} }, "loopback"},
		{"cleartext private address", func(c *Config) { c.Issuers = []string{"http://10.0.0.5/oidc"} }, "loopback"},
		{"loopback look-alike", func(c *Config) { c.Issuers = []string{"http://127.0.0.1.nip.io/oidc"} }, "loopback"},
		{"no api resource", func(c *Config) { c.APIResource = "" }, "--api-resource is required"},
		{"no admin resource", func(c *Config) { c.AdminResource = "" }, "--admin-resource is required"},
		{"any interface", func(c *Config) { c.GRPCAddr = ":9191" }, ""},
		{"port 0", func(c *Config) { c.GRPCAddr = "127.0.0.1:0" }, "--grpc-addr"},
		{"port too large", func(c *Config) { c.HTTPAddr = "127.0.0.1:65536" }, "--http-addr"},
		{"named port", func(c *Config) { c.HTTPAddr = "127.0.0.1:http" }, "--http-addr"},
		{"no port", func(c *Config) { c.HTTPAddr = "127.0.0.1" }, "--http-addr"},
		{"no leeway, no cache", func(c *Config) { c.ClockSkew, c.TokenCacheSize = 0, 0 }, ""},
		{"most leeway", func(c *Config) { c.ClockSkew = 5 * time.Minute }, ""},
		{"leeway over the bound", func(c *Config) { c.ClockSkew = 5*time.Minute + time.Second }, "--clock-skew"},
		{"issuer twice", func(c *Config) { c.Issuers = []string{c.Issuers[0], c.Issuers[0]} }, "listed twice"},
		{"unreadable key", func(c *Config) { c.DecisionKey += ".missing" }, "decision key:"},
		{"metrics port", func(c *Config) { c.MetricsAddr = ":9090" }, ""},
		{"metrics on the HTTP address", func(c *Config) { c.MetricsAddr = c.HTTPAddr }, "--metrics-addr"},
		{"metrics port 0", func(c *Config) { c.MetricsAddr = "127.0.0.1:0" }, "--metrics-addr"},
		{"otlp collector", func(c *Config) { c.OTLPEndpoint = "http://otel-collector:4318" }, ""},
		{"otlp not a URL", func(c *Config) { c.OTLPEndpoint = "otel-collector:4318" }, "--otlp-endpoint"},
		{"otlp with a user", func(c *Config) { c.OTLPEndpoint = "https://u:p@collector" }, "--otlp-endpoint"},
	} {
		c := validConfig(t)
		tc.change(&c)
		_, err := c.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Validate(%s) = %v, want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Validate(%s) = %v, want an error mentioning %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "decision.pem")
	if err := decision.GenerateKey(key, filepath.Join(dir, "decision.pub.pem")); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(dir, "not-a-key.pem")
	if err := os.WriteFile(notKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "x.rego"), []byte("package orgauthz\n\ndecision := {"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	opaFile := func(body string) string {
		f := filepath.Join(t.TempDir(), "opa.yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	bundles := opaFile("services: {s: {url: 'http://127.0.0.1:1'}}\nbundles: {authz: {service: s, resource: /b.tar.gz}}\n")
	nowhere := opaFile("bundles: {authz: {service: nowhere, resource: /b.tar.gz}}\n")

	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string // nil means ok
		never  []string
	}{
		{"ok", func(c *Config) {}, nil, nil},
		{"every problem at once", func(c *Config) { c.Issuers = nil; c.DecisionKey = notKey; c.Policies = broken },
			[]string{"--issuer is required", "decision key", `policy directory "` + broken + `"`}, nil},
		{"missing relative directory", func(c *Config) { c.Policies = "no-such-policies" },
			[]string{`sidecar: policy directory "no-such-policies" (relative to ` + wd + `) does not exist`}, []string{"lstat", "policy:"}},
		{"missing absolute directory", func(c *Config) { c.Policies = filepath.Join(dir, "gone") },
			[]string{`sidecar: policy directory "` + filepath.Join(dir, "gone") + `" does not exist`}, []string{"relative to", "lstat"}},
		{"file, not a directory", func(c *Config) { c.Policies = key },
			[]string{`policy directory "` + key + `" is not a directory`}, nil},
		{"bundles replace --policies", func(c *Config) { c.OPAConfig = bundles; c.Policies = filepath.Join(dir, "gone") }, nil, nil},
		{"bundle of an unknown service", func(c *Config) { c.OPAConfig = nowhere },
			[]string{"--opa-config " + nowhere, "nowhere"}, nil},
		{"opa-config missing", func(c *Config) { c.OPAConfig = filepath.Join(dir, "none.yaml") },
			[]string{"--opa-config " + filepath.Join(dir, "none.yaml")}, nil},
		{"no key, no duplicate", func(c *Config) { c.DecisionKey = "" },
			[]string{"--decision-key is required"}, []string{"decision key:"}},
	} {
		c := validConfig(t)
		c.DecisionKey, c.Policies, c.CheckOffline = key, "../policies", true
		tc.change(&c)
		_, err := c.Check(t.Context())
		if tc.want == nil {
			if err != nil {
				t.Errorf("Check(%s) = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Check(%s) = nil, want an error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Check(%s) = %v\nwant it to mention %q", tc.name, err, w)
			}
		}
		for _, n := range tc.never {
			if strings.Contains(err.Error(), n) {
				t.Errorf("Check(%s) = %v\nwant it not to mention %q", tc.name, err, n)
			}
		}
	}
}
