package decisionlog

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
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
	l := strings.ToLower(s)
	if strings.Contains(l, "bearer ") || strings.HasPrefix(strings.TrimSpace(l), "basic ") {
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

// scrubber removes credentials from generic JSON values (maps, slices, strings, numbers) and lists the
// paths it touched, in OPA's /input/… form.
type scrubber struct {
	erased, masked []string
}

// value cleans v, found at path, in place where it can and returns it: credential-named keys are
// erased, credential-shaped strings replaced.
func (s *scrubber) value(path string, v any) any {
	switch t := v.(type) {
	case string:
		if isCredentialValue(t) {
			s.masked = append(s.masked, path)
			return redacted
		}
	case map[string]any:
		for k, e := range t {
			p := path + "/" + url.PathEscape(k)
			if isCredentialName(k) {
				delete(t, k)
				s.erased = append(s.erased, p)
				continue
			}
			t[k] = s.value(p, e)
		}
	case []any:
		for i, e := range t {
			t[i] = s.value(path+"/"+strconv.Itoa(i), e)
		}
	}
	return v
}

// input scrubs the policy input. input.token is the sidecar's summary of the verified token, not a
// credential, so its name is kept; its claims are erased whole (they hold personal data and whatever
// custom claims a tenant adds, and the record's token field has what an audit needs).
func (s *scrubber) input(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return s.value("/input", v)
	}
	tok, hasToken := m["token"]
	delete(m, "token")
	s.value("/input", m)
	if hasToken {
		if tm, ok := tok.(map[string]any); ok {
			if _, ok := tm["claims"]; ok {
				delete(tm, "claims")
				s.erased = append(s.erased, "/input/token/claims")
			}
		}
		m["token"] = s.value("/input/token", tok)
	}
	return m
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
func cleanAll(ss []string) {
	for i, s := range ss {
		if c := clean(s); c != s {
			ss[i] = c
		}
	}
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
