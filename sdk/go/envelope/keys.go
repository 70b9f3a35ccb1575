package envelope

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"hash"
	"sort"
	"strings"
	"sync"
)

// Alg is an envelope signature algorithm, spelled as in the -Alg header.
type Alg string

// The two algorithms of SPEC.md section 3. No other -Alg value is valid,
// not "none", not "hs256".
const (
	HS256 Alg = "HS256" // HMAC-SHA256 over a shared secret (the default)
	EdDSA Alg = "EdDSA" // Ed25519: services hold only the public key
)

const (
	// MinHMACSecretLen is the shortest HS256 secret accepted, in bytes
	// (the HMAC-SHA256 output size).
	MinHMACSecretLen = 32
	// MaxKidLen is the longest key id, in bytes.
	MaxKidLen = 64
)

// KeyError is key material or a key list that was refused. Its message
// never contains the material.
type KeyError struct {
	problem     string
	unknownForm bool
}

func (e *KeyError) Error() string { return e.problem }

func keyError(format string, args ...interface{}) *KeyError {
	return &KeyError{problem: fmt.Sprintf(format, args...)}
}

var (
	errBadKid = keyError("key id must be 1 to %d characters from A-Z a-z 0-9 . _ -", MaxKidLen)
	errForm   = &KeyError{
		problem:     "key must be written as hs256:<base64url>, ed25519-private:<base64url> or ed25519-public:<base64url>",
		unknownForm: true,
	}
	errKeyEncoding  = keyError("key material is not canonical unpadded base64url")
	errKeyListEntry = keyError("key list entry must be written as kid=key")
)

// validKid reports whether kid is 1 to 64 characters from A-Z a-z 0-9 . _ -.
func validKid(kid string) bool {
	if len(kid) == 0 || len(kid) > MaxKidLen {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// Key is one accepted key: an id and exactly one algorithm, which is the
// key's whole allowlist. Its material is never shown by fmt.
type Key struct {
	kid    string
	alg    Alg
	secret []byte            // HS256
	public ed25519.PublicKey // EdDSA
	// seed is set for a key written as ed25519-private. Only the public half
	// verifies; the seed is kept so a reload can tell a private key from its
	// public half, which SPEC.md treats as different settings.
	seed []byte
	// macs holds HMAC states keyed with secret. Keying HMAC-SHA256 hashes two
	// blocks; a pooled state is Reset to the keyed state instead, which
	// roughly halves the cost of an HS256 check.
	macs sync.Pool
}

// ParseKey reads key material written as hs256:<base64url>,
// ed25519-public:<base64url> or ed25519-private:<base64url> (SPEC.md
// section 4) for key id kid.
func ParseKey(kid, spec string) (*Key, error) {
	if !validKid(kid) {
		return nil, errBadKid
	}
	form, value, found := strings.Cut(spec, ":")
	if !found {
		return nil, errForm
	}
	// The form is recognised before the material is decoded, so that text
	// that merely contains a colon is "another form" (and, for
	// Router__IdentityEnvelopeSigningKey, a plain secret) as SPEC.md says.
	form = strings.ToLower(strings.TrimSpace(form))
	if form != "hs256" && form != "ed25519-public" && form != "ed25519-private" {
		return nil, errForm
	}
	material, ok := decodeB64URL(strings.TrimSpace(value))
	if !ok {
		return nil, errKeyEncoding
	}
	switch form {
	case "hs256":
		return NewHMACKey(kid, material)
	case "ed25519-public":
		if len(material) != ed25519.PublicKeySize {
			return nil, keyError("ed25519 key is %d bytes; exactly %d are required", len(material), ed25519.PublicKeySize)
		}
		return &Key{kid: kid, alg: EdDSA, public: ed25519.PublicKey(material)}, nil
	default: // ed25519-private
		if len(material) != ed25519.SeedSize {
			return nil, keyError("ed25519 key is %d bytes; exactly %d are required", len(material), ed25519.SeedSize)
		}
		private := ed25519.NewKeyFromSeed(material)
		return &Key{kid: kid, alg: EdDSA, public: private.Public().(ed25519.PublicKey), seed: material}, nil
	}
}

// ParseKeyCompat reads Router__IdentityEnvelopeSigningKey: one of the forms
// of [ParseKey], or else the text itself as an HS256 secret, as existing
// deployments write it. The text must then be at least 32 bytes.
func ParseKeyCompat(kid, text string) (*Key, error) {
	key, err := ParseKey(kid, text)
	if e, ok := err.(*KeyError); ok && e.unknownForm {
		return NewHMACKey(kid, []byte(text))
	}
	return key, err
}

// NewHMACKey makes an HS256 key over secret (at least 32 bytes).
func NewHMACKey(kid string, secret []byte) (*Key, error) {
	if !validKid(kid) {
		return nil, errBadKid
	}
	if len(secret) < MinHMACSecretLen {
		return nil, keyError("hs256 secret is %d bytes; at least %d are required", len(secret), MinHMACSecretLen)
	}
	return &Key{kid: kid, alg: HS256, secret: append([]byte(nil), secret...)}, nil
}

// NewEd25519PublicKey makes an EdDSA verification key.
func NewEd25519PublicKey(kid string, public ed25519.PublicKey) (*Key, error) {
	if !validKid(kid) {
		return nil, errBadKid
	}
	if len(public) != ed25519.PublicKeySize {
		return nil, keyError("ed25519 key is %d bytes; exactly %d are required", len(public), ed25519.PublicKeySize)
	}
	return &Key{kid: kid, alg: EdDSA, public: append(ed25519.PublicKey(nil), public...)}, nil
}

// Kid is the key's id.
func (k *Key) Kid() string { return k.kid }

// Alg is the key's one algorithm.
func (k *Key) Alg() Alg { return k.alg }

// String names the key without its material, so %v and %+v are safe to log.
func (k *Key) String() string {
	kind := "hs256 secret"
	switch {
	case k.alg == EdDSA && k.seed != nil:
		kind = "ed25519 private"
	case k.alg == EdDSA:
		kind = "ed25519 public"
	}
	return fmt.Sprintf("Key{kid: %s, kind: %s, material: <redacted>}", k.kid, kind)
}

// GoString keeps %#v from printing the material.
func (k *Key) GoString() string { return k.String() }

// verify reports whether signature is valid over message; constant time
// for HMAC.
func (k *Key) verify(message, signature []byte) bool {
	if k.alg == EdDSA {
		return ed25519.Verify(k.public, message, signature)
	}
	mac, _ := k.macs.Get().(hash.Hash)
	if mac == nil {
		mac = hmac.New(sha256.New, k.secret)
	} else {
		mac.Reset()
	}
	mac.Write(message)
	var sum [sha256.Size]byte
	ok := hmac.Equal(mac.Sum(sum[:0]), signature)
	k.macs.Put(mac)
	return ok
}

// sameAs reports whether other is this key: same kid, same form, same
// material (secrets compared in constant time).
func (k *Key) sameAs(other *Key) bool {
	if k.kid != other.kid || k.alg != other.alg || (k.seed == nil) != (other.seed == nil) {
		return false
	}
	if k.alg == HS256 {
		return subtle.ConstantTimeCompare(k.secret, other.secret) == 1
	}
	if k.seed != nil {
		return subtle.ConstantTimeCompare(k.seed, other.seed) == 1
	}
	return subtle.ConstantTimeCompare(k.public, other.public) == 1
}

// Keyring is the set of keys a service accepts, by kid. It does not change
// once made.
type Keyring struct {
	keys map[string]*Key
	kids []string // sorted
}

// NewKeyring makes a keyring of keys; two keys with one kid are an error,
// never a silent replacement.
func NewKeyring(keys ...*Key) (*Keyring, error) {
	ring := &Keyring{keys: make(map[string]*Key, len(keys))}
	for _, key := range keys {
		if err := ring.add(key); err != nil {
			return nil, err
		}
	}
	return ring, nil
}

// ParseKeyring reads a key list, kid=key;kid=key (";" or "," between
// entries, spaces around entries, kids and keys ignored), as in
// Router__IdentityEnvelopeAcceptedKeys.
func ParseKeyring(list string) (*Keyring, error) {
	ring := &Keyring{keys: make(map[string]*Key)}
	entries := strings.FieldsFunc(list, func(r rune) bool { return r == ';' || r == ',' })
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		kid, spec, found := strings.Cut(entry, "=")
		if !found {
			return nil, errKeyListEntry
		}
		key, err := ParseKey(strings.TrimSpace(kid), strings.TrimSpace(spec))
		if err != nil {
			return nil, err
		}
		if err := ring.add(key); err != nil {
			return nil, err
		}
	}
	return ring, nil
}

func (r *Keyring) add(key *Key) error {
	if _, dup := r.keys[key.kid]; dup {
		return keyError("key id %s appears more than once", key.kid)
	}
	r.keys[key.kid] = key
	i := sort.SearchStrings(r.kids, key.kid)
	r.kids = append(r.kids, "")
	copy(r.kids[i+1:], r.kids[i:])
	r.kids[i] = key.kid
	return nil
}

// Key returns the key with id kid.
func (r *Keyring) Key(kid string) (*Key, bool) {
	key, ok := r.keys[kid]
	return key, ok
}

// Kids returns the key ids, sorted.
func (r *Keyring) Kids() []string { return append([]string(nil), r.kids...) }

// Len is the number of keys.
func (r *Keyring) Len() int { return len(r.kids) }

// sameKeys reports whether other holds exactly these keys.
func (r *Keyring) sameKeys(other *Keyring) bool {
	if len(r.kids) != len(other.kids) {
		return false
	}
	for _, kid := range r.kids {
		theirs, ok := other.keys[kid]
		if !ok || !r.keys[kid].sameAs(theirs) {
			return false
		}
	}
	return true
}
