// The six envelope headers: finding them among a request's field lines
// (SPEC.md section 1, check 1 of section 5) and the exact signing input
// (section 3).

import {
  duplicateHeader,
  headerTooLarge,
  malformedHeader,
  missingHeader,
} from './errors.js';

export const HEADER_ENVELOPE = 'X-StellaOps-Identity-Envelope';
export const HEADER_SIGNATURE = 'X-StellaOps-Identity-Envelope-Signature';
export const HEADER_ALG = 'X-StellaOps-Identity-Envelope-Alg';
export const HEADER_KID = 'X-StellaOps-Identity-Envelope-Kid';
export const HEADER_IAT = 'X-StellaOps-Identity-Envelope-Iat';
export const HEADER_EXP = 'X-StellaOps-Identity-Envelope-Exp';

/** All six, in the order of the fields of EnvelopeHeaders. */
export const HEADER_NAMES = Object.freeze([
  HEADER_ENVELOPE,
  HEADER_SIGNATURE,
  HEADER_ALG,
  HEADER_KID,
  HEADER_IAT,
  HEADER_EXP,
]);

/** Longest X-StellaOps-Identity-Envelope value accepted, in bytes. */
export const MAX_ENVELOPE_LEN = 16 * 1024;
/** Longest value accepted for any of the other five headers, in bytes. */
export const MAX_SMALL_HEADER_LEN = 256;
/** First line of the signing input. */
export const SIGNING_DOMAIN = 'StellaOps-Identity-Envelope/1';

const INDEX_BY_LOWER_NAME = new Map(HEADER_NAMES.map((name, i) => [name.toLowerCase(), i]));
const SHORTEST_NAME = HEADER_ENVELOPE.length;
const LONGEST_NAME = HEADER_SIGNATURE.length;

/**
 * The index of the envelope header `name` names, or -1. Only ASCII letters
 * fold: String.prototype.toLowerCase would also map, say, the Kelvin sign
 * U+212A to "k", which HTTP (and the Rust crate) do not.
 * @param {string} name
 */
function headerIndex(name) {
  if (name.length < SHORTEST_NAME || name.length > LONGEST_NAME) return -1;
  const index = INDEX_BY_LOWER_NAME.get(name.toLowerCase());
  if (index === undefined) return -1;
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) > 0x7e) return -1;
  }
  return index;
}

/**
 * Calls `visit(name, value)` for every field line in `headers`, in order.
 *
 * Accepted forms:
 * - node's `req.rawHeaders`: a flat array `[name, value, name, value, ...]`,
 *   one entry per field line (the only form in which node shows a header
 *   sent twice as two lines; `req.headers` joins them);
 * - an array of `[name, value]` pairs (the vectors' form);
 * - an object such as `req.headers`, a value being a string or an array of
 *   strings (one per field line), `undefined` meaning absent;
 * - a Map, or a fetch `Headers` (which joins repeated headers with ", ":
 *   the joined value has a space and is refused as malformed_header).
 * @param {unknown} headers
 * @param {(name: string, value: string) => void} visit
 */
function forEachField(headers, visit) {
  if (Array.isArray(headers)) {
    if (headers.length === 0) return;
    if (Array.isArray(headers[0])) {
      for (const pair of headers) {
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new TypeError('envelope headers: expected [name, value] pairs');
        }
        visit(fieldName(pair[0]), fieldValue(pair[1]));
      }
      return;
    }
    if (headers.length % 2 !== 0) {
      throw new TypeError('envelope headers: a flat raw header list must have an even length');
    }
    for (let i = 0; i < headers.length; i += 2) {
      visit(fieldName(headers[i]), fieldValue(headers[i + 1]));
    }
    return;
  }
  if (headers === null || typeof headers !== 'object') {
    throw new TypeError('envelope headers: expected raw headers, pairs, an object or a Map');
  }
  /** @type {Iterable<[unknown, unknown]>} */
  const entries =
    headers instanceof Map || headers instanceof Headers ? headers.entries() : Object.entries(headers);
  for (const [name, value] of entries) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) {
      for (const one of value) visit(fieldName(name), fieldValue(one));
    } else {
      visit(fieldName(name), fieldValue(value));
    }
  }
}

/** @param {unknown} name */
function fieldName(name) {
  if (typeof name !== 'string') throw new TypeError('envelope headers: a header name is not a string');
  return name;
}

/**
 * Header values are strings as node gives them (bytes as latin1); raw bytes
 * are read the same way.
 * @param {unknown} value
 */
function fieldValue(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
  }
  throw new TypeError('envelope headers: a header value is not a string');
}

/**
 * The envelope headers of a request: `null` when none of the six is present
 * ("no envelope"); an EnvelopeError when only some are, when one appears on
 * two field lines (whatever their case), when a value is too long or is not
 * visible ASCII. Field lines are checked in order and the first problem
 * wins, then the first missing header in HEADER_NAMES order, as in the Rust
 * crate.
 * @param {unknown} headers see forEachField
 * @returns {import('../index.js').EnvelopeHeaders | null | import('./errors.js').EnvelopeError}
 */
export function extractEnvelopeHeaders(headers) {
  /** @type {(string | undefined)[]} */
  const slots = [undefined, undefined, undefined, undefined, undefined, undefined];
  /** @type {import('./errors.js').EnvelopeError | null} */
  let error = null;
  forEachField(headers, (name, value) => {
    if (error !== null) return;
    const index = headerIndex(name);
    if (index < 0) return;
    if (slots[index] !== undefined) {
      error = duplicateHeader(HEADER_NAMES[index]);
      return;
    }
    const problem = checkValue(value, index === 0 ? MAX_ENVELOPE_LEN : MAX_SMALL_HEADER_LEN);
    if (problem === 'large') {
      error = headerTooLarge(HEADER_NAMES[index]);
      return;
    }
    if (problem === 'malformed') {
      error = malformedHeader(HEADER_NAMES[index]);
      return;
    }
    slots[index] = value;
  });
  if (error !== null) return error;
  if (slots.every((slot) => slot === undefined)) return null;
  const missing = slots.indexOf(undefined);
  if (missing >= 0) return missingHeader(HEADER_NAMES[missing]);
  const [envelope, signature, alg, kid, iat, exp] = /** @type {string[]} */ (slots);
  return { envelope, signature, alg, kid, iat, exp };
}

/**
 * 'large' when `value` is longer than `limit` bytes, 'malformed' when it
 * has a byte outside visible ASCII (0x21 to 0x7E), null when it is fine.
 * Node decodes header bytes as latin1, one character per byte; a character
 * above U+00FF can only come from a caller's own string, counted in UTF-8.
 * @param {string} value @param {number} limit
 * @returns {'large' | 'malformed' | null}
 */
function checkValue(value, limit) {
  if (value.length > limit) return 'large';
  let wide = false;
  let visible = true;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      visible = false;
      if (c > 0xff) {
        wide = true;
        break;
      }
    }
  }
  if (visible) return null;
  if (wide && Buffer.byteLength(value, 'utf8') > limit) return 'large';
  return 'malformed';
}

/**
 * The exact string signed: the domain line, then the Alg, Kid, Iat and Exp
 * header values, then the envelope header value, joined by LF. No value can
 * contain LF (all are visible ASCII), so the join is unambiguous.
 * @param {import('../index.js').EnvelopeHeaders} h
 */
export function signingInput(h) {
  return `${SIGNING_DOMAIN}\n${h.alg}\n${h.kid}\n${h.iat}\n${h.exp}\n${h.envelope}`;
}
