package fakelogto

// Demo is the small tenant SeedDemo creates, with fixed IDs so scripts, docs and `make run`
// can name them. The secrets are development-only values.
type Demo struct {
	URL                string            `json:"url"`
	Issuer             string            `json:"issuer"`
	ManagementResource string            `json:"managementResource"`
	APIResource        string            `json:"apiResource"`
	AdminResource      string            `json:"adminResource"`
	M2MApp             DemoApp           `json:"m2mApp"`
	NoRoleM2MApp       DemoApp           `json:"noRoleM2MApp"` // an M2M app without the Management API role
	TrafficApp         DemoApp           `json:"trafficApp"`
	Users              map[string]string `json:"users"`         // username → user ID
	Organizations      map[string]string `json:"organizations"` // name → organization ID
	OrgRoles           map[string]string `json:"orgRoles"`      // name → organization role ID
	GlobalRoles        map[string]string `json:"globalRoles"`   // name → role ID
}

// DemoApp is an application's credentials.
type DemoApp struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// Fixed IDs and development-only secrets of the demo tenant.
const (
	DemoM2MAppID         = "mgmtproxydemoapp00001"
	DemoM2MAppSecret     = "dev-only-mgmtproxy-secret"
	DemoNoRoleAppID      = "norolem2mdemoapp00001"
	DemoNoRoleAppSecret  = "dev-only-no-role-secret"
	DemoTrafficAppID     = "trafficdemoapp0000001"
	DemoTrafficAppSecret = "dev-only-traffic-secret"
	DemoAliceID          = "alice0000001"
	DemoBobID            = "bob000000001"
	DemoCarolID          = "carol0000001"
	DemoAcmeID           = "acme00000001"
	DemoAPIResource      = "https://api.example.com"
	DemoAdminResource    = "https://admin.example.com"
)

// Organization permissions of the demo roles.
var (
	demoAdminScopes  = []string{"org:read", "org:update", "member:read", "member:add", "member:remove", "member:role"}
	demoMemberScopes = []string{"org:read", "member:read"}
)

// SeedDemo creates the demo tenant:
//   - an M2M app for mgmtproxy (Management API "all"), an M2M app without that role (its
//     Management API calls answer 403, for misconfiguration tests) and a traffic app for
//     token exchange;
//   - users alice, bob and carol; organization acme with alice as "admin" (org:read
//     org:update member:read member:add member:remove member:role, also as permissions of
//     https://api.example.com) and bob as "member" (org:read member:read);
//   - https://api.example.com with org:create through the global role "org-creator" (alice);
//   - https://admin.example.com with admin:org:read admin:org:write through the global role
//     "super-admin" (carol).
//
// It panics if any of its fixed IDs is already taken.
func (s *Server) SeedDemo() Demo {
	s.AddM2MApp(DemoM2MAppID, DemoM2MAppSecret)
	s.AddM2MAppWithoutRole(DemoNoRoleAppID, DemoNoRoleAppSecret)
	s.AddTrafficApp(DemoTrafficAppID, DemoTrafficAppSecret)
	s.AddUser(DemoAliceID, "alice", WithName("Alice"), WithEmail("alice@example.com"))
	s.AddUser(DemoBobID, "bob", WithName("Bob"), WithEmail("bob@example.com"))
	s.AddUser(DemoCarolID, "carol", WithName("Carol"), WithEmail("carol@example.com"))
	s.AddOrganization(DemoAcmeID, "acme")
	admin := s.AddOrgRoleWithID("orgroleadmin000000001", "admin", demoAdminScopes...)
	member := s.AddOrgRoleWithID("orgrolemember00000001", "member", demoMemberScopes...)
	s.AddOrgRoleAPIScopes("admin", DemoAPIResource, demoAdminScopes...)
	s.AddOrgRoleAPIScopes("member", DemoAPIResource, demoMemberScopes...)
	s.AddMember(DemoAcmeID, DemoAliceID, "admin")
	s.AddMember(DemoAcmeID, DemoBobID, "member")
	creator := s.AddGlobalRoleWithID("roleorgcreator0000001", "org-creator", DemoAPIResource, "org:create")
	super := s.AddGlobalRoleWithID("rolesuperadmin0000001", "super-admin", DemoAdminResource, "admin:org:read", "admin:org:write")
	s.AssignGlobalRole(DemoAliceID, "org-creator")
	s.AssignGlobalRole(DemoCarolID, "super-admin")
	return Demo{
		URL:                s.URL(),
		Issuer:             s.Issuer(),
		ManagementResource: s.ManagementResource(),
		APIResource:        DemoAPIResource,
		AdminResource:      DemoAdminResource,
		M2MApp:             DemoApp{DemoM2MAppID, DemoM2MAppSecret},
		NoRoleM2MApp:       DemoApp{DemoNoRoleAppID, DemoNoRoleAppSecret},
		TrafficApp:         DemoApp{DemoTrafficAppID, DemoTrafficAppSecret},
		Users:              map[string]string{"alice": DemoAliceID, "bob": DemoBobID, "carol": DemoCarolID},
		Organizations:      map[string]string{"acme": DemoAcmeID},
		OrgRoles:           map[string]string{"admin": admin, "member": member},
		GlobalRoles:        map[string]string{"org-creator": creator, "super-admin": super},
	}
}
