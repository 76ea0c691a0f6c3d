package mgmtproxy

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/testkit"
	"github.com/orgauthz/orgauthz/revocation"
)

// redisWithPassword starts Debian's redis-server on a free loopback port with requirepass, and returns
// its URL (without the password). It skips without redis-server.
func redisWithPassword(t *testing.T, password string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var out bytes.Buffer
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir(), "--requirepass", password)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "redis-server", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "redis://" + addr + "/0"
}

// Replicas sharing Redis: a decision used on one is refused on the other (decision_replayed), and a
// removal made through one is seen by a sidecar's store on the same Redis without any notify. The
// password comes from a file and appears in no log line or audit record.
func TestReplicasShareRedis(t *testing.T) {
	const password = "redis-pass-never-logged"
	url := redisWithPassword(t, password)
	pwFile := filepath.Join(t.TempDir(), "redis.pw")
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
	e := newEnv(t, func(c *Config) { c.RevocationStore, c.RedisPasswordFile = url, pwFile })

	cfg := e.proxy.cfg
	cfg.DecisionLog = "off"
	s, err := cfg.Validate()
	if err != nil {
		t.Fatal(err)
	}
	logsB := &testkit.Buffer{}
	b, err := New(t.Context(), s, slog.New(slog.NewJSONHandler(logsB, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srvB := httptest.NewServer(b)
	t.Cleanup(srvB.Close)

	path := "/api/organizations/" + e.org
	dec := e.sign(t, adminClaims("GET", path, "GET /api/organizations/{orgId}"))
	if r := e.do(t, "GET", path, "", dec); r.status != http.StatusOK {
		t.Fatalf("first use on replica A = %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest("GET", srvB.URL+path, nil)
	req.Header.Set(decision.Header, dec)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(logsB.String(), `"reason":"decision_replayed"`) {
		t.Errorf("replay on replica B = %d, want 403 decision_replayed", resp.StatusCode)
	}

	sidecarStore, err := revocation.Open(t.Context(), strings.Replace(url, "redis://", "redis://:"+password+"@", 1), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sidecarStore.Close() })
	issued := time.Now().Unix() - 1
	if r := e.allowed(t, "DELETE", "/api/organizations/"+e.org+"/users/"+e.user, "DELETE /api/organizations/{orgId}/users/{userId}", ""); r.status != http.StatusNoContent {
		t.Fatalf("remove member = %d %s", r.status, r.body)
	}
	// Revoke wrote it to Redis before the answer; the other store reads it on its next resync (≤ 500 ms).
	waitFor(t, "the sidecar's store on the same Redis to get the watermark", func() bool {
		return sidecarStore.Revoked(e.org, e.user, issued, decision.KindOrganization)
	})
	if n := metricValue(t, e, `orgauthz_mgmtproxy_revocation_failures_total{stage="store"}`); n != "0" {
		t.Errorf("store failures = %s, want 0", n)
	}
	for name, out := range map[string]string{"replica A log": e.logs.String(), "replica B log": logsB.String()} {
		if strings.Contains(out, password) {
			t.Errorf("%s contains the Redis password", name)
		}
	}
}
