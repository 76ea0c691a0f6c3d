package decisionlog

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"time"

	"github.com/orgauthz/orgauthz/decision"
)

var b64 = base64.RawURLEncoding

// es384Token signs claims as a Logto access token does (ES384, typ at+jwt).
func es384Token(t *testing.T, claims map[string]any) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := json.Marshal(map[string]any{"alg": "ES384", "typ": "at+jwt", "kid": "k1"})
	p, _ := json.Marshal(claims)
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sum := sha512.Sum384([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 96)
	r.FillBytes(sig[:48])
	s.FillBytes(sig[48:])
	return signing + "." + b64.EncodeToString(sig)
}

// signedDecision is a real x-orgauthz-decision: a credential for mgmtproxy for 30 s.
func signedDecision(t *testing.T) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decision.NewSigner(key, 30*time.Second).Sign(decision.Claims{
		Method: "POST", Path: "/api/organizations/o1/users", Route: "POST /api/organizations/{orgId}/users",
		Kind: decision.KindOrganization, Subject: "u1", Org: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// No token, secret or M2M bearer reaches the audit stream, wherever a hostile or careless input put it:
// headers under any name, query parameters, JSON bodies, claims, context extensions, the policy's
// result, the client's X-Request-Id, and the record's own fields.
func TestNoCredentialInRecord(t *testing.T) {
	user := es384Token(t, map[string]any{"sub": "u1", "aud": "urn:logto:organization:o1", "scope": "member:add"})
	m2m := es384Token(t, map[string]any{"sub": "m2m-app", "client_id": "m2m-app", "aud": "https://default.logto.app/api", "scope": "all"})
	signed := signedDecision(t)
	jwe := "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"
	const (
		appSecret = "s3cr3t-m2m-app-secret-Q2FmZSBiYWJl"
		password  = "hunter2-correct-horse"
		cookie    = "session=abcdef0123456789abcdef"
	)
	secrets := map[string]string{"user token": user, "M2M token": m2m, "signed decision": signed, "JWE": jwe,
		"app secret": appSecret, "password": password, "cookie": cookie}

	headers := map[string]any{
		"content-type":                "application/json",
		"authorization":               "Bearer " + user,
		"Authorization":               "bearer " + m2m,
		"proxy-authorization":         "Basic " + b64.EncodeToString([]byte("m2m-app:"+appSecret)),
		"x-forwarded-authorization":   "Bearer " + m2m,
		"x-auth-request-access-token": user,
		"x-api-key":                   appSecret,
		"cookie":                      cookie,
		"x-orgauthz-decision":         signed,
		"x-innocent":                  user,                        // a token under a harmless name
		"x-note":                      "please use " + m2m + " ok", // inside text
		"x-jwe":                       jwe,
		"x-client-secret":             appSecret,
	}
	body := map[string]any{
		"userIds":       []any{"u2", user},
		"password":      password,
		"client_secret": appSecret,
		"nested":        map[string]any{"access_token": user, "deeper": []any{map[string]any{"refresh_token": m2m, "note": "Bearer " + m2m}}},
		"name":          "Acme",
	}
	in := sidecarInput(t, headers, body)
	// Hostile claims and extensions: the input as a careless caller might build it.
	j, _ := ast.JSON(in)
	generic := j.(map[string]any)
	generic["token"].(map[string]any)["claims"] = map[string]any{"sub": "u1", "act": map[string]any{"token": m2m}, "custom": user}
	generic["context_extensions"] = map[string]any{"upstream_token": m2m, "hint": "Bearer " + user}
	generic["request"].(map[string]any)["query"] = map[string]any{"access_token": []any{user}, "state": []any{m2m}, "page": []any{"1"}}

	rec := &Record{
		DecisionID: NewID(), Path: "orgauthz/decision", Input: generic,
		Result: map[string]any{"allow": true, "reason": "org_permission", "route": "POST /api/organizations/{orgId}/users", "headers": map[string]any{"x-upstream": "Bearer " + m2m, "x-token": user}},
		Status: 200, Allow: true, Reason: "org_permission", Route: "POST /api/organizations/{orgId}/users",
		RequestID: user, TraceID: m2m, SourceAddress: "Bearer " + user, RequiredScopes: []string{user},
		Token:   &Token{Kind: "organization", Subject: user, ClientID: m2m, Scopes: []string{"member:add", signed}},
		Calls:   []Call{{Method: "POST", Path: "/api/organizations?token=" + m2m, Error: "Bearer " + m2m}},
		Changes: &Changes{UserIDs: []string{user}, Items: []Item{{ID: m2m, Error: signed}}},
	}
	lines, out := writeAll(t, Options{Service: "sidecar", Labels: map[string]string{"id": "pod-1"}}, rec)
	for name, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the %s appears in the record", name)
		}
		// A signature alone is enough to replay nothing, but its presence means the token leaked.
		if parts := strings.Split(s, "."); len(parts) >= 3 && strings.Contains(out, parts[len(parts)-1]) {
			t.Errorf("the %s's last part appears in the record", name)
		}
	}
	if strings.Contains(out, b64.EncodeToString([]byte("m2m-app:"+appSecret))) {
		t.Error("the Basic credentials appear in the record")
	}
	// What is not a credential stays, and the removals are listed.
	got := lines[0]
	for path, want := range map[string]any{
		"input/request/headers/content-type": "application/json", "input/request/body/name": "Acme",
		"input/request/body/userIds/0": nil, // an array: checked below
		"input/request/query/page/0":   nil,
		"reason":                       "org_permission", "route": "POST /api/organizations/{orgId}/users",
		"input/token/kind": "organization",
	} {
		if want != nil && get(got, path) != want {
			t.Errorf("%s = %#v, want %#v", path, get(got, path), want)
		}
	}
	if ids, _ := json.Marshal(get(got, "input/request/body/userIds")); string(ids) != `["u2","[redacted]"]` {
		t.Errorf("body userIds = %s, want [\"u2\",\"[redacted]\"]", ids)
	}
	erased := strings.Join(toStrings(get(got, "erased")), " ")
	for _, p := range []string{"/input/request/headers/authorization", "/input/request/headers/cookie",
		"/input/request/headers/x-orgauthz-decision", "/input/request/body/password", "/input/token/claims",
		"/input/request/query/access_token", "/result/headers/x-token"} {
		if !strings.Contains(erased+" ", p+" ") {
			t.Errorf("erased lacks %s: %s", p, erased)
		}
	}
	masked := strings.Join(toStrings(get(got, "masked")), " ")
	for _, p := range []string{"/input/request/headers/x-innocent", "/input/request/body/userIds/1", "/result/headers/x-upstream"} {
		if !strings.Contains(masked+" ", p+" ") {
			t.Errorf("masked lacks %s: %s", p, masked)
		}
	}
	if get(got, "request_id") != nil || get(got, "trace_id") != nil {
		t.Errorf("a token given as request or trace id was kept: %v %v", get(got, "request_id"), get(got, "trace_id"))
	}
}

func toStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, e := range a {
			s, _ := e.(string)
			out = append(out, s)
		}
	}
	return out
}

// Random junk around token-shaped strings never leaks them, and plain values are left alone.
func TestCredentialValueShapes(t *testing.T) {
	tok := es384Token(t, map[string]any{"sub": "u1"})
	for _, tc := range []struct {
		in   string
		cred bool
	}{
		{tok, true}, {"Bearer " + tok, true}, {"BEARER opaque-token-value", true}, {"Basic dXNlcjpwYXNz", true},
		{"x," + tok + ",y", true}, {`{"t":"` + tok + `"}`, true}, {signedDecision(t), true},
		{"POST /api/organizations/{orgId}/users", false}, {"org:create member:add", false},
		{"10.0.0.7", false}, {"a.b.c", false}, {"v1.2.3", false}, {"example.com.au", false},
		{"u1", false}, {"alice@example.com", false},
		{"bEaReR opaque-token-value", true}, {"  bASIC dXNlcjpwYXNz", true}, {"Basİc dXNlcjpwYXNz", true},
		{"né: Bearer opaque", true}, {"bearer-opaque-value", false}, {"a basic value", false},
	} {
		if got := isCredentialValue(tc.in); got != tc.cred {
			t.Errorf("isCredentialValue(%.60q) = %v, want %v", tc.in, got, tc.cred)
		}
	}
}

// Forward receives each record as written: credentials already removed, so a remote sink fed from
// it (the sidecar's OPA decision-log upload) never sees a token either.
func TestForwardGetsScrubbedRecord(t *testing.T) {
	tok := es384Token(t, map[string]any{"sub": "u1"})
	got := make(chan *Record, 1)
	l := New(io.Discard, Options{Forward: func(r *Record) { got <- r }})
	defer l.Close()
	l.Submit(&Record{DecisionID: "d1", Input: map[string]any{"request": map[string]any{
		"headers": map[string]any{"authorization": "Bearer " + tok, "x-note": tok}}}})
	select {
	case r := <-got:
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), tok[strings.LastIndexByte(tok, '.')+1:]) {
			t.Errorf("forwarded record carries the token: %s", b)
		}
		if r.DecisionID != "d1" || len(r.Erased) == 0 {
			t.Errorf("forwarded record = %s, want d1 with its erased paths", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Forward was not called")
	}
}

// A forwarded record may be kept (OPA's plugin buffers events): the next record must not change it.
func TestForwardedRecordIsItsOwn(t *testing.T) {
	got := make(chan *Record, 2)
	l := New(io.Discard, Options{Forward: func(r *Record) { got <- r }})
	defer l.Close()
	for _, id := range []string{"first", "second"} {
		l.Submit(&Record{DecisionID: id, Input: map[string]any{"id": id + strings.Repeat("x", 100)},
			Result: map[string]any{"id": id}})
	}
	var kept []*Record
	for range 2 {
		select {
		case r := <-got:
			kept = append(kept, r)
		case <-time.After(10 * time.Second):
			t.Fatal("Forward was not called")
		}
	}
	for _, r := range kept {
		in, _ := json.Marshal(r.Input)
		res, _ := json.Marshal(r.Result)
		if !strings.Contains(string(in), `"`+r.DecisionID+"x") || string(res) != `{"id":"`+r.DecisionID+`"}` {
			t.Errorf("kept record %s now holds input %s, result %s", r.DecisionID, in, res)
		}
	}
}

// The case-folding shortcut finds exactly what lower-casing the whole value found, Unicode included.
func TestCredentialValueFoldsLikeToLower(t *testing.T) {
	parts := []string{"bearer ", "BEARER ", "Bearer", "basic ", "BASİC ", "Basic", "ß", "K", "İ", " ", "x", "é", "\xff", "\t"}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(5) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		s := b.String()
		l := strings.ToLower(s)
		want := len(s) >= 8 && (strings.Contains(l, "bearer ") || strings.HasPrefix(strings.TrimSpace(l), "basic "))
		if got := isCredentialValue(s); got != want {
			t.Fatalf("isCredentialValue(%q) = %v, lower-casing says %v", s, got, want)
		}
	}
}

// The scrubber's memory of key verdicts agrees with isCredentialName, stays within its bound when a
// sender invents keys, and still erases credential keys after it started afresh.
func TestCredentialNameMemoryBounded(t *testing.T) {
	var s scrubber
	for i := range 3 * maxRememberedNames {
		name := fmt.Sprintf("x-junk-%d", i)
		if s.credentialName(name) {
			t.Fatalf("%s counted as a credential", name)
		}
		if len(s.names) > maxRememberedNames {
			t.Fatalf("%d names remembered, bound %d", len(s.names), maxRememberedNames)
		}
	}
	long := strings.Repeat("a", maxRememberedNameLen+1)
	for _, name := range []string{"authorization", "X-Auth-Token", "content-type", "Client_Secret", long, long + "token"} {
		for range 2 { // the second answer comes from memory
			if got, want := s.credentialName(name), isCredentialName(name); got != want {
				t.Errorf("credentialName(%.20q) = %v, want %v", name, got, want)
			}
		}
	}
	if _, ok := s.names[long]; ok {
		t.Errorf("a name over %d bytes was remembered", maxRememberedNameLen)
	}
	out := string(s.appendJSON(nil, "/input", map[string]any{"headers": map[string]any{"x-api-key": "k1", "accept": "a"}}))
	if strings.Contains(out, "k1") || !strings.Contains(out, `"accept":"a"`) {
		t.Errorf("scrubbed = %s", out)
	}
}
