package sidecar

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/decision"
)

// FuzzParseRequest holds parseRequest's promises for any method, target, Authorization and body:
// no panic; an accepted request has an upper-case method, a canonical path that is a prefix of
// the target, segments that rebuild it, and a bearer that is a bounded three-part compact JWS.
// Run it with `go test -fuzz FuzzParseRequest ./sidecar/`; plain `go test` runs the seeds.
func FuzzParseRequest(f *testing.F) {
	f.Add("GET", "/api/organizations/o1?page=1", "Bearer a.b.c", `{"a":1}`)
	f.Add("get", "/api//x/../y;z", "bearer  x.y.z, Bearer a.b.c", `{"a":1,"a":2}`)
	f.Add("POST", "/%2e%2e/a", "Basic eA==", strings.Repeat("[", 100))
	f.Add("DELETE", "/", "", "")
	f.Fuzz(func(t *testing.T, method, target, auth, body string) {
		raw := &rawRequest{method: method, target: target, headers: map[string]string{"content-type": "application/json"}, body: []byte(body)}
		if auth != "" {
			raw.headers["authorization"] = auth
		}
		req, rej := parseRequest(raw, 1024)
		if rej != nil {
			if rej.status != 400 && rej.status != 401 {
				t.Fatalf("rejection status %d", rej.status)
			}
			return
		}
		if !decision.ValidMethod(req.method) || strings.ToUpper(req.method) != req.method {
			t.Fatalf("accepted method %q", req.method)
		}
		if !strings.HasPrefix(target, req.path) || len(req.path) > decision.MaxPathBytes {
			t.Fatalf("path %q is not the start of target %q", req.path, target)
		}
		if rebuilt := "/" + strings.Join(req.segments, "/"); rebuilt != req.path {
			t.Fatalf("segments %q rebuild %q, not %q", req.segments, rebuilt, req.path)
		}
		for _, s := range req.segments {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "%;\\#?/ ") || !utf8.ValidString(s) {
				t.Fatalf("segment %q accepted", s)
			}
		}
		if req.bearer != "" && (strings.Count(req.bearer, ".") != 2 || len(req.bearer) > 8<<10 || strings.ContainsAny(req.bearer, ", =+/")) {
			t.Fatalf("bearer %q accepted", req.bearer)
		}
		if auth == "" && req.bearer != "" {
			t.Fatal("a bearer without an Authorization header")
		}
	})
}

// FuzzParseJSON: what parseJSON accepts is valid JSON and means what encoding/json reads.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x",null,true]}`, `{"a":1,"a":2}`, `[[[]]]`, `"\ud800"`, `1 2`, `{"a":{"b":{}}}`, `1E70000`, `{"n":-1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseJSON(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("parseJSON accepted invalid JSON %q", data)
		}
		var x any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&x); err != nil {
			t.Fatalf("encoding/json refuses %q: %v", data, err)
		}
		want, err := ast.InterfaceToValue(x)
		if err != nil {
			t.Fatal(err)
		}
		if v.Compare(want) != 0 {
			t.Fatalf("parseJSON(%q) = %v, encoding/json reads %v", data, v, want)
		}
	})
}
