package sidecar

import "runtime/debug"

// The GC setting the sidecar binary runs with unless its environment sets GOGC or GOMEMLIMIT
// (BENCHMARKS.md). The live heap is a few MB without many cached tokens, so Go's default GOGC=100
// collected many times a second and its mark phases were the tail of a check's latency; the
// memory limit bounds the larger target: with 100 000 cached tokens (~70 MB live) RSS stays
// under 150 MB.
const (
	GCPercent   = 400
	MemoryLimit = 112 << 20
)

// TuneGC applies GCPercent and MemoryLimit unless the operator set their own.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" && getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(GCPercent)
		debug.SetMemoryLimit(MemoryLimit)
	}
}
