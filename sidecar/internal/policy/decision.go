package policy

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/orgauthz/orgauthz/decisionlog"
)

// Decision is the policy's answer for one request.
type Decision struct {
	Allow bool
	// Status is the deny status: 400, 401 or 403; any other value the
	// policy gives, or none, becomes 403. Zero on allow.
	Status int
	// Reason becomes the response body's code; "" → "denied"/"allowed".
	Reason string
	// Route is the route template the policy matched, e.g.
	// "POST /api/organizations/{orgId}/users". Always set on allow.
	Route string
	// Headers are extra headers the policy asks for on allow; the sidecar
	// filters them. Nil on deny.
	Headers map[string]string
	// RequiredScopes lists the scopes a deny found missing.
	RequiredScopes []string
	// Revision and Mask are the deciding policy's revision and its system.log.mask (nil when
	// none), for the decision's audit record.
	Revision string
	Mask     *decisionlog.Mask
	// Bundles names the OPA bundles (and their manifest revisions) the deciding policy came
	// from, shared by every decision of that policy; nil for a policy directory.
	Bundles map[string]decisionlog.Bundle
}

// Decision object keys, as the policy contract names them.
var (
	keyAllow          = ast.StringTerm("allow")
	keyStatus         = ast.StringTerm("status")
	keyReason         = ast.StringTerm("reason")
	keyRoute          = ast.StringTerm("route")
	keyHeaders        = ast.StringTerm("headers")
	keyRequiredScopes = ast.StringTerm("required_scopes")
)

// parseDecision reads a decision object straight from the result value.
// Fields beyond the contract are ignored; a contract field of the wrong type
// is an error, so a policy bug becomes a 503 rather than a guess.
func parseDecision(v ast.Value) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, fmt.Errorf("decision: got %s, want object", ast.ValueName(v))
	}
	var d Decision
	allow, ok := field[ast.Boolean](obj, keyAllow)
	if !ok {
		return Decision{}, fieldError(obj, keyAllow, "boolean")
	}
	d.Allow = bool(allow)

	if obj.Get(keyReason) != nil {
		reason, ok := field[ast.String](obj, keyReason)
		if !ok {
			return Decision{}, fieldError(obj, keyReason, "string")
		}
		d.Reason = string(reason)
	}
	if obj.Get(keyRoute) != nil {
		route, ok := field[ast.String](obj, keyRoute)
		if !ok {
			return Decision{}, fieldError(obj, keyRoute, "string")
		}
		d.Route = string(route)
	}
	if obj.Get(keyRequiredScopes) != nil {
		scopes, err := stringList(obj.Get(keyRequiredScopes).Value)
		if err != nil {
			return Decision{}, fmt.Errorf("decision field required_scopes: %w", err)
		}
		d.RequiredScopes = scopes
	}

	if d.Allow {
		if d.Route == "" {
			return Decision{}, fmt.Errorf("decision allows without a route")
		}
		if t := obj.Get(keyHeaders); t != nil {
			headers, err := stringMap(t.Value)
			if err != nil {
				return Decision{}, fmt.Errorf("decision field headers: %w", err)
			}
			d.Headers = headers
		}
		if d.Reason == "" {
			d.Reason = "allowed"
		}
		return d, nil
	}

	d.Status = 403
	if obj.Get(keyStatus) != nil {
		status, ok := field[ast.Number](obj, keyStatus)
		if !ok {
			return Decision{}, fieldError(obj, keyStatus, "number")
		}
		switch n, _ := status.Int(); n {
		case 400, 401, 403:
			d.Status = n
		}
	}
	if d.Reason == "" {
		d.Reason = "denied"
	}
	return d, nil
}

// field returns obj[key] as a T.
func field[T ast.Value](obj ast.Object, key *ast.Term) (T, bool) {
	var zero T
	t := obj.Get(key)
	if t == nil {
		return zero, false
	}
	v, ok := t.Value.(T)
	return v, ok
}

func fieldError(obj ast.Object, key *ast.Term, want string) error {
	t := obj.Get(key)
	if t == nil {
		return fmt.Errorf("decision lacks field %s", key.Value)
	}
	return fmt.Errorf("decision field %s: got %s, want %s", key.Value, ast.ValueName(t.Value), want)
}

// stringList reads an array or set of strings.
func stringList(v ast.Value) ([]string, error) {
	var (
		out []string
		err error
	)
	add := func(t *ast.Term) {
		s, ok := t.Value.(ast.String)
		if !ok && err == nil {
			err = fmt.Errorf("element: got %s, want string", ast.ValueName(t.Value))
		}
		out = append(out, string(s))
	}
	switch v := v.(type) {
	case *ast.Array:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	case ast.Set:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	default:
		return nil, fmt.Errorf("got %s, want array of strings", ast.ValueName(v))
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// stringMap reads an object whose keys and values are strings.
func stringMap(v ast.Value) (map[string]string, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("got %s, want object", ast.ValueName(v))
	}
	out := make(map[string]string, obj.Len())
	var err error
	obj.Foreach(func(k, v *ast.Term) {
		if err != nil {
			return
		}
		ks, ok := k.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("key: got %s, want string", ast.ValueName(k.Value))
			return
		}
		vs, ok := v.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("value of %q: got %s, want string", string(ks), ast.ValueName(v.Value))
			return
		}
		out[string(ks)] = string(vs)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
