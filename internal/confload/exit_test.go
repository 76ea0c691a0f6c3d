package confload

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"testing"
)

func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
		wantOut    string
	}{
		{"success", nil, 0, ""},
		{"help", flag.ErrHelp, 0, ""},
		{"configuration", InvalidConfig(errors.Join(errors.New("sidecar: a"), errors.New("sidecar: b"))), ExitBadConfig, "sidecar: a\nsidecar: b\n"},
		{"wrapped configuration", fmt.Errorf("x: %w", InvalidConfig(errors.New("c"))), ExitBadConfig, "x: c\n"},
		{"runtime", errors.New("sidecar: listen: address in use"), ExitFailure, "sidecar: listen: address in use\n"},
	} {
		var stderr bytes.Buffer
		if got := Report(tc.err, &stderr); got != tc.wantStatus {
			t.Errorf("Report(%s) = %d, want %d", tc.name, got, tc.wantStatus)
		}
		if stderr.String() != tc.wantOut {
			t.Errorf("Report(%s) printed %q, want %q", tc.name, stderr.String(), tc.wantOut)
		}
	}
}
