package sidecar

import (
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestParseBearer(t *testing.T) {
	const jws = "aaa.bbb.ccc"
	tests := []struct {
		in, want, reason string
	}{
		{"Bearer " + jws, jws, ""},
		{"bearer " + jws, jws, ""},
		{"BeArEr " + jws, jws, ""},
		{"Bearer  " + jws, "", "malformed_token"},
		{"Bearer\t" + jws, "", "invalid_authorization"},
		{"Bearer" + jws, "", "invalid_authorization"},
		{"Bearer ", "", "invalid_authorization"},
		{"Bearer", "", "invalid_authorization"},
		{"", "", "invalid_authorization"},
		{"Basic " + jws, "", "invalid_authorization"},
		{"Bearer " + jws + ", Bearer " + jws, "", "multiple_tokens"},
		{"Bearer " + jws + ",", "", "multiple_tokens"},
		{"Bearer aaa.bbb", "", "malformed_token"},
		{"Bearer aaa.bbb.ccc.ddd", "", "malformed_token"},
		{"Bearer aaa..ccc", "", "malformed_token"},
		{"Bearer .bbb.ccc", "", "malformed_token"},
		{"Bearer aaa.bbb.", "", "malformed_token"},
		{"Bearer aaa.bbb.cc=", "", "malformed_token"},
		{"Bearer aaa.b+b.ccc", "", "malformed_token"},
		{"Bearer aaa.bbb.ccc ", "", "malformed_token"},
		{"Bearer aaa.bbb.\xff", "", "malformed_token"},
		{"Bearer " + strings.Repeat("a", 8<<10) + ".b.c", "", "token_too_large"},
		{"Bearer " + strings.Repeat("a", 1<<20), "", "token_too_large"},
	}
	for _, tc := range tests {
		got, rej := parseBearer(tc.in)
		reason := ""
		if rej != nil {
			reason = rej.reason
			if rej.status != 401 {
				t.Errorf("parseBearer(%.30q) status = %d, want 401", tc.in, rej.status)
			}
		}
		if got != tc.want || reason != tc.reason {
			t.Errorf("parseBearer(%.30q) = %q, %q; want %q, %q", tc.in, got, reason, tc.want, tc.reason)
		}
	}
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		in   string
		want string // the OPA value's string form; "" when refused
	}{
		{`{"a":1,"b":[true,null,"x"]}`, `{"a": 1, "b": [true, null, "x"]}`},
		{`12345678901234567890123`, `12345678901234567890123`},
		{` {"a" : {}} `, `{"a": {}}`},
		{`{"a":1,"a":2}`, ""},
		{`{"a":{"b":1,"b":1}}`, ""},
		{`{"a":1} {"b":2}`, ""},
		{`{"a":1}]`, ""},
		{`{"a":`, ""},
		{``, ""},
		{`{'a':1}`, ""},
		{`NaN`, ""},
		{strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth), strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)},
		{strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2), ""},
		{strings.Repeat(`{"a":`, 10000), ""},
	}
	for _, tc := range tests {
		v, err := parseJSON([]byte(tc.in))
		got := ""
		if err == nil {
			got = v.String()
		}
		if got != tc.want {
			t.Errorf("parseJSON(%.30q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"application/merge-patch+json": true, "application/problem+json": true,
		"": false, "text/plain": false, "text/json+json": false, "application/jsonx": false,
		"application/x-www-form-urlencoded": false, "application/json; =": false,
	} {
		if got := isJSON(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		in   string
		want map[string][]string
		ok   bool
	}{
		{"", map[string][]string{}, true},
		{"page=1&page_size=20&q=a%20b", map[string][]string{"page": {"1"}, "page_size": {"20"}, "q": {"a b"}}, true},
		{"a=1&a=2", map[string][]string{"a": {"1", "2"}}, true},
		{"a=%zz", nil, false},
		{"a=1;b=2", nil, false},
		{strings.Repeat("a=1&", maxQueryParams), nil, false},
		{"q=" + strings.Repeat("a", maxQueryBytes), nil, false},
	}
	for _, tc := range tests {
		got, ok := parseQuery(tc.in)
		if ok != tc.ok || len(got) != len(tc.want) {
			t.Errorf("parseQuery(%.30q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			continue
		}
		for k, v := range tc.want {
			if !slices.Equal(got[k], v) {
				t.Errorf("parseQuery(%.30q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

func TestInputDocument(t *testing.T) {
	raw := &rawRequest{
		method: "POST", target: "/api/organizations/o1/users?page=1", host: "app.example.com", source: "10.0.0.7",
		headers: map[string]string{
			"content-type": "application/json", "authorization": "Bearer a.b.c", "cookie": "s=1",
			"proxy-authorization": "Basic x", "x-orgauthz-subject": "evil", "x-trace": "t",
		},
		body:       []byte(`{"userIds":["u2"]}`),
		extensions: map[string]string{"tier": "gold"},
	}
	req, rej := parseRequest(raw, 16<<10)
	if rej != nil {
		t.Fatalf("parseRequest: %+v", rej)
	}
	in, err := buildInput(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ast.MustParseTerm(`{
		"request": {"method": "POST", "path": "/api/organizations/o1/users",
			"segments": ["api", "organizations", "o1", "users"], "query": {"page": ["1"]},
			"host": "app.example.com", "headers": {"content-type": "application/json", "x-trace": "t"},
			"body": {"userIds": ["u2"]}},
		"token": null, "source": {"address": "10.0.0.7"}, "context_extensions": {"tier": "gold"}}`).Value
	if in.Compare(want) != 0 {
		t.Errorf("input =\n%v\nwant\n%v", in, want)
	}
	if !slices.Equal(req.clientHeaders, []string{"x-orgauthz-subject"}) {
		t.Errorf("clientHeaders = %q", req.clientHeaders)
	}
}

func TestFilterPolicyHeaders(t *testing.T) {
	kept, dropped := filterPolicyHeaders(map[string]string{
		"X-Tenant": "t", "x-ok": "", "authorization": "a", "Host": "h", ":authority": "a", "x-orgauthz-org": "o",
		"X-Envoy-Upstream": "u", "transfer-encoding": "chunked", "bad name": "v", "x-cr": "a\rb",
	})
	if len(kept) != 2 || kept["x-tenant"] != "t" || kept["x-ok"] != "" {
		t.Errorf("kept = %v, want x-tenant and x-ok", kept)
	}
	if len(dropped) != 8 {
		t.Errorf("dropped = %q, want 8 names", dropped)
	}
}

func TestScopeParam(t *testing.T) {
	if got, want := scopeParam([]string{"org:delete", `a"b`, "", `x\y`, "member:add"}), "org:delete member:add"; got != want {
		t.Errorf("scopeParam = %q, want %q", got, want)
	}
}
