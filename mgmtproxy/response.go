package mgmtproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// classify maps a failure to get Logto's answer to the caller's status, reason and message (README's
// table of statuses). Logto down or failing is 502, Logto slow 504, whether the token endpoint or the
// Management API failed; mgmtproxy's own M2M credentials failing is 502 too: the user's request was
// fine.
func classify(err error) (status int, reason, msg string) {
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	switch {
	case errors.Is(err, errM2MForbidden):
		return http.StatusBadGateway, "m2m_forbidden", "Logto grants mgmtproxy's M2M app no Management API access"
	case errors.Is(err, errTokenUnavailable) && timeout:
		return http.StatusGatewayTimeout, "m2m_token_unavailable", "Logto's token endpoint did not answer in time"
	case errors.Is(err, errTokenUnavailable):
		return http.StatusBadGateway, "m2m_token_unavailable", "mgmtproxy could not get a Management API token from Logto"
	case errors.Is(err, errUpstreamUnauthorized):
		return http.StatusBadGateway, "upstream_unauthorized", "Logto refused mgmtproxy's credentials"
	case timeout:
		return http.StatusGatewayTimeout, "upstream_timeout", "Logto did not answer in time"
	case errors.Is(err, errUpstreamStatus):
		return http.StatusBadGateway, "upstream_error", "Logto failed to answer the request"
	case errors.Is(err, errBadUpstream):
		return http.StatusBadGateway, "upstream_bad_response", "Logto's answer could not be processed"
	}
	return http.StatusBadGateway, "upstream_unavailable", "Logto could not be reached"
}

// proxyError answers a failed call to Logto with classify's status. The body never carries Logto's
// error text or anything of the token.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status, reason, msg := classify(err)
	p.log.Warn("upstream call failed", "method", r.Method, "path", r.URL.Path, "status", status, "reason", reason, "err", err)
	if rec, ok := w.(*recorder); ok {
		rec.reason = reason
	}
	writeError(w, status, reason, msg)
}

// modifyResponse returns the response hook for op: Logto's status and body pass, its Link header is
// rewritten to the public /api path, cookies are dropped, member listings are reduced.
func (p *Proxy) modifyResponse(op *operation) func(*http.Response) error {
	return func(resp *http.Response) error {
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%w: Logto answered %d", errUpstreamStatus, resp.StatusCode)
		}
		resp.Header.Del("Set-Cookie")
		if v := resp.Header.Values("Link"); len(v) > 0 {
			if link := rewriteLink(strings.Join(v, ", "), p.base); link != "" {
				resp.Header.Set("Link", link)
			} else {
				resp.Header.Del("Link")
			}
		}
		if resp.StatusCode/100 == 2 {
			// The change happened: audit it, and revoke what it took away before the client hears of it.
			if x := exchangeOf(resp.Request.Context()); x != nil {
				var created []byte
				if op.action == createOrg {
					var err error
					if created, err = peekBody(resp); err != nil {
						return err
					}
				}
				x.forwarded(x.req, created)
				p.revoke(resp.Request.Context(), x.req, nil)
			}
		}
		if op.action != listMembers || resp.StatusCode != http.StatusOK {
			return nil
		}
		raw, err := peekBody(resp)
		if err != nil {
			return fmt.Errorf("mgmtproxy: read member listing: %w", err)
		}
		out, err := reduceMembers(raw, p.fields)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", fmt.Sprint(len(out)))
		resp.Header.Del("ETag") // the body changed
		resp.Header.Del("Content-Encoding")
		return nil
	}
}

// reduceMembers keeps only fields (in that order) of each user object in a JSON array.
func reduceMembers(raw []byte, fields []string) ([]byte, error) {
	var users []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &users); err != nil {
		return nil, fmt.Errorf("%w: member listing is not a JSON array of objects", errBadUpstream)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, u := range users {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		n := 0
		for _, f := range fields {
			v, ok := u[f]
			if !ok {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(f)
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
			n++
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// rewriteLink turns Logto's Link header, whose targets name Logto's own host without /api, into
// path-absolute references under the public /api path. It returns "" when a part cannot be parsed.
func rewriteLink(v string, base *url.URL) string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		end := strings.IndexByte(part, '>')
		if part[0] != '<' || end < 0 {
			return ""
		}
		u, err := url.Parse(part[1:end])
		if err != nil {
			return ""
		}
		path := strings.TrimPrefix(u.EscapedPath(), strings.TrimSuffix(base.EscapedPath(), "/"))
		if !strings.HasPrefix(path, "/api/") {
			path = "/api" + path
		}
		if strings.Contains(path, "..") || strings.Contains(path, "//") {
			return ""
		}
		target := path
		if u.RawQuery != "" {
			target += "?" + u.RawQuery
		}
		out = append(out, "<"+target+">"+part[end+1:])
	}
	return strings.Join(out, ", ")
}

// passReply writes Logto's answer through: status, content type and body.
func passReply(w http.ResponseWriter, rep *reply) {
	if ct := rep.header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(rep.body)))
	w.WriteHeader(rep.status)
	w.Write(rep.body)
}

// errorBody returns Logto's error body when it is a JSON object, else a generic one.
func errorBody(rep *reply) json.RawMessage {
	trimmed := bytes.TrimSpace(rep.body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		return trimmed
	}
	b, _ := json.Marshal(apiError{Code: "upstream_error", Message: fmt.Sprintf("Logto answered %d", rep.status)})
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal_error","message":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

// apiError is the body of every error mgmtproxy itself answers, shaped like Logto's and the sidecar's.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}
