// The payload document of SPEC.md section 2, read strictly: exactly the
// listed members, each of its exact type. Check 8 of section 5.

import { b64urlDecode, JsonError, JsonNumber, parseStrictJsonObject } from './encoding.js';
import { malformedPayload } from './errors.js';

export const AUTH_METHODS = Object.freeze(['bearer', 'dpop', 'mtls', 'spiffe', 'anonymous', 'bypass']);
const AUTH_METHOD_SET = new Set(AUTH_METHODS);

const MEMBERS = new Set([
  'ver', 'iss', 'aud', 'sub', 'tenant', 'client_id', 'scopes', 'roles',
  'auth_method', 'cnf', 'method', 'path', 'request_id', 'iat', 'exp',
]);
const CNF_MEMBERS = new Set(['jkt', 'x5t#S256', 'spiffe_id']);

const U32_MAX = 0xffffffffn;
const U64_MAX = 0xffffffffffffffffn;

/**
 * @typedef {object} DecodedPayload
 * @property {import('../index.js').EnvelopePayload} payload the members,
 *   `iat` and `exp` still unchecked against the headers
 * @property {bigint} iat exact, even beyond 2^53
 * @property {bigint} exp
 */

/**
 * Decodes the X-StellaOps-Identity-Envelope value: canonical base64url of
 * UTF-8 JSON, one object, no duplicate member at any depth, exactly the
 * members of SPEC.md section 2 with their types. `ver` is range-checked as
 * an unsigned 32-bit integer and `iat`/`exp` as unsigned 64-bit ones (the
 * Rust types), so a value out of range is malformed rather than compared.
 * @param {string} envelope
 * @returns {DecodedPayload | import('./errors.js').EnvelopeError}
 */
export function decodePayload(envelope) {
  const json = b64urlDecode(envelope);
  if (json === null) return malformedPayload('encoding');
  let root;
  try {
    root = parseStrictJsonObject(json);
  } catch (e) {
    if (!(e instanceof JsonError)) throw e;
    return malformedPayload(e.reason === 'duplicate_member' ? 'duplicate member' : 'json');
  }
  for (const name of root.keys()) {
    if (!MEMBERS.has(name)) return malformedPayload('members');
  }
  // Every member is required, nullable ones included: SPEC.md section 2
  // says "exactly these members".
  if (root.size !== MEMBERS.size) return malformedPayload('members');

  const ver = unsigned(root.get('ver'), U32_MAX);
  const iat = unsigned(root.get('iat'), U64_MAX);
  const exp = unsigned(root.get('exp'), U64_MAX);
  const iss = root.get('iss');
  const aud = root.get('aud');
  const sub = root.get('sub');
  const tenant = root.get('tenant');
  const clientId = root.get('client_id');
  const scopes = root.get('scopes');
  const roles = root.get('roles');
  const authMethod = root.get('auth_method');
  const cnf = root.get('cnf');
  const method = root.get('method');
  const path = root.get('path');
  const requestId = root.get('request_id');
  if (
    ver === null ||
    iat === null ||
    exp === null ||
    typeof iss !== 'string' ||
    typeof aud !== 'string' ||
    !isNullableString(sub) ||
    !isNullableString(tenant) ||
    !isNullableString(clientId) ||
    !isStringArray(scopes) ||
    !isStringArray(roles) ||
    typeof authMethod !== 'string' ||
    !AUTH_METHOD_SET.has(authMethod) ||
    typeof method !== 'string' ||
    typeof path !== 'string' ||
    typeof requestId !== 'string'
  ) {
    return malformedPayload('members');
  }
  if (!(cnf instanceof Map) || cnf.size !== CNF_MEMBERS.size) return malformedPayload('members');
  for (const [name, value] of cnf) {
    if (!CNF_MEMBERS.has(name) || !isNullableString(value)) return malformedPayload('members');
  }

  const payload = Object.freeze({
    ver: Number(ver),
    iss,
    aud,
    sub,
    tenant,
    client_id: clientId,
    scopes: Object.freeze(scopes),
    roles: Object.freeze(roles),
    auth_method: authMethod,
    cnf: Object.freeze({
      jkt: cnf.get('jkt'),
      'x5t#S256': cnf.get('x5t#S256'),
      spiffe_id: cnf.get('spiffe_id'),
    }),
    method,
    path,
    request_id: requestId,
    // Exact once check 10 has compared them with the headers (at most 15
    // digits); until then only the bigints are meaningful.
    iat: Number(iat),
    exp: Number(exp),
  });
  return { payload: /** @type {any} */ (payload), iat, exp };
}

/**
 * A JSON integer literal (no fraction, no exponent, no minus sign) no
 * greater than `max`, as serde reads an unsigned integer field; else null.
 * @param {unknown} value @param {bigint} max
 */
function unsigned(value, max) {
  if (!(value instanceof JsonNumber) || !value.integer || value.text.charCodeAt(0) === 0x2d) {
    return null;
  }
  const n = BigInt(value.text);
  return n <= max ? n : null;
}

/** @param {unknown} value */
function isNullableString(value) {
  return value === null || typeof value === 'string';
}

/** @param {unknown} value @returns {value is string[]} */
function isStringArray(value) {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}
