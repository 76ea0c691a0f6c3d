package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

const modulePath = "github.com/orgauthz/orgauthz"

// Binaries are the chain's own programs, built by Build.
var Binaries = []string{"fakelogto", "sidecar", "mgmtproxy"}

// Root returns the repository root: the nearest directory at or above the working directory
// whose go.mod declares the orgauthz module.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("chain: %w", err)
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(mod, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chain: not inside the orgauthz repository (no go.mod declaring " + modulePath + ")")
		}
		dir = parent
	}
}

// Build compiles cmd/fakelogto, cmd/sidecar and cmd/mgmtproxy into dir. The Go build cache
// makes repeated builds cheap.
func Build(ctx context.Context, root, dir string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chain: go build: %w\n%s", err, out)
	}
	return nil
}

// ErrNoCaddy means no Caddy binary is available and none could be built.
var ErrNoCaddy = errors.New("chain: no caddy")

// Caddy returns the path of a Caddy binary: $ORGAUTHZ_CADDY when set, else bin/caddy under
// root, built from the tests/caddy module first when it is missing or older than that module's
// go.sum. A cold build takes minutes: progress receives go build's list of packages as it goes
// (nil for quiet). Errors wrap ErrNoCaddy.
func Caddy(ctx context.Context, root string, progress io.Writer) (string, error) {
	if p := os.Getenv("ORGAUTHZ_CADDY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: ORGAUTHZ_CADDY: %w", ErrNoCaddy, err)
		}
		return p, nil
	}
	bin := filepath.Join(root, "bin", "caddy")
	mod := filepath.Join(root, "tests", "caddy")
	if fresh(bin, filepath.Join(mod, "go.sum")) {
		return bin, nil
	}
	args := []string{"build", "-o", bin}
	if progress != nil {
		args = append(args, "-v")
	} else {
		progress = io.Discard
	}
	args = append(args, "github.com/caddyserver/caddy/v2/cmd/caddy")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = mod
	cmd.Stdout = io.MultiWriter(progress, &out)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: building it in %s failed: %w\n%s", ErrNoCaddy, mod, err, lastBytes(out.Bytes(), 4<<10))
	}
	return bin, nil
}

// fresh reports whether bin exists and is newer than dep.
func fresh(bin, dep string) bool {
	b, err := os.Stat(bin)
	if err != nil {
		return false
	}
	d, err := os.Stat(dep)
	return err == nil && b.ModTime().After(d.ModTime())
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
