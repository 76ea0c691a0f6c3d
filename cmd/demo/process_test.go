package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
)

// runAsDemo makes the test binary run the demo's main instead of the tests.
const runAsDemo = "ORGAUTHZ_DEMO_TEST_RUN_AS_DEMO"

func TestMain(m *testing.M) {
	if os.Getenv(runAsDemo) == "1" {
		os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestStopCleansUp runs the demo as a real process (prebuilt binaries, no front proxy, free
// ports), stops it the ways a user does, and checks that it exits 0, its temporary directory
// with the decision keys and the M2M secret is gone, and its children are stopped. The last
// case is `make run | tee` and Ctrl-C: the reader of its output is gone first, so every
// "Stopping…" write fails; the cleanup must run anyway.
func TestStopCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the chain's processes")
	}
	root, err := chain.Root()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	ctx := context.Background()
	if err := chain.Build(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	demo, err := os.Executable() // this test binary, run as the demo (see TestMain): one link less
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name        string
		sig         syscall.Signal
		closeOutput bool
	}{
		{"SIGINT", syscall.SIGINT, false},
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGHUP", syscall.SIGHUP, false},
		{"SIGINT after its output's reader is gone", syscall.SIGINT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs, err := chain.FreeAddrs()
			if err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			cmd := exec.Command(demo, "--bin", bin, "--front", "none",
				"--logto-addr", addrs.Logto, "--grpc-addr", addrs.GRPC, "--http-addr", addrs.HTTP,
				"--mgmtproxy-addr", addrs.Mgmtproxy, "--front-addr", addrs.Front)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp, runAsDemo+"=1")
			r, w, err := os.Pipe() // a real pipe, so a closed reader means EPIPE and SIGPIPE
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = w, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() {
				cmd.Process.Kill() // only if the test failed half-way
				r.Close()
			}()

			if !waitFor(r, "Press Ctrl-C to stop", 90*time.Second) {
				t.Fatalf("the demo did not get ready; stderr: %s", stderr.String())
			}
			dirs, _ := filepath.Glob(filepath.Join(tmp, "orgauthz-run-*"))
			if len(dirs) != 1 {
				t.Fatalf("temporary directories %v, want one while running", dirs)
			}
			if _, err := os.Stat(filepath.Join(dirs[0], "m2m-secret")); err != nil {
				t.Fatalf("the M2M secret is not in the temporary directory: %v", err)
			}
			if tc.closeOutput {
				r.Close()
			} else {
				go drain(r)
			}
			cmd.Process.Signal(tc.sig)
			select {
			case err := <-done:
				var exit *exec.ExitError
				if errors.As(err, &exit) || err != nil {
					t.Errorf("exit: %v (%v), want status 0; stderr: %s", err, cmd.ProcessState, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the demo did not stop within 30 s")
			}
			if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary directory %s still there after the stop (%v)", dirs[0], err)
			}
			if c, err := net.DialTimeout("tcp", addrs.Mgmtproxy, time.Second); err == nil {
				c.Close()
				t.Errorf("mgmtproxy still listens on %s after the stop", addrs.Mgmtproxy)
			}
		})
	}
}

// waitFor reads lines from r until one contains want.
func waitFor(r *os.File, want string, timeout time.Duration) bool {
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		return ok
	case <-time.After(timeout):
		return false
	}
}

func drain(r *os.File) {
	buf := make([]byte, 4096)
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// A taken address stops the demo before it starts anything, naming the address and how to
// move it: flag and environment variable.
func TestTakenPortHint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addrs, err := chain.FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"--bin", t.TempDir(), "--front", "none",
		"--logto-addr", ln.Addr().String(), "--grpc-addr", addrs.GRPC, "--http-addr", addrs.HTTP,
		"--mgmtproxy-addr", addrs.Mgmtproxy, "--front-addr", addrs.Front}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, want := range []string{ln.Addr().String(), "--logto-addr", "ORGAUTHZ_DEMO_LOGTO_ADDR", "Logto OSS"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("error %q does not mention %q", stderr.String(), want)
		}
	}
	if strings.Contains(stderr.String(), "another orgauthz chain") {
		t.Errorf("error %q still blames another chain only", stderr.String())
	}
}

// The environment moves the ports like the flags do, and a flag wins over the environment.
func TestAddrsFromEnvironment(t *testing.T) {
	t.Setenv("ORGAUTHZ_DEMO_LOGTO_ADDR", "127.0.0.1:3101")
	t.Setenv("ORGAUTHZ_DEMO_FRONT_ADDR", "127.0.0.1:8181")
	o, err := parseOptions([]string{"--front-addr", "127.0.0.1:8282"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.addrs.Logto != "127.0.0.1:3101" || o.addrs.Front != "127.0.0.1:8282" || o.addrs.GRPC != chain.DefaultAddrs().GRPC {
		t.Errorf("addrs = %+v, want Logto from the environment, front from the flag, the rest default", o.addrs)
	}
	if _, err := parseOptions([]string{"--front", "nginx"}, &bytes.Buffer{}); err == nil {
		t.Error("--front nginx accepted, want an error")
	}
}
