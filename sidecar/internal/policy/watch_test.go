package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watchTimeout is generous: the machine running the tests may be busy.
const watchTimeout = 30 * time.Second

// startWatch runs e.Watch until the test ends and returns the channel its
// reports arrive on.
func startWatch(t *testing.T, e *Engine) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	reports := make(chan error, 16)
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, func(err error) { reports <- err }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch() = %v after its context ended, want nil", err)
			}
		case <-time.After(watchTimeout):
			t.Error("Watch() did not return after its context ended")
		}
	})
	return reports
}

// nextReport waits for Watch's next report.
func nextReport(t *testing.T, reports <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-reports:
		return err
	case <-time.After(watchTimeout):
		t.Fatalf("no reload reported within %v after %s", watchTimeout, what)
		return nil
	}
}

// writeAtomic replaces the file at p through a hidden temporary file and a
// rename, creating its directory if needed.
func writeAtomic(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, goodPolicy)
	e := New(dir, Options{})
	reports := startWatch(t, e)

	// Watch loads once it watches, so its first report also says the
	// watches are in place.
	if err := nextReport(t, reports, "starting"); err != nil {
		t.Fatalf("first report = %v, want nil", err)
	}
	checkServes(t, e, goodDecision)

	// One change per step, each written atomically as editors and kubectl
	// do, so a slow machine cannot split a step into two reloads.
	usersDecision := Decision{Allow: true, Reason: "v1", Route: "GET /api/users"}
	steps := []struct {
		what    string
		write   string // file to write with content
		content string
		remove  string // file to remove
		wantErr string // "" means the reload succeeds
		want    Decision
	}{
		{
			what:    "changing data",
			write:   "orgauthz/data.json",
			content: routesJSON("/api/users"),
			want:    usersDecision,
		},
		{
			what:    "a syntax error",
			write:   "orgauthz/decision.rego",
			content: "package orgauthz\n\ndecision := {",
			wantErr: "rego_parse_error",
			want:    usersDecision,
		},
		{
			what:    "fixing it",
			write:   "orgauthz/decision.rego",
			content: goodPolicy["orgauthz/decision.rego"],
			want:    usersDecision,
		},
		{
			what:    "a new subdirectory",
			write:   "orgauthz/more/extra.rego",
			content: "package orgauthz.more\n\nx := 1\n",
			want:    usersDecision,
		},
		{
			what:    "a syntax error in the new subdirectory",
			write:   "orgauthz/more/extra.rego",
			content: "package orgauthz.more\n\nx :=",
			wantErr: "extra.rego",
			want:    usersDecision,
		},
		{
			what:   "deleting the broken file",
			remove: "orgauthz/more/extra.rego",
			want:   usersDecision,
		},
		{
			what:    "deleting a helper",
			remove:  "orgauthz/routes.rego",
			wantErr: "_route",
			want:    usersDecision,
		},
	}
	for _, step := range steps {
		if step.write != "" {
			writeAtomic(t, filepath.Join(dir, filepath.FromSlash(step.write)), step.content)
		}
		if step.remove != "" {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(step.remove))); err != nil {
				t.Fatal(err)
			}
		}
		err := nextReport(t, reports, step.what)
		switch {
		case step.wantErr == "" && err != nil:
			t.Fatalf("after %s: report = %v, want nil", step.what, err)
		case step.wantErr != "" && (err == nil || !strings.Contains(err.Error(), step.wantErr)):
			t.Fatalf("after %s: report = %v, want an error containing %q", step.what, err, step.wantErr)
		}
		checkServes(t, e, step.want)
	}
}

// TestWatchMissingDir: a policy directory missing at start is waited for;
// once it appears the policy loads and Watch reports it.
func TestWatchMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	e := New(dir, Options{})
	if err := e.Load(t.Context()); err == nil {
		t.Fatal("Load(missing dir) = nil, want an error")
	}
	reports := startWatch(t, e)
	staged := filepath.Join(filepath.Dir(dir), "staged")
	writeFiles(t, staged, goodPolicy)
	if err := os.Rename(staged, dir); err != nil { // the whole tree appears at once
		t.Fatal(err)
	}
	if err := nextReport(t, reports, "creating the directory"); err != nil {
		t.Fatalf("reload after the directory appeared = %v", err)
	}
	checkServes(t, e, goodDecision)
}
