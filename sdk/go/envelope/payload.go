package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf8"
)

// payloadVersion is the only payload format version (ver) this package reads.
const payloadVersion = 1

// payload is the decoded envelope document of SPEC.md section 2.
type payload struct {
	ver        uint64
	iss        string
	aud        string
	sub        nullString
	tenant     nullString
	clientID   nullString
	scopes     []string
	roles      []string
	authMethod AuthMethod
	cnf        Confirmation
	method     string
	path       string
	requestID  string
	iat        uint64
	exp        uint64
}

// The payload's members; a bit each in the set of members seen.
const (
	memberVer = iota
	memberIss
	memberAud
	memberSub
	memberTenant
	memberClientID
	memberScopes
	memberRoles
	memberAuthMethod
	memberCnf
	memberMethod
	memberPath
	memberRequestID
	memberIat
	memberExp
	memberCount
)

var payloadMembers = map[string]int{
	"ver": memberVer, "iss": memberIss, "aud": memberAud, "sub": memberSub,
	"tenant": memberTenant, "client_id": memberClientID, "scopes": memberScopes,
	"roles": memberRoles, "auth_method": memberAuthMethod, "cnf": memberCnf,
	"method": memberMethod, "path": memberPath, "request_id": memberRequestID,
	"iat": memberIat, "exp": memberExp,
}

var cnfMembers = map[string]int{"jkt": 0, "x5t#S256": 1, "spiffe_id": 2}

// Why a payload was refused: the reasons of the Rust crate, so logs read
// the same whichever language verified.
var (
	errPayloadJSON      = errors.New("json")
	errPayloadDuplicate = errors.New("duplicate member")
	errPayloadMembers   = errors.New("members")
)

// parsePayload decodes the payload strictly. encoding/json alone would keep
// the last of two members with one name, match member names
// case-insensitively, ignore unknown members, accept 1.0 for an integer and
// turn invalid UTF-8 or a lone surrogate into U+FFFD: each lets the verifier
// and a later reader disagree on what was signed. So the document is walked
// token by token and every member is checked against section 2: all fifteen
// present, none twice (names compared after unescaping), no other, each of
// exactly its type.
func parsePayload(data []byte) (*payload, error) {
	if !utf8.Valid(data) || hasLoneSurrogate(data) {
		return nil, errPayloadJSON
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, errPayloadJSON
	}
	p := &payload{}
	var seen uint32
	for dec.More() {
		name, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		member, known := payloadMembers[name]
		if !known {
			return nil, errPayloadMembers
		}
		if seen&(1<<member) != 0 {
			return nil, errPayloadDuplicate
		}
		seen |= 1 << member
		if err := p.readMember(dec, member); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, errPayloadJSON
	}
	// One object and nothing after it but whitespace.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errPayloadJSON
	}
	if seen != 1<<memberCount-1 {
		return nil, errPayloadMembers
	}
	return p, nil
}

func (p *payload) readMember(dec *json.Decoder, member int) error {
	var err error
	switch member {
	case memberVer:
		p.ver, err = readUint(dec, 32)
	case memberIss:
		p.iss, err = readString(dec)
	case memberAud:
		p.aud, err = readString(dec)
	case memberSub:
		p.sub, err = readNullString(dec)
	case memberTenant:
		p.tenant, err = readNullString(dec)
	case memberClientID:
		p.clientID, err = readNullString(dec)
	case memberScopes:
		p.scopes, err = readStringArray(dec)
	case memberRoles:
		p.roles, err = readStringArray(dec)
	case memberAuthMethod:
		var text string
		if text, err = readString(dec); err == nil {
			var ok bool
			if p.authMethod, ok = parseAuthMethod(text); !ok {
				err = errPayloadMembers
			}
		}
	case memberCnf:
		p.cnf, err = readConfirmation(dec)
	case memberMethod:
		p.method, err = readString(dec)
	case memberPath:
		p.path, err = readString(dec)
	case memberRequestID:
		p.requestID, err = readString(dec)
	case memberIat:
		p.iat, err = readUint(dec, 64)
	case memberExp:
		p.exp, err = readUint(dec, 64)
	}
	return err
}

// readConfirmation reads cnf: an object with exactly jkt, x5t#S256 and
// spiffe_id, each a string or null.
func readConfirmation(dec *json.Decoder) (Confirmation, error) {
	var c Confirmation
	if err := expectDelim(dec, '{'); err != nil {
		return c, err
	}
	fields := [3]*nullString{&c.jkt, &c.x5tS256, &c.spiffeID}
	var seen uint8
	for dec.More() {
		name, err := readKey(dec)
		if err != nil {
			return c, err
		}
		member, known := cnfMembers[name]
		if !known {
			return c, errPayloadMembers
		}
		if seen&(1<<member) != 0 {
			return c, errPayloadDuplicate
		}
		seen |= 1 << member
		if *fields[member], err = readNullString(dec); err != nil {
			return c, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return c, err
	}
	if seen != 1<<len(fields)-1 {
		return c, errPayloadMembers
	}
	return c, nil
}

// token reads the next token; a syntax error is errPayloadJSON.
func token(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, errPayloadJSON
	}
	return tok, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := token(dec)
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return errPayloadMembers
	}
	return nil
}

// readKey reads an object member name (the decoder only yields strings in
// that position, unescaped).
func readKey(dec *json.Decoder) (string, error) {
	tok, err := token(dec)
	if err != nil {
		return "", err
	}
	name, ok := tok.(string)
	if !ok {
		return "", errPayloadJSON
	}
	return name, nil
}

func readString(dec *json.Decoder) (string, error) {
	tok, err := token(dec)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", errPayloadMembers
	}
	return s, nil
}

func readNullString(dec *json.Decoder) (nullString, error) {
	tok, err := token(dec)
	if err != nil {
		return nullString{}, err
	}
	switch v := tok.(type) {
	case nil:
		return nullString{}, nil
	case string:
		return nullString{value: v, set: true}, nil
	}
	return nullString{}, errPayloadMembers
}

// readStringArray reads an array of strings; null is not an empty array.
func readStringArray(dec *json.Decoder) ([]string, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	list := []string{}
	for dec.More() {
		s, err := readString(dec)
		if err != nil {
			return nil, err
		}
		list = append(list, s)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	return list, nil
}

// readUint reads a non-negative integer written without fraction or
// exponent (1, not 1.0 or 1e0) that fits in bits.
func readUint(dec *json.Decoder, bits int) (uint64, error) {
	tok, err := token(dec)
	if err != nil {
		return 0, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, errPayloadMembers
	}
	text := string(n)
	for i := 0; i < len(text); i++ {
		if text[i] < '0' || text[i] > '9' {
			return 0, errPayloadMembers
		}
	}
	v, err := strconv.ParseUint(text, 10, bits)
	if err != nil {
		return 0, errPayloadMembers
	}
	return v, nil
}

// hasLoneSurrogate reports whether a JSON string in data has a \uD800 to
// \uDFFF escape that is not half of a surrogate pair. encoding/json would
// decode it to U+FFFD, so two different signed payloads would read alike;
// serde_json, which the gateway and the Rust verifier use, refuses it.
// Syntax errors are left to the decoder.
func hasLoneSurrogate(data []byte) bool {
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(data) && data[i+1] != 'u' {
				i++ // a one-character escape such as \" or \\
				continue
			}
			r, ok := hex4(data, i+2)
			if !ok {
				return false
			}
			i += 5 // now on the last hex digit
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return true
			case r >= 0xd800 && r <= 0xdbff:
				if i+2 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
					return true
				}
				low, ok := hex4(data, i+3)
				if !ok || low < 0xdc00 || low > 0xdfff {
					return true
				}
				i += 6
			}
		}
	}
	return false
}

// hex4 decodes the four hex digits at data[at:at+4].
func hex4(data []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
