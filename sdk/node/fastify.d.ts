// Types of @stellaops/envelope/fastify: the plugin, and the request
// properties it declares.

import type { FastifyPluginCallback } from 'fastify';
import type { EnvelopeOutcome, MiddlewareOptions, ServiceConfig, VerifiedIdentity } from './index.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified identity when the trust mode trusts the envelope, else null. */
    stellaIdentity: VerifiedIdentity | null;
    /** What the plugin concluded; null only before its onRequest hook ran. */
    stellaEnvelope: EnvelopeOutcome | null;
    /** The configuration snapshot this request is decided and served with. */
    stellaConfig: ServiceConfig | null;
  }
}

/**
 * Decides every request of the instance it is registered on (and its
 * children) in an onRequest hook; answers rejections with problem+json.
 */
export const fastifyEnvelope: FastifyPluginCallback<MiddlewareOptions>;
export default fastifyEnvelope;
