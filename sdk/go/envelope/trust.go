package envelope

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// TrustMode is how far a service trusts the gateway (SPEC.md section 6).
// The zero value is ServiceEnforced, the default.
type TrustMode int

const (
	// ServiceEnforced: the service authorizes every request itself;
	// envelopes are ignored for authorization (an invalid one is logged).
	ServiceEnforced TrustMode = iota
	// Hybrid: a valid envelope is trusted, an invalid one is refused (401),
	// and without one the service authorizes the request itself.
	Hybrid
	// GatewayEnforced: only requests with a valid envelope are served.
	GatewayEnforced
)

func (m TrustMode) String() string {
	switch m {
	case ServiceEnforced:
		return "ServiceEnforced"
	case Hybrid:
		return "Hybrid"
	case GatewayEnforced:
		return "GatewayEnforced"
	}
	return "TrustMode(invalid)"
}

// ParseTrustMode reads a trust mode case-insensitively, ignoring "_", "-"
// and surrounding spaces (gateway_enforced works).
func ParseTrustMode(text string) (TrustMode, error) {
	folded := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' {
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(text)))
	switch folded {
	case "serviceenforced":
		return ServiceEnforced, nil
	case "hybrid":
		return Hybrid, nil
	case "gatewayenforced":
		return GatewayEnforced, nil
	}
	return ServiceEnforced, errUnknownTrustMode
}

var errUnknownTrustMode = &configProblem{"trust mode must be ServiceEnforced, Hybrid or GatewayEnforced"}

// configProblem is an error whose text is safe to show with a variable name.
type configProblem struct{ text string }

func (p *configProblem) Error() string { return p.text }

// Check is what looking for an envelope on one request found: nothing
// (Absent), a valid envelope (Identity set) or an invalid one (Err set).
type Check struct {
	Identity *Identity
	Err      *Error
}

// Absent reports whether the request carried none of the six headers.
func (c Check) Absent() bool { return c.Identity == nil && c.Err == nil }

// CheckRequest is the whole service-side check before [Decide]: it looks
// for the envelope in header and verifies it with v. A nil v means no key is
// configured; an envelope that arrives then is invalid (unknown_kid), as
// nothing it says can be trusted.
func CheckRequest(v *Verifier, header http.Header, method, path string, now time.Time) Check {
	return checkRequest(v, nil, header, method, path, now)
}

// checkRequest is CheckRequest with extra keys (those fetched from a JWKS
// URL) looked up after v's keyring.
func checkRequest(v *Verifier, extra *Keyring, header http.Header, method, path string, now time.Time) Check {
	h, present, failure := extractHeaders(header)
	switch {
	case failure != nil:
		return Check{Err: failure}
	case !present:
		return Check{}
	case v == nil:
		return Check{Err: errUnknownKid()}
	}
	id, failure := v.verify(&h, extra, method, path, unixSeconds(now))
	if failure != nil {
		return Check{Err: failure}
	}
	return Check{Identity: id}
}

// ActionKind says what a service must do with a request.
type ActionKind int

const (
	// ServiceAuth: authenticate and authorize the request with the
	// service's own means.
	ServiceAuth ActionKind = iota
	// UseEnvelope: serve the request as Action.Identity.
	UseEnvelope
	// Reject: answer with Action.Rejection; do not call the handler.
	Reject
)

// Action is the trust-mode table's verdict for one request.
type Action struct {
	Kind ActionKind
	// Identity is set for UseEnvelope.
	Identity *Identity
	// Ignored is set for ServiceAuth when an invalid envelope was ignored
	// (ServiceEnforced), so that it can be logged.
	Ignored *Error
	// Rejection is set for Reject.
	Rejection *Rejection
}

// The problem codes of SPEC.md section 6.
const (
	ProblemEnvelopeRequired         = "envelope_required"
	ProblemEnvelopeInvalid          = "envelope_invalid"
	ProblemEnvelopeAudienceMismatch = "envelope_audience_mismatch"
)

// Rejection is the response a service sends instead of handling a request.
type Rejection struct {
	// Status is 401 or 403.
	Status int
	// Code is ProblemEnvelopeRequired, ProblemEnvelopeInvalid or
	// ProblemEnvelopeAudienceMismatch.
	Code string
	// Cause is the failed check, when one failed.
	Cause *Error
}

// Decide applies the trust-mode table of SPEC.md section 6.
func Decide(mode TrustMode, check Check) Action {
	if mode != Hybrid && mode != GatewayEnforced {
		// ServiceEnforced, and fail closed to it for an invalid mode value:
		// an envelope never decides anything.
		return Action{Kind: ServiceAuth, Ignored: check.Err}
	}
	switch {
	case check.Identity != nil:
		return Action{Kind: UseEnvelope, Identity: check.Identity}
	case check.Err == nil && mode == Hybrid:
		return Action{Kind: ServiceAuth}
	case check.Err == nil:
		return Action{Kind: Reject, Rejection: &Rejection{Status: http.StatusUnauthorized, Code: ProblemEnvelopeRequired}}
	case mode == GatewayEnforced && check.Err.Code == CodeAudienceMismatch:
		return Action{Kind: Reject, Rejection: &Rejection{Status: http.StatusForbidden, Code: ProblemEnvelopeAudienceMismatch, Cause: check.Err}}
	default:
		return Action{Kind: Reject, Rejection: &Rejection{Status: http.StatusUnauthorized, Code: ProblemEnvelopeInvalid, Cause: check.Err}}
	}
}

// Decide is the whole decision for one request under this configuration:
// with Router__Enabled=false envelopes are ignored entirely (service auth,
// nothing checked, nothing logged); otherwise [CheckRequest] then [Decide]
// in the configured trust mode. Pure: now is the caller's clock.
func (c *Config) Decide(header http.Header, method, path string, now time.Time) Action {
	if !c.enabled {
		return Action{Kind: ServiceAuth}
	}
	return Decide(c.mode, CheckRequest(c.verifier, header, method, path, now))
}

// ProblemBody is the application/problem+json body of a rejection, byte for
// byte the Rust middleware's (members in its order, no trailing newline).
// It names the failed check by its code and never echoes a header value.
func (r *Rejection) ProblemBody() []byte {
	var cause *Code
	if r.Cause != nil {
		cause = &r.Cause.Code
	}
	title := http.StatusText(r.Status)
	if title == "" {
		title = "error"
	}
	body, err := json.Marshal(struct {
		EnvelopeError *Code  `json:"envelope_error"`
		Error         string `json:"error"`
		Status        int    `json:"status"`
		Title         string `json:"title"`
		Type          string `json:"type"`
	}{cause, r.Code, r.Status, title, "about:blank"})
	if err != nil {
		// Impossible: every member is a string, an int or null.
		return []byte(`{"error":"envelope_invalid"}`)
	}
	return body
}

// WriteProblem answers a request with the rejection: its status, an
// application/problem+json body and Cache-Control: no-store.
func (r *Rejection) WriteProblem(w http.ResponseWriter) {
	header := w.Header()
	header.Set("Content-Type", "application/problem+json")
	header.Set("Cache-Control", "no-store")
	w.WriteHeader(r.Status)
	_, _ = w.Write(r.ProblemBody())
}
