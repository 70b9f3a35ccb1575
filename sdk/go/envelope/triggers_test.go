package envelope_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// Every wait below is for an observable outcome, bounded by this.
const triggerTimeout = 10 * time.Second

// fastTriggers polls often so the tests finish quickly; the defaults are
// exercised by TestAFileRenamedIntoPlaceIsReloadedWithTheDefaults.
var fastTriggers = envelope.TriggerOptions{PollInterval: 10 * time.Millisecond, Debounce: 50 * time.Millisecond}

func startTriggers(t *testing.T, h *envelope.Handle, opts envelope.TriggerOptions) *envelope.Triggers {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	triggers := h.StartTriggers(ctx, opts)
	t.Cleanup(func() {
		cancel()
		<-triggers.Done()
	})
	return triggers
}

func generation(h *envelope.Handle) func() bool {
	start := h.Status().Generation
	return func() bool { return h.Status().Generation > start }
}

func TestAFileRewrittenInPlaceIsReloaded(t *testing.T) {
	h, file, logs := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	triggers := startTriggers(t, h, fastTriggers)
	if triggers.WatchedFile() != file {
		t.Fatalf("watching %q", triggers.WatchedFile())
	}
	changed := generation(h)
	writeFile(t, file, fileText("Hybrid", map[string]byte{"a": 1}))
	waitFor(t, triggerTimeout, "the rewritten file to be applied", changed)
	if h.Current().Mode() != envelope.Hybrid {
		t.Fatalf("mode %v", h.Current().Mode())
	}
	if !strings.Contains(logs.String(), "reloading configuration (trigger=file change)") {
		t.Fatalf("logs: %s", logs)
	}
}

func TestAFileRenamedIntoPlaceIsReloadedWithTheDefaults(t *testing.T) {
	h, file, _ := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	startTriggers(t, h, envelope.TriggerOptions{})
	changed := generation(h)
	// Same length, same mode: only the key material, and so the inode, differs.
	replaceFile(t, file, fileText("GatewayEnforced", map[string]byte{"a": 2}))
	waitFor(t, triggerTimeout, "the renamed file to be applied", changed)
	if got := h.Status(); got.Generation != 2 || got.LastApplied.IsZero() {
		t.Fatalf("status %+v", got)
	}
}

func TestASwappedKubernetesDataLinkIsReloaded(t *testing.T) {
	// A Kubernetes volume publishes files as name -> ..data/name, and
	// replaces ..data, a link to a timestamped directory, by rename.
	dir := t.TempDir()
	publish := func(version, text string) {
		t.Helper()
		target := filepath.Join(dir, version)
		if err := os.Mkdir(target, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(target, "envelope.env"), text)
		link := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(version, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("..v1", fileText("GatewayEnforced", map[string]byte{"a": 1}))
	file := filepath.Join(dir, "envelope.env")
	if err := os.Symlink(filepath.Join("..data", "envelope.env"), file); err != nil {
		t.Fatal(err)
	}
	h, err := envelope.NewHandle(envelope.Options{
		Environ: fixedEnviron("Router__IdentityEnvelopeAudience=orders", "Router__ConfigFile="+file),
		Logger:  (&logBuffer{}).logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	startTriggers(t, h, fastTriggers)
	changed := generation(h)
	publish("..v2", fileText("GatewayEnforced", map[string]byte{"a": 1, "b": 2}))
	waitFor(t, triggerTimeout, "the new volume contents to be applied", changed)
	if got := h.Current().AcceptedKids(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("kids %v", got)
	}
}

func TestABurstOfChangesIsOneReloadOfTheLastVersion(t *testing.T) {
	h, file, _ := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	// A long debounce, so the writes below land well inside one quiet period.
	startTriggers(t, h, envelope.TriggerOptions{PollInterval: 10 * time.Millisecond, Debounce: 500 * time.Millisecond})
	replaceFile(t, file, fileText("Hybrid", map[string]byte{"a": 1}))
	replaceFile(t, file, fileText("GatewayEnforced", map[string]byte{"a": 1, "b": 2}))
	replaceFile(t, file, fileText("Hybrid", map[string]byte{"a": 1, "b": 2, "c": 3}))
	waitFor(t, triggerTimeout, "the last version to be applied", func() bool {
		return len(h.Current().AcceptedKids()) == 3
	})
	if got := h.Status(); got.Generation != 2 || got.Config.Mode() != envelope.Hybrid {
		t.Fatalf("the burst was %d reloads, not one (mode %v)", got.Generation-1, got.Config.Mode())
	}
}

func TestABadFileFromTheWatchKeepsTheOldConfiguration(t *testing.T) {
	h, file, logs := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	before := h.Current()
	startTriggers(t, h, fastTriggers)
	replaceFile(t, file, "Router__AuthorizationTrustMode=GatewayEnforced\nRouter__IdentityEnvelopeAcceptedKeys=\n")
	waitFor(t, triggerTimeout, "the bad file to be refused", func() bool { return !h.Status().LastRejected.IsZero() })
	status := h.Status()
	if h.Current() != before || status.Generation != 1 || len(status.LastErrors) != 1 ||
		status.LastErrors[0].Variable != envelope.EnvSigningKey {
		t.Fatalf("status %+v", status)
	}
	if !strings.Contains(logs.String(), "Router__IdentityEnvelopeSigningKey: GatewayEnforced needs") {
		t.Fatalf("logs: %s", logs)
	}
	// Fixing the file applies it; it is the same as before, so unchanged.
	replaceFile(t, file, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	waitFor(t, triggerTimeout, "the fixed file to be read", func() bool { return h.Status().LastErrors == nil })
	if h.Current() != before {
		t.Fatal("an unchanged reload swapped the configuration")
	}
}

func TestTriggersStopWithTheirContext(t *testing.T) {
	h, _, _ := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	ctx, cancel := context.WithCancel(context.Background())
	triggers := h.StartTriggers(ctx, fastTriggers)
	cancel()
	select {
	case <-triggers.Done():
	case <-time.After(triggerTimeout):
		t.Fatal("the triggers did not stop")
	}
}

func TestNothingIsWatchedWithoutAConfigFile(t *testing.T) {
	h, err := envelope.NewHandle(envelope.Options{Environ: fixedEnviron(), Logger: (&logBuffer{}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	triggers := h.StartTriggers(ctx, envelope.TriggerOptions{})
	if triggers.WatchedFile() != "" {
		t.Fatalf("watching %q", triggers.WatchedFile())
	}
	// With nothing to run, the triggers are done at once.
	select {
	case <-triggers.Done():
	case <-time.After(triggerTimeout):
		t.Fatal("idle triggers never finished")
	}
}
