package mgmtproxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/orgauthz/orgauthz/decision"
)

// request is what approve let through: the operation, the decision, and what may go to Logto.
type request struct {
	op     *operation
	claims *decision.Claims
	path   string
	ids    map[string]string
	query  url.Values
	body   []byte
	// refusal is why approve refused the request, for the log line.
	refusal *refusal
}

// refusal is an answer mgmtproxy gives before calling Logto: the status, the reason code of the body
// and of the metrics, and a message. cause, when set, is logged (never sent): it names the kid of a
// refused decision.
type refusal struct {
	status  int
	reason  string
	message string
	cause   error
}

// The refusals approve gives besides the decision's own (decision_*, see decisionRefusal).
var (
	refuseMethod       = refusal{status: http.StatusForbidden, reason: "operation_not_allowed", message: "method not allowed"}
	refuseOperation    = refusal{status: http.StatusForbidden, reason: "operation_not_allowed", message: "mgmtproxy does not perform this operation"}
	refusePath         = refusal{status: http.StatusForbidden, reason: "path_not_canonical", message: "the path is not canonical"}
	refuseTwoDecisions = refusal{status: http.StatusForbidden, reason: string(decision.ReasonMalformed), message: "more than one decision"}
	refuseKind         = refusal{status: http.StatusForbidden, reason: "decision_kind_unknown", message: "the decision names no known token kind"}
	refuseRoute        = refusal{status: http.StatusForbidden, reason: "decision_route_mismatch", message: "the decision is for another route"}
	refuseOrg          = refusal{status: http.StatusForbidden, reason: "decision_org_mismatch", message: "the decision is for another organization"}
	refuseAdminOnly    = refusal{status: http.StatusForbidden, reason: "admin_only", message: "bulk operations need an admin token"}
	refuseSubject      = refusal{status: http.StatusForbidden, reason: "bad_subject", message: "the decision's subject is not a user ID"}
	refuseQuery        = refusal{status: http.StatusBadRequest, reason: "bad_request", message: "the query string is malformed"}
	refuseQueryValue   = refusal{status: http.StatusBadRequest, reason: "bad_request", message: fmt.Sprintf("a query parameter is longer than %d bytes", maxQueryValue)}
	refuseBodyRead     = refusal{status: http.StatusBadRequest, reason: "bad_request", message: "could not read the body"}
	refuseBodyTooLarge = refusal{status: http.StatusRequestEntityTooLarge, reason: "body_too_large", message: fmt.Sprintf("the body exceeds %d bytes", maxBodyBytes)}
)

// decisionRefusal is the refusal of a decision that decision.Verify or CheckBody rejected: 403 with
// the decision's reason; the error (with the kid) goes to the log only.
func decisionRefusal(err error, message string) *refusal {
	return &refusal{status: http.StatusForbidden, reason: string(decision.ReasonOf(err)), message: message, cause: err}
}

// kid returns the kid a refused decision named, or "".
func (r *refusal) kid() string {
	var e *decision.Error
	if errors.As(r.cause, &e) {
		return e.KeyID
	}
	return ""
}

// approve fills req or returns why the request is refused. Nothing reaches Logto before it returns nil.
func (p *Proxy) approve(r *http.Request, req *request) *refusal {
	if !decision.ValidMethod(r.Method) {
		return &refuseMethod
	}
	path, segs, ok := canonicalPath(r)
	if !ok {
		return &refusePath
	}
	req.path = path
	vals := r.Header.Values(decision.Header)
	token := ""
	if len(vals) > 1 {
		return &refuseTwoDecisions
	} else if len(vals) == 1 {
		token = vals[0]
	}
	claims, err := p.verifier.Load().Verify(token, r.Method, path)
	if err != nil {
		return decisionRefusal(err, "no valid decision for this request")
	}
	req.claims = claims
	switch claims.Kind {
	case decision.KindOrganization, decision.KindOrganizationAPI, decision.KindGlobalAPI, decision.KindAdmin:
	default:
		return &refuseKind
	}
	op, ids := match(r.Method, segs)
	if op == nil {
		return &refuseOperation
	}
	if claims.Route != op.route {
		return &refuseRoute
	}
	req.op, req.ids = op, ids
	if org, ok := ids["orgId"]; ok && claims.Org != org && (claims.Org != "" || claims.Kind == decision.KindOrganization || claims.Kind == decision.KindOrganizationAPI) {
		return &refuseOrg
	}
	if (op.action == bulkCreate || op.action == bulkDelete) && claims.Kind != decision.KindAdmin {
		return &refuseAdminOnly
	}
	if op.action == createOrg && createdByUser(claims) && !isID(claims.Subject) {
		return &refuseSubject
	}

	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &refuseQuery
	}
	req.query = url.Values{}
	for _, k := range op.query {
		if v := q.Get(k); v != "" {
			if len(v) > maxQueryValue {
				return &refuseQueryValue
			}
			req.query.Set(k, v)
		}
	}

	// The body goes to Logto for these methods; for any method, a decision that binds one has it checked.
	sends := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
	if sends || claims.Body != "" || op.bodyChecked {
		if r.ContentLength > maxBodyBytes {
			return &refuseBodyTooLarge
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return &refuseBodyRead
		}
		if len(body) > maxBodyBytes {
			return &refuseBodyTooLarge
		}
		if err := claims.CheckBody(body, op.bodyChecked); err != nil {
			return decisionRefusal(err, "the decision is not for this request body")
		}
		if sends {
			req.body = body // exactly the bytes checked
		}
	}
	return p.claim(r, claims)
}
