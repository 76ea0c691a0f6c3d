package fakelogto

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Grant types and token types of the token endpoint.
const (
	grantClientCredentials = "client_credentials"
	grantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// OrganizationAudience is the audience of organization tokens: this prefix and the org ID.
const OrganizationAudience = "urn:logto:organization:"

// maxFormBody bounds token request bodies.
const maxFormBody = 64 << 10

// oidcError is an error of the token endpoint, written the way Logto wraps oidc-provider's.
type oidcError struct {
	status      int
	err         string
	description string
}

func (e *oidcError) Error() string { return e.err + ": " + e.description }

// Logto's translations of oidc-provider errors; others get its generic message.
var oidcMessages = map[string]string{
	"invalid_target":         "Invalid resource indicator.",
	"unsupported_grant_type": "Unsupported `grant_type` requested.",
	"invalid_grant":          "Grant request is invalid.",
	"access_denied":          "Access denied.",
	"invalid_request":        "Request is invalid.",
}

func writeOIDCError(w http.ResponseWriter, e *oidcError) {
	msg, ok := oidcMessages[e.err]
	if !ok {
		msg = "An OIDC error occurred: oidc." + e.err + "."
	}
	body := struct {
		Code             string `json:"code"`
		Message          string `json:"message"`
		ErrorURI         string `json:"error_uri,omitempty"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}{Code: "oidc." + e.err, Message: msg, Error: e.err, ErrorDescription: e.description}
	if e.err == "invalid_grant" {
		body.ErrorURI = "https://openid.sh/debug/invalid_grant"
	}
	writeJSON(w, e.status, body)
}

func badRequest(err, description string) *oidcError {
	return &oidcError{status: http.StatusBadRequest, err: err, description: description}
}

var (
	errInvalidClient   = &oidcError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	errUnknownTarget   = badRequest("invalid_target", "resource indicator is missing, or unknown")
	errInvalidGrant    = badRequest("invalid_grant", "grant request is invalid")
	errNoTarget        = badRequest("invalid_target", "both `resource` and `organization_id` are not provided")
	errGrantNotAllowed = badRequest("unauthorized_client", "requested grant type is not allowed for this client")
)

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, f Fault) {
	w.Header().Set("Cache-Control", "no-store")
	form, oe := readForm(w, r)
	if oe != nil {
		writeOIDCError(w, oe)
		return
	}
	grant := form.Get("grant_type")
	switch grant {
	case "":
		writeOIDCError(w, badRequest("invalid_request", "missing required parameter 'grant_type'"))
		return
	case grantClientCredentials, grantTokenExchange:
	default:
		writeOIDCError(w, badRequest("unsupported_grant_type", "unsupported grant_type requested"))
		return
	}
	app, basic, oe := s.authenticateClient(r, form)
	if oe != nil {
		if oe.err == "invalid_client" && basic {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q, error="invalid_client", error_description=%q`, s.Issuer(), oe.description))
		}
		writeOIDCError(w, oe)
		return
	}
	var resp tokenResponse
	if grant == grantClientCredentials {
		resp, oe = s.clientCredentials(app, form)
	} else {
		resp, oe = s.tokenExchange(app, form)
	}
	if oe != nil {
		writeOIDCError(w, oe)
		return
	}
	resp.write(w, f)
}

// readForm reads a bounded application/x-www-form-urlencoded body in which no parameter
// repeats.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oidcError) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "only application/x-www-form-urlencoded content-type bodies are supported on POST /token")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &oidcError{http.StatusRequestEntityTooLarge, "invalid_request", "request body too large"}
		}
		return nil, badRequest("invalid_request", "could not read the request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("invalid_request", "could not parse the request body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, badRequest("invalid_request", fmt.Sprintf("'%s' parameter must not be provided twice", k))
		}
	}
	return form, nil
}

// authenticateClient finds the client from client_secret_basic or client_secret_post
// credentials; basic reports whether the Authorization header was used.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (app *application, basic bool, _ *oidcError) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 2.3.1: both parts are form-urlencoded before base64.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
		if form.Has("client_secret") {
			return nil, basic, badRequest("invalid_request", "client authentication must only be provided using one mechanism")
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			return nil, basic, badRequest("invalid_request", "mismatch in body and authorization client ids")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if id == "" {
			return nil, basic, badRequest("invalid_request", "no client authentication mechanism provided")
		}
	}
	s.mu.Lock()
	app = s.t.apps[id]
	s.mu.Unlock()
	if app == nil || subtle.ConstantTimeCompare([]byte(secret), []byte(app.secret)) != 1 {
		return nil, basic, errInvalidClient
	}
	return app, basic, nil
}

// splitScope splits a scope parameter on single spaces, as OAuth 2.0 defines it.
func splitScope(scope string) []string {
	var out []string
	for _, s := range strings.Split(scope, " ") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (s *Server) knownResource(indicator string) bool {
	return s.t.resources[indicator] != nil
}

// tokenResponse is a successful token endpoint answer.
type tokenResponse struct {
	accessToken string
	scope       []string
	// alwaysScope writes "scope" even when nothing was granted (token exchange does).
	alwaysScope bool
	exchange    bool // token exchange orders its keys differently
	expiresIn   int64
}

func (t tokenResponse) write(w http.ResponseWriter, f Fault) {
	m := map[string]any{"access_token": t.accessToken, "expires_in": t.expiresIn, "token_type": "Bearer"}
	if len(t.scope) > 0 || t.alwaysScope {
		m["scope"] = strings.Join(t.scope, " ")
	}
	switch f.Kind {
	case FaultNoExpiry:
		delete(m, "expires_in")
	case FaultZeroExpiry:
		m["expires_in"] = 0
	}
	order := []string{"access_token", "expires_in", "token_type", "scope"}
	if t.exchange {
		order = []string{"access_token", "expires_in", "scope", "token_type"}
	}
	b, err := encodeOrdered(m, order)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Code: "unknown", Message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}

func (s *Server) clientCredentials(app *application, form url.Values) (tokenResponse, *oidcError) {
	if app.typ != appM2M {
		return tokenResponse{}, errGrantNotAllowed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := grant{
		clientID:       app.id,
		subject:        app.id,
		organizationID: form.Get("organization_id"),
		resource:       form.Get("resource"),
		requested:      splitScope(form.Get("scope")),
	}
	if g.resource == "" && g.organizationID == "" {
		return tokenResponse{}, errNoTarget
	}
	if g.resource != "" && !s.knownResource(g.resource) {
		return tokenResponse{}, errUnknownTarget
	}
	var granted []string
	if g.organizationID != "" {
		org := s.t.orgs[g.organizationID]
		if org == nil || org.apps[app.id] == nil {
			return tokenResponse{}, &oidcError{http.StatusForbidden, "access_denied", "app has not associated with the organization"}
		}
		if g.resource == "" {
			granted = s.t.orgScopes(org.apps[app.id])
		} else {
			granted = s.t.orgResourceScopes(org.apps[app.id], g.resource)
		}
	} else {
		granted = s.t.appGlobalScopes(app, g.resource)
		if app.managementAPI && g.resource == s.cfg.ManagementResource {
			granted = appendNew(granted, "all")
		}
	}
	g.scope = intersect(g.requested, granted)
	tok, err := s.signGrant(g)
	if err != nil {
		return tokenResponse{}, &oidcError{http.StatusInternalServerError, "server_error", "could not sign the token"}
	}
	return tokenResponse{accessToken: tok, scope: g.scope, expiresIn: int64(s.cfg.TokenTTL.Seconds())}, nil
}

func (s *Server) tokenExchange(app *application, form url.Values) (tokenResponse, *oidcError) {
	if app.typ != appTraditional || !app.tokenExchange {
		return tokenResponse{}, errGrantNotAllowed
	}
	subject := form.Get("subject_token")
	if subject == "" {
		return tokenResponse{}, badRequest("invalid_request", "missing required parameter 'subject_token'")
	}
	switch form.Get("subject_token_type") {
	case "":
		return tokenResponse{}, badRequest("invalid_request", "missing required parameter 'subject_token_type'")
	case tokenTypeAccessToken:
	default:
		return tokenResponse{}, badRequest("invalid_request", "unsupported subject token type")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.t.subjects[subject]
	if st == nil || st.consumed || !s.now().Before(st.expiresAt) || s.t.users[st.userID] == nil {
		return tokenResponse{}, errInvalidGrant
	}
	g := grant{
		clientID:       app.id,
		subject:        st.userID,
		organizationID: form.Get("organization_id"),
		resource:       form.Get("resource"),
		requested:      splitScope(form.Get("scope")),
	}
	resp, oe := s.userGrant(g)
	if oe != nil {
		return resp, oe
	}
	st.consumed = true
	return resp, nil
}

// userGrant issues a user's token for g; s.mu is held.
func (s *Server) userGrant(g grant) (tokenResponse, *oidcError) {
	if g.resource != "" && !s.knownResource(g.resource) {
		return tokenResponse{}, errUnknownTarget
	}
	resp := tokenResponse{alwaysScope: true, exchange: true, expiresIn: int64(s.cfg.TokenTTL.Seconds())}
	switch {
	case g.organizationID != "":
		org := s.t.orgs[g.organizationID]
		if org == nil || !org.isMember(g.subject) {
			return tokenResponse{}, &oidcError{http.StatusForbidden, "access_denied", "user is not a member of the organization"}
		}
		roles := org.memberRoles[g.subject]
		if g.resource == "" {
			// Organization tokens list scopes in Logto's (the roles') order, not the request's.
			g.scope = intersect(s.t.orgScopes(roles), g.requested)
		} else {
			g.scope = intersect(g.requested, s.t.orgResourceScopes(roles, g.resource))
		}
	case g.resource != "":
		g.scope = intersect(g.requested, s.t.userGlobalScopes(g.subject, g.resource))
	default:
		// No audience: Logto issues an opaque token for its userinfo endpoint.
		resp.scope = intersect(g.requested, oidcScopes)
		resp.accessToken = randomString(nanoidAlphabet, 43)
		return resp, nil
	}
	tok, err := s.signGrant(g)
	if err != nil {
		return tokenResponse{}, &oidcError{http.StatusInternalServerError, "server_error", "could not sign the token"}
	}
	resp.accessToken, resp.scope = tok, g.scope
	if resp.scope == nil {
		resp.scope = []string{}
	}
	return resp, nil
}

// grant is what an access token says.
type grant struct {
	clientID       string
	subject        string
	organizationID string
	resource       string
	requested      []string
	scope          []string
}

const nanoidAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"

// claims lays g out as Logto does: an organization token has the organization in its
// audience, an organization-level API token carries organization_id, and user tokens always
// carry scope while app tokens drop it when nothing was granted.
func (s *Server) claims(g grant) map[string]any {
	now := s.now().Unix()
	c := map[string]any{
		"jti":       randomString(nanoidAlphabet, 21),
		"sub":       g.subject,
		"iat":       now,
		"exp":       now + int64(s.cfg.TokenTTL.Seconds()),
		"client_id": g.clientID,
		"iss":       s.Issuer(),
	}
	if len(g.scope) > 0 || g.subject != g.clientID {
		c["scope"] = strings.Join(g.scope, " ")
	}
	switch {
	case g.organizationID != "" && g.resource == "":
		c["aud"] = OrganizationAudience + g.organizationID
	case g.organizationID != "":
		c["organization_id"] = g.organizationID
		c["aud"] = g.resource
	default:
		c["aud"] = g.resource
	}
	return c
}

// signGrant signs g's claims with the current key; s.mu is held.
func (s *Server) signGrant(g grant) (string, error) {
	return s.signLocked(nil, s.claims(g))
}

// signLocked signs claims with the current key under header (nil: Logto's access token
// header); s.mu is held.
func (s *Server) signLocked(header, claims map[string]any) (string, error) {
	key := s.keys.current()
	if header == nil {
		header = map[string]any{"alg": key.alg, "typ": "at+jwt", "kid": key.kid}
	}
	return signCompact(key, header, claims)
}

// hasScope reports whether the space-separated scope claim holds want.
func hasScope(claim any, want string) bool {
	s, ok := claim.(string)
	return ok && slices.Contains(strings.Split(s, " "), want)
}

// audiences returns the aud claim as a list.
func audiences(claim any) []string {
	switch v := claim.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// numericClaim reads a NumericDate decoded with UseNumber.
func numericClaim(claim any) (int64, bool) {
	n, ok := claim.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		return int64(f), ferr == nil
	}
	return i, true
}
