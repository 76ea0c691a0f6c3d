package fakelogto

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"
)

// The tenant ID every entity carries; Logto OSS has a single tenant named "default".
const tenantID = "default"

// Logto's generated IDs: organizations and users have 12 characters, roles, scopes and
// applications 21, all from [0-9a-z].
const (
	shortIDLen = 12
	longIDLen  = 21
)

var idPattern = regexp.MustCompile(`^[0-9a-z]{1,64}$`)

// newID returns a random ID of n characters from [0-9a-z], as Logto generates them.
func newID(n int) string {
	return randomString("0123456789abcdefghijklmnopqrstuvwxyz", n)
}

// randomString returns n characters drawn uniformly from alphabet (at most 256 symbols).
func randomString(alphabet string, n int) string {
	limit := 256 - 256%len(alphabet) // reject bytes that would bias the modulo
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:]) // never fails (crypto/rand panics on its own if it cannot read)
		for _, c := range buf {
			if int(c) < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}

type user struct {
	id           string
	username     string
	name         *string
	primaryEmail *string
	hasPassword  bool
	createdAt    int64
	updatedAt    int64
	globalRoles  []string // role IDs
}

type organization struct {
	id            string
	name          string
	description   *string
	customData    json.RawMessage
	isMfaRequired bool
	color         json.RawMessage
	branding      json.RawMessage
	customCSS     *string
	createdAt     int64
	members       []string            // user IDs in the order they joined
	memberRoles   map[string][]string // user ID → organization role IDs
	apps          map[string][]string // application ID → organization role IDs
}

func (o *organization) isMember(userID string) bool { return slices.Contains(o.members, userID) }

// Role types, for organization roles and global roles alike.
const (
	roleTypeUser    = "User"
	roleTypeMachine = "MachineToMachine"
)

type orgRole struct {
	id             string
	name           string
	description    *string
	typ            string
	scopes         []string            // organization permission names
	resourceScopes map[string][]string // API resource indicator → permissions
}

// scope is a permission entity: an organization permission (resourceID "") or a permission
// of an API resource.
type scope struct {
	id          string
	resourceID  string
	name        string
	description *string
	createdAt   int64
}

type apiResource struct {
	id             string
	name           string
	indicator      string
	accessTokenTTL int64
	seq            int64
	scopes         []*scope
}

func (r *apiResource) scopeNamed(name string) *scope {
	for _, sc := range r.scopes {
		if sc.name == name {
			return sc
		}
	}
	return nil
}

type globalRole struct {
	id          string
	name        string
	description *string
	typ         string
	scopes      map[string][]string // API resource indicator → permissions
}

// Application kinds.
const (
	appM2M         = "MachineToMachine"
	appTraditional = "Traditional"
)

type application struct {
	id                   string
	secret               string
	typ                  string
	name                 string
	description          *string
	oidcClientMetadata   json.RawMessage
	customClientMetadata json.RawMessage
	createdAt            int64
	seq                  int64
	// tokenExchange is customClientMetadata.allowTokenExchange of a traditional app.
	tokenExchange bool
	// managementAPI is set by AddM2MApp: the app holds the Management API "all" scope without
	// a visible role (apps created through the API get it from a role instead).
	managementAPI bool
	globalRoles   []string // role IDs
}

type subjectToken struct {
	userID    string
	expiresAt time.Time
	consumed  bool
}

// tenant is the emulator's data, guarded by Server.mu.
type tenant struct {
	seq         int64             // creation counter, for Logto's listing orders
	permissions map[string]*scope // organization permissions by name
	users       map[string]*user
	orgs        map[string]*organization
	orgRoles    map[string]*orgRole // by ID
	resources   map[string]*apiResource
	globalRoles map[string]*globalRole // by ID
	apps        map[string]*application
	subjects    map[string]*subjectToken
}

// Logto's built-in Management API resource and its one scope.
const (
	managementResourceID = "management-api"
	managementScopeID    = "management-api-all"
)

func newTenant(managementIndicator string, now int64) *tenant {
	t := &tenant{
		permissions: map[string]*scope{},
		users:       map[string]*user{},
		orgs:        map[string]*organization{},
		orgRoles:    map[string]*orgRole{},
		resources:   map[string]*apiResource{},
		globalRoles: map[string]*globalRole{},
		apps:        map[string]*application{},
		subjects:    map[string]*subjectToken{},
	}
	desc := "Default scope for Management API, allows all permissions."
	t.resources[managementIndicator] = &apiResource{
		id: managementResourceID, name: "Logto Management API", indicator: managementIndicator,
		accessTokenTTL: 3600, seq: t.next(),
		scopes: []*scope{{id: managementScopeID, resourceID: managementResourceID, name: "all", description: &desc, createdAt: now}},
	}
	return t
}

func (t *tenant) next() int64 {
	t.seq++
	return t.seq
}

// permission returns the organization permission called name, creating it if needed.
func (t *tenant) permission(name string, now int64) *scope {
	p := t.permissions[name]
	if p == nil {
		p = &scope{id: newID(longIDLen), name: name, createdAt: now}
		t.permissions[name] = p
	}
	return p
}

// resourceScope finds an API resource permission by ID.
func (t *tenant) resourceScope(id string) (*apiResource, *scope) {
	for _, r := range t.resources {
		for _, sc := range r.scopes {
			if sc.id == id {
				return r, sc
			}
		}
	}
	return nil, nil
}

func (t *tenant) resourceByID(id string) *apiResource {
	for _, r := range t.resources {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (t *tenant) orgRoleByName(name string) *orgRole {
	for _, r := range t.orgRoles {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (t *tenant) globalRoleByName(name string) *globalRole {
	for _, r := range t.globalRoles {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (t *tenant) userByName(username string) *user {
	for _, u := range t.users {
		if u.username == username {
			return u
		}
	}
	return nil
}

// sortedOrgs returns the organizations newest first, as Logto lists them.
func (t *tenant) sortedOrgs() []*organization {
	out := make([]*organization, 0, len(t.orgs))
	for _, o := range t.orgs {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].createdAt != out[j].createdAt {
			return out[i].createdAt > out[j].createdAt
		}
		return out[i].id > out[j].id
	})
	return out
}

// orgScopes is the union of the organization permissions of roleIDs.
func (t *tenant) orgScopes(roleIDs []string) []string {
	var out []string
	for _, id := range roleIDs {
		if r := t.orgRoles[id]; r != nil {
			out = appendNew(out, r.scopes...)
		}
	}
	return out
}

// orgResourceScopes is the union of the API permissions for resource that roleIDs give.
func (t *tenant) orgResourceScopes(roleIDs []string, resource string) []string {
	var out []string
	for _, id := range roleIDs {
		if r := t.orgRoles[id]; r != nil {
			out = appendNew(out, r.resourceScopes[resource]...)
		}
	}
	return out
}

// userGlobalScopes is what a user's global API token may carry for resource: the user's
// global roles plus every permission for resource inherited from any of the user's
// organization roles (Logto folds these in, see LOGTO.md).
func (t *tenant) userGlobalScopes(userID, resource string) []string {
	var out []string
	if u := t.users[userID]; u != nil {
		for _, id := range u.globalRoles {
			if r := t.globalRoles[id]; r != nil {
				out = appendNew(out, r.scopes[resource]...)
			}
		}
	}
	for _, o := range t.sortedOrgs() {
		if o.isMember(userID) {
			out = appendNew(out, t.orgResourceScopes(o.memberRoles[userID], resource)...)
		}
	}
	return out
}

// appGlobalScopes is what an M2M app's API token may carry for resource.
func (t *tenant) appGlobalScopes(app *application, resource string) []string {
	var out []string
	for _, id := range app.globalRoles {
		if r := t.globalRoles[id]; r != nil {
			out = appendNew(out, r.scopes[resource]...)
		}
	}
	return out
}

// appendNew appends the elements of add that dst does not hold yet.
func appendNew(dst []string, add ...string) []string {
	for _, s := range add {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// intersect returns the requested scopes (in request order, without duplicates) that are in
// granted.
func intersect(requested, granted []string) []string {
	var out []string
	for _, s := range requested {
		if slices.Contains(granted, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func checkID(kind, id string) {
	if !idPattern.MatchString(id) {
		panic(fmt.Sprintf("fakelogto: %s ID %q must be 1–64 characters of [0-9a-z]", kind, id))
	}
}
