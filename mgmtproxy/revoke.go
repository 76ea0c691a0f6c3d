package mgmtproxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/revocation"
)

// The refusals of the shared decision claim (--revocation-store).
var (
	refuseReplayed    = refusal{status: http.StatusForbidden, reason: string(decision.ReasonReplayed), message: "the decision was used already"}
	refuseClaimsFull  = refusal{status: http.StatusForbidden, reason: string(decision.ReasonReplayFull), message: "too many live decisions to remember"}
	refuseUnavailable = refusal{status: http.StatusServiceUnavailable, reason: "replay_store_unavailable", message: "the revocation store cannot record the decision's use; retry"}
)

// maxDecisionID bounds a jti the store remembers (the sidecar's are 22 characters).
const maxDecisionID = 128

// claim makes the decision single-use across replicas and restarts through the revocation store, on
// top of the Verifier's in-process cache. Redis unreachable refuses the request: fail closed.
func (p *Proxy) claim(r *http.Request, c *decision.Claims) *refusal {
	if len(c.ID) > maxDecisionID {
		return &refusal{status: http.StatusForbidden, reason: string(decision.ReasonMalformed), message: "the decision ID is too long"}
	}
	err := p.store.ClaimDecision(r.Context(), c.ID, time.Unix(c.ExpiresAt, 0))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, revocation.ErrReplayed):
		return &refusal{status: refuseReplayed.status, reason: refuseReplayed.reason, message: refuseReplayed.message, cause: err}
	case errors.Is(err, revocation.ErrUnavailable):
		p.log.Error("revocation store unavailable: refusing the request", "decision_id", c.ID, "err", err)
		return &refusal{status: refuseUnavailable.status, reason: refuseUnavailable.reason, message: refuseUnavailable.message, cause: err}
	}
	return &refusal{status: refuseClaimsFull.status, reason: refuseClaimsFull.reason, message: refuseClaimsFull.message, cause: err}
}

// revoke records the watermarks of a change Logto just made (deleted: the organizations a bulk delete
// removed) before the client is answered, and tells the --revocation-notify sidecars. A failure is
// logged and counted, and the client still gets its answer: the change happened.
func (p *Proxy) revoke(ctx context.Context, req *request, deleted []string) {
	at := time.Now()
	ws, _ := revocation.OperationWatermarks(req.op.route, req.ids, deleted, at)
	if len(ws) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx) // a client gone away must not skip the revocation
	if err := p.store.Revoke(ctx, ws...); err != nil {
		p.metrics.revocationFailures.WithLabelValues("store").Inc()
		p.log.Error("revocation not recorded in the store", "route", req.op.route, "watermarks", len(ws), "err", err)
	}
	if p.notify == nil {
		return
	}
	nctx, cancel := context.WithTimeout(ctx, notifyTimeout*time.Duration(len(p.notify.URLs)))
	defer cancel()
	if err := p.notify.Notify(nctx, ws, at); err != nil {
		p.metrics.revocationFailures.WithLabelValues("notify").Inc()
		p.log.Error("revocation not delivered to every sidecar", "route", req.op.route, "watermarks", len(ws), "err", err)
	}
}
