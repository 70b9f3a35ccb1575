// Adapters for node:http and Express. Both read node's rawHeaders (one
// entry per field line: req.headers joins a header sent twice, hiding the
// duplicate), answer rejections themselves, and hand every other request on
// with req.stellaIdentity, req.stellaEnvelope and req.stellaConfig set.

import { attach, evaluate, resolveOptions, sendRejection } from './shell.js';

const INTERNAL_ERROR = JSON.stringify({
  status: 500,
  title: 'Internal Server Error',
  type: 'about:blank',
});

/**
 * Wraps a node:http request handler.
 *
 *     http.createServer(withEnvelope(handler, { config: handle }))
 *
 * @template {import('node:http').IncomingMessage} Req
 * @template {import('node:http').ServerResponse} Res
 * @param {(req: Req, res: Res) => unknown} handler
 * @param {import('../index.js').MiddlewareOptions} options
 * @returns {(req: Req, res: Res) => unknown}
 */
export function withEnvelope(handler, options) {
  if (typeof handler !== 'function') throw new TypeError('withEnvelope: handler must be a function');
  const resolved = resolveOptions(options);
  /** @param {unknown} e @param {import('node:http').ServerResponse} res */
  const failed = (e, res) => {
    // A bug (a clock returning fractional seconds, say) fails the request
    // closed rather than taking the process down with it.
    resolved.logger.error(`envelope check failed: ${/** @type {Error} */ (e).message}`);
    res.writeHead(500, { 'content-type': 'application/problem+json', 'cache-control': 'no-store' });
    res.end(INTERNAL_ERROR);
    return undefined;
  };
  /** @param {Req} req @param {Res} res @param {import('./shell.js').Decided} decided */
  const proceed = (req, res, decided) => {
    if (decided.rejection !== null) {
      sendRejection(res, decided.rejection);
      return undefined;
    }
    attach(req, decided.config, decided.outcome);
    return handler(req, res);
  };
  return (req, res) => {
    let decided;
    try {
      decided = evaluate(resolved, req.rawHeaders, req.method ?? '', originalTarget(req));
    } catch (e) {
      return failed(e, res);
    }
    // A promise only while an unknown kid waits for a JWKS refetch.
    if (decided instanceof Promise) {
      return decided.then(
        (d) => proceed(req, res, d),
        (e) => failed(e, res),
      );
    }
    return proceed(req, res, decided);
  };
}

/**
 * Express middleware (Express 4 and 5). Install it before the routes that
 * use req.stellaIdentity. A bug in the check is passed to `next(err)`.
 *
 *     app.use(expressEnvelope({ config: handle }))
 *
 * @param {import('../index.js').MiddlewareOptions} options
 * @returns {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, next: (err?: unknown) => void) => void}
 */
export function expressEnvelope(options) {
  const resolved = resolveOptions(options);
  /** @param {any} req @param {any} res @param {(err?: unknown) => void} next @param {import('./shell.js').Decided} decided */
  const proceed = (req, res, next, decided) => {
    if (decided.rejection !== null) {
      sendRejection(res, decided.rejection);
      return;
    }
    attach(req, decided.config, decided.outcome);
    next();
  };
  return (req, res, next) => {
    let decided;
    try {
      decided = evaluate(resolved, req.rawHeaders, req.method ?? '', originalTarget(req));
    } catch (e) {
      next(e);
      return;
    }
    if (decided instanceof Promise) {
      decided.then((d) => proceed(req, res, next, d), next);
      return;
    }
    proceed(req, res, next, decided);
  };
}

/**
 * The request target as the client sent it. Express (and connect) rewrite
 * req.url under a mount point and keep the original in req.originalUrl;
 * the envelope's path is the full one.
 * @param {import('node:http').IncomingMessage & { originalUrl?: string }} req
 */
function originalTarget(req) {
  return req.originalUrl ?? req.url ?? '';
}
