package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orgauthz/orgauthz/internal/chain"
	"github.com/orgauthz/orgauthz/internal/envoyclient"
	"github.com/orgauthz/orgauthz/internal/testkit"
)

// watched are the process metrics that must stay flat.
var watched = []string{liveHeap, "go_goroutines", "process_open_fds"}

// liveHeap is the heap live at the last collection.
const liveHeap = "go_gc_heap_live_bytes"

// sample is one scrape of one process.
type sample struct {
	at     time.Duration // since measuring started
	values map[string]float64
}

type result struct {
	checks, mgmt       *tally
	elapsed            time.Duration
	samples            map[string][]sample // by process: sidecar, mgmtproxy
	scrapeErrors       int
	loadStart, loadEnd string
}

// soak warms the chain up, then loads it for cfg.Duration while scraping both processes'
// /metrics every few seconds.
func soak(ctx context.Context, cfg Config, c *chain.Chain) (*result, error) {
	checks, mgmt, secrets, err := scenarios(ctx, c)
	if err != nil {
		return nil, err
	}
	client, err := envoyclient.Dial(c.Addrs.GRPC, envoyclient.Options{WithBody: true, UseRemoteAddress: true, NormalizePath: false})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	next := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	defer next.CloseIdleConnections()
	checkOnly := cfg.ChecksPerSec - cfg.MgmtPerSec

	run := func(ctx context.Context, d time.Duration, ct, mt *tally) {
		ctx, cancel := context.WithTimeout(ctx, d+30*time.Second) // bounded in time and in count
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			generate(ctx, checkOnly, 64, int64(d.Seconds()*float64(checkOnly)), ct, checker(client, checks, secrets))
		})
		wg.Go(func() {
			generate(ctx, cfg.MgmtPerSec, 16, int64(d.Seconds()*float64(cfg.MgmtPerSec)), mt, forwarder(client, next, c.MgmtproxyURL(), mgmt))
		})
		wg.Wait()
	}
	if cfg.Warmup > 0 {
		run(ctx, cfg.Warmup, &tally{}, &tally{})
	}

	res := &result{checks: &tally{}, mgmt: &tally{}, samples: map[string][]sample{}, loadStart: loadavg()}
	targets := map[string]string{"sidecar": "http://" + c.Addrs.HTTP + "/metrics", "mgmtproxy": c.MgmtproxyURL() + "/metrics"}
	start := time.Now()
	sctx, stopScrape := context.WithCancel(ctx)
	var scraping sync.WaitGroup
	scraping.Go(func() {
		every := min(5*time.Second, cfg.Duration/20)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for name, url := range targets {
				v, err := scrape(sctx, url)
				if err != nil {
					if sctx.Err() == nil {
						res.scrapeErrors++
					}
					continue
				}
				res.samples[name] = append(res.samples[name], sample{time.Since(start), v})
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	})
	run(ctx, cfg.Duration, res.checks, res.mgmt)
	res.elapsed = time.Since(start)
	// One last scrape after the load, so the last window ends where the load did.
	time.Sleep(min(5*time.Second, cfg.Duration/20))
	stopScrape()
	scraping.Wait()
	res.loadEnd = loadavg()
	return res, ctx.Err()
}

// scrape reads the watched metrics from a Prometheus text endpoint; each must be there. A live
// heap of 0 means no collection has run yet, not an empty heap: that scrape leaves it out.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := testkit.ScrapeMetrics(ctx, url)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(watched))
	for _, w := range watched {
		v, ok := m[w]
		if !ok {
			return nil, fmt.Errorf("no %s", w)
		}
		if w == liveHeap && v == 0 {
			continue
		}
		out[w] = v
	}
	return out, nil
}

// loadavg is the machine's load for the report: /proc/loadavg's 1, 5 and 15 minute averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// window is the span a flatness verdict compares: the first and the last minute, or the
// first and last quarter of a run shorter than four minutes.
func window(d time.Duration) time.Duration {
	if d >= 4*time.Minute {
		return time.Minute
	}
	return d / 4
}

// median of the metric over the samples taken in [from, to) that have it.
func median(ss []sample, metric string, from, to time.Duration) (float64, int) {
	var v []float64
	for _, s := range ss {
		if s.at >= from && s.at < to {
			if x, ok := s.values[metric]; ok {
				v = append(v, x)
			}
		}
	}
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], len(v)
}

// limits say how much a metric may grow from the first to the last window and still be flat:
// last <= first*factor + slack, plus shortSlack when the windows are shorter than a minute. The
// heap is the one live at the last collection, so the GC's sawtooth (its height set by GOGC) is
// not in it, but in a short run the token cache and the pools are still filling; goroutines move
// with requests in flight.
var limits = map[string]struct {
	factor, slack, shortSlack float64
	unit                      string
}{
	liveHeap:           {1.25, 4 << 20, 12 << 20, "MiB"},
	"go_goroutines":    {1.10, 10, 0, ""},
	"process_open_fds": {1.00, 5, 0, ""},
}

// report prints one verdict line per criterion and reports whether all passed.
func (r *result) report(w io.Writer, cfg Config) bool {
	allOK := true
	verdict := func(ok bool, format string, args ...any) {
		word := "PASS"
		if !ok {
			word, allOK = "FAIL", false
		}
		fmt.Fprintf(w, "%s  %s\n", word, fmt.Sprintf(format, args...))
	}
	secs := r.elapsed.Seconds()
	fmt.Fprintf(w, "soak: %v measured after a %v warm-up, %d checks/s (%d of them go on to mgmtproxy), %s, %d CPUs, load average %s at start, %s at end\n",
		cfg.Duration, cfg.Warmup, cfg.ChecksPerSec, cfg.MgmtPerSec, runtime.Version(), runtime.NumCPU(), r.loadStart, r.loadEnd)
	for _, s := range []struct {
		name string
		t    *tally
		rate int
	}{{"checks (gRPC, sidecar only)", r.checks, cfg.ChecksPerSec - cfg.MgmtPerSec}, {"mgmtproxy requests (check + forward)", r.mgmt, cfg.MgmtPerSec}} {
		sent, failed, dropped := s.t.sent.Load(), s.t.failed.Load(), s.t.dropped.Load()
		verdict(failed == 0 && sent > 0, "errors, %s: %d of %d%s", s.name, failed, sent, strings.Join(prefixAll("; ", s.t.samples), ""))
		want := int64(cfg.Duration.Seconds() * float64(s.rate))
		verdict(dropped == 0 && sent >= want*99/100, "rate, %s: %.1f/s sent (target %d/s), %d not sent because the load fell behind; latency from due time p50 %v p99 %v max %v",
			s.name, float64(sent)/secs, s.rate, dropped, s.t.percentile(0.5).Round(100*time.Microsecond), s.t.percentile(0.99).Round(100*time.Microsecond), s.t.percentile(1).Round(time.Millisecond))
	}
	win := window(cfg.Duration)
	for _, proc := range []string{"sidecar", "mgmtproxy"} {
		ss := r.samples[proc]
		last := ss[len(ss)-1].at
		for _, m := range watched {
			first, n1 := median(ss, m, 0, win)
			end, n2 := median(ss, m, last-win, last+1)
			l := limits[m]
			limit := first*l.factor + l.slack
			if win < time.Minute {
				limit += l.shortSlack
			}
			show := func(v float64) string {
				if l.unit == "MiB" {
					return fmt.Sprintf("%.1f MiB", v/(1<<20))
				}
				return strconv.FormatFloat(v, 'f', 0, 64)
			}
			verdict(n1 > 0 && n2 > 0 && end <= limit, "flat, %s %s: first %v %s, last %v %s (limit %s; medians of %d and %d scrapes)",
				proc, m, win, show(first), win, show(end), show(limit), n1, n2)
		}
	}
	verdict(r.scrapeErrors == 0, "metrics: %d failed scrapes of /metrics", r.scrapeErrors)
	return allOK
}

func prefixAll(sep string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = sep + s
	}
	return out
}
