//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// TestDecisionKeyRotation runs README's rotation procedure on the built binaries while requests
// flow without pause through the Envoy-faithful client, sidecar and mgmtproxy: add the new public
// key to mgmtproxy's key directory, switch the sidecar's private key file, remove the old public
// key. Not one request may fail, and afterwards a decision of the old key is refused naming its kid.
func TestDecisionKeyRotation(t *testing.T) {
	mgmtproxyBin, sidecarBin := filepath.Join(build.bin, "mgmtproxy"), filepath.Join(build.bin, "sidecar")
	help, _ := exec.Command(mgmtproxyBin, "--help").CombinedOutput()
	if !bytes.Contains(help, []byte("reread when changed")) {
		t.Skip("the mgmtproxy binary does not reload --decision-public-key (its --help says no \"reread when changed\"): " +
			"the rotation needs mgmtproxy's key reload of branch mgmt2")
	}

	logto, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := logto.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logto.Close() })
	const m2mSecret = "rotation-m2m-secret"
	appID := logto.AddM2MApp("", m2mSecret)
	org := logto.AddOrganization("", "Acme")
	tok := logto.MintToken(logto.Claims("u1", "app1", "urn:logto:organization:"+org, "org:read"))

	dir := t.TempDir()
	keyFile, oldPub := filepath.Join(dir, "decision.key"), filepath.Join(dir, "old.pub")
	newKey, newPub := filepath.Join(dir, "new.key"), filepath.Join(dir, "new.pub")
	for _, pair := range [][2]string{{keyFile, oldPub}, {newKey, newPub}} {
		if err := decision.GenerateKey(pair[0], pair[1]); err != nil {
			t.Fatal(err)
		}
	}
	oldKID, newKID := kidOf(t, oldPub), kidOf(t, newPub)
	oldSigner, err := decision.LoadSigner(keyFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	keysDir := filepath.Join(dir, "mgmtproxy-keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, oldPub, filepath.Join(keysDir, "old.pub"))
	secretFile := filepath.Join(dir, "m2m-secret")
	if err := os.WriteFile(secretFile, []byte(m2mSecret), 0o600); err != nil {
		t.Fatal(err)
	}

	addrs, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	sidecar := startBinary(t, sidecarBin, "http://"+addrs.HTTP+"/readyz",
		"--issuer", logto.Issuer(), "--api-resource", chain.APIResource, "--admin-resource", chain.AdminResource,
		"--policies", filepath.Join(build.root, "policies"), "--grpc-addr", addrs.GRPC, "--http-addr", addrs.HTTP,
		"--decision-key", keyFile)
	mgmtproxy := startBinary(t, mgmtproxyBin, "http://"+addrs.Mgmtproxy+"/readyz",
		"--listen-addr", addrs.Mgmtproxy, "--logto-endpoint", logto.URL(), "--m2m-app-id", appID,
		"--m2m-app-secret-file", secretFile, "--decision-public-key", keysDir)

	client, err := envoyclient.Dial(addrs.GRPC, envoyclient.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	upstream := &http.Transport{ResponseHeaderTimeout: 30 * time.Second}
	t.Cleanup(upstream.CloseIdleConnections)
	send := func() (int, error) {
		req, err := http.NewRequest("GET", "http://"+addrs.Mgmtproxy+"/api/organizations/"+org, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req, upstream)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	// Requests flow from here to the end of the procedure, two at a time.
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, err := send()
				sent.Add(1)
				if err != nil || st != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d, err %v", st, err))
				}
			}
		}()
	}
	flowing := func(what string) {
		n := sent.Load()
		waitUntil(t, what+": requests keep flowing", func() bool { return sent.Load() >= n+20 })
	}

	flowing("before the rotation")
	// 1. mgmtproxy accepts the new key as well.
	copyFile(t, newPub, filepath.Join(keysDir, "new.pub"))
	waitUntil(t, "mgmtproxy loads the new public key", func() bool {
		return strings.Contains(mgmtproxy.logs(), "decision public keys reloaded") && strings.Contains(mgmtproxy.logs(), newKID)
	})
	flowing("with both public keys")
	// 2. The sidecar signs with the new key.
	b, err := os.ReadFile(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keyFile+".tmp", keyFile); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the sidecar signs with the new key", func() bool {
		return strings.Contains(sidecar.logs(), `"msg":"decision key reloaded","kid":"`+newKID+`"`)
	})
	flowing("after the switch")
	// 3. mgmtproxy forgets the old key.
	reloads := strings.Count(mgmtproxy.logs(), "decision public keys reloaded")
	if err := os.Remove(filepath.Join(keysDir, "old.pub")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "mgmtproxy drops the old public key", func() bool {
		return strings.Count(mgmtproxy.logs(), "decision public keys reloaded") > reloads
	})
	flowing("after the old key is gone")
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the rotation; the first: %v", n, sent.Load(), firstFailure.Load())
	}
	t.Logf("%d requests during the rotation, %d failed", sent.Load(), failed.Load())

	// A decision of the old key is refused now, and the refusal names its kid.
	d, err := oldSigner.Sign(decision.Claims{Method: "GET", Path: "/api/organizations/" + org,
		Route: "GET /api/organizations/{orgId}", Kind: "organization", Org: org, Subject: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+addrs.Mgmtproxy+"/api/organizations/"+org, nil)
	req.Header.Set(decision.Header, d)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("decision_unknown_key")) {
		t.Errorf("a decision of the removed key: status %d %s, want 403 decision_unknown_key", resp.StatusCode, body)
	}
	waitUntil(t, "mgmtproxy logs the refusal with the old kid", func() bool {
		for _, line := range strings.Split(mgmtproxy.logs(), "\n") {
			if strings.Contains(line, "decision_unknown_key") && strings.Contains(line, oldKID) {
				return true
			}
		}
		return false
	})
	for _, p := range []*binary{sidecar, mgmtproxy} {
		if strings.Contains(p.logs(), tok) || strings.Contains(p.logs(), m2mSecret) {
			t.Errorf("%s logged a token or the M2M secret", p.name)
		}
	}
}

// kidOf returns the kid of a public key file.
func kidOf(t *testing.T, pub string) string {
	t.Helper()
	v, err := decision.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return v.KeyIDs()[0]
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// binary is a built binary running for one test, its stderr (slog) kept.
type binary struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (b *binary) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *binary) logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startBinary starts path with args and waits until readyz answers 200; it is stopped (SIGTERM)
// when the test ends.
func startBinary(t *testing.T, path, readyz string, args ...string) *binary {
	t.Helper()
	b := &binary{name: filepath.Base(path)}
	b.cmd = exec.Command(path, args...)
	b.cmd.Stderr = b
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { b.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			b.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", b.name, b.logs())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		select {
		case <-exited:
			t.Fatalf("%s exited before ready:\n%s", b.name, b.logs())
		case <-ctx.Done():
			t.Fatalf("%s not ready in a minute:\n%s", b.name, b.logs())
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get(readyz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return b
			}
		}
	}
}
