package revocation

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/orgauthz/orgauthz/internal/confload"
)

const (
	// WebhookPath is where the sidecar's HTTP listener serves WebhookHandler.
	WebhookPath = "/logto/webhooks"
	// SignatureHeader carries the lower-case hex HMAC-SHA256 of the raw body, keyed with the hook's
	// signing key (its UTF-8 bytes, not decoded).
	SignatureHeader = "logto-signature-sha-256"
	// MaxWebhookBytes bounds a delivery's body (Logto's are under 1 KiB; Organization.Created carries the
	// organization, Role.Scopes.Updated the scopes).
	MaxWebhookBytes = 64 << 10
	// WebhookMaxAge is how old a delivery's signed createdAt may be. Logto delivers within
	// milliseconds and never retries, so this only absorbs clock differences; older is stale.
	WebhookMaxAge = 5 * time.Minute
	// WebhookMaxAhead is how far in the future createdAt may be (Logto's clock ahead of ours).
	WebhookMaxAhead = time.Minute
	// maxSecretBytes bounds the signing key file (Logto's keys are 32 characters).
	maxSecretBytes = 1 << 10
)

// LoadWebhookSecret reads a hook's signing key from a file (--logto-webhook-secret-file), without the
// trailing newline an editor adds.
func LoadWebhookSecret(path string) ([]byte, error) {
	b, err := confload.ReadFile(path, maxSecretBytes)
	if err != nil {
		return nil, fmt.Errorf("revocation: webhook secret: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("revocation: webhook secret %s is empty", path)
	}
	return b, nil
}

// WebhookHandler serves POST /logto/webhooks: it accepts a Logto delivery only with a valid
// logto-signature-sha-256 for secret over the raw body (at most MaxWebhookBytes), a signed createdAt
// within [now-WebhookMaxAge, now+WebhookMaxAhead], and not seen before; then it turns the event into
// watermarks (EventWatermarks) and revokes them through store. now is the clock (time.Now when nil).
// mgmtproxy's orgauthz.Revoked event (notify.go) arrives the same way, under the same checks.
//
// Answers, each with a JSON {"code","message"}: 204 applied or nothing to do; 202 applied here but not
// yet shared (Redis down); 400 malformed or stale; 401 unsigned or mis-signed; 405 not POST; 409
// replayed; 413 too large. Logto never retries, so a refusal is final: it is logged with its reason.
//
// A delivery is remembered (by its signature) in this process until it would be stale. A replay
// through another replica is harmless: an event's watermarks come from its signed createdAt, so
// applying it again changes nothing.
func WebhookHandler(secret []byte, now func() time.Time, store *Store) http.Handler {
	if now == nil {
		now = time.Now
	}
	key := bytes.Clone(secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse := func(status int, code, msg string) {
			store.opts.Logger.Warn("revocation: webhook refused", "code", code, "detail", msg)
			writeJSON(w, status, code, msg)
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			refuse(http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
			return
		}
		sigs := r.Header.Values(SignatureHeader)
		if len(sigs) == 0 {
			refuse(http.StatusUnauthorized, "webhook_unsigned", "no "+SignatureHeader+" header")
			return
		}
		sig, err := hex.DecodeString(sigs[0])
		if len(sigs) != 1 || err != nil || len(sig) != sha256.Size {
			refuse(http.StatusUnauthorized, "webhook_bad_signature", "signature is not one 64-digit hex HMAC-SHA256")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				refuse(http.StatusRequestEntityTooLarge, "webhook_too_large", fmt.Sprintf("body over %d bytes", MaxWebhookBytes))
				return
			}
			refuse(http.StatusBadRequest, "webhook_malformed", "body could not be read")
			return
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		if !hmac.Equal(mac.Sum(nil), sig) {
			refuse(http.StatusUnauthorized, "webhook_bad_signature", "signature does not match the body")
			return
		}
		ev, err := parseEvent(body)
		if err != nil {
			refuse(http.StatusBadRequest, "webhook_malformed", err.Error())
			return
		}
		t := now()
		if ev.createdAt.Before(t.Add(-WebhookMaxAge)) || ev.createdAt.After(t.Add(WebhookMaxAhead)) {
			refuse(http.StatusBadRequest, "webhook_stale", "createdAt "+ev.createdAt.Format(time.RFC3339)+" is outside the accepted window")
			return
		}
		until := ev.createdAt.Add(WebhookMaxAge + WebhookMaxAhead).Unix()
		if err := store.claims.claim("w:"+string(sig), until, t.Unix()); err != nil {
			refuse(http.StatusConflict, "webhook_replayed", "this delivery was received already")
			return
		}
		ws, err := ev.watermarks()
		if err == nil {
			err = store.Revoke(r.Context(), ws...)
		}
		switch {
		case errors.Is(err, ErrNotShared):
			store.opts.Logger.Error("revocation: webhook applied here only", "event", ev.Event, "err", err)
			writeJSON(w, http.StatusAccepted, "not_shared", "applied on this replica; shared when Redis answers again")
		case err != nil:
			refuse(http.StatusBadRequest, "webhook_malformed", err.Error())
		default:
			if len(ws) > 0 {
				store.opts.Logger.Info("revocation: webhook applied", "event", ev.Event, "watermarks", len(ws))
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// event is what a Logto delivery says about who is affected (LOGTO.md, Webhooks).
type event struct {
	Event     string `json:"event"`
	CreatedAt string `json:"createdAt"`
	Method    string `json:"method"` // the Management API call that triggered it, when one did
	Params    struct {
		ID     string `json:"id"`
		UserID string `json:"userId"`
	} `json:"params"`
	OrganizationID string          `json:"organizationId"`
	Data           json.RawMessage `json:"data"`
	Watermarks     json.RawMessage `json:"watermarks"` // RevokedEvent only

	createdAt time.Time
}

func parseEvent(body []byte) (*event, error) {
	ev := &event{}
	if err := json.Unmarshal(body, ev); err != nil {
		return nil, errors.New("body is not a Logto webhook event")
	}
	if ev.Event == "" || len(ev.CreatedAt) > 40 {
		return nil, errors.New("no event or no createdAt")
	}
	t, err := time.Parse(time.RFC3339Nano, ev.CreatedAt)
	if err != nil {
		return nil, errors.New("createdAt is not an RFC 3339 time")
	}
	ev.createdAt = t
	return ev, nil
}

// EventWatermarks returns the watermarks a verified Logto webhook body implies: nil for an event
// that takes no power away. It is WebhookHandler's mapping, for tests and tools.
func EventWatermarks(body []byte) ([]Watermark, error) {
	ev, err := parseEvent(body)
	if err != nil {
		return nil, err
	}
	return ev.watermarks()
}

// watermarks maps the event to watermarks at its createdAt: Logto stamps both createdAt and every
// token's iat, so the comparison never crosses clocks. Where Logto names no organization or user the
// watermark is coarser (an empty ID matches all); additions (POST) take no power away and revoke nothing.
func (ev *event) watermarks() ([]Watermark, error) {
	at := ev.createdAt
	var ws []Watermark
	switch ev.Event {
	case "Organization.Membership.Updated":
		org := firstNonEmpty(ev.OrganizationID, ev.Params.ID)
		switch {
		case ev.Method == http.MethodPost: // members added
		case ev.Method == http.MethodDelete && ev.Params.UserID != "":
			ws = memberChanged(org, ev.Params.UserID, at)
		default: // PUT replaces the members and names none: every token of the organization
			ws = organizationChanged(org, at)
		}
	case "Organization.Deleted":
		ws = organizationChanged(ev.Params.ID, at)
	case "OrganizationRole.Scopes.Updated":
		if ev.Method != http.MethodPost { // POST adds scopes, or creates a role nobody holds yet
			ws = organizationRolesChanged(at)
		}
	case "OrganizationRole.Deleted":
		ws = organizationRolesChanged(at)
	case "OrganizationScope.Deleted": // an organization permission removed from every org role
		ws = []Watermark{{Kinds: Organization, NotBefore: NotBefore(at)}}
	case "Role.Scopes.Updated":
		if ev.Method != http.MethodPost {
			ws = globalRolesChanged(at)
		}
	case "Role.Deleted":
		ws = globalRolesChanged(at)
	case "Scope.Deleted": // an API permission removed from every role that had it
		ws = []Watermark{{Kinds: OrganizationAPI | GlobalKinds, NotBefore: NotBefore(at)}}
	case "User.Deleted":
		ws = userChanged(ev.userID(), at)
	case RevokedEvent:
		var err error
		if ws, err = revokedWatermarks(ev.Watermarks, at); err != nil {
			return nil, err
		}
	case "User.SuspensionStatus.Updated":
		var d struct {
			IsSuspended *bool `json:"isSuspended"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		if d.IsSuspended == nil || *d.IsSuspended { // reactivation gives power back; unknown counts as suspended
			ws = userChanged(ev.userID(), at)
		}
	}
	for _, w := range ws {
		if err := w.validate(); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// userID is the user a User.* event is about: params.userId, else data.id.
func (ev *event) userID() string {
	if ev.Params.UserID != "" {
		return ev.Params.UserID
	}
	var d struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(ev.Data, &d)
	return d.ID
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
