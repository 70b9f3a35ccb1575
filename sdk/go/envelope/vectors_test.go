package envelope_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// The shared vectors, checked through the public API only, as any
// implementer would.

func TestEveryValidVectorVerifiesToItsPayload(t *testing.T) {
	vf := loadVectors(t)
	if len(vf.Valid) < 4 {
		t.Fatalf("only %d valid vectors read from %s", len(vf.Valid), vectorsPath)
	}
	v := vf.verifier(t)
	for _, vector := range vf.Valid {
		id, err := v.Verify(headerOf(vector.Headers), vf.Request.Method, vf.Request.Path, vf.now())
		if err != nil {
			t.Errorf("%s: %v", vector.Name, err)
			continue
		}
		got, err := json.Marshal(id)
		if err != nil {
			t.Fatalf("%s: %v", vector.Name, err)
		}
		var gotValue, wantValue interface{}
		if err := json.Unmarshal(got, &gotValue); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(vector.ExpectPayload, &wantValue); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotValue, wantValue) {
			t.Errorf("%s: payload\n got %s\nwant %s", vector.Name, got, vector.ExpectPayload)
		}
		if kid := headerOf(vector.Headers).Get(envelope.HeaderKid); id.Kid() != kid {
			t.Errorf("%s: verified with kid %q, header says %q", vector.Name, id.Kid(), kid)
		}
	}
	t.Logf("valid vectors passed: %d", len(vf.Valid))
}

func TestEveryInvalidVectorFailsWithItsCode(t *testing.T) {
	vf := loadVectors(t)
	if len(vf.Invalid) < 15 {
		t.Fatalf("only %d invalid vectors read from %s", len(vf.Invalid), vectorsPath)
	}
	v := vf.verifier(t)
	for _, vector := range vf.Invalid {
		request := vf.Request
		if vector.Request != nil {
			request = *vector.Request
		}
		id, err := v.Verify(headerOf(vector.Headers), request.Method, request.Path, vf.now())
		var failure *envelope.Error
		switch {
		case id != nil:
			t.Errorf("%s (%s): verified, want %s", vector.Name, vector.About, vector.ExpectError)
		case !errors.As(err, &failure):
			t.Errorf("%s (%s): %v, want %s", vector.Name, vector.About, err, vector.ExpectError)
		case failure.Code != vector.ExpectError:
			t.Errorf("%s (%s): %s (%v), want %s", vector.Name, vector.About, failure.Code, failure, vector.ExpectError)
		}
	}
	t.Logf("invalid vectors passed: %d", len(vf.Invalid))
}

// Every single-character change, removal or repetition of a header of a
// valid vector must be refused: the signature covers every value, and the
// header rules leave no second spelling.
func TestEveryMutationOfAValidVectorIsRefused(t *testing.T) {
	vf := loadVectors(t)
	v := vf.verifier(t)
	refuse := func(name string, header http.Header, want envelope.Code) {
		t.Helper()
		id, err := v.Verify(header, vf.Request.Method, vf.Request.Path, vf.now())
		var failure *envelope.Error
		if id != nil || !errors.As(err, &failure) {
			t.Errorf("%s: not refused (identity %v, error %v)", name, id != nil, err)
			return
		}
		if want != "" && failure.Code != want {
			t.Errorf("%s: %s, want %s", name, failure.Code, want)
		}
	}
	mutated := 0
	for _, vector := range vf.Valid {
		for i, pair := range vector.Headers {
			value := pair[1]
			// Every position, changed to a base64url character and to a
			// visible character outside every header's alphabet.
			for at := 0; at < len(value); at++ {
				flipped := byte('A')
				if value[at] == 'A' {
					flipped = 'B'
				}
				for _, replacement := range []byte{flipped, '~'} {
					changed := append([][2]string(nil), vector.Headers...)
					changed[i][1] = value[:at] + string(replacement) + value[at+1:]
					refuse(vector.Name+": "+pair[0]+" changed at "+strconv.Itoa(at), headerOf(changed), "")
					mutated++
				}
			}
			dropped := append(append([][2]string(nil), vector.Headers[:i]...), vector.Headers[i+1:]...)
			refuse(vector.Name+": without "+pair[0], headerOf(dropped), envelope.CodeMissingHeader)

			// The same line twice, and a second line in another case.
			twice := append(append([][2]string(nil), vector.Headers...), pair)
			refuse(vector.Name+": "+pair[0]+" twice", headerOf(twice), envelope.CodeDuplicateHeader)
			lower := headerOf(vector.Headers)
			lower[strings.ToLower(pair[0])] = []string{value}
			refuse(vector.Name+": "+pair[0]+" again in lower case", lower, envelope.CodeDuplicateHeader)
			mutated += 3
		}
	}
	if mutated < 1000 {
		t.Fatalf("only %d mutations tried", mutated)
	}
	t.Logf("mutated vectors refused: %d (from %d valid vectors)", mutated, len(vf.Valid))
}

func TestVectorEd25519SeedReproducesTheVectorSignature(t *testing.T) {
	vf := loadVectors(t)
	var seed string
	for _, k := range vf.Keys {
		if k.Kid == "ed-1" {
			seed = strings.TrimPrefix(k.Sign, "ed25519-private:")
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(seed)
	if err != nil || len(raw) != ed25519.SeedSize {
		t.Fatalf("ed-1 seed: %v (%d bytes)", err, len(raw))
	}
	h := headerOf(vf.validHeaders(t, "eddsa_dpop"))
	input := strings.Join([]string{"StellaOps-Identity-Envelope/1",
		h.Get(envelope.HeaderAlg), h.Get(envelope.HeaderKid), h.Get(envelope.HeaderIat),
		h.Get(envelope.HeaderExp), h.Get(envelope.HeaderEnvelope)}, "\n")
	// Ed25519 is deterministic: the published seed signs the same bytes.
	got := base64.RawURLEncoding.EncodeToString(ed25519.Sign(ed25519.NewKeyFromSeed(raw), []byte(input)))
	if want := h.Get(envelope.HeaderSignature); got != want {
		t.Fatalf("signature %s, vector has %s", got, want)
	}
}

func TestARequestWithoutEnvelopeHeadersHasNoEnvelopeNotAnError(t *testing.T) {
	vf := loadVectors(t)
	header := http.Header{"Accept": {"*/*"}, "X-Stellaops-Other": {"x"}}
	id, err := vf.verifier(t).Verify(header, "GET", "/orders/42", vf.now())
	if id != nil || !errors.Is(err, envelope.ErrNoEnvelope) {
		t.Fatalf("got %v, %v; want ErrNoEnvelope", id, err)
	}
	var failure *envelope.Error
	if errors.As(err, &failure) {
		t.Fatalf("no envelope reported as invalid: %v", failure)
	}
}

func TestErrorsMatchByCodeWithErrorsIs(t *testing.T) {
	vf := loadVectors(t)
	_, err := vf.verifier(t).Verify(headerOf(vf.invalidHeaders(t, "expired")), "GET", "/orders/42", vf.now())
	if !errors.Is(err, &envelope.Error{Code: envelope.CodeExpired}) {
		t.Fatalf("%v is not expired", err)
	}
	if errors.Is(err, &envelope.Error{Code: envelope.CodeBadSignature}) {
		t.Fatalf("%v matched bad_signature", err)
	}
}
