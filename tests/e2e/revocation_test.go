//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/revocation"
)

// Revocation end to end (README "Revocation"): a change that takes power away makes the affected
// tokens issued before it 401 token_revoked at the sidecar, while tokens issued after it work.

// logtoAPI calls the emulator's Management API directly, as the Logto Console or another backend
// would: the change reaches the sidecar only through Logto's webhook.
func (h *harness) logtoAPI(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m2m, err := h.tokens.Management(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := newRequest(t, method, h.chain.LogtoURL()+path, m2m, body)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		t.Fatalf("Logto %s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	return b
}

// newOrg creates an organization in Logto whose members have the given organization roles.
func (h *harness) newOrg(t *testing.T, name string, roles map[string]string) string {
	t.Helper()
	var org struct{ ID string }
	json.Unmarshal(h.logtoAPI(t, "POST", "/api/organizations", map[string]string{"name": name}, http.StatusCreated), &org)
	for user, role := range roles {
		h.logtoAPI(t, "POST", "/api/organizations/"+org.ID+"/users", map[string]any{"userIds": []string{user}}, http.StatusCreated)
		h.logtoAPI(t, "POST", "/api/organizations/"+org.ID+"/users/"+user+"/roles",
			map[string]any{"organizationRoleIds": []string{h.chain.Seed.OrgRoles[role]}}, http.StatusCreated)
	}
	return org.ID
}

// newUser creates a Logto user and returns its ID.
func (h *harness) newUser(t *testing.T, username string) string {
	t.Helper()
	var u struct{ ID string }
	json.Unmarshal(h.logtoAPI(t, "POST", "/api/users", map[string]string{"username": username}, http.StatusOK), &u)
	if u.ID == "" {
		t.Fatalf("Logto created user %s without an ID", username)
	}
	return u.ID
}

// orgToken is a user's organization token for org with org:read.
func (h *harness) orgToken(t *testing.T, user, org string) string {
	return h.token(t, chain.TokenRequest{UserID: user, OrganizationID: org, Scopes: []string{"org:read", "member:read"}})
}

// verdict is a sidecar's answer to one check.
type verdict struct {
	status  int
	code    string // the JSON body's code on a denial
	wwwAuth string
}

// check asks the sidecar behind c whether tok may GET the organization org (gRPC ext_authz).
func check(t *testing.T, c *envoyclient.Client, tok, org string) verdict {
	t.Helper()
	req := newRequest(t, "GET", "http://front.invalid/api/organizations/"+org, tok, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus().GetCode() == 0 {
		return verdict{status: http.StatusOK}
	}
	d := resp.GetDeniedResponse()
	v := verdict{status: int(d.GetStatus().GetCode())}
	var body struct{ Code string }
	json.Unmarshal([]byte(d.GetBody()), &body)
	v.code = body.Code
	for _, hd := range d.GetHeaders() {
		if strings.EqualFold(hd.GetHeader().GetKey(), "www-authenticate") {
			v.wwwAuth = hd.GetHeader().GetValue()
		}
	}
	return v
}

// wantRevokedWithin polls until tok is refused as revoked, at most within; the webhook leaves Logto
// after its Management API call has answered, so it may arrive a moment later.
func wantRevokedWithin(t *testing.T, what string, c *envoyclient.Client, tok, org string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := check(t, c, tok, org)
		if v.status == http.StatusUnauthorized && v.code == "token_revoked" {
			if v.wwwAuth != `Bearer error="invalid_token"` {
				t.Errorf("%s: WWW-Authenticate %q", what, v.wwwAuth)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s after %v, want 401 token_revoked", what, v.status, v.code, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantAllowed(t *testing.T, what string, c *envoyclient.Client, tok, org string) {
	t.Helper()
	if v := check(t, c, tok, org); v.status != http.StatusOK {
		t.Errorf("%s: %d %s, want 200", what, v.status, v.code)
	}
}

// nextSecond waits until the wall clock has entered the second after now: token iat is in whole
// seconds, so only a token issued after the change's second is "after" it.
func nextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 10*time.Millisecond).Sub(now))
}

// sendWebhook posts a Logto-shaped delivery, signed with the chain's key, to the sidecar at
// httpAddr: the events the emulator never sends (suspension, a role's permissions cut).
func (h *harness) sendWebhook(t *testing.T, httpAddr string, event map[string]any) int {
	t.Helper()
	event["createdAt"] = time.Now().UTC().Format(time.RFC3339Nano)
	event["hookId"] = "e2ehook"
	body, _ := json.Marshal(event)
	mac := hmac.New(sha256.New, []byte(h.chain.WebhookKey))
	mac.Write(body)
	req, _ := http.NewRequest("POST", "http://"+httpAddr+revocation.WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(revocation.SignatureHeader, hex.EncodeToString(mac.Sum(nil)))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRevocationWebhooks: every event type that takes power away, sent by Logto (the emulator, or
// signed here where the emulator sends none), refuses the real tokens it covers and no others.
func TestRevocationWebhooks(t *testing.T) {
	h := newHarness(t, chain.NoFront, "")
	c := h.useEnvoyClient(t)
	acme, alice, bob := h.acme(), h.user("alice"), h.user("bob")
	aliceAcme := h.orgToken(t, alice, acme)

	t.Run("MemberRemoved", func(t *testing.T) {
		org := h.newOrg(t, "revoc-member", map[string]string{alice: "admin", bob: "member"})
		bobOrg, bobAcme := h.orgToken(t, bob, org), h.orgToken(t, bob, acme)
		aliceOrg := h.orgToken(t, alice, org)
		wantAllowed(t, "bob in the organization", c, bobOrg, org)
		h.logtoAPI(t, "DELETE", "/api/organizations/"+org+"/users/"+bob, nil, http.StatusNoContent)
		wantRevokedWithin(t, "bob's token after his removal", c, bobOrg, org, 2*time.Second)
		// Through the whole chain the client sees the 401 too, and nothing reaches mgmtproxy.
		before := len(h.app.requests())
		got := h.call(t, "GET", "/api/organizations/"+org, bobOrg, nil)
		if got.status != http.StatusUnauthorized || !bytes.Contains(got.body, []byte(`"token_revoked"`)) ||
			got.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("through the chain: %d %s %q", got.status, got.body, got.header.Get("WWW-Authenticate"))
		}
		if len(h.app.requests()) != before {
			t.Error("a revoked token's request reached mgmtproxy")
		}
		wantAllowed(t, "bob's token for another organization", c, bobAcme, acme)
		wantAllowed(t, "alice in the organization", c, aliceOrg, org)
		nextSecond()
		wantAllowed(t, "bob's new token for another organization", c, h.orgToken(t, bob, acme), acme)
	})

	t.Run("OrganizationDeleted", func(t *testing.T) {
		org := h.newOrg(t, "revoc-deleted", map[string]string{alice: "admin"})
		aliceOrg := h.orgToken(t, alice, org)
		wantAllowed(t, "alice in the organization", c, aliceOrg, org)
		h.logtoAPI(t, "DELETE", "/api/organizations/"+org, nil, http.StatusNoContent)
		wantRevokedWithin(t, "a token of the deleted organization", c, aliceOrg, org, 2*time.Second)
		wantAllowed(t, "alice's token for another organization", c, aliceAcme, acme)
	})

	t.Run("UserDeleted", func(t *testing.T) {
		dave := h.newUser(t, "dave")
		org := h.newOrg(t, "revoc-user", map[string]string{dave: "member", alice: "admin"})
		daveOrg := h.orgToken(t, dave, org)
		wantAllowed(t, "dave", c, daveOrg, org)
		h.logtoAPI(t, "DELETE", "/api/users/"+dave, nil, http.StatusNoContent)
		wantRevokedWithin(t, "the deleted user's token", c, daveOrg, org, 2*time.Second)
		wantAllowed(t, "alice in the same organization", c, h.orgToken(t, alice, org), org)
	})

	t.Run("UserSuspended", func(t *testing.T) {
		erin := h.newUser(t, "erin")
		org := h.newOrg(t, "revoc-suspend", map[string]string{erin: "member"})
		erinOrg := h.orgToken(t, erin, org)
		wantAllowed(t, "erin", c, erinOrg, org)
		// Logto's User.SuspensionStatus.Updated (the emulator serves no suspension endpoint).
		st := h.sendWebhook(t, h.chain.Addrs.HTTP, map[string]any{"event": "User.SuspensionStatus.Updated",
			"method": "PATCH", "params": map[string]string{"userId": erin}, "data": map[string]any{"id": erin, "isSuspended": true}})
		if st != http.StatusNoContent {
			t.Fatalf("suspension webhook: %d", st)
		}
		wantRevokedWithin(t, "the suspended user's token", c, erinOrg, org, 0)
		nextSecond()
		st = h.sendWebhook(t, h.chain.Addrs.HTTP, map[string]any{"event": "User.SuspensionStatus.Updated",
			"method": "PATCH", "params": map[string]string{"userId": erin}, "data": map[string]any{"id": erin, "isSuspended": false}})
		if st != http.StatusNoContent {
			t.Fatalf("reactivation webhook: %d", st)
		}
		wantAllowed(t, "erin's token issued after the suspension", c, h.orgToken(t, erin, org), org)
	})

	// Last: a role's permissions cut refuses every organization token issued before it.
	t.Run("OrganizationRoleScopesChanged", func(t *testing.T) {
		// The emulator's own OrganizationRole.Scopes.Updated (a role created with permissions) adds
		// power and revokes nothing.
		var scopes []struct{ ID string }
		json.Unmarshal(h.logtoAPI(t, "GET", "/api/organization-scopes", nil, http.StatusOK), &scopes)
		if len(scopes) == 0 {
			t.Fatal("Logto lists no organization permissions")
		}
		h.logtoAPI(t, "POST", "/api/organization-roles", map[string]any{"name": "auditor", "organizationScopeIds": []string{scopes[0].ID}}, http.StatusCreated)
		time.Sleep(200 * time.Millisecond) // let its delivery land
		wantAllowed(t, "a token after a role was created", c, aliceAcme, acme)
		st := h.sendWebhook(t, h.chain.Addrs.HTTP, map[string]any{"event": "OrganizationRole.Scopes.Updated",
			"method": "DELETE", "params": map[string]string{"id": h.chain.Seed.OrgRoles["member"]}})
		if st != http.StatusNoContent {
			t.Fatalf("role webhook: %d", st)
		}
		wantRevokedWithin(t, "an organization token issued before the cut", c, aliceAcme, acme, 0)
		nextSecond()
		wantAllowed(t, "a token issued after the cut", c, h.orgToken(t, alice, acme), acme)
	})
}

// TestRevocationThroughMgmtproxy: a member's organization roles replaced through the chain (by an
// admin token) emit no Logto webhook; mgmtproxy's own revocation refuses the member's older token
// before it answers.
func TestRevocationThroughMgmtproxy(t *testing.T) {
	h := newHarness(t, chain.NoFront, "")
	if !h.chain.MgmtproxyRevokes {
		t.Skip("skipping: this mgmtproxy build has no --revocation-store/--revocation-notify")
	}
	c := h.useEnvoyClient(t)
	acme, bob := h.acme(), h.user("bob")
	bobOld := h.orgToken(t, bob, acme)
	wantAllowed(t, "bob before", c, bobOld, acme)
	got := h.call(t, "PUT", "/api/organizations/"+acme+"/users/"+bob+"/roles", h.carolAdmin(t),
		map[string]any{"organizationRoleIds": []string{h.chain.Seed.OrgRoles["member"]}})
	wantStatus(t, "carol (admin) replaces bob's roles", got, http.StatusNoContent)
	// No polling: mgmtproxy told the sidecar before it answered.
	wantRevokedWithin(t, "bob's token issued before his roles changed", c, bobOld, acme, 0)
	nextSecond()
	wantAllowed(t, "bob's token issued after", c, h.orgToken(t, bob, acme), acme)
}

// redisServer is a redis-server the test runs on a fixed free loopback port, so it can be killed
// and started again at the same address. It keeps nothing on disk: a restart is an empty Redis.
type redisServer struct {
	t    *testing.T
	port string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("skipping: redis-server is not on PATH (.ci/run installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	r := &redisServer{t: t, port: port}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + r.port + "/0" }

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", r.port, "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+r.port, time.Second)
		if err == nil {
			conn.Write([]byte("PING\r\n"))
			conn.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 7)
			n, _ := io.ReadFull(conn, b)
			conn.Close()
			if string(b[:n]) == "+PONG\r\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %s did not answer: %v", r.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops Redis at once, as a crash would.
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// readyz reads a sidecar's /readyz.
func readyz(t *testing.T, httpAddr string) (int, map[string]any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Revocation map[string]any }
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	return resp.StatusCode, body.Revocation
}

// TestRevocationRedisReplicas: two sidecars and mgmtproxy share watermarks through Redis. A removal
// seen by one sidecar (Logto's webhook) or made by mgmtproxy is enforced by the other within 1 s;
// with Redis killed both keep serving with what they know, and once Redis is back (empty) the
// watermarks of the outage and those it lost are shared again.
func TestRevocationRedisReplicas(t *testing.T) {
	redis := startRedis(t)
	h := newHarness(t, chain.NoFront, "", func(c *chain.Config) { c.RevocationStore = redis.url() })
	c1 := h.useEnvoyClient(t)
	more, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.chain.AddSidecar(ctx, more.GRPC, more.HTTP); err != nil {
		t.Fatal(err)
	}
	c2 := h.dialSidecar(t, more.GRPC)
	acme, alice, bob := h.acme(), h.user("alice"), h.user("bob")

	// Logto's webhook reaches sidecar 1 only; sidecar 2 learns of it through Redis.
	org := h.newOrg(t, "replicas", map[string]string{alice: "admin", bob: "member"})
	bobOrg := h.orgToken(t, bob, org)
	wantAllowed(t, "bob at sidecar 2", c2, bobOrg, org)
	h.logtoAPI(t, "DELETE", "/api/organizations/"+org+"/users/"+bob, nil, http.StatusNoContent)
	start := time.Now()
	wantRevokedWithin(t, "sidecar 2, within 1 s of the removal", c2, bobOrg, org, time.Second)
	t.Logf("sidecar 2 enforced the removal %v after Logto answered", time.Since(start).Round(time.Millisecond))
	wantRevokedWithin(t, "sidecar 1", c1, bobOrg, org, 0)

	if h.chain.MgmtproxyRevokes {
		// mgmtproxy's own change (no webhook): written to Redis before it answers.
		aliceOld := h.orgToken(t, alice, acme)
		got := h.call(t, "PUT", "/api/organizations/"+acme+"/users/"+alice+"/roles", h.carolAdmin(t),
			map[string]any{"organizationRoleIds": []string{h.chain.Seed.OrgRoles["admin"]}})
		wantStatus(t, "carol (admin) replaces alice's roles", got, http.StatusNoContent)
		wantRevokedWithin(t, "sidecar 2 after mgmtproxy's change", c2, aliceOld, acme, time.Second)
		nextSecond()
	} else {
		t.Log("mgmtproxy has no --revocation-store in this build: its path is not exercised")
	}

	// Redis dies. Both sidecars keep deciding with the set they have, and say so.
	redis.kill()
	aliceAcme := h.orgToken(t, alice, acme)
	dave := h.newUser(t, "dave")
	org2 := h.newOrg(t, "outage", map[string]string{dave: "member"})
	daveOrg := h.orgToken(t, dave, org2)
	wantRevokedWithin(t, "sidecar 2, the removal of before the outage", c2, bobOrg, org, 0)
	wantAllowed(t, "sidecar 2 with Redis down", c2, aliceAcme, acme)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, rev := readyz(t, more.HTTP)
		if st == http.StatusOK && rev["connected"] == false && strings.Contains(fmt.Sprint(rev["status"]), "redis unavailable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar 2 /readyz with Redis down: %d %v", st, rev)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A webhook during the outage applies on sidecar 1 at once (202: not yet shared).
	h.logtoAPI(t, "DELETE", "/api/users/"+dave, nil, http.StatusNoContent)
	wantRevokedWithin(t, "sidecar 1 during the outage", c1, daveOrg, org2, 2*time.Second)

	// Redis comes back empty: sidecar 1 writes back the outage's watermark and every watermark it
	// knows, and sidecar 2 picks them up.
	redis.start()
	wantRevokedWithin(t, "sidecar 2 after Redis is back", c2, daveOrg, org2, 3*time.Second)
	wantRevokedWithin(t, "sidecar 2, the earlier removal", c2, bobOrg, org, 0)
	wantAllowed(t, "sidecar 2, an unaffected token", c2, aliceAcme, acme)

	// A sidecar started now loads the whole set before it is ready.
	third, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.chain.AddSidecar(ctx, third.GRPC, third.HTTP); err != nil {
		t.Fatal(err)
	}
	c3 := h.dialSidecar(t, third.GRPC)
	wantRevokedWithin(t, "a new sidecar", c3, bobOrg, org, 0)
	wantRevokedWithin(t, "a new sidecar", c3, daveOrg, org2, 0)
	wantAllowed(t, "a new sidecar, an unaffected token", c3, aliceAcme, acme)
}
