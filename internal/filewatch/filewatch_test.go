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
	Watch(t.Context(), []string{missing}, 20*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)), func() { calls.Add(1) })
	if !strings.Contains(logs.String(), "directory not watched") {
		t.Errorf("no log line for the unwatchable %s: %q", missing, logs.String())
	}
	waitCalls(t, &calls, "on the interval")
}
