package fakelogto

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	srv, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.AddM2MApp("m2m", "s3cret")
	srv.Start()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {srv.ManagementResource()}, "scope": {"all"}}
	req, _ := http.NewRequest("POST", srv.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("m2m", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
