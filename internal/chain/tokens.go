package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/orgauthz/orgauthz/internal/fakelogto"
)

// Seed is the demo tenant fakelogto wrote to its --seed-file.
type Seed = fakelogto.Demo

// maxSeed bounds the seed file and every emulator answer read here.
const maxSeed = 1 << 20

// ReadSeed reads and checks a seed file.
func ReadSeed(path string) (Seed, error) {
	f, err := os.Open(path)
	if err != nil {
		return Seed{}, fmt.Errorf("chain: seed: %w", err)
	}
	defer f.Close()
	return parseSeed(f)
}

func parseSeed(r io.Reader) (Seed, error) {
	var s Seed
	if err := decodeJSON(r, &s); err != nil {
		return Seed{}, fmt.Errorf("chain: seed: %w", err)
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"m2mApp.id", s.M2MApp.ID}, {"m2mApp.secret", s.M2MApp.Secret},
		{"trafficApp.id", s.TrafficApp.ID}, {"trafficApp.secret", s.TrafficApp.Secret},
		{"users.alice", s.Users["alice"]}, {"users.bob", s.Users["bob"]}, {"users.carol", s.Users["carol"]},
		{"organizations.acme", s.Organizations["acme"]},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return Seed{}, fmt.Errorf("chain: seed: missing %s", strings.Join(missing, ", "))
	}
	return s, nil
}

// decodeJSON decodes one JSON value of at most maxSeed bytes.
func decodeJSON(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxSeed+1))
	if err != nil {
		return err
	}
	if len(b) > maxSeed {
		return fmt.Errorf("over %d bytes", maxSeed)
	}
	return json.Unmarshal(b, v)
}

// Tokens gets user access tokens from the emulator the way a Logto app's backend does: an M2M
// token for the Management API (client credentials), a subject token for the user
// (POST /api/subject-tokens), then a token exchange with the traffic app's credentials.
type Tokens struct {
	Endpoint string // Logto's base URL, e.g. http://127.0.0.1:3001
	Seed     Seed
	Client   *http.Client // default: a client with a 10 s timeout
}

// TokenRequest names the token wanted: an organization token (OrganizationID only), an
// organization-level API token (both), or a global API token (Resource only).
type TokenRequest struct {
	UserID         string
	OrganizationID string
	Resource       string
	Scopes         []string
}

// Management returns a Management API token of the seed's M2M app (client credentials,
// scope "all"), as mgmtproxy gets one.
func (t *Tokens) Management(ctx context.Context) (string, error) {
	m2m, err := t.token(ctx, t.Seed.M2MApp, url.Values{
		"grant_type": {"client_credentials"},
		"resource":   {t.Seed.ManagementResource},
		"scope":      {"all"},
	})
	if err != nil {
		return "", fmt.Errorf("chain: m2m token: %w", err)
	}
	return m2m, nil
}

// Get returns a fresh access token for req.
func (t *Tokens) Get(ctx context.Context, req TokenRequest) (string, error) {
	m2m, err := t.Management(ctx)
	if err != nil {
		return "", err
	}
	body, _ := json.Marshal(map[string]string{"userId": req.UserID})
	var subject struct {
		SubjectToken string `json:"subjectToken"`
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+m2m) }
	if err := t.do(ctx, "/api/subject-tokens", "application/json", bearer, bytes.NewReader(body), http.StatusCreated, &subject); err != nil {
		return "", fmt.Errorf("chain: subject token for %s: %w", req.UserID, err)
	}
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subject.SubjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"scope":              {strings.Join(req.Scopes, " ")},
	}
	if req.OrganizationID != "" {
		form.Set("organization_id", req.OrganizationID)
	}
	if req.Resource != "" {
		form.Set("resource", req.Resource)
	}
	tok, err := t.token(ctx, t.Seed.TrafficApp, form)
	if err != nil {
		return "", fmt.Errorf("chain: token exchange for %s: %w", req.UserID, err)
	}
	return tok, nil
}

// token posts form to the token endpoint with app's Basic credentials.
func (t *Tokens) token(ctx context.Context, app fakelogto.DemoApp, form url.Values) (string, error) {
	// Logto's app IDs and secrets need no form-encoding before Basic (RFC 6749 §2.3.1).
	basic := func(r *http.Request) { r.SetBasicAuth(app.ID, app.Secret) }
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := t.do(ctx, "/oidc/token", "application/x-www-form-urlencoded", basic, strings.NewReader(form.Encode()), http.StatusOK, &resp); err != nil {
		return "", err
	}
	if resp.AccessToken == "" {
		return "", errors.New("no access_token in the answer")
	}
	return resp.AccessToken, nil
}

// do POSTs body to path and decodes the answer into out when its status is want.
func (t *Tokens) do(ctx context.Context, path, contentType string, authorize func(*http.Request), body io.Reader, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(t.Endpoint, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	authorize(req)
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		// Logto's error bodies hold codes and messages, never credentials: safe to quote.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, b)
	}
	if err := decodeJSON(resp.Body, out); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	return nil
}
