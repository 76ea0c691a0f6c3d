package sidecar

import (
	"fmt"
	"slices"
	"strings"

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
	n := 4 + len(req.segments) + 2*len(req.inputHeaders) + 2*len(req.extensions) + 2*len(req.query)
	for _, vs := range req.query {
		n += len(vs)
	}
	if claims != nil {
		n += 9 + len(claims.Scopes)
	}
	terms := make(termSlab, 0, n)
	segments := make([]*ast.Term, len(req.segments))
	for i, s := range req.segments {
		segments[i] = terms.str(s)
	}
	query := make([][2]*ast.Term, 0, len(req.query))
	for k, vs := range req.query {
		values := make([]*ast.Term, len(vs))
		for i, v := range vs {
			values[i] = terms.str(v)
		}
		query = append(query, ast.Item(terms.str(k), ast.ArrayTerm(values...)))
	}
	sortItems(query)
	body := ast.NullTerm()
	if req.body != nil {
		body = ast.NewTerm(req.body)
	}
	// Every object is built with its keys in OPA's order: OPA sorts an object's keys the first
	// time anything iterates it (the audit writer iterates them all), and sorted keys make that
	// sort a single pass.
	request := ast.NewObject(
		ast.Item(keyBody, body),
		ast.Item(keyHeaders, terms.stringMap(req.inputHeaders)),
		ast.Item(keyHost, terms.str(req.host)),
		ast.Item(keyMethod, terms.str(req.method)),
		ast.Item(keyPath, terms.str(req.path)),
		ast.Item(keyQuery, ast.ObjectTerm(query...)),
		ast.Item(keySegments, ast.ArrayTerm(segments...)),
	)
	tok := ast.NullTerm()
	if claims != nil {
		t, err := tokenValue(claims, &terms)
		if err != nil {
			return nil, err
		}
		tok = ast.NewTerm(t)
	}
	return ast.NewObject(
		ast.Item(keyContextExtensions, terms.stringMap(req.extensions)),
		ast.Item(keyRequest, ast.NewTerm(request)),
		ast.Item(keySource, ast.ObjectTerm(ast.Item(keyAddress, terms.str(req.source)))),
		ast.Item(keyToken, tok),
	), nil
}

// termSlab hands out an input's string terms from one allocation instead of one each (an
// input has a few dozen). Past its capacity it allocates them one by one: a term, once handed
// out, never moves.
type termSlab []ast.Term

func (s *termSlab) str(v string) *ast.Term {
	if len(*s) == cap(*s) {
		return ast.StringTerm(v)
	}
	*s = append(*s, ast.Term{Value: ast.String(v)})
	return &(*s)[len(*s)-1]
}

// stringMap is m as an object, sized once.
func (s *termSlab) stringMap(m map[string]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		items = append(items, ast.Item(s.str(k), s.str(v)))
	}
	sortItems(items)
	return ast.ObjectTerm(items...)
}

// sortItems puts an object's items, whose keys are strings, in OPA's key order.
func sortItems(items [][2]*ast.Term) {
	slices.SortFunc(items, func(a, b [2]*ast.Term) int {
		return strings.Compare(string(a[0].Value.(ast.String)), string(b[0].Value.(ast.String)))
	})
}

// tokenValue is input.token: the verified facts and every verified claim. The claims object is
// built from the typed fields; only claims that are not Logto's (rare) go through reflection.
func tokenValue(c *token.Claims, terms *termSlab) (ast.Value, error) {
	scopes := make([]*ast.Term, len(c.Scopes))
	for i, s := range c.Scopes {
		scopes[i] = terms.str(s)
	}
	sub, clientID, aud := terms.str(c.Subject), terms.str(c.ClientID), terms.str(c.Audience)
	iat, exp := ast.IntNumberTerm(int(c.IssuedAt)), ast.IntNumberTerm(int(c.ExpiresAt))
	items := make([][2]*ast.Term, 0, 10) // Logto's claims, in order
	items = append(items,
		ast.Item(keyClaimAud, aud),
		ast.Item(keyClientID, clientID),
		ast.Item(keyClaimExp, exp),
		ast.Item(keyClaimIat, iat),
		ast.Item(keyClaimIss, terms.str(c.Issuer)))
	if c.JTI != "" {
		items = append(items, ast.Item(keyClaimJTI, terms.str(c.JTI)))
	}
	if c.NotBefore != 0 {
		items = append(items, ast.Item(keyClaimNbf, ast.IntNumberTerm(int(c.NotBefore))))
	}
	if c.Kind == token.OrganizationAPI { // the only kind whose token carries organization_id
		items = append(items, ast.Item(keyOrganizationID, terms.str(c.OrganizationID)))
	}
	if c.HasScope {
		items = append(items, ast.Item(keyClaimScope, terms.str(c.Scope)))
	}
	items = append(items, ast.Item(keyClaimSub, sub))
	claims := ast.NewObject(items...)
	if c.Extra != nil {
		extra, err := ast.InterfaceToValue(c.Extra)
		if err != nil {
			return nil, fmt.Errorf("sidecar: claims as policy input: %w", err)
		}
		// A map[string]any is always an object. An Extra entry holds its claim exactly: it wins.
		extra.(ast.Object).Foreach(claims.Insert)
	}
	items = make([][2]*ast.Term, 0, 10)
	items = append(items,
		ast.Item(keyAudience, aud),
		ast.Item(keyClaims, ast.NewTerm(claims)),
		ast.Item(keyClientID, clientID),
		ast.Item(keyExpiresAt, exp),
		ast.Item(keyIsApp, ast.BooleanTerm(c.IsApp)),
		ast.Item(keyIssuedAt, iat),
		ast.Item(keyKind, terms.str(string(c.Kind))))
	if c.OrganizationID != "" {
		items = append(items, ast.Item(keyOrganizationID, terms.str(c.OrganizationID)))
	}
	items = append(items,
		ast.Item(keyScopes, ast.ArrayTerm(scopes...)),
		ast.Item(keySubject, sub))
	return ast.NewObject(items...), nil
}
