package envelope

// Envelope keys fetched from a JWKS URL (SPEC.md section 7.6).
//
// ParseJWKS is pure: the bytes of a JWK Set in, a Keyring of its Ed25519
// keys out, or an error for a document that must not be used. JWKSKeys is
// the shell: one goroutine fetches the URL at start, every refresh interval
// after a success, sooner after a failure, and on demand when an envelope
// names a kid no key has (at most once per cooldown). The goroutine is the
// only one that fetches, so fetches never overlap and concurrent requests
// for a refetch share one. The key set in use is one immutable Keyring
// behind an atomic pointer; a failed fetch keeps the last good one. Nothing
// is logged with key material or the URL (it may carry a token): messages
// name Router__IdentityEnvelopeJwksUrl.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

const (
	// DefaultJWKSRefreshSeconds is the default time between two fetches
	// after a successful one.
	DefaultJWKSRefreshSeconds = 300
	// DefaultJWKSCooldownSeconds is the default shortest time between two
	// refetches caused by unknown kids.
	DefaultJWKSCooldownSeconds = 30
	// JWKSFetchTimeout is the longest a fetch may take, connection and body
	// included.
	JWKSFetchTimeout = 5 * time.Second
	// JWKSMaxBytes is the largest JWKS document accepted.
	JWKSMaxBytes = 64 << 10
	// UnknownKidWait is the longest a request with an unknown kid waits for
	// a fetch before it is refused (unknown_kid).
	UnknownKidWait = 2 * time.Second
)

// JWKSSettings is where the JWKS is and how often it is fetched.
type JWKSSettings struct {
	URL             string
	RefreshSeconds  uint64
	CooldownSeconds uint64
}

// String leaves the URL out: it may carry a token.
func (s JWKSSettings) String() string {
	return fmt.Sprintf("JWKSSettings{url: <redacted>, refresh: %ds, cooldown: %ds}", s.RefreshSeconds, s.CooldownSeconds)
}

// GoString keeps %#v from printing the URL.
func (s JWKSSettings) GoString() string { return s.String() }

// JWKSError is a refused JWKS URL, fetch or document. Its message never
// contains key material, the URL or the document.
type JWKSError struct{ problem string }

func (e *JWKSError) Error() string { return e.problem }

func jwksError(format string, args ...interface{}) *JWKSError {
	return &JWKSError{problem: fmt.Sprintf(format, args...)}
}

// checkJWKSURL accepts an absolute http or https URL with a host and no
// credentials. The error never shows the text.
func checkJWKSURL(text string) error {
	bad := jwksError("must be an http or https URL with a host")
	for i := 0; i < len(text); i++ {
		if text[i] < 0x21 || text[i] > 0x7e {
			return bad
		}
	}
	u, err := url.Parse(text)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "" {
		return bad
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
			return bad
		}
	}
	if u.User != nil {
		return jwksError("must not carry credentials (user:password@)")
	}
	return nil
}

// ParseJWKS reads the Ed25519 envelope keys of a JWK Set (RFC 7517).
//
// Used: kty OKP, crv Ed25519, alg absent or EdDSA, use absent or sig, with
// a kid that is a valid envelope key id. Skipped, not fatal: every other key
// (ES256 and RSA keys, encryption keys, keys without kid). Refused, the
// whole document: anything but a strict JSON object (no member name twice)
// with a keys array of objects, a kid that is not a string, two keys with
// one kid, and a used key whose x is not 32 bytes of canonical base64url or
// that carries a private part (d). The error is a *JWKSError.
func ParseJWKS(data []byte) (*Keyring, error) {
	if len(data) > JWKSMaxBytes {
		return nil, jwksError("document is larger than %d bytes", JWKSMaxBytes)
	}
	if err := checkStrictJSONObject(data); err != nil {
		return nil, jwksError("document is not a strict json object (%s)", err)
	}
	// Unmarshal into maps keeps member names exact (a struct would match
	// "KEYS" too); the strict walk above already refused duplicates.
	var document map[string]json.RawMessage
	if err := json.Unmarshal(data, &document); err != nil {
		return nil, jwksError("document is not a strict json object (json)")
	}
	var entries []json.RawMessage
	raw, ok := document["keys"]
	if !ok || raw[0] != '[' || json.Unmarshal(raw, &entries) != nil {
		return nil, jwksError("document has no keys array")
	}
	seen := make(map[string]bool, len(entries))
	ring, _ := NewKeyring()
	for index, entry := range entries {
		var members map[string]json.RawMessage
		if entry[0] != '{' || json.Unmarshal(entry, &members) != nil {
			return nil, jwksError("keys[%d] is not an object", index)
		}
		kidRaw, has := members["kid"]
		if !has {
			continue
		}
		kid, ok := jsonString(kidRaw)
		if !ok {
			return nil, jwksError("keys[%d] has a kid that is not a string", index)
		}
		if seen[kid] {
			// The kid alone selects the key: with two, which one signs?
			shown := kid
			if !validKid(kid) {
				shown = "(not a valid key id)"
			}
			return nil, jwksError("key id %s appears more than once", shown)
		}
		seen[kid] = true
		used := jsonIs(members, "kty", "OKP", false) && jsonIs(members, "crv", "Ed25519", false) &&
			jsonIs(members, "alg", "EdDSA", true) && jsonIs(members, "use", "sig", true)
		if !used || !validKid(kid) {
			continue // no envelope can name it
		}
		if _, private := members["d"]; private {
			return nil, jwksError("key %s is a private key", kid)
		}
		x, _ := jsonString(members["x"])
		material, ok := decodeB64URL(x)
		if !ok || len(material) != 32 {
			return nil, jwksError("key %s has no x of 32 bytes in canonical base64url", kid)
		}
		key, err := NewEd25519PublicKey(kid, material)
		if err != nil {
			return nil, jwksError("key %s: %s", kid, err)
		}
		if err := ring.add(key); err != nil { // impossible: kids were checked unique
			return nil, jwksError("%s", err)
		}
	}
	return ring, nil
}

// jsonString is raw as a string, if it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonIs reports whether member name of members is the string want, or,
// when absentOK, missing.
func jsonIs(members map[string]json.RawMessage, name, want string, absentOK bool) bool {
	raw, has := members[name]
	if !has {
		return absentOK
	}
	s, ok := jsonString(raw)
	return ok && s == want
}

// maxJSONDepth is the deepest nesting of untrusted JSON accepted, as the
// Rust crate.
const maxJSONDepth = 16

// checkStrictJSONObject accepts exactly one JSON object in valid UTF-8,
// without a member name twice in any object (names compared after
// unescaping), a lone surrogate escape, or nesting deeper than
// maxJSONDepth.
func checkStrictJSONObject(data []byte) error {
	if !utf8.Valid(data) || hasLoneSurrogate(data) {
		return errors.New("not utf-8 text")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if d, ok := firstDelim(data); !ok || d != '{' {
		return errors.New("not an object")
	}
	if err := strictValue(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("syntax")
	}
	return nil
}

// firstDelim is the first character of data after JSON whitespace.
func firstDelim(data []byte) (byte, bool) {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c, true
		}
	}
	return 0, false
}

func strictValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return errors.New("syntax")
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return errors.New("too deep")
	}
	if delim == '{' {
		names := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return errors.New("syntax")
			}
			name, _ := tok.(string)
			if names[name] {
				return errors.New("duplicate member")
			}
			names[name] = true
			if err := strictValue(dec, depth+1); err != nil {
				return err
			}
		}
	} else {
		for dec.More() {
			if err := strictValue(dec, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errors.New("syntax")
	}
	return nil
}

// jwksClient fetches with a whole-exchange timeout, without following
// redirects and without proxies from the environment: the JWKS is the
// gateway's own admin listener.
var jwksClient = func() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.DialContext = (&net.Dialer{Timeout: JWKSFetchTimeout}).DialContext
	return &http.Client{
		Transport: transport,
		Timeout:   JWKSFetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}()

// FetchJWKS GETs url and returns the body of a 200 response, within
// JWKSFetchTimeout and JWKSMaxBytes; redirects are not followed. The error
// is a *JWKSError (or ctx's error once ctx is done).
func FetchJWKS(ctx context.Context, url string) ([]byte, error) {
	return fetchJWKS(ctx, jwksClient, url)
}

func fetchJWKS(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, jwksError("connection: bad request")
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "stella-envelope-go")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fetchProblem(ctx, client, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, jwksError("http status %d", resp.StatusCode)
	}
	if resp.ContentLength > JWKSMaxBytes {
		return nil, jwksError("document is larger than %d bytes", JWKSMaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, JWKSMaxBytes+1))
	if err != nil {
		return nil, fetchProblem(ctx, client, err)
	}
	if len(body) > JWKSMaxBytes {
		return nil, jwksError("document is larger than %d bytes", JWKSMaxBytes)
	}
	return body, nil
}

// fetchProblem says why a fetch failed without the URL, which net/http's
// errors repeat.
func fetchProblem(ctx context.Context, client *http.Client, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return jwksError("timed out after %g s", client.Timeout.Seconds())
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return jwksError("connection: %s failed", opErr.Op)
	}
	return jwksError("connection: failed")
}

// JWKSKeys is the key set of one JWKS URL, kept fresh by a goroutine until
// Close. Keyring is the set in use: empty until the first successful fetch.
type JWKSKeys struct {
	keys   atomic.Pointer[Keyring]
	logger *log.Logger
	fetch  func(ctx context.Context, url string) ([]byte, error)
	// now is the monotonic clock of the cooldown.
	now  func() time.Time
	wake chan struct{}
	// retuned tells the loop that the intervals changed.
	retuned chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	settings JWKSSettings
	// inFlight is closed when the fetch running now ends; requested, when
	// the one asked for next ends. Waiters share them.
	inFlight     chan struct{}
	requested    chan struct{}
	lastOnDemand time.Time
	// lastEnd is when the last fetch ended and lastOK whether it worked:
	// what the next one is scheduled from.
	lastEnd   time.Time
	lastOK    bool
	fetchedAt time.Time
	lastError string
	fetches   uint64
}

// newJWKSKeys starts fetching settings.URL at once.
func newJWKSKeys(settings JWKSSettings, logger *log.Logger,
	fetch func(ctx context.Context, url string) ([]byte, error)) *JWKSKeys {
	if fetch == nil {
		fetch = FetchJWKS
	}
	if logger == nil {
		logger = log.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &JWKSKeys{
		logger: logger, fetch: fetch, now: time.Now, wake: make(chan struct{}, 1), retuned: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), settings: settings,
	}
	empty, _ := NewKeyring()
	j.keys.Store(empty)
	if plainHTTPOffLoopback(settings.URL) {
		logger.Printf("envelope: JWKS: %s is plain http to another host: whoever can alter that traffic can add a key (use https, or a network path you trust)", EnvJWKSURL)
	}
	go j.run()
	return j
}

func plainHTTPOffLoopback(text string) bool {
	u, err := url.Parse(text)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	loopback := host == "localhost" || host == "::1" || strings.HasPrefix(host, "127.")
	return u.Scheme == "http" && !loopback
}

// Keyring is the key set in use now.
func (j *JWKSKeys) Keyring() *Keyring { return j.keys.Load() }

// Settings are the URL and intervals in use.
func (j *JWKSKeys) Settings() JWKSSettings {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.settings
}

// FetchedAt is when the last fetch succeeded; zero before the first.
func (j *JWKSKeys) FetchedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetchedAt
}

// LastError is why the latest fetch failed; "" once one succeeds.
func (j *JWKSKeys) LastError() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lastError
}

// Fetches is how many fetches have ended, successful or not.
func (j *JWKSKeys) Fetches() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// retune takes new intervals for the same URL: the keys stay, and the next
// fetch is due the new interval after the last one ended.
func (j *JWKSKeys) retune(refresh, cooldown uint64) {
	j.mu.Lock()
	j.settings.RefreshSeconds, j.settings.CooldownSeconds = refresh, cooldown
	j.mu.Unlock()
	select {
	case j.retuned <- struct{}{}:
	default:
	}
}

// interval is the wait after a fetch; after a failure, retry sooner: the
// cooldown, if shorter. j.mu must be held.
func (j *JWKSKeys) interval(ok bool) time.Duration {
	wait := j.settings.RefreshSeconds
	if !ok && j.settings.CooldownSeconds < wait {
		wait = j.settings.CooldownSeconds
	}
	return time.Duration(wait) * time.Second
}

// resetTimer makes timer fire after d, whatever its state.
func resetTimer(timer *time.Timer, d time.Duration) {
	if !timer.Stop() {
		select {
		case <-timer.C:
		default:
		}
	}
	timer.Reset(d)
}

// RefetchForUnknownKid asks for a fetch because an envelope named an
// unknown kid. It returns a channel closed when the fetch that answers has
// ended: the one in flight if there is one, else a new one, at most one per
// cooldown. Nil within the cooldown (answer unknown_kid at once) or once
// closed.
func (j *JWKSKeys) RefetchForUnknownKid() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.ctx.Err() != nil:
		return nil
	case j.inFlight != nil:
		return j.inFlight
	case j.requested != nil:
		return j.requested
	}
	now := j.now()
	cooldown := time.Duration(j.settings.CooldownSeconds) * time.Second
	if !j.lastOnDemand.IsZero() && now.Before(j.lastOnDemand.Add(cooldown)) {
		return nil
	}
	j.lastOnDemand = now
	j.requested = make(chan struct{})
	select {
	case j.wake <- struct{}{}:
	default: // a wake is already pending
	}
	return j.requested
}

// Close stops the goroutine and waits for it; a fetch in flight is
// cancelled.
func (j *JWKSKeys) Close() {
	j.cancel()
	<-j.done
}

func (j *JWKSKeys) run() {
	defer close(j.done)
	timer := time.NewTimer(0) // fetch at once
	defer timer.Stop()
	for {
		j.mu.Lock()
		pending := j.requested != nil
		j.mu.Unlock()
		if !pending {
			select {
			case <-j.ctx.Done():
				j.release()
				return
			case <-j.retuned:
				j.mu.Lock()
				started := !j.lastEnd.IsZero()
				due := time.Until(j.lastEnd.Add(j.interval(j.lastOK)))
				j.mu.Unlock()
				if started { // else the first fetch is still to come at once
					resetTimer(timer, due)
				}
				continue
			case <-timer.C:
			case <-j.wake:
			}
		}
		select { // a wake for the fetch about to start is spent
		case <-j.wake:
		default:
		}
		j.mu.Lock()
		done := j.requested
		if done == nil {
			done = make(chan struct{})
		}
		j.requested, j.inFlight = nil, done
		url := j.settings.URL
		j.mu.Unlock()

		ok := j.fetchOnce(url)

		j.mu.Lock()
		j.inFlight = nil
		j.lastEnd, j.lastOK = time.Now(), ok
		wait := j.interval(ok)
		j.mu.Unlock()
		close(done)
		resetTimer(timer, wait)
	}
}

// release wakes whoever waits for a fetch that will not happen.
func (j *JWKSKeys) release() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.requested != nil {
		close(j.requested)
		j.requested = nil
	}
}

func (j *JWKSKeys) fetchOnce(url string) bool {
	body, err := j.fetch(j.ctx, url)
	var keys *Keyring
	if err == nil {
		keys, err = ParseJWKS(body)
	}
	if j.ctx.Err() != nil {
		return false // closed: nothing is applied or logged
	}
	j.mu.Lock()
	j.fetches++
	if err != nil {
		j.lastError = err.Error()
		kept := "no keys fetched yet"
		if !j.fetchedAt.IsZero() {
			kept = fmt.Sprintf("keeping %d keys fetched %d s ago", j.keys.Load().Len(), int64(time.Since(j.fetchedAt).Seconds()))
		}
		j.mu.Unlock()
		j.logger.Printf("envelope: JWKS fetch from %s failed, %s: %s", EnvJWKSURL, kept, err)
		return false
	}
	changed := j.fetchedAt.IsZero() || !keys.sameKeys(j.keys.Load())
	j.keys.Store(keys)
	j.fetchedAt = time.Now()
	j.lastError = ""
	j.mu.Unlock()
	if changed {
		kids := "-"
		if keys.Len() > 0 {
			kids = strings.Join(keys.Kids(), ",")
		}
		j.logger.Printf("envelope: JWKS fetched from %s: kids=%s", EnvJWKSURL, kids)
	}
	return true
}
