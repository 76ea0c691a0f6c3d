package sidecar

import (
	"errors"
	"net/url"
)

// checkOTLPEndpoint accepts an http(s) URL without user, query or fragment.
func checkOTLPEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("not an http(s) URL without user, query or fragment")
	}
	return nil
}
