package revocation

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/orgauthz/orgauthz/internal/confload"
)

// maxRedisPasswordBytes bounds a --redis-password-file.
const maxRedisPasswordBytes = 1 << 10

// StoreURL turns both binaries' --revocation-store, ORGAUTHZ_REDIS_PASSWORD (password) and
// --redis-password-file (passwordFile) into the URL Open takes: "memory", or the redis:// URL with the
// password set. A password never comes in the URL itself, where it would show in the process list.
// Its errors never hold the URL or the password; the caller prefixes the binary's name.
func StoreURL(store, password, passwordFile string) (string, error) {
	switch {
	case store == "memory" || store == "":
		if password != "" || passwordFile != "" {
			return "", errors.New("a Redis password is set but --revocation-store is memory")
		}
		return "memory", nil
	case !strings.HasPrefix(store, "redis://") && !strings.HasPrefix(store, "rediss://"):
		return "", errors.New(`--revocation-store must be "memory" or redis://host:port/db`)
	}
	u, err := url.Parse(store)
	if err != nil || u.Host == "" {
		return "", errors.New("--revocation-store is not a redis://host:port/db URL")
	}
	if _, set := u.User.Password(); set {
		return "", errors.New("--revocation-store: put the Redis password in --redis-password-file or ORGAUTHZ_REDIS_PASSWORD, not the URL (it would show in the process list)")
	}
	if password != "" && passwordFile != "" {
		return "", errors.New("set --redis-password-file or ORGAUTHZ_REDIS_PASSWORD, not both")
	}
	if passwordFile != "" {
		if password, err = readRedisPassword(passwordFile); err != nil {
			return "", err
		}
	}
	if password != "" {
		u.User = url.UserPassword(u.User.Username(), password)
	}
	return u.String(), nil
}

// readRedisPassword reads a --redis-password-file without surrounding whitespace.
func readRedisPassword(path string) (string, error) {
	raw, err := confload.ReadFile(path, maxRedisPasswordBytes)
	if err != nil {
		return "", fmt.Errorf("--redis-password-file: %w", err)
	}
	pw := strings.TrimSpace(string(raw))
	if pw == "" {
		return "", fmt.Errorf("--redis-password-file %s is empty", path)
	}
	return pw, nil
}
