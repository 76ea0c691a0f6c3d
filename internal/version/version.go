// Package version holds the release version of the orgauthz binaries, stamped in at build time:
//
//	go build -ldflags "-X github.com/orgauthz/orgauthz/internal/version.Version=v1.2.3" ./cmd/...
//
// The Dockerfile and `make image` do this. `--version` prints "<binary> <version>" and exits 0.
package version

import (
	"fmt"
	"io"
	"runtime/debug"
)

// Version is set with -ldflags -X; empty in a plain `go build`, where String falls back to the
// module version Go recorded (a tagged `go install` has one) and then to "dev".
var Version string

// String returns the version the binary reports.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Requested reports whether args ask for the version: "--version" (or "-version", as the flag
// package spells flags too) anywhere before a "--" terminator. It wins over every other argument.
func Requested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--version", "-version":
			return true
		}
	}
	return false
}

// Print writes "<binary> <version>" and a newline.
func Print(w io.Writer, binary string) {
	fmt.Fprintf(w, "%s %s\n", binary, String())
}
