package filewatch

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func waitCalls(t *testing.T, calls *atomic.Int32, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); calls.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("reload not called: %s", what)
		}
	}
}

// TestWatchChange: a file written in a watched directory is reread at once, not at the interval.
func TestWatchChange(t *testing.T) {
	dir := t.TempDir()
	var calls atomic.Int32
	Watch(t.Context(), []string{dir}, time.Hour, slog.New(slog.DiscardHandler), func() { calls.Add(1) })
	if err := os.WriteFile(filepath.Join(dir, "key.pub"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, &calls, "after a write, with an interval of an hour")
}

// TestWatchInterval: a directory that cannot be watched is logged and still reread on the interval.
func TestWatchInterval(t *testing.T) {
	var logs bytes.Buffer
	var calls atomic.Int32
	missing := filepath.Join(t.TempDir(), "missing")
	Watch(t.Context(), []string{filepath.Join(missing, "key.pem")}, 20*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)), func() { calls.Add(1) })
	if !strings.Contains(logs.String(), "directory not watched") {
		t.Errorf("no log line for the unwatchable %s: %q", missing, logs.String())
	}
	waitCalls(t, &calls, "on the interval")
}

// TestWatchFile: a watched file is reread when it changes or when Kubernetes swaps ..data beside
// it, not when another file in its directory changes (the sidecar's log written beside its key
// had the key reread ten times a second).
func TestWatchFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "decision.pem")
	if err := os.WriteFile(key, []byte("k1"), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	Watch(t.Context(), []string{key}, time.Hour, slog.New(slog.DiscardHandler), func() { calls.Add(1) })
	log, err := os.Create(filepath.Join(dir, "sidecar.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for range 20 {
		if _, err := log.WriteString("a line\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(10 * settle)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d rereads after writes to another file in the key's directory, want 0", n)
	}
	if err := os.WriteFile(key, []byte("k2"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, &calls, "after the key was written")
	time.Sleep(2 * settle) // the write's burst is over
	calls.Store(0)
	if err := os.Symlink(".", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, &calls, "after ..data was swapped")
}
