package fakelogto

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Webhooks as Logto sends them (shared/logto-real/webhooks): after the Management API call
// has answered, one POST per subscribed hook with
//
//	content-type: application/json
//	user-agent: Logto (https://logto.io/)
//	logto-signature-sha-256: hex(HMAC-SHA256(signing key as UTF-8 bytes, raw body))
//
// and a body {event, createdAt, userAgent, ip, path, method, status, params, matchedRoute,
// data?, organizationId?, organizationRoleId?, hookId}. One attempt, never retried. The
// emulator emits the events of the endpoints it serves: Organization.Created,
// Organization.Data.Updated, Organization.Deleted, Organization.Membership.Updated (add
// members; remove one member, which names the user in params.userId), User.Deleted and
// OrganizationRole.Scopes.Updated (a role created with permissions). Like Logto it emits
// nothing when a member's organization roles are assigned, replaced or removed.

// Hook events the emulator can emit.
const (
	EventOrganizationCreated           = "Organization.Created"
	EventOrganizationDataUpdated       = "Organization.Data.Updated"
	EventOrganizationDeleted           = "Organization.Deleted"
	EventOrganizationMembershipUpdated = "Organization.Membership.Updated"
	EventUserDeleted                   = "User.Deleted"
	EventOrganizationRoleScopesUpdated = "OrganizationRole.Scopes.Updated"
)

// HookSignatureHeader is the header carrying a delivery's signature.
const HookSignatureHeader = "logto-signature-sha-256"

// hookUserAgent is the User-Agent of every delivery.
const hookUserAgent = "Logto (https://logto.io/)"

// hookTimeout is Logto's delivery timeout (ky's 10 s in the hook log).
const hookTimeout = 10 * time.Second

// maxHooks bounds the hooks a tenant may register (POST /api/hooks is outside input).
const maxHooks = 100

// Hook is a registered webhook.
type Hook struct {
	// ID is the hook's ID; AddHook generates one when empty.
	ID string
	// URL receives the deliveries (Logto accepts http loopback URLs).
	URL string
	// SigningKey keys the HMAC; AddHook generates a 32-character one when empty.
	SigningKey string
	// Events are the subscribed event names; empty means all the emulator emits.
	Events []string
}

// AddHook registers a webhook and returns it with its ID and signing key filled in.
func (s *Server) AddHook(h Hook) Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addHookLocked(h)
}

func (s *Server) addHookLocked(h Hook) Hook {
	if h.ID == "" {
		h.ID = newID(longIDLen)
	}
	if h.SigningKey == "" {
		h.SigningKey = randomString("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 32)
	}
	if len(h.Events) == 0 {
		h.Events = []string{EventOrganizationCreated, EventOrganizationDataUpdated, EventOrganizationDeleted,
			EventOrganizationMembershipUpdated, EventUserDeleted, EventOrganizationRoleScopesUpdated}
	}
	h.Events = slices.Clone(h.Events)
	s.hooks = append(s.hooks, h)
	return h
}

// SignHook is the logto-signature-sha-256 value of body under signingKey.
func SignHook(signingKey string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(signingKey))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// createHook is POST /api/hooks {name, events, config: {url}} → 201 with the signing key.
func (s *Server) createHook(w http.ResponseWriter, r *http.Request) {
	b, ok := parse(w, r, field{name: "name", typ: "string", required: true, min: 1},
		field{name: "events", typ: "strings", required: true, min: 1}, field{name: "config", typ: "object", required: true})
	if !ok {
		return
	}
	var cfg struct {
		URL string `json:"url"`
	}
	json.Unmarshal(b["config"], &cfg)
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeJSON(w, http.StatusBadRequest, invalidInput(zodIssue{Code: "invalid_string", Path: []any{"config", "url"}, Message: "Invalid url"}))
		return
	}
	name, _ := b.str("name")
	s.mu.Lock()
	if len(s.hooks) >= maxHooks {
		s.mu.Unlock()
		writeJSON(w, http.StatusUnprocessableEntity, &apiError{Code: "hook.too_many", Message: "Too many hooks."})
		return
	}
	h := s.addHookLocked(Hook{URL: cfg.URL, Events: b.strs("events")})
	createdAt := s.now().UnixMilli()
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, struct {
		TenantID   string            `json:"tenantId"`
		ID         string            `json:"id"`
		Name       string            `json:"name"`
		Event      *string           `json:"event"`
		Events     []string          `json:"events"`
		Config     map[string]string `json:"config"`
		SigningKey string            `json:"signingKey"`
		Enabled    bool              `json:"enabled"`
		CreatedAt  int64             `json:"createdAt"`
	}{tenantID, h.ID, name, nil, h.Events, map[string]string{"url": h.URL}, h.SigningKey, true, createdAt})
}

// hookEvent is what one Management API call tells the hooks.
type hookEvent struct {
	event  string
	status int
	params map[string]string // Logto's route parameter names (id, userId)
	data   any               // the entity, when Logto sends one
	extra  map[string]any    // top-level organizationId or organizationRoleId
}

// Logto's key order in a delivery body.
var hookKeyOrder = []string{"event", "createdAt", "userAgent", "ip", "path", "method", "status", "params", "matchedRoute", "data", "organizationId", "organizationRoleId", "hookId"}

// emit delivers e to every hook subscribed to it, in the background, once. Call it after
// the response is decided; s.mu may be held.
func (s *Server) emit(r *http.Request, e hookEvent) {
	var targets []Hook
	for _, h := range s.hooks {
		if slices.Contains(h.Events, e.event) {
			targets = append(targets, h)
		}
	}
	if len(targets) == 0 {
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	params := map[string]string{}
	for k, v := range e.params {
		params[k] = v
	}
	payload := map[string]any{
		"event":        e.event,
		"createdAt":    s.now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"userAgent":    r.UserAgent(),
		"ip":           ip,
		"path":         strings.TrimPrefix(r.URL.Path, "/api"),
		"method":       r.Method,
		"status":       e.status,
		"params":       params,
		"matchedRoute": logtoRoute(r.Pattern),
	}
	if e.data != nil {
		payload["data"] = e.data
	}
	for k, v := range e.extra {
		payload[k] = v
	}
	for _, h := range targets {
		payload["hookId"] = h.ID
		order := hookKeyOrder
		if e.event == EventUserDeleted { // user events carry data right after ip
			order = slices.Insert(slices.DeleteFunc(slices.Clone(order), func(k string) bool { return k == "data" }), 4, "data")
		}
		body, err := encodeOrdered(payload, order)
		if err != nil {
			continue
		}
		body = jsStringify(body)
		s.hookWG.Add(1) // before the call answers, so Close waits for it
		if out, ok := r.Context().Value(outboxKey{}).(*outbox); ok {
			out.add(h, body)
		} else {
			go s.deliver(h, body)
		}
	}
}

// outbox holds a Management API call's deliveries until it has answered.
type outbox struct {
	mu      sync.Mutex
	pending []func(*Server)
}

type outboxKey struct{}

func (o *outbox) add(h Hook, body []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, func(s *Server) { go s.deliver(h, body) })
}

func (o *outbox) send(s *Server) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range o.pending {
		f(s)
	}
	o.pending = nil
}

// deliver POSTs one delivery: one attempt, its answer ignored, as Logto does.
func (s *Server) deliver(h Hook, body []byte) {
	defer s.hookWG.Done()
	ctx, cancel := context.WithTimeout(s.hookCtx, hookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", hookUserAgent)
	req.Header.Set(HookSignatureHeader, SignHook(h.SigningKey, body))
	resp, err := hookClient.Do(req)
	if err != nil {
		return
	}
	resp.Body.Close()
}

// hookClient follows no redirects: a delivery goes to the registered URL only.
var hookClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// logtoRoute turns a ServeMux pattern ("DELETE /api/organizations/{id}/users/{userId}") into
// Logto's matchedRoute ("/organizations/:id/users/:userId").
func logtoRoute(pattern string) string {
	_, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimPrefix(path, "/api")
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			seg = ":" + strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}")
		}
		out = append(out, seg)
	}
	return strings.Join(out, "/")
}

// jsStringify turns encoding/json output into JSON.stringify's bytes: <, >, & and U+2028/9
// unescaped (encoding/json escapes them for HTML and JavaScript embedding).
func jsStringify(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+5 < len(b) && b[i+1] == 'u' {
			switch string(b[i+2 : i+6]) {
			case "003c":
				out.WriteByte('<')
			case "003e":
				out.WriteByte('>')
			case "0026":
				out.WriteByte('&')
			case "2028":
				out.WriteString("\u2028")
			case "2029":
				out.WriteString("\u2029")
			default:
				out.Write(b[i : i+6])
			}
			i += 5
			continue
		}
		if b[i] == '\\' && i+1 < len(b) { // any other escape: copy both bytes
			out.Write(b[i : i+2])
			i++
			continue
		}
		out.WriteByte(b[i])
	}
	return out.Bytes()
}
