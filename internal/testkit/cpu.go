package testkit

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the process's user and system CPU time so far. Benchmarks report it per op
// ("cpu-ns/op") beside ns/op: on a shared machine wall time mostly measures waiting for a core,
// and work handed to other goroutines or threads (the audit writer, a woken thread) shows only here.
func ProcessCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the process CPU time since start, per op of n, as cpu-ns/op.
func ReportCPU(b *testing.B, start time.Duration, n int) {
	b.ReportMetric(float64(ProcessCPU(b)-start)/float64(n), "cpu-ns/op")
}
