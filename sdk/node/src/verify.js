// Envelope verification, the service's side: a pure function of the
// received headers, the request, the keyring and `now`. It reads no clock
// and does no I/O; the middleware supplies both.

import { parseCanonicalDecimal, b64urlDecode } from './encoding.js';
import * as E from './errors.js';
import { EnvelopeError } from './errors.js';
import { extractEnvelopeHeaders, signingInput } from './headers.js';
import { Keyring } from './keys.js';
import { decodePayload } from './payload.js';

/** Default allowance for clock differences between gateway and service. */
export const DEFAULT_CLOCK_SKEW_SECONDS = 30;
/** Default upper bound on `exp - iat`. */
export const DEFAULT_MAX_LIFETIME_SECONDS = 300;
/** The payload format version this package reads. */
export const VERSION = 1;

const CONSTRUCT = Symbol('VerifiedIdentity construction');

/**
 * An envelope that passed every check of SPEC.md section 5. Only
 * Verifier.verify makes one, so holding one is proof of the check: the
 * middleware never exposes anything else as an identity.
 */
export class VerifiedIdentity {
  /**
   * @param {symbol} token
   * @param {import('../index.js').EnvelopePayload} payload
   * @param {string} kid
   * @param {'HS256' | 'EdDSA'} alg
   */
  constructor(token, payload, kid, alg) {
    if (token !== CONSTRUCT) {
      throw new TypeError('a VerifiedIdentity is only made by Verifier.verify');
    }
    this.subject = payload.sub;
    this.tenant = payload.tenant;
    this.clientId = payload.client_id;
    this.scopes = payload.scopes;
    this.roles = payload.roles;
    this.authMethod = payload.auth_method;
    this.confirmation = Object.freeze({
      jkt: payload.cnf.jkt,
      x5tS256: payload.cnf['x5t#S256'],
      spiffeId: payload.cnf.spiffe_id,
    });
    this.issuer = payload.iss;
    this.audience = payload.aud;
    this.requestId = payload.request_id;
    this.kid = kid;
    this.alg = alg;
    this.issuedAt = payload.iat;
    this.expiresAt = payload.exp;
    /** The payload members exactly as signed (frozen). */
    this.payload = payload;
    Object.freeze(this);
  }

  /** @param {string} scope */
  hasScope(scope) {
    return this.scopes.includes(scope);
  }

  /** @param {string} role */
  hasRole(role) {
    return this.roles.includes(role);
  }
}

/**
 * @typedef {import('../index.js').EnvelopeCheck} EnvelopeCheck
 */

const ABSENT = Object.freeze({ kind: 'absent' });

/** Verifies envelopes against a keyring of accepted keys. Immutable. */
export class Verifier {
  /**
   * @param {object} settings
   * @param {Keyring} settings.keyring the accepted keys
   * @param {string} settings.audience this service's name; `aud` must equal it
   * @param {string | null} [settings.issuer] the expected `iss`; any when null
   * @param {number} [settings.clockSkewSeconds]
   * @param {number} [settings.maxLifetimeSeconds]
   */
  constructor({
    keyring,
    audience,
    issuer = null,
    clockSkewSeconds = DEFAULT_CLOCK_SKEW_SECONDS,
    maxLifetimeSeconds = DEFAULT_MAX_LIFETIME_SECONDS,
  }) {
    if (!(keyring instanceof Keyring)) throw new TypeError('Verifier: keyring must be a Keyring');
    if (typeof audience !== 'string') throw new TypeError('Verifier: audience must be a string');
    if (issuer !== null && typeof issuer !== 'string') {
      throw new TypeError('Verifier: issuer must be a string or null');
    }
    if (!Number.isSafeInteger(clockSkewSeconds) || clockSkewSeconds < 0) {
      throw new TypeError('Verifier: clockSkewSeconds must be a non-negative integer');
    }
    if (!Number.isSafeInteger(maxLifetimeSeconds) || maxLifetimeSeconds < 0) {
      throw new TypeError('Verifier: maxLifetimeSeconds must be a non-negative integer');
    }
    this.keyring = keyring;
    this.audience = audience;
    this.issuer = issuer;
    this.clockSkewSeconds = clockSkewSeconds;
    this.maxLifetimeSeconds = maxLifetimeSeconds;
    Object.freeze(this);
  }

  /**
   * Looks for an envelope in `headers` and runs every check of SPEC.md
   * section 5, in its order, against the request as received, at `now`
   * (unix seconds). The first failing check decides the error.
   * @param {unknown} headers raw headers, [name, value] pairs, an object or a Map
   * @param {string} method the request method as received
   * @param {string} path the request path as received, without the query
   * @param {number} now unix seconds
   * @param {Keyring | null} [extraKeys] more keys (those fetched from a
   *   JWKS URL), looked up after the verifier's own keyring: a kid in both
   *   is the keyring's
   * @returns {EnvelopeCheck}
   */
  verify(headers, method, path, now, extraKeys = null) {
    checkArguments(method, path, now);
    const found = extractEnvelopeHeaders(headers);
    if (found === null) return ABSENT;
    if (found instanceof EnvelopeError) return invalid(found);
    return this.verifyHeaders(found, method, path, now, extraKeys);
  }

  /**
   * Checks 2 to 16 on headers already extracted (check 1).
   * @param {import('../index.js').EnvelopeHeaders} h
   * @param {string} method
   * @param {string} path
   * @param {number} now
   * @param {Keyring | null} [extraKeys] as in verify
   * @returns {EnvelopeCheck}
   */
  verifyHeaders(h, method, path, now, extraKeys = null) {
    checkArguments(method, path, now);
    // 2-4: the algorithm, the key, and the key's one algorithm.
    if (h.alg !== 'HS256' && h.alg !== 'EdDSA') return invalid(E.unsupportedAlg());
    const key = this.keyring.get(h.kid) ?? extraKeys?.get(h.kid);
    if (key === undefined) return invalid(E.unknownKid());
    if (key.alg !== h.alg) return invalid(E.algNotAllowedForKey(key.kid, h.alg, key.alg));
    // 5-7: the signature over the header values exactly as received.
    const iat = parseCanonicalDecimal(h.iat);
    const exp = parseCanonicalDecimal(h.exp);
    if (iat === null || exp === null) return invalid(E.malformedTimestamp());
    const signature = b64urlDecode(h.signature);
    if (signature === null) return invalid(E.malformedSignature());
    if (!key.verify(signingInput(h), signature)) return invalid(E.badSignature(key.kid));
    // 8-10: only now is the payload read; it is signed.
    const decoded = decodePayload(h.envelope);
    if (decoded instanceof EnvelopeError) return invalid(decoded);
    const { payload } = decoded;
    if (payload.ver !== VERSION) return invalid(E.unsupportedVersion(payload.ver));
    if (decoded.iat !== BigInt(iat) || decoded.exp !== BigInt(exp)) {
      return invalid(E.timestampMismatch());
    }
    // 11-13: lifetime and time. Every value is below 2^53: no overflow.
    const skew = this.clockSkewSeconds;
    if (exp <= iat || exp - iat > this.maxLifetimeSeconds) {
      return invalid(E.badLifetime(Math.max(exp - iat, 0), this.maxLifetimeSeconds));
    }
    if (now > exp + skew) return invalid(E.expired(now - exp));
    if (iat > now + skew) return invalid(E.issuedInFuture(iat - now));
    // 14-16: who it is for and which request.
    if (this.issuer !== null && payload.iss !== this.issuer) return invalid(E.issuerMismatch());
    if (payload.aud !== this.audience) return invalid(E.audienceMismatch(this.audience, payload.aud));
    if (payload.method !== method) return invalid(E.requestMismatch('method'));
    if (payload.path !== path) return invalid(E.requestMismatch('path'));
    return Object.freeze({
      kind: 'valid',
      identity: new VerifiedIdentity(CONSTRUCT, payload, key.kid, key.alg),
    });
  }
}

/**
 * Arguments of the wrong type are a bug in the caller, not a verdict on the
 * envelope: thrown, never returned as an EnvelopeError.
 * @param {unknown} method @param {unknown} path @param {unknown} now
 */
function checkArguments(method, path, now) {
  if (typeof method !== 'string' || typeof path !== 'string') {
    throw new TypeError('verify: method and path must be strings');
  }
  if (!Number.isSafeInteger(now) || /** @type {number} */ (now) < 0) {
    throw new TypeError('verify: now must be unix seconds, a non-negative integer');
  }
}

/** @param {EnvelopeError} error @returns {EnvelopeCheck} */
function invalid(error) {
  return Object.freeze({ kind: 'invalid', error });
}

/**
 * Looks for an envelope and verifies it: the whole service-side check
 * before `decide`. With no verifier (no key configured), any envelope is
 * invalid as `unknown_kid`: nothing it carries can be trusted.
 * @param {Verifier | null} verifier
 * @param {unknown} headers
 * @param {string} method
 * @param {string} path
 * @param {number} now
 * @param {Keyring | null} [extraKeys] as in Verifier.verify
 * @returns {EnvelopeCheck}
 */
export function checkRequest(verifier, headers, method, path, now, extraKeys = null) {
  checkArguments(method, path, now);
  if (verifier !== null) return verifier.verify(headers, method, path, now, extraKeys);
  const found = extractEnvelopeHeaders(headers);
  if (found === null) return ABSENT;
  if (found instanceof EnvelopeError) return invalid(found);
  return invalid(E.unknownKid());
}
