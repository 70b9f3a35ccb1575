package envelope_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// seen is what the handler behind the middleware reports.
type seen struct {
	Trusted bool   `json:"trusted"`
	Sub     string `json:"sub"`
	Ignored string `json:"ignored"`
	Mode    string `json:"mode"`
}

// echo reports the request's outcome, and counts its calls.
func echo(calls *int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(calls, 1)
		var s seen
		if id, ok := envelope.IdentityFrom(r.Context()); ok {
			s.Trusted = true
			s.Sub, _ = id.Subject()
		}
		if o, ok := envelope.OutcomeFrom(r.Context()); ok {
			if e := o.IgnoredInvalid(); e != nil {
				s.Ignored = string(e.Code)
			}
			s.Mode = o.Config().Mode().String()
		}
		_ = json.NewEncoder(w).Encode(s)
	})
}

// server runs the middleware over echo on a loopback port, configured from
// environ, at the vectors' time.
func server(t *testing.T, vf *vectorFile, environ []string, calls *int64) (*httptest.Server, *envelope.Handle, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	h, err := envelope.NewHandle(envelope.Options{Environ: fixedEnviron(environ...), Logger: logs.logger(), Now: vf.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Middleware(echo(calls)))
	t.Cleanup(srv.Close)
	return srv, h, logs
}

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, url string, pairs [][2]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		req.Header.Add(p[0], p[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func decodeSeen(t *testing.T, r response) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		t.Fatalf("handler body %q: %v", r.body, err)
	}
	return s
}

func TestTrustModesOverHTTP(t *testing.T) {
	vf := loadVectors(t)
	valid := vf.validHeaders(t, "hs256_bearer")
	badSig := vf.invalidHeaders(t, "bad_signature")
	wrongAud := vf.invalidHeaders(t, "wrong_audience")
	type want struct {
		status  int
		trusted bool
		ignored string
		problem string // the whole body of a rejection
	}
	passed := func(trusted bool, ignored string) want { return want{status: 200, trusted: trusted, ignored: ignored} }
	rejected := func(status int, code, cause string) want {
		causeJSON := "null"
		if cause != "" {
			causeJSON = `"` + cause + `"`
		}
		return want{status: status, problem: `{"envelope_error":` + causeJSON + `,"error":"` + code + `","status":` +
			strconv.Itoa(status) + `,"title":"` + http.StatusText(status) + `","type":"about:blank"}`}
	}
	table := map[string]map[string]want{
		"ServiceEnforced": {
			"valid": passed(false, ""), "absent": passed(false, ""),
			"bad signature": passed(false, "bad_signature"), "wrong audience": passed(false, "audience_mismatch"),
		},
		"Hybrid": {
			"valid": passed(true, ""), "absent": passed(false, ""),
			"bad signature":  rejected(401, "envelope_invalid", "bad_signature"),
			"wrong audience": rejected(401, "envelope_invalid", "audience_mismatch"),
		},
		"GatewayEnforced": {
			"valid": passed(true, ""), "absent": rejected(401, "envelope_required", ""),
			"bad signature":  rejected(401, "envelope_invalid", "bad_signature"),
			"wrong audience": rejected(403, "envelope_audience_mismatch", "audience_mismatch"),
		},
	}
	requests := map[string][][2]string{"valid": valid, "absent": nil, "bad signature": badSig, "wrong audience": wrongAud}
	for mode, rows := range table {
		var calls int64
		srv, _, logs := server(t, vf, vf.vectorEnviron(mode), &calls)
		for label, w := range rows {
			before := atomic.LoadInt64(&calls)
			r := get(t, srv.URL+vf.Request.Path, requests[label])
			called := atomic.LoadInt64(&calls) > before
			if r.status != w.status {
				t.Errorf("%s / %s: status %d, want %d (%s)", mode, label, r.status, w.status, r.body)
				continue
			}
			if w.problem != "" {
				if called || r.body != w.problem || r.header.Get("Content-Type") != "application/problem+json" ||
					r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("%s / %s: handler called %v, %s %q", mode, label, called, r.header, r.body)
				}
				continue
			}
			s := decodeSeen(t, r)
			if !called || s.Trusted != w.trusted || s.Ignored != w.ignored || s.Mode != mode {
				t.Errorf("%s / %s: handler saw %+v, want trusted %v ignored %q", mode, label, s, w.trusted, w.ignored)
			}
			if s.Trusted && s.Sub != "user-7" {
				t.Errorf("%s / %s: subject %q", mode, label, s.Sub)
			}
		}
		// Every invalid envelope is logged, by code, without header values.
		got := logs.String()
		if !strings.Contains(got, "code=bad_signature") || strings.Contains(got, badSig[1][1]) {
			t.Errorf("%s: logs %s", mode, got)
		}
	}
}

func TestEveryVectorOverHTTPInGatewayEnforced(t *testing.T) {
	vf := loadVectors(t)
	var calls int64
	srv, _, _ := server(t, vf, vf.vectorEnviron("GatewayEnforced"), &calls)
	for _, v := range vf.Valid {
		if r := get(t, srv.URL+vf.Request.Path, v.Headers); r.status != 200 || !decodeSeen(t, r).Trusted {
			t.Errorf("%s: %d %s", v.Name, r.status, r.body)
		}
	}
	for _, v := range vf.Invalid {
		path := vf.Request.Path
		if v.Request != nil {
			if v.Request.Method != http.MethodGet {
				continue // the method case is covered by TestTheEnvelopeIsBoundToTheMethod
			}
			path = v.Request.Path
		}
		r := get(t, srv.URL+path, v.Headers)
		var problem struct {
			EnvelopeError string `json:"envelope_error"`
		}
		_ = json.Unmarshal([]byte(r.body), &problem)
		if r.status < 401 || r.status > 403 || problem.EnvelopeError != string(v.ExpectError) {
			t.Errorf("%s: %d %s, want %s", v.Name, r.status, r.body, v.ExpectError)
		}
	}
	if calls != int64(len(vf.Valid)) {
		t.Errorf("handler called %d times for %d valid vectors", calls, len(vf.Valid))
	}
}

func TestTheEnvelopeIsBoundToTheMethod(t *testing.T) {
	vf := loadVectors(t)
	var calls int64
	srv, _, _ := server(t, vf, vf.vectorEnviron("GatewayEnforced"), &calls)
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+vf.Request.Path, nil)
	for _, p := range vf.validHeaders(t, "hs256_bearer") {
		req.Header.Add(p[0], p[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), `"envelope_error":"request_mismatch"`) || calls != 0 {
		t.Fatalf("%d %s, handler calls %d", resp.StatusCode, body, calls)
	}
}

func TestTheEnvelopeIsBoundToThePathAsReceivedWithoutTheQuery(t *testing.T) {
	vf := loadVectors(t)
	var calls int64
	srv, _, _ := server(t, vf, vf.vectorEnviron("GatewayEnforced"), &calls)
	valid := vf.validHeaders(t, "hs256_bearer")
	if r := get(t, srv.URL+vf.Request.Path+"?page=2", valid); r.status != 200 || !decodeSeen(t, r).Trusted {
		t.Fatalf("with a query: %d %s", r.status, r.body)
	}
	// "/orders/%34%32" decodes to "/orders/42" but is not the path signed.
	if r := get(t, srv.URL+"/orders/%34%32", valid); r.status != 401 || !strings.Contains(r.body, "request_mismatch") {
		t.Fatalf("percent-encoded: %d %s", r.status, r.body)
	}
}

func TestDisabledServicesIgnoreEnvelopesEntirely(t *testing.T) {
	vf := loadVectors(t)
	var calls int64
	environ := append(vf.vectorEnviron("GatewayEnforced"), "Router__Enabled=false")
	srv, _, logs := server(t, vf, environ, &calls)
	for label, pairs := range map[string][][2]string{
		"valid": vf.validHeaders(t, "hs256_bearer"), "absent": nil, "bad signature": vf.invalidHeaders(t, "bad_signature"),
	} {
		r := get(t, srv.URL+vf.Request.Path, pairs)
		if s := decodeSeen(t, r); r.status != 200 || s.Trusted || s.Ignored != "" {
			t.Errorf("%s: %d %+v", label, r.status, s)
		}
	}
	if strings.Contains(logs.String(), "code=") {
		t.Errorf("a disabled service logged envelope checks: %s", logs)
	}
}

func TestRequireIdentityServesOnlyTrustedCallers(t *testing.T) {
	vf := loadVectors(t)
	var calls int64
	logs := &logBuffer{}
	h, err := envelope.NewHandle(envelope.Options{Environ: fixedEnviron(vf.vectorEnviron("Hybrid")...), Logger: logs.logger(), Now: vf.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Middleware(envelope.RequireIdentity(echo(&calls))))
	defer srv.Close()
	if r := get(t, srv.URL+vf.Request.Path, vf.validHeaders(t, "eddsa_dpop")); r.status != 200 || !decodeSeen(t, r).Trusted {
		t.Fatalf("valid: %d %s", r.status, r.body)
	}
	r := get(t, srv.URL+vf.Request.Path, nil)
	if r.status != 401 || !strings.Contains(r.body, `"error":"envelope_required"`) || calls != 1 {
		t.Fatalf("absent: %d %s, calls %d", r.status, r.body, calls)
	}
	// Without the middleware it is a wiring mistake, not a client error.
	bare := httptest.NewRecorder()
	envelope.RequireIdentity(echo(&calls)).ServeHTTP(bare, httptest.NewRequest(http.MethodGet, "/", nil))
	if bare.Code != 500 || calls != 1 {
		t.Fatalf("without middleware: %d, calls %d", bare.Code, calls)
	}
}

// A request in flight keeps the configuration it started with, whatever
// reloads happen meanwhile; the next request gets the new one.
func TestARequestInFlightKeepsTheConfigItStartedWith(t *testing.T) {
	vf := loadVectors(t)
	file := filepath.Join(t.TempDir(), "envelope.env")
	replaceFile(t, file, "Router__AuthorizationTrustMode=ServiceEnforced\n")
	logs := &logBuffer{}
	h, err := envelope.NewHandle(envelope.Options{
		Environ: fixedEnviron("Router__IdentityEnvelopeSigningKey="+testSecret, "Router__IdentityEnvelopeAudience=orders",
			"Router__ConfigFile="+file),
		Logger: logs.logger(),
		Now:    vf.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		o, _ := envelope.OutcomeFrom(r.Context())
		io.WriteString(w, o.Config().Mode().String())
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) {
		o, _ := envelope.OutcomeFrom(r.Context())
		io.WriteString(w, o.Config().Mode().String())
	})
	srv := httptest.NewServer(h.Middleware(mux))
	defer srv.Close()

	slow := make(chan response, 1)
	go func() { slow <- getNoFatal(srv.URL + "/slow") }()
	select {
	case <-started:
	case <-time.After(triggerTimeout):
		t.Fatal("the slow request never reached its handler")
	}

	replaceFile(t, file, "Router__AuthorizationTrustMode=GatewayEnforced\n")
	if outcome, err := h.Reload(); err != nil || !outcome.Applied {
		t.Fatalf("%+v %v", outcome, err)
	}
	// A new request is decided with the new configuration...
	if r := get(t, srv.URL+"/fast", nil); r.status != 401 || !strings.Contains(r.body, "envelope_required") {
		t.Fatalf("fresh request: %d %s", r.status, r.body)
	}
	// ...while the one in flight finishes with the one it started with.
	close(release)
	select {
	case r := <-slow:
		if r.status != 200 || r.body != "ServiceEnforced" {
			t.Fatalf("in flight: %d %q", r.status, r.body)
		}
	case <-time.After(triggerTimeout):
		t.Fatal("the slow request never finished")
	}
}

func getNoFatal(url string) response {
	resp, err := http.Get(url)
	if err != nil {
		return response{body: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(body)}
}

func TestAnIdentityIsNeverInTheContextWithoutTheMiddleware(t *testing.T) {
	if id, ok := envelope.IdentityFrom(httptest.NewRequest(http.MethodGet, "/", nil).Context()); ok || id != nil {
		t.Fatal("identity without middleware")
	}
}
