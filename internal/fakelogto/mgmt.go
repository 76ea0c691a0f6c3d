package fakelogto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// maxJSONBody bounds Management API request bodies, like koa-body's 1 MB default.
const maxJSONBody = 1 << 20

func (s *Server) managementRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/organizations", s.listOrganizations)
	mux.HandleFunc("POST /api/organizations", s.createOrganization)
	mux.HandleFunc("GET /api/organizations/{id}", s.getOrganization)
	mux.HandleFunc("PATCH /api/organizations/{id}", s.patchOrganization)
	mux.HandleFunc("DELETE /api/organizations/{id}", s.deleteOrganization)
	mux.HandleFunc("GET /api/organizations/{id}/users", s.listMembers)
	mux.HandleFunc("POST /api/organizations/{id}/users", s.addMembers)
	mux.HandleFunc("POST /api/organizations/{id}/users/roles", s.addMembersRoles)
	mux.HandleFunc("DELETE /api/organizations/{id}/users/{userId}", s.removeMember)
	mux.HandleFunc("GET /api/organizations/{id}/users/{userId}/roles", s.getMemberRoles)
	mux.HandleFunc("POST /api/organizations/{id}/users/{userId}/roles", s.addMemberRoles)
	mux.HandleFunc("PUT /api/organizations/{id}/users/{userId}/roles", s.replaceMemberRoles)
	mux.HandleFunc("DELETE /api/organizations/{id}/users/{userId}/roles/{roleId}", s.removeMemberRole)
	mux.HandleFunc("POST /api/users", s.createUser)
	mux.HandleFunc("GET /api/users/{id}", s.getUser)
	mux.HandleFunc("DELETE /api/users/{userId}", s.deleteUser)
	mux.HandleFunc("POST /api/hooks", s.createHook)
	mux.HandleFunc("GET /api/users/{id}/organizations", s.getUserOrganizations)
	mux.HandleFunc("POST /api/users/{id}/roles", s.assignUserRoles)
	mux.HandleFunc("POST /api/subject-tokens", s.createSubjectToken)
	s.setupRoutes(mux)
	return mux
}

// serveManagement checks the bearer like Logto's koaAuth (before any routing) and then serves
// the Management API.
func (s *Server) serveManagement(w http.ResponseWriter, r *http.Request, _ Fault) {
	if status, e := s.authorize(r); e != nil {
		writeJSON(w, status, e)
		return
	}
	// Deliveries the call causes leave once it has answered, as Logto's do.
	var out outbox
	s.mgmt.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), outboxKey{}, &out)))
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	out.send(s)
}

// authorize accepts only Management API tokens this server signed, unexpired, with "all".
func (s *Server) authorize(r *http.Request) (int, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return http.StatusUnauthorized, &apiError{Code: "auth.authorization_header_missing", Message: "Authorization header is missing."}
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return http.StatusUnauthorized, &apiError{Code: "auth.authorization_token_type_not_supported", Message: "Authorization type is not supported."}
	}
	s.mu.Lock()
	claims, err := s.keys.verify(tok)
	s.mu.Unlock()
	if err == nil {
		err = s.checkManagementClaims(claims)
	}
	if err != nil {
		var ve *verifyError
		if !errors.As(err, &ve) {
			ve = errJWTInvalid
		}
		return http.StatusUnauthorized, &apiError{
			Code:    "auth.unauthorized",
			Data:    map[string]string{"code": ve.code, "name": ve.name},
			Message: "Unauthorized. Please check credentials and its scope.",
		}
	}
	if !hasScope(claims["scope"], "all") {
		return http.StatusForbidden, &apiError{Code: "auth.forbidden", Message: "Forbidden. Please check your user roles and permissions."}
	}
	return 0, nil
}

func (s *Server) checkManagementClaims(c map[string]any) error {
	if c["iss"] != s.Issuer() || !slices.Contains(audiences(c["aud"]), s.cfg.ManagementResource) {
		return errJWTClaim
	}
	exp, ok := numericClaim(c["exp"])
	if !ok {
		return errJWTClaim
	}
	if s.now().Unix() >= exp {
		return errJWTExpired
	}
	return nil
}

// Entities as the Management API writes them.

type orgJSON struct {
	TenantID      string          `json:"tenantId"`
	ID            string          `json:"id"`
	Name          string          `json:"name"`
	Description   *string         `json:"description"`
	CustomData    json.RawMessage `json:"customData"`
	IsMfaRequired bool            `json:"isMfaRequired"`
	Color         json.RawMessage `json:"color"`
	Branding      json.RawMessage `json:"branding"`
	CustomCSS     *string         `json:"customCss"`
	CreatedAt     int64           `json:"createdAt"`
}

func (o *organization) json() orgJSON {
	return orgJSON{tenantID, o.id, o.name, o.description, o.customData, o.isMfaRequired, o.color, o.branding, o.customCSS, o.createdAt}
}

type roleRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type userJSON struct {
	ID            string          `json:"id"`
	Username      *string         `json:"username"`
	PrimaryEmail  *string         `json:"primaryEmail"`
	PrimaryPhone  *string         `json:"primaryPhone"`
	Name          *string         `json:"name"`
	Avatar        *string         `json:"avatar"`
	CustomData    json.RawMessage `json:"customData"`
	Identities    json.RawMessage `json:"identities"`
	LastSignInAt  *int64          `json:"lastSignInAt"`
	CreatedAt     int64           `json:"createdAt"`
	UpdatedAt     int64           `json:"updatedAt"`
	Profile       json.RawMessage `json:"profile"`
	ApplicationID *string         `json:"applicationId"`
	IsSuspended   bool            `json:"isSuspended"`
}

func (u *user) json() userJSON {
	var username *string
	if u.username != "" {
		username = &u.username
	}
	return userJSON{
		ID: u.id, Username: username, PrimaryEmail: u.primaryEmail, Name: u.name,
		CustomData: []byte("{}"), Identities: []byte("{}"), Profile: []byte("{}"),
		CreatedAt: u.createdAt, UpdatedAt: u.updatedAt,
	}
}

type orgRoleJSON struct {
	TenantID    string  `json:"tenantId"`
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Description *string `json:"description"`
	Type        string  `json:"type"`
}

// roleRefs lists roleIDs as {id, name}, sorted by name as Logto's aggregates are; s.mu is held.
func (s *Server) roleRefs(roleIDs []string) []roleRef {
	out := []roleRef{}
	for _, id := range roleIDs {
		if r := s.t.orgRoles[id]; r != nil {
			out = append(out, roleRef{r.id, r.name})
		}
	}
	slices.SortFunc(out, func(a, b roleRef) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Errors the Management API answers with.

func notExistsWithID(entity, id string) *apiError {
	return &apiError{Code: "entity.not_exists_with_id", Message: fmt.Sprintf("The %s with ID `%s` does not exist.", entity, id)}
}

var (
	errEntityNotFound = &apiError{Code: "entity.not_found", Message: "The resource does not exist."}
	errForeignKey     = &apiError{Code: "entity.relation_foreign_key_not_found", Message: "Cannot find one or more foreign keys. Please check the input and ensure that all referenced entities exist."}
	errRequireMember  = &apiError{Code: "organization.require_membership", Message: "The user must be a member of the organization to proceed."}
	errPagination     = &apiError{Code: "guard.invalid_pagination", Message: "The request pagination value is invalid."}
	errTooLarge       = &apiError{Code: "request.entity_too_large", Message: "The request body is too large."}
	errInvalidJSON    = &apiError{Message: "invalid JSON, only supports object and array"}
	errEmptyUpdate    = &apiError{Code: "entity.invalid_input", Message: "Invalid input. Value list must not be empty."}
)

// zodIssue is one entry of a guard.invalid_input error, shaped like zod's.
type zodIssue struct {
	Code     string `json:"code"`
	Expected string `json:"expected,omitempty"`
	Received string `json:"received,omitempty"`
	// Size bounds (too_small, too_big), as zod writes them.
	Minimum   *int   `json:"minimum,omitempty"`
	Maximum   *int   `json:"maximum,omitempty"`
	Type      string `json:"type,omitempty"`
	Inclusive *bool  `json:"inclusive,omitempty"`
	Exact     *bool  `json:"exact,omitempty"`
	Path      []any  `json:"path"`
	Message   string `json:"message"`
}

// sizeIssue is zod's too_small (min) or too_big (max) issue for a string or array member.
func sizeIssue(name, typ string, min bool, n int) zodIssue {
	t, f := true, false
	unit := "character(s)"
	if typ == "array" {
		unit = "element(s)"
	}
	is := zodIssue{Type: typ, Inclusive: &t, Exact: &f, Path: []any{name}}
	if min {
		is.Code, is.Minimum = "too_small", &n
		is.Message = fmt.Sprintf("%s must contain at least %d %s", strings.ToUpper(typ[:1])+typ[1:], n, unit)
	} else {
		is.Code, is.Maximum = "too_big", &n
		is.Message = fmt.Sprintf("%s must contain at most %d %s", strings.ToUpper(typ[:1])+typ[1:], n, unit)
	}
	return is
}

func invalidInput(issues ...zodIssue) *apiError {
	var details []string
	for _, is := range issues {
		var path []string
		for _, p := range is.Path {
			path = append(path, fmt.Sprint(p))
		}
		// Logto's wording: type errors name both types, others repeat zod's message.
		d := fmt.Sprintf("Error in key path %q: (%s) %s", strings.Join(path, "."), is.Code, is.Message)
		if is.Code == "invalid_type" {
			d = fmt.Sprintf("Error in key path %q: (invalid_type) Expected %s but received %s.", strings.Join(path, "."), is.Expected, is.Received)
		}
		details = append(details, d)
	}
	return &apiError{
		Code:    "guard.invalid_input",
		Data:    map[string]any{"issues": issues, "name": "ZodError"},
		Details: strings.Join(details, "\n"),
		Message: "The request body is invalid.",
	}
}

// body is a parsed JSON object request body.
type body map[string]json.RawMessage

// readBody reads a bounded JSON object body. A request without a JSON content type has an
// empty body, as with koa-body. The status is 413 or 400 on failure.
func readBody(w http.ResponseWriter, r *http.Request) (body, int, *apiError) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, errTooLarge
		}
		return nil, http.StatusBadRequest, invalidInput(zodIssue{Code: "custom", Path: []any{}, Message: "Could not read the request body"})
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return body{}, 0, nil
	}
	// koa-body (strict) parses first: anything but a JSON object or array is its 400 with a
	// message and no code.
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && (!json.Valid(trimmed) || (trimmed[0] != '{' && trimmed[0] != '[')) {
		return nil, http.StatusBadRequest, errInvalidJSON
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var b body
	if err := dec.Decode(&b); err != nil || b == nil {
		return nil, http.StatusBadRequest, invalidInput(zodIssue{Code: "invalid_type", Expected: "object", Received: jsonType(bytes.TrimSpace(raw)), Path: []any{}, Message: "Expected object"})
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, http.StatusBadRequest, invalidInput(zodIssue{Code: "custom", Path: []any{}, Message: "Unexpected data after the JSON body"})
	}
	return b, 0, nil
}

// jsonType names a JSON value's type the way zod reports it.
func jsonType(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "undefined"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// field describes one body member for check.
type field struct {
	name     string
	typ      string // string, object, boolean, strings (array of non-empty strings)
	required bool
	nullable bool
	min, max int // bounds on a string's length or an array's size; 0 is none
}

// check validates b against fields, returning zod-like issues.
func (b body) check(fields ...field) []zodIssue {
	var issues []zodIssue
	for _, f := range fields {
		raw, ok := b[f.name]
		got := jsonType(raw)
		switch {
		case !ok:
			if f.required {
				issues = append(issues, zodIssue{Code: "invalid_type", Expected: zodExpected(f.typ), Received: "undefined", Path: []any{f.name}, Message: "Required"})
			}
		case got == "null" && f.nullable:
		case f.typ == "strings":
			if got != "array" {
				issues = append(issues, typeIssue(f.name, "array", got))
				break
			}
			var items []json.RawMessage
			json.Unmarshal(raw, &items)
			for i, it := range items {
				var s string
				if jsonType(it) != "string" {
					issues = append(issues, zodIssue{Code: "invalid_type", Expected: "string", Received: jsonType(it), Path: []any{f.name, i}, Message: "Expected string, received " + jsonType(it)})
				} else if json.Unmarshal(it, &s); s == "" {
					issues = append(issues, zodIssue{Code: "too_small", Path: []any{f.name, i}, Message: "String must contain at least 1 character(s)"})
				}
			}
			if f.min > 0 && len(items) < f.min {
				issues = append(issues, sizeIssue(f.name, "array", true, f.min))
			}
		case f.typ == "string" && got == "string":
			var s string
			json.Unmarshal(raw, &s)
			if n := len([]rune(s)); f.min > 0 && n < f.min {
				issues = append(issues, sizeIssue(f.name, "string", true, f.min))
			} else if f.max > 0 && n > f.max {
				issues = append(issues, sizeIssue(f.name, "string", false, f.max))
			}
		case got != zodExpected(f.typ):
			issues = append(issues, typeIssue(f.name, zodExpected(f.typ), got))
		}
	}
	return issues
}

func zodExpected(typ string) string {
	if typ == "strings" {
		return "array"
	}
	return typ
}

func typeIssue(name, want, got string) zodIssue {
	return zodIssue{Code: "invalid_type", Expected: want, Received: got, Path: []any{name}, Message: fmt.Sprintf("Expected %s, received %s", want, got)}
}

func (b body) str(name string) (string, bool) {
	var s string
	raw, ok := b[name]
	if !ok || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func (b body) strPtr(name string) *string {
	if s, ok := b.str(name); ok {
		return &s
	}
	return nil
}

func (b body) strs(name string) []string {
	var out []string
	json.Unmarshal(b[name], &out)
	return out
}

// compactObject returns the body member as compact JSON.
func (b body) compactObject(name string) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b[name]); err != nil {
		return []byte("{}")
	}
	return buf.Bytes()
}

// pagination parses Logto's page and page_size.
type pagination struct {
	page, size int
}

func parsePagination(q url.Values) (pagination, bool) {
	p := pagination{page: 1, size: 20}
	parse := func(name string, dst *int, max int) bool {
		if !q.Has(name) {
			return true
		}
		n, err := strconv.Atoi(q.Get(name))
		if err != nil || n < 1 || (max > 0 && n > max) {
			return false
		}
		*dst = n
		return true
	}
	return p, parse("page", &p.page, 0) && parse("page_size", &p.size, 100)
}

// paginate slices items for p and sets Total-Number and Link like Logto does: Link points at
// Logto's own host without /api, keeps the original query and sets page in place.
func paginate[T any](s *Server, w http.ResponseWriter, r *http.Request, p pagination, items []T) []T {
	total := len(items)
	last := max(1, (total+p.size-1)/p.size)
	link := func(page int, rel string) string {
		q := setParam(r.URL.RawQuery, "page", strconv.Itoa(page))
		return fmt.Sprintf(`<%s%s?%s>; rel="%s"`, s.baseURL, strings.TrimPrefix(r.URL.EscapedPath(), "/api"), q, rel)
	}
	links := []string{link(1, "first"), link(last, "last")}
	if p.page > 1 {
		links = append(links, link(min(p.page-1, last), "prev"))
	}
	if p.page < last {
		links = append(links, link(p.page+1, "next"))
	}
	w.Header().Set("Total-Number", strconv.Itoa(total))
	w.Header().Set("Link", strings.Join(links, ", "))
	if p.page-1 > total/p.size { // also keeps (page-1)*size from overflowing
		return items[:0]
	}
	start := min((p.page-1)*p.size, total)
	return items[start:min(start+p.size, total)]
}

// setParam sets key=value in a raw query like URLSearchParams.set: in place of the first
// occurrence (dropping the others), else appended.
func setParam(raw, key, value string) string {
	var parts []string
	done := false
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, _, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == key {
			if done {
				continue
			}
			part, done = key+"="+url.QueryEscape(value), true
		}
		parts = append(parts, part)
	}
	if !done {
		parts = append(parts, key+"="+url.QueryEscape(value))
	}
	return strings.Join(parts, "&")
}

func matchesQuery(q string, fields ...*string) bool {
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	for _, f := range fields {
		if f != nil && strings.Contains(strings.ToLower(*f), q) {
			return true
		}
	}
	return false
}

// Organizations.

func (s *Server) listOrganizations(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	q := r.URL.Query().Get("q")
	s.mu.Lock()
	var all []orgJSON
	for _, o := range s.t.sortedOrgs() {
		if matchesQuery(q, &o.id, &o.name, o.description) {
			all = append(all, o.json())
		}
	}
	s.mu.Unlock()
	page := paginate(s, w, r, p, all)
	writeJSON(w, http.StatusOK, nonNil(page))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

var orgFields = []field{
	{name: "name", typ: "string", min: 1, max: 128},
	{name: "description", typ: "string", nullable: true},
	{name: "customData", typ: "object"},
	{name: "isMfaRequired", typ: "boolean"},
	{name: "color", typ: "object"},
	{name: "branding", typ: "object"},
	{name: "customCss", typ: "string", nullable: true},
}

func (s *Server) createOrganization(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	fields := slices.Clone(orgFields)
	fields[0].required = true
	if issues := b.check(fields...); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	s.mu.Lock()
	name, _ := b.str("name")
	o := s.addOrgLocked("", name)
	s.applyOrgBody(o, b)
	out := o.json()
	s.emit(r, hookEvent{event: EventOrganizationCreated, status: http.StatusCreated, data: out})
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

// applyOrgBody sets the members present in b; customData is replaced whole, as Logto does.
func (s *Server) applyOrgBody(o *organization, b body) {
	if v, ok := b.str("name"); ok {
		o.name = v
	}
	if _, ok := b["description"]; ok {
		o.description = b.strPtr("description")
	}
	if _, ok := b["customData"]; ok {
		o.customData = b.compactObject("customData")
	}
	if raw, ok := b["isMfaRequired"]; ok {
		json.Unmarshal(raw, &o.isMfaRequired)
	}
	if _, ok := b["color"]; ok {
		o.color = b.compactObject("color")
	}
	if _, ok := b["branding"]; ok {
		o.branding = b.compactObject("branding")
	}
	if _, ok := b["customCss"]; ok {
		o.customCSS = b.strPtr("customCss")
	}
}

func (s *Server) getOrganization(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	o := s.t.orgs[id]
	var out orgJSON
	if o != nil {
		out = o.json()
	}
	s.mu.Unlock()
	if o == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("organizations", id))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) patchOrganization(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	if issues := b.check(orgFields...); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	// zod strips unknown keys; an update left with nothing to set is Logto's 422.
	if !slices.ContainsFunc(orgFields, func(f field) bool { _, ok := b[f.name]; return ok }) {
		writeJSON(w, http.StatusUnprocessableEntity, errEmptyUpdate)
		return
	}
	s.mu.Lock()
	o := s.t.orgs[r.PathValue("id")]
	var out orgJSON
	if o != nil {
		s.applyOrgBody(o, b)
		out = o.json()
		s.emit(r, hookEvent{event: EventOrganizationDataUpdated, status: http.StatusOK, params: map[string]string{"id": o.id}, data: out})
	}
	s.mu.Unlock()
	if o == nil {
		writeJSON(w, http.StatusNotFound, &apiError{Code: "entity.not_exists", Message: "The organization does not exist."})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteOrganization(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	id := r.PathValue("id")
	o := s.t.orgs[id]
	delete(s.t.orgs, id)
	if o != nil {
		s.emit(r, hookEvent{event: EventOrganizationDeleted, status: http.StatusNoContent, params: map[string]string{"id": id}})
	}
	s.mu.Unlock()
	if o == nil {
		writeJSON(w, http.StatusNotFound, errEntityNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Members.

type memberJSON struct {
	userJSON
	OrganizationRoles []roleRef `json:"organizationRoles"`
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	q := r.URL.Query().Get("q")
	s.mu.Lock()
	var all []memberJSON
	if o := s.t.orgs[r.PathValue("id")]; o != nil {
		// Logto promises no order; the recorded server answered in user-ID order (more/).
		for _, uid := range slices.Sorted(slices.Values(o.members)) {
			u := s.t.users[uid]
			if u == nil || !matchesQuery(q, &u.id, &u.username, u.name, u.primaryEmail) {
				continue
			}
			all = append(all, memberJSON{u.json(), s.roleRefs(o.memberRoles[uid])})
		}
	}
	s.mu.Unlock()
	page := paginate(s, w, r, p, all)
	writeJSON(w, http.StatusOK, nonNil(page))
}

func (s *Server) addMembers(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	if issues := b.check(field{name: "userIds", typ: "strings", required: true, min: 1}); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	ids := b.strs("userIds")
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.t.orgs[r.PathValue("id")]
	if o == nil || !s.allUsersExist(ids) {
		writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
		return
	}
	for _, id := range ids {
		if !o.isMember(id) {
			o.members = append(o.members, id)
		}
	}
	// Like Logto, the event names the organization but not the users added.
	s.emit(r, hookEvent{event: EventOrganizationMembershipUpdated, status: http.StatusCreated,
		params: map[string]string{"id": o.id}, extra: map[string]any{"organizationId": o.id}})
	writeText(w, http.StatusCreated, "Created")
}

func (s *Server) allUsersExist(ids []string) bool {
	for _, id := range ids {
		if s.t.users[id] == nil {
			return false
		}
	}
	return true
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, uid := s.t.orgs[r.PathValue("id")], r.PathValue("userId")
	if o == nil || !o.isMember(uid) {
		writeJSON(w, http.StatusNotFound, errEntityNotFound)
		return
	}
	o.members = slices.DeleteFunc(o.members, func(id string) bool { return id == uid })
	delete(o.memberRoles, uid) // Logto drops the member's organization roles with the membership
	s.emit(r, hookEvent{event: EventOrganizationMembershipUpdated, status: http.StatusNoContent,
		params: map[string]string{"id": o.id, "userId": uid}, extra: map[string]any{"organizationId": o.id}})
	w.WriteHeader(http.StatusNoContent)
}

// Member roles.

var roleBodyFields = []field{
	{name: "organizationRoleIds", typ: "strings"},
	{name: "organizationRoleNames", typ: "strings"},
}

// resolveRoles turns a body's organizationRoleIds and organizationRoleNames into role IDs;
// s.mu is held.
func (s *Server) resolveRoles(b body) ([]string, *apiError) {
	var ids []string
	for _, id := range b.strs("organizationRoleIds") {
		if s.t.orgRoles[id] == nil {
			return nil, errForeignKey
		}
		ids = appendNew(ids, id)
	}
	var missing []string
	for _, n := range b.strs("organizationRoleNames") {
		if r := s.t.orgRoleByName(n); r != nil {
			ids = appendNew(ids, r.id)
		} else {
			missing = append(missing, n)
		}
	}
	if missing != nil {
		return nil, &apiError{Code: "organization.role_names_not_found", Message: fmt.Sprintf("Invalid role names detected: %s. Please create these roles first before proceeding.", strings.Join(missing, ", "))}
	}
	return ids, nil
}

// changeMemberRoles parses a roles body, checks membership and the roles, and applies change
// to the member's role IDs under the lock.
func (s *Server) changeMemberRoles(w http.ResponseWriter, r *http.Request, change func(have, ids []string) []string) bool {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return false
	}
	if issues := b.check(roleBodyFields...); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, uid := s.t.orgs[r.PathValue("id")], r.PathValue("userId")
	if o == nil || !o.isMember(uid) {
		writeJSON(w, http.StatusUnprocessableEntity, errRequireMember)
		return false
	}
	ids, e := s.resolveRoles(b)
	if e != nil {
		writeJSON(w, http.StatusUnprocessableEntity, e)
		return false
	}
	o.memberRoles[uid] = change(o.memberRoles[uid], ids)
	return true
}

func (s *Server) getMemberRoles(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(r.URL.Query())
	if !ok {
		writeJSON(w, http.StatusBadRequest, errPagination)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, uid := s.t.orgs[r.PathValue("id")], r.PathValue("userId")
	if o == nil || !o.isMember(uid) {
		writeJSON(w, http.StatusUnprocessableEntity, errRequireMember)
		return
	}
	// Newest assignment first, as the recorded server answered (38, 97).
	out := []orgRoleJSON{}
	for _, id := range slices.Backward(o.memberRoles[uid]) {
		if role := s.t.orgRoles[id]; role != nil {
			out = append(out, role.json())
		}
	}
	// Paged like every list (direct/004), though without page or page_size Logto still sends
	// the whole list.
	if r.URL.Query().Has("page") || r.URL.Query().Has("page_size") {
		out = paginate(s, w, r, p, out)
	}
	writeJSON(w, http.StatusOK, nonNil(out))
}

func (s *Server) addMemberRoles(w http.ResponseWriter, r *http.Request) {
	if s.changeMemberRoles(w, r, func(have, ids []string) []string { return appendNew(have, ids...) }) {
		writeText(w, http.StatusCreated, "Created")
	}
}

// replaceMemberRoles is PUT: the body's roles replace the member's whole set.
func (s *Server) replaceMemberRoles(w http.ResponseWriter, r *http.Request) {
	if s.changeMemberRoles(w, r, func(_, ids []string) []string { return ids }) {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) removeMemberRole(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, uid, rid := s.t.orgs[r.PathValue("id")], r.PathValue("userId"), r.PathValue("roleId")
	if o == nil || !slices.Contains(o.memberRoles[uid], rid) {
		writeJSON(w, http.StatusNotFound, errEntityNotFound)
		return
	}
	o.memberRoles[uid] = slices.DeleteFunc(o.memberRoles[uid], func(id string) bool { return id == rid })
	w.WriteHeader(http.StatusNoContent)
}

// addMembersRoles is the bulk form: every listed user gets every listed role.
func (s *Server) addMembersRoles(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	if issues := b.check(field{name: "userIds", typ: "strings", required: true}, field{name: "organizationRoleIds", typ: "strings", required: true}); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.t.orgs[r.PathValue("id")]
	users := b.strs("userIds")
	if o == nil {
		writeJSON(w, http.StatusUnprocessableEntity, errForeignKey)
		return
	}
	for _, uid := range users {
		if !o.isMember(uid) {
			writeJSON(w, http.StatusUnprocessableEntity, errRequireMember)
			return
		}
	}
	ids, e := s.resolveRoles(b)
	if e != nil {
		writeJSON(w, http.StatusUnprocessableEntity, e)
		return
	}
	for _, uid := range users {
		o.memberRoles[uid] = appendNew(o.memberRoles[uid], ids...)
	}
	writeText(w, http.StatusCreated, "Created")
}

// Users.

type userDetailJSON struct {
	userJSON
	HasPassword bool `json:"hasPassword"`
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	if issues := b.check(
		field{name: "username", typ: "string"}, field{name: "primaryEmail", typ: "string"},
		field{name: "name", typ: "string"}, field{name: "password", typ: "string"},
	); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	username, _ := b.str("username")
	if username != "" && s.t.userByName(username) != nil {
		writeJSON(w, http.StatusUnprocessableEntity, &apiError{Code: "user.username_already_in_use", Message: "This username is already in use."})
		return
	}
	id := s.pickID("user", "", shortIDLen, func(id string) bool { return s.t.users[id] != nil })
	now := s.now().UnixMilli()
	_, hasPassword := b["password"]
	u := &user{id: id, username: username, name: b.strPtr("name"), primaryEmail: b.strPtr("primaryEmail"), hasPassword: hasPassword, createdAt: now, updatedAt: now}
	s.t.users[id] = u
	writeJSON(w, http.StatusOK, userDetailJSON{u.json(), u.hasPassword})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.userOr404(w, r.PathValue("id")); u != nil {
		writeJSON(w, http.StatusOK, userDetailJSON{u.json(), u.hasPassword})
	}
}

// userOr404 returns the user, or answers Logto's 404 and returns nil; s.mu is held.
func (s *Server) userOr404(w http.ResponseWriter, id string) *user {
	u := s.t.users[id]
	if u == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("users", id))
	}
	return u
}

// deleteUser removes the user and, as Logto's foreign keys cascade, their memberships.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PathValue("userId")
	u := s.userOr404(w, id)
	if u == nil {
		return
	}
	s.emit(r, hookEvent{event: EventUserDeleted, status: http.StatusNoContent, params: map[string]string{"userId": id}, data: u.json()})
	delete(s.t.users, id)
	for _, o := range s.t.orgs {
		o.members = slices.DeleteFunc(o.members, func(m string) bool { return m == id })
		delete(o.memberRoles, id)
	}
	w.WriteHeader(http.StatusNoContent)
}

type userOrgJSON struct {
	orgJSON
	OrganizationRoles []roleRef `json:"organizationRoles"`
}

func (s *Server) getUserOrganizations(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid := r.PathValue("id")
	if s.t.users[uid] == nil {
		writeJSON(w, http.StatusNotFound, errEntityNotFound)
		return
	}
	out := []userOrgJSON{}
	for _, o := range s.t.sortedOrgs() {
		if o.isMember(uid) {
			out = append(out, userOrgJSON{o.json(), s.roleRefs(o.memberRoles[uid])})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) assignUserRoles(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	if issues := b.check(field{name: "roleIds", typ: "strings", required: true}); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	uid := r.PathValue("id")
	u := s.t.users[uid]
	if u == nil {
		writeJSON(w, http.StatusNotFound, notExistsWithID("users", uid))
		return
	}
	ids := b.strs("roleIds")
	added := []string{}
	for _, id := range ids {
		if s.t.globalRoles[id] == nil {
			writeJSON(w, http.StatusNotFound, notExistsWithID("roles", id))
			return
		}
	}
	for _, id := range ids {
		if !slices.Contains(u.globalRoles, id) {
			u.globalRoles = append(u.globalRoles, id)
			added = append(added, id)
		}
	}
	writeJSON(w, http.StatusCreated, map[string][]string{"roleIds": ids, "addedRoleIds": added})
}

// Subject tokens.

func (s *Server) createSubjectToken(w http.ResponseWriter, r *http.Request) {
	b, status, e := readBody(w, r)
	if e != nil {
		writeJSON(w, status, e)
		return
	}
	if issues := b.check(field{name: "userId", typ: "string", required: true}, field{name: "context", typ: "object"}); issues != nil {
		writeJSON(w, http.StatusBadRequest, invalidInput(issues...))
		return
	}
	uid, _ := b.str("userId")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t.users[uid] == nil {
		writeJSON(w, http.StatusNotFound, errForeignKey) // the insert's foreign key fails
		return
	}
	tok := s.newSubjectTokenLocked(uid)
	writeJSON(w, http.StatusCreated, struct {
		SubjectToken string `json:"subjectToken"`
		ExpiresIn    int64  `json:"expiresIn"`
	}{tok, int64(s.cfg.SubjectTokenTTL.Seconds())})
}
