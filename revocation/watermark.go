package revocation

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

// Kinds is a set of token kinds (DESIGN's table of token kinds) that a Watermark applies to.
type Kinds uint8

// The token kinds, one bit each.
const (
	Organization    Kinds = 1 << iota // decision.KindOrganization
	OrganizationAPI                   // decision.KindOrganizationAPI
	GlobalAPI                         // decision.KindGlobalAPI
	Admin                             // decision.KindAdmin

	// OrgKinds are the kinds with an organization context: what an organization's roles grant.
	OrgKinds = Organization | OrganizationAPI
	// GlobalKinds are the kinds without one: what global roles grant.
	GlobalKinds = GlobalAPI | Admin
	AllKinds    = OrgKinds | GlobalKinds
)

const numKinds = 4

// kindIndex maps a token kind name (decision.Kind…) to its bit number, or -1.
func kindIndex(kind string) int {
	switch kind {
	case decision.KindOrganization:
		return 0
	case decision.KindOrganizationAPI:
		return 1
	case decision.KindGlobalAPI:
		return 2
	case decision.KindAdmin:
		return 3
	}
	return -1
}

// A Watermark refuses the tokens it matches that were issued before NotBefore: the tokens of kind in
// Kinds whose organization context is Org and whose subject is User. An empty Org or User matches
// every organization context (including none) or every subject: a Watermark without either is
// tenant-wide for its Kinds, the coarse answer when Logto does not say who is affected.
type Watermark struct {
	Org       string
	User      string
	Kinds     Kinds
	NotBefore int64 // Unix seconds: a matching token with iat < NotBefore is refused
}

// NotBefore is the watermark second for a change made at t. Token iat is in whole seconds, so a token
// issued in the same second as the change cannot be told apart from one issued just before it: both
// are refused (iat < t's second + 1). A client that fetched a new token within that second gets one
// token_revoked and succeeds with the next token it fetches; the removed power never survives.
func NotBefore(t time.Time) int64 { return t.Unix() + 1 }

// maxIDBytes bounds an organization or user ID (Logto's are 12 characters, application IDs 21).
const maxIDBytes = 64

// validID reports whether s is empty (a wildcard) or an ID of [0-9A-Za-z_-], at most maxIDBytes: the
// alphabet never contains the ":" that separates the fields of a Watermark's shared form.
func validID(s string) bool {
	if len(s) > maxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (w Watermark) validate() error {
	switch {
	case !validID(w.Org):
		return errors.New("revocation: organization ID is not [0-9A-Za-z_-]{0,64}")
	case !validID(w.User):
		return errors.New("revocation: user ID is not [0-9A-Za-z_-]{0,64}")
	case w.Kinds == 0 || w.Kinds&^AllKinds != 0:
		return fmt.Errorf("revocation: kinds %#x", w.Kinds)
	case w.NotBefore <= 0:
		return errors.New("revocation: no NotBefore")
	}
	return nil
}

// scope is what a Watermark matches, without its time: the key of the shared set.
type scope struct {
	org, user string
	kinds     Kinds
}

// String is the shared form of a scope, "<kinds>:<org>:<user>", the member of the Redis sorted set.
func (s scope) String() string {
	return strconv.Itoa(int(s.kinds)) + ":" + s.org + ":" + s.user
}

// maxScopeBytes bounds the shared form of a scope read back from Redis.
const maxScopeBytes = 3 + 2 + 2*maxIDBytes

func parseScope(s string) (scope, error) {
	if len(s) > maxScopeBytes {
		return scope{}, errors.New("revocation: scope too long")
	}
	k, rest, ok1 := strings.Cut(s, ":")
	org, user, ok2 := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(k, 10, 8)
	w := Watermark{Org: org, User: user, Kinds: Kinds(n), NotBefore: 1}
	if !ok1 || !ok2 || err != nil {
		return scope{}, fmt.Errorf("revocation: malformed scope %q", s)
	}
	if err := w.validate(); err != nil {
		return scope{}, err
	}
	return scope{org, user, w.Kinds}, nil
}

// who is an (organization, user) pair of the read-side index; "" is a wildcard.
type who struct{ org, user string }

// set is an immutable snapshot of the watermarks, indexed for Revoked: one lookup per applicable
// (organization, user) pair, each giving the not-before second of every kind. A Store replaces it
// whole on every change (changes are rare), so readers never lock.
type set struct {
	n                       int // entries; 0 makes Revoked a single load and compare
	tenant                  [numKinds]int64
	byOrg, byUser, byMember bool // whether any entry of that shape exists
	entries                 map[who]*[numKinds]int64
}

func newSet(scopes map[scope]int64) *set {
	s := &set{n: len(scopes), entries: make(map[who]*[numKinds]int64, len(scopes))}
	for sc, nb := range scopes {
		var row *[numKinds]int64
		if sc.org == "" && sc.user == "" {
			row = &s.tenant
		} else {
			k := who{sc.org, sc.user}
			if row = s.entries[k]; row == nil {
				row = new([numKinds]int64)
				s.entries[k] = row
			}
			s.byOrg = s.byOrg || sc.user == ""
			s.byUser = s.byUser || sc.org == ""
			s.byMember = s.byMember || sc.org != "" && sc.user != ""
		}
		for i := range numKinds {
			if sc.kinds&(1<<i) != 0 && nb > row[i] {
				row[i] = nb
			}
		}
	}
	return s
}

// revoked reports whether a token of kind (bit number k, or -1 for a kind this package does not
// know: then any kind's watermark applies) with organization context org ("" for none), subject user
// and issued at iat is before an applicable watermark.
func (s *set) revoked(org, user string, iat int64, k int) bool {
	if s.n == 0 {
		return false
	}
	if before(&s.tenant, iat, k) {
		return true
	}
	if org != "" && s.byOrg {
		if row := s.entries[who{org, ""}]; row != nil && before(row, iat, k) {
			return true
		}
	}
	if user != "" && s.byUser {
		if row := s.entries[who{"", user}]; row != nil && before(row, iat, k) {
			return true
		}
	}
	if org != "" && user != "" && s.byMember {
		if row := s.entries[who{org, user}]; row != nil && before(row, iat, k) {
			return true
		}
	}
	return false
}

func before(row *[numKinds]int64, iat int64, k int) bool {
	if k >= 0 {
		return iat < row[k]
	}
	for _, nb := range row {
		if iat < nb {
			return true
		}
	}
	return false
}
