// Why an envelope was refused. Each error has the stable code of SPEC.md
// section 5, used in logs, metrics labels and problem bodies. Messages name
// the failed check and never echo header values.

/** @typedef {import('../index.js').EnvelopeErrorCode} EnvelopeErrorCode */

/** A failed envelope check. */
export class EnvelopeError extends Error {
  /**
   * @param {EnvelopeErrorCode} code
   * @param {string} message
   * @param {string | null} [header] the header concerned, for check 1
   */
  constructor(code, message, header = null) {
    super(message);
    this.name = 'EnvelopeError';
    /** The SPEC.md section 5 code, e.g. `bad_signature`. */
    this.code = code;
    /** For the header checks (check 1): which of the six headers. */
    this.header = header;
  }
}

/** @param {string} header */
export const missingHeader = (header) =>
  new EnvelopeError('missing_header', `envelope header ${header} is missing`, header);
/** @param {string} header */
export const duplicateHeader = (header) =>
  new EnvelopeError('duplicate_header', `envelope header ${header} appears more than once`, header);
/** @param {string} header */
export const headerTooLarge = (header) =>
  new EnvelopeError('header_too_large', `envelope header ${header} is too large`, header);
/** @param {string} header */
export const malformedHeader = (header) =>
  new EnvelopeError('malformed_header', `envelope header ${header} is not visible ascii`, header);

export const unsupportedAlg = () =>
  new EnvelopeError('unsupported_alg', 'envelope algorithm is not HS256 or EdDSA');
export const unknownKid = () =>
  new EnvelopeError('unknown_kid', 'envelope key id is not in the accepted keyring');
/** @param {string} kid @param {string} header @param {string} key */
export const algNotAllowedForKey = (kid, header, key) =>
  new EnvelopeError(
    'alg_not_allowed_for_key',
    `envelope algorithm ${header} is not the algorithm of key ${kid} (${key})`,
  );
export const malformedTimestamp = () =>
  new EnvelopeError(
    'malformed_timestamp',
    'envelope iat or exp header is not a canonical decimal integer',
  );
export const malformedSignature = () =>
  new EnvelopeError('malformed_signature', 'envelope signature is not canonical unpadded base64url');
/** @param {string} kid */
export const badSignature = (kid) =>
  new EnvelopeError('bad_signature', `envelope signature does not verify with key ${kid}`);
/** @param {string} what */
export const malformedPayload = (what) =>
  new EnvelopeError('malformed_payload', `envelope payload is malformed: ${what}`);
/** @param {number} version */
export const unsupportedVersion = (version) =>
  new EnvelopeError('unsupported_version', `envelope payload version ${version} is not supported`);
export const timestampMismatch = () =>
  new EnvelopeError('timestamp_mismatch', 'envelope payload iat/exp differ from the signed headers');
/** @param {number} lifetime @param {number} max */
export const badLifetime = (lifetime, max) =>
  new EnvelopeError('bad_lifetime', `envelope lifetime of ${lifetime} s is outside 1..=${max} s`);
/** @param {number} ago */
export const expired = (ago) =>
  new EnvelopeError('expired', `envelope expired ${ago} s ago (beyond the allowed clock skew)`);
/** @param {number} ahead */
export const issuedInFuture = (ahead) =>
  new EnvelopeError(
    'issued_in_future',
    `envelope issued ${ahead} s in the future (beyond the allowed clock skew)`,
  );
export const issuerMismatch = () =>
  new EnvelopeError('issuer_mismatch', 'envelope issuer is not the configured gateway');
/**
 * The audience is signed by the gateway, so naming it is safe and is what
 * an operator needs to find the misrouted request.
 * @param {string} expected @param {string} seen
 */
export const audienceMismatch = (expected, seen) =>
  new EnvelopeError(
    'audience_mismatch',
    `envelope audience ${JSON.stringify(seen)} is not this service (${JSON.stringify(expected)})`,
  );
/** @param {'method' | 'path'} what */
export const requestMismatch = (what) =>
  new EnvelopeError('request_mismatch', `envelope was issued for another request (${what} differs)`);
