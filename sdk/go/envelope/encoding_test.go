package envelope

import (
	"net/http"
	"strings"
	"testing"
)

func TestBase64URLHasExactlyOneSpellingPerByteString(t *testing.T) {
	if got, ok := decodeB64URL(encodeB64URL([]byte("hello"))); !ok || string(got) != "hello" {
		t.Fatalf("round trip: %q %v", got, ok)
	}
	if got, ok := decodeB64URL("QQ"); !ok || string(got) != "A" {
		t.Fatalf("QQ: %q %v", got, ok)
	}
	if got, ok := decodeB64URL(""); !ok || len(got) != 0 {
		t.Fatalf("empty: %q %v", got, ok)
	}
	for _, bad := range []string{
		"aGVsbG8=", // padding
		"aGVsbG+",  // standard alphabet
		"aGVsbG/",  // standard alphabet
		"QR",       // non-zero unused bits ("QQ" is canonical)
		"Q",        // length 1 mod 4
		" QQ",      // whitespace
		"QQ\n",     // encoding/base64 would skip the LF
		"Q\rQ",     // and the CR
		"aGVs bG8", // inner space
		"aGVsbG8\x00",
	} {
		if got, ok := decodeB64URL(bad); ok {
			t.Errorf("%q decoded to %q", bad, got)
		}
	}
}

func TestRFC8705ExampleThumbprintIsNotCanonical(t *testing.T) {
	// The RFC's example ends in a character with non-zero unused bits.
	if _, ok := decodeB64URL("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"); ok {
		t.Fatal("the RFC 8705 example decoded")
	}
	if got, ok := decodeB64URL("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0"); !ok || len(got) != 32 {
		t.Fatalf("the fixed thumbprint: %d bytes, %v", len(got), ok)
	}
}

func TestCanonicalDecimalsOnly(t *testing.T) {
	for text, want := range map[string]uint64{"0": 0, "1700000000": 1700000000, "999999999999999": 999999999999999} {
		if got, ok := parseCanonicalDecimal(text); !ok || got != want {
			t.Errorf("%q: %d %v", text, got, ok)
		}
	}
	for _, bad := range []string{"", "01", "00", "+1", "-1", "1.0", " 1", "1 ", "1e3", "0x10", "1234567890123456", "１"} {
		if got, ok := parseCanonicalDecimal(bad); ok {
			t.Errorf("%q parsed as %d", bad, got)
		}
	}
}

func TestTimeArithmeticSaturates(t *testing.T) {
	max := ^uint64(0)
	if got := saturatingAdd(max-1, 30); got != max {
		t.Fatalf("got %d", got)
	}
	if got := saturatingAdd(10, 30); got != 40 {
		t.Fatalf("got %d", got)
	}
}

// validDoc is a payload with every member of SPEC.md section 2.
const validDoc = `{"ver":1,"iss":"gw","aud":"orders","sub":"u","tenant":null,"client_id":null,` +
	`"scopes":["a","b"],"roles":[],"auth_method":"dpop",` +
	`"cnf":{"jkt":"t","x5t#S256":null,"spiffe_id":null},` +
	`"method":"GET","path":"/x","request_id":"r","iat":10,"exp":70}`

func TestStrictPayloadAcceptsEveryMemberOfItsType(t *testing.T) {
	p, err := parsePayload([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	if sub, ok := p.sub.get(); !ok || sub != "u" {
		t.Errorf("sub %q %v", sub, ok)
	}
	if _, ok := p.tenant.get(); ok {
		t.Error("null tenant read as set")
	}
	if jkt, ok := p.cnf.JKT(); !ok || jkt != "t" {
		t.Errorf("jkt %q %v", jkt, ok)
	}
	if p.authMethod != AuthDPoP || p.iat != 10 || p.exp != 70 || len(p.scopes) != 2 || p.roles == nil {
		t.Errorf("payload %+v", p)
	}
	// Member order and whitespace are free; escapes are read.
	reordered := "\n { \"exp\" : 70 ,\"iat\":10," + strings.TrimPrefix(validDoc, "{")
	reordered = strings.Replace(reordered, `,"iat":10,"exp":70}`, "}", 1)
	reordered = strings.Replace(reordered, `"path":"/x"`, `"p\u0061th":"\/x"`, 1)
	p, err = parsePayload([]byte(reordered))
	if err != nil || p.path != "/x" {
		t.Fatalf("%s: %v %+v", reordered, err, p)
	}
}

func TestStrictPayloadRefusesWhatEncodingJSONWouldLetThrough(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(validDoc, old) {
			t.Fatalf("%q not in the document", old)
		}
		return strings.Replace(validDoc, old, new, 1)
	}
	cases := []struct {
		about, doc string
		want       error
	}{
		{"a duplicate member", replace(`"sub":"u"`, `"sub":"u","sub":"admin"`), errPayloadDuplicate},
		{"a duplicate spelled with an escape", replace(`"sub":"u"`, `"sub":"u","\u0073ub":"admin"`), errPayloadDuplicate},
		{"a duplicate inside cnf", replace(`"jkt":"t"`, `"jkt":"t","jkt":"u"`), errPayloadDuplicate},
		{"an unknown member", replace(`"ver":1`, `"ver":1,"admin":true`), errPayloadMembers},
		{"an unknown member inside cnf", replace(`"jkt":"t"`, `"jkt":"t","x5t":null`), errPayloadMembers},
		{"a member name in another case", replace(`"sub":"u"`, `"Sub":"u"`), errPayloadMembers},
		{"a missing member", replace(`"tenant":null,`, ``), errPayloadMembers},
		{"a missing cnf member", replace(`,"spiffe_id":null`, ``), errPayloadMembers},
		{"a string exp", replace(`"exp":70`, `"exp":"70"`), errPayloadMembers},
		{"a fractional iat", replace(`"iat":10`, `"iat":10.0`), errPayloadMembers},
		{"an exponent iat", replace(`"iat":10`, `"iat":1e1`), errPayloadMembers},
		{"a negative iat", replace(`"iat":10`, `"iat":-10`), errPayloadMembers},
		{"a negative zero", replace(`"iat":10`, `"iat":-0`), errPayloadMembers},
		{"an exp beyond uint64", replace(`"exp":70`, `"exp":18446744073709551616`), errPayloadMembers},
		{"a ver beyond uint32", replace(`"ver":1`, `"ver":4294967296`), errPayloadMembers},
		{"a boolean ver", replace(`"ver":1`, `"ver":true`), errPayloadMembers},
		{"null scopes", replace(`"scopes":["a","b"]`, `"scopes":null`), errPayloadMembers},
		{"a number in roles", replace(`"roles":[]`, `"roles":[1]`), errPayloadMembers},
		{"nested arrays in roles", replace(`"roles":[]`, `"roles":[[[]]]`), errPayloadMembers},
		{"an unknown auth method", replace(`"auth_method":"dpop"`, `"auth_method":"DPoP"`), errPayloadMembers},
		{"a null iss", replace(`"iss":"gw"`, `"iss":null`), errPayloadMembers},
		{"cnf null", replace(`"cnf":{"jkt":"t","x5t#S256":null,"spiffe_id":null}`, `"cnf":null`), errPayloadMembers},
		{"a trailing comma", replace(`"exp":70}`, `"exp":70,}`), errPayloadJSON},
		{"a missing comma", replace(`"exp":70}`, `"exp":70 "x":1}`), errPayloadJSON},
		{"data after the object", validDoc + ` {}`, errPayloadJSON},
		{"garbage after the object", validDoc + `x`, errPayloadJSON},
		{"an array", `[` + validDoc + `]`, errPayloadJSON},
		{"invalid UTF-8", replace(`"iss":"gw"`, "\"iss\":\"g\xffw\""), errPayloadJSON},
		{"a lone high surrogate", replace(`"iss":"gw"`, `"iss":"g\ud800w"`), errPayloadJSON},
		{"a lone low surrogate", replace(`"iss":"gw"`, `"iss":"g\udc00w"`), errPayloadJSON},
		{"a reversed surrogate pair", replace(`"iss":"gw"`, `"iss":"\udc00\ud800"`), errPayloadJSON},
		{"a byte order mark", "\ufeff" + validDoc, errPayloadJSON},
		{"an empty document", ``, errPayloadJSON},
	}
	for _, c := range cases {
		if _, err := parsePayload([]byte(c.doc)); err != c.want {
			t.Errorf("%s: got %v, want %v", c.about, err, c.want)
		}
	}
	// A proper surrogate pair is one character, not an error.
	p, err := parsePayload([]byte(replace(`"iss":"gw"`, `"iss":"\ud83d\ude00 \\u"`)))
	if err != nil || p.iss != "\U0001F600 \\u" {
		t.Fatalf("surrogate pair: %v %+v", err, p)
	}
}

func TestHeadersAreFoundInAnyCaseAndCountedAcrossSpellings(t *testing.T) {
	all := http.Header{}
	for _, name := range HeaderNames {
		all.Set(name, "x")
	}
	if _, present, err := ExtractHeaders(all); !present || err != nil {
		t.Fatalf("all six: %v %v", present, err)
	}
	// A key set directly in the map, not canonicalized, is still a line.
	all["x-stellaops-identity-envelope-kid"] = []string{"y"}
	_, _, err := ExtractHeaders(all)
	if e, ok := err.(*Error); !ok || e.Code != CodeDuplicateHeader || !strings.Contains(e.Error(), HeaderKid) {
		t.Fatalf("got %v", err)
	}
	if _, present, err := ExtractHeaders(http.Header{"X-Stellaops-Identity-Envelope-Kidney": {"x"}}); present || err != nil {
		t.Fatalf("a longer name counted as an envelope header: %v %v", present, err)
	}
}

func TestHeaderValuesAreBoundedAndVisibleASCII(t *testing.T) {
	base := func() http.Header {
		h := http.Header{}
		for _, name := range HeaderNames {
			h.Set(name, "x")
		}
		return h
	}
	cases := []struct {
		name, value string
		want        Code
	}{
		{HeaderEnvelope, strings.Repeat("A", MaxEnvelopeLen), ""},
		{HeaderEnvelope, strings.Repeat("A", MaxEnvelopeLen+1), CodeHeaderTooLarge},
		{HeaderSignature, strings.Repeat("A", MaxSmallHeaderLen), ""},
		{HeaderSignature, strings.Repeat("A", MaxSmallHeaderLen+1), CodeHeaderTooLarge},
		{HeaderKid, "hs 1", CodeMalformedHeader},
		{HeaderKid, "hs\t1", CodeMalformedHeader},
		{HeaderKid, "hs\x7f", CodeMalformedHeader},
		{HeaderKid, "h\xc3\xa9", CodeMalformedHeader},
		// An empty value is a header that is present (as in the Rust
		// crate); the check of its value refuses it later.
		{HeaderAlg, "", ""},
	}
	for _, c := range cases {
		h := base()
		h.Set(c.name, c.value)
		_, _, err := ExtractHeaders(h)
		switch e, _ := err.(*Error); {
		case c.want == "" && err != nil:
			t.Errorf("%s of %d bytes: %v", c.name, len(c.value), err)
		case c.want != "" && (e == nil || e.Code != c.want):
			t.Errorf("%s of %d bytes: %v, want %s", c.name, len(c.value), err, c.want)
		case e != nil && strings.Contains(e.Error(), c.value):
			t.Errorf("%s: message echoes the value: %v", c.name, e)
		}
	}
}

func TestSigningInputIsTheDocumentedByteString(t *testing.T) {
	h := Headers{Envelope: "e30", Signature: "sig", Alg: "HS256", Kid: "k1", Iat: "10", Exp: "70"}
	if got, want := string(signingInput(&h)), "StellaOps-Identity-Envelope/1\nHS256\nk1\n10\n70\ne30"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestIdentityAccessorsReturnCopies(t *testing.T) {
	p, err := parsePayload([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{scopes: p.scopes}
	id.Scopes()[0] = "admin"
	if id.HasScope("admin") || !id.HasScope("a") {
		t.Fatalf("scopes changed through a returned slice: %v", id.scopes)
	}
}
