package revocation

import "time"

// The rules, shared by webhooks and mgmtproxy's operations: which tokens a change that takes power
// away makes stale.

// memberChanged: a user removed from an organization, or their organization roles replaced or cut.
// Their tokens for that organization, and their global API tokens, into which Logto folds the API
// permissions of their organization roles.
func memberChanged(org, user string, at time.Time) []Watermark {
	nb := NotBefore(at)
	return []Watermark{{Org: org, User: user, Kinds: OrgKinds, NotBefore: nb}, {User: user, Kinds: GlobalAPI, NotBefore: nb}}
}

// organizationChanged: an organization deleted, or its members replaced without naming them. Every
// token for that organization. (Global API tokens of its unnamed members keep folded-in API
// permissions until they expire; the default policy honours only org:create on those, which should
// come from a global role.)
func organizationChanged(org string, at time.Time) []Watermark {
	return []Watermark{{Org: org, Kinds: OrgKinds, NotBefore: NotBefore(at)}}
}

// userChanged: a user suspended or deleted. Every token of that user.
func userChanged(user string, at time.Time) []Watermark {
	return []Watermark{{User: user, Kinds: AllKinds, NotBefore: NotBefore(at)}}
}

// organizationRolesChanged: an organization role's permissions cut or the role deleted. Organization
// roles are tenant-wide templates and Logto names neither the organizations nor the holders, so
// every token with an organization context.
func organizationRolesChanged(at time.Time) []Watermark {
	return []Watermark{{Kinds: OrgKinds, NotBefore: NotBefore(at)}}
}

// globalRolesChanged: a global role's permissions cut or the role deleted. Logto names no holders, so
// every global API and admin token.
func globalRolesChanged(at time.Time) []Watermark {
	return []Watermark{{Kinds: GlobalKinds, NotBefore: NotBefore(at)}}
}

// OperationWatermarks returns the watermarks that a successful mgmtproxy operation implies, for
// mgmtproxy to Revoke before it answers its client. route is the decision's route template
// ("DELETE /api/organizations/{orgId}/users/{userId}"), pathIDs the values of its placeholders by
// name (orgId, userId, roleId), bodyIDs the organization IDs a bulk delete removed, and at the time
// Logto answered. ok is false for a route this package does not know: mgmtproxy's tests check that
// every operation it serves is known, so a new one cannot silently skip revocation.
func OperationWatermarks(route string, pathIDs map[string]string, bodyIDs []string, at time.Time) (ws []Watermark, ok bool) {
	org, user := pathIDs["orgId"], pathIDs["userId"]
	switch route {
	case "POST /api/organizations", // creates; the creator gains power
		"GET /api/organizations",
		"GET /api/organizations/{orgId}",
		"PATCH /api/organizations/{orgId}", // name and description
		"GET /api/organizations/{orgId}/users",
		"POST /api/organizations/{orgId}/users", // adds members
		"GET /api/organizations/{orgId}/users/{userId}/roles",
		"POST /api/organizations/{orgId}/users/{userId}/roles", // adds roles
		"GET /api/users/{userId}/organizations",
		"POST /bulk/organizations":
		return nil, true
	case "DELETE /api/organizations/{orgId}":
		return organizationChanged(org, at), true
	case "DELETE /api/organizations/{orgId}/users/{userId}",
		"PUT /api/organizations/{orgId}/users/{userId}/roles",
		"DELETE /api/organizations/{orgId}/users/{userId}/roles/{roleId}":
		return memberChanged(org, user, at), true
	case "POST /bulk/organizations/delete":
		for _, id := range bodyIDs {
			ws = append(ws, organizationChanged(id, at)...)
		}
		return ws, true
	}
	return nil, false
}
