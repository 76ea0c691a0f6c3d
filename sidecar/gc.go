package sidecar

import "runtime/debug"

// The GC setting the sidecar binary runs with unless its environment sets GOGC or GOMEMLIMIT
// (BENCHMARKS.md). The live heap is a few MB to ~12 MB without many cached tokens, so Go's default
// GOGC=100 collected many times a second, and on the sidecar's one P each mark phase delays the
// checks that arrive during it: at 1000 checks/s and GOGC=400 they were about the slowest 1 %. At
// 1000 % a collection comes about every 2.5 s there instead of 1.2 s, and once the live heap passes
// ~10 MB it is the memory limit that sets when: with 100 000 cached tokens (~70 MB live) RSS stays
// under 150 MB. The price is a heap that grows to 11 times its live size, or to the limit, before
// it is collected.
const (
	GCPercent   = 1000
	MemoryLimit = 112 << 20
)

// TuneGC applies GCPercent and MemoryLimit unless the operator set their own.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" && getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(GCPercent)
		debug.SetMemoryLimit(MemoryLimit)
	}
}
