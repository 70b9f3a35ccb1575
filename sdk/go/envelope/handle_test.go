package envelope_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// fileText is a Router__ConfigFile with a trust mode and HS256 keys made
// of the given fills.
func fileText(mode string, keys map[string]byte) string {
	var list []string
	for kid, fill := range keys {
		list = append(list, kid+"="+hsSpec(fill))
	}
	return "Router__AuthorizationTrustMode=" + mode + "\nRouter__IdentityEnvelopeAcceptedKeys=" + strings.Join(list, ";") + "\n"
}

// handleOver loads a handle over dir/envelope.env, first written with text.
func handleOver(t *testing.T, text string) (*envelope.Handle, string, *logBuffer) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "envelope.env")
	replaceFile(t, file, text)
	logs := &logBuffer{}
	h, err := envelope.NewHandle(envelope.Options{
		Environ: fixedEnviron("Router__IdentityEnvelopeAudience=orders", "Router__ConfigFile="+file),
		Logger:  logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, file, logs
}

func TestReloadAppliesAChangedFileAndCountsGenerations(t *testing.T) {
	h, file, _ := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	first := h.Current()
	status := h.Status()
	if first.Mode() != envelope.GatewayEnforced || status.Generation != 1 || !status.LastApplied.IsZero() || status.LastErrors != nil {
		t.Fatalf("at start: %+v", status)
	}
	if h.ConfigFile() != file {
		t.Fatalf("config file %q", h.ConfigFile())
	}

	replaceFile(t, file, fileText("Hybrid", map[string]byte{"a": 1, "b": 2}))
	outcome, err := h.Reload()
	if err != nil || outcome != (envelope.ReloadOutcome{Applied: true, Generation: 2}) {
		t.Fatalf("%+v %v", outcome, err)
	}
	now := h.Current()
	if now.Mode() != envelope.Hybrid || !reflect.DeepEqual(now.AcceptedKids(), []string{"a", "b"}) {
		t.Fatalf("mode %v kids %v", now.Mode(), now.AcceptedKids())
	}
	if status := h.Status(); status.Generation != 2 || status.LastApplied.IsZero() || status.Config != now {
		t.Fatalf("after reload: %+v", status)
	}
	// A configuration taken before the reload is untouched by it.
	if first.Mode() != envelope.GatewayEnforced || !reflect.DeepEqual(first.AcceptedKids(), []string{"a"}) {
		t.Fatalf("old snapshot changed: %v %v", first.Mode(), first.AcceptedKids())
	}
}

func TestReloadOfTheSameSettingsIsUnchanged(t *testing.T) {
	h, file, _ := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1, "b": 2}))
	before := h.Current()
	// The same settings written differently: spelling, order, quotes, comments.
	same := "# rewritten\nrouter_identity_envelope_accepted_keys=\"b=" + hsSpec(2) + ";a=" + hsSpec(1) +
		"\"\nROUTER__AUTHORIZATIONTRUSTMODE=gateway_enforced\n"
	replaceFile(t, file, same)
	outcome, err := h.Reload()
	if err != nil || outcome != (envelope.ReloadOutcome{Applied: false, Generation: 1}) {
		t.Fatalf("%+v %v", outcome, err)
	}
	if h.Current() != before || !h.Status().LastApplied.IsZero() {
		t.Fatal("an unchanged reload swapped the configuration")
	}
	// The same kid with other material is a change.
	replaceFile(t, file, fileText("GatewayEnforced", map[string]byte{"a": 1, "b": 3}))
	if outcome, err := h.Reload(); err != nil || outcome != (envelope.ReloadOutcome{Applied: true, Generation: 2}) {
		t.Fatalf("%+v %v", outcome, err)
	}
}

func TestABadReloadKeepsTheOldConfigAndNamesTheVariables(t *testing.T) {
	good := fileText("GatewayEnforced", map[string]byte{"a": 1})
	h, file, _ := handleOver(t, good)
	before := h.Current()
	replaceFile(t, file, "Router__AuthorizationTrustMode=Permissive\nRouter__IdentityEnvelopeAcceptedKeys=a=hs256:c2hvcnQtc2VjcmV0\n")
	outcome, err := h.Reload()
	problems := problemsOf(t, err)
	if outcome != (envelope.ReloadOutcome{}) {
		t.Fatalf("outcome %+v", outcome)
	}
	if got := variablesOf(problems); !reflect.DeepEqual(got, []string{envelope.EnvTrustMode, envelope.EnvAcceptedKeys}) {
		t.Fatalf("variables %v", got)
	}
	if h.Current() != before {
		t.Fatal("a refused reload changed the configuration")
	}
	status := h.Status()
	if status.Generation != 1 || status.LastRejected.IsZero() || !reflect.DeepEqual(status.LastErrors, problems) {
		t.Fatalf("status %+v", status)
	}
	for _, value := range []string{"Permissive", "c2hvcnQtc2VjcmV0"} {
		if strings.Contains(err.Error(), value) {
			t.Errorf("%s shown in %v", value, err)
		}
	}

	// A file that disappears is refused the same way.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	_, err = h.Reload()
	if problems := problemsOf(t, err); problems[0].Variable != envelope.EnvConfigFile || h.Current() != before {
		t.Fatalf("missing file: %v", problems)
	}

	// The next good reload clears the errors.
	replaceFile(t, file, good)
	if outcome, err := h.Reload(); err != nil || outcome.Applied || outcome.Generation != 1 {
		t.Fatalf("%+v %v", outcome, err)
	}
	if h.Status().LastErrors != nil {
		t.Fatal("errors kept after a good reload")
	}
}

func TestReloadsAreLoggedWithGenerationModeAndKidsNeverValues(t *testing.T) {
	h, file, logs := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	if got := logs.String(); !strings.Contains(got, "envelope: configuration loaded: generation=1 enabled=true mode=GatewayEnforced accepted_kids=a") {
		t.Fatalf("start: %s", got)
	}
	replaceFile(t, file, "Router__AuthorizationTrustMode=Permissive\n")
	if _, err := h.Reload(); err == nil {
		t.Fatal("bad file applied")
	}
	refused := logs.String()
	if !strings.Contains(refused, "reload refused, keeping generation=1 mode=GatewayEnforced: Router__AuthorizationTrustMode: trust mode must be") ||
		strings.Contains(refused, "Permissive") {
		t.Fatalf("refused: %s", refused)
	}

	replaceFile(t, file, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	if _, err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := logs.String(); !strings.Contains(got, "configuration reloaded: unchanged generation=1 enabled=true mode=GatewayEnforced accepted_kids=a") {
		t.Fatalf("unchanged: %s", got)
	}

	replaceFile(t, file, fileText("Hybrid", map[string]byte{"a": 1, "b": 2}))
	if _, err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	all := logs.String()
	if !strings.Contains(all, "configuration reloaded: applied generation=2 enabled=true mode=Hybrid accepted_kids=a,b") {
		t.Fatalf("applied: %s", all)
	}
	for _, fill := range []byte{1, 2} {
		if material := strings.TrimPrefix(hsSpec(fill), "hs256:"); strings.Contains(all, material) {
			t.Fatalf("key material logged: %s", all)
		}
	}
}

func TestAHandleDoesNotStartOnABadConfiguration(t *testing.T) {
	_, err := envelope.NewHandle(envelope.Options{
		Environ: fixedEnviron("Router__AuthorizationTrustMode=GatewayEnforced"),
		Logger:  (&logBuffer{}).logger(),
	})
	if problems := problemsOf(t, err); problems[0].Variable != envelope.EnvSigningKey {
		t.Fatalf("%v", problems)
	}
}
