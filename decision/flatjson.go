package decision

import (
	"encoding/json"
	"errors"
	"fmt"
)

// walkObject calls fn for each member of the JSON object data, whose values must all be scalars. It
// rejects duplicate keys (which encoding/json would silently merge), nested values and trailing data.
// Values reach fn as encoding/json's Decoder.Token gives them with UseNumber: a string, a json.Number,
// a bool or nil. It scans the bytes itself rather than through a json.Decoder (~150 allocations per
// decision, a sixth of its verification); FuzzWalkObject holds it to the Decoder's answers.
func walkObject(data []byte, fn func(key string, val json.Token) error) error {
	s := flatScanner{data: data}
	if s.skipSpace() != '{' {
		return errors.New("not a JSON object")
	}
	s.i++
	var seen []string // a slice, not a map: both callers stop at an unknown member, so it holds at most 12
	for c := s.skipSpace(); c != '}'; {
		if len(seen) > 0 {
			if c != ',' {
				return errInvalidJSON
			}
			s.i++
			s.skipSpace()
		}
		key, ok := s.str()
		if !ok {
			return errInvalidJSON
		}
		for _, k := range seen {
			if k == key {
				return fmt.Errorf("duplicate member %q", key)
			}
		}
		seen = append(seen, key)
		if s.skipSpace() != ':' {
			return errInvalidJSON
		}
		s.i++
		var val json.Token
		switch s.skipSpace() {
		case '{', '[':
			return fmt.Errorf("member %q is not a scalar", key)
		case '"':
			val, ok = s.str()
		case 't':
			val, ok = true, s.literal("true")
		case 'f':
			val, ok = false, s.literal("false")
		case 'n':
			val, ok = nil, s.literal("null")
		default:
			val, ok = s.number()
		}
		if !ok {
			return errInvalidJSON
		}
		if err := fn(key, val); err != nil {
			return err
		}
		if c = s.skipSpace(); c == end {
			return errInvalidJSON
		}
	}
	s.i++
	if s.skipSpace() != end {
		return errors.New("trailing data after the object")
	}
	return nil
}

var errInvalidJSON = errors.New("invalid JSON")

// flatScanner reads JSON tokens from data at i. Its methods advance i past what they read.
type flatScanner struct {
	data []byte
	i    int
}

// end is what skipSpace returns at the end of the data.
const end = -1

// skipSpace moves past JSON whitespace and returns the next byte, or end.
func (s *flatScanner) skipSpace() int {
	for ; s.i < len(s.data); s.i++ {
		switch c := s.data[s.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return int(c)
		}
	}
	return end
}

// str reads a string. Plain printable ASCII, all a decision holds, is taken as is; a string with an
// escape or any other byte is decoded by encoding/json, so its rules (escapes, invalid UTF-8 made
// U+FFFD, control characters refused) are the Decoder's.
func (s *flatScanner) str() (string, bool) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return "", false
	}
	start, plain := s.i, true
	for s.i++; s.i < len(s.data); s.i++ {
		switch c := s.data[s.i]; {
		case c == '"':
			s.i++
			if plain {
				return string(s.data[start+1 : s.i-1]), true
			}
			var out string
			return out, json.Unmarshal(s.data[start:s.i], &out) == nil
		case c == '\\':
			plain = false
			s.i++ // the escaped byte cannot end the string
		case c < 0x20 || c > 0x7e:
			plain = false
		}
	}
	return "", false
}

// literal reads word (true, false or null).
func (s *flatScanner) literal(word string) bool {
	if len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// number reads a number as JSON's grammar has it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *flatScanner) number() (json.Number, bool) {
	start := s.i
	s.skip('-')
	if s.skip('0') {
		// a leading zero stands alone
	} else if !s.digits() {
		return "", false
	}
	if s.skip('.') && !s.digits() {
		return "", false
	}
	if s.skip('e') || s.skip('E') {
		if !s.skip('+') {
			s.skip('-')
		}
		if !s.digits() {
			return "", false
		}
	}
	return json.Number(s.data[start:s.i]), true
}

// skip moves past c if it is next.
func (s *flatScanner) skip(c byte) bool {
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// digits moves past one or more decimal digits, or reports there were none.
func (s *flatScanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && '0' <= s.data[s.i] && s.data[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
