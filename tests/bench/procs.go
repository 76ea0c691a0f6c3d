package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/orgauthz/orgauthz/internal/confload"
)

// proc is a server process started by the benchmark, pinned to the server core.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // set before exited closes
}

// startProc starts bin with args and extra environment, pinned to core when pinning works,
// with stdout and stderr to a log file in dir.
func startProc(name, dir, bin string, core int, args, env []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	argv := append([]string{bin}, args...)
	if core >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(core)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to end and waits for it.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// waitReady polls ready until it succeeds, the process exits or the timeout passes.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.err, p.logTail())
		default:
		}
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v\n%s", p.name, timeout, last, p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// grpcReady is ready once a Check gets any answer.
func grpcReady(t *target) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := authv3.NewAuthorizationClient(t.conns[0]).Check(ctx, nullCheck())
		return err
	}
}

// httpReady is ready once url answers 200.
func httpReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", url, resp.StatusCode)
		}
		return nil
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture
// Go supports.
const clockTick = 10 * time.Millisecond

// maxProcFile bounds what is read from /proc.
const maxProcFile = 64 << 10

func readProc(pid int, name string) ([]byte, error) {
	return readBounded(fmt.Sprintf("/proc/%d/%s", pid, name))
}

func readBounded(path string) ([]byte, error) { return confload.ReadFile(path, maxProcFile) }

// cpuTime returns the user+system CPU time of the process so far (all its threads).
func cpuTime(pid int) (time.Duration, error) {
	b, err := readProc(pid, "stat")
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime (fields 14 and 15) from /proc/<pid>/stat. The command name
// (field 2) is in parentheses and may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("stat: bad time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// memory returns a /proc/<pid>/status figure such as VmRSS or VmHWM, in bytes.
func memory(pid int, field string) (int64, error) {
	b, err := readProc(pid, "status")
	if err != nil {
		return 0, err
	}
	return parseStatus(b, field)
}

func parseStatus(b []byte, field string) (int64, error) {
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n < 0 || unit != "kB" || n > 1<<40 {
			return 0, fmt.Errorf("status: bad %s %q", field, strings.TrimSpace(v))
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("status: no %s", field)
}

// coreTime returns how long core has been busy or stolen by the hypervisor since boot, from
// /proc/stat: user, nice, system, irq, softirq and steal; idle and iowait are not counted.
func coreTime(core int) (time.Duration, error) {
	b, err := readBounded("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseCoreTime(b, core)
}

func parseCoreTime(b []byte, core int) (time.Duration, error) {
	prefix := "cpu" + strconv.Itoa(core) + " "
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 8 {
			return 0, fmt.Errorf("stat: %d fields for cpu%d, want at least 8", len(f), core)
		}
		var ticks int64
		for _, i := range []int{0, 1, 2, 5, 6, 7} { // user nice system (idle iowait) irq softirq steal
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil || n < 0 || n > 1<<50 {
				return 0, fmt.Errorf("stat: bad cpu%d time %q", core, f[i])
			}
			ticks += n
		}
		return time.Duration(ticks) * clockTick, nil
	}
	return 0, fmt.Errorf("stat: no cpu%d", core)
}
