package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxDiscoveryBytes bounds an OpenID discovery document (Logto's is about 3 KiB).
const maxDiscoveryBytes = 64 << 10

// CheckIssuers fetches each issuer's OpenID discovery document and key set once, as the Verifier
// would, and reports every issuer whose discovery is not found, names another issuer, or whose key
// set has no usable key. cfg must be valid.
func CheckIssuers(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	var errs []error
	for _, iss := range cfg.Issuers {
		if err := checkDiscovery(ctx, &cfg, iss); err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %w", iss, err))
		}
		ks := newKeySet(ctx, iss, &cfg, &counters{})
		if _, err := ks.fetch(); err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %s: %w", iss, ks.url, err))
		}
	}
	return errors.Join(errs...)
}

func checkDiscovery(ctx context.Context, cfg *Config, iss string) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.FetchTimeout)
	defer cancel()
	url := iss + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("discovery %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	if err != nil {
		return fmt.Errorf("discovery %s: %w", url, err)
	}
	if len(body) > maxDiscoveryBytes {
		return fmt.Errorf("discovery %s: over %d bytes", url, maxDiscoveryBytes)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("discovery %s: not a JSON object", url)
	}
	if doc.Issuer != iss {
		return fmt.Errorf("discovery %s: issuer is %.200q, not the configured one", url, doc.Issuer)
	}
	return nil
}
