//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

func setDeathSignal(*exec.Cmd) {}

func pinSelf(int) error { return errors.New("pinning needs Linux") }
