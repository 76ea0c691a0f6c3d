package fakelogto

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// The Management API endpoints a tenant is set up with: permissions, roles, API resources and
// applications. Tests usually seed with the Go methods instead; these let a script set up
// the emulator exactly as it would set up a real Logto.

func (s *Server) setupRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/organization-scopes", s.listPermissions)
	mux.HandleFunc("POST /api/organization-scopes", s.createPermission)
	mux.HandleFunc("GET /api/organization-roles", s.listOrgRoles)
	mux.HandleFunc("POST /api/organization-roles", s.createOrgRole)
	mux.HandleFunc("GET /api/organization-roles/{id}/scopes", s.getOrgRoleScopes)
	mux.HandleFunc("GET /api/organization-roles/{id}/resource-scopes", s.getOrgRoleResourceScopes)
	mux.HandleFunc("POST /api/organization-roles/{id}/resource-scopes", s.addOrgRoleResourceScopes)
	mux.HandleFunc("GET /api/organizations/{id}/users/{userId}/scopes", s.getMemberScopes)
	mux.HandleFunc("GET /api/resources", s.listResources)
	mux.HandleFunc("POST /api/resources", s.createResource)
	mux.HandleFunc("POST /api/resources/{id}/scopes", s.createResourceScope)
	mux.HandleFunc("POST /api/roles", s.createGlobalRole)
	mux.HandleFunc("GET /api/users/{id}/roles", s.getUserRoles)
	mux.HandleFunc("POST /api/applications", s.createApplication)
	mux.HandleFunc("POST /api/applications/{id}/roles", s.assignAppRoles)
	mux.HandleFunc("GET /api/organizations/{id}/applications", s.listOrgApps)
	mux.HandleFunc("POST /api/organizations/{id}/applications", s.addOrgApps)
	mux.HandleFunc("POST /api/organizations/{id}/applications/{appId}/roles", s.addOrgAppRoles)
}

var errUnique = &apiError{Code: "entity.unique_integrity_violation", Message: "The entity already exists. Please check the input and try again."}

// parse reads and checks a body, answering the error itself; ok is false when it did.
func parse(w http.ResponseWriter, r *http.Request, fields ...field) (body, bool) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return nil, false
	}
	if issues := b.check(fields...); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return nil, false
	}
	return b, true
}

// Organization permissions.

type permissionJSON struct {
	TenantID    string  `json:"tenantId"`
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Description *string `json:"description"`
}

func (p *scope) permissionJSON() permissionJSON {
	return permissionJSON{tenantID, p.id, p.name, p.description}
}

// sortedPermissions returns the named organization permissions (all when names is nil)
// sorted by name; s.mu is held.
func (s *Server) sortedPermissions(names []string, all bool) []permissionJSON {
	out := []permissionJSON{}
	for name, p := range s.t.permissions {
		if all || slices.Contains(names, name) {
			out = append(out, p.permissionJSON())
		}
	}
	slices.SortFunc(out, func(a, b permissionJSON) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Server) listPermissions(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	s.mu.Lock()
	all := s.sortedPermissions(nil, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, nonNil(paginate(s, w, r, p, all)))
}

func (s *Server) createPermission(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "name", typ: "string", required: true}, field{name: "description", typ: "string", nullable: true})
	if !ok {
		return
	}
	name, _ := b.str("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.permissions[name] != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errUnique)
		return
	}
	p := s.t.permission(name, s.now().UnixMilli())
	p.description = b.strPtr("description")
	writeJSON(w, http.StatusCreated, p.permissionJSON())
}

// Organization roles.

type resourceScopeRef struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Resource struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"resource"`
}

type orgRoleListJSON struct {
	orgRoleJSON
	Scopes         []roleRef          `json:"scopes"`
	ResourceScopes []resourceScopeRef `json:"resourceScopes"`
}

func (s *Server) listOrgRoles(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	q := r.URL.Query().Get("q")
	s.mu.Lock()
	var all []orgRoleListJSON
	for _, role := range s.t.orgRoles {
		if !matchesQuery(q, &role.id, &role.name, role.description) {
			continue
		}
		item := orgRoleListJSON{orgRoleJSON: role.json(), Scopes: []roleRef{}, ResourceScopes: []resourceScopeRef{}}
		for _, name := range role.scopes {
			if p := s.t.permissions[name]; p != nil {
				item.Scopes = append(item.Scopes, roleRef{p.id, name})
			}
		}
		for _, res := range s.sortedResources() {
			for _, name := range role.resourceScopes[res.indicator] {
				if sc := res.scopeNamed(name); sc != nil {
					ref := resourceScopeRef{ID: sc.id, Name: sc.name}
					ref.Resource.ID, ref.Resource.Name = res.id, res.name
					item.ResourceScopes = append(item.ResourceScopes, ref)
				}
			}
		}
		all = append(all, item)
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b orgRoleListJSON) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, nonNil(paginate(s, w, r, p, all)))
}

func (role *orgRole) json() orgRoleJSON {
	return orgRoleJSON{tenantID, role.id, role.name, role.description, role.typ}
}

// roleType reads a role's optional "type" ("User" when absent), answering Logto's 400 for another value.
func roleType(w http.ResponseWriter, b body) (string, bool) {
	t, ok := b.str("type")
	if !ok {
		return roleTypeUser, true
	}
	if t != roleTypeUser && t != roleTypeMachine {
		writeJSON(w, http.StatusBadRequest, invalidInput(zodIssue{Code: "invalid_enum_value", Path: []any{"type"}, Message: "Invalid enum value. Expected 'User' | 'MachineToMachine', received '" + t + "'"}))
		return "", false
	}
	return t, true
}

func (s *Server) createOrgRole(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r,
		field{name: "name", typ: "string", required: true}, field{name: "description", typ: "string", nullable: true},
		field{name: "type", typ: "string"}, field{name: "organizationScopeIds", typ: "strings"}, field{name: "resourceScopeIds", typ: "strings"})
	if !ok {
		return
	}
	typ, ok := roleType(w, b)
	if !ok {
		return
	}
	name, _ := b.str("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.orgRoleByName(name) != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errUnique)
		return
	}
	role := &orgRole{id: newID(longIDLen), name: name, description: b.strPtr("description"), typ: typ, resourceScopes: map[string][]string{}}
	for _, id := range b.strs("organizationScopeIds") {
		p := s.permissionByID(id)
		if p == nil {
			writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
			return
		}
		role.scopes = appendNew(role.scopes, p.name)
	}
	if !s.grantResourceScopes(role, b.strs("resourceScopeIds")) {
		writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
		return
	}
	s.t.orgRoles[role.id] = role
	if len(role.scopes) > 0 { // Logto reports a role created with permissions as a scope change
		s.emit(r, hookEvent{event: EventOrganizationRoleScopesUpdated, status: http.StatusCreated, extra: map[string]any{"organizationRoleId": role.id}})
	}
	writeJSON(w, http.StatusCreated, role.json())
}

func (s *Server) permissionByID(id string) *scope {
	for _, p := range s.t.permissions {
		if p.id == id {
			return p
		}
	}
	return nil
}

// grantResourceScopes adds API permissions by ID to role, all or none; s.mu is held.
func (s *Server) grantResourceScopes(role *orgRole, ids []string) bool {
	type grant struct{ resource, name string }
	var grants []grant
	for _, id := range ids {
		res, sc := s.t.resourceScope(id)
		if sc == nil {
			return false
		}
		grants = append(grants, grant{res.indicator, sc.name})
	}
	for _, g := range grants {
		role.resourceScopes[g.resource] = appendNew(role.resourceScopes[g.resource], g.name)
	}
	return true
}

func (s *Server) getOrgRoleScopes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	role := s.t.orgRoles[r.PathValue("id")]
	if role == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("organization_roles", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, s.sortedPermissions(role.scopes, false))
}

type resourceScopeJSON struct {
	TenantID    string  `json:"tenantId"`
	ID          string  `json:"id"`
	ResourceID  string  `json:"resourceId"`
	Name        string  `json:"name"`
	Description *string `json:"description"`
	CreatedAt   int64   `json:"createdAt"`
}

func (sc *scope) resourceScopeJSON() resourceScopeJSON {
	return resourceScopeJSON{tenantID, sc.id, sc.resourceID, sc.name, sc.description, sc.createdAt}
}

func (s *Server) getOrgRoleResourceScopes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	role := s.t.orgRoles[r.PathValue("id")]
	if role == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("organization_roles", r.PathValue("id")))
		return
	}
	out := []resourceScopeJSON{}
	for _, res := range s.sortedResources() {
		for _, sc := range res.scopes {
			if slices.Contains(role.resourceScopes[res.indicator], sc.name) {
				out = append(out, sc.resourceScopeJSON())
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addOrgRoleResourceScopes(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "scopeIds", typ: "strings", required: true})
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	role := s.t.orgRoles[r.PathValue("id")]
	if role == nil || !s.grantResourceScopes(role, b.strs("scopeIds")) {
		writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
		return
	}
	writeText(w, http.StatusCreated, "Created")
}

func (s *Server) getMemberScopes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, uid := s.t.orgs[r.PathValue("id")], r.PathValue("userId")
	if o == nil || !o.isMember(uid) {
		writeJSON(w, http.StatusUnprocessableEntity, errRequireMember)
		return
	}
	writeJSON(w, http.StatusOK, s.sortedPermissions(s.t.orgScopes(o.memberRoles[uid]), false))
}

// API resources.

type resourceJSON struct {
	TenantID       string               `json:"tenantId"`
	ID             string               `json:"id"`
	Name           string               `json:"name"`
	Indicator      string               `json:"indicator"`
	IsDefault      bool                 `json:"isDefault"`
	AccessTokenTTL int64                `json:"accessTokenTtl"`
	Scopes         *[]resourceScopeJSON `json:"scopes,omitempty"`
}

func (res *apiResource) json(withScopes bool) resourceJSON {
	out := resourceJSON{TenantID: tenantID, ID: res.id, Name: res.name, Indicator: res.indicator, AccessTokenTTL: res.accessTokenTTL}
	if withScopes {
		scopes := []resourceScopeJSON{}
		for _, sc := range res.scopes {
			scopes = append(scopes, sc.resourceScopeJSON())
		}
		out.Scopes = &scopes
	}
	return out
}

// sortedResources lists the API resources in creation order; s.mu is held.
func (s *Server) sortedResources() []*apiResource {
	var out []*apiResource
	for _, res := range s.t.resources {
		out = append(out, res)
	}
	slices.SortFunc(out, func(a, b *apiResource) int { return int(a.seq - b.seq) })
	return out
}

func (s *Server) listResources(w http.ResponseWriter, r *http.Request) {
	withScopes := r.URL.Query().Get("includeScopes") == "true"
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []resourceJSON{}
	for _, res := range s.sortedResources() {
		out = append(out, res.json(withScopes))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createResource(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "name", typ: "string", required: true}, field{name: "indicator", typ: "string", required: true})
	if !ok {
		return
	}
	name, _ := b.str("name")
	indicator, _ := b.str("indicator")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.resources[indicator] != nil {
		writeJSON(w, http.StatusUnprocessableEntity, &apiError{Code: "resource.resource_identifier_in_use", Message: "The API identifier " + indicator + " is already in use."})
		return
	}
	res := &apiResource{id: newID(longIDLen), name: name, indicator: indicator, accessTokenTTL: 3600, seq: s.t.next()}
	s.t.resources[indicator] = res
	writeJSON(w, http.StatusCreated, res.json(true))
}

func (s *Server) createResourceScope(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "name", typ: "string", required: true}, field{name: "description", typ: "string", nullable: true})
	if !ok {
		return
	}
	name, _ := b.str("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.t.resourceByID(r.PathValue("id"))
	if res == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("resources", r.PathValue("id")))
		return
	}
	if res.scopeNamed(name) != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errUnique)
		return
	}
	sc := &scope{id: newID(longIDLen), resourceID: res.id, name: name, description: b.strPtr("description"), createdAt: s.now().UnixMilli()}
	res.scopes = append(res.scopes, sc)
	writeJSON(w, http.StatusCreated, sc.resourceScopeJSON())
}

// Global roles.

type globalRoleJSON struct {
	TenantID    string  `json:"tenantId"`
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Description *string `json:"description"`
	Type        string  `json:"type"`
	IsDefault   bool    `json:"isDefault"`
}

func (role *globalRole) json() globalRoleJSON {
	return globalRoleJSON{TenantID: tenantID, ID: role.id, Name: role.name, Description: role.description, Type: role.typ}
}

func (s *Server) createGlobalRole(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r,
		field{name: "name", typ: "string", required: true}, field{name: "description", typ: "string", required: true},
		field{name: "type", typ: "string"}, field{name: "scopeIds", typ: "strings"})
	if !ok {
		return
	}
	typ, ok := roleType(w, b)
	if !ok {
		return
	}
	name, _ := b.str("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.globalRoleByName(name) != nil {
		writeJSON(w, http.StatusUnprocessableEntity, &apiError{Code: "role.name_in_use", Message: "This role name " + name + " is already in use"})
		return
	}
	role := &globalRole{id: newID(longIDLen), name: name, description: b.strPtr("description"), typ: typ, scopes: map[string][]string{}}
	for _, id := range b.strs("scopeIds") {
		res, sc := s.t.resourceScope(id)
		if sc == nil {
			writeJSON(w, http.StatusNotFound, notExistsWithID("scopes", id))
			return
		}
		role.scopes[res.indicator] = appendNew(role.scopes[res.indicator], sc.name)
	}
	s.t.globalRoles[role.id] = role
	writeJSON(w, http.StatusOK, role.json())
}

func (s *Server) getUserRoles(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	s.mu.Lock()
	u := s.t.users[r.PathValue("id")]
	var all []globalRoleJSON
	if u != nil {
		for _, id := range u.globalRoles {
			if role := s.t.globalRoles[id]; role != nil {
				all = append(all, role.json())
			}
		}
	}
	s.mu.Unlock()
	if u == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("users", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, nonNil(paginate(s, w, r, p, all)))
}

// Applications.

type appJSON struct {
	TenantID             string          `json:"tenantId"`
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	Secret               string          `json:"secret"`
	Description          *string         `json:"description"`
	Type                 string          `json:"type"`
	OIDCClientMetadata   json.RawMessage `json:"oidcClientMetadata"`
	CustomClientMetadata json.RawMessage `json:"customClientMetadata"`
	ProtectedAppMetadata json.RawMessage `json:"protectedAppMetadata"`
	CustomData           json.RawMessage `json:"customData"`
	IsThirdParty         bool            `json:"isThirdParty"`
	CreatedAt            int64           `json:"createdAt"`
}

func (a *application) json() appJSON {
	return appJSON{
		TenantID: tenantID, ID: a.id, Name: a.name, Secret: a.secret, Description: a.description, Type: a.typ,
		OIDCClientMetadata: a.oidcClientMetadata, CustomClientMetadata: a.customClientMetadata,
		ProtectedAppMetadata: []byte("null"), CustomData: []byte("{}"), CreatedAt: a.createdAt,
	}
}

func (s *Server) createApplication(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r,
		field{name: "name", typ: "string", required: true}, field{name: "type", typ: "string", required: true},
		field{name: "description", typ: "string", nullable: true},
		field{name: "oidcClientMetadata", typ: "object"}, field{name: "customClientMetadata", typ: "object"})
	if !ok {
		return
	}
	typ, _ := b.str("type")
	if typ != appM2M && typ != appTraditional {
		writeJSON(w, http.StatusBadRequest, invalidInput(zodIssue{Code: "invalid_enum_value", Path: []any{"type"}, Message: "Invalid enum value. The emulator supports 'MachineToMachine' and 'Traditional', received '" + typ + "'"}))
		return
	}
	var custom struct {
		AllowTokenExchange bool `json:"allowTokenExchange"`
	}
	if raw, ok := b["customClientMetadata"]; ok {
		json.Unmarshal(raw, &custom)
	}
	name, _ := b.str("name")
	a := &application{
		secret: randomString(nanoidAlphabet[:62], 32), typ: typ, name: name, description: b.strPtr("description"),
		oidcClientMetadata: []byte(`{"redirectUris":[],"postLogoutRedirectUris":[]}`), customClientMetadata: []byte("{}"),
		createdAt: s.now().UnixMilli(), tokenExchange: typ == appTraditional && custom.AllowTokenExchange,
	}
	if _, ok := b["oidcClientMetadata"]; ok {
		a.oidcClientMetadata = b.compactObject("oidcClientMetadata")
	}
	if _, ok := b["customClientMetadata"]; ok {
		a.customClientMetadata = b.compactObject("customClientMetadata")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a.id = s.pickID("application", "", longIDLen, func(id string) bool { return s.t.apps[id] != nil })
	a.seq = s.t.next()
	s.t.apps[a.id] = a
	writeJSON(w, http.StatusOK, a.json())
}

func (s *Server) assignAppRoles(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "roleIds", typ: "strings", required: true})
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.t.apps[r.PathValue("id")]
	if a == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("applications", r.PathValue("id")))
		return
	}
	ids := b.strs("roleIds")
	for _, id := range ids {
		if s.t.globalRoles[id] == nil {
			writeJSON(w, http.StatusNotFound, notExistsWithID("roles", id))
			return
		}
	}
	a.globalRoles = appendNew(a.globalRoles, ids...)
	writeText(w, http.StatusCreated, "Created")
}

type orgAppJSON struct {
	appJSON
	OrganizationRoles []roleRef `json:"organizationRoles"`
}

func (s *Server) listOrgApps(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	s.mu.Lock()
	var apps []*application
	o := s.t.orgs[r.PathValue("id")]
	if o != nil {
		for id := range o.apps {
			if a := s.t.apps[id]; a != nil {
				apps = append(apps, a)
			}
		}
	}
	slices.SortFunc(apps, func(a, b *application) int { return int(a.seq - b.seq) })
	all := []orgAppJSON{}
	for _, a := range apps {
		all = append(all, orgAppJSON{a.json(), s.roleRefs(o.apps[a.id])})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, nonNil(paginate(s, w, r, p, all)))
}

func (s *Server) addOrgApps(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "applicationIds", typ: "strings", required: true})
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.t.orgs[r.PathValue("id")]
	ids := b.strs("applicationIds")
	for _, id := range ids {
		if a := s.t.apps[id]; o == nil || a == nil || a.typ != appM2M {
			writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
			return
		}
	}
	for _, id := range ids {
		if o.apps[id] == nil {
			o.apps[id] = []string{}
		}
	}
	writeText(w, http.StatusCreated, "Created")
}

func (s *Server) addOrgAppRoles(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "organizationRoleIds", typ: "strings", required: true})
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, appID := s.t.orgs[r.PathValue("id")], r.PathValue("appId")
	if o == nil || o.apps[appID] == nil {
		writeJSON(w, http.StatusUnprocessableEntity, &apiError{Code: "organization.require_membership", Message: "The application must be a member of the organization to proceed."})
		return
	}
	ids := b.strs("organizationRoleIds")
	for _, id := range ids {
		if s.t.orgRoles[id] == nil {
			writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
			return
		}
	}
	o.apps[appID] = appendNew(o.apps[appID], ids...)
	writeText(w, http.StatusCreated, "Created")
}
