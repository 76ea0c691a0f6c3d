package fakelogto

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// The seeding methods below set up the tenant directly, without the Management API. An empty
// id makes the emulator generate one; the id used is returned. They panic on misuse (a
// malformed or duplicate ID, an unknown name), like regexp.MustCompile: they are test setup.

// AddM2MApp registers a machine-to-machine app that may call the Management API (it holds a
// role with the "all" scope) and create subject tokens.
func (s *Server) AddM2MApp(id, secret string) string {
	return s.addApp(id, secret, appM2M, true)
}

// AddM2MAppWithoutRole registers a machine-to-machine app that holds no Management API role,
// as an operator may forget to grant it: like Logto, the emulator still issues it a Management
// API token (200, no scope claim), and every Management API call with that token answers 403
// auth.forbidden (more/m2m-no-role-real).
func (s *Server) AddM2MAppWithoutRole(id, secret string) string {
	return s.addApp(id, secret, appM2M, false)
}

// AddTrafficApp registers a traditional web app allowed to use token exchange (the app that
// turns subject tokens into user access tokens).
func (s *Server) AddTrafficApp(id, secret string) string {
	return s.addApp(id, secret, appTraditional, false)
}

func (s *Server) addApp(id, secret, typ string, mgmt bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.pickID("application", id, longIDLen, func(id string) bool { return s.t.apps[id] != nil })
	if secret == "" {
		panic("fakelogto: an application needs a secret")
	}
	custom := []byte("{}")
	if typ == appTraditional {
		custom = []byte(`{"allowTokenExchange":true}`)
	}
	s.t.apps[id] = &application{
		id: id, secret: secret, typ: typ, name: id, createdAt: s.now().UnixMilli(), seq: s.t.next(),
		oidcClientMetadata: []byte(`{"redirectUris":[],"postLogoutRedirectUris":[]}`), customClientMetadata: custom,
		tokenExchange: typ == appTraditional, managementAPI: mgmt,
	}
	return id
}

// pickID checks a caller-chosen ID or generates one of n characters; s.mu is held.
func (s *Server) pickID(kind, id string, n int, taken func(string) bool) string {
	if id == "" {
		for id = newID(n); taken(id); id = newID(n) {
		}
		return id
	}
	checkID(kind, id)
	if taken(id) {
		panic(fmt.Sprintf("fakelogto: %s %q already exists", kind, id))
	}
	return id
}

// UserOption sets optional user profile fields.
type UserOption func(*user)

// WithName sets the user's display name.
func WithName(name string) UserOption { return func(u *user) { u.name = &name } }

// WithEmail sets the user's primary email.
func WithEmail(email string) UserOption { return func(u *user) { u.primaryEmail = &email } }

// AddUser adds a user.
func (s *Server) AddUser(id, username string, opts ...UserOption) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.pickID("user", id, shortIDLen, func(id string) bool { return s.t.users[id] != nil })
	if username != "" && s.t.userByName(username) != nil {
		panic(fmt.Sprintf("fakelogto: username %q already exists", username))
	}
	now := s.now().UnixMilli()
	u := &user{id: id, username: username, createdAt: now, updatedAt: now}
	for _, o := range opts {
		o(u)
	}
	s.t.users[id] = u
	return id
}

// AddOrganization adds an organization.
func (s *Server) AddOrganization(id, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addOrgLocked(id, name).id
}

func (s *Server) addOrgLocked(id, name string) *organization {
	id = s.pickID("organization", id, shortIDLen, func(id string) bool { return s.t.orgs[id] != nil })
	o := &organization{
		id: id, name: name,
		customData: []byte("{}"), color: []byte("{}"), branding: []byte("{}"),
		createdAt:   s.nextCreatedAt(),
		memberRoles: map[string][]string{},
		apps:        map[string][]string{},
	}
	s.t.orgs[id] = o
	return o
}

// nextCreatedAt is now in milliseconds, strictly after any earlier organization's, so the
// newest-first order is stable even when the clock does not move; s.mu is held.
func (s *Server) nextCreatedAt() int64 {
	now := s.now().UnixMilli()
	for _, o := range s.t.orgs {
		if o.createdAt >= now {
			now = o.createdAt + 1
		}
	}
	return now
}

// AddOrgRole adds an organization role for users with organization permissions and returns
// its ID.
func (s *Server) AddOrgRole(name string, scopes ...string) string {
	return s.AddOrgRoleWithID("", name, scopes...)
}

// AddOrgRoleWithID is AddOrgRole with a chosen role ID.
func (s *Server) AddOrgRoleWithID(id, name string, scopes ...string) string {
	return s.addOrgRole(id, name, roleTypeUser, scopes)
}

// AddM2MOrgRole adds an organization role of type MachineToMachine, for apps, and returns its
// ID.
func (s *Server) AddM2MOrgRole(name string, scopes ...string) string {
	return s.addOrgRole("", name, roleTypeMachine, scopes)
}

func (s *Server) addOrgRole(id, name, typ string, scopes []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.pickID("organization role", id, longIDLen, func(id string) bool { return s.t.orgRoles[id] != nil })
	if s.t.orgRoleByName(name) != nil {
		panic(fmt.Sprintf("fakelogto: organization role %q already exists", name))
	}
	for _, p := range scopes {
		s.t.permission(p, s.now().UnixMilli())
	}
	s.t.orgRoles[id] = &orgRole{id: id, name: name, typ: typ, scopes: appendNew(nil, scopes...), resourceScopes: map[string][]string{}}
	return id
}

// AddOrgRoleAPIScopes gives an organization role permissions of an API resource
// (organization-level API permissions, pattern 2). The resource is added if it is new.
func (s *Server) AddOrgRoleAPIScopes(roleName, resource string, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.t.orgRoleByName(roleName)
	if r == nil {
		panic(fmt.Sprintf("fakelogto: no organization role %q", roleName))
	}
	s.addResourceLocked(resource, scopes)
	r.resourceScopes[resource] = appendNew(r.resourceScopes[resource], scopes...)
}

// AddAPIResource registers an API resource indicator and, optionally, its permissions.
// Adding it again adds the permissions.
func (s *Server) AddAPIResource(indicator string, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addResourceLocked(indicator, scopes)
}

func (s *Server) addResourceLocked(indicator string, scopes []string) {
	if indicator == "" || indicator == s.cfg.ManagementResource {
		panic(fmt.Sprintf("fakelogto: %q cannot be an API resource", indicator))
	}
	r := s.t.resources[indicator]
	if r == nil {
		r = &apiResource{id: newID(longIDLen), name: indicator, indicator: indicator, accessTokenTTL: 3600, seq: s.t.next()}
		s.t.resources[indicator] = r
	}
	for _, name := range scopes {
		if r.scopeNamed(name) == nil {
			r.scopes = append(r.scopes, &scope{id: newID(longIDLen), resourceID: r.id, name: name, createdAt: s.now().UnixMilli()})
		}
	}
}

// AddGlobalRole adds a global (tenant) role with permissions of one API resource and returns
// its ID. The resource is added if it is new.
func (s *Server) AddGlobalRole(name, resource string, scopes ...string) string {
	return s.AddGlobalRoleWithID("", name, resource, scopes...)
}

// AddGlobalRoleWithID is AddGlobalRole with a chosen role ID.
func (s *Server) AddGlobalRoleWithID(id, name, resource string, scopes ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.pickID("role", id, longIDLen, func(id string) bool { return s.t.globalRoles[id] != nil })
	if s.t.globalRoleByName(name) != nil {
		panic(fmt.Sprintf("fakelogto: role %q already exists", name))
	}
	s.addResourceLocked(resource, scopes)
	s.t.globalRoles[id] = &globalRole{id: id, name: name, typ: roleTypeUser, scopes: map[string][]string{resource: appendNew(nil, scopes...)}}
	return id
}

// AssignGlobalRole gives a user a global role.
func (s *Server) AssignGlobalRole(userID, roleName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, r := s.t.users[userID], s.t.globalRoleByName(roleName)
	if u == nil || r == nil {
		panic(fmt.Sprintf("fakelogto: no user %q or role %q", userID, roleName))
	}
	u.globalRoles = appendNew(u.globalRoles, r.id)
}

// AssignAppGlobalRole gives an M2M app a global role, for API tokens by client credentials.
func (s *Server) AssignAppGlobalRole(appID, roleName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, r := s.t.apps[appID], s.t.globalRoleByName(roleName)
	if a == nil || r == nil {
		panic(fmt.Sprintf("fakelogto: no application %q or role %q", appID, roleName))
	}
	a.globalRoles = appendNew(a.globalRoles, r.id)
}

// AddMember makes a user a member of an organization with the named organization roles.
func (s *Server) AddMember(orgID, userID string, roleNames ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, u := s.t.orgs[orgID], s.t.users[userID]
	if o == nil || u == nil {
		panic(fmt.Sprintf("fakelogto: no organization %q or user %q", orgID, userID))
	}
	ids := s.roleIDs(roleNames) // before any change: an unknown name panics
	if !o.isMember(userID) {
		o.members = append(o.members, userID)
	}
	o.memberRoles[userID] = appendNew(o.memberRoles[userID], ids...)
}

// AddOrgApp associates an M2M app with an organization with the named (MachineToMachine)
// organization roles, for organization tokens by client credentials.
func (s *Server) AddOrgApp(orgID, appID string, roleNames ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, a := s.t.orgs[orgID], s.t.apps[appID]
	if o == nil || a == nil || a.typ != appM2M {
		panic(fmt.Sprintf("fakelogto: no organization %q or M2M application %q", orgID, appID))
	}
	ids := s.roleIDs(roleNames)
	o.apps[appID] = appendNew(o.apps[appID], ids...)
	if o.apps[appID] == nil {
		o.apps[appID] = []string{} // associated, without roles
	}
}

// roleIDs maps organization role names to IDs; s.mu is held.
func (s *Server) roleIDs(names []string) []string {
	var ids []string
	for _, n := range names {
		r := s.t.orgRoleByName(n)
		if r == nil {
			panic(fmt.Sprintf("fakelogto: no organization role %q", n))
		}
		ids = append(ids, r.id)
	}
	return ids
}

// Organizations lists the organization IDs, newest first.
func (s *Server) Organizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, o := range s.t.sortedOrgs() {
		ids = append(ids, o.id)
	}
	return ids
}

// Members lists an organization's member IDs in the order they joined; nil for an unknown
// organization.
func (s *Server) Members(orgID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.t.orgs[orgID]; o != nil {
		return slices.Clone(o.members)
	}
	return nil
}

// MemberRoles lists the names of a member's organization roles, sorted.
func (s *Server) MemberRoles(orgID, userID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.t.orgs[orgID]
	if o == nil {
		return nil
	}
	var names []string
	for _, id := range o.memberRoles[userID] {
		if r := s.t.orgRoles[id]; r != nil {
			names = append(names, r.name)
		}
	}
	sort.Strings(names)
	return names
}

// SubjectToken creates a subject token for a user, as POST /api/subject-tokens does.
func (s *Server) SubjectToken(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.users[userID] == nil {
		panic(fmt.Sprintf("fakelogto: no user %q", userID))
	}
	return s.newSubjectTokenLocked(userID)
}

func (s *Server) newSubjectTokenLocked(userID string) string {
	if len(s.t.subjects) >= maxSubjectTokens {
		for k, st := range s.t.subjects {
			if st.consumed || !s.now().Before(st.expiresAt) {
				delete(s.t.subjects, k)
			}
		}
	}
	tok := "sub_" + newID(longIDLen)
	s.t.subjects[tok] = &subjectToken{userID: userID, expiresAt: s.now().Add(s.cfg.SubjectTokenTTL)}
	return tok
}

// maxSubjectTokens is the count above which used and expired subject tokens are forgotten.
const maxSubjectTokens = 1024

// UserTokenRequest asks for the access token a token exchange would give a user.
type UserTokenRequest struct {
	// ClientID is the traffic app the token is issued to. Default: the traffic app with the
	// smallest ID.
	ClientID string
	// UserID is the subject.
	UserID string
	// OrganizationID asks for an organization token (without Resource) or an
	// organization-level API token (with Resource).
	OrganizationID string
	// Resource is an API resource indicator; without it and OrganizationID the token would be
	// opaque, which IssueUserToken refuses.
	Resource string
	// Scopes are requested; the token carries those the user's roles grant.
	Scopes []string
}

// IssueUserToken issues a user access token with the same rules as the token exchange grant,
// without the HTTP round trips. Errors are those the token endpoint would answer.
func (s *Server) IssueUserToken(req UserTokenRequest) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.OrganizationID == "" && req.Resource == "" {
		return "", errors.New("fakelogto: issue user token: need an organization or a resource")
	}
	if s.t.users[req.UserID] == nil {
		return "", fmt.Errorf("fakelogto: issue user token: no user %q", req.UserID)
	}
	client := req.ClientID
	if client == "" {
		for id, a := range s.t.apps {
			if a.typ == appTraditional && (client == "" || id < client) {
				client = id
			}
		}
		if client == "" {
			return "", errors.New("fakelogto: issue user token: no traffic app")
		}
	}
	resp, oe := s.userGrant(grant{
		clientID: client, subject: req.UserID, organizationID: req.OrganizationID,
		resource: req.Resource, requested: req.Scopes,
	})
	if oe != nil {
		return "", fmt.Errorf("fakelogto: issue user token: %w", oe)
	}
	return resp.accessToken, nil
}

// MintToken signs claims exactly as given with the current key under Logto's access token
// header {"alg":…,"typ":"at+jwt","kid":…}. Logto's claim order is kept for its claims.
func (s *Server) MintToken(claims map[string]any) string {
	return s.SignToken(nil, claims)
}

// SignToken signs claims under any header, for hostile tests. The signature is made with the
// current key whatever the header's alg says, except alg "none" (empty signature) and
// "HS256" (HMAC keyed with the current public key's PKIX PEM: algorithm confusion). A nil
// header is Logto's.
func (s *Server) SignToken(header, claims map[string]any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, err := s.signLocked(header, claims)
	if err != nil {
		panic(err)
	}
	return tok
}

// Claims returns the claims a Logto access token would carry for the given subject, client,
// audience and scope, issued now: a starting point for MintToken in tests. An empty scope
// leaves the claim out.
func (s *Server) Claims(sub, clientID, aud, scope string) map[string]any {
	now := s.now().Unix()
	c := map[string]any{
		"jti": randomString(nanoidAlphabet, 21), "sub": sub, "iat": now,
		"exp": now + int64(s.cfg.TokenTTL.Seconds()), "client_id": clientID, "iss": s.Issuer(), "aud": aud,
	}
	if scope != "" {
		c["scope"] = scope
	}
	return c
}

// RotateKey makes a new key of alg (ES384 or RS256) the current signing key; the old current
// key stays published as a previous key until DropPreviousKeys. It returns the new kid.
func (s *Server) RotateKey(alg string) (string, error) {
	k, err := newSigningKey(alg)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys.keys = append([]*signingKey{k}, s.keys.keys...)
	return k.kid, nil
}

// DropPreviousKeys unpublishes every key but the current one: tokens they signed stop
// verifying.
func (s *Server) DropPreviousKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys.keys = s.keys.keys[:1]
}

// KeyIDs lists the published kids, current first.
func (s *Server) KeyIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, k := range s.keys.keys {
		ids = append(ids, k.kid)
	}
	return ids
}
