package fakelogto

import (
	"encoding/json"
	"net/http"
	"strings"
)

// discoveryTemplate is the discovery document a Logto OSS 1.37 tenant serves
// (logto-real/01-default-openid-configuration.json), key order kept, with {{BASE}} for the
// server's base URL.
const discoveryTemplate = `{"authorization_endpoint":"{{BASE}}/oidc/auth","claims_parameter_supported":false,"claims_supported":["sub","name","family_name","given_name","middle_name","nickname","preferred_username","profile","picture","website","gender","birthdate","zoneinfo","locale","updated_at","username","created_at","email","email_verified","phone_number","phone_number_verified","address","custom_data","identities","sso_identities","roles","organizations","organization_data","organization_roles","sid","auth_time","iss"],"code_challenge_methods_supported":["S256"],"end_session_endpoint":"{{BASE}}/oidc/session/end","grant_types_supported":["implicit","authorization_code","refresh_token","client_credentials","urn:ietf:params:oauth:grant-type:token-exchange"],"issuer":"{{BASE}}/oidc","jwks_uri":"{{BASE}}/oidc/jwks","authorization_response_iss_parameter_supported":true,"response_modes_supported":["form_post","fragment","query"],"response_types_supported":["code id_token","code","id_token","none"],"scopes_supported":["openid","offline_access","profile","email","phone","address","custom_data","identities","roles","urn:logto:scope:organizations","urn:logto:scope:organization_roles","urn:logto:scope:sessions"],"subject_types_supported":["public"],"token_endpoint_auth_methods_supported":["client_secret_basic","client_secret_jwt","client_secret_post","private_key_jwt","none"],"token_endpoint_auth_signing_alg_values_supported":["HS256","RS256","PS256","ES256","EdDSA"],"token_endpoint":"{{BASE}}/oidc/token","id_token_signing_alg_values_supported":["ES384"],"pushed_authorization_request_endpoint":"{{BASE}}/oidc/request","request_parameter_supported":false,"request_uri_parameter_supported":false,"userinfo_endpoint":"{{BASE}}/oidc/me","introspection_endpoint":"{{BASE}}/oidc/token/introspection","revocation_endpoint":"{{BASE}}/oidc/token/revocation","backchannel_logout_supported":true,"backchannel_logout_session_supported":true,"claim_types_supported":["normal"]}`

// oidcScopes are the scopes_supported of the discovery document: what a token exchange
// without resource or organization may grant (for an opaque userinfo token).
var oidcScopes = []string{"openid", "offline_access", "profile", "email", "phone", "address", "custom_data",
	"identities", "roles", "urn:logto:scope:organizations", "urn:logto:scope:organization_roles", "urn:logto:scope:sessions"}

func (s *Server) serveDiscovery(w http.ResponseWriter, _ *http.Request, _ Fault) {
	quoted, _ := json.Marshal(s.baseURL)
	doc := strings.ReplaceAll(discoveryTemplate, "{{BASE}}", string(quoted[1:len(quoted)-1]))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write([]byte(doc))
}
