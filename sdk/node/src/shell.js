// The shell shared by the node:http, Express and Fastify adapters: it takes
// one configuration snapshot, reads the clock and the request, calls the
// pure checkRequest and decide, and turns the action into what a handler
// sees (the EnvelopeOutcome of the Rust middleware) or a rejection.

import { ServiceConfig } from './config.js';
import { ConfigHandle } from './reload.js';
import { decide, problemBody, problemHeaders } from './trust.js';
import { checkRequest } from './verify.js';

/**
 * @typedef {object} ResolvedOptions
 * @property {() => ServiceConfig} snapshot
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
  let snapshot;
  if (config instanceof ConfigHandle) snapshot = () => config.current();
  else if (config instanceof ServiceConfig) snapshot = () => config;
  else throw new TypeError('envelope middleware: options.config must be a ConfigHandle or a ServiceConfig');
  if (typeof clock !== 'function') throw new TypeError('envelope middleware: options.clock must be a function');
  return { snapshot, clock, logger };
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
 * Decides one request with one configuration snapshot.
 * @param {ResolvedOptions} options
 * @param {readonly string[]} rawHeaders node's `req.rawHeaders`: one entry per field line
 * @param {string} method
 * @param {string} target the request target as received
 * @returns {{ config: ServiceConfig, outcome: import('../index.js').EnvelopeOutcome, rejection: null }
 *   | { config: ServiceConfig, outcome: null, rejection: import('../index.js').Rejection }}
 */
export function evaluate(options, rawHeaders, method, target) {
  // The one read of the configuration for this request.
  const config = options.snapshot();
  if (!config.enabled) return { config, outcome: SERVICE_AUTH, rejection: null };
  const check = checkRequest(config.verifier, rawHeaders, method, requestPath(target), options.clock());
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
