// @stellaops/envelope: verifier of the Stella identity envelope
// (envelope/SPEC.md in the Stella Gateway repository).
//
// The core (verify, decide, the config parsers) is pure: it takes `now`
// and plain data, reads no clock and does no I/O. ConfigHandle adds the
// file and the reload triggers; withEnvelope and expressEnvelope (here) and
// fastifyEnvelope (@stellaops/envelope/fastify) are the thin shells that
// supply the clock and the request.

export {
  b64urlDecode,
  b64urlEncode,
  parseCanonicalDecimal,
  parseStrictJsonObject,
  JsonError,
  JsonNumber,
  MAX_JSON_DEPTH,
} from './encoding.js';
export { EnvelopeError } from './errors.js';
export {
  HEADER_ALG,
  HEADER_ENVELOPE,
  HEADER_EXP,
  HEADER_IAT,
  HEADER_KID,
  HEADER_NAMES,
  HEADER_SIGNATURE,
  MAX_ENVELOPE_LEN,
  MAX_SMALL_HEADER_LEN,
  SIGNING_DOMAIN,
  extractEnvelopeHeaders,
  signingInput,
} from './headers.js';
export { Key, KeyError, Keyring, MAX_KID_LEN, MIN_HMAC_SECRET_LEN, isValidKid } from './keys.js';
export {
  DEFAULT_JWKS_COOLDOWN_SECONDS,
  DEFAULT_JWKS_REFRESH_SECONDS,
  JWKS_FETCH_TIMEOUT_MS,
  JWKS_MAX_BYTES,
  JwksError,
  JwksKeys,
  UNKNOWN_KID_WAIT_MS,
  checkJwksUrl,
  fetchJwks,
  parseJwks,
} from './jwks.js';
export { AUTH_METHODS, decodePayload } from './payload.js';
export {
  DEFAULT_CLOCK_SKEW_SECONDS,
  DEFAULT_MAX_LIFETIME_SECONDS,
  VERSION,
  Verifier,
  VerifiedIdentity,
  checkRequest,
} from './verify.js';
export {
  PROBLEM_CONTENT_TYPE,
  TrustMode,
  decide,
  parseTrustMode,
  problemBody,
  problemHeaders,
} from './trust.js';
export {
  ConfigProblem,
  ENV_ACCEPTED_KEYS,
  ENV_AUDIENCE,
  ENV_CLOCK_SKEW,
  ENV_CONFIG_FILE,
  ENV_ENABLED,
  ENV_ISSUER,
  ENV_JWKS_COOLDOWN,
  ENV_JWKS_REFRESH,
  ENV_JWKS_URL,
  ENV_MAX_LIFETIME,
  ENV_SIGNING_KEY,
  ENV_SIGNING_KEY_ID,
  ENV_TRUST_MODE,
  FILE_VARIABLES,
  ServiceConfig,
  configFilePath,
  configFromEnv,
  configFromEnvAndFile,
  foldEnvName,
  loadConfig,
  parseConfigFile,
  readConfigFile,
} from './config.js';
export { ConfigHandle, EnvelopeConfigError } from './reload.js';
export { requestPath, systemClock } from './shell.js';
export { expressEnvelope, withEnvelope } from './http.js';
