//go:build e2e

// Package e2e runs the user stories of orgauthz through the real binaries: the Logto emulator,
// the sidecar and mgmtproxy as processes on loopback, entered through the Envoy-faithful
// ext_authz client over gRPC, through Caddy, and through nginx and Envoy when installed.
//
// Run it with `make e2e` (go test ./tests/e2e/). Caddy comes from $ORGAUTHZ_CADDY or bin/caddy,
// built from tests/caddy when missing (minutes, the first time: `make caddy` does it ahead); in
// CI (CI=true) a missing Caddy fails the run, elsewhere its tests are skipped. nginx and Envoy
// run when they are on PATH. On failure the logs of every process stay in the temp directory
// the run prints.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
)

// build is what TestMain prepared for every test.
var build struct {
	root     string // repository root
	dir      string // temp dir: binaries, per-test chain dirs and logs
	bin      string // fakelogto, sidecar, mgmtproxy
	caddy    string // Caddy binary, or "" with caddyErr saying why
	caddyErr error
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var err error
	if build.root, err = chain.Root(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if build.dir, err = os.MkdirTemp("", "orgauthz-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	build.bin = filepath.Join(build.dir, "bin")
	if err := chain.Build(ctx, build.root, build.bin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	build.caddy, build.caddyErr = chain.Caddy(ctx, build.root, nil)

	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: logs and configs kept in %s\n", build.dir)
	} else {
		os.RemoveAll(build.dir)
	}
	return code
}

// needCaddy returns the Caddy binary. Without one the test fails in CI (CI=true) and is
// skipped elsewhere.
func needCaddy(t *testing.T) string {
	t.Helper()
	if build.caddy != "" {
		return build.caddy
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("caddy is required in CI: %v", build.caddyErr)
	}
	t.Skipf("skipping: no caddy (%v); run `make caddy` or set ORGAUTHZ_CADDY", build.caddyErr)
	return ""
}

// needOnPath returns the path of an optional front proxy, skipping the test when it is not
// installed.
func needOnPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrNotFound) {
		t.Skipf("skipping: %s is not on PATH (install it to run the stories through %s too)", name, name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}
