package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// stopGrace is how long a child may take to exit after SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// process is a child process whose output goes, line by line and prefixed with its name, to a
// shared log.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lineWriter
	done chan struct{} // closed when the child has exited; err is set before
	err  error
}

// startProcess starts path with args. The child gets the parent's environment less its
// ORGAUTHZ_* variables, plus env: the chain configures its parts explicitly, and a stray
// variable in the user's shell (say ORGAUTHZ_M2M_APP_SECRET beside --m2m-app-secret-file)
// must not change or break them.
func startProcess(name string, log io.Writer, env []string, path string, args ...string) (*process, error) {
	out := &lineWriter{prefix: "[" + name + "] ", w: log}
	cmd := exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORGAUTHZ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("chain: start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.flush() // a last line without a newline
		close(p.done)
	}()
	return p, nil
}

// stop asks the child to exit (SIGTERM), kills it after stopGrace, and waits for it. A child
// that exits because of the request is not an error.
func (p *process) stop() error {
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	terminate(p.cmd.Process)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("chain: %s ignored SIGTERM for %v and was killed", p.name, stopGrace)
	}
}

// ErrAddrInUse marks a part that exited because its address was taken, typically by another
// program between FreeAddrs and the bind: starting again on other ports may succeed.
var ErrAddrInUse = errors.New("chain: address in use")

// exitError describes an exit that nobody asked for.
func (p *process) exitError() error {
	tail := p.out.tail()
	err := fmt.Errorf("chain: %s exited: %v\n%s", p.name, p.err, tail)
	if strings.Contains(tail, "address already in use") {
		err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
	}
	return err
}

// waitReady polls url until it answers 200, the child exits, or ctx ends.
func (p *process) waitReady(ctx context.Context, url string) error {
	return p.waitFor(ctx, url, func(status int) bool { return status == http.StatusOK })
}

// waitServing polls url until it answers at all, for servers without a readiness endpoint.
func (p *process) waitServing(ctx context.Context, url string) error {
	return p.waitFor(ctx, url, func(int) bool { return true })
}

func (p *process) waitFor(ctx context.Context, url string, ok func(status int) bool) error {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("chain: %s readiness: %w", p.name, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if ok(resp.StatusCode) {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("chain: %s not ready at %s (%s): %w\n%s", p.name, url, last, ctx.Err(), p.out.tail())
		case <-tick.C:
		}
	}
}

// tailLines is how many of a child's last output lines an error message quotes.
const tailLines = 15

// lineWriter writes each complete line to w with a prefix, and remembers the last few lines.
// Lines longer than maxLine are cut, so a child cannot grow the buffer without bound.
type lineWriter struct {
	prefix string
	w      io.Writer

	mu   sync.Mutex
	buf  []byte
	last []string
}

const maxLine = 16 << 10

func (lw *lineWriter) Write(b []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := maxLine - len(lw.buf)
			lw.buf = append(lw.buf, b[:min(len(b), max(room, 0))]...)
			break
		}
		lw.buf = append(lw.buf, b[:min(i, max(maxLine-len(lw.buf), 0))]...)
		lw.flushLocked()
		b = b[i+1:]
	}
	return n, nil
}

func (lw *lineWriter) flushLocked() {
	line := string(lw.buf)
	lw.buf = lw.buf[:0]
	fmt.Fprintf(lw.w, "%s%s\n", lw.prefix, line)
	lw.last = append(lw.last, line)
	if len(lw.last) > tailLines {
		lw.last = lw.last[1:]
	}
}

// flush writes out a pending partial line.
func (lw *lineWriter) flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.buf) > 0 {
		lw.flushLocked()
	}
}

// tail returns the last lines written, prefixed, for error messages.
func (lw *lineWriter) tail() string {
	lw.flush()
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.last) == 0 {
		return lw.prefix + "(no output)"
	}
	return lw.prefix + strings.Join(lw.last, "\n"+lw.prefix)
}

// syncWriter serialises writes from several children to one log.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
