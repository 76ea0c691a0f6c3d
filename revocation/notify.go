package revocation

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The orgauthz event: how mgmtproxy hands its watermarks to a sidecar that does not share its Store
// (the "memory" store, two processes on one machine). It is a webhook delivery like Logto's, to the
// same POST /logto/webhooks, signed the same way with the same secret, and checked by WebhookHandler
// like any delivery (signature, createdAt window, replay); Logto never sends an event named orgauthz.*.
//
//	{"event":"orgauthz.Revoked","createdAt":"2026-12-04T16:00:00.123Z",
//	 "watermarks":[{"organizationId":"o1","userId":"u1","kinds":["organization","organization_api"]}]}
//
// Every watermark is at createdAt (NotBefore(createdAt)): the sender cannot place one elsewhere in time.
const (
	// RevokedEvent names the orgauthz event.
	RevokedEvent = "orgauthz.Revoked"
	// MaxEventWatermarks bounds the watermarks of one event (a bulk delete of 100 organizations makes 100).
	MaxEventWatermarks = 256
)

// wireWatermark is a Watermark in the orgauthz event: IDs of the ID alphabet, kinds by name.
type wireWatermark struct {
	Org   string   `json:"organizationId,omitempty"`
	User  string   `json:"userId,omitempty"`
	Kinds []string `json:"kinds"`
}

var kindNames = [numKinds]string{"organization", "organization_api", "global_api", "admin"}

// RevokedEventBody returns the orgauthz event carrying ws, made at at. Every watermark in ws must be at
// NotBefore(at), as OperationWatermarks makes them.
func RevokedEventBody(ws []Watermark, at time.Time) ([]byte, error) {
	if len(ws) == 0 || len(ws) > MaxEventWatermarks {
		return nil, fmt.Errorf("revocation: an event carries 1 to %d watermarks, not %d", MaxEventWatermarks, len(ws))
	}
	out := make([]wireWatermark, len(ws))
	for i, w := range ws {
		if err := w.validate(); err != nil {
			return nil, err
		}
		if w.NotBefore != NotBefore(at) {
			return nil, errors.New("revocation: watermark not at the event's time")
		}
		out[i] = wireWatermark{Org: w.Org, User: w.User}
		for k, name := range kindNames {
			if w.Kinds&(1<<k) != 0 {
				out[i].Kinds = append(out[i].Kinds, name)
			}
		}
	}
	return json.Marshal(struct {
		Event      string          `json:"event"`
		CreatedAt  string          `json:"createdAt"`
		Watermarks []wireWatermark `json:"watermarks"`
	}{RevokedEvent, at.UTC().Format(time.RFC3339Nano), out})
}

// revokedWatermarks decodes the orgauthz event's watermarks, all at at.
func revokedWatermarks(raw json.RawMessage, at time.Time) ([]Watermark, error) {
	var in []wireWatermark
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, errors.New("watermarks is not an array of watermarks")
	}
	if len(in) == 0 || len(in) > MaxEventWatermarks {
		return nil, fmt.Errorf("an orgauthz event carries 1 to %d watermarks", MaxEventWatermarks)
	}
	ws := make([]Watermark, len(in))
	for i, w := range in {
		ws[i] = Watermark{Org: w.Org, User: w.User, NotBefore: NotBefore(at)}
		for _, name := range w.Kinds {
			k := kindIndex(name)
			if k < 0 {
				return nil, errors.New("unknown token kind in a watermark")
			}
			ws[i].Kinds |= 1 << k
		}
		if err := ws[i].validate(); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// Sign returns the logto-signature-sha-256 value of body under secret: lower-case hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Notifier delivers orgauthz events to sidecars' WebhookPath (mgmtproxy's --revocation-notify).
type Notifier struct {
	URLs   []string
	Secret []byte
	Client *http.Client // bound its Timeout: the caller waits for every delivery
}

// Notify posts one event carrying ws, made at at, to every URL in turn and returns every failure. A
// sidecar answers 204 when it applied the watermarks (202 when its Redis did not take them).
func (n *Notifier) Notify(ctx context.Context, ws []Watermark, at time.Time) error {
	body, err := RevokedEventBody(ws, at)
	if err != nil {
		return err
	}
	sig := Sign(n.Secret, body)
	var errs []error
	for _, u := range n.URLs {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			errs = append(errs, fmt.Errorf("revocation: notify: %w", err))
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, sig)
		resp, err := n.Client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("revocation: notify %s: %w", req.URL.Redacted(), err))
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusAccepted {
			errs = append(errs, fmt.Errorf("revocation: notify %s: answered %d", req.URL.Redacted(), resp.StatusCode))
		}
	}
	return errors.Join(errs...)
}
