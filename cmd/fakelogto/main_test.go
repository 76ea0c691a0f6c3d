package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

func TestRunServesDemoTenant(t *testing.T) {
	seedFile := filepath.Join(t.TempDir(), "seed.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--seed-file", seedFile}, w, io.Discard)
		w.Close()
	}()

	// The first line names the address once it serves.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read banner: %v (run: %v)", err, <-done)
	}
	go io.Copy(io.Discard, out)
	if !strings.Contains(line, "development tool") {
		t.Errorf("banner %q does not say it is a development tool", line)
	}

	raw, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	var demo fakelogto.Demo
	if err := json.Unmarshal(raw, &demo); err != nil {
		t.Fatal(err)
	}
	if demo.Users["alice"] != fakelogto.DemoAliceID || demo.M2MApp.Secret != fakelogto.DemoM2MAppSecret || demo.Issuer != demo.URL+"/oidc" {
		t.Errorf("seed file = %s, want the demo IDs, secret and issuer", raw)
	}
	if !strings.Contains(line, demo.URL) {
		t.Errorf("banner %q does not name %s", line, demo.URL)
	}

	resp, err := http.Get(demo.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc["issuer"] != demo.Issuer {
		t.Errorf("served issuer = %v, want %s", doc["issuer"], demo.Issuer)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel = %v, want nil", err)
	}
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		args       []string
		wantErr    error // nil: any error
		wantStderr string
	}{
		{[]string{"--help"}, flag.ErrHelp, "DEVELOPMENT TOOL"},
		{[]string{"--nope"}, nil, "flag provided but not defined"},
		{[]string{"extra"}, nil, ""},
		{[]string{"--addr", "256.0.0.1:1"}, nil, ""},
	}
	for _, tc := range tests {
		var stderr bytes.Buffer
		err := run(context.Background(), tc.args, io.Discard, &stderr)
		if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("run(%q) = %v, want %v", tc.args, err, tc.wantErr)
		}
		if !strings.Contains(stderr.String(), tc.wantStderr) {
			t.Errorf("run(%q) stderr %q, want it to contain %q", tc.args, stderr.String(), tc.wantStderr)
		}
	}
}

// --webhook-url sends Logto's signed deliveries to a receiver; without a key file it is a
// usage error.
func TestRunSendsWebhooks(t *testing.T) {
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header, body}
	}))
	defer srv.Close()
	recv := srv.URL
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("dev-only-webhook-key\n"), 0o600)
	if err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--webhook-url", recv}, io.Discard, io.Discard); err == nil {
		t.Error("--webhook-url without --webhook-signing-key-file: run succeeded, want an error")
	}

	seedFile := filepath.Join(t.TempDir(), "seed.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out, w := io.Pipe()
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--seed-file", seedFile, "--webhook-url", recv, "--webhook-signing-key-file", keyFile}, w, io.Discard)
		w.Close()
	}()
	defer func() { cancel(); <-done }()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	raw, _ := os.ReadFile(seedFile)
	var demo fakelogto.Demo
	json.Unmarshal(raw, &demo)
	tok, err := (&chain.Tokens{Endpoint: demo.URL, Seed: demo}).Management(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("DELETE", demo.URL+"/api/organizations/"+fakelogto.DemoAcmeID+"/users/"+fakelogto.DemoBobID, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("remove bob: %v %v", resp, err)
	}
	select {
	case d := <-got:
		if d.header.Get(fakelogto.HookSignatureHeader) != fakelogto.SignHook("dev-only-webhook-key", d.body) || d.header.Get("User-Agent") != "Logto (https://logto.io/)" {
			t.Errorf("delivery headers %v, want Logto's user agent and a signature by the key file's key", d.header)
		}
		if !strings.Contains(string(d.body), `"userId":"`+fakelogto.DemoBobID+`"`) {
			t.Errorf("delivery %s does not name bob", d.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
}
