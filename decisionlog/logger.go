package decisionlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sinks other than a file path.
const (
	SinkStdout = "stdout"
	SinkOff    = "off"
)

const (
	// DefaultQueueSize is the number of records that may wait for the writer.
	DefaultQueueSize = 4096
	// MaxRecordBytes bounds one line. A longer record loses its input (listed as erased), then its
	// result; one still longer is dropped.
	MaxRecordBytes = 64 << 10
	// rotationCheck is how often a file sink checks whether its path still names the open file.
	rotationCheck = time.Second
	// batchDelay is how long the writer lets records gather once one has come; a record reaches the
	// sink about this long after its decision.
	batchDelay = 5 * time.Millisecond
	// maskTimeout bounds one evaluation of the mask policy.
	maskTimeout = time.Second
)

// Reasons a record is dropped: the label of orgauthz_decision_log_dropped_total.
const (
	dropQueueFull  = "queue_full"  // the writer is behind (slow or stuck sink): never block a decision
	dropWriteError = "write_error" // the sink refused the bytes
	dropTooLarge   = "too_large"   // over MaxRecordBytes even without input and result
	dropClosed     = "closed"      // submitted after Close
)

// Options configure a Logger. The zero value works.
type Options struct {
	// Service and Version become the labels "service" and "version" of every record.
	Service, Version string
	// Labels are added to every record's labels (OPA's labels: e.g. an instance id).
	Labels map[string]string
	// QueueSize is the number of records that may wait for the writer; DefaultQueueSize when ≤ 0.
	QueueSize int
	// Mask is the system.log.mask policy to apply; nil for none. SetMask replaces it.
	Mask *Mask
	// Forward, when set, also receives every record the writer writes, after credentials are
	// removed and the mask applied (e.g. to hand it to OPA's decision-log plugin). It runs on the
	// writer goroutine, so it must not block; it may keep r but must not change it.
	Forward func(r *Record)
	// Log receives the writer's own failures (cannot write, cannot reopen, mask failed), never a
	// record's content. Nil discards them; the metrics count them either way.
	Log *slog.Logger
}

// Logger writes Records as JSON lines from one goroutine. A nil *Logger is the "off" sink: every
// method is a no-op, so callers need no checks beyond Enabled to skip building records.
type Logger struct {
	queue  chan *Record
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
	once   sync.Once
	err    error // Close's result, set by the writer before done closes

	labels  map[string]string
	mask    atomic.Pointer[Mask]
	log     *slog.Logger
	forward func(*Record)

	// Writer state, owned by the writer goroutine.
	out     io.Writer
	bw      *bufio.Writer
	pending int // records in bw since the last successful flush
	buf     bytes.Buffer
	scrub   scrubber
	input   []byte   // the record's scrubbed input, until the next record
	result  []byte   // the record's scrubbed result, until the next record
	line    []byte   // the record's line, until the next record
	path    string   // file sink path; "" for a plain writer
	file    *os.File // the open file sink
	hup     chan os.Signal

	written  prometheus.Counter
	dropped  *prometheus.CounterVec
	queueLen prometheus.GaugeFunc
	drops    map[string]prometheus.Counter
	total    atomic.Uint64
}

// CheckSink reports whether sink is usable: "stdout", "off", or a file path whose directory exists.
func CheckSink(sink string) error {
	switch sink {
	case SinkStdout, SinkOff:
		return nil
	case "":
		return errors.New("decisionlog: sink is empty (want stdout, off or a file path)")
	}
	dir := filepath.Dir(sink)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("decisionlog: sink %q: directory %q does not exist", sink, dir)
	}
	return nil
}

// Open starts a Logger on sink: "stdout", "off" (a nil Logger, nil error) or a file path, opened
// append-only and created with mode 0600. A file sink is reopened on SIGHUP and when its path stops
// naming the open file (checked every second), so logrotate works with or without a postrotate signal.
func Open(sink string, opts Options) (*Logger, error) {
	if err := CheckSink(sink); err != nil {
		return nil, err
	}
	switch sink {
	case SinkOff:
		return nil, nil
	case SinkStdout:
		return start(os.Stdout, "", nil, opts), nil
	}
	f, err := openFile(sink)
	if err != nil {
		return nil, err
	}
	return start(f, sink, f, opts), nil
}

// New starts a Logger writing to w, which it never closes.
func New(w io.Writer, opts Options) *Logger { return start(w, "", nil, opts) }

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("decisionlog: open %w", err)
	}
	return f, nil
}

func start(w io.Writer, path string, f *os.File, opts Options) *Logger {
	n := opts.QueueSize
	if n <= 0 {
		n = DefaultQueueSize
	}
	l := &Logger{
		queue:   make(chan *Record, n),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		log:     opts.Log,
		forward: opts.Forward,
		out:     w,
		bw:      bufio.NewWriterSize(w, 64<<10),
		path:    path,
		file:    f,
		labels:  map[string]string{},
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgauthz_decision_log_records_total",
			Help: "Audit records written to the --decision-log sink.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgauthz_decision_log_dropped_total",
			Help: "Audit records dropped, by reason: queue_full (the sink is slower than decisions), write_error, too_large, closed.",
		}, []string{"reason"}),
		drops: map[string]prometheus.Counter{},
	}
	l.queueLen = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orgauthz_decision_log_queue_length",
		Help: "Audit records waiting for the writer.",
	}, func() float64 { return float64(len(l.queue)) })
	for _, r := range []string{dropQueueFull, dropWriteError, dropTooLarge, dropClosed} {
		l.drops[r] = l.dropped.WithLabelValues(r) // bound once: Submit's drop path costs one atomic add
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	for k, v := range opts.Labels {
		l.labels[k] = v
	}
	if opts.Service != "" {
		l.labels["service"] = opts.Service
	}
	if opts.Version != "" {
		l.labels["version"] = opts.Version
	}
	l.mask.Store(opts.Mask)
	if path != "" {
		l.hup = make(chan os.Signal, 1)
		signal.Notify(l.hup, syscall.SIGHUP)
	}
	go l.run()
	return l
}

// Enabled reports whether records are written; false for the "off" sink.
func (l *Logger) Enabled() bool { return l != nil }

// Submit queues r for writing and returns at once. When the queue is full (the sink is slow) r is
// dropped and counted: a decision never waits for its audit record. r belongs to the Logger afterwards.
func (l *Logger) Submit(r *Record) {
	if l == nil || r == nil {
		return
	}
	if l.closed.Load() {
		l.drop(dropClosed)
		return
	}
	select {
	case l.queue <- r:
	default:
		l.drop(dropQueueFull)
	}
}

func (l *Logger) drop(reason string) {
	l.drops[reason].Inc()
	l.total.Add(1)
}

// SetMask replaces the mask policy (nil: none), e.g. when the policies are reloaded. Records already
// queued are masked with the new one.
func (l *Logger) SetMask(m *Mask) {
	if l != nil {
		l.mask.Store(m)
	}
}

// Dropped returns the number of records dropped so far, for every reason.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.total.Load()
}

// Collectors are the Logger's Prometheus metrics, for the caller's registry:
// orgauthz_decision_log_records_total, orgauthz_decision_log_dropped_total{reason} and
// orgauthz_decision_log_queue_length.
func (l *Logger) Collectors() []prometheus.Collector {
	if l == nil {
		return nil
	}
	return []prometheus.Collector{l.written, l.dropped, l.queueLen}
}

// Close writes every queued record, flushes and closes a file sink. Records submitted after Close are
// dropped (and counted); Close is safe to call more than once.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		<-l.done
		if l.hup != nil {
			signal.Stop(l.hup)
		}
	})
	return l.err
}

// run is the writer goroutine. The first record after a pause wakes it; then it works in batches,
// batchDelay apart, while Submit only queues: the writer does not wait on the queue then. Waking it
// for every record cost a thread wake-up per decision whenever another P was idle. Each batch is
// handed to the sink at once, so a record reaches it about batchDelay after its decision.
func (l *Logger) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.path != "" {
		t := time.NewTicker(rotationCheck)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(batchDelay)
	timer.Stop()
	defer timer.Stop()
	var batch <-chan time.Time // the next batch is due; nil while idle
	for {
		var queue <-chan *Record // nil between batches
		if batch == nil {
			queue = l.queue
		}
		select {
		case r := <-queue:
			l.write(r)
			timer.Reset(batchDelay)
			batch = timer.C
		case <-batch:
			if l.writeQueued() {
				timer.Reset(batchDelay)
			} else {
				batch = nil
			}
			l.flush()
		case <-l.hup:
			l.reopen("SIGHUP")
		case <-tick:
			if l.rotated() {
				l.reopen("rotated")
			}
		case <-l.stop:
			for l.writeQueued() { // Close has stopped new records
			}
			l.flush()
			if l.file != nil {
				l.err = l.file.Close()
			}
			return
		}
	}
}

// writeQueued writes the records queued now, not those that arrive meanwhile (so a steady stream
// cannot keep the writer from its other events), and reports whether there were any.
func (l *Logger) writeQueued() bool {
	n := len(l.queue)
	for range n {
		l.write(<-l.queue)
	}
	return n > 0
}

// write prepares r and appends its line to the buffer.
func (l *Logger) write(r *Record) {
	line, ok := l.encode(r)
	if !ok {
		l.drop(dropTooLarge)
		return
	}
	l.pending++
	if _, err := l.bw.Write(line); err != nil {
		l.writeFailed(err)
	}
	if l.forward != nil {
		// The forwarded record may be kept: its input and result must stop sharing the writer's
		// buffers, which the next record reuses.
		r.Input, r.Result = ownJSON(r.Input), ownJSON(r.Result)
		l.forward(r)
	}
}

// flush hands the buffered lines to the sink.
func (l *Logger) flush() {
	if l.pending == 0 {
		return
	}
	if err := l.bw.Flush(); err != nil {
		l.writeFailed(err)
		return
	}
	l.written.Add(float64(l.pending))
	l.pending = 0
}

// writeFailed counts the buffered records as lost and starts afresh (a bufio.Writer's error is
// sticky). A file that went away is replaced by the rotation check or SIGHUP.
func (l *Logger) writeFailed(err error) {
	l.drops[dropWriteError].Add(float64(l.pending))
	l.total.Add(uint64(l.pending))
	l.log.Error("decisionlog: write failed; records dropped", "dropped", l.pending, "err", err)
	l.pending = 0
	l.bw.Reset(l.out)
}

// rotated reports whether the file sink's path no longer names the open file (renamed or removed).
func (l *Logger) rotated() bool {
	cur, err := l.file.Stat()
	if err != nil {
		return true
	}
	st, err := os.Stat(l.path)
	return err != nil || !os.SameFile(cur, st)
}

// reopen flushes what it can to the old file and switches to a fresh open of the path. If the path
// cannot be opened, it keeps writing to the old file.
func (l *Logger) reopen(why string) {
	l.flush()
	f, err := openFile(l.path)
	if err != nil {
		l.log.Error("decisionlog: reopen failed; still writing to the old file", "why", why, "err", err)
		return
	}
	l.file.Close()
	l.file, l.out = f, f
	l.bw.Reset(f)
}

// encode prepares r (credential removal, mask) and returns its JSON line, within MaxRecordBytes. The
// returned slice is valid until the next encode.
func (l *Logger) encode(r *Record) ([]byte, bool) {
	l.prepare(r)
	for range 3 {
		line, err := l.marshal(r)
		if err != nil {
			// Only an unencodable value given as Input or Result gets here: drop them, keep the audit.
			r.Input, r.Result = nil, nil
			r.Erased = append(r.Erased, "/input", "/result")
			continue
		}
		if len(line) <= MaxRecordBytes {
			return line, true
		}
		switch {
		case r.Input != nil:
			r.Input = nil
			r.Erased = []string{"/input"}
			r.Masked = nil
		case r.Result != nil:
			r.Result = nil
			r.Erased = append(r.Erased, "/result")
		default:
			return nil, false
		}
	}
	return nil, false
}

// marshal writes r as one JSON line into l.buf. Input and Result, already JSON after prepare, are
// appended last, as they are: encoding/json would validate and compact them once more, which cost
// as much as the rest of the record.
func (l *Logger) marshal(r *Record) ([]byte, error) {
	docs := [2]struct {
		name string
		v    any
	}{{"input", r.Input}, {"result", r.Result}}
	r.Input, r.Result = nil, nil
	l.buf.Reset()
	enc := json.NewEncoder(&l.buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(r)
	r.Input, r.Result = docs[0].v, docs[1].v
	if err != nil {
		return nil, err
	}
	line := append(l.line[:0], bytes.TrimSuffix(l.buf.Bytes(), []byte("}\n"))...)
	defer func() { l.line = line[:0] }()
	for _, d := range docs {
		if d.v == nil {
			continue
		}
		raw, ok := d.v.(json.RawMessage)
		if !ok { // edited by the mask
			if raw, err = json.Marshal(d.v); err != nil {
				return nil, err
			}
		}
		if line[len(line)-1] != '{' {
			line = append(line, ',')
		}
		line = append(append(append(line, '"'), d.name...), `":`...)
		line = append(line, raw...)
	}
	line = append(line, "}\n"...)
	return line, nil
}

// prepare turns Input and Result into plain JSON values, removes credentials everywhere, fills the
// writer's fields and applies the mask.
func (l *Logger) prepare(r *Record) {
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now()
	}
	r.Timestamp = r.Timestamp.UTC()
	r.Labels = l.labels
	m := r.Mask
	if m == nil {
		m = l.mask.Load()
	}
	s := &l.scrub
	s.erased, s.masked = nil, nil
	if r.Input != nil {
		l.input = s.appendJSON(l.input[:0], "/input", r.Input)
		r.Input = json.RawMessage(l.input)
	}
	if r.Result != nil {
		l.result = s.appendJSON(l.result[:0], "/result", r.Result)
		r.Result = json.RawMessage(l.result)
	}
	r.Erased, r.Masked = s.erased, s.masked
	r.DecisionID = requestID(r.DecisionID)
	r.RequestID = requestID(r.RequestID)
	r.TraceID = traceID(r.TraceID)
	r.Reason, r.Route, r.Path = clean(r.Reason), clean(r.Route), clean(r.Path)
	r.Method, r.RequestPath, r.SourceAddress = clean(r.Method), clean(r.RequestPath), clean(r.SourceAddress)
	r.RequiredScopes = cleanAll(r.RequiredScopes)
	if t := r.Token; t != nil {
		t.Kind, t.Subject, t.ClientID, t.OrganizationID = clean(t.Kind), clean(t.Subject), clean(t.ClientID), clean(t.OrganizationID)
		t.Scopes = cleanAll(t.Scopes)
	}
	for i := range r.Calls {
		c := &r.Calls[i]
		c.Method, c.Path, c.Error = clean(c.Method), clean(c.Path), clean(c.Error)
	}
	if c := r.Changes; c != nil {
		c.OrganizationID = clean(c.OrganizationID)
		c.UserIDs, c.RoleNames, c.RoleIDs = cleanAll(c.UserIDs), cleanAll(c.RoleNames), cleanAll(c.RoleIDs)
		for i := range c.Items {
			c.Items[i].ID, c.Items[i].Error = clean(c.Items[i].ID), clean(c.Items[i].Error)
		}
	}
	if m != nil {
		l.applyMask(m, r)
	}
}

// applyMask evaluates the mask for r and applies its rules; when it fails, input and result go.
// The rules edit input and result as plain JSON values.
func (l *Logger) applyMask(m *Mask, r *Record) {
	r.Input, r.Result = editable(r.Input), editable(r.Result)
	ctx, cancel := context.WithTimeout(context.Background(), maskTimeout)
	defer cancel()
	rules, err := m.rules(ctx, eventOf(r))
	if err != nil {
		l.log.Error("decisionlog: mask failed; input and result erased", "decision_id", r.DecisionID, "err", err)
		r.Input, r.Result = nil, nil
		r.Erased = append(r.Erased, "/input", "/result")
		return
	}
	for _, rule := range rules {
		rule.apply(r)
	}
}

// eventOf is r as the mask policy sees it: its JSON form, as OPA hands its event to the mask.
func eventOf(r *Record) any {
	b, err := json.Marshal(r)
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}

// ownJSON returns v with JSON bytes of its own when v is scrubbed JSON, else v.
func ownJSON(v any) any {
	if raw, ok := v.(json.RawMessage); ok {
		return json.RawMessage(bytes.Clone(raw))
	}
	return v
}

// editable turns scrubbed JSON back into plain values (maps, slices, strings, json.Number, bools,
// nil) that mask rules can edit in place.
func editable(v any) any {
	raw, ok := v.(json.RawMessage)
	if !ok {
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if dec.Decode(&out) != nil {
		return nil
	}
	return out
}
