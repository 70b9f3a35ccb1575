// Service configuration (SPEC.md section 7): the Router__* variables of the
// process environment, overlaid by the file Router__ConfigFile names
// (section 7.1), checked into one frozen ServiceConfig.
//
// Everything here but readConfigFile and loadConfig is pure: the
// environment is a plain object and the file is its text. Every problem is
// reported at once, as `VARIABLE: problem`, and never with a value: values
// are keys.

import { readFileSync } from 'node:fs';
import { trimWhitespace } from './encoding.js';
import {
  DEFAULT_JWKS_COOLDOWN_SECONDS,
  DEFAULT_JWKS_REFRESH_SECONDS,
  JwksError,
  checkJwksUrl,
} from './jwks.js';
import { Key, KeyError, Keyring, isValidKid } from './keys.js';
import { parseTrustMode, TrustMode } from './trust.js';
import {
  DEFAULT_CLOCK_SKEW_SECONDS,
  DEFAULT_MAX_LIFETIME_SECONDS,
  Verifier,
} from './verify.js';

export const ENV_ENABLED = 'Router__Enabled';
export const ENV_TRUST_MODE = 'Router__AuthorizationTrustMode';
export const ENV_SIGNING_KEY = 'Router__IdentityEnvelopeSigningKey';
export const ENV_SIGNING_KEY_ID = 'Router__IdentityEnvelopeSigningKeyId';
export const ENV_ACCEPTED_KEYS = 'Router__IdentityEnvelopeAcceptedKeys';
export const ENV_CLOCK_SKEW = 'Router__IdentityEnvelopeClockSkewSeconds';
export const ENV_MAX_LIFETIME = 'Router__IdentityEnvelopeMaxLifetimeSeconds';
export const ENV_AUDIENCE = 'Router__IdentityEnvelopeAudience';
export const ENV_ISSUER = 'Router__IdentityEnvelopeIssuer';
export const ENV_JWKS_URL = 'Router__IdentityEnvelopeJwksUrl';
export const ENV_JWKS_REFRESH = 'Router__IdentityEnvelopeJwksRefreshSeconds';
export const ENV_JWKS_COOLDOWN = 'Router__IdentityEnvelopeJwksCooldownSeconds';
export const ENV_CONFIG_FILE = 'Router__ConfigFile';

/** The variables a Router__ConfigFile may set: all but itself. */
export const FILE_VARIABLES = Object.freeze([
  ENV_ENABLED,
  ENV_TRUST_MODE,
  ENV_SIGNING_KEY,
  ENV_SIGNING_KEY_ID,
  ENV_ACCEPTED_KEYS,
  ENV_CLOCK_SKEW,
  ENV_MAX_LIFETIME,
  ENV_AUDIENCE,
  ENV_ISSUER,
  ENV_JWKS_URL,
  ENV_JWKS_REFRESH,
  ENV_JWKS_COOLDOWN,
]);

/**
 * Folds a variable name for matching: ASCII case-insensitive, `_` ignored,
 * so `ROUTER__ENABLED` and `router_enabled` both name `Router__Enabled`.
 * @param {string} name
 */
export function foldEnvName(name) {
  return name.replace(/_/g, '').replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

const FOLDED_CONFIG_FILE = foldEnvName(ENV_CONFIG_FILE);
const CANONICAL_BY_FOLDED = new Map(FILE_VARIABLES.map((name) => [foldEnvName(name), name]));

/** One configuration problem, named by its variable. Never holds a value. */
export class ConfigProblem {
  /** @param {string} variable @param {string} problem */
  constructor(variable, problem) {
    this.variable = variable;
    this.problem = problem;
    Object.freeze(this);
  }

  toString() {
    return `${this.variable}: ${this.problem}`;
  }
}

/**
 * The variables of `env` as [name, value] pairs (`undefined` values, which
 * a plain object may hold, are left out).
 * @param {import('../index.js').Env} env
 * @returns {[string, string][]}
 */
function envEntries(env) {
  const entries = [];
  for (const [name, value] of Object.entries(env)) {
    if (typeof value === 'string') entries.push(/** @type {[string, string]} */ ([name, value]));
  }
  return entries;
}

/**
 * The value of the variable `name` names in `entries`, whatever its
 * spelling; the first match wins, as in the Rust crate.
 * @param {[string, string][]} entries @param {string} name
 */
function lookup(entries, name) {
  const wanted = foldEnvName(name);
  for (const [key, value] of entries) {
    if (foldEnvName(key) === wanted) return value;
  }
  return undefined;
}

/**
 * @typedef {object} FileEntry
 * @property {string} name the canonical variable name, whatever the file's spelling
 * @property {string} value unquoted; empty means "remove from the environment"
 * @property {number} line 1-based
 */

/**
 * Parses the text of a Router__ConfigFile: `Name=value` lines in the
 * env-file format compose and systemd read. Blank lines and lines starting
 * with `#` are skipped (a `#` after a value is part of it); `export ` before
 * a name is allowed; one pair of matching `"` or `'` around a value is
 * removed and nothing inside is unescaped. Names match as foldEnvName does
 * and must be one of FILE_VARIABLES, each at most once.
 *
 * Returns the entries of the lines that parse and a problem per line that
 * does not, as `Router__ConfigFile: line N: ...`, never with a value.
 * @param {string} text
 * @returns {{ entries: FileEntry[], errors: ConfigProblem[] }}
 */
export function parseConfigFile(text) {
  /** @type {FileEntry[]} */
  const entries = [];
  /** @type {ConfigProblem[]} */
  const errors = [];
  /** @param {number} line @param {string} problem */
  const fail = (line, problem) => errors.push(new ConfigProblem(ENV_CONFIG_FILE, `line ${line}: ${problem}`));
  const lines = (text.startsWith('\ufeff') ? text.slice(1) : text).split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, index) => {
    const line = index + 1;
    const trimmed = trimWhitespace(raw);
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const statement =
      trimmed.startsWith('export ') || trimmed.startsWith('export\t')
        ? trimWhitespace(trimmed.slice(7))
        : trimmed;
    const eq = statement.indexOf('=');
    if (eq < 0) {
      fail(line, 'expected Name=value');
      return;
    }
    const name = trimWhitespace(statement.slice(0, eq));
    const folded = foldEnvName(name);
    if (folded === FOLDED_CONFIG_FILE) {
      fail(line, `${ENV_CONFIG_FILE} cannot be set in the file it names`);
      return;
    }
    const canonical = CANONICAL_BY_FOLDED.get(folded);
    if (canonical === undefined) {
      // Only a name that looks like one of ours is shown: anything else may
      // be a value pasted on a line of its own.
      const looksLikeOurs = folded.startsWith('router') && /^[A-Za-z0-9_]*$/.test(name);
      fail(
        line,
        looksLikeOurs
          ? `${name} is not a service envelope variable (SPEC.md section 7)`
          : 'the name is not a service envelope variable (SPEC.md section 7)',
      );
      return;
    }
    const value = unquote(trimWhitespace(statement.slice(eq + 1)));
    if (value === null) {
      fail(line, `the value of ${canonical} has an unmatched quote`);
      return;
    }
    const first = entries.find((e) => e.name === canonical);
    if (first !== undefined) {
      fail(line, `${canonical} is already set on line ${first.line}`);
      return;
    }
    entries.push(Object.freeze({ name: canonical, value, line }));
  });
  return { entries, errors };
}

/**
 * Removes one pair of matching surrounding quotes; null when a quote opens
 * or closes the value without its partner.
 * @param {string} value
 */
function unquote(value) {
  for (const quote of ['"', "'"]) {
    const opens = value.startsWith(quote);
    const closes = value.length >= 2 && value.endsWith(quote);
    if (opens && closes) return value.slice(1, -1);
    if (opens !== closes) return null;
  }
  return value;
}

/**
 * The file Router__ConfigFile names in `env`, or null. A blank value names
 * no file.
 * @param {import('../index.js').Env} env
 */
export function configFilePath(env) {
  const value = lookup(envEntries(env), ENV_CONFIG_FILE);
  if (value === undefined) return null;
  const path = trimWhitespace(value);
  return path === '' ? null : path;
}

/** A service's envelope settings, checked. Immutable: a reload replaces it whole. */
export class ServiceConfig {
  /**
   * @param {object} settings
   * @param {boolean} settings.enabled process envelopes at all
   * @param {import('../index.js').TrustModeName} settings.mode
   * @param {Verifier | null} settings.verifier null when no key and no
   *   JWKS URL is configured (only allowed in ServiceEnforced)
   * @param {import('./jwks.js').JwksSettings | null} [settings.jwks] where
   *   more keys are fetched from (Router__IdentityEnvelopeJwksUrl); a
   *   ConfigHandle fetches them, this snapshot only says where
   */
  constructor({ enabled, mode, verifier, jwks = null }) {
    if (typeof enabled !== 'boolean') throw new TypeError('ServiceConfig: enabled must be a boolean');
    if (!Object.values(TrustMode).includes(mode)) throw new TypeError('ServiceConfig: unknown trust mode');
    if (verifier !== null && !(verifier instanceof Verifier)) {
      throw new TypeError('ServiceConfig: verifier must be a Verifier or null');
    }
    if (enabled && mode !== TrustMode.ServiceEnforced && verifier === null) {
      throw new TypeError(`ServiceConfig: ${mode} needs a verifier`);
    }
    if (jwks !== null && (typeof jwks !== 'object' || typeof jwks.url !== 'string')) {
      throw new TypeError('ServiceConfig: jwks must be { url, refreshSeconds, cooldownSeconds } or null');
    }
    this.enabled = enabled;
    this.mode = mode;
    this.verifier = verifier;
    this.jwks =
      jwks === null
        ? null
        : Object.freeze({
            url: jwks.url,
            refreshSeconds: jwks.refreshSeconds ?? DEFAULT_JWKS_REFRESH_SECONDS,
            cooldownSeconds: jwks.cooldownSeconds ?? DEFAULT_JWKS_COOLDOWN_SECONDS,
          });
    Object.freeze(this);
  }

  /** The kids of the accepted keys, sorted. */
  acceptedKids() {
    return this.verifier === null ? [] : this.verifier.keyring.kids();
  }

  /**
   * Whether `other` has exactly these settings and keys (key material
   * compared in constant time): a reload to it would change nothing.
   * @param {ServiceConfig} other
   */
  sameSettings(other) {
    if (this.enabled !== other.enabled || this.mode !== other.mode) return false;
    if (!sameJwks(this.jwks, other.jwks)) return false;
    const a = this.verifier;
    const b = other.verifier;
    if (a === null || b === null) return a === b;
    return (
      a.audience === b.audience &&
      a.issuer === b.issuer &&
      a.clockSkewSeconds === b.clockSkewSeconds &&
      a.maxLifetimeSeconds === b.maxLifetimeSeconds &&
      a.keyring.sameKeys(b.keyring)
    );
  }

  toJSON() {
    return {
      enabled: this.enabled,
      mode: this.mode,
      acceptedKids: this.acceptedKids(),
      audience: this.verifier?.audience ?? null,
      issuer: this.verifier?.issuer ?? null,
      // Whether one is set; the URL itself may carry a token.
      jwks: this.jwks !== null,
    };
  }
}

/**
 * @param {import('./jwks.js').JwksSettings | null} a
 * @param {import('./jwks.js').JwksSettings | null} b
 */
function sameJwks(a, b) {
  if (a === null || b === null) return a === b;
  return a.url === b.url && a.refreshSeconds === b.refreshSeconds && a.cooldownSeconds === b.cooldownSeconds;
}

/**
 * @typedef {{ ok: true, config: ServiceConfig } | { ok: false, errors: ConfigProblem[] }} ConfigResult
 */

/**
 * The effective configuration: `env` overlaid by the text of the file
 * Router__ConfigFile names (null: no file). Pure: the caller reads the
 * file. A variable the file sets replaces every spelling of it in `env`;
 * one it sets to the empty value is removed. Problems in the file and in
 * the resulting settings are all reported; a setting that came from the
 * file says so, with its line.
 * @param {import('../index.js').Env} env
 * @param {string | null} fileText
 * @returns {ConfigResult}
 */
export function configFromEnvAndFile(env, fileText) {
  // The well-formed lines apply even when others are bad, so the settings'
  // own problems are reported in the same pass.
  const { entries: file, errors } =
    fileText === null ? { entries: [], errors: [] } : parseConfigFile(fileText);
  const setByFile = new Set(file.map((e) => foldEnvName(e.name)));
  const overlay = envEntries(env).filter(([name]) => {
    const folded = foldEnvName(name);
    return folded !== FOLDED_CONFIG_FILE && !setByFile.has(folded);
  });
  for (const entry of file) {
    if (entry.value !== '') overlay.push([entry.name, entry.value]);
  }
  const result = fromVariables(overlay);
  if (result.ok && errors.length === 0) return result;
  if (!result.ok) {
    for (const e of result.errors) {
      const entry = file.find((f) => f.name === e.variable);
      errors.push(
        entry === undefined
          ? e
          : new ConfigProblem(e.variable, `${e.problem} (set in ${ENV_CONFIG_FILE} line ${entry.line})`),
      );
    }
  }
  return { ok: false, errors };
}

/**
 * The variables of `env` alone. A Router__ConfigFile in `env` is an error
 * here: a file silently not read would leave the service on settings the
 * operator did not mean. Use loadConfig or ConfigHandle to follow it.
 * @param {import('../index.js').Env} env
 * @returns {ConfigResult}
 */
export function configFromEnv(env) {
  const result = fromVariables(envEntries(env));
  if (configFilePath(env) === null) return result;
  const errors = [
    new ConfigProblem(
      ENV_CONFIG_FILE,
      'names a file that configFromEnv does not read (use loadConfig or ConfigHandle)',
    ),
  ];
  return { ok: false, errors: result.ok ? errors : errors.concat(result.errors) };
}

/**
 * The text of the file Router__ConfigFile names in `env`: null when it names
 * none, a problem naming Router__ConfigFile and the path when it cannot be
 * read or is not UTF-8.
 * @param {import('../index.js').Env} env
 * @returns {{ ok: true, text: string | null } | { ok: false, errors: ConfigProblem[] }}
 */
export function readConfigFile(env) {
  const path = configFilePath(env);
  if (path === null) return { ok: true, text: null };
  /** @param {string} why */
  const fail = (why) => ({
    ok: /** @type {const} */ (false),
    errors: [new ConfigProblem(ENV_CONFIG_FILE, `cannot read ${path}: ${why}`)],
  });
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    return fail(describeIoError(/** @type {NodeJS.ErrnoException} */ (e)));
  }
  try {
    return { ok: true, text: STRICT_UTF8.decode(bytes) };
  } catch {
    return fail('not valid UTF-8');
  } finally {
    bytes.fill(0); // the file holds keys
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** @param {NodeJS.ErrnoException} e */
function describeIoError(e) {
  switch (e.code) {
    case 'ENOENT':
      return 'not found';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return e.code ?? 'i/o error';
  }
}

/**
 * configFromEnvAndFile with the file `env` names read from disk.
 * @param {import('../index.js').Env} [env] defaults to process.env
 * @returns {ConfigResult}
 */
export function loadConfig(env = process.env) {
  const file = readConfigFile(env);
  if (!file.ok) return file;
  return configFromEnvAndFile(env, file.text);
}

/**
 * Checks the service variables (after any file overlay), in the order and
 * with the messages of the Rust crate.
 * @param {[string, string][]} env
 * @returns {ConfigResult}
 */
function fromVariables(env) {
  /** @type {ConfigProblem[]} */
  const errors = [];
  /** @param {string} variable @param {string} problem */
  const fail = (variable, problem) => errors.push(new ConfigProblem(variable, problem));
  /** @param {string} name */
  const get = (name) => lookup(env, name);

  let enabled = true;
  const enabledText = get(ENV_ENABLED);
  if (enabledText !== undefined) {
    const v = trimWhitespace(enabledText).replace(/[A-Z]+/g, (s) => s.toLowerCase());
    if (v === 'true' || v === '1' || v === 'yes') enabled = true;
    else if (v === 'false' || v === '0' || v === 'no') enabled = false;
    else fail(ENV_ENABLED, 'must be true or false');
  }

  /** @type {import('../index.js').TrustModeName} */
  let mode = TrustMode.ServiceEnforced;
  const modeText = get(ENV_TRUST_MODE);
  if (modeText !== undefined) {
    const parsed = parseTrustMode(modeText);
    if (parsed === null) fail(ENV_TRUST_MODE, 'trust mode must be ServiceEnforced, Hybrid or GatewayEnforced');
    else mode = parsed;
  }

  /** @param {string} variable @param {number} fallback @param {number} max @param {number} min */
  const seconds = (variable, fallback, max, min) => {
    const text = get(variable);
    if (text === undefined) return fallback;
    const digits = trimWhitespace(text);
    // What Rust's u64 parse takes: an optional `+`, then digits.
    const n = /^\+?[0-9]+$/.test(digits) ? BigInt(digits) : null;
    if (n !== null && n >= BigInt(min) && n <= BigInt(max)) return Number(n);
    fail(
      variable,
      min > 1
        ? `must be a whole number of seconds from ${min} to ${max}`
        : `must be a whole number of seconds up to ${max}`,
    );
    return fallback;
  };
  const clockSkewSeconds = seconds(ENV_CLOCK_SKEW, DEFAULT_CLOCK_SKEW_SECONDS, 300, 0);
  const maxLifetimeSeconds = seconds(ENV_MAX_LIFETIME, DEFAULT_MAX_LIFETIME_SECONDS, 3600, 1);
  const refreshSeconds = seconds(ENV_JWKS_REFRESH, DEFAULT_JWKS_REFRESH_SECONDS, 86400, 10);
  const cooldownSeconds = seconds(ENV_JWKS_COOLDOWN, DEFAULT_JWKS_COOLDOWN_SECONDS, 3600, 1);
  // Blank is unset, so `Router__IdentityEnvelopeJwksUrl=${JWKS_URL:-}` in a
  // compose file works.
  const jwksUrl = trimWhitespace(get(ENV_JWKS_URL) ?? '');
  let jwks = null;
  if (jwksUrl !== '') {
    try {
      jwks = { url: checkJwksUrl(jwksUrl), refreshSeconds, cooldownSeconds };
    } catch (e) {
      if (!(e instanceof JwksError)) throw e;
      fail(ENV_JWKS_URL, e.message);
    }
  }

  /** @type {Key[]} */
  let keys = [];
  const accepted = get(ENV_ACCEPTED_KEYS);
  if (accepted !== undefined) {
    try {
      keys = Keyring.parseList(accepted).keys();
    } catch (e) {
      if (!(e instanceof KeyError)) throw e;
      fail(ENV_ACCEPTED_KEYS, e.message);
    }
  }
  const secret = get(ENV_SIGNING_KEY);
  if (secret !== undefined) {
    const kid = trimWhitespace(get(ENV_SIGNING_KEY_ID) ?? 'default');
    if (!isValidKid(kid)) {
      fail(ENV_SIGNING_KEY_ID, `key id must be 1 to 64 characters from A-Z a-z 0-9 . _ -`);
    } else {
      let key = null;
      try {
        key = Key.parseCompat(kid, trimWhitespace(secret));
      } catch (e) {
        if (!(e instanceof KeyError)) throw e;
        fail(ENV_SIGNING_KEY, e.message);
      }
      if (key !== null) {
        if (keys.some((k) => k.kid === kid)) {
          fail(ENV_SIGNING_KEY_ID, `key id ${kid} appears more than once (also in ${ENV_ACCEPTED_KEYS})`);
        } else {
          keys.push(key);
        }
      }
    }
  }
  const keyring = new Keyring(keys);
  const audienceText = get(ENV_AUDIENCE);
  const audience = audienceText === undefined ? null : trimWhitespace(audienceText);
  const issuerText = get(ENV_ISSUER);
  const issuer = issuerText === undefined ? null : trimWhitespace(issuerText);

  const hasJwks = jwksUrl !== '';
  if (enabled && mode !== TrustMode.ServiceEnforced && keyring.size === 0 && !hasJwks) {
    fail(ENV_SIGNING_KEY, `${mode} needs ${ENV_SIGNING_KEY}, ${ENV_ACCEPTED_KEYS} or ${ENV_JWKS_URL}`);
  }
  let verifier = null;
  if (keyring.size > 0 || hasJwks) {
    if (audience === null || audience === '') {
      fail(ENV_AUDIENCE, 'is required when envelope keys are configured');
    } else {
      verifier = new Verifier({
        keyring,
        audience,
        issuer: issuer === '' ? null : issuer,
        clockSkewSeconds,
        maxLifetimeSeconds,
      });
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config: new ServiceConfig({ enabled, mode, verifier, jwks }) };
}
