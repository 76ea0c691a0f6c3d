package confload

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit statuses shared by the binaries: 0 after --check or --help, ExitBadConfig for an invalid
// configuration (every problem on stderr), ExitFailure when serving fails.
const (
	ExitFailure   = 1
	ExitBadConfig = 2
)

type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// InvalidConfig marks err as a configuration problem, which Report answers with ExitBadConfig.
func InvalidConfig(err error) error {
	if err == nil {
		return nil
	}
	return configError{err}
}

// IsInvalidConfig reports whether err, or an error it wraps, was marked by InvalidConfig.
func IsInvalidConfig(err error) bool { return errors.As(err, new(configError)) }

// Report prints err, unless it is nil or flag.ErrHelp, and returns the process's exit status for it.
func Report(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, err)
	if IsInvalidConfig(err) {
		return ExitBadConfig
	}
	return ExitFailure
}
