package mgmtproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/orgauthz/orgauthz/decisionlog"
)

// exchange is what one request did at Logto, for its audit record: every Management API call, and the
// ids it changed. upstream.RoundTrip adds the calls (bulk items run concurrently, hence the lock).
type exchange struct {
	req *request

	mu      sync.Mutex
	calls   []decisionlog.Call
	changes decisionlog.Changes
}

type exchangeKey struct{}

// exchangeOf returns the exchange ServeHTTP put in ctx, or nil (a token fetch for /readyz).
func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

func (x *exchange) call(c decisionlog.Call) {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.calls = append(x.calls, c)
	x.mu.Unlock()
}

func (x *exchange) change(f func(*decisionlog.Changes)) {
	if x == nil {
		return
	}
	x.mu.Lock()
	f(&x.changes)
	x.mu.Unlock()
}

// forwarded records what a forwarded operation changed, once Logto answered it with 2xx: the ids of
// its path and those its body names (userIds, organizationRoleNames, organizationRoleIds). created is
// Logto's answer to a creation, for the new organization's id.
func (x *exchange) forwarded(req *request, created []byte) {
	if req.op.method == http.MethodGet {
		return
	}
	var body struct {
		UserIDs   []string `json:"userIds"`
		RoleNames []string `json:"organizationRoleNames"`
		RoleIDs   []string `json:"organizationRoleIds"`
	}
	json.Unmarshal(req.body, &body) // bounded by approve; policy-checked or Logto-accepted
	x.change(func(c *decisionlog.Changes) {
		c.OrganizationID = req.ids["orgId"]
		if req.op.action == createOrg {
			var org struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(created, &org) == nil && isID(org.ID) {
				c.OrganizationID, c.Created = org.ID, true
			}
		}
		c.UserIDs = idsOnly(append(body.UserIDs, req.ids["userId"]))
		c.RoleNames = boundedStrings(body.RoleNames)
		c.RoleIDs = idsOnly(append(body.RoleIDs, req.ids["roleId"]))
	})
}

// maxAuditList bounds a list of ids or names in a record.
const maxAuditList = 100

func idsOnly(in []string) []string {
	var out []string
	for _, s := range in {
		if isID(s) && len(out) < maxAuditList {
			out = append(out, s)
		}
	}
	return out
}

func boundedStrings(in []string) []string {
	var out []string
	for _, s := range in {
		if len(out) < maxAuditList {
			out = append(out, truncate(s, 128))
		}
	}
	return out
}

// audit submits the request's record: never a token, a decision, a secret or a body.
func (p *Proxy) audit(r *http.Request, rec *recorder, x *exchange, start time.Time, status int) {
	if !p.auditLog.Enabled() {
		return
	}
	req := x.req
	out := &decisionlog.Record{
		Timestamp:   start,
		Method:      truncate(r.Method, 32),
		RequestPath: req.path,
		Allow:       req.claims != nil && req.refusal == nil,
		Status:      status,
		Reason:      rec.reason,
		Metrics:     &decisionlog.Metrics{Request: time.Since(start).Nanoseconds()},
		RequestID:   r.Header.Get("X-Request-Id"), // the Logger keeps it only when short and safe
	}
	if out.Reason == "" {
		out.Reason = "allowed"
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		out.SourceAddress = host
	}
	if req.op != nil {
		out.Route = req.op.route
	}
	if c := req.claims; c != nil {
		out.DecisionID = c.ID
		out.Token = &decisionlog.Token{Kind: c.Kind, Subject: c.Subject, IsApp: c.App, OrganizationID: c.Org}
		if c.App {
			out.Token.ClientID = c.Subject
		}
	}
	x.mu.Lock()
	out.Calls = x.calls
	if ch := x.changes; ch.OrganizationID != "" || len(ch.UserIDs) > 0 || len(ch.RoleNames) > 0 || len(ch.RoleIDs) > 0 || len(ch.Items) > 0 {
		out.Changes = &ch
	}
	x.mu.Unlock()
	p.auditLog.Submit(out)
}

// bulkItems records each bulk item's outcome.
func (x *exchange) bulkItems(results []bulkResult) {
	items := make([]decisionlog.Item, len(results))
	for i, res := range results {
		items[i] = decisionlog.Item{Index: res.Index, Status: res.Status, ID: res.ID}
		var e struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(res.Error, &e) == nil && len(e.Code) <= 100 && !strings.ContainsAny(e.Code, "\r\n") {
			items[i].Error = e.Code
		}
	}
	x.change(func(c *decisionlog.Changes) { c.Items = items })
}

// peekBody reads an answer body (bounded) and puts it back for the client.
func peekBody(resp *http.Response) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBytes+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(raw) > maxUpstreamBytes {
		return nil, fmt.Errorf("%w: answer larger than %d bytes", errBadUpstream, maxUpstreamBytes)
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return raw, nil
}
