package fakelogto

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// moreDir holds the 282 further real exchanges (shared/logto-real/more): setup, every call
// mgmtproxy made during the route and story runs behind Envoy and Caddy, direct probes.
var moreDir = filepath.Join(realDir, "more")

// notReplayedMore are the exchanges of more/ the emulator deliberately does not serve.
var notReplayedMore = map[string]string{
	"setup-real/setup-001-bootstrap-token.json": "the admin tenant (port 3002) is not emulated",
	"rotation/rotation-004-rotate-rsa.json":     "keys rotate through Server.RotateKey, not POST /api/configs/oidc/private-keys/rotate",
	"rotation/rotation-007-rotate-ec.json":      "keys rotate through Server.RotateKey, not POST /api/configs/oidc/private-keys/rotate",
}

// moreOrgs names, per folder, the organizations the recorded run had made before its first
// recorded call (not in the recording), as copies of setup-real's orgs: "acme" (alice admin
// and owner, bob member), "globex" (carol member) or "" (no members).
var moreOrgs = map[string]map[string]string{
	"direct":              {"96v7r8yd75y6": "acme"},
	"via-mgmtproxy-misc":  {"96v7r8yd75y6": "acme"},
	"via-mgmtproxy-caddy": {"bnf9zndcs3s6": "acme", "f7ofunk4ngf8": "globex", "b4ay23c58zih": "acme"},
	"rotation":            {"b4ay23c58zih": "acme"},
	"m2m-org":             {"96v7r8yd75y6": "acme", "f5gseibruuk3": ""},
}

// beforeMore prepares the emulator for one exchange the way the real server had been changed
// outside the Management API.
var beforeMore = map[string]func(t *testing.T, r *replayer){
	// The real server had rotated to an RSA key and restarted: the JWKS lists it first.
	"direct/001-jwks-rsa-current.json": func(t *testing.T, r *replayer) {
		if _, err := r.srv.RotateKey(RS256); err != nil {
			t.Fatal(err)
		}
	},
	// Between 033 and 035 the run removed bob from acme by a call the recording missed.
	"via-mgmtproxy-misc/035-get-api-organizations-96v7r8yd75y6-users.json": func(t *testing.T, r *replayer) {
		req, _ := http.NewRequest(http.MethodDelete, r.srv.URL()+"/api/organizations/"+r.sub("96v7r8yd75y6")+"/users/"+r.sub("rabl0syg4uav"), nil)
		req.Header.Set("Authorization", "Bearer "+r.srv.MintToken(r.srv.Claims("replay", "replay", r.srv.ManagementResource(), "all")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("remove bob: %v %v", resp, err)
		}
		resp.Body.Close()
	},
}

type moreExchange struct {
	file string
	ex   recorded
	body json.RawMessage // the request body when raw_body was not recorded
}

// moreFiles groups more/INDEX.tsv by folder, in index order.
func moreFiles(t *testing.T) (folders []string, files map[string][]string) {
	t.Helper()
	f, err := os.Open(filepath.Join(moreDir, "INDEX.tsv"))
	if err != nil {
		t.Fatalf("the recorded Logto exchanges must sit beside the repository: %v", err)
	}
	defer f.Close()
	files = map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), "\t")
		folder, _, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		if files[folder] == nil {
			folders = append(folders, folder)
		}
		files[folder] = append(files[folder], name)
	}
	return folders, files
}

func loadMore(t *testing.T, file string) moreExchange {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moreDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var m moreExchange
	var body struct {
		Request struct {
			Body json.RawMessage `json:"body"`
		} `json:"request"`
	}
	if err := json.Unmarshal(raw, &m.ex); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	json.Unmarshal(raw, &body)
	m.file, m.body = file, body.Request.Body
	if m.ex.Request.RawBody == nil && len(m.body) > 0 && string(m.body) != "null" {
		s := string(m.body)
		switch {
		case jsonType(m.body) == "string": // a body that was not JSON, recorded as a string
			json.Unmarshal(m.body, &s)
		case m.ex.Request.Headers["Content-Type"] == "application/x-www-form-urlencoded":
			var fields map[string]string
			json.Unmarshal(m.body, &fields)
			form := url.Values{}
			for k, v := range fields {
				form.Set(k, v)
			}
			s = form.Encode()
		}
		m.ex.Request.RawBody = &s
	}
	return m
}

// TestReplayMoreRealLogto replays every exchange of more/ the emulator serves, each folder
// against a fresh emulator set up by replaying setup-real first, and checks what a client
// of Logto branches on: the status, the content type, the paging headers, the error code and
// the body's shape (keys and types; list elements against the first recorded one).
func TestReplayMoreRealLogto(t *testing.T) {
	folders, files := moreFiles(t)
	total := 0
	for _, f := range folders {
		total += len(files[f])
	}
	if total != 282 {
		t.Fatalf("more/INDEX.tsv lists %d exchanges, want the 282 recorded", total)
	}
	for name := range notReplayedMore {
		if !slices.Contains(files[strings.Split(name, "/")[0]], name) {
			t.Errorf("notReplayedMore names %s, which more/INDEX.tsv does not list", name)
		}
	}
	replayed := 0
	for _, folder := range folders {
		t.Run(folder, func(t *testing.T) {
			r := &replayer{srv: newStarted(t, Config{}), subst: map[string]string{}}
			if folder != "setup-real" {
				for _, file := range files["setup-real"] {
					if _, skip := notReplayedMore[file]; !skip {
						r.replayMore(t, loadMore(t, file), false)
					}
				}
				r.seedOrgs(t, moreOrgs[folder])
			}
			for _, file := range files[folder] {
				if reason, ok := notReplayedMore[file]; ok {
					t.Run(filepath.Base(file), func(t *testing.T) { t.Skip(reason) })
					continue
				}
				replayed++
				ex := loadMore(t, file)
				t.Run(filepath.Base(file), func(t *testing.T) {
					if before := beforeMore[file]; before != nil {
						before(t, r)
					}
					r.replayMore(t, ex, true)
				})
			}
		})
	}
	t.Logf("replayed %d of %d exchanges of more/", replayed, total)
}

// seedOrgs creates the organizations a run started with, as copies of setup-real's.
func (r *replayer) seedOrgs(t *testing.T, orgs map[string]string) {
	t.Helper()
	alice, bob, carol := r.subst["6xrolzsegctb"], r.subst["rabl0syg4uav"], r.subst["t9718klt6bof"]
	if alice == "" || bob == "" || carol == "" {
		t.Fatal("setup-real did not create alice, bob and carol")
	}
	for rec, kind := range orgs {
		name := kind
		if name == "" {
			name = "empty"
		}
		id := r.srv.AddOrganization("", name)
		switch kind {
		case "acme":
			r.srv.AddMember(id, alice, "admin", "owner")
			r.srv.AddMember(id, bob, "member")
		case "globex":
			r.srv.AddMember(id, carol)
		}
		r.learn(rec, id)
	}
}

// replayMore sends one exchange with the emulator's credentials and, when check is set,
// compares the answer; the setup prelude only needs its status.
func (r *replayer) replayMore(t *testing.T, m moreExchange, check bool) {
	t.Helper()
	ex := m.ex
	noAuth := ex
	noAuth.Request.Headers = map[string]string{}
	for k, v := range ex.Request.Headers {
		noAuth.Request.Headers[k] = v
	}
	delete(noAuth.Request.Headers, "Authorization")
	req := r.request(t, noAuth)
	if auth := ex.Request.Headers["Authorization"]; auth != "" {
		req.Header.Set("Authorization", r.moreAuthorization(t, auth, ex))
	}
	resp, raw := send(t, req)
	if resp.StatusCode != ex.Response.Status {
		t.Errorf("%s: %s %s: status %d, want %d (body %s)", m.file, req.Method, req.URL, resp.StatusCode, ex.Response.Status, raw)
		return
	}
	var rec, emu any
	json.Unmarshal(ex.Response.Body, &rec)
	gotCT, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusNoContent:
	case gotCT == "application/json" || strings.HasSuffix(gotCT, "+json"):
		if err := json.Unmarshal(raw, &emu); err != nil {
			t.Fatalf("%s: body is not JSON: %v: %s", m.file, err, raw)
		}
	default:
		emu = string(raw)
	}
	// Learn only from what one request created (an object): lists hold other entities in
	// another order, and pairing them by index would learn wrong IDs.
	if _, ok := rec.(map[string]any); ok && req.Method == http.MethodPost {
		r.learnFrom(rec, emu)
	}
	if !check {
		return
	}
	// A few gzip-encoded answers were recorded as undecodable text: only status and headers
	// are checked for them.
	if s, ok := rec.(string); ok && strings.HasPrefix(s, "\x1f") {
		rec = nil
		emu = nil
	}
	if wantCT, _, _ := mime.ParseMediaType(ex.Response.Headers["Content-Type"]); wantCT != gotCT && ex.Response.Status != http.StatusNoContent {
		t.Errorf("Content-Type %q, want %q", gotCT, wantCT)
	}
	for _, h := range []string{"Total-Number", "Link", "WWW-Authenticate"} {
		if _, want := ex.Response.Headers[h]; want != (resp.Header.Get(h) != "") {
			t.Errorf("header %s present = %v, want %v", h, !want, want)
		}
	}
	if recObj, ok := rec.(map[string]any); ok {
		if emuObj, ok := emu.(map[string]any); ok && recObj["code"] != emuObj["code"] {
			t.Errorf("code = %v, want %v", emuObj["code"], recObj["code"])
		}
	}
	if s, ok := rec.(string); ok && !isJWT(s) && emu != s {
		t.Errorf("body = %q, want %q", emu, s)
	}
	compareShape(t, "body", rec, emu, r.sub)
}

// compareShape reports keys missing or extra and values of another JSON type; list elements
// are compared with the first recorded element, and an empty list must be empty in both.
func compareShape(t *testing.T, path string, rec, emu any, sub func(string) string) {
	t.Helper()
	if jsonKind(rec) != jsonKind(emu) {
		t.Errorf("%s: type %s, want %s", path, jsonKind(emu), jsonKind(rec))
		return
	}
	switch rv := rec.(type) {
	case map[string]any:
		ev := emu.(map[string]any)
		sameKeys(t, path, rv, ev)
		for k, v := range ev {
			w, ok := rv[k]
			if !ok || k == "customData" { // customData is free-form: its keys are the caller's
				continue
			}
			if w != nil && v != nil { // nullable members may be null on one side
				compareShape(t, path+"."+k, w, v, sub)
			}
		}
	case []any:
		ev := emu.([]any)
		if (len(rv) == 0) != (len(ev) == 0) {
			t.Errorf("%s: %d elements, want %d", path, len(ev), len(rv))
			return
		}
		for i, e := range ev {
			compareShape(t, fmt.Sprintf("%s[%d]", path, i), counterpart(rv, i, e, sub), e, sub)
		}
	}
}

// moreAuthorization swaps recorded credentials (placeholders and unsigned JWTs) for the
// emulator's: a Basic placeholder becomes the credentials of the app the recorded token was
// issued to; a bearer becomes an emulator token with the recorded claims (subject, client,
// audience, scope). A bearer the real server refused after a key rotation
// (ERR_JWKS_NO_MATCHING_KEY) is minted and then its key rotated away, as happened there.
func (r *replayer) moreAuthorization(t *testing.T, auth string, ex recorded) string {
	t.Helper()
	scheme, cred, _ := strings.Cut(auth, " ")
	switch scheme {
	case "Basic":
		var body struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(ex.Response.Body, &body)
		client, _ := jwtClaims(t, body.AccessToken)["client_id"].(string)
		id := r.sub(client)
		r.srv.mu.Lock()
		app := r.srv.t.apps[id]
		r.srv.mu.Unlock()
		if app == nil {
			t.Fatalf("no emulator app for recorded client %q", client)
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(app.id+":"+app.secret))
	case "Bearer":
		if !isJWT(cred) {
			return auth
		}
		c := jwtClaims(t, cred)
		str := func(k string) string { s, _ := c[k].(string); return r.sub(s) }
		tok := r.srv.MintToken(r.srv.Claims(str("sub"), str("client_id"), str("aud"), str("scope")))
		var e apiError
		json.Unmarshal(ex.Response.Body, &e)
		if data, _ := e.Data.(map[string]any); data["code"] == "ERR_JWKS_NO_MATCHING_KEY" {
			if _, err := r.srv.RotateKey(ES384); err != nil {
				t.Fatal(err)
			}
			r.srv.DropPreviousKeys()
		}
		return "Bearer " + tok
	}
	return auth
}

// jwtClaims decodes a JWT's claims without verifying it ({} when s is not a JWT).
func jwtClaims(t *testing.T, s string) map[string]any {
	t.Helper()
	if !isJWT(s) {
		return map[string]any{}
	}
	_, c := decodeSegment(t, s, 1)
	return c
}

// counterpart is the recorded list element to compare emulated element i with: the one with
// the same (translated) id, else the one at the same index, else the first.
func counterpart(rec []any, i int, emu any, sub func(string) string) any {
	obj, _ := emu.(map[string]any)
	if id, ok := obj["id"].(string); ok {
		for _, r := range rec {
			ro, _ := r.(map[string]any)
			if rid, ok := ro["id"].(string); ok && sub(rid) == id {
				return r
			}
		}
	}
	if i < len(rec) {
		return rec[i]
	}
	return rec[0]
}
