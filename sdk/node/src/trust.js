// Trust modes (SPEC.md section 6): what a service does with an envelope,
// as a pure function of the mode and the check's result, and the one place
// a rejection becomes a status and a problem+json body.
//
// | mode              | valid envelope         | no envelope        | invalid envelope        |
// |-------------------|------------------------|--------------------|-------------------------|
// | `ServiceEnforced` | ignored for authz      | service's own auth | ignored, logged         |
// | `Hybrid`          | identity from envelope | service's own auth | 401                     |
// | `GatewayEnforced` | identity from envelope | 401                | 401 (403 for audience)  |

import { trimWhitespace } from './encoding.js';

export const TrustMode = Object.freeze({
  ServiceEnforced: 'ServiceEnforced',
  Hybrid: 'Hybrid',
  GatewayEnforced: 'GatewayEnforced',
});

const BY_FOLDED = new Map([
  ['serviceenforced', TrustMode.ServiceEnforced],
  ['hybrid', TrustMode.Hybrid],
  ['gatewayenforced', TrustMode.GatewayEnforced],
]);

/**
 * Parses a trust mode case-insensitively, ignoring `_` and `-` and
 * surrounding whitespace (`gateway_enforced` works). Null when unknown.
 * @param {string} text
 * @returns {import('../index.js').TrustModeName | null}
 */
export function parseTrustMode(text) {
  const folded = trimWhitespace(text).replace(/[_-]/g, '').replace(/[A-Z]+/g, (s) => s.toLowerCase());
  return BY_FOLDED.get(folded) ?? null;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const SERVICE_AUTH = Object.freeze({ action: 'service_auth', ignored: null });

/**
 * The trust-mode table as a function.
 * @param {import('../index.js').TrustModeName} mode
 * @param {import('../index.js').EnvelopeCheck} check
 * @returns {import('../index.js').Action}
 */
export function decide(mode, check) {
  switch (mode) {
    case TrustMode.ServiceEnforced:
      // The service authorizes every request itself; a valid envelope is
      // not handed on, so it cannot be mistaken for an authorization.
      return check.kind === 'invalid'
        ? Object.freeze({ action: 'service_auth', ignored: check.error })
        : SERVICE_AUTH;
    case TrustMode.Hybrid:
      if (check.kind === 'valid') return Object.freeze({ action: 'use_envelope', identity: check.identity });
      if (check.kind === 'absent') return SERVICE_AUTH;
      return reject(401, 'envelope_invalid', check.error);
    case TrustMode.GatewayEnforced:
      if (check.kind === 'valid') return Object.freeze({ action: 'use_envelope', identity: check.identity });
      if (check.kind === 'absent') return reject(401, 'envelope_required', null);
      return check.error.code === 'audience_mismatch'
        ? reject(403, 'envelope_audience_mismatch', check.error)
        : reject(401, 'envelope_invalid', check.error);
    default:
      throw new TypeError('decide: unknown trust mode');
  }
}

/**
 * @param {401 | 403} status
 * @param {import('../index.js').RejectionCode} code
 * @param {import('./errors.js').EnvelopeError | null} cause
 * @returns {import('../index.js').Action}
 */
function reject(status, code, cause) {
  return Object.freeze({ action: 'reject', rejection: Object.freeze({ status, code, cause }) });
}

const TITLES = { 401: 'Unauthorized', 403: 'Forbidden' };

/**
 * The application/problem+json body for a rejection, byte for byte what the
 * Rust middleware writes (its members in the same order). Names the failed
 * check by its code and never echoes a header value.
 * @param {import('../index.js').Rejection} rejection
 */
export function problemBody(rejection) {
  return JSON.stringify({
    envelope_error: rejection.cause === null ? null : rejection.cause.code,
    error: rejection.code,
    status: rejection.status,
    title: TITLES[rejection.status] ?? 'error',
    type: 'about:blank',
  });
}

/**
 * The headers of a rejection response: problem+json, and never cached
 * (the same URL may succeed with another envelope).
 * @param {string} body
 */
export function problemHeaders(body) {
  return {
    'content-type': PROBLEM_CONTENT_TYPE,
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(body)),
  };
}
