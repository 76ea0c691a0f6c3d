package mgmtproxy

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

// TestOperationsAreThePolicyRoutes holds mgmtproxy's operation list to the route table security teams
// edit (policies/orgauthz/data.json): the same METHOD and template on both sides, and a row whose
// policy reads the body (body_keys_within, role_names_within) is exactly an operation whose decision
// must bind the body. A route added to one and not the other — allowed by the policy, then refused
// here with operation_not_allowed, or performed here with no rule — fails this test.
func TestOperationsAreThePolicyRoutes(t *testing.T) {
	raw, err := os.ReadFile("../policies/orgauthz/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Routes []map[string]any `json:"routes"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	readsBody := func(row map[string]any) bool {
		for _, col := range row {
			if m, ok := col.(map[string]any); ok {
				if _, ok := m["body_keys_within"]; ok {
					return true
				}
				if _, ok := m["role_names_within"]; ok {
					return true
				}
			}
		}
		return false
	}
	var policyRoutes []string
	for _, row := range data.Routes {
		route := row["method"].(string) + " " + row["path"].(string)
		policyRoutes = append(policyRoutes, route)
		i := slices.IndexFunc(operations, func(op operation) bool { return op.route == route })
		if i < 0 {
			t.Errorf("the policy routes %q, mgmtproxy has no such operation (it would answer operation_not_allowed)", route)
			continue
		}
		if got, want := operations[i].bodyChecked, readsBody(row); got != want {
			t.Errorf("%s: mgmtproxy bodyChecked = %v, the policy reads the body = %v", route, got, want)
		}
	}
	for _, op := range operations {
		if !slices.Contains(policyRoutes, op.route) {
			t.Errorf("mgmtproxy performs %q, the policy's route table has no row for it", op.route)
		}
	}
}
