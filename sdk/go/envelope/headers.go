package envelope

import (
	"net/http"
	"strings"
)

// The six header names of SPEC.md section 1, as the gateway writes them.
// HTTP header names are case-insensitive; these spellings are for writing.
const (
	HeaderEnvelope  = "X-StellaOps-Identity-Envelope"
	HeaderSignature = "X-StellaOps-Identity-Envelope-Signature"
	HeaderAlg       = "X-StellaOps-Identity-Envelope-Alg"
	HeaderKid       = "X-StellaOps-Identity-Envelope-Kid"
	HeaderIat       = "X-StellaOps-Identity-Envelope-Iat"
	HeaderExp       = "X-StellaOps-Identity-Envelope-Exp"
)

// HeaderNames lists the six headers in the order Headers holds them.
var HeaderNames = [6]string{HeaderEnvelope, HeaderSignature, HeaderAlg, HeaderKid, HeaderIat, HeaderExp}

const (
	// MaxEnvelopeLen is the longest X-StellaOps-Identity-Envelope value
	// accepted, in bytes.
	MaxEnvelopeLen = 16 * 1024
	// MaxSmallHeaderLen is the longest value accepted for the other five
	// headers, in bytes.
	MaxSmallHeaderLen = 256
)

// signingDomain is the first line of the signing input: it keeps an envelope
// signature from being valid for any other use of the same key.
const signingDomain = "StellaOps-Identity-Envelope/1"

// Headers holds the six header values of one envelope, as received.
type Headers struct {
	Envelope  string
	Signature string
	Alg       string
	Kid       string
	Iat       string
	Exp       string
}

// headerIndex maps a header name, in any case, to its index in HeaderNames,
// or -1. Written out so the common case (any other header) costs a length
// and prefix test, not six case-folding comparisons.
func headerIndex(name string) int {
	const prefix = HeaderEnvelope // every name starts with it
	if len(name) < len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
		return -1
	}
	switch rest := name[len(prefix):]; {
	case rest == "":
		return 0
	case strings.EqualFold(rest, "-Signature"):
		return 1
	case strings.EqualFold(rest, "-Alg"):
		return 2
	case strings.EqualFold(rest, "-Kid"):
		return 3
	case strings.EqualFold(rest, "-Iat"):
		return 4
	case strings.EqualFold(rest, "-Exp"):
		return 5
	}
	return -1
}

// ExtractHeaders finds the envelope headers of a request (check 1 of
// SPEC.md section 5). present is false when none of the six is there, which
// is not an error. Names match case-insensitively: every key of header is
// examined, not only the canonical spelling net/http produces, so a key set
// directly in the map (h["x-stellaops-identity-envelope-alg"]) still counts,
// and two field lines of one header, in whatever spelling, are a duplicate.
func ExtractHeaders(header http.Header) (h Headers, present bool, err error) {
	h, present, failure := extractHeaders(header)
	if failure != nil {
		return Headers{}, true, failure
	}
	return h, present, nil
}

// extractHeaders is ExtractHeaders with the concrete error type, for the
// checks that carry the *Error on.
func extractHeaders(header http.Header) (Headers, bool, *Error) {
	present := false
	var (
		values [6]string
		counts [6]int
	)
	for name, lines := range header {
		i := headerIndex(name)
		if i < 0 || len(lines) == 0 {
			continue
		}
		counts[i] += len(lines)
		values[i] = lines[0]
	}
	// Problems are reported in header order, not map order, so the same
	// request always yields the same code.
	for i, name := range HeaderNames {
		if counts[i] == 0 {
			continue
		}
		present = true
		if counts[i] > 1 {
			return Headers{}, true, errDuplicateHeader(name)
		}
		limit := MaxSmallHeaderLen
		if i == 0 {
			limit = MaxEnvelopeLen
		}
		if len(values[i]) > limit {
			return Headers{}, true, errHeaderTooLarge(name)
		}
		if !visibleASCII(values[i]) {
			return Headers{}, true, errMalformedHeader(name)
		}
	}
	if !present {
		return Headers{}, false, nil
	}
	for i, name := range HeaderNames {
		if counts[i] == 0 {
			return Headers{}, true, errMissingHeader(name)
		}
	}
	return Headers{
		Envelope:  values[0],
		Signature: values[1],
		Alg:       values[2],
		Kid:       values[3],
		Iat:       values[4],
		Exp:       values[5],
	}, true, nil
}

// visibleASCII reports whether every byte is 0x21 to 0x7E: no spaces, no
// control characters, and in particular no LF, which keeps the signing
// input's line structure unambiguous.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// signingInput is the exact byte string signed (SPEC.md section 3): the
// domain line, the Alg, Kid, Iat and Exp values and the envelope value,
// joined by LF without a trailing LF.
func signingInput(h *Headers) []byte {
	parts := [...]string{signingDomain, h.Alg, h.Kid, h.Iat, h.Exp, h.Envelope}
	size := len(parts) - 1
	for _, p := range parts {
		size += len(p)
	}
	input := make([]byte, 0, size)
	for i, p := range parts {
		if i > 0 {
			input = append(input, '\n')
		}
		input = append(input, p...)
	}
	return input
}
