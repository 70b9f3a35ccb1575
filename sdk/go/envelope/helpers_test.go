package envelope_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// vectorsPath is the Rust crate's vector file, read in place (never
// copied) so that a vector added there is run here too. Tests run in the
// package directory, sdk/go/envelope.
var vectorsPath = filepath.Join("..", "..", "..", "envelope", "testdata", "vectors.json")

type vectorRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

type vectorFile struct {
	Now      int64 `json:"now"`
	Verifier struct {
		Audience           string `json:"audience"`
		Issuer             string `json:"issuer"`
		ClockSkewSeconds   uint64 `json:"clock_skew_seconds"`
		MaxLifetimeSeconds uint64 `json:"max_lifetime_seconds"`
	} `json:"verifier"`
	Request vectorRequest `json:"request"`
	Keys    []struct {
		Kid        string `json:"kid"`
		Alg        string `json:"alg"`
		Verify     string `json:"verify"`
		Sign       string `json:"sign"`
		SecretUTF8 string `json:"secret_utf8"`
	} `json:"keys"`
	Valid []struct {
		Name          string          `json:"name"`
		Headers       [][2]string     `json:"headers"`
		ExpectPayload json.RawMessage `json:"expect_payload"`
	} `json:"valid"`
	Invalid []struct {
		Name        string         `json:"name"`
		About       string         `json:"about"`
		Headers     [][2]string    `json:"headers"`
		Request     *vectorRequest `json:"request"`
		ExpectError envelope.Code  `json:"expect_error"`
	} `json:"invalid"`
}

func loadVectors(t testing.TB) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("reading the shared vectors: %v", err)
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatalf("parsing %s: %v", vectorsPath, err)
	}
	return &vf
}

func (vf *vectorFile) now() time.Time { return time.Unix(vf.Now, 0) }

// acceptedKeys is the vector keyring as Router__IdentityEnvelopeAcceptedKeys.
func (vf *vectorFile) acceptedKeys() string {
	entries := make([]string, len(vf.Keys))
	for i, k := range vf.Keys {
		entries[i] = k.Kid + "=" + k.Verify
	}
	return strings.Join(entries, ";")
}

func (vf *vectorFile) verifier(t testing.TB) *envelope.Verifier {
	t.Helper()
	ring, err := envelope.ParseKeyring(vf.acceptedKeys())
	if err != nil {
		t.Fatalf("vector keyring: %v", err)
	}
	v, err := envelope.NewVerifier(ring, envelope.VerifierSettings{
		Audience:           vf.Verifier.Audience,
		Issuer:             vf.Verifier.Issuer,
		ClockSkewSeconds:   vf.Verifier.ClockSkewSeconds,
		MaxLifetimeSeconds: vf.Verifier.MaxLifetimeSeconds,
	})
	if err != nil {
		t.Fatalf("vector verifier: %v", err)
	}
	return v
}

// vectorEnviron configures a service like the vectors' verifier.
func (vf *vectorFile) vectorEnviron(mode string) []string {
	return []string{
		envelope.EnvTrustMode + "=" + mode,
		envelope.EnvAcceptedKeys + "=" + vf.acceptedKeys(),
		envelope.EnvAudience + "=" + vf.Verifier.Audience,
		envelope.EnvIssuer + "=" + vf.Verifier.Issuer,
	}
}

func (vf *vectorFile) validHeaders(t testing.TB, name string) [][2]string {
	for _, v := range vf.Valid {
		if v.Name == name {
			return v.Headers
		}
	}
	t.Fatalf("no valid vector %s", name)
	return nil
}

func (vf *vectorFile) invalidHeaders(t testing.TB, name string) [][2]string {
	for _, v := range vf.Invalid {
		if v.Name == name {
			return v.Headers
		}
	}
	t.Fatalf("no invalid vector %s", name)
	return nil
}

// headerOf builds request headers the way net/http does: one field line
// per pair, names canonicalized.
func headerOf(pairs [][2]string) http.Header {
	h := http.Header{}
	for _, p := range pairs {
		h.Add(p[0], p[1])
	}
	return h
}

// testSecret is an HS256 secret of more than 32 bytes.
const testSecret = "a-shared-secret-of-at-least-32-bytes!"

// hsSpec is a 32-byte HS256 key filled with fill, as hs256:<base64url>.
func hsSpec(fill byte) string {
	return "hs256:" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{fill}, 32))
}

// claims is a payload for tests that sign their own envelopes.
type claims struct {
	Ver        int               `json:"ver"`
	Iss        string            `json:"iss"`
	Aud        string            `json:"aud"`
	Sub        *string           `json:"sub"`
	Tenant     *string           `json:"tenant"`
	ClientID   *string           `json:"client_id"`
	Scopes     []string          `json:"scopes"`
	Roles      []string          `json:"roles"`
	AuthMethod string            `json:"auth_method"`
	Cnf        map[string]string `json:"cnf"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	RequestID  string            `json:"request_id"`
	Iat        int64             `json:"iat"`
	Exp        int64             `json:"exp"`
}

func newClaims(aud, method, path string, iat int64) claims {
	sub := "user-7"
	return claims{
		Ver: 1, Iss: "gw", Aud: aud, Sub: &sub, Scopes: []string{"orders.read"}, Roles: []string{},
		AuthMethod: "bearer", Cnf: nil, Method: method, Path: path, RequestID: "r-1",
		Iat: iat, Exp: iat + 60,
	}
}

func (c claims) MarshalJSON() ([]byte, error) {
	type plain claims
	out, err := json.Marshal(plain(c))
	if err != nil {
		return nil, err
	}
	// cnf always has its three members, null when not applicable.
	return bytes.Replace(out, []byte(`"cnf":null`), []byte(`"cnf":{"jkt":null,"x5t#S256":null,"spiffe_id":null}`), 1), nil
}

// sealHS256 signs c as the gateway would, with an HS256 secret.
func sealHS256(t testing.TB, secret []byte, kid string, c claims) http.Header {
	t.Helper()
	return seal(t, "HS256", kid, c, func(input []byte) []byte {
		mac := hmac.New(sha256.New, secret)
		mac.Write(input)
		return mac.Sum(nil)
	})
}

// sealEd25519 signs c with the Ed25519 key of seed.
func sealEd25519(t testing.TB, seed []byte, kid string, c claims) http.Header {
	t.Helper()
	private := ed25519.NewKeyFromSeed(seed)
	return seal(t, "EdDSA", kid, c, func(input []byte) []byte { return ed25519.Sign(private, input) })
}

func seal(t testing.TB, alg, kid string, c claims, sign func([]byte) []byte) http.Header {
	t.Helper()
	doc, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	envelopeValue := b64(doc)
	iat, exp := strconv.FormatInt(c.Iat, 10), strconv.FormatInt(c.Exp, 10)
	input := strings.Join([]string{"StellaOps-Identity-Envelope/1", alg, kid, iat, exp, envelopeValue}, "\n")
	return headerOf([][2]string{
		{envelope.HeaderEnvelope, envelopeValue},
		{envelope.HeaderSignature, b64(sign([]byte(input)))},
		{envelope.HeaderAlg, alg},
		{envelope.HeaderKid, kid},
		{envelope.HeaderIat, iat},
		{envelope.HeaderExp, exp},
	})
}

// logBuffer collects log lines written from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *log.Logger { return log.New(b, "", 0) }

// waitFor polls cond until it holds, failing the test after timeout: tests
// wait for what they expect, never for a fixed time.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeFile writes text to path in place.
func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes text beside path and renames it into place, as
// editors and kubectl do.
func replaceFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fixedEnviron returns environ on every call, as Options.Environ.
func fixedEnviron(environ ...string) func() []string {
	return func() []string { return environ }
}
