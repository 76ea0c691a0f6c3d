package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// The app's resource indicators, as the sidecar and the baseline are configured.
const (
	apiResource   = "https://api.example.com"
	adminResource = "https://admin.example.com"
	benchClientID = "benchapp00000000000001"
	// tokenScopes are granted to every benchmark token: enough for the allowed shapes below,
	// not for the denied ones.
	tokenScopes = "org:read member:read member:add"
	// orgs is how many organizations the tokens spread over.
	orgs = 50
)

// want is the answer a check must get.
type want struct {
	allow  bool
	status int32 // HTTP status of a denial
}

func (w want) String() string {
	if w.allow {
		return "allow"
	}
	return fmt.Sprintf("deny %d", w.status)
}

// check is one CheckRequest, marshalled before any timing, and its expected answer.
type check struct {
	raw  []byte
	want want
}

// shape is a request of the mix, for a token of organization org and subject user.
type shape struct {
	method, target, body string
	want                 want
}

// shapes is the request mix, drawn from DESIGN's route table: four allowed routes, and two
// denied ones (a scope the token lacks; another organization than the token's).
func shapes(org, user, other, otherOrg string) []shape {
	allow, forbid := want{allow: true}, want{status: http.StatusForbidden}
	return []shape{
		{"GET", "/api/organizations/" + org, "", allow},
		{"GET", "/api/organizations/" + org + "/users?page=1&page_size=20", "", allow},
		{"POST", "/api/organizations/" + org + "/users", `{"userIds":["` + other + `"]}`, allow},
		{"GET", "/api/organizations/" + org + "/users/" + other + "/roles", "", allow},
		{"DELETE", "/api/organizations/" + org, "", forbid},
		{"GET", "/api/organizations/" + otherOrg, "", forbid},
	}
}

// mintTokens signs n distinct valid tokens with the emulator's key: three in four are
// organization tokens, one in four organization-level API tokens. first offsets the subjects.
func mintTokens(lg *fakelogto.Server, first, n int) []tokenInfo {
	out := make([]tokenInfo, n)
	for i := range out {
		j := first + i
		t := tokenInfo{org: fmt.Sprintf("org%d", j%orgs), user: fmt.Sprintf("u%d", j)}
		var claims map[string]any
		if j%4 == 3 {
			claims = lg.Claims(t.user, benchClientID, apiResource, tokenScopes)
			claims["organization_id"] = t.org
		} else {
			claims = lg.Claims(t.user, benchClientID, "urn:logto:organization:"+t.org, tokenScopes)
		}
		t.token = lg.MintToken(claims)
		out[i] = t
	}
	return out
}

type tokenInfo struct{ token, org, user string }

// distinctPaths is how many checks the distinct-paths scenario cycles through: more than a
// run sends at the rates measured, so no path repeats within a run.
const distinctPaths = 30_000

// distinctChecks sends the warm tokens in turn to n different organizations' paths, none the
// token's own: each is denied 403 (wrong_organization) after a full evaluation.
func distinctChecks(tokens []tokenInfo, n int) ([]check, error) {
	out := make([]check, n)
	for i := range out {
		t := tokens[i%len(tokens)]
		var err error
		out[i], err = newCheck(shape{"GET", "/api/organizations/d" + strconv.FormatInt(int64(i), 36), "",
			want{status: http.StatusForbidden}}, t.token)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// routes500 is the generated 500-row route table (realistic templates, the default rows last),
// which the differential tests of sidecar/internal/policy also use.
const routes500 = "tests/bench/testdata/routes500.json"

// copyPolicies copies the policy directory src to dst with orgauthz/data.json replaced by data.
func copyPolicies(src, dst, data string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == filepath.Join("orgauthz", "data.json") {
			p = data
		}
		content, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), content, 0o644)
	})
}

// buildChecks turns tokens into Envoy-faithful CheckRequests: with every, each token with
// each shape of the mix; without, token i with shape i mod len(shapes) only, so each token is
// sent once.
func buildChecks(tokens []tokenInfo, every bool) ([]check, error) {
	var out []check
	for i, t := range tokens {
		all := shapes(t.org, t.user, fmt.Sprintf("v%d", i), fmt.Sprintf("org%d", (i+1)%orgs+orgs))
		if !every {
			all = all[i%len(all) : i%len(all)+1]
		}
		for _, s := range all {
			c, err := newCheck(s, t.token)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func newCheck(s shape, token string) (check, error) {
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(s.body)
	}
	r, err := http.NewRequest(s.method, "http://app.example.com"+s.target, body)
	if err != nil {
		return check{}, err
	}
	r.RemoteAddr = "10.0.0.7:51234"
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "orgauthz-bench")
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	req, err := envoyclient.NewCheckRequest(r, envoyclient.Options{WithBody: true})
	if err != nil {
		return check{}, err
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		return check{}, err
	}
	return check{raw: raw, want: s.want}, nil
}

// source hands out checks to the load generator's workers.
type source interface {
	// next returns the next check, or false when the source is used up.
	next() (*check, bool)
}

// cycle repeats its checks forever.
type cycle struct {
	checks []check
	n      atomic.Uint64
}

func (c *cycle) next() (*check, bool) {
	i := c.n.Add(1) - 1
	return &c.checks[i%uint64(len(c.checks))], true
}

// pool hands out each of its checks once; a server's pool survives across runs so no token is
// ever sent twice to a server that caches.
type pool struct {
	checks []check
	n      atomic.Uint64
}

func (p *pool) next() (*check, bool) {
	i := p.n.Add(1) - 1
	if i >= uint64(len(p.checks)) {
		return nil, false
	}
	return &p.checks[i], true
}

// used returns how many checks were handed out.
func (p *pool) used() int { return int(min(p.n.Load(), uint64(len(p.checks)))) }

// nullCheck is a syntactically fine CheckRequest for readiness probes.
func nullCheck() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/healthz", Headers: map[string]string{":path": "/healthz"}},
	}}}
}
