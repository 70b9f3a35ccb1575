package envelope

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// The variables of SPEC.md section 7. Names match case-insensitively with
// "_" ignored, so ROUTER__ENABLED and router_enabled both name EnvEnabled.
const (
	EnvEnabled        = "Router__Enabled"
	EnvTrustMode      = "Router__AuthorizationTrustMode"
	EnvSigningKey     = "Router__IdentityEnvelopeSigningKey"
	EnvSigningKeyID   = "Router__IdentityEnvelopeSigningKeyId"
	EnvAcceptedKeys   = "Router__IdentityEnvelopeAcceptedKeys"
	EnvClockSkew      = "Router__IdentityEnvelopeClockSkewSeconds"
	EnvMaxLifetime    = "Router__IdentityEnvelopeMaxLifetimeSeconds"
	EnvAudience       = "Router__IdentityEnvelopeAudience"
	EnvIssuer         = "Router__IdentityEnvelopeIssuer"
	EnvJWKSURL        = "Router__IdentityEnvelopeJwksUrl"
	EnvJWKSRefresh    = "Router__IdentityEnvelopeJwksRefreshSeconds"
	EnvJWKSCooldown   = "Router__IdentityEnvelopeJwksCooldownSeconds"
	EnvConfigFile     = "Router__ConfigFile"
	defaultSigningKid = "default"
)

// fileVariables are the variables a Router__ConfigFile may set: every
// setting but Router__ConfigFile itself.
var fileVariables = []string{
	EnvEnabled, EnvTrustMode, EnvSigningKey, EnvSigningKeyID, EnvAcceptedKeys,
	EnvClockSkew, EnvMaxLifetime, EnvAudience, EnvIssuer,
	EnvJWKSURL, EnvJWKSRefresh, EnvJWKSCooldown,
}

// foldEnvName folds a variable name for matching: ASCII lowercase, "_"
// dropped (the Rust crate's fold_env_name).
func foldEnvName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ConfigError is one configuration problem, named by variable. It never
// contains a value: values may be keys.
type ConfigError struct {
	Variable string
	Problem  string
}

func (e ConfigError) Error() string { return e.Variable + ": " + e.Problem }

// ConfigErrors is every problem of one configuration, reported at once.
type ConfigErrors []ConfigError

func (e ConfigErrors) Error() string {
	lines := make([]string, len(e))
	for i, one := range e {
		lines[i] = one.Error()
	}
	return strings.Join(lines, "\n")
}

// envVar is one variable of an environment.
type envVar struct{ name, value string }

// environment is a list of variables, looked up by folded name.
type environment []envVar

// parseEnviron reads os.Environ's "NAME=value" form. Entries without a name
// (Windows keeps "=C:=C:\" ones) are skipped.
func parseEnviron(environ []string) environment {
	env := make(environment, 0, len(environ))
	for _, entry := range environ {
		name, value, _ := strings.Cut(entry, "=")
		if name != "" {
			env = append(env, envVar{name, value})
		}
	}
	return env
}

// get returns the first variable whose name matches name once folded.
func (env environment) get(name string) (string, bool) {
	wanted := foldEnvName(name)
	for _, v := range env {
		if foldEnvName(v.name) == wanted {
			return v.value, true
		}
	}
	return "", false
}

// FileEntry is one setting of a Router__ConfigFile.
type FileEntry struct {
	// Name is the variable's canonical spelling (EnvTrustMode, ...),
	// whatever spelling the file used.
	Name string
	// Value is unquoted. Empty means the file removes the variable from the
	// environment (how the end of a key rotation drops a key the
	// environment sets).
	Value string
	// Line is 1-based.
	Line int
}

// String shows the entry without its value, which may be a key.
func (e FileEntry) String() string { return fmt.Sprintf("%s (line %d)", e.Name, e.Line) }

// GoString keeps %#v from showing the value.
func (e FileEntry) GoString() string { return "envelope.FileEntry{" + e.String() + "}" }

// ParseConfigFile reads the text of a Router__ConfigFile (SPEC.md 7.1): one
// Name=value per line in the env-file format compose and systemd read.
// Blank lines and lines starting with "#" are skipped (a "#" after a value
// is part of it); "export " before a name is allowed; one pair of matching
// quotes around a value is removed and nothing inside is unescaped. Every
// problem is reported at once as "Router__ConfigFile: line N: ...", never
// with a value. The error is a [ConfigErrors].
func ParseConfigFile(text string) ([]FileEntry, error) {
	entries, problems := parseConfigLines(text)
	if len(problems) > 0 {
		return nil, problems
	}
	return entries, nil
}

// parseConfigLines returns the entries of the lines that parse and the
// problems of the others, so the good lines still apply when the settings
// are checked and every problem is reported in one pass.
func parseConfigLines(text string) ([]FileEntry, ConfigErrors) {
	var (
		entries  []FileEntry
		problems ConfigErrors
	)
	fail := func(line int, format string, args ...interface{}) {
		problems = append(problems, ConfigError{
			Variable: EnvConfigFile,
			Problem:  fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...),
		})
	}
	text = strings.TrimPrefix(text, "\ufeff")
	for index, raw := range strings.Split(text, "\n") {
		line := index + 1
		trimmed := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		statement := trimmed
		if strings.HasPrefix(trimmed, "export ") || strings.HasPrefix(trimmed, "export\t") {
			statement = strings.TrimLeft(trimmed[len("export "):], " \t")
		}
		name, value, found := strings.Cut(statement, "=")
		if !found {
			fail(line, "expected Name=value")
			continue
		}
		name = strings.TrimSpace(name)
		folded := foldEnvName(name)
		if folded == foldEnvName(EnvConfigFile) {
			fail(line, "%s cannot be set in the file it names", EnvConfigFile)
			continue
		}
		canonical := ""
		for _, known := range fileVariables {
			if foldEnvName(known) == folded {
				canonical = known
				break
			}
		}
		if canonical == "" {
			// Only a name that looks like one of ours is shown: anything
			// else may be a value pasted on a line of its own.
			if strings.HasPrefix(folded, "router") && isIdentifier(name) {
				fail(line, "%s is not a service envelope variable (SPEC.md section 7)", name)
			} else {
				fail(line, "the name is not a service envelope variable (SPEC.md section 7)")
			}
			continue
		}
		unquoted, ok := unquote(strings.TrimSpace(value))
		if !ok {
			fail(line, "the value of %s has an unmatched quote", canonical)
			continue
		}
		duplicate := false
		for _, earlier := range entries {
			if earlier.Name == canonical {
				fail(line, "%s is already set on line %d", canonical, earlier.Line)
				duplicate = true
				break
			}
		}
		if !duplicate {
			entries = append(entries, FileEntry{Name: canonical, Value: unquoted, Line: line})
		}
	}
	return entries, problems
}

func isIdentifier(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// unquote removes one pair of matching quotes around value; false when a
// quote opens or closes the value without its partner.
func unquote(value string) (string, bool) {
	for _, quote := range []string{`"`, `'`} {
		opens := strings.HasPrefix(value, quote)
		closes := len(value) >= 2 && strings.HasSuffix(value, quote)
		switch {
		case opens && closes:
			return value[1 : len(value)-1], true
		case opens || closes:
			return "", false
		}
	}
	return value, true
}

// overlay is env overlaid by a file's entries: a variable the file sets
// replaces every spelling of it in env, an empty value removes it, and
// Router__ConfigFile itself is dropped, having been followed.
func overlay(env environment, file []FileEntry) environment {
	setByFile := make(map[string]bool, len(file)+1)
	setByFile[foldEnvName(EnvConfigFile)] = true
	for _, entry := range file {
		setByFile[foldEnvName(entry.Name)] = true
	}
	out := make(environment, 0, len(env)+len(file))
	for _, v := range env {
		if !setByFile[foldEnvName(v.name)] {
			out = append(out, v)
		}
	}
	for _, entry := range file {
		if entry.Value != "" {
			out = append(out, envVar{entry.Name, entry.Value})
		}
	}
	return out
}

// configFilePath is the file Router__ConfigFile names in env; a blank
// value names none.
func configFilePath(env environment) string {
	path, _ := env.get(EnvConfigFile)
	return strings.TrimSpace(path)
}

// Config is a service's checked envelope settings. It does not change once
// made; a reload makes a new one.
type Config struct {
	enabled  bool
	mode     TrustMode
	verifier *Verifier
	// jwks is where more keys are fetched from; nil when not set. A [Handle]
	// fetches them; the configuration only says where.
	jwks *JWKSSettings
}

// Enabled is false when Router__Enabled=false: envelopes are ignored.
func (c *Config) Enabled() bool { return c.enabled }

// Mode is the trust mode.
func (c *Config) Mode() TrustMode { return c.mode }

// Verifier is nil when no key and no JWKS URL is configured (only in
// ServiceEnforced).
func (c *Config) Verifier() *Verifier { return c.verifier }

// JWKS is Router__IdentityEnvelopeJwksUrl and its intervals; false when no
// JWKS URL is set.
func (c *Config) JWKS() (JWKSSettings, bool) {
	if c.jwks == nil {
		return JWKSSettings{}, false
	}
	return *c.jwks, true
}

// AcceptedKids lists the ids of the static accepted keys (not those fetched
// from a JWKS), sorted.
func (c *Config) AcceptedKids() []string {
	if c.verifier == nil {
		return nil
	}
	return c.verifier.keyring.Kids()
}

// sameSettings reports whether a reload from c to other would change
// nothing (key material compared in constant time).
func (c *Config) sameSettings(other *Config) bool {
	if c.enabled != other.enabled || c.mode != other.mode {
		return false
	}
	if (c.jwks == nil) != (other.jwks == nil) || (c.jwks != nil && *c.jwks != *other.jwks) {
		return false
	}
	if c.verifier == nil || other.verifier == nil {
		return c.verifier == nil && other.verifier == nil
	}
	return c.verifier.settings == other.verifier.settings &&
		c.verifier.keyring.sameKeys(other.verifier.keyring)
}

// ConfigFromEnv checks the variables of environ (os.Environ's form) alone.
// A Router__ConfigFile in environ is an error rather than silently not
// read, which would leave the service on settings the operator did not
// mean; [LoadConfig] and [NewHandle] follow it. The error is a
// [ConfigErrors].
func ConfigFromEnv(environ []string) (*Config, error) {
	env := parseEnviron(environ)
	var problems ConfigErrors
	if configFilePath(env) != "" {
		problems = append(problems, ConfigError{EnvConfigFile,
			"names a file that ConfigFromEnv does not read (use LoadConfig or NewHandle)"})
	}
	config, more := configFromVariables(env)
	problems = append(problems, more...)
	if len(problems) > 0 {
		return nil, problems
	}
	return config, nil
}

// ConfigFromEnvAndFile is the configuration in effect when environ is
// overlaid by fileText, the text of the file Router__ConfigFile names. It
// reads nothing itself. Problems of the file and of the resulting settings
// are reported together; a setting that came from the file says so with its
// line. The error is a [ConfigErrors].
func ConfigFromEnvAndFile(environ []string, fileText string) (*Config, error) {
	config, problems := configFromEnvAndFile(parseEnviron(environ), &fileText)
	if len(problems) > 0 {
		return nil, problems
	}
	return config, nil
}

// LoadConfig reads environ and, when it names one, the file
// Router__ConfigFile names, and checks everything. A file that cannot be
// read is an error naming Router__ConfigFile and the path. The error is a
// [ConfigErrors]; at start a service reports it and exits with status 2.
func LoadConfig(environ []string) (*Config, error) {
	config, problems := loadConfig(parseEnviron(environ))
	if len(problems) > 0 {
		return nil, problems
	}
	return config, nil
}

func loadConfig(env environment) (*Config, ConfigErrors) {
	path := configFilePath(env)
	if path == "" {
		return configFromEnvAndFile(env, nil)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ConfigErrors{{EnvConfigFile, fmt.Sprintf("cannot read %s: %s", path, readProblem(err))}}
	}
	text := string(data)
	return configFromEnvAndFile(env, &text)
}

// readProblem says why a file could not be read without repeating the path
// (already in the message) or anything read from it.
func readProblem(err error) string {
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "not found"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &pathErr):
		return pathErr.Err.Error()
	}
	return "read error"
}

// configFromEnvAndFile overlays env with the file's text (nil: no file).
func configFromEnvAndFile(env environment, fileText *string) (*Config, ConfigErrors) {
	var (
		entries  []FileEntry
		problems ConfigErrors
	)
	if fileText != nil {
		entries, problems = parseConfigLines(*fileText)
	}
	config, more := configFromVariables(overlay(env, entries))
	for _, problem := range more {
		for _, entry := range entries {
			if entry.Name == problem.Variable {
				problem.Problem += fmt.Sprintf(" (set in %s line %d)", EnvConfigFile, entry.Line)
				break
			}
		}
		problems = append(problems, problem)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return config, nil
}

// configFromVariables checks the settings in env (after any overlay) and
// reports every problem at once, in the Rust crate's order.
func configFromVariables(env environment) (*Config, ConfigErrors) {
	var problems ConfigErrors
	fail := func(variable, format string, args ...interface{}) {
		problems = append(problems, ConfigError{variable, fmt.Sprintf(format, args...)})
	}

	enabled := true
	if v, ok := env.get(EnvEnabled); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "1", "yes":
		case "false", "0", "no":
			enabled = false
		default:
			fail(EnvEnabled, "must be true or false")
		}
	}
	mode := ServiceEnforced
	if v, ok := env.get(EnvTrustMode); ok {
		var err error
		if mode, err = ParseTrustMode(v); err != nil {
			fail(EnvTrustMode, "%s", err)
		}
	}
	seconds := func(variable string, fallback, max, min uint64) uint64 {
		v, ok := env.get(variable)
		if !ok {
			return fallback
		}
		// A leading "+" is accepted, as Rust's integer parser does.
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(v), "+"), 10, 64)
		if err != nil || n > max || n < min {
			if min > 1 {
				fail(variable, "must be a whole number of seconds from %d to %d", min, max)
			} else {
				fail(variable, "must be a whole number of seconds up to %d", max)
			}
			return fallback
		}
		return n
	}
	skew := seconds(EnvClockSkew, DefaultClockSkewSeconds, 300, 0)
	maxLifetime := seconds(EnvMaxLifetime, DefaultMaxLifetimeSeconds, 3600, 1)
	refresh := seconds(EnvJWKSRefresh, DefaultJWKSRefreshSeconds, 86400, 10)
	cooldown := seconds(EnvJWKSCooldown, DefaultJWKSCooldownSeconds, 3600, 1)
	// Blank is unset, so Router__IdentityEnvelopeJwksUrl=${JWKS_URL:-} in a
	// compose file works.
	jwksURL, _ := env.get(EnvJWKSURL)
	jwksURL = strings.TrimSpace(jwksURL)
	var jwks *JWKSSettings
	if jwksURL != "" {
		if err := checkJWKSURL(jwksURL); err != nil {
			fail(EnvJWKSURL, "%s", err)
		} else {
			jwks = &JWKSSettings{URL: jwksURL, RefreshSeconds: refresh, CooldownSeconds: cooldown}
		}
	}

	keyring, _ := NewKeyring()
	if list, ok := env.get(EnvAcceptedKeys); ok {
		ring, err := ParseKeyring(list)
		if err != nil {
			fail(EnvAcceptedKeys, "%s", err)
		} else {
			keyring = ring
		}
	}
	if secret, ok := env.get(EnvSigningKey); ok {
		kid := defaultSigningKid
		if v, ok := env.get(EnvSigningKeyID); ok {
			kid = strings.TrimSpace(v)
		}
		if !validKid(kid) {
			fail(EnvSigningKeyID, "%s", errBadKid)
		} else if key, err := ParseKeyCompat(kid, strings.TrimSpace(secret)); err != nil {
			fail(EnvSigningKey, "%s", err)
		} else if err := keyring.add(key); err != nil {
			fail(EnvSigningKeyID, "%s (also in %s)", err, EnvAcceptedKeys)
		}
	}
	audience, _ := env.get(EnvAudience)
	audience = strings.TrimSpace(audience)
	issuer, _ := env.get(EnvIssuer)
	issuer = strings.TrimSpace(issuer)

	if enabled && mode != ServiceEnforced && keyring.Len() == 0 && jwksURL == "" {
		fail(EnvSigningKey, "%s needs %s, %s or %s", mode, EnvSigningKey, EnvAcceptedKeys, EnvJWKSURL)
	}
	var verifier *Verifier
	if keyring.Len() > 0 || jwksURL != "" {
		if audience == "" {
			fail(EnvAudience, "is required when envelope keys are configured")
		} else {
			verifier = &Verifier{keyring: keyring, settings: VerifierSettings{
				Audience:           audience,
				Issuer:             issuer,
				ClockSkewSeconds:   skew,
				MaxLifetimeSeconds: maxLifetime,
			}}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return &Config{enabled: enabled, mode: mode, verifier: verifier, jwks: jwks}, nil
}
