package envelope_test

// Keys from a JWKS URL (SPEC.md section 7.6): the document rules, the
// variables, and the fetcher against a real HTTP server on a loopback port
// whose JWKS the test controls and whose fetches it counts.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

var (
	seed2 = bytes.Repeat([]byte{2}, 32)
	seed3 = bytes.Repeat([]byte{3}, 32)
)

// vectorSeed is the vectors' Ed25519 key ed-1, which the tests publish as
// the gateway would.
func vectorSeed(t testing.TB) []byte {
	t.Helper()
	for _, k := range loadVectors(t).Keys {
		if k.Kid == "ed-1" {
			seed, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k.Sign, "ed25519-private:"))
			if err != nil {
				t.Fatal(err)
			}
			return seed
		}
	}
	t.Fatal("no vector key ed-1")
	return nil
}

func vectorVerifySpec(t testing.TB, kid string) string {
	for _, k := range loadVectors(t).Keys {
		if k.Kid == kid {
			return k.Verify
		}
	}
	t.Fatalf("no vector key %s", kid)
	return ""
}

func publicX(seed []byte) string {
	return base64.RawURLEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
}

// jwk is a key as the gateway publishes it (RFC 8037 OKP); a nil in more
// removes that member.
func jwk(seed []byte, kid string, more map[string]interface{}) map[string]interface{} {
	key := map[string]interface{}{"kty": "OKP", "crv": "Ed25519", "x": publicX(seed), "kid": kid, "alg": "EdDSA", "use": "sig"}
	for name, value := range more {
		if value == nil {
			delete(key, name)
		} else {
			key[name] = value
		}
	}
	return key
}

func doc(keys ...map[string]interface{}) []byte {
	if keys == nil {
		keys = []map[string]interface{}{}
	}
	out, err := json.Marshal(map[string]interface{}{"keys": keys})
	if err != nil {
		panic(err)
	}
	return out
}

var es256Key = map[string]interface{}{
	"kty": "EC", "crv": "P-256", "kid": "es-1", "alg": "ES256", "use": "sig",
	"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}

func with(key map[string]interface{}, name string, value interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range key {
		out[k] = v
	}
	out[name] = value
	return out
}

// --- the document ----------------------------------------------------------

func TestAGatewayDocumentYieldsItsEd25519Keys(t *testing.T) {
	ring, err := envelope.ParseJWKS(doc(jwk(vectorSeed(t), "ed-1", nil), jwk(seed2, "k2", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ring.Kids(), ","); got != "ed-1,k2" {
		t.Fatalf("kids %s", got)
	}
	if key, _ := ring.Key("k2"); key.Alg() != envelope.EdDSA {
		t.Fatalf("k2 is %s", key.Alg())
	}
	ring, err = envelope.ParseJWKS(doc(jwk(seed2, "k2", map[string]interface{}{"alg": nil, "use": nil})))
	if err != nil || ring.Len() != 1 {
		t.Fatalf("alg and use may be left out: %v", err)
	}
	if ring, err := envelope.ParseJWKS([]byte(`{"keys":[]}`)); err != nil || ring.Len() != 0 {
		t.Fatalf("an empty set is a good document: %v", err)
	}
}

func TestKeysItDoesNotUseAreSkippedAndTheOthersKept(t *testing.T) {
	skipped := []map[string]interface{}{
		es256Key,
		{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa-1"},
		jwk(seed3, "x-1", map[string]interface{}{"crv": "X25519", "alg": nil}),
		jwk(seed3, "enc-1", map[string]interface{}{"use": "enc"}),
		jwk(seed3, "other-alg", map[string]interface{}{"alg": "ES256"}),
		jwk(seed3, "", map[string]interface{}{"kid": nil}),
		jwk(seed3, "not a kid!", nil),
	}
	for _, key := range skipped {
		ring, err := envelope.ParseJWKS(doc(key, jwk(seed2, "k2", nil)))
		if err != nil || strings.Join(ring.Kids(), ",") != "k2" {
			t.Errorf("%v: %v", key, err)
		}
	}
}

func TestABadDocumentIsRefusedWhole(t *testing.T) {
	k2 := jwk(seed2, "k2", nil)
	cases := []struct {
		body []byte
		why  string
	}{
		{doc(k2, jwk(seed3, "k2", nil)), "key id k2 appears more than once"},
		{doc(k2, with(es256Key, "kid", "k2")), "key id k2 appears more than once"},
		{doc(with(k2, "x", base64.RawURLEncoding.EncodeToString(make([]byte, 31)))), "key k2 has no x of 32 bytes"},
		{doc(with(k2, "x", publicX(seed2)+"=")), "key k2 has no x of 32 bytes"},
		{doc(with(k2, "x", nil)), "key k2 has no x of 32 bytes"},
		{doc(with(k2, "d", base64.RawURLEncoding.EncodeToString(seed2))), "key k2 is a private key"},
		{doc(with(k2, "kid", 7)), "keys[0] has a kid that is not a string"},
		{[]byte(`{"keys":[1]}`), "keys[0] is not an object"},
		{[]byte(`{"keys":{}}`), "document has no keys array"},
		{[]byte(`{"other":[]}`), "document has no keys array"},
		{[]byte(`[]`), "document is not a strict json object"},
		{[]byte(`not json`), "document is not a strict json object"},
		{[]byte(`{"keys":[],"keys":[]}`), "document is not a strict json object"},
		{[]byte(`{"keys":[{"kid":"a","kid":"b"}]}`), "document is not a strict json object"},
		{[]byte("{" + strings.Repeat(" ", 64<<10) + `"keys":[]}`), "document is larger than 65536 bytes"},
	}
	for _, c := range cases {
		_, err := envelope.ParseJWKS(c.body)
		var problem *envelope.JWKSError
		if !errors.As(err, &problem) || !strings.HasPrefix(err.Error(), c.why) {
			t.Errorf("%.60s: got %v, want %q", c.body, err, c.why)
			continue
		}
		if strings.Contains(err.Error(), publicX(seed2)) {
			t.Errorf("%q shows key material", err)
		}
	}
}

// --- the variables -----------------------------------------------------------

func TestTheJWKSVariablesAreReadWithTheirDefaults(t *testing.T) {
	config, err := envelope.ConfigFromEnv([]string{
		envelope.EnvAudience + "=orders",
		envelope.EnvJWKSURL + "= http://gateway:9901/.well-known/stella/keys.json ",
	})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := config.JWKS()
	want := envelope.JWKSSettings{URL: "http://gateway:9901/.well-known/stella/keys.json", RefreshSeconds: 300, CooldownSeconds: 30}
	if !ok || got != want {
		t.Fatalf("got %+v", got)
	}
	config, err = envelope.ConfigFromEnv([]string{
		envelope.EnvAudience + "=orders",
		"ROUTER__IDENTITY_ENVELOPE_JWKS_URL=https://gw/keys.json",
		envelope.EnvJWKSRefresh + "=10",
		envelope.EnvJWKSCooldown + "=3600",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := config.JWKS(); got != (envelope.JWKSSettings{URL: "https://gw/keys.json", RefreshSeconds: 10, CooldownSeconds: 3600}) {
		t.Fatalf("got %+v", got)
	}
	config, err = envelope.ConfigFromEnv([]string{envelope.EnvAudience + "=orders", envelope.EnvJWKSURL + "=  "})
	if _, set := config.JWKS(); err != nil || set {
		t.Fatalf("a blank URL is unset: %v", err)
	}
}

func TestAJWKSURLIsAKeySourceForTheEnforcingModes(t *testing.T) {
	for _, mode := range []string{"Hybrid", "GatewayEnforced"} {
		config, err := envelope.ConfigFromEnv([]string{
			envelope.EnvTrustMode + "=" + mode, envelope.EnvAudience + "=orders", envelope.EnvJWKSURL + "=http://gw/keys.json",
		})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if config.Verifier() == nil || len(config.AcceptedKids()) != 0 {
			t.Fatalf("%s: a verifier without static keys is expected", mode)
		}
	}
	_, err := envelope.ConfigFromEnv([]string{envelope.EnvJWKSURL + "=http://gw/keys.json"})
	if err == nil || err.Error() != "Router__IdentityEnvelopeAudience: is required when envelope keys are configured" {
		t.Fatalf("got %v", err)
	}
}

func TestBadJWKSSettingsNameTheVariableNeverTheValue(t *testing.T) {
	const badURL = "must be an http or https URL with a host"
	cases := []struct{ variable, value, problem string }{
		{envelope.EnvJWKSURL, "ftp://SECRETHOST/keys", badURL},
		{envelope.EnvJWKSURL, "SECRETHOST/keys.json", badURL},
		{envelope.EnvJWKSURL, "http:///SECRETPATH", badURL},
		{envelope.EnvJWKSURL, "http://SECRETHOST:99999/", badURL},
		{envelope.EnvJWKSURL, "http://SECRET HOST/", badURL},
		{envelope.EnvJWKSURL, "http://u:SECRET@gw/keys", "must not carry credentials (user:password@)"},
		{envelope.EnvJWKSRefresh, "9", "must be a whole number of seconds from 10 to 86400"},
		{envelope.EnvJWKSRefresh, "86401", "must be a whole number of seconds from 10 to 86400"},
		{envelope.EnvJWKSRefresh, "5m", "must be a whole number of seconds from 10 to 86400"},
		{envelope.EnvJWKSCooldown, "0", "must be a whole number of seconds up to 3600"},
		{envelope.EnvJWKSCooldown, "3601", "must be a whole number of seconds up to 3600"},
	}
	for _, c := range cases {
		// The first spelling of a variable wins: the case's goes first.
		environ := []string{c.variable + "=" + c.value, envelope.EnvAudience + "=orders", envelope.EnvJWKSURL + "=http://gw/keys.json"}
		_, err := envelope.ConfigFromEnv(environ)
		want := c.variable + ": " + c.problem
		if err == nil || err.Error() != want {
			t.Errorf("%s=%s: got %v, want %q", c.variable, c.value, err, want)
		}
	}
}

func TestTheJWKSVariablesMayBeSetInTheConfigFile(t *testing.T) {
	text := envelope.EnvJWKSURL + "=http://gw/keys.json\n" + envelope.EnvJWKSCooldown + "=5\n"
	config, err := envelope.ConfigFromEnvAndFile([]string{envelope.EnvAudience + "=orders"}, text)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := config.JWKS(); got != (envelope.JWKSSettings{URL: "http://gw/keys.json", RefreshSeconds: 300, CooldownSeconds: 5}) {
		t.Fatalf("got %+v", got)
	}
	_, err = envelope.ConfigFromEnvAndFile([]string{envelope.EnvAudience + "=orders"}, envelope.EnvJWKSURL+"=gw/keys.json\n")
	want := "Router__IdentityEnvelopeJwksUrl: must be an http or https URL with a host (set in Router__ConfigFile line 1)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
}

// --- fetching, against a real server -------------------------------------------

// jwksServer is a JWKS endpoint the test controls: what it answers, how
// slowly, and how many GETs it has served.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	delay   time.Duration
	fetches int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{body: doc(), status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(&s.fetches, 1)
		s.mu.Lock()
		body, status, delay := s.body, s.status, s.delay
		s.mu.Unlock()
		if delay > 0 {
			select { // the server is slow, not the test
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) url() string { return s.URL + "/.well-known/stella/keys.json" }

func (s *jwksServer) serve(body []byte, status int) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

func (s *jwksServer) slow(delay time.Duration) {
	s.mu.Lock()
	s.delay = delay
	s.mu.Unlock()
}

func (s *jwksServer) count() int64 { return atomic.LoadInt64(&s.fetches) }

// jwksService is a GatewayEnforced service behind the middleware, whose
// handler answers the kid of the trusted identity.
func jwksService(t *testing.T, environ ...string) (*httptest.Server, *envelope.Handle, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	base := []string{envelope.EnvTrustMode + "=GatewayEnforced", envelope.EnvAudience + "=orders"}
	// The first spelling of a variable wins: the test's go first.
	h, err := envelope.NewHandle(envelope.Options{Environ: fixedEnviron(append(environ, base...)...), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := envelope.IdentityFrom(r.Context()); ok {
			_, _ = w.Write([]byte(id.Kid()))
		}
	})))
	t.Cleanup(srv.Close)
	return srv, h, logs
}

func firstFetch(t *testing.T, h *envelope.Handle) {
	t.Helper()
	waitFor(t, 5*time.Second, "the first JWKS fetch", func() bool { return h.JWKS().Fetches() >= 1 })
}

// call sends GET /orders/42 with an envelope signed by seed under kid, and
// returns the status and the kid served or the refusal's envelope_error.
func call(t *testing.T, srv *httptest.Server, seed []byte, kid string) string {
	t.Helper()
	header := sealEd25519(t, seed, kid, newClaims("orders", "GET", "/orders/42", time.Now().Unix()-1))
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/orders/42", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return "200 " + body.String()
	}
	var problem struct {
		EnvelopeError string `json:"envelope_error"`
	}
	_ = json.Unmarshal(body.Bytes(), &problem)
	return http.StatusText(resp.StatusCode) + " " + problem.EnvelopeError
}

func TestAnEnvelopeSignedWithAJWKSKeyIsAccepted(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, _, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url())
	// The first request may wait for the first fetch.
	if got := call(t, srv, vectorSeed(t), "ed-1"); got != "200 ed-1" {
		t.Fatalf("got %s", got)
	}
	if got := call(t, srv, seed2, "ed-1"); got != "Unauthorized bad_signature" {
		t.Fatalf("got %s", got)
	}
	if n := jwks.count(); n != 1 {
		t.Fatalf("%d fetches", n)
	}
}

func TestARotatedKeyIsPickedUpByAnUnknownKidRefetch(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, h, logs := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url())
	firstFetch(t, h)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil), jwk(seed2, "k2", nil)), 200)
	if got := call(t, srv, seed2, "k2"); got != "200 k2" {
		t.Fatalf("got %s", got)
	}
	if n := jwks.count(); n != 2 {
		t.Fatalf("%d fetches", n)
	}
	if !strings.Contains(logs.String(), "envelope: JWKS fetched from Router__IdentityEnvelopeJwksUrl: kids=ed-1,k2") {
		t.Fatalf("log:\n%s", logs)
	}
	if strings.Contains(logs.String(), publicX(seed2)) {
		t.Fatal("the log shows key material")
	}
}

func TestUnknownKidsRefetchAtMostOncePerCooldown(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, h, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url(), envelope.EnvJWKSCooldown+"=3600")
	firstFetch(t, h)
	if got := call(t, srv, seed2, "k2"); got != "Unauthorized unknown_kid" {
		t.Fatalf("got %s", got)
	}
	if n := jwks.count(); n != 2 { // the one refetch of this cooldown
		t.Fatalf("%d fetches", n)
	}
	jwks.serve(doc(jwk(seed2, "k2", nil)), 200)
	started := time.Now()
	for _, kid := range []string{"k2", "k3", "k4"} {
		if got := call(t, srv, seed2, kid); got != "Unauthorized unknown_kid" {
			t.Fatalf("%s: got %s", kid, got)
		}
	}
	if time.Since(started) > time.Second {
		t.Fatal("refused after a wait, not at once")
	}
	if n := jwks.count(); n != 2 {
		t.Fatalf("%d fetches", n)
	}
}

func TestAnHS256EnvelopeWithAnUnknownKidFetchesNothing(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, h, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url())
	firstFetch(t, h)
	header := sealHS256(t, []byte(testSecret), "k9", newClaims("orders", "GET", "/orders/42", time.Now().Unix()-1))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/orders/42", nil)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || jwks.count() != 1 {
		t.Fatalf("status %d after %d fetches", resp.StatusCode, jwks.count())
	}
}

func TestConcurrentUnknownKidsShareOneFetch(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, h, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url())
	firstFetch(t, h)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil), jwk(seed2, "k2", nil)), 200)
	jwks.slow(300 * time.Millisecond)
	results := make(chan string, 8)
	for i := 0; i < 8; i++ {
		go func() { results <- call(t, srv, seed2, "k2") }()
	}
	for i := 0; i < 8; i++ {
		if got := <-results; got != "200 k2" {
			t.Errorf("got %s", got)
		}
	}
	if n := jwks.count(); n != 2 {
		t.Fatalf("%d fetches", n)
	}
}

func TestARefetchAfterTheCooldownIsAllowedAgain(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	_, h, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url(), envelope.EnvJWKSCooldown+"=1")
	firstFetch(t, h)
	keys := h.JWKS()
	first := keys.RefetchForUnknownKid()
	if first == nil {
		t.Fatal("the first refetch was refused")
	}
	<-first
	if keys.RefetchForUnknownKid() != nil {
		t.Fatal("a second refetch within the cooldown")
	}
	waitFor(t, 5*time.Second, "the end of the cooldown", func() bool { return keys.RefetchForUnknownKid() != nil })
	waitFor(t, 5*time.Second, "the third fetch", func() bool { return jwks.count() == 3 })
}

func TestAFailedFetchKeepsTheLastGoodKeys(t *testing.T) {
	cases := []struct {
		body   []byte
		status int
		why    string
	}{
		{[]byte("oops"), 500, "http status 500"},
		{nil, 302, "http status 302"},
		{[]byte("{not json"), 200, "document is not a strict json object"},
		{doc(jwk(seed2, "k2", nil), jwk(seed3, "k2", nil)), 200, "key id k2 appears more than once"},
		{doc(with(jwk(seed2, "k2", nil), "x", base64.RawURLEncoding.EncodeToString(make([]byte, 16)))), 200, "key k2 has no x of 32 bytes"},
		{bytes.Repeat([]byte(" "), 64<<10+1), 200, "document is larger than 65536 bytes"},
	}
	for _, c := range cases {
		t.Run(c.why, func(t *testing.T) {
			jwks := newJWKSServer(t)
			jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
			srv, h, logs := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url())
			firstFetch(t, h)
			jwks.serve(c.body, c.status)
			if got := call(t, srv, seed2, "k2"); got != "Unauthorized unknown_kid" {
				t.Fatalf("got %s", got)
			}
			if n := jwks.count(); n != 2 {
				t.Fatalf("%d fetches", n)
			}
			if last := h.JWKS().LastError(); !strings.HasPrefix(last, c.why) {
				t.Fatalf("last error %q", last)
			}
			if got := call(t, srv, vectorSeed(t), "ed-1"); got != "200 ed-1" {
				t.Fatalf("the last good key: got %s", got)
			}
			log := logs.String()
			if !strings.Contains(log, "envelope: JWKS fetch from Router__IdentityEnvelopeJwksUrl failed, keeping 1 keys fetched") {
				t.Fatalf("log:\n%s", log)
			}
			if strings.Contains(log, jwks.URL) || strings.Contains(log, publicX(seed2)) {
				t.Fatalf("the log shows the URL or key material:\n%s", log)
			}
		})
	}
}

func TestADocumentWithKeysToSkipStillServesItsGoodOnes(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(es256Key, jwk(seed3, "enc", map[string]interface{}{"use": "enc"}), jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, _, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url())
	if got := call(t, srv, vectorSeed(t), "ed-1"); got != "200 ed-1" {
		t.Fatalf("got %s", got)
	}
	if got := call(t, srv, seed3, "enc"); got != "Unauthorized unknown_kid" {
		t.Fatalf("got %s", got)
	}
}

func TestUntilAFirstFetchSucceedsJWKSKidsAreUnknownAndItIsRetried(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve([]byte("down"), 503)
	_, h, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url(), envelope.EnvJWKSCooldown+"=1")
	firstFetch(t, h)
	keys := h.JWKS()
	if !keys.FetchedAt().IsZero() || keys.Keyring().Len() != 0 || keys.LastError() != "http status 503" {
		t.Fatalf("fetched at %v, %d keys, last error %q", keys.FetchedAt(), keys.Keyring().Len(), keys.LastError())
	}
	jwks.serve(doc(jwk(seed2, "k2", nil)), 200)
	// Retried after the cooldown, without any request asking.
	waitFor(t, 5*time.Second, "the retry", func() bool { _, ok := keys.Keyring().Key("k2"); return ok })
	if keys.LastError() != "" {
		t.Fatalf("last error %q", keys.LastError())
	}
}

func TestAStaticKeyWinsOverAJWKSKeyWithTheSameKid(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(seed2, "ed-1", nil), jwk(seed3, "k3", nil)), 200)
	srv, _, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url(), envelope.EnvAcceptedKeys+"=ed-1="+vectorVerifySpec(t, "ed-1"))
	if got := call(t, srv, seed3, "k3"); got != "200 k3" { // JWKS keys are in use
		t.Fatalf("got %s", got)
	}
	if got := call(t, srv, vectorSeed(t), "ed-1"); got != "200 ed-1" {
		t.Fatalf("got %s", got)
	}
	if got := call(t, srv, seed2, "ed-1"); got != "Unauthorized bad_signature" {
		t.Fatalf("got %s", got)
	}
}

func TestAReloadToAnotherURLUsesTheNewOne(t *testing.T) {
	a, b := newJWKSServer(t), newJWKSServer(t)
	a.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	b.serve(doc(jwk(seed2, "k2", nil)), 200)
	file := filepath.Join(t.TempDir(), "envelope.env")
	writeFile(t, file, envelope.EnvJWKSURL+"="+a.url()+"\n")
	srv, h, _ := jwksService(t, envelope.EnvConfigFile+"="+file)
	if got := call(t, srv, vectorSeed(t), "ed-1"); got != "200 ed-1" {
		t.Fatalf("got %s", got)
	}
	old := h.JWKS()
	writeFile(t, file, envelope.EnvJWKSURL+"="+b.url()+"\n")
	if outcome, err := h.Reload(); err != nil || !outcome.Applied {
		t.Fatalf("reload: %+v %v", outcome, err)
	}
	if got := call(t, srv, seed2, "k2"); got != "200 k2" {
		t.Fatalf("got %s", got)
	}
	if got := call(t, srv, vectorSeed(t), "ed-1"); got != "Unauthorized unknown_kid" {
		t.Fatalf("got %s", got)
	}
	if h.JWKS() == old {
		t.Fatal("the old fetcher is still in use")
	}
	// Only the intervals change: the fetcher and its keys stay.
	kept := h.JWKS()
	writeFile(t, file, envelope.EnvJWKSURL+"="+b.url()+"\n"+envelope.EnvJWKSRefresh+"=60\n")
	if outcome, err := h.Reload(); err != nil || !outcome.Applied {
		t.Fatalf("reload: %+v %v", outcome, err)
	}
	if h.JWKS() != kept || kept.Settings().RefreshSeconds != 60 {
		t.Fatalf("fetcher replaced, or refresh %d", kept.Settings().RefreshSeconds)
	}
}

func TestServiceEnforcedNeverWaitsForARefetch(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.serve(doc(jwk(vectorSeed(t), "ed-1", nil)), 200)
	srv, h, _ := jwksService(t, envelope.EnvJWKSURL+"="+jwks.url(), envelope.EnvTrustMode+"=ServiceEnforced")
	firstFetch(t, h)
	if got := call(t, srv, seed2, "k2"); got != "200 " {
		t.Fatalf("got %s", got)
	}
	if n := jwks.count(); n != 1 {
		t.Fatalf("%d fetches", n)
	}
}

func TestCloseStopsTheFetcher(t *testing.T) {
	jwks := newJWKSServer(t)
	jwks.slow(30 * time.Second) // the first fetch hangs
	h, err := envelope.NewHandle(envelope.Options{
		Environ: fixedEnviron(envelope.EnvAudience+"=orders", envelope.EnvJWKSURL+"="+jwks.url()),
		Logger:  (&logBuffer{}).logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the fetch to reach the server", func() bool { return jwks.count() == 1 })
	closed := make(chan struct{})
	go func() { h.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited for the fetch in flight")
	}
	if h.JWKS().RefetchForUnknownKid() != nil {
		t.Fatal("a closed fetcher took a refetch")
	}
}
