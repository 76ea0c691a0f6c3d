package confload

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// IsLoopback reports whether host, a URL's Hostname or a listen address's host, is this machine:
// "localhost" or an address in 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// CheckTransport reports an error unless u is https or, for a loopback host, http: cleartext to
// anything else lets the network read secrets or forge what the server answers.
func CheckTransport(u *url.URL) error {
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && IsLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https for %s", u.Hostname())
	}
	return errors.New("want an https URL")
}

// CheckHostPort reports an error unless addr is host:port with a numeric port from 1 to 65535.
// The host may be empty (every interface).
func CheckHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}
