package revocation

import (
	"slices"
	"testing"
	"time"
)

// Every route of DESIGN's table (mgmtproxy's fixed operation list) is known, and each change that
// takes power away names the tokens it makes stale.
func TestOperationWatermarks(t *testing.T) {
	at := time.Unix(testNow, 0)
	nb := NotBefore(at)
	ids := map[string]string{"orgId": "o1", "userId": "u1", "roleId": "r1"}
	member := []Watermark{{Org: "o1", User: "u1", Kinds: OrgKinds, NotBefore: nb}, {User: "u1", Kinds: GlobalAPI, NotBefore: nb}}
	tests := []struct {
		route   string
		bodyIDs []string
		want    []Watermark
	}{
		{"POST /api/organizations", nil, nil},
		{"GET /api/organizations", nil, nil},
		{"GET /api/organizations/{orgId}", nil, nil},
		{"PATCH /api/organizations/{orgId}", nil, nil},
		{"DELETE /api/organizations/{orgId}", nil, []Watermark{{Org: "o1", Kinds: OrgKinds, NotBefore: nb}}},
		{"GET /api/organizations/{orgId}/users", nil, nil},
		{"POST /api/organizations/{orgId}/users", nil, nil},
		{"DELETE /api/organizations/{orgId}/users/{userId}", nil, member},
		{"GET /api/organizations/{orgId}/users/{userId}/roles", nil, nil},
		{"POST /api/organizations/{orgId}/users/{userId}/roles", nil, nil},
		{"PUT /api/organizations/{orgId}/users/{userId}/roles", nil, member},
		{"DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}", nil, member},
		{"GET /api/users/{userId}/organizations", nil, nil},
		{"POST /bulk/organizations", nil, nil},
		{"POST /bulk/organizations/delete", []string{"o2", "o3"},
			[]Watermark{{Org: "o2", Kinds: OrgKinds, NotBefore: nb}, {Org: "o3", Kinds: OrgKinds, NotBefore: nb}}},
	}
	for _, tc := range tests {
		got, ok := OperationWatermarks(tc.route, ids, tc.bodyIDs, at)
		if !ok || !slices.Equal(got, tc.want) {
			t.Errorf("OperationWatermarks(%q) = %+v, %v; want %+v, true", tc.route, got, ok, tc.want)
		}
	}
	if _, ok := OperationWatermarks("DELETE /api/users/{userId}", ids, nil, at); ok {
		t.Error("an unknown route is reported known")
	}
}
