// Package testkit holds what the tests of several packages share. Test tooling only: product
// packages never import it.
package testkit

import (
	"bytes"
	"sync"
)

// Buffer collects output that many goroutines write at once, such as a server's log lines: a
// bytes.Buffer behind a mutex.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
