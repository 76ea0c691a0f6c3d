package version_test

import (
	"bytes"
	"testing"

	"github.com/orgauthz/orgauthz/internal/version"
)

func TestRequested(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"--config", "c.yaml", "--version"}, true},
		{nil, false},
		{[]string{"--check"}, false},
		{[]string{"--versions"}, false},
		{[]string{"--version=true"}, false}, // left to the flag parser, which rejects it
		{[]string{"--", "--version"}, false},
	} {
		if got := version.Requested(tc.args); got != tc.want {
			t.Errorf("Requested(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	version.Print(&b, "sidecar")
	if got := b.String(); got != "sidecar dev\n" {
		t.Errorf("Print = %q, want %q (no -ldflags in a test binary)", got, "sidecar dev\n")
	}
}

func TestPrintStamped(t *testing.T) {
	defer func(v string) { version.Version = v }(version.Version)
	version.Version = "v1.2.3" // what -ldflags -X sets
	var b bytes.Buffer
	version.Print(&b, "mgmtproxy")
	if got := b.String(); got != "mgmtproxy v1.2.3\n" {
		t.Errorf("Print = %q, want %q", got, "mgmtproxy v1.2.3\n")
	}
}
