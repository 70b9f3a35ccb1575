package envelope

import (
	"errors"
	"fmt"
)

// Code is the stable name of a failed envelope check (SPEC.md section 5).
// Codes appear in test vectors, logs and problem bodies; messages may change,
// codes do not.
type Code string

// The codes of SPEC.md section 5, in the order the checks run.
const (
	CodeMissingHeader       Code = "missing_header"
	CodeDuplicateHeader     Code = "duplicate_header"
	CodeHeaderTooLarge      Code = "header_too_large"
	CodeMalformedHeader     Code = "malformed_header"
	CodeUnsupportedAlg      Code = "unsupported_alg"
	CodeUnknownKid          Code = "unknown_kid"
	CodeAlgNotAllowedForKey Code = "alg_not_allowed_for_key"
	CodeMalformedTimestamp  Code = "malformed_timestamp"
	CodeMalformedSignature  Code = "malformed_signature"
	CodeBadSignature        Code = "bad_signature"
	CodeMalformedPayload    Code = "malformed_payload"
	CodeUnsupportedVersion  Code = "unsupported_version"
	CodeTimestampMismatch   Code = "timestamp_mismatch"
	CodeBadLifetime         Code = "bad_lifetime"
	CodeExpired             Code = "expired"
	CodeIssuedInFuture      Code = "issued_in_future"
	CodeIssuerMismatch      Code = "issuer_mismatch"
	CodeAudienceMismatch    Code = "audience_mismatch"
	CodeRequestMismatch     Code = "request_mismatch"
)

// Error is an envelope that failed a check. Code says which; the message
// adds the facts an operator needs (which header, which key, how long ago)
// and never echoes a header value.
type Error struct {
	Code    Code
	message string
}

func (e *Error) Error() string { return e.message }

// Is lets errors.Is match on the code alone:
// errors.Is(err, &envelope.Error{Code: envelope.CodeExpired}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// ErrNoEnvelope is returned by [Verifier.Verify] when the request carries
// none of the six headers. It is not an *Error: SPEC.md does not count a
// missing envelope as an invalid one, and the trust modes treat the two
// differently.
var ErrNoEnvelope = errors.New("request carries no identity envelope")

func newError(code Code, format string, args ...interface{}) *Error {
	return &Error{Code: code, message: fmt.Sprintf(format, args...)}
}

func errMissingHeader(name string) *Error {
	return newError(CodeMissingHeader, "envelope header %s is missing", name)
}

func errDuplicateHeader(name string) *Error {
	return newError(CodeDuplicateHeader, "envelope header %s appears more than once", name)
}

func errHeaderTooLarge(name string) *Error {
	return newError(CodeHeaderTooLarge, "envelope header %s is too large", name)
}

func errMalformedHeader(name string) *Error {
	return newError(CodeMalformedHeader, "envelope header %s is not visible ascii", name)
}

func errUnknownKid() *Error {
	return newError(CodeUnknownKid, "envelope key id is not in the accepted keyring")
}

func errMalformedPayload(reason string) *Error {
	return newError(CodeMalformedPayload, "envelope payload is malformed: %s", reason)
}
