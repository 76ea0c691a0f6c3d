package confload

import (
	"net/url"
	"strings"
	"testing"
)

func TestCheckTransport(t *testing.T) {
	for _, tc := range []struct {
		url     string
		wantErr string // "" means accepted
	}{
		{"https://tenant.logto.app/oidc", ""},
		{"https://10.0.0.1:3001", ""},
		{"http://127.0.0.1:3001/oidc", ""},
		{"http://127.9.8.7", ""},
		{"http://[::1]:3001", ""},
		{"http://[::ffff:127.0.0.1]:3001", ""},
		{"http://localhost:3001", ""},
		{"http://LOCALHOST:3001", ""},
		{"http://tenant.logto.app/oidc", "loopback"},
		{"http://10.0.0.1:3001", "loopback"},
		{"http://128.0.0.1", "loopback"},
		{"http://[::2]", "loopback"},
		{"http://localhost.evil.com", "loopback"},
		{"http://127.0.0.1.evil.com", "loopback"},
		{"http://127.1", "loopback"},
		{"http://0.0.0.0:3001", "loopback"},
		{"ftp://127.0.0.1", "https"},
		{"HTTP://tenant", "loopback"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tc.url, err)
		}
		err = CheckTransport(u)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckTransport(%q) = %v, want nil", tc.url, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckTransport(%q) = %v, want an error mentioning %q", tc.url, err, tc.wantErr)
		}
	}
}

func TestCheckHostPort(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:9191", true},
		{"0.0.0.0:1", true},
		{":65535", true},
		{"[::1]:8081", true},
		{"localhost:8081", true},
		{"127.0.0.1:0", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:-1", false},
		{"127.0.0.1:+80", false},
		{"127.0.0.1:080", false},
		{"127.0.0.1:http", false},
		{"127.0.0.1:", false},
		{"127.0.0.1", false},
		{"9191", false},
		{"::1:9191", false},
		{"", false},
		{"127.0.0.1:99999999999999999999", false},
	} {
		if err := CheckHostPort(tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckHostPort(%q) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}
