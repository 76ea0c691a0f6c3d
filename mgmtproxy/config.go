package mgmtproxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/revocation"
)

// Config is everything mgmtproxy needs. Load it with internal/confload: every field with a flag tag is
// also an ORGAUTHZ_* environment variable and a key of the YAML config file. Start from DefaultConfig.
type Config struct {
	// ListenAddr is where mgmtproxy serves: host:port (port 1 to 65535), or unix:/abs/path.sock for
	// a Unix socket. Default 127.0.0.1:8081. Only Envoy (or the front proxy) should reach it:
	// anything that can reach it with a valid decision acts with the M2M app's power.
	ListenAddr string `flag:"listen-addr" usage:"listen address: host:port or unix:/absolute/path.sock"`

	// LogtoEndpoint is Logto's base URL, e.g. https://<tenant>.logto.app, or http to a loopback
	// host (127.0.0.0/8, ::1, localhost) such as the emulator's http://127.0.0.1:3001: the M2M
	// secret and tokens must not cross a network in cleartext. The token endpoint is
	// <endpoint>/oidc/token and the Management API <endpoint>/api. Required.
	LogtoEndpoint string `flag:"logto-endpoint" usage:"Logto base URL, e.g. https://tenant.logto.app; http only to a loopback host, e.g. http://127.0.0.1:3001 (required)"`

	// M2MAppID is the ID of the machine-to-machine app that holds the Management API role. Required.
	M2MAppID string `flag:"m2m-app-id" usage:"ID of the Logto machine-to-machine app"`

	// M2MAppSecretFile is a file holding the M2M app's secret (surrounding whitespace is ignored).
	// Exactly one of M2MAppSecretFile and M2MAppSecret must be set.
	M2MAppSecretFile string `flag:"m2m-app-secret-file" usage:"file holding the M2M app secret"`

	// M2MAppSecret is the M2M app's secret, from the environment or the config file only: a flag value
	// would show in the process list. It never appears in logs, errors or responses.
	M2MAppSecret string `flag:"-" env:"ORGAUTHZ_M2M_APP_SECRET" usage:"the M2M app secret (instead of --m2m-app-secret-file)"`

	// ManagementResource is the Management API resource indicator. Default: derived from
	// LogtoEndpoint, https://<tenant>.logto.app/api for a *.logto.app endpoint and Logto OSS's
	// https://default.logto.app/api otherwise.
	ManagementResource string `flag:"management-resource" usage:"Management API resource indicator (default derived from --logto-endpoint)"`

	// CreatorRoles are the organization roles, by name, given to a user who creates an organization.
	// Default admin.
	CreatorRoles []string `flag:"creator-role" usage:"organization role given to the creator of an organization (repeatable)"`

	// DecisionPublicKeys are PKIX Ed25519 PEM files, or directories of such *.pub files; a
	// decision signed by any of them is accepted. They are reread when they change (rotation: add the
	// new key, switch the sidecar's key, remove the old). At least one is required.
	DecisionPublicKeys []string `flag:"decision-public-key" usage:"PEM file of a public key the sidecar signs decisions with, or a directory of *.pub files; reread when changed (repeatable)"`

	// BulkRate paces the bulk endpoints' calls to Logto, as "<requests>/<duration>". Default 150/10s,
	// under Logto Cloud's limit of about 200 requests per 10 s per tenant.
	BulkRate string `flag:"bulk-rate" usage:"pace of bulk calls to Logto, requests/duration"`

	// BulkConcurrency bounds the Logto calls one bulk request makes at once. Default 4, at most 32.
	BulkConcurrency int `flag:"bulk-concurrency" usage:"Logto calls in flight per bulk request"`

	// OTLPEndpoint, when set, sends a span per call to Logto to this OTLP/HTTP collector (protobuf),
	// continuing the request's W3C traceparent (tracing.go). Default empty: tracing off.
	OTLPEndpoint string `flag:"otlp-endpoint" usage:"OTLP/HTTP collector URL receiving a span per call to Logto, continuing the request's W3C traceparent (default empty: tracing off)"`

	// UpstreamTimeout bounds each call to Logto, token fetches included; a call that takes longer is
	// answered 504. Default 15s.
	UpstreamTimeout time.Duration `flag:"upstream-timeout" usage:"time limit of each call to Logto"`

	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `flag:"log-level" usage:"debug, info, warn or error"`

	// MemberFields are the user fields kept in member listings (GET /api/organizations/{orgId}/users);
	// Logto's other fields (identities, customData, phone, …) are dropped. Default id, username, name,
	// avatar, primaryEmail, organizationRoles.
	MemberFields []string `flag:"member-fields" usage:"user fields kept in member listings (repeatable or comma-separated)"`

	// RevocationStore is "memory" (default: this process only) or redis://host:port/db (rediss:// for
	// TLS), shared with the sidecars and the other replicas: decision claims (single use) and the
	// watermarks of the changes mgmtproxy makes. The Redis password never comes from this value's
	// flag: use RedisPasswordFile or ORGAUTHZ_REDIS_PASSWORD.
	RevocationStore string `flag:"revocation-store" usage:"memory, or redis://host:port/db shared with the sidecars (password from --redis-password-file or ORGAUTHZ_REDIS_PASSWORD)"`

	// RedisPasswordFile is a file holding the Redis password (surrounding whitespace is ignored).
	RedisPasswordFile string `flag:"redis-password-file" usage:"file holding the password of the --revocation-store Redis"`

	// RedisPassword is the Redis password, from the environment or the config file only.
	RedisPassword string `flag:"-" env:"ORGAUTHZ_REDIS_PASSWORD" usage:"the --revocation-store Redis password (instead of --redis-password-file)"`

	// RevocationNotify are sidecar webhook URLs (http://127.0.0.1:9192/logto/webhooks) that get every
	// watermark mgmtproxy makes, signed with LogtoWebhookSecretFile: needed when the sidecar does not
	// share the store (memory).
	RevocationNotify []string `flag:"revocation-notify" usage:"sidecar POST /logto/webhooks URL told of every revocation (repeatable; needs --logto-webhook-secret-file)"`

	// LogtoWebhookSecretFile is the webhook signing key the sidecar checks (the same file).
	LogtoWebhookSecretFile string `flag:"logto-webhook-secret-file" usage:"the sidecar's webhook signing key file, to sign --revocation-notify events"`

	// DecisionLog is the audit stream: stdout (default), a file path, or off.
	DecisionLog string `flag:"decision-log" usage:"audit stream, one JSON record per request: stdout, a file path, or off"`

	// MetricsAddr, when set, serves /metrics on this host:port only; empty keeps it on ListenAddr.
	MetricsAddr string `flag:"metrics-addr" usage:"serve /metrics on ADDR only (default empty: /metrics stays on --listen-addr)"`
}

// DefaultConfig returns a Config with every default set; the required fields are empty.
func DefaultConfig() Config {
	return Config{
		ListenAddr:      "127.0.0.1:8081",
		CreatorRoles:    []string{"admin"},
		BulkRate:        "150/10s",
		BulkConcurrency: 4,
		UpstreamTimeout: 15 * time.Second,
		LogLevel:        "info",
		MemberFields:    []string{"id", "username", "name", "avatar", "primaryEmail", "organizationRoles"},
		RevocationStore: "memory",
		DecisionLog:     decisionlog.SinkStdout,
	}
}

// maxSecretBytes bounds the secret file.
const maxSecretBytes = 4 << 10

var fieldName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// Settings are a Config checked and parsed, each setting once: what New runs on. Only Validate
// makes them, so a Proxy never starts from an unchecked Config.
type Settings struct {
	cfg          Config // as given, for what needs no parsing (listen address, IDs, roles, timeout)
	base         *url.URL
	resource     string // Management API indicator
	secret       string
	verifier     *decision.Verifier
	bulkLimit    rate.Limit
	bulkBurst    int
	memberFields []string
	storeURL     string // RevocationStore with the Redis password
	notify       *revocation.Notifier
}

// Validate reports every problem with c at once and returns the parsed settings. It reads the secret
// and key files: the only place that does.
func (c *Config) Validate() (*Settings, error) {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("mgmtproxy: "+format, a...)) }
	s := &Settings{cfg: *c}

	if path, ok := strings.CutPrefix(c.ListenAddr, "unix:"); ok {
		if path == "" || !filepath.IsAbs(path) {
			add("--listen-addr %q: unix: needs an absolute socket path", c.ListenAddr)
		}
	} else if err := confload.CheckHostPort(c.ListenAddr); err != nil {
		add("--listen-addr %q: %w (or unix:/absolute/path.sock)", c.ListenAddr, err)
	}
	var err error
	if s.base, err = c.logtoBase(); err != nil {
		errs = append(errs, err)
	}
	s.resource = c.managementResource(s.base)
	if c.M2MAppID == "" {
		add("--m2m-app-id is required")
	}
	if s.secret, err = c.secret(); err != nil {
		errs = append(errs, err)
	}
	if c.ManagementResource != "" {
		if u, err := url.Parse(c.ManagementResource); err != nil || !u.IsAbs() || u.Host == "" {
			add("--management-resource %q is not an absolute URL", c.ManagementResource)
		}
	}
	if len(c.CreatorRoles) == 0 {
		add("--creator-role: at least one role is required")
	}
	for _, r := range c.CreatorRoles {
		if strings.TrimSpace(r) == "" || len(r) > 128 {
			add("--creator-role %q is not a role name", r)
		}
	}
	if len(c.DecisionPublicKeys) == 0 {
		add("--decision-public-key is required")
	} else if s.verifier, err = loadVerifier(c.DecisionPublicKeys); err != nil {
		add("--decision-public-key: %w", err)
	}
	if s.bulkLimit, s.bulkBurst, err = parseRate(c.BulkRate); err != nil {
		errs = append(errs, err)
	}
	if c.BulkConcurrency < 1 || c.BulkConcurrency > 32 {
		add("--bulk-concurrency %d: want 1 to 32", c.BulkConcurrency)
	}
	if err := checkOTLPEndpoint(c.OTLPEndpoint); err != nil {
		add("--otlp-endpoint: %w", err)
	}
	if c.UpstreamTimeout <= 0 {
		add("--upstream-timeout %v: want a positive duration", c.UpstreamTimeout)
	}
	if _, err := confload.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("mgmtproxy: --log-level: %w", err))
	}
	s.memberFields = c.memberFields()
	if len(s.memberFields) == 0 {
		add("--member-fields: at least one field is required")
	}
	for _, f := range s.memberFields {
		if !fieldName.MatchString(f) {
			add("--member-fields %q is not a field name", f)
		}
	}
	if s.storeURL, err = revocation.StoreURL(c.RevocationStore, c.RedisPassword, c.RedisPasswordFile); err != nil {
		errs = append(errs, fmt.Errorf("mgmtproxy: %w", err))
	}
	if s.notify, err = c.notifier(); err != nil {
		errs = append(errs, err)
	}
	if err := decisionlog.CheckSink(c.DecisionLog); err != nil {
		add("--decision-log: %w", err)
	}
	if c.MetricsAddr != "" {
		if err := confload.CheckHostPort(c.MetricsAddr); err != nil {
			add("--metrics-addr %q: %w", c.MetricsAddr, err)
		} else if c.MetricsAddr == c.ListenAddr {
			add("--metrics-addr %q is --listen-addr: leave it empty to serve /metrics there", c.MetricsAddr)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// notifier returns the Notifier of RevocationNotify, or nil when it is empty.
func (c *Config) notifier() (*revocation.Notifier, error) {
	if len(c.RevocationNotify) == 0 {
		if c.LogtoWebhookSecretFile != "" {
			return nil, errors.New("mgmtproxy: --logto-webhook-secret-file is set but no --revocation-notify uses it")
		}
		return nil, nil
	}
	var errs []error
	for _, n := range c.RevocationNotify {
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("mgmtproxy: --revocation-notify %q: want the sidecar's http(s)://host:port%s", n, revocation.WebhookPath))
		}
	}
	if c.LogtoWebhookSecretFile == "" {
		errs = append(errs, errors.New("mgmtproxy: --revocation-notify needs --logto-webhook-secret-file (the sidecar's)"))
		return nil, errors.Join(errs...)
	}
	secret, err := revocation.LoadWebhookSecret(c.LogtoWebhookSecretFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("mgmtproxy: --logto-webhook-secret-file: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &revocation.Notifier{URLs: c.RevocationNotify, Secret: secret,
		Client: &http.Client{Timeout: notifyTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// notifyTimeout bounds each --revocation-notify delivery: the client waits for them.
const notifyTimeout = 2 * time.Second

// logtoBase parses LogtoEndpoint.
func (c *Config) logtoBase() (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(c.LogtoEndpoint, "/"))
	if c.LogtoEndpoint == "" {
		return nil, errors.New("mgmtproxy: --logto-endpoint is required")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("mgmtproxy: --logto-endpoint %q: want an http(s) URL without credentials, query or fragment", c.LogtoEndpoint)
	}
	if err := confload.CheckTransport(u); err != nil {
		return nil, fmt.Errorf("mgmtproxy: --logto-endpoint %q: %w", c.LogtoEndpoint, err)
	}
	return u, nil
}

// managementResource returns ManagementResource or the one derived from base, the parsed
// LogtoEndpoint (nil when it is invalid).
func (c *Config) managementResource(base *url.URL) string {
	if c.ManagementResource != "" {
		return c.ManagementResource
	}
	if base != nil {
		if tenant, ok := strings.CutSuffix(base.Hostname(), ".logto.app"); ok && tenant != "" && !strings.Contains(tenant, ".") {
			return "https://" + tenant + ".logto.app/api"
		}
	}
	return "https://default.logto.app/api"
}

// secret returns the M2M app secret from the file or the environment. Its errors never hold the secret.
func (c *Config) secret() (string, error) {
	switch {
	case c.M2MAppSecretFile != "" && c.M2MAppSecret != "":
		return "", errors.New("mgmtproxy: set --m2m-app-secret-file or ORGAUTHZ_M2M_APP_SECRET, not both")
	case c.M2MAppSecret != "":
		return c.M2MAppSecret, nil
	case c.M2MAppSecretFile == "":
		return "", errors.New("mgmtproxy: --m2m-app-secret-file or ORGAUTHZ_M2M_APP_SECRET is required")
	}
	return readSecretFile(c.M2MAppSecretFile, "m2m app secret")
}

// readSecretFile reads a secret of at most maxSecretBytes, without surrounding whitespace. Its errors
// never hold the secret.
func readSecretFile(path, what string) (string, error) {
	raw, err := confload.ReadFile(path, maxSecretBytes)
	if err != nil {
		return "", fmt.Errorf("mgmtproxy: %s file: %w", what, err)
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "", fmt.Errorf("mgmtproxy: %s file %s is empty", what, path)
	}
	return s, nil
}

// parseRate parses "<requests>/<duration>", e.g. "150/10s", into a limiter rate and the request count.
func parseRate(s string) (rate.Limit, int, error) {
	n, per, ok := strings.Cut(s, "/")
	count, err1 := strconv.Atoi(n)
	d, err2 := time.ParseDuration(per)
	if !ok || err1 != nil || err2 != nil || count < 1 || d <= 0 {
		return 0, 0, fmt.Errorf("mgmtproxy: --bulk-rate %q: want <requests>/<duration>, e.g. 150/10s", s)
	}
	return rate.Limit(float64(count) / d.Seconds()), count, nil
}

// memberFields returns MemberFields with comma-separated entries split, so "--member-fields id,name"
// works like the environment variable.
func (c *Config) memberFields() []string {
	var out []string
	for _, f := range c.MemberFields {
		for part := range strings.SplitSeq(f, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}
