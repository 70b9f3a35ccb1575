// Envelope keys fetched from a JWKS URL (SPEC.md section 7.6).
//
// parseJwks is pure: the bytes of a JWK Set in, a Keyring of its Ed25519
// keys out, or a JwksError for a document that must not be used. JwksKeys
// is the shell: it fetches the URL at start, every refresh interval after a
// success, sooner after a failure, and on demand when an envelope names a
// kid no key has (at most once per cooldown). One fetch at a time: callers
// asking while one runs share its promise. The key set in use is one frozen
// Keyring replaced whole, and a failed fetch keeps the last good one.
// Timers and the fetch's socket are unref'd: nothing here keeps the process
// alive. Nothing is logged with key material or the URL (it may carry a
// token); messages name Router__IdentityEnvelopeJwksUrl.

import http from 'node:http';
import https from 'node:https';
import { b64urlDecode, parseStrictJsonObject } from './encoding.js';
import { Key, KeyError, Keyring, isValidKid } from './keys.js';

/** Default seconds between two fetches after a successful one. */
export const DEFAULT_JWKS_REFRESH_SECONDS = 300;
/** Default shortest seconds between two refetches caused by unknown kids. */
export const DEFAULT_JWKS_COOLDOWN_SECONDS = 30;
/** Longest a fetch may take, connection and body included. */
export const JWKS_FETCH_TIMEOUT_MS = 5000;
/** Largest JWKS document accepted, in bytes. */
export const JWKS_MAX_BYTES = 64 * 1024;
/** Longest a request with an unknown kid waits for a fetch before it is refused (unknown_kid). */
export const UNKNOWN_KID_WAIT_MS = 2000;

const ENV_URL = 'Router__IdentityEnvelopeJwksUrl';

/** Why a JWKS URL, a fetch or a document was refused. Never carries key material, the URL or the document. */
export class JwksError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'JwksError';
  }
}

/**
 * Returns `text` if it is an absolute http or https URL with a host and no
 * credentials; throws a JwksError (without the text) otherwise.
 * @param {string} text
 */
export function checkJwksUrl(text) {
  const problem = () => new JwksError('must be an http or https URL with a host');
  if (!/^[\x21-\x7e]*$/.test(text)) throw problem();
  let url;
  try {
    url = new URL(text);
  } catch {
    throw problem();
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') throw problem();
  // WHATWG parsing forgives "http:host" and "http:/host"; the other SDKs do not.
  if (!/^https?:\/\/[^/]/i.test(text)) throw problem();
  if (url.username !== '' || url.password !== '') {
    throw new JwksError('must not carry credentials (user:password@)');
  }
  return text;
}

/** @param {unknown} value @param {string} wanted */
const is = (value, wanted) => typeof value === 'string' && value === wanted;

/** @param {string} kid */
const shown = (kid) => (isValidKid(kid) ? kid : '(not a valid key id)');

/**
 * The Ed25519 envelope keys of a JWK Set (RFC 7517), as a Keyring.
 *
 * Used: `kty` OKP, `crv` Ed25519, `alg` absent or EdDSA, `use` absent or
 * sig, with a `kid` that is a valid envelope key id. Skipped, not fatal:
 * every other key (ES256 and RSA keys, encryption keys, keys without kid).
 * Refused, the whole document: anything but a strict JSON object with a
 * `keys` array of objects, a `kid` that is not a string, two keys with one
 * kid, and a used key whose `x` is not 32 bytes of canonical base64url or
 * that carries a private part (`d`).
 * @param {Uint8Array} bytes
 * @returns {Keyring}
 * @throws {JwksError}
 */
export function parseJwks(bytes) {
  if (bytes.length > JWKS_MAX_BYTES) throw new JwksError(`document is larger than ${JWKS_MAX_BYTES} bytes`);
  let document;
  try {
    document = parseStrictJsonObject(bytes);
  } catch (e) {
    throw new JwksError(`document is not a strict json object (${/** @type {Error} */ (e).message})`);
  }
  const entries = document.get('keys');
  if (!Array.isArray(entries)) throw new JwksError('document has no keys array');
  const seen = new Set();
  const keys = [];
  entries.forEach((entry, index) => {
    if (!(entry instanceof Map)) throw new JwksError(`keys[${index}] is not an object`);
    if (!entry.has('kid')) return;
    const kid = entry.get('kid');
    if (typeof kid !== 'string') throw new JwksError(`keys[${index}] has a kid that is not a string`);
    // The kid alone selects the key: with two, which one signs?
    if (seen.has(kid)) throw new JwksError(`key id ${shown(kid)} appears more than once`);
    seen.add(kid);
    const used =
      is(entry.get('kty'), 'OKP') &&
      is(entry.get('crv'), 'Ed25519') &&
      (!entry.has('alg') || is(entry.get('alg'), 'EdDSA')) &&
      (!entry.has('use') || is(entry.get('use'), 'sig'));
    if (!used || !isValidKid(kid)) return; // no envelope can name it
    if (entry.has('d')) throw new JwksError(`key ${kid} is a private key`);
    const x = entry.get('x');
    const material = typeof x === 'string' ? b64urlDecode(x) : null;
    if (material === null || material.length !== 32) {
      throw new JwksError(`key ${kid} has no x of 32 bytes in canonical base64url`);
    }
    try {
      keys.push(Key.ed25519Public(kid, material));
    } catch (e) {
      if (!(e instanceof KeyError)) throw e;
      throw new JwksError(`key ${kid}: ${e.message}`);
    }
  });
  return new Keyring(keys);
}

/**
 * GETs `url` and resolves to the body of a 200 response. The whole exchange
 * has `timeoutMs`; redirects are not followed and no proxy is used (the
 * JWKS is the gateway's own admin listener). Rejects with a JwksError for
 * every failure. The socket does not keep the process alive.
 * @param {string} url
 * @param {{ timeoutMs?: number, maxBytes?: number }} [options]
 * @returns {Promise<Buffer>}
 */
export function fetchJwks(url, { timeoutMs = JWKS_FETCH_TIMEOUT_MS, maxBytes = JWKS_MAX_BYTES } = {}) {
  return new Promise((resolve, reject) => {
    let client;
    try {
      client = new URL(url).protocol === 'https:' ? https : http;
    } catch {
      reject(new JwksError('connection: bad url'));
      return;
    }
    let settled = false;
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    /** @param {Error | null} error @param {Buffer} [body] */
    const settle = (error, body) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === null) resolve(/** @type {Buffer} */ (body));
      else reject(error);
    };
    let request;
    try {
      request = client.get(url, {
        agent: false,
        headers: {
          accept: 'application/jwk-set+json, application/json',
          'user-agent': 'stella-envelope-node',
        },
      });
    } catch {
      settle(new JwksError('connection: bad request'));
      return;
    }
    timer = setTimeout(() => {
      settle(new JwksError(`timed out after ${timeoutMs / 1000} s`));
      request.destroy();
    }, timeoutMs);
    timer.unref();
    request.on('socket', (socket) => socket.unref());
    request.on('error', (e) => {
      const code = /** @type {NodeJS.ErrnoException} */ (e).code;
      settle(new JwksError(`connection: ${code ?? 'error'}`));
    });
    request.on('response', (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        settle(new JwksError(`http status ${response.statusCode}`));
        request.destroy();
        return;
      }
      const length = Number(response.headers['content-length']);
      if (Number.isFinite(length) && length > maxBytes) {
        settle(new JwksError(`document is larger than ${maxBytes} bytes`));
        request.destroy();
        return;
      }
      /** @type {Buffer[]} */
      const chunks = [];
      let size = 0;
      response.on('data', (chunk) => {
        size += chunk.length;
        if (size > maxBytes) {
          settle(new JwksError(`document is larger than ${maxBytes} bytes`));
          request.destroy();
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => settle(null, Buffer.concat(chunks)));
      response.on('error', () => settle(new JwksError('connection: response aborted')));
    });
  });
}

/** @param {string} text */
function plainHttpOffLoopback(text) {
  const url = new URL(text);
  const host = url.hostname.toLowerCase();
  const loopback = host === 'localhost' || host === '[::1]' || host.startsWith('127.');
  return url.protocol === 'http:' && !loopback;
}

/**
 * @typedef {object} JwksSettings
 * @property {string} url
 * @property {number} refreshSeconds
 * @property {number} cooldownSeconds
 */

/**
 * The keys of one JWKS URL, kept fresh in the background.
 *
 * `keys()` is the set in use (empty until the first successful fetch).
 * `refetchForUnknownKid()` asks for an early fetch; the middleware calls it
 * for an envelope whose kid no key has and waits at most
 * UNKNOWN_KID_WAIT_MS. `close()` stops it.
 */
export class JwksKeys {
  /** @type {JwksSettings} */
  #settings;
  #keys = new Keyring();
  /** @type {Date | null} */
  #fetchedAt = null;
  /** @type {string | null} */
  #lastError = null;
  #fetches = 0;
  /** @type {Promise<void> | null} */
  #inFlight = null;
  /** @type {number | null} */
  #lastOnDemand = null;
  /** When the last fetch ended (clock ms) and whether it worked: what the next one is scheduled from. */
  /** @type {number | null} */
  #lastEnd = null;
  #lastOk = false;
  /** @type {NodeJS.Timeout | null} */
  #timer = null;
  #closed = false;
  /** @type {import('../index.js').Logger} */
  #logger;
  /** @type {(url: string) => Promise<Uint8Array>} */
  #fetch;
  /** @type {() => number} */
  #clock;

  /**
   * Starts fetching at once.
   * @param {JwksSettings} settings
   * @param {object} [options]
   * @param {import('../index.js').Logger} [options.logger] defaults to console
   * @param {(url: string) => Promise<Uint8Array>} [options.fetch] for tests
   * @param {() => number} [options.clock] milliseconds, monotonic; for tests
   */
  constructor(settings, { logger = console, fetch = (url) => fetchJwks(url), clock = () => performance.now() } = {}) {
    this.#settings = Object.freeze({ ...settings });
    this.#logger = logger;
    this.#fetch = fetch;
    this.#clock = clock;
    if (plainHttpOffLoopback(settings.url)) {
      logger.warn(
        `envelope JWKS: ${ENV_URL} is plain http to another host: whoever can alter that traffic can add a key (use https, or a network path you trust)`,
      );
    }
    void this.#fetchNow();
  }

  /** @returns {JwksSettings} */
  get settings() {
    return this.#settings;
  }

  /** The key set in use now: one frozen Keyring. */
  keys() {
    return this.#keys;
  }

  /** When the last fetch succeeded; null before the first. */
  get fetchedAt() {
    return this.#fetchedAt;
  }

  /** Why the latest fetch failed; null once one succeeds. */
  get lastError() {
    return this.#lastError;
  }

  /** How many fetches have ended, successful or not. */
  get fetches() {
    return this.#fetches;
  }

  /**
   * New intervals for the same URL (a reload that changed only them): the
   * keys already fetched stay, and the next fetch is due the new interval
   * after the last one ended.
   * @param {number} refreshSeconds @param {number} cooldownSeconds
   */
  retune(refreshSeconds, cooldownSeconds) {
    this.#settings = Object.freeze({ url: this.#settings.url, refreshSeconds, cooldownSeconds });
    if (this.#inFlight === null && this.#lastEnd !== null) {
      this.#schedule(Math.max(0, this.#lastEnd + this.#intervalMs(this.#lastOk) - this.#clock()));
    }
  }

  /** After a failure, retry sooner: the cooldown, if shorter. @param {boolean} ok */
  #intervalMs(ok) {
    const { refreshSeconds, cooldownSeconds } = this.#settings;
    return (ok ? refreshSeconds : Math.min(cooldownSeconds, refreshSeconds)) * 1000;
  }

  /**
   * Asks for a fetch because an envelope named an unknown kid. Resolves when
   * the fetch that answers has ended (never rejects): the one in flight if
   * there is one, else a new one, at most one per cooldown. Null within the
   * cooldown (answer unknown_kid at once) or once closed.
   * @returns {Promise<void> | null}
   */
  refetchForUnknownKid() {
    if (this.#closed) return null;
    if (this.#inFlight !== null) return this.#inFlight;
    const now = this.#clock();
    const last = this.#lastOnDemand;
    if (last !== null && now < last + this.#settings.cooldownSeconds * 1000) return null;
    this.#lastOnDemand = now;
    return this.#fetchNow();
  }

  /** Stops fetching. A fetch in flight is abandoned, never applied. */
  close() {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** @param {number} ms */
  #schedule(ms) {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#fetchNow();
    }, ms);
    this.#timer.unref();
  }

  /** The one fetch: a new one, or the one in flight. Never rejects. */
  #fetchNow() {
    if (this.#inFlight !== null) return this.#inFlight;
    if (this.#closed) return Promise.resolve();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const url = this.#settings.url;
    this.#inFlight = (async () => {
      let ok = false;
      try {
        ok = this.#apply(parseJwks(await this.#fetch(url)));
      } catch (e) {
        this.#failed(e instanceof JwksError ? e.message : `unexpected ${/** @type {Error} */ (e)?.name ?? 'error'}`);
      } finally {
        this.#inFlight = null;
        this.#lastEnd = this.#clock();
        this.#lastOk = ok;
        this.#schedule(this.#intervalMs(ok));
      }
    })();
    return this.#inFlight;
  }

  /** @param {Keyring} keys */
  #apply(keys) {
    if (this.#closed) return true;
    const changed = this.#fetchedAt === null || !keys.sameKeys(this.#keys);
    this.#keys = keys;
    this.#fetchedAt = new Date();
    this.#lastError = null;
    this.#fetches += 1;
    if (changed) {
      this.#logger.info(`envelope JWKS fetched from ${ENV_URL}: kids ${keys.kids().join(',') || '-'}`);
    }
    return true;
  }

  /** @param {string} problem */
  #failed(problem) {
    if (this.#closed) return;
    this.#lastError = problem;
    this.#fetches += 1;
    const kept =
      this.#fetchedAt === null
        ? 'no keys fetched yet'
        : `keeping ${this.#keys.size} keys fetched ${Math.round((Date.now() - this.#fetchedAt.getTime()) / 1000)} s ago`;
    this.#logger.warn(`envelope JWKS fetch from ${ENV_URL} failed, ${kept}: ${problem}`);
  }
}
