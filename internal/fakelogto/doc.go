// Package fakelogto is an in-process emulator of a Logto OSS tenant for tests and local
// development. It is not a product package: nothing outside tests/ and cmd/fakelogto may
// import it.
//
// It serves what orgauthz talks to, shaped like the real Logto 1.37 server recorded in
// shared/logto-real: the OIDC discovery document and JWKS, the token endpoint
// (client credentials for M2M apps, token exchange of subject tokens for user tokens of the
// four kinds), subject tokens, and the organization part of the Management API with Logto's
// status codes, error bodies, Total-Number and Link headers. Tokens are ES384 JWTs with
// Logto's header and claim order; keys rotate (current, previous) and may be RSA. Faults
// (down, slow, 429, 5xx, reset, bad key sets) can be injected per target and requests are
// counted.
//
// Usage:
//
//	srv, err := fakelogto.New(fakelogto.Config{}) // binds 127.0.0.1:0
//	if err != nil { t.Fatal(err) }
//	t.Cleanup(func() { srv.Close() })
//	srv.AddM2MApp("m2mapp0000000000000001", "m2m-secret") // may call the Management API
//	alice := srv.AddUser("", "alice")
//	acme := srv.AddOrganization("", "Acme")
//	srv.AddOrgRole("admin", "org:read", "member:add")
//	srv.AddMember(acme, alice, "admin")
//	if err := srv.Start(); err != nil { t.Fatal(err) }
//
//	// Issuer for the verifier, a user token the way a token exchange would issue it:
//	issuer := srv.Issuer() // http://127.0.0.1:port/oidc
//	tok, err := srv.IssueUserToken(fakelogto.UserTokenRequest{
//		UserID: alice, OrganizationID: acme, Scopes: []string{"org:read"}})
//
//	// Hostile tokens and failures:
//	bad := srv.SignToken(map[string]any{"alg": "none"}, srv.Claims(alice, "app", "https://api.example.com", ""))
//	srv.SetFault(fakelogto.TargetJWKS, fakelogto.Slow(5*time.Second))
//	n := srv.Calls(fakelogto.TargetJWKS)
//
// The Management API accepts only bearer tokens this server signed for its Management API
// resource (Config.ManagementResource) and, like Logto, answers 403 auth.forbidden to those
// without the "all" scope. It covers organizations, their members and member roles, users (create,
// get, organizations, global roles), subject tokens, and the setup endpoints for
// organization permissions and roles, API resources and their permissions, global roles and
// applications (M2M and traditional), so a tenant can be set up by script as on a real Logto
// or with the Add… methods. The replay tests run 111 of the 114 recorded exchanges (values
// compared) and 279 of the 282 of logto-real/more (status, paging headers, error code, body
// shape); the skipped ones are named with their reason. AddM2MAppWithoutRole (and the demo's
// noRoleM2MApp) reproduces an M2M app that lacks the Management API role.
//
// Webhooks: hooks registered with POST /api/hooks (Logto's shape) or AddHook get Logto's
// deliveries (headers, logto-signature-sha-256 HMAC, body) for the changes the emulator
// serves, asynchronously and once; see webhooks.go for the events.
//
// Known differences from Logto: only client credentials and token exchange are implemented
// (no authorization code or refresh token grants, no admin tenant), organization tokens use
// Config.TokenTTL, and endpoints other than the above answer 404.
package fakelogto
