package mgmtproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/orgauthz/orgauthz/decision"
	"github.com/orgauthz/orgauthz/decisionlog"
)

// createOrganization serves POST /api/organizations. An admin or an app only creates. A user also
// becomes a member with the creator roles, so they can manage what they created; if either step fails
// the organization is deleted again and the caller gets the error.
func (p *Proxy) createOrganization(w http.ResponseWriter, r *http.Request, req *request) {
	c := req.claims
	if !createdByUser(c) {
		p.forward(w, r, req)
		return
	}
	// The steps after the creation run to their end even if the caller goes away: an organization
	// must not be left half set up.
	ctx := context.WithoutCancel(r.Context())

	created, err := p.call(r.Context(), http.MethodPost, "/api/organizations", req.body)
	if err != nil {
		p.proxyError(w, r, err)
		return
	}
	if created.status != http.StatusCreated {
		passReply(w, created)
		return
	}
	var org struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(created.body, &org); err != nil || !isID(org.ID) {
		p.log.Error("created an organization but cannot read its ID; it may need deleting by hand")
		writeError(w, http.StatusBadGateway, "upstream_bad_response", "Logto created the organization but its answer could not be read")
		return
	}

	x := exchangeOf(r.Context())
	x.change(func(ch *decisionlog.Changes) {
		ch.OrganizationID, ch.Created = org.ID, true
		ch.UserIDs, ch.RoleNames = []string{c.Subject}, boundedStrings(p.cfg.CreatorRoles)
	})
	step, failed, err := p.setUpCreator(ctx, org.ID, c.Subject)
	if step == "" {
		passReply(w, created)
		return
	}
	why := describeFailure(failed, err)
	undo, undoErr := p.call(ctx, http.MethodDelete, "/api/organizations/"+org.ID, nil)
	if undoErr == nil && (undo.status == http.StatusNoContent || undo.status == http.StatusNotFound) {
		x.change(func(ch *decisionlog.Changes) { ch.RolledBack = true })
		p.log.Warn("organization setup failed; organization deleted", "organization_id", org.ID, "step", step, "cause", why)
		writeJSON(w, http.StatusBadGateway, setupError{
			Code:    "organization_setup_failed",
			Message: fmt.Sprintf("mgmtproxy: %s failed (%s); the organization was deleted", step, why),
		})
		return
	}
	p.metrics.undoFailures.Inc()
	x.change(func(ch *decisionlog.Changes) { ch.UndoFailed = true })
	p.log.Error("organization setup failed and deleting it failed too: delete it by hand",
		"organization_id", org.ID, "step", step, "cause", why, "delete", describeFailure(undo, undoErr))
	writeJSON(w, http.StatusBadGateway, setupError{
		Code: "organization_setup_failed_undo_failed",
		Message: fmt.Sprintf("mgmtproxy: %s failed (%s) and deleting the organization failed too (%s)",
			step, why, describeFailure(undo, undoErr)),
		OrganizationID: org.ID,
	})
}

// createdByUser reports whether c creates an organization for a user, who then becomes its member:
// a user token of any kind but admin. approve checks that such a subject is a user ID.
func createdByUser(c *decision.Claims) bool { return !c.App && c.Kind != decision.KindAdmin }

// setUpCreator adds the creator to the organization with the creator roles. It returns the failed
// step's name and its answer or error, or "" when both steps succeeded.
func (p *Proxy) setUpCreator(ctx context.Context, orgID, userID string) (string, *reply, error) {
	add, _ := json.Marshal(map[string][]string{"userIds": {userID}})
	if rep, err := p.call(ctx, http.MethodPost, "/api/organizations/"+orgID+"/users", add); err != nil || rep.status != http.StatusCreated {
		return "adding the creator", rep, err
	}
	roles, _ := json.Marshal(map[string][]string{"organizationRoleNames": p.cfg.CreatorRoles})
	path := "/api/organizations/" + orgID + "/users/" + url.PathEscape(userID) + "/roles"
	if rep, err := p.call(ctx, http.MethodPost, path, roles); err != nil || rep.status != http.StatusCreated {
		return "assigning the creator roles", rep, err
	}
	return "", nil, nil
}

// setupError is the body of a failed organization setup.
type setupError struct {
	Code           string `json:"code"`
	Message        string `json:"message"`
	OrganizationID string `json:"organizationId,omitempty"` // set when the organization is left behind
}

// describeFailure says in a few words what Logto answered, or why it did not; it never quotes a body
// beyond Logto's error code.
func describeFailure(rep *reply, err error) string {
	if err != nil {
		_, code, _ := classify(err)
		return code
	}
	if rep == nil {
		return "no answer"
	}
	var body struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(rep.body, &body) == nil && body.Code != "" && len(body.Code) <= 100 && !strings.ContainsAny(body.Code, "\r\n") {
		return fmt.Sprintf("Logto answered %d %s", rep.status, body.Code)
	}
	return fmt.Sprintf("Logto answered %d", rep.status)
}
