package testkit

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	page := "# HELP go_memstats_heap_inuse_bytes x\n# TYPE go_memstats_heap_inuse_bytes gauge\n" +
		"go_memstats_heap_inuse_bytes 1.2345e+07\n" +
		"go_memstats_next_gc_bytes 2.4e+07\n" +
		"orgauthz_decisions_total{result=\"allow\"} 12\n" +
		"broken_value abc\n" +
		"too many fields 1 2\n" +
		"# go_fake 1\n" +
		"\n" + strings.Repeat("x", 100000) + " 1\n"
	got := ParseMetrics([]byte(page))
	for name, want := range map[string]float64{"go_memstats_heap_inuse_bytes": 12345000, "go_memstats_next_gc_bytes": 24000000} {
		if got[name] != want {
			t.Errorf("ParseMetrics()[%s] = %v, want %v", name, got[name], want)
		}
	}
	for _, name := range []string{"orgauthz_decisions_total", `orgauthz_decisions_total{result="allow"}`, "broken_value", "too", "#"} {
		if v, ok := got[name]; ok {
			t.Errorf("ParseMetrics()[%s] = %v, want no sample", name, v)
		}
	}
}
