package fakelogto

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// realDir holds the exchanges recorded against a real Logto OSS 1.37.1 server.
var realDir = filepath.Join("..", "..", "..", "shared", "logto-real")

// recordedBase is the real server's address in the recordings.
const recordedBase = "http://127.0.0.1:3001"

type recorded struct {
	Note    string `json:"note"`
	Request struct {
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		RawBody *string           `json:"raw_body"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"response"`
}

func loadRecorded(t *testing.T, file string) recorded {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(realDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var ex recorded
	if err := json.Unmarshal(raw, &ex); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return ex
}

// recordedFiles lists the exchanges in index.tsv order.
func recordedFiles(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(realDir, "index.tsv"))
	if err != nil {
		t.Fatalf("the recorded Logto exchanges must sit beside the repository: %v", err)
	}
	defer f.Close()
	var files []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		if name, _, ok := strings.Cut(sc.Text(), "\t"); ok {
			files = append(files, name)
		}
	}
	return files
}

// notReplayed are the exchanges the emulator does not implement, each with the reason.
var notReplayed = map[string]string{
	"03-admin-openid-configuration.json":                "the admin tenant (port 3002) is not emulated",
	"04-admin-jwks.json":                                "the admin tenant (port 3002) is not emulated",
	"05-admin-tenant-m-default-client-credentials.json": "the admin tenant (port 3002) is not emulated",
}

// replayer replays the recordings in order against one emulator, translating the real
// server's IDs, tokens and secrets into the emulator's as it learns them from responses.
type replayer struct {
	srv   *Server
	subst map[string]string // recorded value → emulator value
}

func (r *replayer) learn(rec, emu string) {
	if rec != emu && rec != "" {
		r.subst[rec] = emu
	}
}

// sub translates a recorded string: the base URL and every learned value inside it.
func (r *replayer) sub(s string) string {
	s = strings.ReplaceAll(s, recordedBase, r.srv.URL())
	keys := make([]string, 0, len(r.subst))
	for k := range r.subst {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		s = strings.ReplaceAll(s, k, r.subst[k])
	}
	return s
}

// request rebuilds a recorded request for the emulator, with emulator credentials.
func (r *replayer) request(t *testing.T, ex recorded) *http.Request {
	t.Helper()
	var body io.Reader = http.NoBody
	ct := ex.Request.Headers["Content-Type"]
	if ex.Request.RawBody != nil {
		raw := *ex.Request.RawBody
		if ct == "application/x-www-form-urlencoded" {
			form, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatal(err)
			}
			for k, vs := range form {
				for i := range vs {
					vs[i] = r.sub(vs[i])
				}
				form[k] = vs
			}
			raw = form.Encode()
		} else {
			raw = r.sub(raw)
		}
		body = strings.NewReader(raw)
	}
	req, err := http.NewRequest(ex.Request.Method, r.sub(ex.Request.URL), body)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if auth, ok := ex.Request.Headers["Authorization"]; ok {
		req.Header.Set("Authorization", r.authorization(t, auth))
	}
	return req
}

// authorization swaps the real server's credentials for the emulator's: Basic secrets by the
// learned mapping, bearers issued by the real server by the emulator's token issued in the
// same step (or a fresh Management API token). Anything else, such as "Bearer not-a-jwt", is
// sent as recorded.
func (r *replayer) authorization(t *testing.T, auth string) string {
	scheme, cred, _ := strings.Cut(auth, " ")
	switch scheme {
	case "Basic":
		dec, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			t.Fatal(err)
		}
		id, secret, _ := strings.Cut(string(dec), ":")
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(r.sub(id)+":"+r.sub(secret)))
	case "Bearer":
		if emu, ok := r.subst[cred]; ok {
			return "Bearer " + emu
		}
		if isJWT(cred) {
			// The admin tenant's token (exchange 05) sets the tenant up before the M2M app
			// exists: the emulator's equivalent is a Management API token of its own.
			return "Bearer " + r.srv.MintToken(r.srv.Claims("m-default", "m-default", r.srv.ManagementResource(), "all"))
		}
	}
	return auth
}

// Keys whose values the emulator chooses: learned (IDs, tokens, secrets) or compared by type
// only (times, key material).
var (
	learnedKeys  = []string{"id", "access_token", "subjectToken", "secret"}
	volatileKeys = []string{"createdAt", "updatedAt", "iat", "exp", "jti", "kid", "x", "y"}
)

// learnFrom walks the recorded and emulated bodies side by side and learns the emulator's
// values for learnedKeys.
func (r *replayer) learnFrom(rec, emu any) {
	switch rv := rec.(type) {
	case map[string]any:
		ev, ok := emu.(map[string]any)
		if !ok {
			return
		}
		for k, v := range rv {
			if rs, ok := v.(string); ok && slices.Contains(learnedKeys, k) {
				if es, ok := ev[k].(string); ok {
					r.learn(rs, es)
				}
				continue
			}
			r.learnFrom(v, ev[k])
		}
	case []any:
		ev, ok := emu.([]any)
		if !ok {
			return
		}
		for i := range min(len(rv), len(ev)) {
			r.learnFrom(rv[i], ev[i])
		}
	}
}

// compare reports every difference between the recorded and emulated values: same keys, same
// types, equal values after translation, except volatileKeys (type only). Access tokens are
// decoded and their claims compared the same way, key order included.
func (r *replayer) compare(t *testing.T, path string, rec, emu any) {
	t.Helper()
	if jsonKind(rec) != jsonKind(emu) {
		t.Errorf("%s: type %s, want %s (got %v, want %v)", path, jsonKind(emu), jsonKind(rec), emu, rec)
		return
	}
	switch rv := rec.(type) {
	case map[string]any:
		ev := emu.(map[string]any)
		sameKeys(t, path, rv, ev)
		for k, v := range rv {
			if ew, ok := ev[k]; ok && !slices.Contains(volatileKeys, k) {
				r.compare(t, path+"."+k, v, ew)
			}
		}
	case []any:
		ev := emu.([]any)
		if len(rv) != len(ev) {
			t.Errorf("%s: %d elements, want %d", path, len(ev), len(rv))
			return
		}
		for i := range rv {
			r.compare(t, fmt.Sprintf("%s[%d]", path, i), rv[i], ev[i])
		}
	case string:
		es := emu.(string)
		if isJWT(rv) && isJWT(es) {
			r.compareJWT(t, path, rv, es)
			return
		}
		if want := r.sub(rv); es != want {
			t.Errorf("%s = %q, want %q", path, es, want)
		}
	default:
		if fmt.Sprint(rv) != fmt.Sprint(emu) {
			t.Errorf("%s = %v, want %v", path, emu, rec)
		}
	}
}

// sameKeys reports the keys one object has and the other lacks.
func sameKeys(t *testing.T, path string, rec, emu map[string]any) {
	t.Helper()
	for k := range rec {
		if _, ok := emu[k]; !ok {
			t.Errorf("%s: missing key %q", path, k)
		}
	}
	for k := range emu {
		if _, ok := rec[k]; !ok {
			t.Errorf("%s: extra key %q", path, k)
		}
	}
}

func (r *replayer) compareJWT(t *testing.T, path, rec, emu string) {
	t.Helper()
	for i, name := range []string{"header", "claims"} {
		rk, rv := decodeSegment(t, rec, i)
		ek, ev := decodeSegment(t, emu, i)
		if !slices.Equal(rk, ek) {
			t.Errorf("%s %s keys = %v, want %v (order included)", path, name, ek, rk)
		}
		r.compare(t, path+"<"+name+">", rv, ev)
	}
}

// decodeSegment returns the keys (in order) and value of a JWT's header (0) or claims (1).
func decodeSegment(t *testing.T, jwt string, i int) ([]string, map[string]any) {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[i])
	if err != nil {
		t.Fatalf("decode JWT: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode JWT: %v", err)
	}
	return objectKeys(raw), m
}

// objectKeys lists a JSON object's keys in their order (nil when raw is not an object).
func objectKeys(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return keys
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return keys
}

func isJWT(s string) bool { return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2 }

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

// Headers compared after translation when the recording has them.
var comparedHeaders = []string{"Total-Number", "Link", "WWW-Authenticate", "Retry-After"}

// TestReplayRealLogto replays every recorded exchange the emulator implements, in order, and
// checks the status, the content type, the paging and auth headers and the body (shape and,
// apart from generated IDs, tokens and times, values).
func TestReplayRealLogto(t *testing.T) {
	srv := newStarted(t, Config{})
	r := &replayer{srv: srv, subst: map[string]string{}}
	files := recordedFiles(t)
	if len(files) < 100 {
		t.Fatalf("index.tsv lists %d exchanges, want the 114 recorded", len(files))
	}
	for name := range notReplayed {
		if !slices.Contains(files, name) {
			t.Errorf("notReplayed names %s, which index.tsv does not list", name)
		}
	}
	replayed := 0
	for _, file := range files {
		ex := loadRecorded(t, file)
		if reason, ok := notReplayed[file]; ok {
			t.Run(file, func(t *testing.T) { t.Skip(reason) })
			continue
		}
		replayed++
		// Subtests share the emulator's state and run in order; a failure does not stop later
		// ones.
		t.Run(file, func(t *testing.T) { r.replay(t, ex) })
	}
	t.Logf("replayed %d of %d recorded exchanges", replayed, len(files))
}

func (r *replayer) replay(t *testing.T, ex recorded) {
	req := r.request(t, ex)
	resp, raw := send(t, req)
	if resp.StatusCode != ex.Response.Status {
		t.Errorf("%s %s: status %d, want %d (body %s)", req.Method, req.URL, resp.StatusCode, ex.Response.Status, raw)
	}
	wantCT, _, _ := mime.ParseMediaType(ex.Response.Headers["Content-Type"])
	gotCT, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if wantCT != gotCT {
		t.Errorf("Content-Type %q, want %q", gotCT, wantCT)
	}

	var rec, emu any
	if err := json.Unmarshal(ex.Response.Body, &rec); err != nil {
		t.Fatal(err)
	}
	if gotCT == "application/json" || strings.HasSuffix(gotCT, "+json") {
		if err := json.Unmarshal(raw, &emu); err != nil {
			t.Fatalf("body is not JSON: %v: %s", err, raw)
		}
	} else {
		emu = string(raw)
	}
	r.learnFrom(rec, emu)
	r.compare(t, "body", rec, emu)

	for _, h := range comparedHeaders {
		want, ok := ex.Response.Headers[h]
		if !ok {
			continue
		}
		if got, want := resp.Header.Get(h), r.sub(want); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
}

// send does req and reads the whole answer.
func send(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// newStarted starts an emulator for the test.
func newStarted(t *testing.T, cfg Config) *Server {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}
