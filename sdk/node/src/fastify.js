// The Fastify plugin. Registered with fastify.register, it applies to the
// instance it is registered on and every route of it (it opts out of
// Fastify's encapsulation, as fastify-plugin would, without the
// dependency). It decides each request in an onRequest hook, before the
// body is read, so a rejected request costs no body parsing.

import { attach, evaluate, resolveOptions } from './shell.js';
import { problemBody, PROBLEM_CONTENT_TYPE } from './trust.js';

/**
 * @param {any} fastify
 * @param {import('../index.js').MiddlewareOptions} options
 * @param {(err?: Error) => void} done
 */
export function fastifyEnvelope(fastify, options, done) {
  let resolved;
  try {
    resolved = resolveOptions(options);
  } catch (e) {
    done(/** @type {Error} */ (e));
    return;
  }
  // Declared up front (null until the hook runs) so Fastify keeps one
  // request shape; a second registration reuses them.
  for (const name of ['stellaIdentity', 'stellaEnvelope', 'stellaConfig']) {
    if (!fastify.hasRequestDecorator(name)) fastify.decorateRequest(name, null);
  }
  /** @param {any} request @param {any} reply @param {(err?: Error) => void} next @param {import('./shell.js').Decided} decided */
  const proceed = (request, reply, next, decided) => {
    if (decided.rejection !== null) {
      // Answering without calling next() ends the request here. The body
      // goes as bytes: Fastify appends "; charset=utf-8" to a JSON type
      // sent as a string, and the response should read as the Rust
      // layer's does.
      reply
        .code(decided.rejection.status)
        .header('content-type', PROBLEM_CONTENT_TYPE)
        .header('cache-control', 'no-store')
        .send(Buffer.from(problemBody(decided.rejection), 'utf8'));
      return;
    }
    attach(request, decided.config, decided.outcome);
    next();
  };
  fastify.addHook('onRequest', (request, reply, next) => {
    // originalUrl: the target as received, before any rewriteUrl.
    let decided;
    try {
      decided = evaluate(resolved, request.raw.rawHeaders, request.method, request.originalUrl);
    } catch (e) {
      next(/** @type {Error} */ (e)); // a bug fails the request closed (500)
      return;
    }
    // A promise only while an unknown kid waits for a JWKS refetch.
    if (decided instanceof Promise) {
      decided.then((d) => proceed(request, reply, next, d), next);
      return;
    }
    proceed(request, reply, next, decided);
  });
  done();
}

// fastify-plugin's markers, set by hand: apply to the parent scope, and a
// name for Fastify's error messages and printPlugins().
Object.defineProperty(fastifyEnvelope, Symbol.for('skip-override'), { value: true });
Object.defineProperty(fastifyEnvelope, Symbol.for('fastify.display-name'), { value: '@stellaops/envelope' });

export default fastifyEnvelope;
