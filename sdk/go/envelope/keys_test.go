package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

func hsSpecOf(fill byte) string { return "hs256:" + b64(bytes.Repeat([]byte{fill}, 32)) }

func edSpecs(fill byte) (private, public string) {
	seed := bytes.Repeat([]byte{fill}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	return "ed25519-private:" + b64(seed), "ed25519-public:" + b64(pub)
}

func TestFmtNeverShowsKeyMaterial(t *testing.T) {
	secret := "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
	plain, err := ParseKeyCompat("k1", secret)
	if err != nil {
		t.Fatal(err)
	}
	private, _ := edSpecs(7)
	ed, err := ParseKey("k2", private)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key      *Key
		material string
	}{{plain, secret}, {plain, b64([]byte(secret))}, {ed, strings.TrimPrefix(private, "ed25519-private:")}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			shown := fmt.Sprintf(verb, c.key)
			if strings.Contains(shown, c.material) || !strings.Contains(shown, "<redacted>") {
				t.Errorf("%s shows %s", verb, shown)
			}
		}
	}
}

func TestKeyFormsParseToTheirOneAlgorithm(t *testing.T) {
	private, public := edSpecs(9)
	for spec, want := range map[string]Alg{
		hsSpecOf(1):                         HS256,
		" HS256 : " + b64(make([]byte, 40)): HS256, // form case and spaces are free
		private:                             EdDSA,
		public:                              EdDSA,
	} {
		key, err := ParseKey("k", spec)
		if err != nil || key.Alg() != want || key.Kid() != "k" {
			t.Errorf("%.20s...: %v %v", spec, key, err)
		}
	}
	// The private half verifies what its seed signs, and so does the public.
	seed := bytes.Repeat([]byte{9}, 32)
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), []byte("m"))
	for _, spec := range []string{private, public} {
		key, _ := ParseKey("k", spec)
		if !key.verify([]byte("m"), sig) || key.verify([]byte("n"), sig) {
			t.Errorf("%.20s... verifies wrongly", spec)
		}
	}
}

func TestBadKeysAreRefusedWithReasonsNeverValues(t *testing.T) {
	cases := []struct{ kid, spec, want string }{
		{"", hsSpecOf(1), "key id must be 1 to 64 characters"},
		{"a b", hsSpecOf(1), "key id must be"},
		{strings.Repeat("k", 65), hsSpecOf(1), "key id must be"},
		{"a", "hs256:c2hvcnQ", "hs256 secret is 5 bytes; at least 32 are required"},
		{"a", "rsa:AAAA", "key must be written as hs256:"},
		{"a", "no-colon-at-all", "key must be written as hs256:"},
		{"a", "ed25519-public:AAAA", "ed25519 key is 3 bytes; exactly 32 are required"},
		{"a", "ed25519-private:" + b64(make([]byte, 31)), "ed25519 key is 31 bytes"},
		{"a", "hs256:AAA=", "key material is not canonical unpadded base64url"},
		{"a", "hs256:" + b64(make([]byte, 32)) + "=", "not canonical"},
	}
	for _, c := range cases {
		_, err := ParseKey(c.kid, c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q: %v, want %q", c.kid, c.spec, err, c.want)
			continue
		}
		if _, value, _ := strings.Cut(c.spec, ":"); len(value) > 3 && strings.Contains(err.Error(), value) {
			t.Errorf("%v shows the material", err)
		}
	}
}

func TestSigningKeyTextIsASecretUnlessItIsAKnownForm(t *testing.T) {
	// Plain text, even with a colon, is the secret itself (SPEC.md section 4).
	for _, text := range []string{
		"a-shared-secret-of-at-least-32-bytes!",
		"vault:not base64url at all, but 32+ bytes long",
		"rsa:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	} {
		key, err := ParseKeyCompat("default", text)
		if err != nil || key.Alg() != HS256 || string(key.secret) != text {
			t.Errorf("%q: %v", text, err)
		}
	}
	// A known form is read as that form, errors included.
	if _, err := ParseKeyCompat("default", "hs256:c2hvcnQ"); err == nil || !strings.Contains(err.Error(), "5 bytes") {
		t.Errorf("short hs256 form: %v", err)
	}
	if _, err := ParseKeyCompat("default", "too-short"); err == nil || err.Error() != "hs256 secret is 9 bytes; at least 32 are required" {
		t.Errorf("short text: %v", err)
	}
}

func TestKeyringListsParseAndRefuseDuplicates(t *testing.T) {
	_, public := edSpecs(1)
	ring, err := ParseKeyring(" a=" + public + " ; b=" + hsSpecOf(2) + ",, c = " + hsSpecOf(3) + ";")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ring.Kids(), ","); got != "a,b,c" {
		t.Fatalf("kids %s", got)
	}
	if key, ok := ring.Key("a"); !ok || key.Alg() != EdDSA {
		t.Fatalf("a: %v %v", key, ok)
	}
	if _, ok := ring.Key("A"); ok {
		t.Fatal("kids matched case-insensitively")
	}
	if _, err := ParseKeyring("a=" + hsSpecOf(1) + ";a=" + hsSpecOf(1)); err == nil || err.Error() != "key id a appears more than once" {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := ParseKeyring("junk"); err == nil || err.Error() != "key list entry must be written as kid=key" {
		t.Fatalf("junk: %v", err)
	}
	if ring, err := ParseKeyring(" ; "); err != nil || ring.Len() != 0 {
		t.Fatalf("empty list: %v %v", ring, err)
	}
}

func TestKeyringsAreTheSameOnlyWithTheSameKidsAndMaterial(t *testing.T) {
	ring := func(list string) *Keyring {
		r, err := ParseKeyring(list)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	same := func(x, y string) bool { return ring(x).sameKeys(ring(y)) }
	a, a2 := hsSpecOf(1), hsSpecOf(2)
	bPrivate, bPublic := edSpecs(3)
	cases := []struct {
		x, y string
		want bool
	}{
		{"a=" + a + ";b=" + bPublic, "b=" + bPublic + "; a=" + a, true},
		{"", "", true},
		{"a=" + a, "a=" + a2, false},
		{"a=" + a, "c=" + a, false},
		{"a=" + a, "a=" + a + ";b=" + bPublic, false},
		// The private and the public half of one key are different settings.
		{"b=" + bPrivate, "b=" + bPublic, false},
		{"b=" + bPrivate, "b=" + bPrivate, true},
	}
	for _, c := range cases {
		if got := same(c.x, c.y); got != c.want {
			t.Errorf("same(%.30s, %.30s) = %v", c.x, c.y, got)
		}
	}
}

func TestPooledHMACStatesGiveTheSameAnswerEveryTime(t *testing.T) {
	key, err := NewHMACKey("k", bytes.Repeat([]byte{5}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewHMACKey("k", bytes.Repeat([]byte{6}, 32))
	msg := []byte("message")
	var sig [32]byte
	// A signature made by another key, then the right one, many times over:
	// a reused state must start from the keyed state each time.
	for i := 0; i < 100; i++ {
		if key.verify(msg, sig[:]) {
			t.Fatal("zero signature verified")
		}
		wrong := hmacOf(other, msg)
		if key.verify(msg, wrong) {
			t.Fatal("another key's signature verified")
		}
		if !key.verify(msg, hmacOf(key, msg)) {
			t.Fatalf("round %d: own signature refused", i)
		}
	}
}

func hmacOf(k *Key, msg []byte) []byte {
	mac := hmac.New(sha256.New, k.secret)
	mac.Write(msg)
	return mac.Sum(nil)
}
