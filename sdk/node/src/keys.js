// Envelope key material, key ids and keyrings (SPEC.md section 4).
//
// A key has exactly one algorithm; that is the per-key allowlist. Key
// material lives in private fields and node KeyObjects: it never shows in
// util.inspect, JSON.stringify or an error message.

import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  timingSafeEqual,
  verify as cryptoVerify,
} from 'node:crypto';
import { b64urlDecode, trimWhitespace } from './encoding.js';

/** Shortest HS256 secret accepted, in bytes (the HMAC-SHA256 output size). */
export const MIN_HMAC_SECRET_LEN = 32;
/** Longest key id. */
export const MAX_KID_LEN = 64;

const KID = /^[A-Za-z0-9._-]{1,64}$/;
const INSPECT = Symbol.for('nodejs.util.inspect.custom');

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): node imports private
// keys as PKCS#8, DER or PEM, or JWK (which also wants the public half).
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** Why key material was refused. Never carries the material. */
export class KeyError extends Error {
  /**
   * @param {'bad_kid' | 'unknown_form' | 'encoding' | 'short_secret' | 'ed25519_length' | 'ed25519_key' | 'list_entry' | 'duplicate_kid'} reason
   * @param {string} message
   */
  constructor(reason, message) {
    super(message);
    this.name = 'KeyError';
    this.reason = reason;
  }
}

const badKid = () =>
  new KeyError('bad_kid', `key id must be 1 to ${MAX_KID_LEN} characters from A-Z a-z 0-9 . _ -`);
const unknownForm = () =>
  new KeyError(
    'unknown_form',
    'key must be written as hs256:<base64url>, ed25519-private:<base64url> or ed25519-public:<base64url>',
  );
const encoding = () => new KeyError('encoding', 'key material is not canonical unpadded base64url');
/** @param {number} n */
const shortSecret = (n) =>
  new KeyError(
    'short_secret',
    `hs256 secret is ${n} bytes; at least ${MIN_HMAC_SECRET_LEN} are required`,
  );
/** @param {number} n */
const ed25519Length = (n) =>
  new KeyError('ed25519_length', `ed25519 key is ${n} bytes; exactly 32 are required`);

/** Whether `kid` is a valid key id: 1 to 64 of `A-Z a-z 0-9 . _ -`. @param {unknown} kid */
export function isValidKid(kid) {
  return typeof kid === 'string' && KID.test(kid);
}

/** @param {string} kid */
function checkKid(kid) {
  if (!isValidKid(kid)) throw badKid();
  return kid;
}

/** ASCII-only lowercase, as Rust's `to_ascii_lowercase`. @param {string} s */
function asciiLower(s) {
  return s.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

const CONSTRUCT = Symbol('Key construction');

/** One envelope key with its id and its single algorithm. */
export class Key {
  /** @type {Buffer | null} HS256 secret or Ed25519 seed, for sameAs only */
  #secret;
  /** @type {import('node:crypto').KeyObject} the key verification uses */
  #verifyKey;
  /** @type {Buffer | null} the Ed25519 public key */
  #public;

  /**
   * Use the static constructors.
   * @param {symbol} token
   * @param {string} kid
   * @param {'hs256' | 'ed25519-public' | 'ed25519-private'} kind
   * @param {Buffer | null} secret
   * @param {import('node:crypto').KeyObject} verifyKey
   * @param {Buffer | null} publicKey
   */
  constructor(token, kid, kind, secret, verifyKey, publicKey) {
    if (token !== CONSTRUCT) {
      throw new TypeError('use Key.parse, Key.parseCompat, Key.hmac or Key.ed25519Public');
    }
    /** The key id. */
    this.kid = kid;
    /** The form the key was written in. */
    this.kind = kind;
    /** The only algorithm this key verifies. */
    this.alg = kind === 'hs256' ? 'HS256' : 'EdDSA';
    this.#secret = secret;
    this.#verifyKey = verifyKey;
    this.#public = publicKey;
    Object.freeze(this);
  }

  /**
   * Parses `hs256:<base64url>`, `ed25519-private:<base64url seed>` or
   * `ed25519-public:<base64url>` (the form is case-insensitive).
   * @param {string} kid
   * @param {string} spec
   * @throws {KeyError}
   */
  static parse(kid, spec) {
    checkKid(kid);
    const colon = spec.indexOf(':');
    if (colon < 0) throw unknownForm();
    const form = asciiLower(trimWhitespace(spec.slice(0, colon)));
    // The form is recognized before the material is decoded, so text that
    // merely contains a colon is "any other text" (SPEC.md section 4).
    if (form !== 'hs256' && form !== 'ed25519-public' && form !== 'ed25519-private') {
      throw unknownForm();
    }
    const bytes = b64urlDecode(trimWhitespace(spec.slice(colon + 1)));
    if (bytes === null) throw encoding();
    try {
      if (form === 'hs256') return Key.hmac(kid, bytes);
      if (form === 'ed25519-public') return Key.ed25519Public(kid, bytes);
      return Key.ed25519FromSeed(kid, bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /**
   * Parses a key the way `Router__IdentityEnvelopeSigningKey` is written in
   * existing deployments: one of the forms of Key.parse, or else the text's
   * UTF-8 bytes as an HS256 secret (at least 32 bytes).
   * @param {string} kid
   * @param {string} text
   * @throws {KeyError}
   */
  static parseCompat(kid, text) {
    try {
      return Key.parse(kid, text);
    } catch (e) {
      if (!(e instanceof KeyError) || e.reason !== 'unknown_form') throw e;
    }
    const bytes = Buffer.from(text, 'utf8');
    try {
      return Key.hmac(kid, bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /**
   * An HS256 key over `secret` (copied).
   * @param {string} kid
   * @param {Uint8Array} secret
   * @throws {KeyError}
   */
  static hmac(kid, secret) {
    checkKid(kid);
    if (secret.length < MIN_HMAC_SECRET_LEN) throw shortSecret(secret.length);
    const copy = Buffer.from(secret);
    return new Key(CONSTRUCT, kid, 'hs256', copy, createSecretKey(copy), null);
  }

  /**
   * An Ed25519 verification key from its 32 raw bytes.
   * @param {string} kid
   * @param {Uint8Array} publicKey
   * @throws {KeyError}
   */
  static ed25519Public(kid, publicKey) {
    checkKid(kid);
    if (publicKey.length !== 32) throw ed25519Length(publicKey.length);
    const raw = Buffer.from(publicKey);
    let keyObject;
    try {
      keyObject = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
        format: 'jwk',
      });
    } catch {
      throw new KeyError('ed25519_key', 'ed25519 public key is not usable');
    }
    return new Key(CONSTRUCT, kid, 'ed25519-public', null, keyObject, raw);
  }

  /**
   * An Ed25519 key from its 32-byte seed (the gateway's signing key; a
   * service holding it verifies with its public half).
   * @param {string} kid
   * @param {Uint8Array} seed
   * @throws {KeyError}
   */
  static ed25519FromSeed(kid, seed) {
    checkKid(kid);
    if (seed.length !== 32) throw ed25519Length(seed.length);
    const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
    try {
      const publicKey = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
      const x = /** @type {string} */ (publicKey.export({ format: 'jwk' }).x);
      return new Key(
        CONSTRUCT,
        kid,
        'ed25519-private',
        Buffer.from(seed),
        publicKey,
        Buffer.from(x, 'base64url'),
      );
    } finally {
      der.fill(0);
    }
  }

  /**
   * Whether `signature` is this key's signature of `message` (the signing
   * input, visible ASCII). Constant time for HMAC.
   * @param {string} message
   * @param {Buffer} signature
   */
  verify(message, signature) {
    const data = Buffer.from(message, 'latin1');
    if (this.kind === 'hs256') {
      // The length of a MAC is public; timingSafeEqual needs equal lengths.
      if (signature.length !== 32) return false;
      const mac = createHmac('sha256', this.#verifyKey).update(data).digest();
      return timingSafeEqual(mac, signature);
    }
    if (signature.length !== 64) return false;
    try {
      return cryptoVerify(null, data, this.#verifyKey, signature);
    } catch {
      return false;
    }
  }

  /**
   * Whether `other` is this key: same kid, same form, same material
   * (secret material compared in constant time).
   * @param {Key} other
   */
  sameAs(other) {
    if (this.kid !== other.kid || this.kind !== other.kind) return false;
    if (this.kind === 'ed25519-public') {
      return /** @type {Buffer} */ (this.#public).equals(/** @type {Buffer} */ (other.#public));
    }
    const a = /** @type {Buffer} */ (this.#secret);
    const b = /** @type {Buffer} */ (other.#secret);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  toJSON() {
    return { kid: this.kid, kind: this.kind, alg: this.alg };
  }

  [INSPECT]() {
    return `Key { kid: ${JSON.stringify(this.kid)}, kind: ${this.kind}, material: <redacted> }`;
  }
}

/** The keys a verifier accepts, by key id. Immutable. */
export class Keyring {
  /** @type {Map<string, Key>} */
  #keys = new Map();

  /**
   * @param {Iterable<Key>} [keys]
   * @throws {KeyError} when two keys have the same kid (never a silent replacement)
   */
  constructor(keys = []) {
    for (const key of keys) {
      if (!(key instanceof Key)) throw new TypeError('a Keyring holds Key objects');
      if (this.#keys.has(key.kid)) {
        throw new KeyError('duplicate_kid', `key id ${key.kid} appears more than once`);
      }
      this.#keys.set(key.kid, key);
    }
    Object.freeze(this);
  }

  /**
   * Parses `kid=key;kid=key` (`;` or `,` between entries, spaces ignored),
   * each key in a form of Key.parse.
   * @param {string} text
   * @throws {KeyError}
   */
  static parseList(text) {
    const keys = [];
    for (const raw of text.split(/[;,]/)) {
      const entry = trimWhitespace(raw);
      if (entry === '') continue;
      const eq = entry.indexOf('=');
      if (eq < 0) throw new KeyError('list_entry', 'key list entry must be written as kid=key');
      keys.push(Key.parse(trimWhitespace(entry.slice(0, eq)), trimWhitespace(entry.slice(eq + 1))));
    }
    return new Keyring(keys);
  }

  /** The key with exactly this kid. @param {string} kid */
  get(kid) {
    return this.#keys.get(kid);
  }

  /** The kids, sorted. */
  kids() {
    return [...this.#keys.keys()].sort();
  }

  /** Every key. */
  keys() {
    return [...this.#keys.values()];
  }

  get size() {
    return this.#keys.size;
  }

  /**
   * Whether `other` holds exactly these keys.
   * @param {Keyring} other
   */
  sameKeys(other) {
    if (this.#keys.size !== other.#keys.size) return false;
    for (const [kid, key] of this.#keys) {
      const theirs = other.#keys.get(kid);
      if (theirs === undefined || !key.sameAs(theirs)) return false;
    }
    return true;
  }

  toJSON() {
    return { kids: this.kids() };
  }

  [INSPECT]() {
    return `Keyring { kids: [${this.kids().join(', ')}] }`;
  }
}
