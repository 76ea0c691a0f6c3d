//go:build !linux

package chain

import (
	"os"
	"syscall"
)

func childAttr() *syscall.SysProcAttr { return nil }

func terminate(p *os.Process) { p.Signal(os.Interrupt) }
