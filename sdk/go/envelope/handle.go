package envelope

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a [Handle]. The zero value reads the process
// environment, logs with the standard logger and uses the system clock.
type Options struct {
	// Environ returns the environment in os.Environ's form. It is called at
	// load and again on every reload. Nil means os.Environ.
	Environ func() []string
	// Logger receives reload lines and envelope rejections. Nil means
	// log.Default().
	Logger *log.Logger
	// Now is the clock envelopes are checked against. Nil means time.Now.
	Now func() time.Time
	// FetchJWKS fetches the document at Router__IdentityEnvelopeJwksUrl.
	// Nil means [FetchJWKS] (net/http, JWKSFetchTimeout, no redirects, no
	// proxy); set it for a custom TLS configuration.
	FetchJWKS func(ctx context.Context, url string) ([]byte, error)
}

// ReloadOutcome is what a successful [Handle.Reload] did.
type ReloadOutcome struct {
	// Applied is true when the new configuration is in use from the next
	// request on, false when the settings read are those already in use.
	Applied bool
	// Generation is 1 for the configuration loaded at start plus one per
	// applied reload.
	Generation uint64
}

// ReloadStatus is the configuration in use and the history of reloads,
// read together.
type ReloadStatus struct {
	Config     *Config
	Generation uint64
	// LastApplied is when a reload last changed the configuration; zero if
	// none has.
	LastApplied time.Time
	// LastRejected is when a reload was last refused; zero if none was.
	LastRejected time.Time
	// LastErrors are the problems of the latest reload if it was refused;
	// nil once a later reload succeeds, applied or unchanged.
	LastErrors ConfigErrors
}

// Handle is a service's envelope configuration as it changes at runtime
// (SPEC.md 7.1). It holds one checked [Config] behind an atomic pointer. A
// request loads the pointer once and is decided with that configuration
// from start to end, so a reload never changes the rules under a request in
// flight and never blocks one: readers take no lock. A reload re-reads the
// environment and the file, checks everything, and either swaps the pointer
// or keeps the configuration in use.
//
// A handle also owns the keys fetched from Router__IdentityEnvelopeJwksUrl
// ([JWKSKeys], long-lived state beside the configuration, swapped with it):
// a reload that changes the URL starts a new fetcher and drops the keys of
// the old URL; one that changes only the intervals keeps the keys. [Handle.Close]
// stops the fetcher.
type Handle struct {
	current    atomic.Pointer[live]
	environ    func() []string
	configFile string
	logger     *log.Logger
	now        func() time.Time
	fetchJWKS  func(ctx context.Context, url string) ([]byte, error)

	// reloading is held for a whole reload, so reloads apply in the order
	// they read.
	reloading sync.Mutex
	// mu guards the fields below and the swap of current, so Status never
	// waits on file I/O and never sees a generation without its config.
	mu           sync.Mutex
	generation   uint64
	lastApplied  time.Time
	lastRejected time.Time
	lastErrors   ConfigErrors
}

// live is a configuration and the fetcher of its JWKS keys (nil without a
// JWKS URL), read together by a request.
type live struct {
	config *Config
	jwks   *JWKSKeys
}

// jwksFor is the fetcher for config: current when the URL is the same
// (retuned if the intervals changed), else a new one.
func (h *Handle) jwksFor(config *Config, current *JWKSKeys) *JWKSKeys {
	settings, ok := config.JWKS()
	if !ok {
		return nil
	}
	if current != nil {
		if now := current.Settings(); now.URL == settings.URL {
			if now != settings {
				current.retune(settings.RefreshSeconds, settings.CooldownSeconds)
			}
			return current
		}
	}
	return newJWKSKeys(settings, h.logger, h.fetchJWKS)
}

// NewHandle loads the configuration from the environment and the file
// Router__ConfigFile names. The error is a [ConfigErrors] listing every
// problem; a service reports it and exits with status 2.
func NewHandle(opts Options) (*Handle, error) {
	h := &Handle{environ: opts.Environ, logger: opts.Logger, now: opts.Now, fetchJWKS: opts.FetchJWKS, generation: 1}
	if h.environ == nil {
		h.environ = os.Environ
	}
	if h.logger == nil {
		h.logger = log.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	env := parseEnviron(h.environ())
	config, problems := loadConfig(env)
	if len(problems) > 0 {
		return nil, problems
	}
	h.configFile = configFilePath(env)
	h.current.Store(&live{config: config, jwks: h.jwksFor(config, nil)})
	h.logger.Printf("envelope: configuration loaded: %s", describe(config, 1))
	return h, nil
}

// Current is the configuration in use now. A request calls it once and
// keeps the result until it is answered.
func (h *Handle) Current() *Config { return h.current.Load().config }

// JWKS is the fetcher of the JWKS keys in use, or nil when no
// Router__IdentityEnvelopeJwksUrl is configured.
func (h *Handle) JWKS() *JWKSKeys { return h.current.Load().jwks }

// Close stops fetching JWKS keys; the configuration stays readable. The
// reload triggers stop with their own context.
func (h *Handle) Close() {
	if jwks := h.current.Load().jwks; jwks != nil {
		jwks.Close()
	}
}

// ConfigFile is the file Router__ConfigFile named at load ("" for none);
// the file trigger watches it.
func (h *Handle) ConfigFile() string { return h.configFile }

// Status returns the configuration in use with its generation and the
// latest reloads, consistent with each other.
func (h *Handle) Status() ReloadStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return ReloadStatus{
		Config:       h.current.Load().config,
		Generation:   h.generation,
		LastApplied:  h.lastApplied,
		LastRejected: h.lastRejected,
		LastErrors:   append(ConfigErrors(nil), h.lastErrors...),
	}
}

// Reload re-reads the environment and the file Router__ConfigFile names
// and, if every setting checks, swaps the new configuration in for the next
// request. On any problem the configuration in use stays, and every
// problem is returned (as [ConfigErrors]) and logged as "VARIABLE: problem",
// never with a value. Settings equal to those in use change nothing.
func (h *Handle) Reload() (ReloadOutcome, error) {
	h.reloading.Lock()
	defer h.reloading.Unlock()
	config, problems := loadConfig(parseEnviron(h.environ()))
	now := time.Now()

	h.mu.Lock()
	defer h.mu.Unlock()
	if len(problems) > 0 {
		h.lastRejected = now
		h.lastErrors = problems
		mode := h.current.Load().config.mode
		for _, problem := range problems {
			h.logger.Printf("envelope: configuration reload refused, keeping generation=%d mode=%s: %s",
				h.generation, mode, problem)
		}
		return ReloadOutcome{}, problems
	}
	h.lastErrors = nil
	previous := h.current.Load()
	if config.sameSettings(previous.config) {
		h.logger.Printf("envelope: configuration reloaded: unchanged %s", describe(config, h.generation))
		return ReloadOutcome{Applied: false, Generation: h.generation}, nil
	}
	h.generation++
	h.lastApplied = now
	jwks := h.jwksFor(config, previous.jwks)
	h.current.Store(&live{config: config, jwks: jwks})
	if previous.jwks != nil && previous.jwks != jwks {
		// A request still holding it reads its keys; it fetches no more.
		go previous.jwks.Close()
	}
	h.logger.Printf("envelope: configuration reloaded: applied %s", describe(config, h.generation))
	return ReloadOutcome{Applied: true, Generation: h.generation}, nil
}

// describe is a configuration for the log: key ids only, never material
// (nor the JWKS URL, which may carry a token).
func describe(config *Config, generation uint64) string {
	jwks := ""
	if config.jwks != nil {
		jwks = " jwks=on"
	}
	return fmt.Sprintf("generation=%d enabled=%t mode=%s accepted_kids=%s%s",
		generation, config.enabled, config.mode, strings.Join(config.AcceptedKids(), ","), jwks)
}
