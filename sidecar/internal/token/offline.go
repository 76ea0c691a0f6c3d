package token

import "time"

// ClaimsOf checks the payload of a token already verified elsewhere (a JSON object of claims, at
// most MaxTokenBytes) exactly as Verify checks a verified token's claims (types, audience, kind,
// times) and returns them: for `sidecar explain --claims`, offline. The times are checked at the
// token's own iat, so captured claims are explained as they were when issued. The issuer is not
// checked: no key says who issued them.
func ClaimsOf(cfg Config, payload []byte) (*Claims, error) {
	if len(payload) > MaxTokenBytes {
		return nil, fail(ReasonTooLarge, "claims are %d bytes, over %d", len(payload), MaxTokenBytes)
	}
	m, err := decodeObject(payload)
	if err != nil {
		return nil, fail(ReasonClaims, "claims: %v", err)
	}
	iat, _, err := timeClaim(m, "iat", true, true)
	if err != nil {
		return nil, err
	}
	cfg.Now = func() time.Time { return time.Unix(iat, 0) }
	v := &Verifier{cfg: cfg}
	var c Claims
	if err := v.claims(&c, m); err != nil {
		return nil, err
	}
	return &c, nil
}
