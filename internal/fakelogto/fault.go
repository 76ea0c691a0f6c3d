package fakelogto

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target is a group of endpoints that faults and call counts apply to.
type Target int

const (
	// TargetToken is POST /oidc/token.
	TargetToken Target = iota + 1
	// TargetJWKS is GET /oidc/jwks.
	TargetJWKS
	// TargetManagement is everything under /api/ (the Management API and subject tokens).
	TargetManagement
	// TargetDiscovery is GET /oidc/.well-known/openid-configuration.
	TargetDiscovery
)

func (t Target) String() string {
	switch t {
	case TargetToken:
		return "token"
	case TargetJWKS:
		return "jwks"
	case TargetManagement:
		return "management"
	case TargetDiscovery:
		return "discovery"
	}
	return "target(" + strconv.Itoa(int(t)) + ")"
}

// FaultKind says how a target misbehaves.
type FaultKind int

const (
	// FaultNone serves normally.
	FaultNone FaultKind = iota
	// FaultDown answers 503 Service Unavailable with a plain-text body.
	FaultDown
	// FaultSlow waits Fault.Delay (or until the client gives up), then serves normally.
	FaultSlow
	// FaultTooMany answers 429 with Retry-After (Fault.RetryAfter, default 1 s) and Logto
	// Cloud's rate-limit body.
	FaultTooMany
	// FaultServerError answers Fault.Status (default 500) with a JSON error body.
	FaultServerError
	// FaultReset accepts the request and resets the connection without an answer.
	FaultReset
	// FaultHTML answers 200 with an HTML page (a captive portal or a misrouted proxy).
	FaultHTML
	// FaultInvalidJSON answers 200 with a truncated JSON body.
	FaultInvalidJSON
	// FaultEmptyKeys answers the JWKS with {"keys":[]}.
	FaultEmptyKeys
	// FaultHuge answers with a 10 MB JSON body.
	FaultHuge
	// FaultManyKeys answers the JWKS with 10 000 distinct keys (none of them the tenant's).
	FaultManyKeys
	// FaultNoExpiry serves token responses without expires_in.
	FaultNoExpiry
	// FaultZeroExpiry serves token responses with "expires_in": 0.
	FaultZeroExpiry
	// FaultUnauthorized answers 401 auth.unauthorized as the Management API does for a token
	// it no longer accepts.
	FaultUnauthorized
)

// Fault is injected into every request of a target until it is cleared, or for the next
// Times requests when Times > 0.
type Fault struct {
	Kind       FaultKind
	Status     int           // FaultServerError: status code, default 500
	Delay      time.Duration // FaultSlow: how long to stall, default 10 s
	RetryAfter time.Duration // FaultTooMany: Retry-After, default 1 s (whole seconds)
	Times      int           // how many requests the fault applies to; 0 means until cleared
	// Match, when set, limits the fault (and the Times count) to the requests it accepts,
	// e.g. only POST …/users to fail the second step of a flow. It runs under the server's
	// lock: it must not call the Server.
	Match func(*http.Request) bool
}

// Ready-made faults to pass to SetFault; copy one and set Times to limit it.
var (
	Down        = Fault{Kind: FaultDown}
	TooMany     = Fault{Kind: FaultTooMany}
	ServerError = Fault{Kind: FaultServerError}
	Reset       = Fault{Kind: FaultReset}
	HTML        = Fault{Kind: FaultHTML}
	EmptyKeys   = Fault{Kind: FaultEmptyKeys}
	Huge        = Fault{Kind: FaultHuge}
	ManyKeys    = Fault{Kind: FaultManyKeys}
)

// Slow returns a fault that stalls each request by d before serving it.
func Slow(d time.Duration) Fault { return Fault{Kind: FaultSlow, Delay: d} }

// SetFault makes target misbehave as f describes; Fault{} (FaultNone) clears it.
func (s *Server) SetFault(target Target, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Kind == FaultNone {
		delete(s.faults, target)
		return
	}
	s.faults[target] = &f
}

// Calls reports how many requests reached target since the start or the last ResetCalls,
// including those a fault refused.
func (s *Server) Calls(target Target) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[target]
}

// ResetCalls sets every call count back to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// enter counts a request for target and returns the fault to apply, if any.
func (s *Server) enter(target Target, r *http.Request) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[target]++
	if rl := s.limits[target]; rl != nil && !rl.allow(s.now()) {
		return Fault{Kind: FaultTooMany, RetryAfter: rl.retryAfter(s.now())}
	}
	f := s.faults[target]
	if f == nil || (f.Match != nil && !f.Match(r)) {
		return Fault{}
	}
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, target)
		}
	}
	return out
}

// serveFault answers the request as f says and reports whether it did; false means the
// handler should go on (possibly after a delay, or with a response rewrite it applies itself).
func serveFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	switch f.Kind {
	case FaultNone, FaultNoExpiry, FaultZeroExpiry:
		return false
	case FaultSlow:
		d := f.Delay
		if d <= 0 {
			d = 10 * time.Second
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		}
		return false
	case FaultDown:
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	case FaultTooMany:
		ra := f.RetryAfter
		if ra <= 0 {
			ra = time.Second
		}
		w.Header().Set("Retry-After", strconv.Itoa(int((ra+time.Second-1)/time.Second)))
		writeJSON(w, http.StatusTooManyRequests, apiError{Code: "guard.too_many_requests", Message: "Too many requests. Please try again later."})
	case FaultServerError:
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		writeJSON(w, status, apiError{Code: "unknown", Message: "Internal server error."})
	case FaultReset:
		resetConn(w)
	case FaultUnauthorized:
		writeJSON(w, http.StatusUnauthorized, apiError{
			Code:    "auth.unauthorized",
			Data:    map[string]string{"code": "ERR_JWT_EXPIRED", "name": "JWTExpired"},
			Message: "Unauthorized. Please check credentials and its scope.",
		})
	case FaultHTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "<!doctype html><html><head><title>Sign in</title></head><body><h1>Welcome</h1></body></html>\n")
	case FaultInvalidJSON:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"keys":[{"kty":"EC","use":"sig",`)
	case FaultEmptyKeys:
		w.Header().Set("Content-Type", jwksContentType)
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"keys":[]}`)
	case FaultHuge:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		// A valid JSON document of 10 MB: a key set padded with a huge member.
		fmt.Fprint(w, `{"keys":[],"padding":"`)
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		for range 160 {
			if _, err := w.Write(chunk); err != nil {
				return true
			}
		}
		fmt.Fprint(w, `"}`)
	case FaultManyKeys:
		w.Header().Set("Content-Type", jwksContentType)
		w.WriteHeader(http.StatusOK)
		writeManyKeys(w, 10000)
	default:
		http.Error(w, "fakelogto: unknown fault", http.StatusInternalServerError)
	}
	return true
}

// manyKeysTemplate is one valid P-384 JWK (a real point), repeated with distinct kids;
// generating 10 000 real keys would take seconds.
var manyKeysTemplate = sync.OnceValue(func() jwk {
	k, err := newSigningKey(ES384)
	if err != nil {
		panic(err)
	}
	return k.jwk()
})

func writeManyKeys(w http.ResponseWriter, n int) {
	tmpl := manyKeysTemplate()
	var b strings.Builder
	b.WriteString(`{"keys":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kty":"EC","use":"sig","kid":"flood-%05d","alg":"ES384","crv":"P-384","x":%q,"y":%q}`,
			i, tmpl.X, tmpl.Y)
	}
	b.WriteString(`]}`)
	w.Write([]byte(b.String()))
}

// resetConn closes the client connection abruptly (RST where the platform allows it).
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// rateLimit is a fixed window of n requests per period, like Logto Cloud's per-tenant limit.
type rateLimit struct {
	n      int
	per    time.Duration
	start  time.Time
	served int
}

func (rl *rateLimit) allow(now time.Time) bool {
	if now.Sub(rl.start) >= rl.per {
		rl.start, rl.served = now, 0
	}
	if rl.served >= rl.n {
		return false
	}
	rl.served++
	return true
}

func (rl *rateLimit) retryAfter(now time.Time) time.Duration {
	return rl.start.Add(rl.per).Sub(now)
}

// SetRateLimit answers 429 with Retry-After to requests of target beyond n per period (a
// fixed window, as Logto Cloud's 200 requests per 10 s). n <= 0 removes the limit. Refused
// requests are counted by Calls.
func (s *Server) SetRateLimit(target Target, n int, per time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 || per <= 0 {
		delete(s.limits, target)
		return
	}
	s.limits[target] = &rateLimit{n: n, per: per, start: s.now()}
}
