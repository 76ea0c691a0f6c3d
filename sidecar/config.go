// Package sidecar is the orgauthz authorization server: an Envoy ext_authz v3 gRPC service and the
// same decision over HTTP for proxies without gRPC ext_authz. For each request it canonicalises the
// method and path, verifies the Logto access token, evaluates the Rego policy on the verified facts
// and answers allow (with a signed decision for mgmtproxy) or deny. Every failure to decide is a
// deny; see DESIGN.md, "Request flow in the sidecar".
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/confload"
	"github.com/orgauthz/orgauthz/internal/tracing"
	"github.com/orgauthz/orgauthz/sidecar/internal/policy"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// Limits of the settings Validate accepts; the token verifier's own (clock skew, algorithms) are
// token.MaxClockSkew and token.SupportedAlgorithms.
const (
	// MaxBodyLimit bounds --max-body-bytes: a body rides inside the CheckRequest, which is bounded
	// by maxRecvMsgBytes.
	MaxBodyLimit = 256 << 10
	// MinJWKSRefresh bounds --jwks-refresh from below, so a misconfiguration cannot hammer Logto.
	MinJWKSRefresh = 10 * time.Second
)

// Config is the whole configuration of the sidecar. Each field is also a flag, an ORGAUTHZ_*
// environment variable and a YAML key of the same name (see internal/confload). Start from
// Default; Validate reports every problem at once.
type Config struct {
	// Issuers are the exact Logto issuers accepted (iss), e.g. "https://tenant.logto.app/oidc".
	// Each one's keys are read from issuer+"/jwks", so it must be https, or http to a loopback
	// host (127.0.0.0/8, ::1, localhost) such as the emulator's "http://127.0.0.1:3001/oidc": keys
	// fetched in cleartext over a network could be replaced and tokens forged. No normalisation:
	// a trailing slash or another scheme is another issuer. Required. Danger: every token an
	// issuer listed here signs is trusted; list only your own tenant.
	Issuers []string `flag:"issuer" usage:"accepted Logto issuer, exactly as in the token's iss; https, or http only to a loopback host (repeatable; required)"`
	// APIResource is the app's API resource indicator: tokens for it are organization_api (with
	// organization_id) or global_api. Required.
	APIResource string `flag:"api-resource" usage:"the app's API resource indicator (organization_api and global_api tokens; required)"`
	// AdminResource is the indicator whose permissions only global roles grant: tokens for it
	// are admin. Required. Danger: it MUST NOT be the API resource, and its permissions MUST NOT
	// be attached to any organization role.
	AdminResource string `flag:"admin-resource" usage:"the admin resource indicator (admin tokens; grant its permissions only through global roles; required)"`
	// Policies is the directory of Rego modules and data, watched for changes. Default "policies".
	Policies string `flag:"policies" usage:"directory of Rego policies and data (package orgauthz), hot-reloaded"`
	// GRPCAddr is the ext_authz gRPC listen address, host:port. Default 127.0.0.1:9191. Danger: the service
	// has no authentication of its own; keep it on loopback or a private network.
	GRPCAddr string `flag:"grpc-addr" usage:"ext_authz gRPC listen address"`
	// HTTPAddr serves /healthz, /readyz, /metrics, /envoy/… and /forward-auth. Default
	// 127.0.0.1:9192; the same danger as GRPCAddr.
	HTTPAddr string `flag:"http-addr" usage:"HTTP listen address: health, metrics and the HTTP check endpoints"`
	// DecisionKey is the PEM file of the Ed25519 PKCS#8 private key signing decisions (`sidecar
	// keygen` writes one). Required. Danger: whoever holds it can authorize anything mgmtproxy
	// does; readable only by the sidecar.
	DecisionKey string `flag:"decision-key" usage:"PEM Ed25519 PKCS#8 private key signing decisions (required; see 'sidecar keygen')"`
	// DecisionTTL is how long a signed decision is valid, in whole seconds. Default 30s, at most 30s.
	DecisionTTL time.Duration `flag:"decision-ttl" usage:"lifetime of a signed decision (1s to 30s)"`
	// ClockSkew is the one leeway for the token's exp, nbf and iat. Default 60s, at most 5m.
	ClockSkew time.Duration `flag:"clock-skew" usage:"leeway for token exp, nbf and iat (0 to 5m)"`
	// TokenCacheSize bounds the cache of verified claims. Default 100000; 0 disables the cache.
	// The cache never answers an authorization question: the policy runs on every request.
	TokenCacheSize int `flag:"token-cache-size" usage:"verified token claims kept in an LRU (0 disables)"`
	// LogLevel is debug, info, warn or error. Default info; every decision is logged at info.
	LogLevel string `flag:"log-level" usage:"log level: debug, info, warn or error"`
	// Algorithms are the accepted JWS algorithms. Default ES384 and RS256 (Logto's). Only
	// asymmetric algorithms may be listed.
	Algorithms []string `flag:"algorithms" usage:"accepted token signing algorithms (asymmetric only)"`
	// TrustedProxies are the CIDRs (or single addresses) whose X-Forwarded-Method/-Uri and
	// X-Original-Method/-URI headers /forward-auth honours. Default 127.0.0.1/32 and ::1/128.
	// Danger: a trusted peer chooses the method and path the policy sees.
	TrustedProxies []string `flag:"trusted-proxy" usage:"CIDR of a proxy allowed to call /forward-auth (repeatable)"`
	// GRPCReflection enables gRPC server reflection (for ghz and grpcurl). Default off.
	GRPCReflection bool `flag:"grpc-reflection" usage:"enable gRPC server reflection (for ghz, grpcurl)"`
	// MaxBodyBytes is the largest request body parsed as JSON for the policy; a larger one is
	// null in the input (but still bound by the decision; a body seen only in part is 413). Default
	// 16384, at most 256 KiB; match Envoy's max_request_bytes.
	MaxBodyBytes int `flag:"max-body-bytes" usage:"largest JSON request body given to the policy"`
	// JWKSRefresh is how often each issuer's key set is refetched. Default 5m, at least 10s.
	JWKSRefresh time.Duration `flag:"jwks-refresh" usage:"how often the issuers' JWKS are refetched"`
	// MetricsAddr, when set, serves /metrics on this host:port only (HTTPAddr then answers 404
	// there), so a scraper reaches metrics without reaching the check endpoints. Default empty.
	MetricsAddr string `flag:"metrics-addr" usage:"serve /metrics on ADDR only (default empty: /metrics stays on --http-addr)"`
	// OTLPEndpoint, when set, sends a span per check to this OTLP/HTTP collector (protobuf), e.g.
	// http://127.0.0.1:4318 (spans go to its /v1/traces; a URL with a path is used as is). Default
	// empty: tracing off, at no cost to a check.
	OTLPEndpoint string `flag:"otlp-endpoint" usage:"OTLP/HTTP collector URL receiving a span per check, continuing the request's W3C traceparent (default empty: tracing off)"`
	// CheckOffline makes --check skip fetching each issuer's discovery document and key set.
	CheckOffline bool `flag:"check-offline" usage:"with --check: do not fetch the issuers' discovery and JWKS"`

	// Revocation (revocation.go): where the "not before" watermarks live, and Logto's webhook key.
	RevocationStore        string `flag:"revocation-store" usage:"revocation watermarks: memory (this process), or redis://host:port/db shared with every replica and mgmtproxy (password from --redis-password-file or ORGAUTHZ_REDIS_PASSWORD)"`
	RedisPasswordFile      string `flag:"redis-password-file" usage:"file holding the password of the --revocation-store Redis"`
	RedisPassword          string `flag:"-" env:"ORGAUTHZ_REDIS_PASSWORD" usage:"the --revocation-store Redis password (instead of --redis-password-file)"`
	LogtoWebhookSecretFile string `flag:"logto-webhook-secret-file" usage:"file holding the Logto webhook signing key; enables POST /logto/webhooks on --http-addr (and mgmtproxy's --revocation-notify)"`
	// OPAConfig is a file of OPA's own configuration (YAML or JSON: services, keys, labels,
	// bundles, decision_logs, status) that drives OPA's plugin manager. With bundles, the policy
	// comes from the activated bundle(s) and --policies is not read; each bundle passes the same
	// checks as a policy directory and the sidecar is not ready until one is installed. With
	// decision_logs, every audit record is also uploaded in OPA's batched protocol. Default empty.
	OPAConfig string `flag:"opa-config" usage:"OPA configuration FILE (services, keys, bundles, decision_logs, status): policy from signed bundles instead of --policies, decision logs uploaded in OPA's protocol"`
	// DecisionLog is the audit stream's sink: stdout, a file path (append-only, mode 0600, reopened
	// on rotation and SIGHUP) or off. One JSON record per decision, whatever --log-level says.
	// Default stdout; the operational log stays on stderr.
	DecisionLog string `flag:"decision-log" usage:"audit stream of every decision, one JSON object per line: stdout, a file PATH or off (independent of --log-level)"`
}

// Default returns the Config with every default filled in.
func Default() Config {
	return Config{
		Policies:       "policies",
		GRPCAddr:       "127.0.0.1:9191",
		HTTPAddr:       "127.0.0.1:9192",
		DecisionTTL:    decision.MaxTTL,
		ClockSkew:      60 * time.Second,
		TokenCacheSize: 100_000,
		LogLevel:       "info",
		Algorithms:     []string{"ES384", "RS256"},
		TrustedProxies: []string{"127.0.0.1/32", "::1/128"},
		MaxBodyBytes:   16 << 10,
		JWKSRefresh:    5 * time.Minute,

		RevocationStore: "memory",
		DecisionLog:     decisionlog.SinkStdout,
	}
}

// Valid is a Config that Validate accepted, with what Validate parsed and loaded: New builds a
// Server from it without parsing anything again.
type Valid struct {
	Config
	level   slog.Level
	trusted []netip.Prefix
	signer  *decision.Signer
	tokens  token.Config
	revoc   revocationConfig
	opa     *opaConfig // nil without --opa-config
}

// NewLogger returns the JSON logger the sidecar writes, at the configured level.
func (v *Valid) NewLogger(w io.Writer) *slog.Logger { return confload.NewLogger(w, v.level) }

// Validate reports every problem with c at once, reading the decision key; when there is none it
// returns what it parsed.
func (c Config) Validate() (*Valid, error) {
	v := &Valid{Config: c}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("sidecar: "+format, args...)) }

	if len(c.Issuers) == 0 {
		bad("--issuer is required")
	}
	for _, iss := range c.Issuers {
		u, err := url.Parse(iss)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("--issuer %q is not an http(s) URL without query or fragment", iss)
		} else if err := confload.CheckTransport(u); err != nil {
			bad("--issuer %q: %w", iss, err)
		}
	}
	if c.APIResource != "" && c.APIResource == c.AdminResource {
		bad("--admin-resource must differ from --api-resource")
	}
	for _, s := range []struct{ flag, value string }{{"api-resource", c.APIResource}, {"admin-resource", c.AdminResource}} {
		if s.value == "" {
			bad("--%s is required", s.flag)
		} else if u, err := url.Parse(s.value); err != nil || u.Scheme == "" {
			bad("--%s %q is not an absolute URI", s.flag, s.value)
		}
	}
	if c.Policies == "" {
		bad("--policies is required")
	}
	for _, s := range []struct{ flag, value string }{{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr}} {
		if err := confload.CheckHostPort(s.value); err != nil {
			bad("--%s %q: %w", s.flag, s.value, err)
		}
	}
	if c.GRPCAddr != "" && c.GRPCAddr == c.HTTPAddr {
		bad("--grpc-addr and --http-addr are both %s", c.GRPCAddr)
	}
	if c.MetricsAddr != "" {
		if err := confload.CheckHostPort(c.MetricsAddr); err != nil {
			bad("--metrics-addr %q: %w", c.MetricsAddr, err)
		} else if c.MetricsAddr == c.GRPCAddr || c.MetricsAddr == c.HTTPAddr {
			bad("--metrics-addr %s is also --grpc-addr or --http-addr", c.MetricsAddr)
		}
	}
	if c.OTLPEndpoint != "" {
		if err := tracing.CheckEndpoint(c.OTLPEndpoint); err != nil {
			bad("--otlp-endpoint: %w", err)
		}
	}
	ttlOK := c.DecisionTTL >= time.Second && c.DecisionTTL <= decision.MaxTTL && c.DecisionTTL%time.Second == 0
	if !ttlOK {
		bad("--decision-ttl %s is not whole seconds between 1s and %s", c.DecisionTTL, decision.MaxTTL)
	}
	if c.DecisionKey == "" {
		bad("--decision-key is required (create one with 'sidecar keygen')")
	} else if ttlOK {
		signer, err := decision.LoadSigner(c.DecisionKey, c.DecisionTTL)
		if err != nil {
			bad("decision key: %w", err)
		}
		v.signer = signer
	}
	if c.ClockSkew < 0 || c.ClockSkew > token.MaxClockSkew {
		bad("--clock-skew %s is not between 0 and %s", c.ClockSkew, token.MaxClockSkew)
	}
	if c.TokenCacheSize < 0 {
		bad("--token-cache-size %d is negative", c.TokenCacheSize)
	}
	level, err := confload.ParseLevel(c.LogLevel)
	if err != nil {
		bad("--log-level: %w", err)
	}
	v.level = level
	if len(c.Algorithms) == 0 {
		bad("--algorithms is empty")
	}
	for _, alg := range c.Algorithms {
		if !slices.Contains(token.SupportedAlgorithms, alg) {
			bad("--algorithms: %q is not one of %s", alg, strings.Join(token.SupportedAlgorithms, ", "))
		}
	}
	if v.trusted, err = parsePrefixes(c.TrustedProxies); err != nil {
		bad("--trusted-proxy: %w", err)
	}
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > MaxBodyLimit {
		bad("--max-body-bytes %d is not between 0 and %d", c.MaxBodyBytes, MaxBodyLimit)
	}
	if c.JWKSRefresh < MinJWKSRefresh {
		bad("--jwks-refresh %s is shorter than %s", c.JWKSRefresh, MinJWKSRefresh)
	}
	if v.revoc, err = c.revocationConfig(); err != nil {
		errs = append(errs, err)
	}
	if err := decisionlog.CheckSink(c.DecisionLog); err != nil {
		bad("--decision-log: %w", err)
	}
	if c.OPAConfig != "" {
		if v.opa, err = readOPAConfig(c.OPAConfig); err != nil {
			bad("--opa-config %s: %w", c.OPAConfig, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	v.tokens = token.Config{
		Issuers:         c.Issuers,
		APIResource:     c.APIResource,
		AdminResource:   c.AdminResource,
		Algorithms:      c.Algorithms,
		ClockSkew:       c.ClockSkew,
		CacheSize:       c.TokenCacheSize,
		RefreshInterval: c.JWKSRefresh,
	}
	if err := v.tokens.Validate(); err != nil {
		return nil, fmt.Errorf("sidecar: %w", err) // a bound the token verifier has that the flags above miss
	}
	return v, nil
}

// Check is what --check does: Validate (which loads the decision key), compile the policy
// directory as New would and, unless CheckOffline, fetch each issuer's discovery document and key
// set once (a 404, another issuer's discovery or no usable key fails). It reports every problem
// at once. The warnings are the policy's routes mgmtproxy would not carry out as the policy allows
// them (decision.RouteDrift): not errors, since an application may route them elsewhere.
func (c Config) Check(ctx context.Context) (warnings []string, err error) {
	v, verr := c.Validate()
	errs := []error{verr}
	if v != nil && !c.CheckOffline {
		if err := token.CheckIssuers(ctx, v.tokens); err != nil {
			errs = append(errs, fmt.Errorf("sidecar: %w", err))
		}
	}
	if v != nil && v.opa != nil {
		if _, err := newOPARuntime(v.opa, nil); err != nil {
			errs = append(errs, fmt.Errorf("sidecar: --opa-config %s: %w", c.OPAConfig, err))
		}
	}
	if v != nil && v.opa != nil && v.opa.bundles {
		// The policy comes from the bundles: their checks run when each one activates.
	} else if c.Policies != "" {
		if err := policyDir(c.Policies); err != nil {
			errs = append(errs, err)
		} else if routes, err := policy.Check(ctx, c.Policies); err != nil {
			errs = append(errs, fmt.Errorf("sidecar: policy directory %q: %w", c.Policies, err))
		} else {
			warnings = decision.RouteDrift(routes)
		}
	}
	return warnings, errors.Join(errs...)
}

// policyDir says in one line what is wrong with the policy directory, if it is missing or not a
// directory, naming the working directory a relative path is read from.
func policyDir(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil && fi.IsDir() {
		return nil
	}
	where := fmt.Sprintf("%q", dir)
	if !filepath.IsAbs(dir) {
		if wd, err := os.Getwd(); err == nil {
			where += " (relative to " + wd + ")"
		}
	}
	switch {
	case err == nil:
		return fmt.Errorf("sidecar: policy directory %s is not a directory", where)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("sidecar: policy directory %s does not exist", where)
	}
	return fmt.Errorf("sidecar: policy directory %s: %w", where, err)
}

// parsePrefixes reads CIDRs; a bare address is a single-address prefix.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q is not a CIDR or an address", s))
	}
	return out, errors.Join(errs...)
}
