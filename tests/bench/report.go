package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Targets from the issue.
const (
	targetWarmCPUVsNull  = 3.0 // warm: server CPU per check at most this × the null server's
	targetColdVsBaseline = 1.3 // cold: checks/s at least this × the baseline's
	targetP99VsNull      = 2.0 // fixed rate, warm: p99 at most this × the null server's
	targetP95VsNull      = 1.5
	target500VsDefault   = 1.2 // warm: CPU per check with 500 routes at most this × the default table's
	targetCachedRSS      = 150 << 20
	targetMgmtAddedP99   = 1.0 // ms mgmtproxy may add to the p99 at -mgmt-rate
	baseline             = "opa-envoy"
)

// stat is the median and range of one figure over the repeats.
type stat struct{ med, lo, hi float64 }

func statOf(samples []sample, f func(sample) float64) stat {
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = f(s)
	}
	return statOfValues(v)
}

// ms is d in milliseconds, as the report prints latencies.
func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func statOfValues(v []float64) stat {
	slices.Sort(v)
	if len(v) == 0 {
		return stat{}
	}
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{med: med, lo: v[0], hi: v[len(v)-1]}
}

func (s stat) spread(format string) string {
	if s.lo == s.hi {
		return fmt.Sprintf(format, s.med)
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", s.med, s.lo, s.hi)
}

var (
	rate  = func(s sample) float64 { return s.rate }
	cpuUS = func(s sample) float64 { return float64(s.cpu) / 1e3 }
	p50   = func(s sample) float64 { return ms(s.p50) }
	p95   = func(s sample) float64 { return ms(s.p95) }
	p99   = func(s sample) float64 { return ms(s.p99) }
)

func mb(n int64) string { return fmt.Sprintf("%.0f", float64(n)/(1<<20)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	if r := a / b; r < 0.1 {
		return fmt.Sprintf("×%.3f", r)
	}
	return fmt.Sprintf("×%.2f", a/b)
}

func report(w io.Writer, b *bench, res *serverResults, mg *mgmtResult) {
	pin := fmt.Sprintf("servers pinned to core %d, generator and Logto emulator to core %d", serverCore, loadCore)
	if b.cores < 0 {
		pin = "not pinned"
	}
	fmt.Fprintf(w, "orgauthz benchmarks, %s, %s, %d cores, %s; %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpuModel(), runtime.NumCPU(), runtime.Version(), pin)
	fmt.Fprintf(w, "Each figure: median [min–max] of %d runs of %s after a %s warm-up; saturation with %d checks in flight over %d gRPC connections; "+
		"fixed rate open-loop (latency from when a check was due) with up to %d in flight. CPU is the server process's user+system time per check; "+
		"the last column is the share of the server's core that went to anything else (other processes, interrupts, hypervisor steal).\n\n",
		b.o.repeats, b.o.duration, b.o.warmup, b.o.concurrency, b.o.conns, b.o.rateWorkers)

	fmt.Fprintln(w, "| scenario | server | checks/s | server CPU µs/check | p50 ms | p95 ms | p99 ms | peak RSS MB | core 0 busy with others |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, sc := range b.scenarios() {
		bySrv := res.samples[sc.name]
		for _, name := range b.o.servers {
			s := bySrv[name]
			achieved := statOf(s, rate).spread("%.0f")
			if n := overloaded(s); n > 0 {
				achieved += fmt.Sprintf(" (overloaded in %d of %d runs)", n, len(s))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s |\n", sc.name, name,
				achieved, statOf(s, cpuUS).spread("%.0f"),
				statOf(s, p50).med, statOf(s, p95).med, statOf(s, p99).med, mb(res.peakRSS[name]), othersOf(s))
		}
		pairs := [][2]string{{"orgauthz", baseline}, {"orgauthz", "null"}}
		for _, name := range b.o.servers {
			if isOrgauthz(name) && name != "orgauthz" {
				pairs = append(pairs, [2]string{name, "orgauthz"})
			}
		}
		for _, pair := range pairs {
			a, o := bySrv[pair[0]], bySrv[pair[1]]
			if a == nil || o == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s ÷ %s | %s | %s | %s | %s | %s | | |\n", sc.name, pair[0], pair[1],
				ratio(statOf(a, rate).med, statOf(o, rate).med), ratio(statOf(a, cpuUS).med, statOf(o, cpuUS).med),
				ratio(statOf(a, p50).med, statOf(o, p50).med), ratio(statOf(a, p95).med, statOf(o, p95).med),
				ratio(statOf(a, p99).med, statOf(o, p99).med))
		}
	}
	if res.cachedTokens > 0 {
		heap := ""
		if res.cachedHeap > 0 {
			heap = fmt.Sprintf(" (Go heap in use %s, next GC at %s)", mb(res.cachedHeap), mb(res.cachedGCGoal))
		}
		fmt.Fprintf(w, "| %d distinct tokens sent | orgauthz | | | | | | RSS %s, peak %s%s | |\n",
			res.cachedTokens, mb(res.cachedRSS), mb(res.cachedHWM), heap)
	}
	if mg != nil {
		scn := fmt.Sprintf("mgmtproxy @%g/s", mg.rate)
		for _, row := range []struct {
			name string
			s    []sample
			rss  int64 // 0: no process of ours
		}{
			{"direct to the Logto emulator", mg.direct, 0},
			{"through mgmtproxy", mg.proxied, mg.peakRSS},
			{"direct to the Logto emulator, beside nullproxy", mg.hopDirect, 0},
			{"through nullproxy (a bare Go reverse proxy)", mg.hop, mg.hopRSS},
		} {
			cpu, rss := "", ""
			if row.rss > 0 {
				cpu, rss = statOf(row.s, cpuUS).spread("%.0f"), mb(row.rss)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s |\n", scn, row.name, statOf(row.s, rate).spread("%.0f"), cpu,
				statOf(row.s, p50).med, statOf(row.s, p95).med, statOf(row.s, p99).med, rss, othersOf(row.s))
		}
		for _, diff := range []struct {
			name string
			v    func(func(sample) float64) []float64
		}{
			{"added by mgmtproxy: through it − direct", mg.byMgmt},
			{"added by a bare hop: through nullproxy − direct", mg.byHop},
			{"added by mgmtproxy's own work: the first difference − the second", mg.ownWork},
		} {
			fmt.Fprintf(w, "| %s | %s (each repeat's) | | | %s | %s | %s | | |\n", scn, diff.name,
				statOfValues(diff.v(p50)).spread("%+.2f"), statOfValues(diff.v(p95)).spread("%+.2f"), statOfValues(diff.v(p99)).spread("%+.2f"))
		}
		s := mg.saturation
		fmt.Fprintf(w, "| mgmtproxy, %d in flight | through mgmtproxy: %d M2M token requests in its life | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n",
			b.o.mgmtConcurrency, mg.tokenRequests, s.rate, cpuUS(s), p50(s), p95(s), p99(s), mb(mg.peakRSS), othersOf([]sample{s}))
	}
	fmt.Fprintln(w)
	targets(w, b, res, mg)
}

func targets(w io.Writer, b *bench, res *serverResults, mg *mgmtResult) {
	fmt.Fprintln(w, "Targets:")
	if slices.Contains(b.o.servers, "orgauthz") {
		serverTargets(w, b, res)
	} else {
		fmt.Fprintln(w, "- orgauthz not measured")
	}
	if mg != nil {
		byMgmt, byHop := mg.byMgmt(p99), mg.byHop(p99)
		within := 0
		for _, a := range byMgmt {
			if a <= targetMgmtAddedP99 {
				within++
			}
		}
		a := statOfValues(byMgmt)
		fmt.Fprintf(w, "- mgmtproxy @%g/s adds ≤ %.0f ms to the p99: %+.2f ms (median of the repeats, %d of %d within; a bare hop, nullproxy, added %+.2f), %s\n",
			mg.rate, targetMgmtAddedP99, a.med, within, len(byMgmt), statOfValues(byHop).med, verdict(a.med <= targetMgmtAddedP99))
		fmt.Fprintf(w, "- mgmtproxy: one M2M token request per token lifetime (1 h): %d, %s\n", mg.tokenRequests, verdict(mg.tokenRequests == 1))
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// serverTargets reports the targets of the sidecar's runs; orgauthz was measured.
func serverTargets(w io.Writer, b *bench, res *serverResults) {
	med := func(sc, srv string, f func(sample) float64) float64 { return statOf(res.samples[sc][srv], f).med }
	has := func(s string) bool { return slices.Contains(b.o.servers, s) }
	rated := fmt.Sprintf("warm @%g/s", b.o.rate)
	if has("null") {
		r := med("warm", "orgauthz", cpuUS) / med("warm", "null", cpuUS)
		fmt.Fprintf(w, "- warm: orgauthz CPU per check ≤ %.1f× null's: ×%.2f, %s\n", targetWarmCPUVsNull, r, verdict(r <= targetWarmCPUVsNull))
		over := ""
		if n := overloaded(res.samples[rated]["orgauthz"]); n > 0 {
			over = fmt.Sprintf(" (could not keep up with %g/s in %d runs)", b.o.rate, n)
		}
		r99 := med(rated, "orgauthz", p99) / med(rated, "null", p99)
		r95 := med(rated, "orgauthz", p95) / med(rated, "null", p95)
		fmt.Fprintf(w, "- %s: orgauthz p99 ≤ %.1f× null's: ×%.2f, %s; p95 ≤ %.1f× null's: ×%.2f, %s%s\n", rated,
			targetP99VsNull, r99, verdict(r99 <= targetP99VsNull && over == ""), targetP95VsNull, r95, verdict(r95 <= targetP95VsNull && over == ""), over)
	}
	if has(baseline) {
		r := med("cold", "orgauthz", rate) / med("cold", baseline, rate)
		fmt.Fprintf(w, "- cold: orgauthz ≥ %.1f× %s checks/s: ×%.2f, %s\n", targetColdVsBaseline, baseline, r, verdict(r >= targetColdVsBaseline))
	}
	if has("orgauthz-500") {
		r := med("warm", "orgauthz-500", cpuUS) / med("warm", "orgauthz", cpuUS)
		fmt.Fprintf(w, "- warm: 500 routes ≤ %.1f× the default table's CPU per check: ×%.2f, %s\n", target500VsDefault, r, verdict(r <= target500VsDefault))
	}
	if res.cachedTokens > 0 {
		note := "not the 100 000 of the target: raise -cold-tokens"
		if res.cachedTokens >= 100_000 {
			note = "the default cache of 100 000 is full"
		}
		fmt.Fprintf(w, "- RSS ≤ %d MB with 100 000 cached tokens: %s MB after %d distinct tokens (%s), %s\n",
			targetCachedRSS>>20, mb(res.cachedRSS), res.cachedTokens, note, verdict(res.cachedRSS <= targetCachedRSS))
	}
}

// othersOf is the median share of the server's core that went to other work during the runs:
// what to read the other figures against on a shared machine.
func othersOf(samples []sample) string {
	for _, s := range samples {
		if s.others < 0 {
			return "–"
		}
	}
	return statOf(samples, func(s sample) float64 { return s.others * 100 }).spread("%.0f %%")
}

func overloaded(samples []sample) int {
	n := 0
	for _, s := range samples {
		if s.overloaded {
			n++
		}
	}
	return n
}

// cpuModel reads the processor's name from /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
