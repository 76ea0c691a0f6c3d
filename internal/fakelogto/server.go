package fakelogto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultManagementResource is the Management API indicator of Logto OSS.
const DefaultManagementResource = "https://default.logto.app/api"

// Config says how to build a Server. The zero value is usable.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:0" (a free port).
	Addr string
	// PublicURL is the base URL the server advertises in its issuer, discovery document and
	// Link headers, without a trailing slash. Default "http://" + the listener's address.
	PublicURL string
	// ManagementResource is the Management API resource indicator.
	// Default DefaultManagementResource.
	ManagementResource string
	// TokenTTL is the lifetime of every access token issued. Default 3600 s, Logto's.
	TokenTTL time.Duration
	// SubjectTokenTTL is the lifetime of subject tokens. Default 600 s, Logto's.
	SubjectTokenTTL time.Duration
	// Now is the clock for token times and expiry checks. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.ManagementResource == "" {
		c.ManagementResource = DefaultManagementResource
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = time.Hour
	}
	if c.SubjectTokenTTL <= 0 {
		c.SubjectTokenTTL = 10 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Server is an in-process Logto OSS tenant: OIDC discovery, JWKS, token endpoint and the
// Management API endpoints orgauthz uses. It is safe for concurrent use.
type Server struct {
	cfg      Config
	baseURL  string
	listener net.Listener
	http     *http.Server
	handler  http.Handler
	mgmt     http.Handler

	mu      sync.Mutex
	keys    keySet
	t       *tenant
	faults  map[Target]*Fault
	limits  map[Target]*rateLimit
	calls   map[Target]int
	started bool
	hooks   []Hook

	hookCtx    context.Context // ends deliveries on Close
	hookCancel context.CancelFunc
	hookWG     sync.WaitGroup
}

// New generates an ES384 (P-384) signing key and binds the listen address, so URL and Issuer
// are known before Start and state can be seeded first.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	key, err := newSigningKey(ES384)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("fakelogto: listen: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		baseURL:  strings.TrimSuffix(cfg.PublicURL, "/"),
		listener: ln,
		keys:     keySet{keys: []*signingKey{key}},
		t:        newTenant(cfg.ManagementResource, cfg.Now().UnixMilli()),
		faults:   map[Target]*Fault{},
		limits:   map[Target]*rateLimit{},
		calls:    map[Target]int{},
	}
	if s.baseURL == "" {
		s.baseURL = "http://" + ln.Addr().String()
	}
	s.hookCtx, s.hookCancel = context.WithCancel(context.Background())
	s.mgmt = s.managementRoutes()
	s.handler = s.routes()
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0), // a library does not log; resets are deliberate
	}
	return s, nil
}

// Start serves in the background until Close or Shutdown.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("fakelogto: already started")
	}
	s.started = true
	go s.http.Serve(s.listener) // returns ErrServerClosed on Close or Shutdown
	return nil
}

// Close stops the server at once, dropping open connections.
func (s *Server) Close() error {
	err := s.http.Close()
	s.listener.Close() // in case Start was never called
	s.hookCancel()
	s.hookWG.Wait()
	return err
}

// Shutdown stops the server gracefully, waiting for open requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.listener.Close()
	done := make(chan struct{})
	go func() { s.hookWG.Wait(); close(done) }()
	select { // let deliveries in flight finish until ctx ends
	case <-done:
	case <-ctx.Done():
	}
	s.hookCancel()
	<-done
	return err
}

// URL is the server's base URL, e.g. "http://127.0.0.1:3001".
func (s *Server) URL() string { return s.baseURL }

// Issuer is the OIDC issuer, URL() + "/oidc".
func (s *Server) Issuer() string { return s.baseURL + "/oidc" }

// JWKSURL is the key set's address, Issuer() + "/jwks".
func (s *Server) JWKSURL() string { return s.Issuer() + "/jwks" }

// TokenURL is the token endpoint, Issuer() + "/token".
func (s *Server) TokenURL() string { return s.Issuer() + "/token" }

// ManagementResource is the Management API indicator tokens must be issued for.
func (s *Server) ManagementResource() string { return s.cfg.ManagementResource }

// Handler is the server's HTTP handler, for mounting in another server. Its URLs still name
// URL(), so set Config.PublicURL to where it is really served.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) now() time.Time { return s.cfg.Now() }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oidc/.well-known/openid-configuration", s.target(TargetDiscovery, s.serveDiscovery))
	mux.HandleFunc("GET /oidc/jwks", s.target(TargetJWKS, s.serveJWKS))
	mux.HandleFunc("POST /oidc/token", s.target(TargetToken, s.serveToken))
	mux.Handle("/api/", s.target(TargetManagement, s.serveManagement))
	return securityHeaders(mux)
}

// target counts the request for t and applies t's fault before h runs.
func (s *Server) target(t Target, h func(http.ResponseWriter, *http.Request, Fault)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := s.enter(t, r)
		if serveFault(w, r, f) {
			return
		}
		h(w, r, f)
	}
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

const jwksContentType = "application/jwk-set+json; charset=utf-8"

func (s *Server) serveJWKS(w http.ResponseWriter, _ *http.Request, _ Fault) {
	s.mu.Lock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(s.keys.keys))}
	for _, k := range s.keys.keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", jwksContentType)
	json.NewEncoder(w).Encode(set)
}

// apiError is Logto's error body (its keys come out sorted).
type apiError struct {
	Code    string `json:"code,omitempty"` // empty only in koa-body's invalid-JSON answer
	Data    any    `json:"data,omitempty"`
	Details string `json:"details,omitempty"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"unknown","message":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// writeText answers like Logto 1.37 does for 201s without an entity: a plain-text "Created".
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(text))
}
