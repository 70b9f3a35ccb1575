// The service configuration as it changes at runtime (SPEC.md 7.1): one
// frozen ServiceConfig, replaced whole by ConfigHandle.reload.
//
// A request takes current() once and decides with that snapshot from
// start to end, so a reload never changes the rules under a request in
// flight. JavaScript runs one thing at a time and reload() is synchronous
// (it reads one small file), so a swap is a single assignment that no
// request can observe half done, and two reloads can never interleave.
//
// A handle also owns the keys fetched from Router__IdentityEnvelopeJwksUrl
// (JwksKeys, long-lived state beside the snapshot): a reload that changes
// the URL starts a new fetcher and drops the keys of the old URL; one that
// changes only the intervals keeps the keys.

import { watch as fsWatch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { configFilePath, loadConfig } from './config.js';
import { JwksKeys } from './jwks.js';

/** @typedef {import('./config.js').ServiceConfig} ServiceConfig */

/** The problems that stopped a configuration from loading. Exit code 2. */
export class EnvelopeConfigError extends Error {
  /** @param {import('./config.js').ConfigProblem[]} problems */
  constructor(problems) {
    super(
      `invalid envelope configuration:\n${problems.map((p) => `  ${p.toString()}`).join('\n')}`,
    );
    this.name = 'EnvelopeConfigError';
    /** Each as `VARIABLE: problem`, never with a value. */
    this.problems = problems;
    /** The exit code a service uses for invalid configuration. */
    this.exitCode = 2;
  }
}

/** @typedef {import('../index.js').Logger} Logger */

/** @param {ServiceConfig} config */
function kidList(config) {
  // Kids only, never key material (nor the JWKS URL, which may hold a token).
  return (config.acceptedKids().join(',') || '-') + (config.jwks !== null ? ', jwks on' : '');
}

/**
 * The fetcher for `settings`: the current one when the URL is the same
 * (retuned if the intervals changed), else a new one.
 * @param {import('./jwks.js').JwksSettings | null} settings
 * @param {JwksKeys | null} current
 * @param {Logger} logger
 */
function jwksFor(settings, current, logger) {
  if (settings === null) return null;
  if (current !== null && current.settings.url === settings.url) {
    const now = current.settings;
    if (now.refreshSeconds !== settings.refreshSeconds || now.cooldownSeconds !== settings.cooldownSeconds) {
      current.retune(settings.refreshSeconds, settings.cooldownSeconds);
    }
    return current;
  }
  return new JwksKeys(settings, { logger });
}

/** The reloadable service configuration. */
export class ConfigHandle {
  /** @type {ServiceConfig} */
  #current;
  #generation = 1;
  /** @type {Date | null} */
  #lastApplied = null;
  /** @type {Date | null} */
  #lastRejected = null;
  /** @type {import('./config.js').ConfigProblem[] | null} */
  #lastErrors = null;
  /** @type {import('../index.js').Env} */
  #env;
  /** @type {Logger} */
  #logger;
  /** @type {string | null} */
  #configFile;
  /** @type {JwksKeys | null} the fetcher of #current's JWKS keys */
  #jwks = null;

  /**
   * Loads the configuration from `env` (process.env by default, read again
   * on every reload) and the file its Router__ConfigFile names.
   * @param {object} [options]
   * @param {import('../index.js').Env} [options.env]
   * @param {Logger} [options.logger] defaults to console
   * @throws {EnvelopeConfigError} with every problem
   */
  constructor({ env = process.env, logger = console } = {}) {
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new EnvelopeConfigError(loaded.errors);
    this.#current = loaded.config;
    this.#env = env;
    this.#logger = logger;
    this.#configFile = configFilePath(env);
    this.#jwks = jwksFor(loaded.config.jwks, null, logger);
    logger.info(
      `envelope configuration loaded: generation 1, enabled ${loaded.config.enabled}, ` +
        `mode ${loaded.config.mode}, accepted kids ${kidList(loaded.config)}`,
    );
  }

  /**
   * A handle on process.env, or exit 2 after logging every problem as
   * `VARIABLE: problem`: what a service does at start (SPEC.md 7.1).
   * @param {object} [options]
   * @param {Logger} [options.logger]
   */
  static loadOrExit({ logger = console } = {}) {
    try {
      return new ConfigHandle({ env: process.env, logger });
    } catch (e) {
      if (!(e instanceof EnvelopeConfigError)) throw e;
      for (const p of e.problems) logger.error(`envelope configuration: ${p.toString()}`);
      process.exit(2);
    }
  }

  /** The configuration in use now. Take it once per request. */
  current() {
    return this.#current;
  }

  /**
   * The configuration in use and the fetcher of its JWKS keys (null without
   * Router__IdentityEnvelopeJwksUrl), read together.
   * @returns {{ config: ServiceConfig, jwks: JwksKeys | null }}
   */
  currentWithJwks() {
    return { config: this.#current, jwks: this.#jwks };
  }

  /** The fetcher of the JWKS keys in use, or null. */
  get jwks() {
    return this.#jwks;
  }

  /** Stops fetching JWKS keys (triggers are closed on their own). */
  close() {
    this.#jwks?.close();
  }

  /** The file Router__ConfigFile named at load, or null. */
  get configFile() {
    return this.#configFile;
  }

  /** The configuration in use with its generation and the last reloads. */
  status() {
    return Object.freeze({
      config: this.#current,
      generation: this.#generation,
      lastApplied: this.#lastApplied,
      lastRejected: this.#lastRejected,
      lastErrors: this.#lastErrors,
    });
  }

  /**
   * Re-reads the environment and the config file and, if every setting
   * checks, puts the new configuration in use for the next request. On any
   * problem the configuration in use stays and every problem is logged as
   * `VARIABLE: problem`, never with a value. Settings equal to those in
   * use change nothing ('unchanged'). Never throws.
   * @returns {import('../index.js').ReloadResult}
   */
  reload() {
    const loaded = loadConfig(this.#env);
    const now = new Date();
    if (!loaded.ok) {
      this.#lastRejected = now;
      this.#lastErrors = loaded.errors;
      for (const e of loaded.errors) {
        this.#logger.error(
          `envelope configuration reload refused, generation ${this.#generation} ` +
            `(mode ${this.#current.mode}) stays in use: ${e.toString()}`,
        );
      }
      return Object.freeze({ outcome: 'refused', generation: this.#generation, errors: loaded.errors });
    }
    const config = loaded.config;
    this.#lastErrors = null;
    if (config.sameSettings(this.#current)) {
      this.#logger.info(
        `envelope configuration reloaded: unchanged, generation ${this.#generation}, ` +
          `mode ${config.mode}, accepted kids ${kidList(config)}`,
      );
      return Object.freeze({ outcome: 'unchanged', generation: this.#generation });
    }
    this.#generation += 1;
    this.#lastApplied = now;
    this.#current = config;
    const previous = this.#jwks;
    this.#jwks = jwksFor(config.jwks, previous, this.#logger);
    // A request still holding the old one reads its keys; it fetches no more.
    if (previous !== null && previous !== this.#jwks) previous.close();
    this.#logger.info(
      `envelope configuration reloaded: applied, generation ${this.#generation}, ` +
        `enabled ${config.enabled}, mode ${config.mode}, accepted kids ${kidList(config)}`,
    );
    return Object.freeze({ outcome: 'applied', generation: this.#generation });
  }

  /**
   * Installs the reload triggers of SPEC.md 7.1: changes of the file
   * Router__ConfigFile names (its directory is watched, so a file replaced
   * by rename counts), debounced, and SIGHUP when asked. Nothing is
   * installed unless this is called; `close()` on the result removes
   * everything.
   *
   * SIGHUP is opt-in because a listener replaces node's default action for
   * the signal (exit) process-wide, which a library should not decide
   * alone. While installed, SIGHUP reloads and never ends the process. No
   * trigger keeps the process alive.
   * @param {object} [options]
   * @param {boolean} [options.sighup] reload on SIGHUP (default false)
   * @param {boolean} [options.file] reload when the file changes (default true)
   * @param {number} [options.debounceMs] quiet time before a change is reloaded (default 200)
   * @returns {import('../index.js').ReloadTriggers}
   * @throws {Error} when the file's directory cannot be watched
   */
  watch({ sighup = false, file = true, debounceMs = 200 } = {}) {
    /** @type {(() => void)[]} */
    const closers = [];
    if (sighup) {
      const onHangup = () => {
        this.#logger.info('reloading envelope configuration (SIGHUP)');
        this.reload();
      };
      process.on('SIGHUP', onHangup);
      closers.push(() => process.off('SIGHUP', onHangup));
    }
    let watchedFile = null;
    if (file && this.#configFile !== null) {
      closers.push(watchFile(this.#configFile, debounceMs, this.#logger, () => {
        this.#logger.info('reloading envelope configuration (file change)');
        this.reload();
      }));
      watchedFile = this.#configFile;
    }
    let closed = false;
    return Object.freeze({
      watchedFile,
      close() {
        if (closed) return;
        closed = true;
        for (const close of closers) close();
      },
    });
  }
}

/**
 * Watches `file` for changes: its directory (a rename into place replaces
 * the file, which a watch on the old file never sees), and, best effort,
 * the file itself (a file bind-mounted alone changes only there), renewed
 * after each change since a renamed-in file is a new inode. A burst of
 * events is one call once the directory has been quiet for `debounceMs`,
 * or at most ten of them under a steady stream. `..data` is the symlink a
 * Kubernetes volume swaps to publish new files.
 * @param {string} file
 * @param {number} debounceMs
 * @param {Logger} logger
 * @param {() => void} onChange
 * @returns {() => void} stops watching
 */
function watchFile(file, debounceMs, logger, onChange) {
  const name = basename(file);
  const dir = dirname(file);
  /** @type {NodeJS.Timeout | null} */
  let timer = null;
  let burstStarted = 0;
  let closed = false;

  const fire = () => {
    timer = null;
    if (closed) return;
    renewFileWatch();
    onChange();
  };
  /** @param {string} _event @param {string | Buffer | null} changed */
  const onEvent = (_event, changed) => {
    // No name: the platform could not say which entry changed.
    const changedName = changed === null ? null : String(changed);
    if (changedName !== null && changedName !== name && changedName !== '..data') return;
    const now = Date.now();
    if (timer === null) burstStarted = now;
    else clearTimeout(timer);
    const wait = now - burstStarted >= debounceMs * 10 ? 0 : debounceMs;
    timer = setTimeout(fire, wait);
    timer.unref();
  };
  /** @param {Error} e */
  const onError = (e) => logger.warn(`envelope configuration file watch: ${e.message}`);

  // persistent: false, so the watch never keeps the process alive.
  const dirWatcher = fsWatch(dir, { persistent: false }, onEvent);
  dirWatcher.on('error', onError);

  /** @type {import('node:fs').FSWatcher | null} */
  let fileWatcher = null;
  const renewFileWatch = () => {
    fileWatcher?.close();
    fileWatcher = null;
    try {
      // Every event on the file itself concerns it: no name to filter.
      fileWatcher = fsWatch(file, { persistent: false }, (event) => onEvent(event, null));
      fileWatcher.on('error', () => {
        fileWatcher?.close();
        fileWatcher = null;
      });
    } catch {
      // Best effort: the directory watch alone sees every change made in it.
    }
  };
  renewFileWatch();

  return () => {
    closed = true;
    if (timer !== null) clearTimeout(timer);
    dirWatcher.close();
    fileWatcher?.close();
  };
}
