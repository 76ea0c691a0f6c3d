package sidecar

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// Keys of the policy input (DESIGN, "Policy contract"), made once.
var (
	keyRequest           = ast.StringTerm("request")
	keyToken             = ast.StringTerm("token")
	keySource            = ast.StringTerm("source")
	keyContextExtensions = ast.StringTerm("context_extensions")
	keyMethod            = ast.StringTerm("method")
	keyPath              = ast.StringTerm("path")
	keySegments          = ast.StringTerm("segments")
	keyQuery             = ast.StringTerm("query")
	keyHost              = ast.StringTerm("host")
	keyHeaders           = ast.StringTerm("headers")
	keyBody              = ast.StringTerm("body")
	keyAddress           = ast.StringTerm("address")
	keyKind              = ast.StringTerm("kind")
	keySubject           = ast.StringTerm("subject")
	keyClientID          = ast.StringTerm("client_id")
	keyIsApp             = ast.StringTerm("is_app")
	keyOrganizationID    = ast.StringTerm("organization_id")
	keyAudience          = ast.StringTerm("audience")
	keyScopes            = ast.StringTerm("scopes")
	keyIssuedAt          = ast.StringTerm("issued_at")
	keyExpiresAt         = ast.StringTerm("expires_at")
	keyClaims            = ast.StringTerm("claims")

	// Names of Logto's claims in input.token.claims; client_id and organization_id are above.
	keyClaimJTI   = ast.StringTerm("jti")
	keyClaimSub   = ast.StringTerm("sub")
	keyClaimIat   = ast.StringTerm("iat")
	keyClaimExp   = ast.StringTerm("exp")
	keyClaimNbf   = ast.StringTerm("nbf")
	keyClaimScope = ast.StringTerm("scope")
	keyClaimIss   = ast.StringTerm("iss")
	keyClaimAud   = ast.StringTerm("aud")
)

// buildInput makes the policy input for req and the verified claims (nil without a token)
// directly as an OPA value.
func buildInput(req *request, claims *token.Claims) (ast.Value, error) {
	segments := make([]*ast.Term, len(req.segments))
	for i, s := range req.segments {
		segments[i] = ast.StringTerm(s)
	}
	query := ast.NewObject()
	for k, vs := range req.query {
		terms := make([]*ast.Term, len(vs))
		for i, v := range vs {
			terms[i] = ast.StringTerm(v)
		}
		query.Insert(ast.StringTerm(k), ast.ArrayTerm(terms...))
	}
	body := ast.NullTerm()
	if req.body != nil {
		body = ast.NewTerm(req.body)
	}
	request := ast.NewObject(
		ast.Item(keyMethod, ast.StringTerm(req.method)),
		ast.Item(keyPath, ast.StringTerm(req.path)),
		ast.Item(keySegments, ast.ArrayTerm(segments...)),
		ast.Item(keyQuery, ast.NewTerm(query)),
		ast.Item(keyHost, ast.StringTerm(req.host)),
		ast.Item(keyHeaders, ast.NewTerm(stringMap(req.inputHeaders))),
		ast.Item(keyBody, body),
	)
	tok := ast.NullTerm()
	if claims != nil {
		t, err := tokenValue(claims)
		if err != nil {
			return nil, err
		}
		tok = ast.NewTerm(t)
	}
	return ast.NewObject(
		ast.Item(keyRequest, ast.NewTerm(request)),
		ast.Item(keyToken, tok),
		ast.Item(keySource, ast.ObjectTerm(ast.Item(keyAddress, ast.StringTerm(req.source)))),
		ast.Item(keyContextExtensions, ast.NewTerm(stringMap(req.extensions))),
	), nil
}

// tokenValue is input.token: the verified facts and every verified claim. The claims object is
// built from the typed fields; only claims that are not Logto's (rare) go through reflection.
func tokenValue(c *token.Claims) (ast.Value, error) {
	scopes := make([]*ast.Term, len(c.Scopes))
	for i, s := range c.Scopes {
		scopes[i] = ast.StringTerm(s)
	}
	sub, clientID, aud := ast.StringTerm(c.Subject), ast.StringTerm(c.ClientID), ast.StringTerm(c.Audience)
	iat, exp := ast.IntNumberTerm(int(c.IssuedAt)), ast.IntNumberTerm(int(c.ExpiresAt))
	claims := ast.NewObject(
		ast.Item(keyClaimIss, ast.StringTerm(c.Issuer)),
		ast.Item(keyClaimSub, sub),
		ast.Item(keyClaimAud, aud),
		ast.Item(keyClientID, clientID),
		ast.Item(keyClaimIat, iat),
		ast.Item(keyClaimExp, exp),
	)
	if c.JTI != "" {
		claims.Insert(keyClaimJTI, ast.StringTerm(c.JTI))
	}
	if c.NotBefore != 0 {
		claims.Insert(keyClaimNbf, ast.IntNumberTerm(int(c.NotBefore)))
	}
	if c.HasScope {
		claims.Insert(keyClaimScope, ast.StringTerm(c.Scope))
	}
	if c.Kind == token.OrganizationAPI { // the only kind whose token carries organization_id
		claims.Insert(keyOrganizationID, ast.StringTerm(c.OrganizationID))
	}
	if c.Extra != nil {
		extra, err := ast.InterfaceToValue(c.Extra)
		if err != nil {
			return nil, fmt.Errorf("sidecar: claims as policy input: %w", err)
		}
		// A map[string]any is always an object. An Extra entry holds its claim exactly: it wins.
		extra.(ast.Object).Foreach(claims.Insert)
	}
	obj := ast.NewObject(
		ast.Item(keyKind, ast.StringTerm(string(c.Kind))),
		ast.Item(keySubject, sub),
		ast.Item(keyClientID, clientID),
		ast.Item(keyIsApp, ast.BooleanTerm(c.IsApp)),
		ast.Item(keyAudience, aud),
		ast.Item(keyScopes, ast.ArrayTerm(scopes...)),
		ast.Item(keyIssuedAt, iat),
		ast.Item(keyExpiresAt, exp),
		ast.Item(keyClaims, ast.NewTerm(claims)),
	)
	if c.OrganizationID != "" {
		obj.Insert(keyOrganizationID, ast.StringTerm(c.OrganizationID))
	}
	return obj, nil
}

func stringMap(m map[string]string) ast.Object {
	obj := ast.NewObject()
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	return obj
}
