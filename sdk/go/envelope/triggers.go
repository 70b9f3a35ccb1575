package envelope

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultPollInterval is how often the file's directory entry is
	// examined.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultDebounce is how long the file must stay unchanged before a
	// change is reloaded (SPEC.md 7.1).
	DefaultDebounce = 200 * time.Millisecond
)

// TriggerOptions chooses what reloads a [Handle]. The zero value watches
// the file and leaves SIGHUP alone.
type TriggerOptions struct {
	// SIGHUP reloads on SIGHUP. Installing the handler changes what SIGHUP
	// does to the whole process, so it is only done when asked. From then
	// on SIGHUP never ends the process, even once the triggers stop.
	SIGHUP bool
	// DisableFileWatch turns off reloading when the file Router__ConfigFile
	// named at load changes.
	DisableFileWatch bool
	// PollInterval is how often the file is examined; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Debounce is how long the file must stay unchanged before a change is
	// reloaded; 0 means DefaultDebounce.
	Debounce time.Duration
}

// Triggers are the running reload triggers of a handle.
type Triggers struct {
	done    chan struct{}
	watched string
}

// Done is closed once the triggers have stopped after ctx was cancelled.
func (t *Triggers) Done() <-chan struct{} { return t.done }

// WatchedFile is the file whose changes reload the configuration, or "".
func (t *Triggers) WatchedFile() string { return t.watched }

// StartTriggers reloads h on SIGHUP (when asked) and when the file
// Router__ConfigFile named at load changes, until ctx is done. When it
// returns, the SIGHUP handler is installed and the file's first state is
// recorded, so a signal or change that follows is never missed.
//
// The file is polled, not watched with inotify, to stay within the
// standard library: every PollInterval its directory entry is examined by
// name (size, mtime and, on Linux, device, inode and change time), so a
// file replaced by rename (editors, kubectl, Kubernetes volumes, mv) counts
// as much as one rewritten in place. A burst of changes is one reload once
// the file has been unchanged for Debounce, or at the latest after ten
// Debounce intervals of steady change.
func (h *Handle) StartTriggers(ctx context.Context, opts TriggerOptions) *Triggers {
	t := &Triggers{done: make(chan struct{})}
	var running sync.WaitGroup
	if opts.SIGHUP {
		// The channel stays registered after ctx is done: a later SIGHUP is
		// then dropped instead of restoring the default action, which ends
		// the process. signal.Ignore would do the same but is inherited by
		// child processes.
		hangups := make(chan os.Signal, 1)
		signal.Notify(hangups, syscall.SIGHUP)
		running.Add(1)
		go func() {
			defer running.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-hangups:
					h.reloadFor("SIGHUP")
				}
			}
		}()
	}
	if !opts.DisableFileWatch && h.configFile != "" {
		t.watched = h.configFile
		interval, debounce := opts.PollInterval, opts.Debounce
		if interval <= 0 {
			interval = DefaultPollInterval
		}
		if debounce <= 0 {
			debounce = DefaultDebounce
		}
		first := statFile(h.configFile)
		running.Add(1)
		go func() {
			defer running.Done()
			h.pollFile(ctx, first, interval, debounce)
		}()
	}
	go func() {
		running.Wait()
		close(t.done)
	}()
	return t
}

// pollFile reloads after the file changes and then stays unchanged for
// debounce.
func (h *Handle) pollFile(ctx context.Context, last fileState, interval, debounce time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var (
		pending          bool
		firstSeen, quiet time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			if state := statFile(h.configFile); state != last {
				last = state
				if !pending {
					pending, firstSeen = true, now
				}
				quiet = now.Add(debounce)
			}
			if pending && (!now.Before(quiet) || now.Sub(firstSeen) >= 10*debounce) {
				pending = false
				h.reloadFor("file change")
			}
		}
	}
}

// reloadFor reloads; Reload logs the outcome itself.
func (h *Handle) reloadFor(trigger string) {
	h.logger.Printf("envelope: reloading configuration (trigger=%s)", trigger)
	_, _ = h.Reload()
}

// fileState is what polling compares. A missing or unreadable file is the
// zero value, so its disappearance and reappearance are changes too (the
// reload then refuses a missing file and keeps the configuration).
type fileState struct {
	exists bool
	size   int64
	mtime  int64
	dev    uint64
	ino    uint64
	ctime  int64
}

// statFile examines path, following symbolic links so that the swap of a
// Kubernetes volume's ..data link shows as a new inode.
func statFile(path string) fileState {
	info, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	s := fileState{exists: true, size: info.Size(), mtime: info.ModTime().UnixNano()}
	s.identity(info)
	return s
}
