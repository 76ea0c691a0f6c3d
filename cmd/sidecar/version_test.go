package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/orgauthz/orgauthz/internal/version"
)

// TestVersion: --version prints "sidecar <version>" and succeeds, whatever else is on the command line.
func TestVersion(t *testing.T) {
	defer func(v string) { version.Version = v }(version.Version)
	version.Version = "v1.2.3"
	for _, args := range [][]string{{"--version"}, {"--no-such-flag", "--version"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
			t.Errorf("run(%q) = %v, want nil (exit 0)", args, err)
		}
		if got := stdout.String(); got != "sidecar v1.2.3\n" {
			t.Errorf("run(%q) printed %q, want %q", args, got, "sidecar v1.2.3\n")
		}
	}
}
