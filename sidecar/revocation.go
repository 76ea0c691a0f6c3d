package sidecar

// Revocation in the sidecar (README "Revocation"): a verified token that a "not before" watermark
// refuses is 401 token_revoked before the policy runs; Logto's webhooks (and mgmtproxy's
// orgauthz.Revoked events) arrive at POST /logto/webhooks on --http-addr and add watermarks.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgauthz/orgauthz/revocation"
	"github.com/orgauthz/orgauthz/sidecar/internal/token"
)

// reasonTokenRevoked is the 401 of a token issued before a change that took power away (DESIGN).
const reasonTokenRevoked = "token_revoked"

// revocationConfig is what Validate read for revocation.
type revocationConfig struct {
	storeURL string // --revocation-store with the Redis password: never logged, never in an error
	secret   []byte // the webhook signing key; nil: POST /logto/webhooks is 404
}

// revocationConfig checks the revocation settings and reads their files. Its errors never hold the
// store URL, which may hold a password.
func (c Config) revocationConfig() (revocationConfig, error) {
	var rc revocationConfig
	var errs []error
	storeURL, err := revocation.StoreURL(c.RevocationStore, c.RedisPassword, c.RedisPasswordFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("sidecar: %w", err))
	}
	rc.storeURL = storeURL
	if c.LogtoWebhookSecretFile != "" {
		secret, err := revocation.LoadWebhookSecret(c.LogtoWebhookSecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("sidecar: --logto-webhook-secret-file: %w", err))
		}
		rc.secret = secret
	}
	return rc, errors.Join(errs...)
}

// openRevocation opens the store once (a Redis store keeps loading in the background; the Server is
// not ready until it has) and builds the webhook endpoint when a signing key is configured.
func (s *Server) openRevocation(ctx context.Context, rc revocationConfig) error {
	store, err := revocation.Open(ctx, rc.storeURL, revocation.Options{Logger: s.log})
	if err != nil {
		return fmt.Errorf("sidecar: --revocation-store: %w", err)
	}
	s.revoc = store
	s.metrics.addRevocation(store)
	if rc.secret != nil {
		s.webhook = revocation.WebhookHandler(rc.secret, nil, store)
	}
	st := store.Status()
	s.log.Info("revocation store opened", "backend", st.Backend, "ready", st.Ready, "webhooks", rc.secret != nil)
	return nil
}

// revoked reports whether a verified token was issued before a watermark that applies to it.
func (s *Server) revoked(c *token.Claims) bool {
	return s.revoc.Revoked(c.OrganizationID, c.Subject, c.IssuedAt, string(c.Kind))
}

// serveWebhook answers POST /logto/webhooks: the signature is the authentication, so any peer may
// call it (Logto Cloud is not a --trusted-proxy). Without --logto-webhook-secret-file it is 404.
func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if s.webhook == nil {
		http.Error(w, "webhooks are off: no --logto-webhook-secret-file", http.StatusNotFound)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.webhook.ServeHTTP(rec, r)
	s.metrics.webhooks.WithLabelValues(strconv.Itoa(rec.status)).Inc()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// revocationStatus is the store's part of /readyz.
type revocationStatus struct {
	Backend     string     `json:"backend"`
	Ready       bool       `json:"ready"`
	Connected   bool       `json:"connected"`
	LastSync    *time.Time `json:"last_sync,omitempty"`
	Watermarks  int        `json:"watermarks"`
	Pending     int        `json:"pending"`
	RedisErrors uint64     `json:"redis_errors"`
	Webhooks    bool       `json:"webhooks"`
	Status      string     `json:"status"`
}

func (s *Server) revocationStatus() revocationStatus {
	st := s.revoc.Status()
	rs := revocationStatus{Backend: st.Backend, Ready: st.Ready, Connected: st.Connected, Watermarks: st.Watermarks,
		Pending: st.Pending, RedisErrors: st.RedisErrors, Webhooks: s.webhook != nil, Status: "ok"}
	if !st.LastSync.IsZero() {
		t := st.LastSync.UTC()
		rs.LastSync = &t
	}
	switch {
	case !st.Ready:
		rs.Status = "not loaded yet: redis unavailable (" + st.LastError + ")"
	case !st.Connected:
		rs.Status = "redis unavailable (" + st.LastError + "): serving with the watermarks last synced"
		if rs.LastSync != nil {
			rs.Status += " at " + rs.LastSync.Format(time.RFC3339)
		}
	}
	return rs
}

// addRevocation registers the store's metrics.
func (m *metrics) addRevocation(store *revocation.Store) {
	const ns = "orgauthz_sidecar"
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "webhooks_total",
		Help: "POST /logto/webhooks deliveries by answer status (204 applied, 202 applied here but Redis down, 4xx refused).",
	}, []string{"status"})
	m.registry.MustRegister(m.webhooks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "revocation_watermarks",
			Help: "Revocation watermarks in force in this process."},
			func() float64 { return float64(store.Status().Watermarks) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "revocation_store_connected",
			Help: "1 when the last round trip to the revocation store succeeded (always 1 for memory)."},
			func() float64 {
				if store.Status().Connected {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "revocation_redis_errors_total",
			Help: "Failed round trips to the revocation store's Redis."},
			func() float64 { return float64(store.Status().RedisErrors) }),
	)
}
