package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawRequest is a CheckRequest already in its wire form, so the generator spends no time
// marshalling while it measures.
type rawRequest []byte

// rawCodec sends rawRequest as it is and decodes answers with grpc-go's proto codec.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }
func (rawCodec) Name() string                                  { return proto.Name }

var codec = grpc.ForceCodecV2(rawCodec{proto: encoding.GetCodecV2(proto.Name)})

// target is a server under test as the generator sees it.
type target struct {
	conns    []*grpc.ClientConn
	pid      int
	anyToken bool // answers do not depend on the token (the null server)
	decision bool // allowed answers must carry x-orgauthz-decision
}

func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	return conns, nil
}

func (t *target) close() {
	for _, c := range t.conns {
		c.Close()
	}
}

// judge says what is wrong with an answer, or "" when it is the expected one.
func (t *target) judge(c *check, resp *authv3.CheckResponse) string {
	want := c.want
	if t.anyToken {
		want = allowAll
	}
	code := resp.GetStatus().GetCode()
	if want.allow {
		ok := resp.GetOkResponse()
		if code != int32(codes.OK) || ok == nil {
			return fmt.Sprintf("got %s, want allow", describe(resp))
		}
		if t.decision && !slices.ContainsFunc(ok.GetHeaders(), func(h *corev3.HeaderValueOption) bool {
			return h.GetHeader().GetKey() == "x-orgauthz-decision" && h.GetHeader().GetValue() != ""
		}) {
			return "allowed without x-orgauthz-decision"
		}
		return ""
	}
	if d := resp.GetDeniedResponse(); code == int32(codes.OK) || d.GetStatus().GetCode() != typev3.StatusCode(want.status) {
		return fmt.Sprintf("got %s, want %s", describe(resp), want)
	}
	return ""
}

var allowAll = want{allow: true}

func describe(resp *authv3.CheckResponse) string {
	if d := resp.GetDeniedResponse(); d != nil {
		return fmt.Sprintf("deny %d (grpc %d)", d.GetStatus().GetCode(), resp.GetStatus().GetCode())
	}
	if resp.GetOkResponse() != nil {
		return fmt.Sprintf("allow (grpc %d)", resp.GetStatus().GetCode())
	}
	return fmt.Sprintf("no http response (grpc %d)", resp.GetStatus().GetCode())
}

// load is one timed run: saturation (rate 0, closed loop with workers in flight) or a fixed
// rate (open loop: latency counts from when a check was due, so a stall is not hidden).
type load struct {
	duration time.Duration
	rate     float64
	workers  int
}

// outcome is what one run measured.
type outcome struct {
	n       int
	elapsed time.Duration
	cpu     time.Duration // the server's user+system CPU time over the run
	// others is the time the server's core spent on anything but the server during the run
	// (other processes, interrupts, time stolen by the hypervisor); -1 when unknown.
	others    time.Duration
	lat       []time.Duration // sorted
	failures  int
	firstFail string
	exhausted bool // the source ran out before the time was up
	// unsent counts the checks of a fixed-rate run still waiting when the run was overGrace
	// past its time: the server could not keep up.
	unsent int
}

// overGrace is how long a fixed-rate run may overrun before the checks still queued are
// dropped, so an overloaded server does not stretch the benchmark.
const overGrace = time.Second

func (o outcome) rate() float64 { return float64(o.n) / o.elapsed.Seconds() }

// cpuPerCheck is the server's CPU time per check.
func (o outcome) cpuPerCheck() time.Duration {
	if o.n == 0 {
		return 0
	}
	return o.cpu / time.Duration(o.n)
}

// pct returns the p-th percentile latency (nearest rank).
func (o outcome) pct(p float64) time.Duration {
	if len(o.lat) == 0 {
		return 0
	}
	i := int(p/100*float64(len(o.lat))+0.5) - 1
	return o.lat[max(0, min(i, len(o.lat)-1))]
}

// tally is what one worker saw of one fire's calls.
type tally struct {
	lat       []time.Duration
	failures  int
	firstFail string
	exhausted bool
	unsent    int
}

// fire makes one call for worker w and says what was wrong with the answer ("" when
// nothing), or false when there is nothing left to send.
type fire func(ctx context.Context, w int) (problem string, more bool)

func (t *tally) do(ctx context.Context, f fire, w int, since time.Time) bool {
	msg, more := f(ctx, w)
	if !more {
		t.exhausted = true
		return false
	}
	t.lat = append(t.lat, time.Since(since))
	if msg != "" {
		if t.failures == 0 {
			t.firstFail = msg
		}
		t.failures++
	}
	return true
}

// checks fires the checks of src at t.
func (t *target) checks(src source) fire {
	return func(ctx context.Context, w int) (string, bool) {
		c, ok := src.next()
		if !ok {
			return "", false
		}
		resp := new(authv3.CheckResponse)
		if err := t.conns[w%len(t.conns)].Invoke(ctx, checkMethod, rawRequest(c.raw), resp, codec); err != nil {
			return "grpc: " + err.Error(), true
		}
		return t.judge(c, resp), true
	}
}

// run drives f with l, measuring the CPU time of process pid over the run.
func run(ctx context.Context, pid int, l load, f fire) (outcome, error) {
	o, err := runTogether(ctx, l, way{f, pid})
	if len(o) == 0 {
		return outcome{}, err
	}
	return o[0], err
}

// way is one path of a runTogether run: its calls, and the server process that serves them
// (0: none of ours).
type way struct {
	fire fire
	pid  int
}

// runTogether drives the ways in turn in one run (call i goes to ways[i%len(ways)]; l.rate
// is their sum) and returns an outcome for each, so that paths compared with each other see
// the same host at the same moments. Each outcome has its way's server's CPU time over the run.
func runTogether(ctx context.Context, l load, ways ...way) ([]outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, l.duration+time.Minute)
	defer cancel()
	tallies := make([][]tally, l.workers)
	expect := int(min(l.duration.Seconds()*max(l.rate, 2000), 200_000)) / l.workers / len(ways)
	for i := range tallies {
		tallies[i] = make([]tally, len(ways))
		for f := range ways {
			tallies[i][f].lat = make([]time.Duration, 0, expect)
		}
	}
	cpu0, err := cpuTimes(ways)
	if err != nil {
		return nil, err
	}
	core0, core0Err := coreTime(serverCore)
	start := time.Now()
	deadline := start.Add(l.duration)
	var wg sync.WaitGroup
	if l.rate <= 0 {
		for i := range tallies {
			wg.Go(func() {
				for k := i; time.Now().Before(deadline) && ctx.Err() == nil; k++ {
					f := k % len(ways)
					if !tallies[i][f].do(ctx, ways[f].fire, i, time.Now()) {
						return
					}
				}
			})
		}
	} else {
		due := make(chan dueCall, 4096)
		go pace(ctx, due, start, l.rate, int(l.rate*l.duration.Seconds()))
		late := deadline.Add(overGrace)
		for i := range tallies {
			wg.Go(func() {
				for c := range due {
					f := c.seq % len(ways)
					if time.Now().After(late) {
						tallies[i][f].unsent++
						continue
					}
					if !tallies[i][f].do(ctx, ways[f].fire, i, c.at) {
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := cpuTimes(ways)
	if err != nil {
		return nil, err
	}
	others := time.Duration(-1)
	if core1, err := coreTime(serverCore); err == nil && core0Err == nil {
		ours := time.Duration(0)
		for pid, t := range cpu1 {
			ours += t - cpu0[pid]
		}
		others = max(0, (core1-core0)-ours)
	}
	outcomes := make([]outcome, len(ways))
	for f := range outcomes {
		pid := ways[f].pid
		o := outcome{elapsed: elapsed, cpu: cpu1[pid] - cpu0[pid], others: others}
		for _, ts := range tallies {
			t := ts[f]
			o.lat = append(o.lat, t.lat...)
			if t.failures > 0 && o.failures == 0 {
				o.firstFail = t.firstFail
			}
			o.failures += t.failures
			o.exhausted = o.exhausted || t.exhausted
			o.unsent += t.unsent
		}
		o.n = len(o.lat)
		slices.Sort(o.lat)
		outcomes[f] = o
	}
	if ctx.Err() != nil {
		return outcomes, errors.New("the run did not finish in time")
	}
	return outcomes, nil
}

// cpuTimes is the CPU time each way's server has used so far, by process id.
func cpuTimes(ways []way) (map[int]time.Duration, error) {
	t := map[int]time.Duration{}
	for _, w := range ways {
		if _, seen := t[w.pid]; w.pid == 0 || seen {
			continue
		}
		var err error
		if t[w.pid], err = cpuTime(w.pid); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// dueCall is the seq-th call of a fixed-rate run, due at at.
type dueCall struct {
	at  time.Time
	seq int
}

// pace sends n due times at rate per second from start, catching up when it falls behind.
func pace(ctx context.Context, due chan<- dueCall, start time.Time, rate float64, n int) {
	defer close(due)
	interval := time.Duration(float64(time.Second) / rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case due <- dueCall{at, i}:
		case <-ctx.Done():
			return
		}
	}
}
