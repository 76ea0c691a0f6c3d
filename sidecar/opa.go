package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/plugins/status"
	"github.com/open-policy-agent/opa/v1/server"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/confload"
)

// maxOPAConfigBytes bounds the --opa-config file: an OPA configuration is a page of YAML.
const maxOPAConfigBytes = 1 << 20

// opaSections are the parts of OPA's configuration --opa-config honours. Others (discovery, plugins,
// server, storage, caching, …) are refused rather than silently ignored: discovery would replace
// this configuration at run time, and the rest configure an OPA server the sidecar does not run.
var opaSections = []string{"services", "labels", "keys", "bundles", "decision_logs", "status"}

// opaPolicyStatus is the name under which the sidecar reports, in OPA's status, whether it accepted
// the activated bundles (OPA's own bundle status says only whether OPA activated them).
const opaPolicyStatus = "orgauthz_policy"

// opaRuntime is OPA's plugin managers as --opa-config configures them: one runs the bundle plugin
// (its store holds what OPA activated), the other the decision_logs and status plugins, with the same
// services, keys and labels. They are two so that OPA's decision-log plugin, which evaluates
// system.log.drop and system.log.mask on its manager's compiler, never runs the rules of a bundle
// that OPA activated but the sidecar refused (one calling http.send, say): the records it gets are
// already masked with the installed policy's mask.
type opaRuntime struct {
	policy  *plugins.Manager // the bundle plugin's; nil without bundles
	report  *plugins.Manager // the decision_logs and status plugins'; nil without either
	logs    *logs.Plugin     // nil without decision_logs
	status  *status.Plugin   // nil without status
	log     *slog.Logger
	refused atomic.Uint64 // bundle updates OPA refused (download, signature, activation)
}

// opaConfig is a checked --opa-config.
type opaConfig struct {
	json    []byte // the configuration as JSON, for plugins.New
	bundles bool   // it has a bundles section: the policy comes from bundles
}

// readOPAConfig reads --opa-config (YAML or JSON, at most maxOPAConfigBytes) and returns it as JSON,
// refusing sections the sidecar does not honour.
func readOPAConfig(file string) (*opaConfig, error) {
	raw, err := confload.ReadFile(file, maxOPAConfigBytes)
	if err != nil {
		return nil, err
	}
	return parseOPAConfig(raw)
}

// parseOPAConfig turns OPA configuration YAML (or JSON) into JSON and checks its sections.
func parseOPAConfig(raw []byte) (*opaConfig, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(js, &sections); err != nil || sections == nil {
		return nil, errors.New("not an object of OPA configuration sections")
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(sections)) {
		if !slices.Contains(opaSections, k) {
			errs = append(errs, fmt.Errorf("section %q is not supported (only %s)", k, strings.Join(opaSections, ", ")))
		}
	}
	if dl, ok := sections["decision_logs"]; ok {
		var keys map[string]json.RawMessage
		_ = json.Unmarshal(dl, &keys) // OPA's own parse reports a malformed section
		for _, k := range []string{"mask_decision", "drop_decision"} {
			if _, ok := keys[k]; ok {
				errs = append(errs, fmt.Errorf("decision_logs.%s is not supported: the sidecar applies the policy's system.log.mask before records reach OPA", k))
			}
		}
	}
	if _, ok := sections["bundles"]; !ok {
		if _, ok := sections["decision_logs"]; !ok {
			errs = append(errs, errors.New("configures neither bundles nor decision_logs"))
		}
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, err := range errs {
			msgs[i] = err.Error()
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	_, bundles := sections["bundles"]
	return &opaConfig{json: js, bundles: bundles}, nil
}

// newOPARuntime builds the plugin managers and their plugins from the JSON configuration. It
// starts nothing and reaches no network: startOPA does, in the background.
func newOPARuntime(c *opaConfig, logger *slog.Logger) (*opaRuntime, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	id := "orgauthz-sidecar-" + host + "-" + decisionlog.NewID()[:8]
	ol := opaLogger{l: logger.With("component", "opa"), info: slog.LevelDebug}
	// decision_logs.console prints each event at info: it is asked for, so it stays at info.
	console := opaLogger{l: logger.With("component", "opa"), info: slog.LevelInfo}
	manager := func() (*plugins.Manager, error) {
		return plugins.New(c.json, id, inmem.New(), plugins.Logger(ol), plugins.ConsoleLogger(console))
	}
	o := &opaRuntime{log: logger}
	m, err := manager()
	if err != nil {
		return nil, err
	}
	services := m.Services()
	bc, err := bundle.NewConfigBuilder().WithBytes(m.Config.Bundles).WithServices(services).WithKeyConfigs(m.PublicKeys()).Parse()
	if err != nil {
		return nil, fmt.Errorf("bundles: %w", err)
	}
	lc, err := logs.NewConfigBuilder().WithBytes(m.Config.DecisionLogs).WithServices(services).WithLogger(ol).Parse()
	if err != nil {
		return nil, fmt.Errorf("decision_logs: %w", err)
	}
	sc, err := status.NewConfigBuilder().WithBytes(m.Config.Status).WithServices(services).Parse()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if c.bundles {
		if bc == nil || len(bc.Bundles) == 0 {
			return nil, errors.New("bundles: no bundle configured")
		}
		o.policy = m
		m.Register(bundle.Name, bundle.New(bc, m))
		if lc != nil || sc != nil {
			if m, err = manager(); err != nil {
				return nil, err
			}
		}
	}
	if lc != nil || sc != nil {
		o.report = m
	}
	if lc != nil {
		o.logs = logs.New(lc, m)
		m.Register(logs.Name, o.logs)
	}
	if sc != nil {
		o.status = status.New(sc, m)
		m.Register(status.Name, o.status)
		if o.policy != nil {
			// As OPA's runtime wires them: every bundle's status goes into the status reports.
			bundle.Lookup(o.policy).RegisterBulkListener(status.Name, o.status.BulkUpdateBundleStatus)
		}
	}
	return o, nil
}

// startOPA starts the plugins (downloads, uploads and status reports run in the background, so an
// unreachable service only delays readiness) and, when bundles are configured, installs each
// activated bundle into the policy Engine through the same checks as a policy directory.
func (s *Server) startOPA(ctx context.Context, o *opaRuntime) error {
	s.metrics.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "orgauthz_sidecar", Name: "bundle_failures_total",
		Help: "Bundle updates OPA refused (download, signature verification or activation failed); the last good policy kept serving.",
	}, func() float64 { return float64(o.refused.Load()) }))
	if o.policy != nil {
		activated := make(chan struct{}, 1)
		bundle.Lookup(o.policy).Register("orgauthz", func(st bundle.Status) {
			// Called with the bundle plugin's lock held: only count and signal. OPA logs the
			// failure itself (ERROR "Bundle load failed: …").
			if st.Code != "" || len(st.Errors) > 0 {
				o.refused.Add(1)
				return
			}
			select {
			case activated <- struct{}{}:
			default:
			}
		})
		go s.installBundles(ctx, o, activated)
	}
	for _, m := range []*plugins.Manager{o.report, o.policy} {
		if m == nil {
			continue
		}
		if err := m.Start(ctx); err != nil {
			return fmt.Errorf("sidecar: --opa-config: start OPA plugins: %w", err)
		}
	}
	return nil
}

// installBundles loads the policy from the manager's store after each bundle activation.
func (s *Server) installBundles(ctx context.Context, o *opaRuntime, activated <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-activated:
		}
		changed, err := s.policy.LoadStore(ctx, o.policy.Store)
		if !changed || ctx.Err() != nil {
			continue
		}
		if err != nil {
			s.log.Error("bundle rejected; the last good policy keeps serving", "err", err)
			o.policyStatus(&plugins.Status{State: plugins.StateErr, Message: err.Error()})
			continue
		}
		s.log.Info("policy loaded from bundles", "bundles", s.policy.Bundles(), "revision", s.policy.Stats().Revision)
		o.policyStatus(&plugins.Status{State: plugins.StateOK})
	}
}

// policyStatus reports whether the sidecar installed the activated bundles, in OPA's status.
func (o *opaRuntime) policyStatus(st *plugins.Status) {
	if o.report != nil {
		o.report.UpdatePluginStatus(opaPolicyStatus, st)
	}
}

// stop stops the plugins; the decision-log plugin uploads what it still holds.
func (o *opaRuntime) stop(ctx context.Context) {
	if o == nil {
		return
	}
	for _, m := range []*plugins.Manager{o.policy, o.report} {
		if m != nil {
			m.Stop(ctx)
		}
	}
}

// forward hands one audit record, already stripped of credentials and masked, to OPA's decision-log
// plugin, which batches, gzips and uploads it. OPA's fields go where OPA puts them; orgauthz's
// (allow, status, reason, route, token, …) go in the event's "custom" object.
func (o *opaRuntime) forward(r *decisionlog.Record) {
	info := &server.Info{
		DecisionID: r.DecisionID,
		Path:       r.Path,
		Timestamp:  r.Timestamp,
		RemoteAddr: r.SourceAddress,
		TraceID:    r.TraceID,
	}
	if r.Input != nil {
		info.Input = &r.Input
	}
	if r.Result != nil {
		info.Results = &r.Result
	}
	if len(r.Bundles) > 0 {
		info.Bundles = make(map[string]server.BundleInfo, len(r.Bundles))
		for name, b := range r.Bundles {
			info.Bundles[name] = server.BundleInfo{Revision: b.Revision}
		}
	}
	info.Custom = customFields(r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := o.logs.Log(ctx, info); err != nil {
		o.log.Error("decision log not handed to OPA", "decision_id", r.DecisionID, "err", err)
	}
}

// customFields are the record's fields OPA's event has no place for, as JSON values.
func customFields(r *decisionlog.Record) map[string]any {
	rest := *r
	rest.DecisionID, rest.Timestamp, rest.Path, rest.SourceAddress, rest.TraceID = "", time.Time{}, "", "", ""
	rest.Input, rest.Result, rest.Bundles, rest.Labels = nil, nil, nil, nil
	b, err := json.Marshal(&rest)
	if err != nil {
		return nil
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&out) != nil {
		return nil
	}
	delete(out, "timestamp")
	delete(out, "decision_id")
	return out
}

// opaLogger writes OPA's plugin logs to the sidecar's log.
type opaLogger struct {
	l      *slog.Logger
	info   slog.Level // the level of OPA's info lines
	fields map[string]any
}

func (o opaLogger) log(level slog.Level, format string, a []any) {
	if !o.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(o.fields))
	for _, k := range slices.Sorted(maps.Keys(o.fields)) {
		attrs = append(attrs, k, o.fields[k])
	}
	o.l.Log(context.Background(), level, fmt.Sprintf(format, a...), attrs...)
}

func (o opaLogger) Debug(f string, a ...any) { o.log(slog.LevelDebug, f, a) }

// Info is debug in the sidecar's log (but for the console logger): OPA reports every status upload
// and log upload at info; the sidecar logs the policy it installs itself.
func (o opaLogger) Info(f string, a ...any)  { o.log(o.info, f, a) }
func (o opaLogger) Warn(f string, a ...any)  { o.log(slog.LevelWarn, f, a) }
func (o opaLogger) Error(f string, a ...any) { o.log(slog.LevelError, f, a) }

func (o opaLogger) WithFields(f map[string]any) logging.Logger {
	out := opaLogger{l: o.l, info: o.info, fields: maps.Clone(o.fields)}
	if out.fields == nil {
		out.fields = map[string]any{}
	}
	maps.Copy(out.fields, f)
	return out
}

// GetLevel reports the most verbose level the sidecar's log takes; SetLevel is the sidecar's
// --log-level's business and does nothing.
func (o opaLogger) GetLevel() logging.Level {
	ctx := context.Background()
	switch {
	case o.l.Enabled(ctx, slog.LevelDebug):
		return logging.Debug
	case o.l.Enabled(ctx, o.info):
		return logging.Info
	case o.l.Enabled(ctx, slog.LevelWarn):
		return logging.Warn
	}
	return logging.Error
}

func (o opaLogger) SetLevel(logging.Level) {}
