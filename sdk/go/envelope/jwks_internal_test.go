package envelope

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestASlowServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the server is slow, not the test
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	client := *jwksClient
	client.Timeout = 300 * time.Millisecond
	started := time.Now()
	_, err := fetchJWKS(context.Background(), &client, srv.URL)
	if err == nil || err.Error() != "timed out after 0.3 s" {
		t.Fatalf("got %v", err)
	}
	if elapsed := time.Since(started); elapsed > 2*time.Second {
		t.Fatalf("took %v", elapsed)
	}
}

func TestTheCooldownIsAPureDecisionOnTheMonotonicClock(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	j := newJWKSKeys(JWKSSettings{URL: srv.URL, RefreshSeconds: 3600, CooldownSeconds: 30}, log.New(io.Discard, "", 0), nil)
	defer j.Close()
	now := time.Unix(1000, 0)
	j.mu.Lock()
	j.now = func() time.Time { return now }
	j.mu.Unlock()
	wait := func(ch <-chan struct{}) {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("the refetch never ended")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for j.Fetches() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the fetch at start
	}
	first := j.RefetchForUnknownKid()
	if first == nil {
		t.Fatal("the first refetch was refused")
	}
	wait(first)
	for _, at := range []time.Duration{0, time.Second, 29 * time.Second} {
		now = time.Unix(1000, 0).Add(at)
		if j.RefetchForUnknownKid() != nil {
			t.Fatalf("a refetch %v into the cooldown", at)
		}
	}
	now = time.Unix(1030, 0)
	second := j.RefetchForUnknownKid()
	if second == nil {
		t.Fatal("no refetch once the cooldown is over")
	}
	wait(second)
	if n := j.Fetches(); n != 3 {
		t.Fatalf("%d fetches", n)
	}
}

func TestVerifyWithKeysLooksUpTheExtraKeysAfterTheKeyring(t *testing.T) {
	static, _ := ParseKeyring("k1=" + "hs256:" + encodeB64URL(make([]byte, 32)))
	v := &Verifier{keyring: static, settings: DefaultVerifierSettings("orders")}
	header := http.Header{}
	for _, name := range []string{HeaderEnvelope, HeaderSignature, HeaderIat, HeaderExp} {
		header.Set(name, "x")
	}
	header.Set(HeaderAlg, "EdDSA")
	header.Set(HeaderKid, "k2")
	if _, err := v.VerifyWithKeys(header, nil, "GET", "/", time.Unix(0, 0)); err == nil || err.(*Error).Code != CodeUnknownKid {
		t.Fatalf("without extra keys: %v", err)
	}
	extra, _ := NewKeyring()
	key, _ := NewEd25519PublicKey("k2", make([]byte, 32))
	_ = extra.add(key)
	// Found among the extra keys: the next check (the timestamps) decides.
	if _, err := v.VerifyWithKeys(header, extra, "GET", "/", time.Unix(0, 0)); err == nil || err.(*Error).Code != CodeMalformedTimestamp {
		t.Fatalf("with extra keys: %v", err)
	}
}

func TestPlainHTTPToAnotherHostIsLoggedLoudly(t *testing.T) {
	cases := []struct {
		url    string
		warned bool
	}{
		{"http://gateway.internal:9090/keys.json", true},
		{"https://gateway.internal/keys.json", false},
		{"http://127.0.0.1:9090/keys.json", false},
	}
	for _, c := range cases {
		var logs strings.Builder
		var mu sync.Mutex
		logger := log.New(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), "", 0)
		empty := func(context.Context, string) ([]byte, error) { return []byte(`{"keys":[]}`), nil }
		j := newJWKSKeys(JWKSSettings{URL: c.url, RefreshSeconds: 300, CooldownSeconds: 30}, logger, empty)
		j.Close()
		mu.Lock()
		text := logs.String()
		mu.Unlock()
		if strings.Contains(text, "is plain http to another host") != c.warned || strings.Contains(text, c.url) {
			t.Errorf("%s: log %q", c.url, text)
		}
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestARetunedRefreshIntervalAppliesFromTheLastFetch(t *testing.T) {
	var fetches int64
	var mu sync.Mutex
	count := func(context.Context, string) ([]byte, error) {
		mu.Lock()
		fetches++
		mu.Unlock()
		return []byte(`{"keys":[]}`), nil
	}
	j := newJWKSKeys(JWKSSettings{URL: "https://gw/keys.json", RefreshSeconds: 3600, CooldownSeconds: 30}, log.New(io.Discard, "", 0), count)
	defer j.Close()
	seen := func() int64 { mu.Lock(); defer mu.Unlock(); return fetches }
	deadline := time.Now().Add(5 * time.Second)
	for seen() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	j.retune(1, 30)
	for seen() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := seen(); n < 2 {
		t.Fatalf("%d fetches: the new refresh interval was not applied", n)
	}
}
