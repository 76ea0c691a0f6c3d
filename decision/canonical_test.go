package decision

import (
	"slices"
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		path string
		want []string // nil: refused
	}{
		{"/", []string{}},
		{"/api/organizations", []string{"api", "organizations"}},
		{"/api/organizations/o1/users/u2/roles/r1", []string{"api", "organizations", "o1", "users", "u2", "roles", "r1"}},
		{"/a.b/c~d/e-f/g_h", []string{"a.b", "c~d", "e-f", "g_h"}},
		{"/API/Organizations", []string{"API", "Organizations"}},
		{"/..a/a..", []string{"..a", "a.."}},
		{"", nil},
		{"api", nil},
		{"//", nil},
		{"/a/", nil},
		{"/a//b", nil},
		{"/a/./b", nil},
		{"/a/../b", nil},
		{"/..", nil},
		{"/.", nil},
		{"/a%2Fb", nil},
		{"/a%2e%2e", nil},
		{"/a;b", nil},
		{`/a\b`, nil},
		{"/a#b", nil},
		{"/a b", nil},
		{"/a\x00b", nil},
		{"/ö", nil},
		{"/a?b", nil},
		{"/" + strings.Repeat("a", MaxPathBytes-1), []string{strings.Repeat("a", MaxPathBytes-1)}},
		{"/" + strings.Repeat("a", MaxPathBytes), nil},
		{strings.Repeat("/a", 32<<10), nil},
	}
	for _, tc := range tests {
		got, ok := CanonicalPath(tc.path)
		if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("CanonicalPath(%.40q) = %q, %v; want %q", tc.path, got, ok, tc.want)
		}
	}
}

func TestValidMethod(t *testing.T) {
	for m, want := range map[string]bool{
		"GET": true, "POST": true, "M-SEARCH": true, "PROPFIND": true,
		"": false, "get": false, "Get": false, "GET ": false, "G\x00T": false, "GÉT": false,
		strings.Repeat("A", maxMethodBytes+1): false,
	} {
		if got := ValidMethod(m); got != want {
			t.Errorf("ValidMethod(%q) = %v, want %v", m, got, want)
		}
	}
}
