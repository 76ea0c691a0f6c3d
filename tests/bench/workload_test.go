package main

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

func TestBuildChecks(t *testing.T) {
	lg, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	tokens := mintTokens(lg, 0, 8)
	for _, tc := range []struct {
		every           bool
		want, wantAllow int
	}{{every: true, want: 48, wantAllow: 32}, {every: false, want: 8, wantAllow: 6}} {
		checks, err := buildChecks(tokens, tc.every)
		if err != nil {
			t.Fatal(err)
		}
		allowed := 0
		for i, c := range checks {
			if c.want.allow {
				allowed++
			}
			var req authv3.CheckRequest
			if err := proto.Unmarshal(c.raw, &req); err != nil {
				t.Fatalf("check %d: %v", i, err)
			}
			h := req.GetAttributes().GetRequest().GetHttp()
			k := i
			if tc.every {
				k = i / len(shapes("", "", "", ""))
			}
			tok := tokens[k]
			if got := h.GetHeaders()["authorization"]; got != "Bearer "+tok.token {
				t.Errorf("every=%v, check %d: authorization = %.20q…, want the token's", tc.every, i, got)
			}
			if !strings.HasPrefix(h.GetPath(), "/api/organizations/org") {
				t.Errorf("every=%v, check %d: path = %q, want an organization route", tc.every, i, h.GetPath())
			}
			if h.GetMethod() == "POST" && h.GetBody() == "" {
				t.Errorf("every=%v, check %d: POST without a body", tc.every, i)
			}
		}
		if len(checks) != tc.want || allowed != tc.wantAllow {
			t.Errorf("buildChecks(every=%v) = %d checks, %d allowed; want %d, %d", tc.every, len(checks), allowed, tc.want, tc.wantAllow)
		}
	}
}

// TestMintTokens shows the two token kinds of the mix, distinct and for the right audience.
func TestMintTokens(t *testing.T) {
	lg, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	tokens := mintTokens(lg, 100, 8)
	seen := map[string]bool{}
	for _, tk := range tokens {
		if seen[tk.token] {
			t.Errorf("token for %s repeated", tk.user)
		}
		seen[tk.token] = true
	}
	if tokens[0].user != "u100" || tokens[0].org != "org0" {
		t.Errorf("first token = %s in %s, want u100 in org0", tokens[0].user, tokens[0].org)
	}
}

// TestEnoughColdTokens: a server that used more than its share of the cold tokens in the first
// repeat stops the run then, with a -cold-tokens that would do; servers that reuse tokens
// (no pool) are not counted.
func TestEnoughColdTokens(t *testing.T) {
	b := &bench{o: options{repeats: 3}, cold: make([]check, 30_000)}
	reuse := &server{name: "null"}
	for _, tc := range []struct {
		used    uint64
		wantErr string
	}{{used: 10_000}, {used: 12_000, wantErr: "3 repeats need about 36000 and there are 30000: run again with -cold-tokens 50000"}} {
		orgauthz := &server{name: "orgauthz", pool: &pool{checks: b.cold}}
		orgauthz.pool.n.Store(tc.used)
		err := b.enoughColdTokens([]*server{reuse, orgauthz})
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%d used: %v, want %q", tc.used, err, tc.wantErr)
		}
	}
}
