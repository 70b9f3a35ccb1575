// Sample service behind Stella Gateway in Node: Express, with the envelope
// verified by @stellaops/envelope (sdk/node).
//
// The SDK reads the Router__* variables (envelope/SPEC.md section 7): trust
// mode, accepted keys, audience, issuer, and Router__ConfigFile, reloaded
// when the file changes and on SIGHUP. SAMPLE_LISTEN is the address to bind
// (host:port, default 127.0.0.1:0, an ephemeral port); once listening the
// service prints one line, SAMPLE_READY {"addr": ...}, on stdout.
//
// Routes: GET /health (outside the envelope check, for health checks), and
// GET /node/whoami and GET|POST /node/orders/:orderId, which answer with the
// identity the gateway vouched for. Rejections (401 envelope_required,
// envelope_invalid, ...) are answered by the SDK's middleware.

import express from 'express';
import { ConfigHandle, expressEnvelope } from '@stellaops/envelope';

const LANGUAGE = 'node';

const handle = ConfigHandle.loadOrExit(); // every problem as "VARIABLE: problem", exit 2
handle.watch({ sighup: true });

function identityJson(id) {
  const cnf = id.confirmation;
  return {
    subject: id.subject,
    tenant: id.tenant,
    client_id: id.clientId,
    scopes: id.scopes,
    roles: id.roles,
    auth_method: id.authMethod,
    cnf: { jkt: cnf.jkt, 'x5t#S256': cnf.x5tS256, spiffe_id: cnf.spiffeId },
    kid: id.kid,
    issuer: id.issuer,
    audience: id.audience,
    request_id: id.requestId,
  };
}

function answer(req, res, body) {
  const identity = req.stellaIdentity; // null unless valid and trusted
  if (identity === null) {
    // Hybrid (or ServiceEnforced) without a trusted envelope: a real service
    // authenticates the caller itself here; this one has no authentication
    // of its own.
    res.writeHead(401, { 'content-type': 'application/problem+json' });
    const problem = { type: 'about:blank', title: 'Unauthorized', status: 401, error: 'service_auth_required' };
    res.end(JSON.stringify(problem));
    return;
  }
  const mode = req.stellaConfig.mode; // the configuration this request was decided with
  res.json({ language: LANGUAGE, mode, ...body, identity: identityJson(identity) });
}

// The envelope check covers everything under /node; it checks the path as
// received (req.originalUrl), /node included, as the gateway signed it.
const api = express.Router();
api.use(expressEnvelope({ config: handle }));
api.get('/whoami', (req, res) => answer(req, res, {}));
api.route('/orders/:orderId')
  .get((req, res) => answer(req, res, { order: req.params.orderId, method: req.method }))
  .post((req, res) => answer(req, res, { order: req.params.orderId, method: req.method }));

const app = express();
app.get('/health', (req, res) => res.json({ status: 'ok' }));
app.use('/node', api);

const listen = process.env.SAMPLE_LISTEN ?? '127.0.0.1:0';
const at = listen.lastIndexOf(':');
const server = app.listen(Number(listen.slice(at + 1)), listen.slice(0, at), (err) => {
  if (err) {
    console.error(`cannot listen on ${listen}: ${err.message}`);
    process.exit(1);
  }
  const { address, port } = server.address();
  const ready = { addr: `${address}:${port}`, language: LANGUAGE, mode: handle.current().mode };
  console.log(`SAMPLE_READY ${JSON.stringify(ready)}`);
});
