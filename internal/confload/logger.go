package confload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// ParseLevel reads a --log-level value: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch s {
	case "debug", "info", "warn", "error":
		return l, l.UnmarshalText([]byte(s))
	}
	return l, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// NewLogger returns the JSON logger both binaries write, at level. On a Burst, a warning or
// an error is written out at once, with every line before it.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	var h slog.Handler = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	if b, ok := w.(*Burst); ok {
		h = flushingHandler{h, b}
	}
	return slog.New(h)
}

// Burst delays log lines by at most BurstDelay to write them to w in bursts. The sidecar logs
// a line per check: one write(2) each was a few per cent of a check's CPU. Close writes what is
// left; a crash loses at most BurstDelay of info lines (NewLogger writes warnings at once).
type Burst struct {
	w     io.Writer
	timer *time.Timer

	mu     sync.Mutex
	buf    []byte
	armed  bool // the timer will flush buf
	closed bool // Write passes lines straight to w
}

// BurstDelay is the longest a line waits in a Burst; burstMax the most it holds.
const (
	BurstDelay = 10 * time.Millisecond
	burstMax   = 64 << 10
)

// NewBurst returns a Burst writing to w.
func NewBurst(w io.Writer) *Burst {
	b := &Burst{w: w}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write takes a whole line (slog writes one record per call).
func (b *Burst) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > burstMax {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		b.timer.Reset(BurstDelay)
	}
	return len(p), nil
}

// Flush writes the lines held now.
func (b *Burst) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *Burst) flushLocked() error {
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if cap(b.buf) > burstMax { // a burst of long lines: do not keep their buffer
		b.buf = nil
	}
	b.buf = b.buf[:0]
	return err
}

// Close writes the lines held and makes later writes go straight to w.
func (b *Burst) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.flushLocked()
}

// flushingHandler flushes its Burst after a record at warning level or above.
type flushingHandler struct {
	slog.Handler
	b *Burst
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.b.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(attrs), h.b}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.b}
}
