package mgmtproxy

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/orgauthz/orgauthz/decision"
)

// TestOperationsAreThePolicyRoutes holds mgmtproxy's operation list to the route table security teams
// edit (policies/orgauthz/data.json), both ways: every policy row is an operation mgmtproxy performs
// with the same template and body check (decision.RouteDrift, what `sidecar --check` warns about),
// and every operation has a policy row. A route added to one and not the other — allowed by the
// policy, then refused here with operation_not_allowed, or performed here with no rule — fails.
func TestOperationsAreThePolicyRoutes(t *testing.T) {
	raw, err := os.ReadFile("../policies/orgauthz/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Routes []any `json:"routes"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	policy := decision.PolicyRoutes(data.Routes)
	if len(policy) != len(data.Routes) {
		t.Fatalf("read %d of the %d rows of data.json", len(policy), len(data.Routes))
	}
	for _, w := range decision.RouteDrift(policy) {
		t.Error(w)
	}
	for _, op := range operations {
		if !slices.ContainsFunc(policy, func(r decision.Route) bool { return r.String() == op.route }) {
			t.Errorf("mgmtproxy performs %q, the policy's route table has no row for it", op.route)
		}
	}
	// The operations are decision.Operations, in order, with nothing lost on the way.
	want := decision.Operations()
	if len(operations) != len(want) {
		t.Fatalf("%d operations, decision.Operations has %d", len(operations), len(want))
	}
	for i, op := range operations {
		if op.route != want[i].String() || op.bodyChecked != want[i].BodyChecked {
			t.Errorf("operation %d = %q body %v, want %v", i, op.route, op.bodyChecked, want[i])
		}
	}
}
