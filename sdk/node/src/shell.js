// The shell shared by the node:http, Express and Fastify adapters: it takes
// one configuration snapshot, reads the clock and the request, calls the
// pure checkRequest and decide, and turns the action into what a handler
// sees (the EnvelopeOutcome of the Rust middleware) or a rejection.
//
// With a JWKS URL, an EdDSA envelope whose kid no key has (in Hybrid and
// GatewayEnforced) asks the fetcher for a refetch and waits for it at most
// UNKNOWN_KID_WAIT_MS before it is checked again: only then is the decision
// a promise. Every other request is decided synchronously.

import { ServiceConfig } from './config.js';
import { EnvelopeError } from './errors.js';
import { extractEnvelopeHeaders } from './headers.js';
import { UNKNOWN_KID_WAIT_MS } from './jwks.js';
import { isValidKid } from './keys.js';
import { ConfigHandle } from './reload.js';
import { decide, problemBody, problemHeaders, TrustMode } from './trust.js';
import { checkRequest } from './verify.js';

/**
 * @typedef {object} ResolvedOptions
 * @property {() => { config: ServiceConfig, jwks: import('./jwks.js').JwksKeys | null }} live
 *   the configuration for the next request and the fetcher of its JWKS keys
 * @property {() => number} clock unix seconds
 * @property {import('../index.js').Logger} logger
 */

/** Unix seconds from the system clock. */
export const systemClock = () => Math.floor(Date.now() / 1000);

/**
 * @param {import('../index.js').MiddlewareOptions} options
 * @returns {ResolvedOptions}
 */
export function resolveOptions(options) {
  const { config, clock = systemClock, logger = console } = options ?? {};
  let live;
  if (config instanceof ConfigHandle) live = () => config.currentWithJwks();
  else if (config instanceof ServiceConfig) {
    // Only a ConfigHandle fetches keys: a service that silently never
    // fetched them would refuse every envelope they sign.
    if (config.jwks !== null) {
      throw new TypeError(
        'envelope middleware: a configuration with Router__IdentityEnvelopeJwksUrl needs a ConfigHandle, which fetches the keys',
      );
    }
    const fixed = Object.freeze({ config, jwks: null });
    live = () => fixed;
  } else throw new TypeError('envelope middleware: options.config must be a ConfigHandle or a ServiceConfig');
  if (typeof clock !== 'function') throw new TypeError('envelope middleware: options.clock must be a function');
  return { live, clock, logger };
}

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * The path of a request target as received, without the query: what the
 * envelope's `path` is compared with, byte for byte (no decoding, no
 * normalization). An absolute-form target (`http://host/p`) yields its path.
 * @param {string} target `req.url` or `req.originalUrl`
 */
export function requestPath(target) {
  const absolute = ABSOLUTE_FORM.exec(target);
  const rest = absolute === null ? target : target.slice(absolute[0].length);
  let end = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x3f /* ? */ || c === 0x23 /* # */) {
      end = i;
      break;
    }
  }
  const path = rest.slice(0, end);
  return path === '' && absolute !== null ? '/' : path;
}

const SERVICE_AUTH = Object.freeze({ kind: 'service_auth', ignoredInvalid: null });

/**
 * @typedef {{ config: ServiceConfig, outcome: import('../index.js').EnvelopeOutcome, rejection: null }
 *   | { config: ServiceConfig, outcome: null, rejection: import('../index.js').Rejection }} Decided
 */

/**
 * Decides one request with one configuration snapshot: synchronously, or,
 * for an unknown kid that a JWKS refetch may bring, a promise that resolves
 * once the refetch ended or UNKNOWN_KID_WAIT_MS passed.
 * @param {ResolvedOptions} options
 * @param {readonly string[]} rawHeaders node's `req.rawHeaders`: one entry per field line
 * @param {string} method
 * @param {string} target the request target as received
 * @returns {Decided | Promise<Decided>}
 */
export function evaluate(options, rawHeaders, method, target) {
  // The one read of the configuration for this request.
  const { config, jwks } = options.live();
  if (!config.enabled) return { config, outcome: SERVICE_AUTH, rejection: null };
  const path = requestPath(target);
  const now = options.clock();
  const check = checkRequest(config.verifier, rawHeaders, method, path, now, jwks?.keys() ?? null);
  const refetch = refetchFor(config, jwks, rawHeaders, check);
  if (refetch === null) return conclude(options, config, check);
  return waitAtMost(refetch, UNKNOWN_KID_WAIT_MS).then(() =>
    conclude(options, config, checkRequest(config.verifier, rawHeaders, method, path, now, jwks?.keys() ?? null)),
  );
}

/**
 * The refetch to wait for before checking again, when the envelope's kid is
 * unknown and the JWKS could still bring it: an EdDSA envelope (the only
 * keys a JWKS lists) with a well-formed kid, in a mode that uses envelopes.
 * Null: decide now.
 * @param {ServiceConfig} config
 * @param {import('./jwks.js').JwksKeys | null} jwks
 * @param {readonly string[]} rawHeaders
 * @param {import('../index.js').EnvelopeCheck} check
 */
function refetchFor(config, jwks, rawHeaders, check) {
  if (jwks === null || config.mode === TrustMode.ServiceEnforced) return null;
  if (check.kind !== 'invalid' || check.error.code !== 'unknown_kid') return null;
  const found = extractEnvelopeHeaders(rawHeaders);
  if (found === null || found instanceof EnvelopeError) return null;
  if (found.alg !== 'EdDSA' || !isValidKid(found.kid)) return null;
  return jwks.refetchForUnknownKid();
}

/** @param {Promise<void>} promise @param {number} ms */
function waitAtMost(promise, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    promise.then(() => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

/**
 * The trust mode's decision on a check, logged when an envelope is ignored
 * or rejected.
 * @param {ResolvedOptions} options
 * @param {ServiceConfig} config
 * @param {import('../index.js').EnvelopeCheck} check
 * @returns {Decided}
 */
function conclude(options, config, check) {
  const action = decide(config.mode, check);
  switch (action.action) {
    case 'use_envelope':
      return {
        config,
        outcome: Object.freeze({ kind: 'trusted', identity: action.identity }),
        rejection: null,
      };
    case 'service_auth':
      if (action.ignored === null) return { config, outcome: SERVICE_AUTH, rejection: null };
      options.logger.warn(
        `invalid envelope ignored (mode ${config.mode}): ${action.ignored.code}: ${action.ignored.message}`,
      );
      return {
        config,
        outcome: Object.freeze({ kind: 'service_auth', ignoredInvalid: action.ignored }),
        rejection: null,
      };
    case 'reject': {
      const { cause } = action.rejection;
      if (cause !== null) {
        options.logger.warn(`envelope rejected (mode ${config.mode}): ${cause.code}: ${cause.message}`);
      }
      return { config, outcome: null, rejection: action.rejection };
    }
  }
}

/**
 * Answers a node ServerResponse (node:http, Express) with a rejection.
 * @param {import('node:http').ServerResponse} res
 * @param {import('../index.js').Rejection} rejection
 */
export function sendRejection(res, rejection) {
  const body = problemBody(rejection);
  res.writeHead(rejection.status, problemHeaders(body));
  res.end(body);
}

/**
 * Marks a request with the decision. The identity is set only for a
 * trusted envelope, and only here, after every check and the trust mode.
 * @param {any} req
 * @param {ServiceConfig} config
 * @param {import('../index.js').EnvelopeOutcome} outcome
 */
export function attach(req, config, outcome) {
  req.stellaConfig = config;
  req.stellaEnvelope = outcome;
  req.stellaIdentity = outcome.kind === 'trusted' ? outcome.identity : null;
}
