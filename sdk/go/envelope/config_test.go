package envelope_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

func problemsOf(t *testing.T, err error) envelope.ConfigErrors {
	t.Helper()
	var problems envelope.ConfigErrors
	if !errors.As(err, &problems) {
		t.Fatalf("got %v, want ConfigErrors", err)
	}
	return problems
}

func variablesOf(problems envelope.ConfigErrors) []string {
	names := make([]string, len(problems))
	for i, p := range problems {
		names[i] = p.Variable
	}
	return names
}

func TestLegacyVariablesConfigureAGatewayEnforcedService(t *testing.T) {
	config, err := envelope.ConfigFromEnv([]string{
		"Router__Enabled=true",
		"Router__AuthorizationTrustMode=GatewayEnforced",
		"Router__IdentityEnvelopeSigningKey=" + testSecret,
		"Router__IdentityEnvelopeClockSkewSeconds=5",
		"Router__IdentityEnvelopeAudience=orders",
		"PATH=/usr/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !config.Enabled() || config.Mode() != envelope.GatewayEnforced {
		t.Fatalf("enabled %v mode %v", config.Enabled(), config.Mode())
	}
	settings := config.Verifier().Settings()
	want := envelope.VerifierSettings{Audience: "orders", ClockSkewSeconds: 5, MaxLifetimeSeconds: 300}
	if settings != want {
		t.Fatalf("settings %+v", settings)
	}
	key, ok := config.Verifier().Keyring().Key("default")
	if !ok || key.Alg() != envelope.HS256 {
		t.Fatalf("default key %v %v", key, ok)
	}
}

func TestVariableNamesMatchCaseInsensitivelyIgnoringUnderscores(t *testing.T) {
	config, err := envelope.ConfigFromEnv([]string{
		"ROUTER__AUTHORIZATIONTRUSTMODE=hybrid",
		"router_identity_envelope_signing_key=" + testSecret,
		"ROUTER__IDENTITYENVELOPEAUDIENCE=orders",
		"routerIdentityEnvelopeIssuer=gw-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if config.Mode() != envelope.Hybrid || config.Verifier().Settings().Issuer != "gw-1" {
		t.Fatalf("mode %v settings %+v", config.Mode(), config.Verifier().Settings())
	}
}

func TestDefaultsAreEnabledServiceEnforcedWithoutKeys(t *testing.T) {
	config, err := envelope.ConfigFromEnv(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !config.Enabled() || config.Mode() != envelope.ServiceEnforced || config.Verifier() != nil || config.AcceptedKids() != nil {
		t.Fatalf("%+v", config)
	}
}

func TestDisabledServicesNeedNoKeys(t *testing.T) {
	config, err := envelope.ConfigFromEnv([]string{"Router__Enabled=false", "Router__AuthorizationTrustMode=GatewayEnforced"})
	if err != nil || config.Enabled() {
		t.Fatalf("%v %v", config, err)
	}
}

func TestAcceptedKeysExtendTheKeyringForRotation(t *testing.T) {
	config, err := envelope.ConfigFromEnv([]string{
		"Router__AuthorizationTrustMode=GatewayEnforced",
		"Router__IdentityEnvelopeSigningKey=" + testSecret,
		"Router__IdentityEnvelopeSigningKeyId=hs-1",
		"Router__IdentityEnvelopeAcceptedKeys=ed-2=ed25519-public:IVL40Zt5HSRFMkLhXy6rbLfP-ntqXtMAl5YOBpiB2xI",
		"Router__IdentityEnvelopeAudience=orders",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := config.AcceptedKids(); !reflect.DeepEqual(got, []string{"ed-2", "hs-1"}) {
		t.Fatalf("kids %v", got)
	}
}

func TestEveryProblemIsReportedAtOnceByVariableAndNeverWithValues(t *testing.T) {
	_, err := envelope.ConfigFromEnv([]string{
		"Router__Enabled=maybe",
		"Router__AuthorizationTrustMode=Trusting",
		"Router__IdentityEnvelopeSigningKey=short-secret-value",
		"Router__IdentityEnvelopeClockSkewSeconds=-3",
		"Router__IdentityEnvelopeMaxLifetimeSeconds=0",
		"Router__IdentityEnvelopeAcceptedKeys=nonsense-key-list",
	})
	problems := problemsOf(t, err)
	want := []string{envelope.EnvEnabled, envelope.EnvTrustMode, envelope.EnvClockSkew, envelope.EnvMaxLifetime,
		envelope.EnvAcceptedKeys, envelope.EnvSigningKey}
	if got := variablesOf(problems); !reflect.DeepEqual(got, want) {
		t.Fatalf("variables %v, want %v", got, want)
	}
	text := err.Error()
	for _, value := range []string{"maybe", "Trusting", "short-secret-value", "-3", "nonsense"} {
		if strings.Contains(text, value) {
			t.Errorf("%q shown in:\n%s", value, text)
		}
	}
	if !strings.Contains(text, "Router__IdentityEnvelopeSigningKey: hs256 secret is 18 bytes") {
		t.Errorf("no secret length in:\n%s", text)
	}
}

func TestEnforcingModesRequireAKeyAndAnAudience(t *testing.T) {
	_, err := envelope.ConfigFromEnv([]string{"Router__AuthorizationTrustMode=Hybrid"})
	if got := problemsOf(t, err); got[0].Variable != envelope.EnvSigningKey ||
		got[0].Problem != "Hybrid needs Router__IdentityEnvelopeSigningKey, Router__IdentityEnvelopeAcceptedKeys or Router__IdentityEnvelopeJwksUrl" {
		t.Fatalf("%v", got)
	}
	_, err = envelope.ConfigFromEnv([]string{"Router__AuthorizationTrustMode=Hybrid", "Router__IdentityEnvelopeSigningKey=" + testSecret})
	if got := problemsOf(t, err); got[0].Variable != envelope.EnvAudience {
		t.Fatalf("%v", got)
	}
}

func TestASigningKeyIdAlsoInTheAcceptedKeysIsRefused(t *testing.T) {
	_, err := envelope.ConfigFromEnv([]string{
		"Router__IdentityEnvelopeSigningKey=" + testSecret,
		"Router__IdentityEnvelopeAcceptedKeys=default=" + hsSpec(1),
		"Router__IdentityEnvelopeAudience=orders",
	})
	got := problemsOf(t, err)
	if len(got) != 1 || got[0].Error() != "Router__IdentityEnvelopeSigningKeyId: key id default appears more than once (also in Router__IdentityEnvelopeAcceptedKeys)" {
		t.Fatalf("%v", got)
	}
}

func TestConfigFromEnvRefusesAConfigFileItWouldNotRead(t *testing.T) {
	_, err := envelope.ConfigFromEnv([]string{"Router__ConfigFile=/etc/envelope.env"})
	got := problemsOf(t, err)
	if len(got) != 1 || got[0].Variable != envelope.EnvConfigFile || !strings.Contains(got[0].Problem, "LoadConfig") {
		t.Fatalf("%v", got)
	}
	if _, err := envelope.ConfigFromEnv([]string{"Router__ConfigFile= "}); err != nil {
		t.Fatalf("a blank value names no file: %v", err)
	}
}

func TestConfigFileLinesFollowTheEnvFileFormat(t *testing.T) {
	text := "\ufeff# envelope settings\r\n" +
		"\r\n" +
		"Router__AuthorizationTrustMode=Hybrid\r\n" +
		"export ROUTER__IDENTITYENVELOPEAUDIENCE = \"orders\"\n" +
		"  router_identity_envelope_issuer='gw-1'\n" +
		"Router__IdentityEnvelopeAcceptedKeys=a=hs256:AAAA;b=hs256:BBBB\n" +
		"\t# indented comment\n" +
		"Router__IdentityEnvelopeSigningKey=\n" +
		"Router__IdentityEnvelopeSigningKeyId=\"\"\n" +
		"Router__IdentityEnvelopeMaxLifetimeSeconds=60 # a comment after a value is part of it\n"
	entries, err := envelope.ParseConfigFile(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []envelope.FileEntry{
		{Name: envelope.EnvTrustMode, Value: "Hybrid", Line: 3},
		{Name: envelope.EnvAudience, Value: "orders", Line: 4},
		{Name: envelope.EnvIssuer, Value: "gw-1", Line: 5},
		{Name: envelope.EnvAcceptedKeys, Value: "a=hs256:AAAA;b=hs256:BBBB", Line: 6},
		{Name: envelope.EnvSigningKey, Value: "", Line: 8},
		{Name: envelope.EnvSigningKeyID, Value: "", Line: 9},
		{Name: envelope.EnvMaxLifetime, Value: "60 # a comment after a value is part of it", Line: 10},
	}
	if !reflect.DeepEqual(entries, want) {
		t.Fatalf("got  %#v\nwant %#v", entries, want)
	}
	for _, empty := range []string{"", "# only a comment\n\n"} {
		if entries, err := envelope.ParseConfigFile(empty); err != nil || len(entries) != 0 {
			t.Errorf("%q: %v %v", empty, entries, err)
		}
	}
}

func TestBadConfigFileLinesAreAllReportedByLineWithoutValues(t *testing.T) {
	text := "Router__AuthorizationTrustMode=Hybrid\n" +
		"hs256:c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw\n" +
		"Router__AuthorisationTrustMode=GatewayEnforced\n" +
		"s3cr3t-pasted-alone=\n" +
		"Router__ConfigFile=/etc/other.env\n" +
		"ROUTER__AUTHORIZATIONTRUSTMODE=GatewayEnforced\n" +
		"Router__IdentityEnvelopeSigningKey=\"unterminated-secret-value\n" +
		"=no-name-secret\n" +
		"Router__IdentityEnvelopeIssuer=closing-only-secret'\n"
	_, err := envelope.ParseConfigFile(text)
	problems := problemsOf(t, err)
	shown := make([]string, len(problems))
	for i, p := range problems {
		shown[i] = p.Error()
	}
	want := []string{
		"Router__ConfigFile: line 2: expected Name=value",
		"Router__ConfigFile: line 3: Router__AuthorisationTrustMode is not a service envelope variable (SPEC.md section 7)",
		"Router__ConfigFile: line 4: the name is not a service envelope variable (SPEC.md section 7)",
		"Router__ConfigFile: line 5: Router__ConfigFile cannot be set in the file it names",
		"Router__ConfigFile: line 6: Router__AuthorizationTrustMode is already set on line 1",
		"Router__ConfigFile: line 7: the value of Router__IdentityEnvelopeSigningKey has an unmatched quote",
		"Router__ConfigFile: line 8: the name is not a service envelope variable (SPEC.md section 7)",
		"Router__ConfigFile: line 9: the value of Router__IdentityEnvelopeIssuer has an unmatched quote",
	}
	if !reflect.DeepEqual(shown, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(shown, "\n"), strings.Join(want, "\n"))
	}
	all := err.Error()
	for _, secret := range []string{"c2VjcmV0", "s3cr3t", "unterminated-secret", "no-name-secret", "closing-only"} {
		if strings.Contains(all, secret) {
			t.Errorf("%s shown in:\n%s", secret, all)
		}
	}
}

func TestFileEntriesNeverPrintTheirValues(t *testing.T) {
	entry := envelope.FileEntry{Name: envelope.EnvSigningKey, Value: testSecret, Line: 3}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if shown := fmt.Sprintf(verb, entry); strings.Contains(shown, testSecret) {
			t.Errorf("%s shows the value: %s", verb, shown)
		}
	}
}

func TestFileSettingsOverrideEverySpellingInTheEnvironment(t *testing.T) {
	base := []string{
		"ROUTER__AUTHORIZATIONTRUSTMODE=GatewayEnforced",
		"Router__IdentityEnvelopeSigningKey=" + testSecret,
		"Router__IdentityEnvelopeAudience=orders",
		"Router__ConfigFile=/run/envelope.env",
	}
	config, err := envelope.ConfigFromEnvAndFile(base, "Router__AuthorizationTrustMode=Hybrid\n")
	if err != nil {
		t.Fatal(err)
	}
	if config.Mode() != envelope.Hybrid || config.Verifier().Settings().Audience != "orders" ||
		!reflect.DeepEqual(config.AcceptedKids(), []string{"default"}) {
		t.Fatalf("mode %v kids %v", config.Mode(), config.AcceptedKids())
	}
}

func TestAnEmptyValueInTheFileRemovesAKeyTheEnvironmentSets(t *testing.T) {
	base := []string{
		"Router__AuthorizationTrustMode=GatewayEnforced",
		"Router__IdentityEnvelopeSigningKey=" + testSecret,
		"Router__IdentityEnvelopeSigningKeyId=old",
		"Router__IdentityEnvelopeAudience=orders",
	}
	both := "Router__IdentityEnvelopeAcceptedKeys=new=" + hsSpec(9) + "\n"
	config, err := envelope.ConfigFromEnvAndFile(base, both)
	if err != nil || !reflect.DeepEqual(config.AcceptedKids(), []string{"new", "old"}) {
		t.Fatalf("%v %v", config, err)
	}
	config, err = envelope.ConfigFromEnvAndFile(base, both+"router_identity_envelope_signing_key=\n")
	if err != nil || !reflect.DeepEqual(config.AcceptedKids(), []string{"new"}) {
		t.Fatalf("%v %v", config, err)
	}
}

func TestProblemsOfSettingsFromTheFileNameTheVariableAndTheLine(t *testing.T) {
	_, err := envelope.ConfigFromEnvAndFile([]string{"Router__IdentityEnvelopeAudience=orders"},
		"# wave 2\nRouter__AuthorizationTrustMode=Permissive\nbroken line\n")
	problems := problemsOf(t, err)
	want := envelope.ConfigErrors{
		{Variable: envelope.EnvConfigFile, Problem: "line 3: expected Name=value"},
		{Variable: envelope.EnvTrustMode, Problem: "trust mode must be ServiceEnforced, Hybrid or GatewayEnforced (set in Router__ConfigFile line 2)"},
	}
	if !reflect.DeepEqual(problems, want) {
		t.Fatalf("got %v", problems)
	}
	if strings.Contains(err.Error(), "Permissive") {
		t.Fatalf("value shown: %v", err)
	}
}

func TestAnUnreadableConfigFileIsAnErrorNamingTheVariableAndThePath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.env")
	_, err := envelope.LoadConfig([]string{"router_config_file=" + missing})
	problems := problemsOf(t, err)
	if len(problems) != 1 || problems[0].Variable != envelope.EnvConfigFile ||
		problems[0].Problem != "cannot read "+missing+": not found" {
		t.Fatalf("%v", problems)
	}
}

func TestLoadConfigFollowsTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "envelope.env")
	writeFile(t, file, "Router__AuthorizationTrustMode=GatewayEnforced\nRouter__IdentityEnvelopeAcceptedKeys=k="+hsSpec(3)+"\n")
	config, err := envelope.LoadConfig([]string{"Router__IdentityEnvelopeAudience=orders", "Router__ConfigFile=" + file})
	if err != nil {
		t.Fatal(err)
	}
	if config.Mode() != envelope.GatewayEnforced || !reflect.DeepEqual(config.AcceptedKids(), []string{"k"}) {
		t.Fatalf("mode %v kids %v", config.Mode(), config.AcceptedKids())
	}
}

func TestTheProcessEnvironmentIsReadByDefault(t *testing.T) {
	// t.Setenv restores the environment and forbids t.Parallel here.
	for _, v := range os.Environ() {
		if strings.HasPrefix(strings.ToLower(v), "router") {
			t.Skipf("the environment already sets %s", strings.SplitN(v, "=", 2)[0])
		}
	}
	t.Setenv("ROUTER__AUTHORIZATIONTRUSTMODE", "Hybrid")
	t.Setenv("Router__IdentityEnvelopeSigningKey", testSecret)
	t.Setenv("Router__IdentityEnvelopeAudience", "orders")
	var logs logBuffer
	h, err := envelope.NewHandle(envelope.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if h.Current().Mode() != envelope.Hybrid {
		t.Fatalf("mode %v", h.Current().Mode())
	}
	if got := logs.String(); !strings.Contains(got, "generation=1 enabled=true mode=Hybrid accepted_kids=default") || strings.Contains(got, testSecret) {
		t.Fatalf("start log: %s", got)
	}
}
