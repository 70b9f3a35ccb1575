package envelope

import (
	"encoding/base64"
	"strconv"
)

// Strict decoders: one encoding per value. A lenient decoder lets an
// attacker write many byte strings with one meaning, which breaks
// comparisons of signature-covered headers and of key material.

// strictB64URL refuses padding and non-zero bits after the last octet.
var strictB64URL = base64.RawURLEncoding.Strict()

// b64URLAlphabet[c] is true for the 64 characters of RFC 4648 section 5.
var b64URLAlphabet = func() (table [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		table[c] = true
	}
	return table
}()

// decodeB64URL decodes canonical unpadded base64url (SPEC.md section 1).
func decodeB64URL(text string) ([]byte, bool) {
	// A length of 1 mod 4 is never produced by an encoder. encoding/base64
	// refuses it too; the test here states SPEC.md's rule where it applies.
	if len(text)%4 == 1 {
		return nil, false
	}
	// encoding/base64 skips CR and LF anywhere in its input; the alphabet
	// check makes "AB\nCD" an error rather than a second spelling of "ABCD".
	for i := 0; i < len(text); i++ {
		if !b64URLAlphabet[text[i]] {
			return nil, false
		}
	}
	decoded, err := strictB64URL.DecodeString(text)
	if err != nil {
		return nil, false
	}
	return decoded, true
}

// encodeB64URL encodes bytes as unpadded base64url.
func encodeB64URL(data []byte) string {
	return base64.RawURLEncoding.EncodeToString(data)
}

// maxDecimalDigits bounds canonical decimals so they always fit a uint64
// and unix seconds stay far from overflow.
const maxDecimalDigits = 15

// parseCanonicalDecimal parses a canonical decimal (SPEC.md section 1):
// ASCII digits only, no sign, no leading zero except "0", at most 15 digits.
func parseCanonicalDecimal(text string) (uint64, bool) {
	if len(text) == 0 || len(text) > maxDecimalDigits || (text[0] == '0' && len(text) > 1) {
		return 0, false
	}
	for i := 0; i < len(text); i++ {
		if text[i] < '0' || text[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(text, 10, 64)
	return n, err == nil
}

// saturatingAdd adds without wrapping: time arithmetic on attacker-chosen
// timestamps must never wrap into the past.
func saturatingAdd(a, b uint64) uint64 {
	if a > ^uint64(0)-b {
		return ^uint64(0)
	}
	return a + b
}
