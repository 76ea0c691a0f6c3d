package decisionlog_test

import (
	"os"
	"time"

	"github.com/orgauthz/orgauthz/decisionlog"
)

// The sidecar's side: one id for the record and the signed decision's jti, the record submitted after
// the answer is known. Submit never waits; Close at shutdown writes what is queued.
func Example() {
	l := decisionlog.New(os.Stdout, decisionlog.Options{Service: "sidecar"})
	defer l.Close()

	id := "qR3vT0d6bG1zZUtleUlEMQ" // decisionlog.NewID() in the sidecar; also decision.Claims.ID before Sign
	l.Submit(&decisionlog.Record{
		DecisionID: id, Timestamp: time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC), Path: "orgauthz/decision",
		Method: "POST", RequestPath: "/api/organizations/o1/users",
		Allow: false, Status: 403, Reason: "missing_scope", RequiredScopes: []string{"member:add"},
		Token:     &decisionlog.Token{Kind: "organization", Subject: "u1", ClientID: "app1", OrganizationID: "o1", Scopes: []string{"org:read"}},
		RequestID: "req-42", // the client's X-Request-Id, never the decision id
	})
	// Output:
	// {"decision_id":"qR3vT0d6bG1zZUtleUlEMQ","timestamp":"2026-12-04T15:00:00Z","path":"orgauthz/decision","labels":{"service":"sidecar"},"method":"POST","request_path":"/api/organizations/o1/users","allow":false,"status":403,"reason":"missing_scope","required_scopes":["member:add"],"token":{"kind":"organization","subject":"u1","client_id":"app1","is_app":false,"organization_id":"o1","scopes":["org:read"]},"request_id":"req-42"}
}
