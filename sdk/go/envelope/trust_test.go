package envelope_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// checks returns real outcomes of the vectors: a valid envelope, none, a bad
// signature, and a wrong audience.
func checks(t *testing.T) (valid, absent, badSig, wrongAud envelope.Check) {
	vf := loadVectors(t)
	v := vf.verifier(t)
	check := func(pairs [][2]string) envelope.Check {
		return envelope.CheckRequest(v, headerOf(pairs), vf.Request.Method, vf.Request.Path, vf.now())
	}
	valid = check(vf.validHeaders(t, "hs256_bearer"))
	absent = check(nil)
	badSig = check(vf.invalidHeaders(t, "bad_signature"))
	wrongAud = check(vf.invalidHeaders(t, "wrong_audience"))
	if valid.Identity == nil || !absent.Absent() || badSig.Err == nil || wrongAud.Err == nil {
		t.Fatalf("vector checks: %+v %+v %+v %+v", valid, absent, badSig, wrongAud)
	}
	return valid, absent, badSig, wrongAud
}

func TestTrustModeTableRowByRow(t *testing.T) {
	valid, absent, badSig, wrongAud := checks(t)
	type want struct {
		kind    envelope.ActionKind
		status  int
		problem string
		ignored envelope.Code
	}
	cases := []struct {
		mode  envelope.TrustMode
		label string
		check envelope.Check
		want  want
	}{
		{envelope.ServiceEnforced, "valid", valid, want{kind: envelope.ServiceAuth}},
		{envelope.ServiceEnforced, "absent", absent, want{kind: envelope.ServiceAuth}},
		{envelope.ServiceEnforced, "bad signature", badSig, want{kind: envelope.ServiceAuth, ignored: envelope.CodeBadSignature}},
		{envelope.ServiceEnforced, "wrong audience", wrongAud, want{kind: envelope.ServiceAuth, ignored: envelope.CodeAudienceMismatch}},
		{envelope.Hybrid, "valid", valid, want{kind: envelope.UseEnvelope}},
		{envelope.Hybrid, "absent", absent, want{kind: envelope.ServiceAuth}},
		{envelope.Hybrid, "bad signature", badSig, want{envelope.Reject, 401, "envelope_invalid", envelope.CodeBadSignature}},
		{envelope.Hybrid, "wrong audience", wrongAud, want{envelope.Reject, 401, "envelope_invalid", envelope.CodeAudienceMismatch}},
		{envelope.GatewayEnforced, "valid", valid, want{kind: envelope.UseEnvelope}},
		{envelope.GatewayEnforced, "absent", absent, want{envelope.Reject, 401, "envelope_required", ""}},
		{envelope.GatewayEnforced, "bad signature", badSig, want{envelope.Reject, 401, "envelope_invalid", envelope.CodeBadSignature}},
		{envelope.GatewayEnforced, "wrong audience", wrongAud, want{envelope.Reject, 403, "envelope_audience_mismatch", envelope.CodeAudienceMismatch}},
	}
	for _, c := range cases {
		label := c.mode.String() + " / " + c.label
		action := envelope.Decide(c.mode, c.check)
		if action.Kind != c.want.kind {
			t.Errorf("%s: kind %v, want %v", label, action.Kind, c.want.kind)
			continue
		}
		switch action.Kind {
		case envelope.UseEnvelope:
			if action.Identity != c.check.Identity {
				t.Errorf("%s: not the verified identity", label)
			}
		case envelope.ServiceAuth:
			if action.Identity != nil {
				t.Errorf("%s: an identity handed out for service auth", label)
			}
			var ignored envelope.Code
			if action.Ignored != nil {
				ignored = action.Ignored.Code
			}
			if ignored != c.want.ignored {
				t.Errorf("%s: ignored %q, want %q", label, ignored, c.want.ignored)
			}
		case envelope.Reject:
			r := action.Rejection
			var cause envelope.Code
			if r.Cause != nil {
				cause = r.Cause.Code
			}
			if r.Status != c.want.status || r.Code != c.want.problem || cause != c.want.ignored {
				t.Errorf("%s: %d %s %s, want %d %s %s", label, r.Status, r.Code, cause, c.want.status, c.want.problem, c.want.ignored)
			}
		}
	}
}

func TestAnInvalidTrustModeValueFailsClosedToServiceEnforced(t *testing.T) {
	valid, _, _, _ := checks(t)
	if action := envelope.Decide(envelope.TrustMode(7), valid); action.Kind != envelope.ServiceAuth || action.Identity != nil {
		t.Fatalf("got %+v", action)
	}
}

func TestEnvelopesArrivingWithoutAnyKeyAreUnknownKid(t *testing.T) {
	vf := loadVectors(t)
	check := envelope.CheckRequest(nil, headerOf(vf.validHeaders(t, "hs256_bearer")), "GET", "/orders/42", vf.now())
	if check.Err == nil || check.Err.Code != envelope.CodeUnknownKid {
		t.Fatalf("got %+v", check)
	}
	// Header problems still come first.
	check = envelope.CheckRequest(nil, headerOf(vf.invalidHeaders(t, "duplicate_alg_header")), "GET", "/orders/42", vf.now())
	if check.Err == nil || check.Err.Code != envelope.CodeDuplicateHeader {
		t.Fatalf("got %+v", check)
	}
}

func TestTrustModesParseCaseInsensitively(t *testing.T) {
	for text, want := range map[string]envelope.TrustMode{
		"ServiceEnforced":   envelope.ServiceEnforced,
		"serviceenforced":   envelope.ServiceEnforced,
		"HYBRID":            envelope.Hybrid,
		"gateway_enforced":  envelope.GatewayEnforced,
		"Gateway-Enforced":  envelope.GatewayEnforced,
		" GatewayEnforced ": envelope.GatewayEnforced,
	} {
		if got, err := envelope.ParseTrustMode(text); err != nil || got != want {
			t.Errorf("%q: %v %v", text, got, err)
		}
	}
	for _, bad := range []string{"Gateway", "", "Permissive"} {
		if _, err := envelope.ParseTrustMode(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestProblemBodiesAreTheRustMiddlewaresByteForByte(t *testing.T) {
	_, absent, badSig, wrongAud := checks(t)
	cases := []struct {
		mode  envelope.TrustMode
		check envelope.Check
		body  string
	}{
		{envelope.GatewayEnforced, absent,
			`{"envelope_error":null,"error":"envelope_required","status":401,"title":"Unauthorized","type":"about:blank"}`},
		{envelope.Hybrid, badSig,
			`{"envelope_error":"bad_signature","error":"envelope_invalid","status":401,"title":"Unauthorized","type":"about:blank"}`},
		{envelope.GatewayEnforced, wrongAud,
			`{"envelope_error":"audience_mismatch","error":"envelope_audience_mismatch","status":403,"title":"Forbidden","type":"about:blank"}`},
	}
	for _, c := range cases {
		r := envelope.Decide(c.mode, c.check).Rejection
		recorder := httptest.NewRecorder()
		r.WriteProblem(recorder)
		if recorder.Code != r.Status || recorder.Body.String() != c.body {
			t.Errorf("%d %s, want %s", recorder.Code, recorder.Body, c.body)
		}
		if ct := recorder.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("content type %q", ct)
		}
		if cc := recorder.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("cache control %q", cc)
		}
	}
	if http.StatusText(401) != "Unauthorized" {
		t.Fatal("title source changed")
	}
}

func TestADisabledConfigIgnoresEnvelopesEntirely(t *testing.T) {
	vf := loadVectors(t)
	for _, enabled := range []string{"true", "false"} {
		config, err := envelope.ConfigFromEnv(append(vf.vectorEnviron("GatewayEnforced"), "Router__Enabled="+enabled))
		if err != nil {
			t.Fatal(err)
		}
		for label, pairs := range map[string][][2]string{
			"valid":         vf.validHeaders(t, "hs256_bearer"),
			"absent":        nil,
			"bad signature": vf.invalidHeaders(t, "bad_signature"),
		} {
			action := config.Decide(headerOf(pairs), vf.Request.Method, vf.Request.Path, vf.now())
			ignoredEntirely := action.Kind == envelope.ServiceAuth && action.Ignored == nil && action.Identity == nil
			if ignoredEntirely != (enabled == "false") {
				t.Errorf("Router__Enabled=%s, %s: %+v", enabled, label, action)
			}
		}
	}
}
