package main

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// --version wins over every other argument: it prints "sidecar <version>" and exits 0.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--no-such-flag", "--version"}, nil, &out, io.Discard)
	if err != nil || out.String() != "sidecar dev\n" {
		t.Errorf("run(--version) = %v, printed %q; want nil and %q", err, out.String(), "sidecar dev\n")
	}
}
