package sidecar_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
	"github.com/orgauthz/orgauthz/sidecar"
)

// FuzzCheckRequest drives the exported Check with CheckRequests no Envoy would send: any
// method, :path, Authorization, content type, body and one more header, seeded around an
// allowed request of a real token. Whatever arrives, the answer has its status set; a deny never
// echoes the token; an allow carries a decision that mgmtproxy's verifier accepts for exactly
// the method and the path before '?', for the token's subject and organization, and removes
// the Authorization header. Black-box: it uses only the package's exported API.
func FuzzCheckRequest(f *testing.F) {
	logto, err := fakelogto.New(fakelogto.Config{})
	if err != nil {
		f.Fatal(err)
	}
	logto.SeedDemo()
	if err := logto.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { logto.Close() })
	good, err := logto.IssueUserToken(fakelogto.UserTokenRequest{
		UserID: fakelogto.DemoAliceID, OrganizationID: fakelogto.DemoAcmeID,
		Scopes: []string{"org:read", "member:read", "member:add"}})
	if err != nil {
		f.Fatal(err)
	}

	dir := f.TempDir()
	priv, pub := filepath.Join(dir, "decision.pem"), filepath.Join(dir, "decision.pub.pem")
	if err := decision.GenerateKey(priv, pub); err != nil {
		f.Fatal(err)
	}
	cfg := sidecar.Default()
	cfg.Issuers = []string{logto.Issuer()}
	cfg.APIResource, cfg.AdminResource = fakelogto.DemoAPIResource, fakelogto.DemoAdminResource
	cfg.Policies = "../policies"
	cfg.DecisionKey = priv
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	valid, err := cfg.Validate()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := sidecar.New(ctx, valid, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !srv.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			f.Fatal("sidecar not ready after a minute")
		}
	}

	verifier, err := decision.LoadVerifier(pub)
	if err != nil {
		f.Fatal(err)
	}

	org := "/api/organizations/" + fakelogto.DemoAcmeID
	f.Add("GET", org, "Bearer "+good, "", "", "x-request-id", "r1")
	f.Add("GET", org+"/users?page=1&page_size=20", "bearer "+good, "", "", "cookie", "a=b")
	f.Add("POST", org+"/users", "Bearer "+good, "application/json", `{"userIds":["carol0000001"]}`, "x-orgauthz-subject", "admin")
	f.Add("GET", org+"/../x", "Bearer "+good, "", "", "x-http-method-override", "DELETE")
	f.Add("get", "/api/organizations/%2e%2e/"+fakelogto.DemoAcmeID, "Bearer "+good+", Bearer "+good, "", "", ":method", "POST")
	f.Add("PATCH", org, "Bearer "+good, "application/json; charset=utf-8", `{"name":"n","customData":{}}`, "connection", "x-orgauthz-decision")
	f.Add("DELETE", "//api//organizations", "Basic YTpi", "text/plain", strings.Repeat("[", 64), "content-length", "-1")
	f.Add("", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, method, path, auth, contentType, body, hk, hv string) {
		headers := map[string]string{":method": method, ":path": path, ":authority": "app.example.com", ":scheme": "https"}
		if auth != "" {
			headers["authorization"] = auth
		}
		if contentType != "" {
			headers["content-type"] = contentType
		}
		if hk != "" {
			headers[strings.ToLower(hk)] = hv
		}
		in := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "app.example.com", Headers: headers, Body: body},
		}}}
		resp, err := srv.Check(context.Background(), in)
		if err != nil {
			t.Fatalf("Check returned an error (Envoy would apply status_on_error): %v", err)
		}
		if resp.GetStatus() == nil {
			t.Fatal("Check answered without a status")
		}
		ok := resp.GetOkResponse()
		if ok == nil {
			denied := resp.GetDeniedResponse()
			if denied == nil {
				t.Fatalf("neither allowed nor denied: %v", resp)
			}
			if code := denied.GetStatus().GetCode(); code < 400 || code > 599 {
				t.Fatalf("denied with status %d", code)
			}
			if strings.Contains(denied.GetBody(), good) || (len(auth) > 16 && strings.Contains(denied.GetBody(), auth)) {
				t.Fatal("the deny body echoes the token")
			}
			return
		}
		set := map[string]string{}
		for _, h := range ok.GetHeaders() {
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if !containsFold(ok.GetHeadersToRemove(), "authorization") {
			t.Fatalf("allowed %s %q without removing the authorization header", method, path)
		}
		want, _, _ := strings.Cut(path, "?")
		c, err := verifier.Verify(set["x-orgauthz-decision"], method, want)
		if err != nil {
			t.Fatalf("allowed %s %q with a decision mgmtproxy refuses: %v", method, path, err)
		}
		if c.Subject != fakelogto.DemoAliceID || c.Org != fakelogto.DemoAcmeID || set["x-orgauthz-subject"] != c.Subject {
			t.Fatalf("allowed %s %q for subject %q org %q (header %q)", method, path, c.Subject, c.Org, set["x-orgauthz-subject"])
		}
		if !strings.Contains(auth, good) {
			t.Fatalf("allowed %s %q with authorization %q, which is not the one valid token", method, path, auth)
		}
		if !strings.HasPrefix(want, org) {
			t.Fatalf("allowed %s %q outside alice's organization", method, path)
		}
	})
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
