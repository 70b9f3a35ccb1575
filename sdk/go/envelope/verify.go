package envelope

import (
	"errors"
	"net/http"
	"time"
)

const (
	// DefaultClockSkewSeconds is the default allowance for clock
	// differences between gateway and service.
	DefaultClockSkewSeconds = 30
	// DefaultMaxLifetimeSeconds is the default upper bound on exp - iat.
	DefaultMaxLifetimeSeconds = 300
)

// VerifierSettings is what a service accepts besides the keys.
type VerifierSettings struct {
	// Audience is this service's name (the gateway's services[].name); the
	// envelope's aud must equal it.
	Audience string
	// Issuer is the gateway id expected in iss; empty accepts any issuer.
	Issuer string
	// ClockSkewSeconds is how far exp and iat may be off the local clock.
	ClockSkewSeconds uint64
	// MaxLifetimeSeconds is the largest exp - iat accepted.
	MaxLifetimeSeconds uint64
}

// DefaultVerifierSettings returns settings for audience with the default
// skew and lifetime and any issuer.
func DefaultVerifierSettings(audience string) VerifierSettings {
	return VerifierSettings{
		Audience:           audience,
		ClockSkewSeconds:   DefaultClockSkewSeconds,
		MaxLifetimeSeconds: DefaultMaxLifetimeSeconds,
	}
}

// Verifier checks envelopes against a keyring and the service's settings.
// It does not change once made and is safe for concurrent use.
type Verifier struct {
	keyring  *Keyring
	settings VerifierSettings
}

// NewVerifier makes a verifier. The keyring must hold a key and the
// audience must be set: an empty audience would accept envelopes meant for
// a service with no name.
func NewVerifier(keyring *Keyring, settings VerifierSettings) (*Verifier, error) {
	if keyring == nil || keyring.Len() == 0 {
		return nil, errors.New("envelope verifier needs at least one key")
	}
	if settings.Audience == "" {
		return nil, errors.New("envelope verifier needs an audience")
	}
	return &Verifier{keyring: keyring, settings: settings}, nil
}

// Keyring is the set of accepted keys.
func (v *Verifier) Keyring() *Keyring { return v.keyring }

// Settings returns a copy of the verifier's settings.
func (v *Verifier) Settings() VerifierSettings { return v.settings }

// Verify finds the envelope in header and runs every check of SPEC.md
// section 5 against the request the service received (method, and path
// without the query, exactly as received) at now. It returns the verified
// identity, [ErrNoEnvelope] when none of the six headers is present, or an
// *Error whose Code is the first check that failed.
func (v *Verifier) Verify(header http.Header, method, path string, now time.Time) (*Identity, error) {
	h, present, err := ExtractHeaders(header)
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, ErrNoEnvelope
	}
	return v.VerifyHeaders(&h, method, path, now)
}

// VerifyWithKeys is [Verifier.Verify] with extra keys, those fetched from a
// JWKS URL ([JWKSKeys.Keyring]), looked up after the verifier's keyring: a
// kid in both is the keyring's. A nil extra is Verify.
func (v *Verifier) VerifyWithKeys(header http.Header, extra *Keyring, method, path string, now time.Time) (*Identity, error) {
	h, present, err := ExtractHeaders(header)
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, ErrNoEnvelope
	}
	id, failure := v.verify(&h, extra, method, path, unixSeconds(now))
	if failure != nil {
		return nil, failure
	}
	return id, nil
}

// VerifyHeaders runs checks 2 to 16 of SPEC.md section 5 on headers
// already extracted by [ExtractHeaders]. A failure is an *Error.
func (v *Verifier) VerifyHeaders(h *Headers, method, path string, now time.Time) (*Identity, error) {
	id, err := v.verify(h, nil, method, path, unixSeconds(now))
	if err != nil {
		// Converted only when set: a nil *Error in an error is not nil.
		return nil, err
	}
	return id, nil
}

// unixSeconds is now in whole unix seconds; a time before 1970 is 0, which
// every envelope's iat is after.
func unixSeconds(now time.Time) uint64 {
	if s := now.Unix(); s > 0 {
		return uint64(s)
	}
	return 0
}

// verify runs checks 2 to 16. extra (the keys fetched from a JWKS URL, or
// nil) is looked up after the verifier's keyring: a kid in both is the
// keyring's.
func (v *Verifier) verify(h *Headers, extra *Keyring, method, path string, now uint64) (*Identity, *Error) {
	// 2. The algorithm, exactly so spelled.
	alg := Alg(h.Alg)
	if alg != HS256 && alg != EdDSA {
		return nil, newError(CodeUnsupportedAlg, "envelope algorithm is not HS256 or EdDSA")
	}
	// 3. The key.
	key, ok := v.keyring.Key(h.Kid)
	if !ok && extra != nil {
		key, ok = extra.Key(h.Kid)
	}
	if !ok {
		return nil, errUnknownKid()
	}
	// 4. The key's one algorithm.
	if key.alg != alg {
		return nil, newError(CodeAlgNotAllowedForKey,
			"envelope algorithm %s is not the algorithm of key %s (%s)", alg, key.kid, key.alg)
	}
	// 5. The timestamps' spelling; their values are checked after the
	// signature, so nothing unsigned decides more than the code.
	iat, iatOK := parseCanonicalDecimal(h.Iat)
	exp, expOK := parseCanonicalDecimal(h.Exp)
	if !iatOK || !expOK {
		return nil, newError(CodeMalformedTimestamp, "envelope iat or exp header is not a canonical decimal integer")
	}
	// 6. The signature's spelling.
	signature, ok := decodeB64URL(h.Signature)
	if !ok {
		return nil, newError(CodeMalformedSignature, "envelope signature is not canonical unpadded base64url")
	}
	// 7. The signature over every header value as received.
	if !key.verify(signingInput(h), signature) {
		return nil, newError(CodeBadSignature, "envelope signature does not verify with key %s", key.kid)
	}
	// 8. The payload.
	document, ok := decodeB64URL(h.Envelope)
	if !ok {
		return nil, errMalformedPayload("encoding")
	}
	p, err := parsePayload(document)
	if err != nil {
		return nil, errMalformedPayload(err.Error())
	}
	// 9. The version.
	if p.ver != payloadVersion {
		return nil, newError(CodeUnsupportedVersion, "envelope payload version %d is not supported", p.ver)
	}
	// 10. The payload's timestamps are the signed headers'.
	if p.iat != iat || p.exp != exp {
		return nil, newError(CodeTimestampMismatch, "envelope payload iat/exp differ from the signed headers")
	}
	// 11. The lifetime.
	skew, maxLifetime := v.settings.ClockSkewSeconds, v.settings.MaxLifetimeSeconds
	if exp <= iat || exp-iat > maxLifetime {
		var lifetime uint64
		if exp > iat {
			lifetime = exp - iat
		}
		return nil, newError(CodeBadLifetime, "envelope lifetime of %d s is outside 1..=%d s", lifetime, maxLifetime)
	}
	// 12. Not expired, beyond the skew.
	if now > saturatingAdd(exp, skew) {
		return nil, newError(CodeExpired, "envelope expired %d s ago (beyond the allowed clock skew)", now-exp)
	}
	// 13. Not issued in the future, beyond the skew.
	if iat > saturatingAdd(now, skew) {
		return nil, newError(CodeIssuedInFuture, "envelope issued %d s in the future (beyond the allowed clock skew)", iat-now)
	}
	// 14. The issuer, when one is configured.
	if v.settings.Issuer != "" && p.iss != v.settings.Issuer {
		return nil, newError(CodeIssuerMismatch, "envelope issuer is not the configured gateway")
	}
	// 15. The audience is this service.
	if p.aud != v.settings.Audience {
		return nil, newError(CodeAudienceMismatch, "envelope audience %q is not this service (%q)", p.aud, v.settings.Audience)
	}
	// 16. The request is the one the envelope was issued for.
	if p.method != method {
		return nil, newError(CodeRequestMismatch, "envelope was issued for another request (method differs)")
	}
	if p.path != path {
		return nil, newError(CodeRequestMismatch, "envelope was issued for another request (path differs)")
	}
	return &Identity{
		subject:    p.sub,
		tenant:     p.tenant,
		clientID:   p.clientID,
		scopes:     p.scopes,
		roles:      p.roles,
		authMethod: p.authMethod,
		cnf:        p.cnf,
		issuer:     p.iss,
		audience:   p.aud,
		method:     p.method,
		path:       p.path,
		requestID:  p.requestID,
		kid:        key.kid,
		iat:        iat,
		exp:        exp,
	}, nil
}
