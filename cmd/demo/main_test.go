package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestCurlCommandsMatchTheRequestsRun checks that each printed curl command, pasted into a shell
// with the printed export lines, sends exactly the request the walkthrough ran itself.
func TestCurlCommandsMatchTheRequestsRun(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipping: curl is not on PATH")
	}
	type sent struct{ method, target, auth, contentType, body string }
	var (
		mu   sync.Mutex
		last sent
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		last = sent{r.Method, r.RequestURI, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)}
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	take := func() sent {
		mu.Lock()
		defer mu.Unlock()
		s := last
		last = sent{}
		return s
	}

	w := &walkthrough{front: srv.URL, values: map[string]string{}}
	for _, v := range []variable{
		{"ACME", "acme00000001", ""}, {"ALICE", "alice0000001", ""}, {"CAROL", "carol0000001", ""},
		// Real tokens are base64url and dots; these carry the characters a shell could mangle.
		{"ALICE_ORG_TOKEN", "eyJ.a-b_c.d", ""}, {"ALICE_TOKEN", "eyJ.e-f_g.h", ""}, {"CAROL_ADMIN_TOKEN", "eyJ.i-j_k.l", ""},
		{"BOB", "bob000000001", ""}, {"INITECH", "initech00001", ""}, {"BOB_ORG_TOKEN", "eyJ.m-n_o.p", ""}, {"BOB_INITECH_TOKEN", "eyJ.q-r_s.t", ""},
	} {
		w.vars = append(w.vars, v)
		w.values[v.name] = v.value
	}
	var exports strings.Builder
	for _, v := range w.vars {
		exports.WriteString("export " + v.name + "=" + v.value + "\n")
	}

	for _, s := range w.steps() {
		if _, err := w.do(context.Background(), srv.Client(), s); err != nil {
			t.Fatalf("%s: %v", s.title, err)
		}
		want := take()
		cmd := w.curl(s)
		out, err := exec.Command("sh", "-c", exports.String()+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s", s.title, cmd, err, out)
		}
		if got := take(); got != want {
			t.Errorf("%s:\n%s\nsent  %+v\nwant  %+v (what the walkthrough ran)", s.title, cmd, got, want)
		}
	}
}
