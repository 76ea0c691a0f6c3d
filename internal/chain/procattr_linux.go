package chain

import (
	"os"
	"syscall"
)

// childAttr puts a child in its own process group, so a Ctrl-C at the terminal reaches only the
// parent, which stops the children in order; and has the kernel kill the child if the parent
// dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }
