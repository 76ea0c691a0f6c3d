package sidecar

import (
	"cmp"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
	"github.com/orgauthz/orgauthz/internal/version"
	"github.com/orgauthz/orgauthz/sidecar/internal/policy"
)

// auditPath is the record's path: the decision the policy was asked for.
var auditPath = strings.ReplaceAll(strings.TrimPrefix(policy.DefaultQuery, "data."), ".", "/")

// evaluation is what the policy saw and said for one request, kept for the audit record.
type evaluation struct {
	input    ast.Value
	decision policy.Decision
	duration time.Duration
}

// auditState is the Server's audit stream: the Logger (nil for "off") and the policy revision's
// bundles map, shared by every record of that revision.
type auditState struct {
	log     *decisionlog.Logger
	bundles atomic.Pointer[revisionBundles]
}

type revisionBundles struct {
	revision string
	bundles  map[string]decisionlog.Bundle
}

// openAudit starts the --decision-log sink. The policy directory's system.log.mask comes with
// each decision (policy.Decision.Mask), compiled and swapped with the policy.
func (s *Server) openAudit() error {
	opts := decisionlog.Options{Service: "sidecar", Version: version.String(), Log: s.log}
	if s.opa != nil && s.opa.logs != nil {
		// OPA's decision-log plugin gets each record as written: credentials removed, mask applied.
		opts.Forward = s.opa.forward
	}
	var l *decisionlog.Logger
	var err error
	if s.cfg.DecisionLog == decisionlog.SinkOff && opts.Forward != nil {
		l = decisionlog.New(io.Discard, opts)
	} else if l, err = decisionlog.Open(s.cfg.DecisionLog, opts); err != nil {
		return err
	}
	if l == nil {
		return nil
	}
	s.auditState.log = l
	s.metrics.registry.MustRegister(l.Collectors()...)
	return nil
}

// bundles names a policy revision as OPA's decision log does: the deciding one, else the serving one.
func (s *Server) bundles(rev string) map[string]decisionlog.Bundle {
	if rev == "" {
		if b := s.policy.Bundles(); b != nil {
			return b
		}
		rev = s.policy.Stats().Revision
	}
	if rev == "" {
		return nil
	}
	if b := s.auditState.bundles.Load(); b != nil && b.revision == rev {
		return b.bundles
	}
	b := &revisionBundles{rev, map[string]decisionlog.Bundle{"policies": {Revision: rev}}}
	s.auditState.bundles.Store(b)
	return b.bundles
}

// audit submits the audit record of one decision. The input goes as the policy saw it; the
// Logger removes credentials and applies the mask on its own goroutine.
func (s *Server) audit(raw *rawRequest, req *request, v *verdict, latency time.Duration) {
	l := s.auditState.log
	if !l.Enabled() {
		return
	}
	r := &decisionlog.Record{
		DecisionID:     raw.id,
		Timestamp:      time.Now(),
		Path:           auditPath,
		Allow:          v.allowed(),
		Status:         v.status,
		Reason:         v.reason,
		Route:          v.route,
		RequiredScopes: v.scopes,
		SourceAddress:  raw.source,
		TraceID:        cmp.Or(raw.traceID, spanTraceID(context.Background(), raw)),
		RequestID:      raw.requestID,
		Metrics:        &decisionlog.Metrics{Check: latency.Nanoseconds()},
	}
	if decision.ValidMethod(raw.method) {
		r.Method = raw.method
	}
	if req != nil {
		r.RequestPath = req.path
	}
	rev := ""
	if e := v.eval; e != nil {
		rev, r.Mask, r.Bundles = e.decision.Revision, e.decision.Mask, e.decision.Bundles
		r.Input = e.input
		r.Metrics.PolicyEval = e.duration.Nanoseconds()
		if r.Route == "" {
			r.Route = e.decision.Route
		}
		if v.status != 503 {
			r.Result = decisionResult(e.decision)
		}
	}
	if r.Bundles == nil {
		r.Bundles = s.bundles(rev)
	}
	if c := v.claims; c != nil {
		r.Token = &decisionlog.Token{Kind: string(c.Kind), Subject: c.Subject, ClientID: c.ClientID,
			IsApp: c.IsApp, OrganizationID: c.OrganizationID, Scopes: c.Scopes}
	}
	l.Submit(r)
}

// decisionResult is the policy's decision in the policy contract's shape.
func decisionResult(d policy.Decision) map[string]any {
	out := map[string]any{"allow": d.Allow, "reason": d.Reason}
	if d.Route != "" {
		out["route"] = d.Route
	}
	if d.Status != 0 {
		out["status"] = d.Status
	}
	if len(d.RequiredScopes) > 0 {
		out["required_scopes"] = d.RequiredScopes
	}
	if len(d.Headers) > 0 {
		out["headers"] = d.Headers
	}
	return out
}
