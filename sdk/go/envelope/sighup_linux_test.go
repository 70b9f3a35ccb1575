package envelope_test

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stellaops/stella-gateway/sdk/go/envelope"
)

// Not parallel: the signal goes to the whole test process.
func TestSIGHUPReloadsTheFile(t *testing.T) {
	h, file, logs := handleOver(t, fileText("GatewayEnforced", map[string]byte{"a": 1}))
	// The file is not watched, so only the signal can reload it.
	triggers := startTriggers(t, h, envelope.TriggerOptions{SIGHUP: true, DisableFileWatch: true})
	if triggers.WatchedFile() != "" {
		t.Fatalf("watching %q", triggers.WatchedFile())
	}
	changed := generation(h)
	replaceFile(t, file, fileText("Hybrid", map[string]byte{"a": 1}))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, triggerTimeout, "SIGHUP to apply the file", changed)
	if h.Current().Mode() != envelope.Hybrid || !strings.Contains(logs.String(), "trigger=SIGHUP") {
		t.Fatalf("mode %v logs %s", h.Current().Mode(), logs)
	}
}

const sighupChild = "STELLA_ENVELOPE_SIGHUP_CHILD"

// SIGHUP's default action ends a process. Once a service has asked for
// SIGHUP reloads, that must never happen again, even after its triggers
// stop; so a child process stops its triggers, signals itself, and must
// live to say so.
func TestSIGHUPAfterTheTriggersStopDoesNotEndTheProcess(t *testing.T) {
	if os.Getenv(sighupChild) == "1" {
		h, err := envelope.NewHandle(envelope.Options{Environ: fixedEnviron(), Logger: (&logBuffer{}).logger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		triggers := h.StartTriggers(ctx, envelope.TriggerOptions{SIGHUP: true})
		cancel()
		<-triggers.Done()
		// A signal a thread sends itself is handled before tgkill returns,
		// so a fatal one ends the process here.
		runtime.LockOSThread()
		if err := syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("survived SIGHUP\n")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGHUPAfterTheTriggersStopDoesNotEndTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), sighupChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "survived SIGHUP") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
