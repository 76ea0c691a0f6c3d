//go:build e2e

// Package faults breaks what orgauthz depends on while the built binaries run, and checks that
// every failure ends in a deny or a 5xx, never an allow, and that the binaries recover: Logto's
// JWKS, token endpoint and Management API stalling, failing, resetting, redirecting and
// answering garbage; the policy changing under load; SIGTERM with requests in flight.
//
// Each test starts its own sidecar and mgmtproxy processes (built once, as internal/chain
// builds them) on free loopback ports, in front of an in-process Logto emulator
// (internal/fakelogto, whose fault injection most tests use) reached through a "door": an HTTP
// server of the test's own that can answer in the emulator's place for faults the emulator has
// no switch for (redirects, garbage key sets). Requests enter as Envoy sends them
// (internal/envoyclient).
//
//	go test -tags e2e ./tests/faults/
//
// RELIABILITY.md lists every scenario, these and the ones the packages' own tests cover.
package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
)

// build is what TestMain prepared: the repository root and the built binaries.
var build struct {
	root, bin string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var err error
	if build.root, err = chain.Root(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "orgauthz-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	build.bin = filepath.Join(dir, "bin")
	if err := chain.Build(ctx, build.root, build.bin); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	return m.Run()
}
