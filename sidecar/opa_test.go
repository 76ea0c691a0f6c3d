package sidecar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// opaServer is a bundle server, decision-log collector and status endpoint, as OPA's control
// plane protocols define them, on 127.0.0.1.
type opaServer struct {
	*httptest.Server
	mu        sync.Mutex
	bundle    []byte   // served at /bundles/authz.tar.gz; nil: 404
	downloads int      // bundle requests
	uploads   [][]byte // raw (gzip'd) decision-log uploads
	events    []map[string]any
	statuses  []map[string]any
	callouts  int // requests a policy made with http.send: must stay 0
}

func newOPAServer(t *testing.T) *opaServer {
	s := &opaServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bundles/authz.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.downloads++
		if s.bundle == nil {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(s.bundle)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(s.bundle)
	})
	mux.HandleFunc("POST /logs", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if r.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("decision-log upload Content-Encoding = %q, want gzip", r.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Errorf("decision-log upload is not gzip: %v", err)
			return
		}
		var batch []map[string]any
		if err := json.NewDecoder(zr).Decode(&batch); err != nil {
			t.Errorf("decision-log upload is not a JSON array of events: %v", err)
			return
		}
		s.mu.Lock()
		s.uploads = append(s.uploads, raw)
		s.events = append(s.events, batch...)
		s.mu.Unlock()
	})
	mux.HandleFunc("/callout", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.callouts++
		s.mu.Unlock()
	})
	mux.HandleFunc("POST /status", func(w http.ResponseWriter, r *http.Request) {
		var st map[string]any
		body := io.Reader(io.LimitReader(r.Body, 1<<20))
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(body)
			if err != nil {
				t.Errorf("status upload: %v", err)
				return
			}
			body = zr
		}
		if err := json.NewDecoder(body).Decode(&st); err != nil {
			t.Errorf("status upload is not JSON: %v", err)
			return
		}
		s.mu.Lock()
		s.statuses = append(s.statuses, st)
		s.mu.Unlock()
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *opaServer) serve(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle = b
}

func (s *opaServer) lastStatus() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.statuses) == 0 {
		return nil
	}
	return s.statuses[len(s.statuses)-1]
}

// signingKey writes a fresh RSA key pair: the private key for `opa build --signing-key`, the public
// key's PEM for the configuration's keys section.
func signingKey(t *testing.T) (privFile, pubPEM string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	privFile = filepath.Join(t.TempDir(), "bundle-signing.pem")
	der := x509.MarshalPKCS1PrivateKey(k)
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return privFile, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
}

// opaBuild runs `go tool opa build` on dir with the revision, signed with key unless key is "".
func opaBuild(t *testing.T, dir, revision, key string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	args := []string{"tool", "opa", "build", "-b", dir, "--revision", revision, "-o", out}
	if key != "" {
		args = append(args, "--signing-key", key, "--signing-alg", "RS256")
	}
	if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper rewrites one file of a bundle, keeping its .signatures.json.
func tamper(t *testing.T, bundle []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(zr)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, found = edit(b), true
		}
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if !found {
		t.Fatalf("bundle has no %s", name)
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}

// policyVariant copies the real policies and changes the scope GET /api/organizations/{orgId}
// asks an organization token for; extra adds Rego modules.
func policyVariant(t *testing.T, scope string, extra map[string]string) string {
	t.Helper()
	dir := writePolicyDir(t)
	file := filepath.Join(dir, "orgauthz", "data.json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	for _, r := range data["routes"].([]any) {
		r := r.(map[string]any)
		if r["method"] == "GET" && r["path"] == "/api/organizations/{orgId}" {
			r["org_token"].(map[string]any)["scope"] = scope
		}
	}
	if b, err = json.Marshal(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, src := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeOPAConfig writes an OPA configuration using srv for bundles (unless pubPEM is ""),
// decision logs and status.
func writeOPAConfig(t *testing.T, srv *opaServer, pubPEM string) string {
	t.Helper()
	cfg := map[string]any{
		"services": map[string]any{"control": map[string]any{"url": srv.URL}},
		"labels":   map[string]any{"app": "orgauthz-test"},
		"keys":     map[string]any{"bundle-key": map[string]any{"algorithm": "RS256", "key": pubPEM}},
		"bundles": map[string]any{"authz": map[string]any{
			"service":  "control",
			"resource": "/bundles/authz.tar.gz",
			"signing":  map[string]any{"keyid": "bundle-key"},
			"polling":  map[string]any{"min_delay_seconds": 1, "max_delay_seconds": 1},
		}},
		"decision_logs": map[string]any{"service": "control", "resource": "/logs",
			"reporting": map[string]any{"min_delay_seconds": 1, "max_delay_seconds": 1}},
		"status": map[string]any{"service": "control"},
	}
	if pubPEM == "" {
		delete(cfg, "keys")
		delete(cfg, "bundles")
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "opa.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestOPAConfigBundles drives the sidecar with --opa-config against a real bundle server serving
// bundles built and signed by `go tool opa build`: not ready before a bundle activates; the
// bundle's policy decides; tampered, unsigned and http.send bundles are refused while the last
// good one keeps serving; decision logs reach the collector gzip'd, batched and without the token;
// status reaches its endpoint.
func TestOPAConfigBundles(t *testing.T) {
	srv := newOPAServer(t)
	key, pubPEM := signingKey(t)
	strict := opaBuild(t, policyVariant(t, "org:read-strict", nil), "strict-1", key)
	real := opaBuild(t, policiesDir, "real-1", key)
	unsigned := opaBuild(t, policiesDir, "unsigned-1", "")
	// A signed bundle whose decision-log mask calls out: OPA activates it, the sidecar refuses it,
	// and nothing ever evaluates it (OPA's decision-log plugin runs on a manager without bundles).
	callsOut := opaBuild(t, policyVariant(t, "org:read", map[string]string{
		"orgauthz/callout.rego": "package system.log\n\nmask contains \"/input/request\" if {\n\thttp.send({\"method\": \"GET\", \"url\": \"" +
			srv.URL + "/callout\"})\n}\n",
	}), "callout-1", key)
	tampered := tamper(t, real, "/data.json", func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"org:read"`), []byte(`"org:reax"`), 1)
	})

	h := newHarness(t, false, func(c *Config) { c.OPAConfig = writeOPAConfig(t, srv, pubPEM) })
	waitFor(t, "a bundle download attempt", func() bool { srv.mu.Lock(); defer srv.mu.Unlock(); return srv.downloads > 0 })
	if h.srv.Ready() {
		t.Fatal("Ready() = true before any bundle activated")
	}
	if st := h.get(t, "/readyz", nil).StatusCode; st != http.StatusServiceUnavailable {
		t.Errorf("/readyz before activation = %d, want 503", st)
	}

	tok := h.mint(*org("o1", "org:read"))
	checkOrg := func() answer {
		return readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, "")))
	}
	if a := checkOrg(); a.status != http.StatusServiceUnavailable {
		t.Errorf("check before activation: status %d, want 503", a.status)
	}

	// The strict bundle asks for a scope the token lacks: its data decides, not policies/.
	srv.serve(strict)
	waitFor(t, "ready after the first bundle", h.srv.Ready)
	if st := h.get(t, "/readyz", nil).StatusCode; st != http.StatusOK {
		t.Errorf("/readyz after activation = %d, want 200", st)
	}
	denied := checkOrg()
	if denied.status != http.StatusForbidden {
		t.Fatalf("check under the strict bundle: status %d, want 403", denied.status)
	}

	downloads := func() int { srv.mu.Lock(); defer srv.mu.Unlock(); return srv.downloads }
	for _, c := range []struct{ name, why string }{
		{"tampered", "data.json: digest mismatch"},
		{"unsigned", "bundle missing .signatures.json file"},
		{"http.send", "http.send is not allowed in orgauthz policies"},
	} {
		srv.serve(map[string][]byte{"tampered": tampered, "unsigned": unsigned, "http.send": callsOut}[c.name])
		// Two requests after it is served: the first has been processed whole.
		base := downloads()
		waitFor(t, c.name+" bundle requested twice", func() bool { return downloads() >= base+2 })
		waitFor(t, "the log saying "+c.why, func() bool { return strings.Contains(h.logs.String(), c.why) })
		if a := checkOrg(); a.status != http.StatusForbidden {
			t.Errorf("after the %s bundle: status %d, want 403 (the strict bundle still serving)", c.name, a.status)
		}
	}
	waitFor(t, "status reporting the refusal", func() bool {
		return strings.Contains(fmt.Sprint(srv.lastStatus()["plugins"]), "http.send")
	})

	// A good bundle again: policies/ answers, and the audit record names it.
	srv.serve(real)
	waitFor(t, "the real bundle installed", func() bool { return h.srv.policy.Bundles()["authz"].Revision == "real-1" })
	allowed := checkOrg()
	if allowed.status != http.StatusOK {
		t.Fatalf("check under the real bundle: status %d, want 200", allowed.status)
	}
	id := allowed.headers[headerDecisionID]
	var rec map[string]any
	waitFor(t, "the audit record", func() bool { rec = h.auditRecords(t, 1)[id]; return rec != nil })
	if got := get(rec, "bundles/authz/revision"); got != "real-1" {
		t.Errorf("audit record bundles = %v, want authz at revision real-1", rec["bundles"])
	}

	// The collector gets the same decision in OPA's event shape, without the token.
	ev := srv.waitEvent(t, id)
	if get(ev, "bundles/authz/revision") != "real-1" || ev["path"] != "orgauthz/decision" ||
		get(ev, "result/allow") != true || get(ev, "custom/reason") == nil || get(ev, "labels/app") != "orgauthz-test" {
		t.Errorf("uploaded event = %v", ev)
	}
	srv.mu.Lock()
	if srv.callouts != 0 {
		t.Errorf("a refused bundle's rules ran: %d http.send requests", srv.callouts)
	}
	for _, raw := range srv.uploads {
		zr, _ := gzip.NewReader(bytes.NewReader(raw))
		plain, _ := io.ReadAll(zr)
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if bytes.Contains(plain, []byte(tok)) || bytes.Contains(plain, []byte(sig)) {
			t.Errorf("an uploaded decision log carries the token")
		}
	}
	srv.mu.Unlock()

	waitFor(t, "status naming the bundle's revision", func() bool {
		st := srv.lastStatus()
		return get(st, "bundles/authz/active_revision") == "real-1" && get(st, "labels/app") == "orgauthz-test" &&
			get(st, "plugins/orgauthz_policy/state") == "OK"
	})
}

// waitEvent waits for the collector to receive the event of decision id.
func (s *opaServer) waitEvent(t *testing.T, id string) map[string]any {
	t.Helper()
	var ev map[string]any
	waitFor(t, "the decision uploaded", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.events {
			if e["decision_id"] == id {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

// TestOPAConfigDecisionLogsOnly: with decision_logs and no bundles, the policy comes from --policies
// and every decision is uploaded even with --decision-log off; the input is there, the token not.
func TestOPAConfigDecisionLogsOnly(t *testing.T) {
	srv := newOPAServer(t)
	h := newHarness(t, true, func(c *Config) {
		c.OPAConfig = writeOPAConfig(t, srv, "")
		c.DecisionLog = "off"
	})
	tok := h.mint(*org("o1", "org:read"))
	a := readAnswer(h.check(t, envoyRequest("GET", "/api/organizations/o1", map[string]string{"Authorization": "Bearer " + tok}, "")))
	if a.status != http.StatusOK {
		t.Fatalf("status %d, want 200", a.status)
	}
	ev := srv.waitEvent(t, a.headers[headerDecisionID])
	if get(ev, "input/request/method") != "GET" || get(ev, "custom/reason") == nil || get(ev, "bundles/policies/revision") == nil {
		t.Errorf("uploaded event = %v", ev)
	}
	if strings.Contains(fmt.Sprint(ev), tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Error("the uploaded event carries the token")
	}
}

// TestOPAConfigFile: --opa-config is bounded and refuses what it does not honour, with a clear error.
func TestOPAConfigFile(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"not yaml", "bundles: [unclosed", "not YAML or JSON"},
		{"not an object", "- 1\n- 2\n", "not an object"},
		{"discovery", "services: {s: {url: 'http://127.0.0.1:1'}}\ndiscovery: {service: s, resource: /d}\n", `section "discovery" is not supported`},
		{"plugins", "plugins: {envoy_ext_authz_grpc: {}}\ndecision_logs: {console: true}\n", `section "plugins" is not supported`},
		{"mask_decision", "decision_logs: {console: true, mask_decision: /x/mask}\n", "decision_logs.mask_decision is not supported"},
		{"nothing to do", "services: {s: {url: 'http://127.0.0.1:1'}}\n", "neither bundles nor decision_logs"},
		{"too large", "labels: {a: '" + strings.Repeat("x", maxOPAConfigBytes) + "'}\n", "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "opa.yaml")
			if err := os.WriteFile(file, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readOPAConfig(file)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("readOPAConfig = %v, want an error containing %q", err, c.want)
			}
		})
	}
	// A bundle naming an undefined service passes the file check but not OPA's.
	file := filepath.Join(t.TempDir(), "opa.yaml")
	os.WriteFile(file, []byte("bundles: {authz: {service: nowhere, resource: /b.tar.gz}}\n"), 0o600)
	c, err := readOPAConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newOPARuntime(c, nil); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("newOPARuntime with an unknown service = %v, want an error naming it", err)
	}
}
