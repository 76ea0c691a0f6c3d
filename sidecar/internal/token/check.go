package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	url := iss + "/.well-known/openid-configuration"
	body, err := getDocument(ctx, cfg, "discovery", url, "application/json", maxDiscoveryBytes)
	if err != nil {
		return err
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return errors.New("token: discovery is not a JSON object")
	}
	if doc.Issuer != iss {
		return fmt.Errorf("token: discovery names issuer %.200q, not the configured one", doc.Issuer)
	}
	return nil
}
