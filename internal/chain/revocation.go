package chain

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/orgauthz/orgauthz/revocation"
)

const webhookPath = revocation.WebhookPath

// writeWebhookKey writes a new 32-character webhook signing key, as Logto makes one, to path.
func writeWebhookKey(path string) (string, error) {
	key := rand.Text()[:26] + rand.Text()[:6]
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("chain: %w", err)
	}
	return key, nil
}

// mgmtproxyRevocationArgs are the flags that make mgmtproxy's changes revoke tokens: the shared
// store, and with memory the sidecar to notify. nil when the mgmtproxy binary has no such flags (an
// older build): the chain then runs without that path.
func mgmtproxyRevocationArgs(ctx context.Context, bin, store, notifyURL, keyFile string) ([]string, error) {
	var help bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	_ = cmd.Run() // --help may exit non-zero; the text is what counts
	if !strings.Contains(help.String(), "-revocation-store") {
		return nil, nil
	}
	args := []string{"--revocation-store", store}
	if store == "memory" {
		if !strings.Contains(help.String(), "-revocation-notify") {
			return nil, nil
		}
		args = append(args, "--revocation-notify", notifyURL, "--logto-webhook-secret-file", keyFile)
	}
	return args, nil
}

// AddSidecar starts one more sidecar, configured as the chain's first but listening on grpcAddr
// and httpAddr, and waits until it is ready. With a Redis RevocationStore it shares the
// watermarks of the others. The first is named "sidecar" for Kill, the next "sidecar2", and so on.
func (c *Chain) AddSidecar(ctx context.Context, grpcAddr, httpAddr string) error {
	name, n := "sidecar", 1
	for _, p := range c.procs {
		if strings.HasPrefix(p.name, "sidecar") {
			n++
			name = "sidecar" + strconv.Itoa(n)
		}
	}
	args := append([]string{"--grpc-addr", grpcAddr, "--http-addr", httpAddr}, c.sidecarArgs...)
	p, err := startProcess(name, c.log, nil, filepath.Join(c.cfg.Bin, "sidecar"), args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	return p.waitReady(rctx, "http://"+httpAddr+"/readyz")
}
