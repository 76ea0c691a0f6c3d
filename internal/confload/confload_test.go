package confload

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Addr    string        `flag:"addr" usage:"listen address"`
	Issuers []string      `flag:"issuer" usage:"accepted issuer, repeatable"`
	Skew    time.Duration `flag:"clock-skew" usage:"allowed clock skew"`
	Size    int           `flag:"cache-size" usage:"cache entries"`
	Debug   bool          `flag:"debug" usage:"debug mode"`
	Secret  string        `flag:"-" env:"ORGAUTHZ_APP_SECRET" usage:"the secret"`
	Ignored string
}

func defaults() testConfig {
	return testConfig{Addr: "127.0.0.1:1", Skew: time.Minute, Size: 10}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "addr: 127.0.0.1:2\nissuer: [https://a/oidc, https://b/oidc]\ncache-size: 20\nclock-skew: 5s\n")
	env := map[string]string{
		"ORGAUTHZ_CONFIG":     file,
		"ORGAUTHZ_CACHE_SIZE": "30",
		"ORGAUTHZ_APP_SECRET": "s3cret",
		"ORGAUTHZ_CLOCK_SKEW": "7s",
	}
	cfg := defaults()
	_, err := Load(&cfg, Options{Name: "t", Args: []string{"--clock-skew=9s", "--debug"}, Getenv: func(k string) string { return env[k] }, Output: io.Discard})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := testConfig{Addr: "127.0.0.1:2", Issuers: []string{"https://a/oidc", "https://b/oidc"}, Skew: 9 * time.Second, Size: 30, Debug: true, Secret: "s3cret"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load = %+v, want %+v", cfg, want)
	}
}

func TestRepeatedFlagReplacesEnv(t *testing.T) {
	cfg := defaults()
	env := map[string]string{"ORGAUTHZ_ISSUER": "https://env/oidc, https://env2/oidc"}
	_, err := Load(&cfg, Options{Args: []string{"--issuer", "https://x/oidc", "--issuer", "https://y/oidc"}, Getenv: func(k string) string { return env[k] }, Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://x/oidc", "https://y/oidc"}; !reflect.DeepEqual(cfg.Issuers, want) {
		t.Errorf("Issuers = %q, want %q", cfg.Issuers, want)
	}
	cfg = defaults()
	if _, err := Load(&cfg, Options{Getenv: func(k string) string { return env[k] }, Output: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://env/oidc", "https://env2/oidc"}; !reflect.DeepEqual(cfg.Issuers, want) {
		t.Errorf("Issuers from env = %q, want %q", cfg.Issuers, want)
	}
}

func TestEveryProblemReported(t *testing.T) {
	file := writeFile(t, "adress: typo\ncache-size: many\n")
	env := map[string]string{"ORGAUTHZ_CLOCK_SKEW": "soon"}
	cfg := defaults()
	// Bad flags do not stop Load: the flags after them, the file and the environment still count.
	_, err := Load(&cfg, Options{Args: []string{"--debug=maybe", "--nope", "---bad", "--check=maybe", "--config", file, "--addr", "127.0.0.1:7", "--issuer"},
		Getenv: func(k string) string { return env[k] }, Output: io.Discard})
	if err == nil {
		t.Fatal("Load succeeded on bad input")
	}
	for _, want := range []string{"--debug", "-nope", "---bad", "-check", "-issuer", `unknown key "adress"`, `key "cache-size"`, "ORGAUTHZ_CLOCK_SKEW"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error = %v, want it to mention %s", err, want)
		}
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 8 {
		t.Errorf("Load error = %v, want 8 problems, each once", err)
	}
	if cfg.Addr != "127.0.0.1:7" {
		t.Errorf("Addr = %q after bad flags, want the later --addr 127.0.0.1:7", cfg.Addr)
	}
}

func TestBadFlagUsageOnce(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"--nope", "--also-nope"}, {"--issuer"}} {
		cfg := defaults()
		var out strings.Builder
		_, err := Load(&cfg, Options{Name: "t", Args: args, Getenv: func(string) string { return "" }, Output: &out})
		if err == nil {
			t.Fatalf("Load(%q) succeeded", args)
		}
		if got := strings.Count(out.String(), "Usage of t:"); got != 1 {
			t.Errorf("Load(%q) printed the usage %d times, want once:\n%s", args, got, out.String())
		}
		if strings.Contains(out.String(), "not defined") || strings.Contains(out.String(), "needs an argument") {
			t.Errorf("Load(%q) printed its error; the caller prints it:\n%s", args, out.String())
		}
	}
	cfg := defaults()
	var out strings.Builder
	if _, err := Load(&cfg, Options{Name: "t", Args: []string{"extra"}, Getenv: func(string) string { return "" }, Output: &out}); err == nil || out.Len() != 0 {
		t.Errorf("Load(extra) = %v and printed %q, want an error and no output", err, out.String())
	}
}

func TestHostileFile(t *testing.T) {
	big := writeFile(t, "addr: "+strings.Repeat("x", maxFileBytes+10)+"\n")
	nested := writeFile(t, "addr: {a: b}\n")
	notYAML := writeFile(t, "\x00\x01: [\n")
	for _, p := range []string{big, nested, notYAML, filepath.Join(t.TempDir(), "missing.yaml")} {
		cfg := defaults()
		if _, err := Load(&cfg, Options{Args: []string{"--config", p}, Getenv: func(string) string { return "" }, Output: io.Discard}); err == nil {
			t.Errorf("Load(%s) succeeded, want an error", filepath.Base(p))
		}
	}
}

func TestSecretHasNoFlag(t *testing.T) {
	cfg := defaults()
	var out strings.Builder
	_, err := Load(&cfg, Options{Args: []string{"--app-secret", "x"}, Getenv: func(string) string { return "" }, Output: &out})
	if err == nil {
		t.Fatal("a secret was accepted as a flag value")
	}
	cfg = defaults()
	out.Reset()
	_, err = Load(&cfg, Options{Name: "t", Args: []string{"--help"}, Getenv: func(string) string { return "" }, Output: &out})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: err = %v, want flag.ErrHelp", err)
	}
	if got := strings.Count(out.String(), "Usage of t:"); got != 1 {
		t.Errorf("--help printed the usage %d times, want once", got)
	}
	for _, want := range []string{"-clock-skew", "ORGAUTHZ_CLOCK_SKEW", "ORGAUTHZ_APP_SECRET (config file key app-secret)", "-check", "-config"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output lacks %q:\n%s", want, out.String())
		}
	}
}
