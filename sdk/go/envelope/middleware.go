package envelope

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Outcome is what the middleware concluded for a request, for the handler.
type Outcome struct {
	identity *Identity
	ignored  *Error
	config   *Config
}

// Identity is the caller vouched for by a valid envelope, trusted in this
// trust mode (Hybrid or GatewayEnforced). When false, the handler must
// authenticate the caller itself. In ServiceEnforced it is always false,
// even for a valid envelope: that mode never authorizes by envelope.
func (o *Outcome) Identity() (*Identity, bool) { return o.identity, o.identity != nil }

// IgnoredInvalid is the failure of an invalid envelope that the trust mode
// ignored (ServiceEnforced), or nil.
func (o *Outcome) IgnoredInvalid() *Error { return o.ignored }

// Config is the configuration the request was decided with: loaded once
// when the request reached the middleware and kept until it is answered,
// whatever reloads happen meanwhile.
func (o *Outcome) Config() *Config { return o.config }

// outcomeKey is the context key of the *Outcome; unexported so only the
// middleware can set it.
type outcomeKey struct{}

// OutcomeFrom returns what the middleware concluded for the request whose
// context is ctx; false when the middleware did not handle it.
func OutcomeFrom(ctx context.Context) (*Outcome, bool) {
	o, ok := ctx.Value(outcomeKey{}).(*Outcome)
	return o, ok
}

// IdentityFrom returns the caller's identity when the request carried a
// valid envelope that its trust mode trusts. Otherwise (no envelope,
// ServiceEnforced, Router__Enabled=false, or no middleware) it returns
// false and the handler must authenticate the caller itself.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	if o, ok := OutcomeFrom(ctx); ok {
		return o.Identity()
	}
	return nil, false
}

// Middleware applies the trust mode to every request. It loads the
// configuration once per request and decides the whole request with it; it
// answers rejections itself (application/problem+json, 401 or 403, never
// echoing a header value) and calls next for every other request, with the
// [Outcome] in the request's context.
//
// Place it outside anything that rewrites the path (http.StripPrefix): the
// envelope is bound to the path as received.
//
// With a JWKS URL, an EdDSA envelope whose kid no key has (in Hybrid and
// GatewayEnforced) asks the fetcher for a refetch and waits for it at most
// [UnknownKidWait] before it is checked again.
func (h *Handle) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := h.current.Load()
		config := l.config
		outcome := &Outcome{config: config}
		action := decideWithJWKS(r.Context(), config, l.jwks, r.Header, r.Method, requestPath(r), h.now())
		switch action.Kind {
		case UseEnvelope:
			outcome.identity = action.Identity
		case Reject:
			if cause := action.Rejection.Cause; cause != nil {
				h.logger.Printf("envelope: rejected (mode=%s code=%s): %s", config.mode, cause.Code, cause)
			}
			action.Rejection.WriteProblem(w)
			return
		default:
			if action.Ignored != nil {
				h.logger.Printf("envelope: invalid envelope ignored (mode=%s code=%s): %s",
					config.mode, action.Ignored.Code, action.Ignored)
			}
			outcome.ignored = action.Ignored
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), outcomeKey{}, outcome)))
	})
}

// decideWithJWKS is [Config.Decide] with the keys of jwks accepted after
// the configured ones, and, for an unknown kid a refetch may bring, a wait
// of at most UnknownKidWait for that refetch before checking again.
func decideWithJWKS(ctx context.Context, c *Config, jwks *JWKSKeys, header http.Header, method, path string, now time.Time) Action {
	if !c.enabled {
		return Action{Kind: ServiceAuth}
	}
	if jwks == nil {
		return Decide(c.mode, checkRequest(c.verifier, nil, header, method, path, now))
	}
	check := checkRequest(c.verifier, jwks.Keyring(), header, method, path, now)
	if wait := refetchFor(c, jwks, header, check); wait != nil {
		timer := time.NewTimer(UnknownKidWait)
		select {
		case <-wait:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		check = checkRequest(c.verifier, jwks.Keyring(), header, method, path, now)
	}
	return Decide(c.mode, check)
}

// refetchFor is the refetch to wait for before checking again, when the
// envelope's kid is unknown and the JWKS could still bring it: an EdDSA
// envelope (the only keys a JWKS lists) with a well-formed kid, in a mode
// that uses envelopes. Nil: decide now.
func refetchFor(c *Config, jwks *JWKSKeys, header http.Header, check Check) <-chan struct{} {
	if c.mode == ServiceEnforced || check.Err == nil || check.Err.Code != CodeUnknownKid {
		return nil
	}
	h, present, failure := extractHeaders(header)
	if failure != nil || !present || Alg(h.Alg) != EdDSA || !validKid(h.Kid) {
		return nil
	}
	return jwks.RefetchForUnknownKid()
}

// RequireIdentity answers 401 envelope_required for a request that has no
// trusted identity, and calls next for one that has: for routes a service
// only serves to callers vouched for by the gateway, whatever the trust
// mode. It must run inside [Handle.Middleware]; without it, it answers 500.
func RequireIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outcome, ok := OutcomeFrom(r.Context())
		if !ok {
			// A wiring mistake in the service, not a client error.
			http.Error(w, "envelope middleware is not installed", http.StatusInternalServerError)
			return
		}
		if _, trusted := outcome.Identity(); !trusted {
			rejection := Rejection{Status: http.StatusUnauthorized, Code: ProblemEnvelopeRequired}
			rejection.WriteProblem(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requestPath is the request's path as received, without the query, as
// the gateway signed it. r.URL.Path is percent-decoded, so the raw
// request-target is used when there is one.
func requestPath(r *http.Request) string {
	target := r.RequestURI
	switch {
	case strings.HasPrefix(target, "/"):
		if i := strings.IndexByte(target, '?'); i >= 0 {
			return target[:i]
		}
		return target
	case target != "" && target != "*":
		// absolute-form (a request through a forward proxy).
		if u, err := url.ParseRequestURI(target); err == nil {
			return u.EscapedPath()
		}
	}
	return r.URL.EscapedPath()
}
