package decisionlog

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// redacted replaces a credential-shaped string value.
const redacted = "[redacted]"

// credentialNames are header names and object keys whose values are credentials (compared lower case).
var credentialNames = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"x-orgauthz-decision": true,
}

// credentialParts mark a header name or object key as a credential wherever they occur in it
// (compared lower case): x-auth-token, access_token, client_secret, password, x-api-key, …
var credentialParts = []string{"token", "secret", "passw", "auth", "cookie", "session", "credential",
	"api-key", "api_key", "apikey", "signature", "private"}

// Bounds of the scrubber's memory of credential-name verdicts: names come from requests (header,
// query and body keys), so an attacker can send new ones; past the bound the memory starts afresh.
const (
	maxRememberedNames   = 1024
	maxRememberedNameLen = 64
)

// credentialName is isCredentialName, remembered: an input has the same few dozen keys on nearly
// every record, and the substring tests were a quarter of the writer's CPU.
func (s *scrubber) credentialName(name string) bool {
	if cred, ok := s.names[name]; ok {
		return cred
	}
	cred := isCredentialName(name)
	if len(name) <= maxRememberedNameLen {
		if s.names == nil || len(s.names) >= maxRememberedNames {
			s.names = make(map[string]bool, 64)
		}
		s.names[strings.Clone(name)] = cred // not a slice of the request's memory
	}
	return cred
}

func isCredentialName(name string) bool {
	n := strings.ToLower(name)
	if credentialNames[n] {
		return true
	}
	for _, p := range credentialParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	return false
}

// isCredentialValue reports whether s carries something shaped like a credential: an HTTP
// authorization value ("Bearer …", "Basic …") or a JWS or JWE in compact form anywhere in it.
func isCredentialValue(s string) bool {
	if len(s) < 8 {
		return false
	}
	l := s
	if !isASCII(s) {
		l = strings.ToLower(s) // İ (U+0130) lower-cases to i: "Basİc …" counts too
	}
	if containsFoldASCII(l, "bearer ") || hasPrefixFoldASCII(strings.TrimSpace(l), "basic ") {
		return true
	}
	if !strings.Contains(s, ".") {
		return false
	}
	for f := range strings.FieldsFuncSeq(s, notTokenChar) {
		if looksLikeJOSE(f) {
			return true
		}
	}
	return false
}

// containsFoldASCII reports whether s contains lower, a lower-case ASCII word, in any ASCII case.
// On ASCII text it is strings.Contains(strings.ToLower(s), lower) without copying every value
// that has a capital letter.
func containsFoldASCII(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if hasPrefixFoldASCII(s[i:], lower) {
			return true
		}
	}
	return false
}

func hasPrefixFoldASCII(s, lower string) bool {
	if len(s) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func notTokenChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// looksLikeJOSE reports whether f is a compact JWS (3 parts) or JWE (5 parts) whose header decodes to a
// JSON object: the shape of every Logto access token, M2M token and signed decision.
func looksLikeJOSE(f string) bool {
	n := strings.Count(f, ".")
	if n != 2 && n != 4 {
		return false
	}
	head, _, _ := strings.Cut(f, ".")
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	return err == nil && json.Valid(b) && strings.HasPrefix(strings.TrimSpace(string(b)), "{")
}

// scrubber writes a record's input or result as JSON with credentials removed: credential-named keys
// erased, credential-shaped strings replaced. It writes straight from what the record holds (the
// sidecar's OPA value, or plain Go values), with no generic copy in between, and lists the paths it
// touched in OPA's /input/… form.
type scrubber struct {
	erased, masked []string
	path           []byte          // JSON path of the value being written
	names          map[string]bool // see credentialName

	// The ast.Object being written: its output so far and state (see value).
	out       []byte
	obj       objectState
	objMember func(k, v *ast.Term)
}

// Kinds of object whose keys the scrubber treats specially.
const (
	plainObject = iota
	inputObject // the policy input: its "token" key is the sidecar's summary of the verified token
	tokenObject // that summary: kept, but its claims are erased whole
)

// appendJSON appends v, the record's document at root ("/input" or "/result"), scrubbed. input.token
// is not a credential, so its name is kept; its claims are erased whole (they hold personal data and
// whatever custom claims a tenant adds, and the record's token field has what an audit needs).
func (s *scrubber) appendJSON(b []byte, root string, v any) []byte {
	s.path = append(s.path[:0], root...)
	kind := plainObject
	if root == "/input" {
		kind = inputObject
	}
	return s.value(b, v, kind)
}

func (s *scrubber) value(b []byte, v any, kind int) []byte {
	switch t := v.(type) {
	case nil, ast.Null:
		return append(b, "null"...)
	case *ast.Term:
		if t == nil {
			return append(b, "null"...)
		}
		return s.value(b, t.Value, kind)
	case bool:
		return strconv.AppendBool(b, t)
	case ast.Boolean:
		return strconv.AppendBool(b, bool(t))
	case int:
		return strconv.AppendInt(b, int64(t), 10)
	case int64:
		return strconv.AppendInt(b, t, 10)
	case ast.Number:
		return appendNumber(b, string(t))
	case json.Number:
		return appendNumber(b, string(t))
	case string:
		return s.str(b, t)
	case ast.String:
		return s.str(b, string(t))
	case []string:
		b = append(b, '[')
		for i, e := range t {
			b = s.elem(b, i, e)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, e := range t {
			b = s.elem(b, i, e)
		}
		return append(b, ']')
	case *ast.Array:
		b = append(b, '[')
		for i := range t.Len() {
			b = s.elem(b, i, t.Elem(i))
		}
		return append(b, ']')
	case ast.Set:
		return s.value(b, t.Sorted(), kind)
	case ast.Object:
		// In the object's own order (sorting its keys cost more than the rest), through one
		// method value kept on s: a closure per object would allocate its captures too.
		if s.objMember == nil {
			s.objMember = s.astMember
		}
		outer := s.obj
		s.out, s.obj = append(b, '{'), objectState{first: true, kind: kind}
		t.Foreach(s.objMember)
		b, s.obj = append(s.out, '}'), outer
		return b
	case map[string]any:
		return appendMap(s, b, t, kind)
	case map[string]string:
		return appendMap(s, b, t, kind)
	}
	// Anything else is turned into plain JSON values first.
	raw, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var p any
	if dec.Decode(&p) != nil {
		return append(b, "null"...)
	}
	return s.value(b, p, kind)
}

func appendMap[V any](s *scrubber, b []byte, m map[string]V, kind int) []byte {
	b = append(b, '{')
	first := true
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b, first = s.member(b, first, k, m[k], kind)
	}
	return append(b, '}')
}

// objectState is what astMember needs of the ast.Object being written.
type objectState struct {
	first bool // no member written yet
	kind  int
}

// astMember writes one member of an ast.Object to s.out.
func (s *scrubber) astMember(k, v *ast.Term) {
	key, ok := k.Value.(ast.String)
	if !ok {
		key = ast.String(k.String()) // as ast.JSON names a non-string key
	}
	s.out, s.obj.first = s.member(s.out, s.obj.first, string(key), v, s.obj.kind)
}

// elem appends the i-th element of an array.
func (s *scrubber) elem(b []byte, i int, v any) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	n := len(s.path)
	s.path = strconv.AppendInt(append(s.path, '/'), int64(i), 10)
	b = s.value(b, v, plainObject)
	s.path = s.path[:n]
	return b
}

// member appends "key":value to an object (first: nothing written yet) unless the key names a
// credential, which is erased.
func (s *scrubber) member(b []byte, first bool, key string, v any, kind int) ([]byte, bool) {
	n := len(s.path)
	defer func() { s.path = s.path[:n] }()
	s.path = append(append(s.path, '/'), url.PathEscape(key)...)
	child := plainObject
	switch {
	case kind == inputObject && key == "token":
		child = tokenObject
	case kind == tokenObject && key == "claims", s.credentialName(key):
		s.erased = append(s.erased, string(s.path))
		return b, first
	}
	if !first {
		b = append(b, ',')
	}
	b = appendString(b, key)
	b = append(b, ':')
	return s.value(b, v, child), false
}

// str appends a string value, or redacted when it is credential-shaped.
func (s *scrubber) str(b []byte, v string) []byte {
	if isCredentialValue(v) {
		s.masked = append(s.masked, string(s.path))
		v = redacted
	}
	return appendString(b, v)
}

// appendNumber appends a JSON number; anything else (never from OPA or encoding/json) is null.
func appendNumber(b []byte, n string) []byte {
	if !json.Valid([]byte(n)) || strings.ContainsAny(n, " \t\r\n\"") {
		return append(b, "null"...)
	}
	return append(b, n...)
}

// appendString appends s as a JSON string the way encoding/json does without HTML escaping: control
// characters, quotes and backslashes escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// clean returns s, or redacted when it is credential-shaped: for the record's own string fields.
func clean(s string) string {
	if isCredentialValue(s) {
		return redacted
	}
	return s
}

// cleanAll cleans ss in place, writing only what changes: the sidecar's RequiredScopes and token
// scopes are also read by the deny response built concurrently (the race detector caught the
// unconditional write). A scope that does need cleaning is still written in place.
// cleanAll returns ss with each string cleaned: ss itself when none changes, else a copy, so that a
// slice the caller still reads (the sidecar answers with the same required scopes) is never written.
func cleanAll(ss []string) []string {
	for i, s := range ss {
		if c := clean(s); c != s {
			out := slices.Clone(ss)
			for j := i; j < len(out); j++ {
				out[j] = clean(out[j])
			}
			return out
		}
	}
	return ss
}

// maxRequestIDLen bounds the request_id written.
const maxRequestIDLen = 128

// requestID keeps a client's X-Request-Id only when it is a short run of safe characters that does not
// look like a credential.
func requestID(id string) string {
	if id == "" || len(id) > maxRequestIDLen || isCredentialValue(id) {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:/@+=", c) >= 0) {
			return ""
		}
	}
	return id
}

// traceID keeps a W3C trace id: 32 lower-case hex digits, not all zero.
func traceID(id string) string {
	if len(id) != 32 || strings.Trim(id, "0") == "" {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return id
}
