package decision

import "strings"

// MaxPathBytes bounds a canonical path (DESIGN: at most 2048 bytes).
const MaxPathBytes = 2048

// CanonicalPath checks that path, the part of a request target before "?", is canonical as DESIGN's
// request flow defines it, and returns its segments: "/" alone, or "/"-separated non-empty segments
// of [A-Za-z0-9._~-], none "." or "..", no trailing "/", at most MaxPathBytes. Nothing is decoded or
// rewritten: anything else is refused (the sidecar answers 400, mgmtproxy 403).
//
// A decision is bound to this path, so the sidecar that signs it and mgmtproxy that checks it must
// agree byte for byte: this is the one implementation both use.
func CanonicalPath(path string) ([]string, bool) {
	if len(path) == 0 || len(path) > MaxPathBytes || path[0] != '/' {
		return nil, false
	}
	if path == "/" {
		return []string{}, true
	}
	n := 1
	for i := 1; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '/':
			n++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '~', c == '-':
		default:
			return nil, false
		}
	}
	segments := make([]string, 0, n)
	for s := range strings.SplitSeq(path[1:], "/") {
		if s == "" || s == "." || s == ".." {
			return nil, false
		}
		segments = append(segments, s)
	}
	return segments, true
}

// maxMethodBytes bounds a method name.
const maxMethodBytes = 32

// ValidMethod reports whether m is an upper-case HTTP token (RFC 9110 tchar without lower case): the
// only form of a method that a decision is signed for.
func ValidMethod(m string) bool {
	if m == "" || len(m) > maxMethodBytes {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '!', c == '#',
			c == '$', c == '%', c == '&', c == '\'', c == '*', c == '+', c == '^', c == '`', c == '|', c == '~':
		default:
			return false
		}
	}
	return true
}
