package confload

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/testkit"
)

func TestParseLevel(t *testing.T) {
	for s, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(s); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	// slog itself would take these; the flag documents four words only.
	for _, s := range []string{"", "INFO", "warning", "info+2", "DEBUG-4", "loud"} {
		if _, err := ParseLevel(s); err == nil {
			t.Errorf("ParseLevel(%q) = nil error", s)
		}
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelWarn)
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown","k":"v"`) {
		t.Errorf("log output = %q, want only the warning, as JSON", out)
	}
}

// TestBurst: info lines reach the writer whole, in order and within BurstDelay (not one write
// each); a warning takes every line before it out at once; Close leaves nothing behind.
func TestBurst(t *testing.T) {
	var out testkit.Buffer
	b := NewBurst(&out)
	log := NewLogger(b, slog.LevelInfo)
	log.Info("decision", "n", 1)
	log.Info("decision", "n", 2)
	if got := out.String(); got != "" {
		t.Fatalf("info lines written at once: %q", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for strings.Count(out.String(), "\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := out.String(); !strings.Contains(got, `"n":1}`+"\n") || strings.Index(got, `"n":1`) > strings.Index(got, `"n":2`) {
		t.Fatalf("after BurstDelay the writer has %q, want both lines in order", got)
	}

	log.Info("decision", "n", 3)
	log.Warn("key file unreadable")
	if got := out.String(); !strings.Contains(got, `"n":3`) || !strings.HasSuffix(got, `"msg":"key file unreadable"}`+"\n") {
		t.Fatalf("a warning did not take the lines before it out: %q", got)
	}

	log.With("component", "opa").Error("failed")
	if got := out.String(); !strings.HasSuffix(got, `"msg":"failed","component":"opa"}`+"\n") {
		t.Fatalf("an error of a derived logger was held: %q", got)
	}

	log.Info("last")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasSuffix(got, `"msg":"last"}`+"\n") {
		t.Fatalf("Close left a line behind: %q", got)
	}
	log.Info("after close")
	if got := out.String(); !strings.HasSuffix(got, `"msg":"after close"}`+"\n") {
		t.Fatalf("a line after Close was held: %q", got)
	}
}

// TestBurstManyWriters: lines from many goroutines, more than a burst holds, arrive whole, each
// once, each goroutine's in its order.
func TestBurstManyWriters(t *testing.T) {
	var out testkit.Buffer
	b := NewBurst(&out)
	log := NewLogger(b, slog.LevelInfo)
	const writers, lines = 8, 2000 // ~1 MB: the burst fills many times
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				log.Info("decision", "w", w, "i", i, "pad", strings.Repeat("x", 40))
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	for line := range strings.Lines(out.String()) {
		var rec struct{ W, I int }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if rec.I != next[rec.W] {
			t.Fatalf("writer %d: line %d after %d", rec.W, rec.I, next[rec.W]-1)
		}
		next[rec.W]++
	}
	for w, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines arrived, want %d", w, n, lines)
		}
	}
}

// gatedWriter's writes wait until release is closed; entered tells when one has begun.
type gatedWriter struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	data    []byte
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.data = append(w.data, p...)
	return len(p), nil
}

// TestBurstSlowWriter: while a burst is being written to a writer that does not return (a full
// pipe, a disk under writeback), lines still go into the next burst without waiting; only a full
// burst waits for the writer; nothing is lost or reordered.
func TestBurstSlowWriter(t *testing.T) {
	w := &gatedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := NewBurst(w)
	b.Write([]byte("1\n"))
	flushed := make(chan error, 1)
	go func() { flushed <- b.Flush() }()
	<-w.entered // the first burst is in w.Write, which does not return yet

	wrote := make(chan struct{})
	big := strings.Repeat("x", burstMax-3) + "\n"
	go func() {
		b.Write([]byte("2\n"))
		b.Write([]byte(big)) // the burst is now exactly full
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("Write waited for a slow writer while the burst had room")
	}

	waited := make(chan struct{})
	go func() {
		b.Write([]byte("3\n"))
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("a line past a full burst did not wait for the writer")
	case <-time.After(50 * time.Millisecond):
	}

	close(w.release)
	<-waited
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := string(w.data), "1\n2\n"+big+"3\n"; got != want {
		t.Fatalf("the writer got %d bytes, want %d in order", len(got), len(want))
	}
}
