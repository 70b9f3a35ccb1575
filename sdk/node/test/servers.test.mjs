// The middleware on real servers (port 0, loopback) for node:http, Express
// and Fastify: the same table of requests through each, the status, body
// and headers a client sees, what the handler sees, and that a request in
// flight keeps the configuration it arrived with.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { ConfigHandle, expressEnvelope, VerifiedIdentity, withEnvelope } from '../src/index.js';
import { fastifyEnvelope } from '../src/fastify.js';
import {
  captureLogger,
  tempDir,
  validVector,
  vectorAcceptedKeys,
  vectorConfig,
  vectors,
} from './support.mjs';

const clock = () => vectors.now;
const invalidVector = (name) => vectors.invalid.find((x) => x.name === name);
const HS = validVector('hs256_bearer').headers;
const ED = validVector('eddsa_dpop').headers;

/** What a handler saw, as the response body. */
function describe(req) {
  return {
    trusted: req.stellaIdentity instanceof VerifiedIdentity,
    subject: req.stellaIdentity?.subject ?? null,
    outcome: req.stellaEnvelope.kind,
    ignored: req.stellaEnvelope.ignoredInvalid?.code ?? null,
    mode: req.stellaConfig.mode,
  };
}

/**
 * A started server of `kind` whose GET /orders/:id answers describe(req),
 * after `state.hold` resolves when a test holds requests in flight.
 */
async function start(kind, options, state = {}) {
  state.calls = 0;
  const handle = async (req) => {
    state.calls++;
    if (state.hold) await state.hold;
    return describe(req);
  };
  if (kind === 'fastify') {
    const app = Fastify();
    await app.register(fastifyEnvelope, options);
    app.get('/orders/:id', (request) => handle(request));
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: app.server.address().port, close: () => app.close() };
  }
  let server;
  if (kind === 'express') {
    const app = express();
    app.use(expressEnvelope(options));
    app.get('/orders/:id', async (req, res) => res.json(await handle(req)));
    server = http.createServer(app);
  } else {
    server = http.createServer(
      withEnvelope(async (req, res) => {
        const body = JSON.stringify(await handle(req));
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      }, options),
    );
  }
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Sends one request with exactly these field lines; resolves with what came back. */
function send(port, { method = 'GET', path = '/orders/42', headers = [] } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      // An array of field lines is sent as is: node adds no Host of its own.
      { host: '127.0.0.1', port, method, path, headers: [['Host', `127.0.0.1:${port}`], ...headers].flat(), agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const KINDS = ['node:http', 'express', 'fastify'];

/** [mode, request, status, what the client or the handler sees] */
const CASES = [
  ['GatewayEnforced', { headers: HS }, 200, { trusted: true, subject: 'user-7', outcome: 'trusted', ignored: null }],
  ['GatewayEnforced', { headers: ED }, 200, { trusted: true, subject: 'user-7', outcome: 'trusted', ignored: null }],
  ['GatewayEnforced', { headers: HS, path: '/orders/42?expand=lines' }, 200, { trusted: true, subject: 'user-7' }],
  ['GatewayEnforced', {}, 401, { error: 'envelope_required', envelope_error: null }],
  ['GatewayEnforced', { headers: [...HS, ['x-stellaops-identity-envelope-alg', 'HS256']] }, 401, { error: 'envelope_invalid', envelope_error: 'duplicate_header' }],
  ['GatewayEnforced', { headers: invalidVector('wrong_audience').headers }, 403, { error: 'envelope_audience_mismatch', envelope_error: 'audience_mismatch' }],
  ['GatewayEnforced', { headers: HS, path: '/orders/43' }, 401, { error: 'envelope_invalid', envelope_error: 'request_mismatch' }],
  ['GatewayEnforced', { headers: HS, method: 'DELETE' }, 401, { error: 'envelope_invalid', envelope_error: 'request_mismatch' }],
  ['Hybrid', { headers: HS }, 200, { trusted: true, subject: 'user-7', outcome: 'trusted' }],
  ['Hybrid', {}, 200, { trusted: false, subject: null, outcome: 'service_auth', ignored: null }],
  ['Hybrid', { headers: invalidVector('bad_signature').headers }, 401, { error: 'envelope_invalid', envelope_error: 'bad_signature' }],
  ['ServiceEnforced', { headers: HS }, 200, { trusted: false, subject: null, outcome: 'service_auth', ignored: null }],
  ['ServiceEnforced', { headers: invalidVector('bad_signature').headers }, 200, { trusted: false, outcome: 'service_auth', ignored: 'bad_signature' }],
  ['Disabled', { headers: invalidVector('bad_signature').headers }, 200, { trusted: false, outcome: 'service_auth', ignored: null }],
  ['Disabled', {}, 200, { trusted: false, outcome: 'service_auth' }],
];

for (const kind of KINDS) {
  test(`${kind}: the trust-mode table as a client and a handler see it`, async (t) => {
    const servers = {};
    for (const mode of ['GatewayEnforced', 'Hybrid', 'ServiceEnforced', 'Disabled']) {
      const config =
        mode === 'Disabled'
          ? vectorConfig('GatewayEnforced', { Router__Enabled: 'false' })
          : vectorConfig(mode);
      const state = {};
      const logger = captureLogger();
      servers[mode] = { ...(await start(kind, { config, clock, logger }, state)), state, logger };
      t.after(() => servers[mode].close());
    }
    for (const [mode, request, status, want] of CASES) {
      const { port, state } = servers[mode];
      const before = state.calls;
      const res = await send(port, { method: request.method === 'DELETE' ? 'DELETE' : 'GET', ...request });
      const label = `${mode} ${request.method ?? 'GET'} ${request.path ?? '/orders/42'} with ${request.headers?.length ?? 0} headers`;
      assert.equal(res.status, status, `${label}: ${res.body}`);
      const body = JSON.parse(res.body);
      for (const [key, value] of Object.entries(want)) assert.deepEqual(body[key], value, `${label}: ${key}`);
      if (status === 200) {
        assert.equal(state.calls, before + 1, `${label}: the handler ran`);
        assert.equal(body.mode, mode === 'Disabled' ? 'GatewayEnforced' : mode);
      } else {
        assert.equal(state.calls, before, `${label}: the handler never ran`);
        assert.equal(res.headers['content-type'], 'application/problem+json');
        assert.equal(res.headers['cache-control'], 'no-store');
        assert.deepEqual(Object.keys(body), ['envelope_error', 'error', 'status', 'title', 'type']);
        assert.equal(body.status, status);
        for (const [, value] of request.headers ?? []) {
          assert.ok(value.length < 8 || !res.body.includes(value), `${label}: a header value is echoed`);
        }
      }
    }
    // Rejections and ignored envelopes are logged by code, without values.
    const warned = servers.GatewayEnforced.logger.lines.filter((l) => l.startsWith('warn '));
    assert.ok(warned.some((l) => l.startsWith('warn envelope rejected (mode GatewayEnforced): duplicate_header: ')), warned.join('\n'));
    assert.ok(
      servers.ServiceEnforced.logger.lines.includes(
        'warn invalid envelope ignored (mode ServiceEnforced): bad_signature: envelope signature does not verify with key hs-1',
      ),
    );
    for (const line of warned) assert.ok(!line.includes(HS[1][1]) && !line.includes(HS[0][1].slice(0, 40)), line);
  });

  test(`${kind}: a request in flight keeps the configuration it arrived with`, async (t) => {
    const dir = tempDir(t, 'serve');
    const file = join(dir, 'envelope.env');
    const write = (mode) =>
      writeFileSync(file, `Router__AuthorizationTrustMode=${mode}\nRouter__IdentityEnvelopeAcceptedKeys=${vectorAcceptedKeys}\n`);
    write('GatewayEnforced');
    const handle = new ConfigHandle({
      env: { Router__ConfigFile: file, Router__IdentityEnvelopeAudience: 'orders' },
      logger: captureLogger(),
    });
    let release;
    const state = { hold: new Promise((resolve) => (release = resolve)) };
    const server = await start(kind, { config: handle, clock, logger: captureLogger() }, state);
    t.after(() => server.close());

    const inFlight = send(server.port, { headers: HS });
    await new Promise((resolve) => {
      const poll = () => (state.calls === 1 ? resolve() : setTimeout(poll, 5));
      poll();
    });
    write('Hybrid');
    assert.equal(handle.reload().outcome, 'applied');
    state.hold = null;
    release();
    const first = await inFlight;
    assert.equal(first.status, 200);
    assert.equal(JSON.parse(first.body).mode, 'GatewayEnforced', 'decided and served with the old snapshot');
    // The next request sees the new configuration: Hybrid lets it through.
    const next = await send(server.port);
    assert.equal(next.status, 200);
    assert.equal(JSON.parse(next.body).mode, 'Hybrid');
  });
}

test('express: the path is the full path under a mounted router', async (t) => {
  const app = express();
  const router = express.Router();
  router.use(expressEnvelope({ config: vectorConfig('GatewayEnforced'), clock, logger: captureLogger() }));
  router.get('/:id', (req, res) => res.json(describe(req)));
  app.use('/orders', router);
  const server = http.createServer(app);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const res = await send(server.address().port, { headers: HS });
  assert.equal(res.status, 200, res.body);
  assert.equal(JSON.parse(res.body).subject, 'user-7');
});

test('fastify: the plugin decorates requests once and applies to routes registered in child scopes', async (t) => {
  const app = Fastify();
  await app.register(fastifyEnvelope, { config: vectorConfig('GatewayEnforced'), clock, logger: captureLogger() });
  assert.ok(app.hasRequestDecorator('stellaIdentity'));
  await app.register(async (child) => {
    child.get('/42', async (request) => describe(request));
  }, { prefix: '/orders' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.after(() => app.close());
  const { port } = app.server.address();
  assert.equal(JSON.parse((await send(port, { headers: HS })).body).subject, 'user-7');
  assert.equal((await send(port)).status, 401);
});

test('the middleware refuses options without a configuration', () => {
  assert.throws(() => withEnvelope(() => {}, {}), TypeError);
  assert.throws(() => expressEnvelope({ config: { mode: 'Hybrid' } }), TypeError);
});

test('node:http: a broken clock fails the request closed with 500, and the server lives on', async (t) => {
  const logger = captureLogger();
  const server = http.createServer(
    withEnvelope((req, res) => res.end('served'), { config: vectorConfig('GatewayEnforced'), clock: () => Date.now() / 1000, logger }),
  );
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const res = await send(server.address().port, { headers: HS });
  assert.equal(res.status, 500);
  assert.equal(JSON.parse(res.body).title, 'Internal Server Error');
  assert.match(logger.lines[0], /^error envelope check failed: /);
  assert.equal((await send(server.address().port, { headers: HS })).status, 500);
});
