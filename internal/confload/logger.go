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
//
// A burst is written outside the lock that Write takes, so a slow w (a full pipe, a disk under
// writeback) does not hold up the checks that log: they go on filling the next burst, and wait
// only once it holds burstMax bytes.
type Burst struct {
	w     io.Writer
	timer *time.Timer

	wmu sync.Mutex // held while a burst is written to w: bursts go out whole and in order

	mu     sync.Mutex // guards the fields below; never held across a write to w
	buf    []byte
	spare  []byte // the last burst's buffer, for the next one
	armed  bool   // the timer will flush buf
	closed bool   // Write passes lines straight to w
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

// Write takes a whole line (slog writes one record per call). It waits for w only when the
// burst is full.
func (b *Burst) Write(p []byte) (int, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			b.wmu.Lock()
			defer b.wmu.Unlock()
			return b.w.Write(p)
		}
		if len(b.buf) == 0 || len(b.buf)+len(p) <= burstMax {
			b.buf = append(b.buf, p...)
			if !b.armed {
				b.armed = true
				b.timer.Reset(BurstDelay)
			}
			b.mu.Unlock()
			return len(p), nil
		}
		b.mu.Unlock()
		if err := b.Flush(); err != nil {
			return 0, err
		}
	}
}

// Flush writes the lines held now, after any burst being written.
func (b *Burst) Flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.flush(false)
}

// flush takes the burst and writes it to w; wmu is held. closing makes later writes go
// straight to w, which they do under wmu, so after this burst.
func (b *Burst) flush(closing bool) error {
	b.mu.Lock()
	if closing {
		b.closed = true
	}
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	out := b.buf
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	var err error
	if len(out) > 0 {
		_, err = b.w.Write(out)
	}
	b.keep(out)
	return err
}

// keep saves a written burst's buffer for a later one, unless long lines made it large.
func (b *Burst) keep(out []byte) {
	if cap(out) > burstMax {
		return
	}
	b.mu.Lock()
	if b.spare == nil {
		b.spare = out[:0]
	}
	b.mu.Unlock()
}

// Close writes the lines held and makes later writes go straight to w.
func (b *Burst) Close() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.flush(true)
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
