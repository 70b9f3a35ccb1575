// Keys from a JWKS URL (SPEC.md section 7.6): the document rules, the
// variables, and the fetcher against a real HTTP server on port 0 whose
// JWKS the test controls and whose fetches it counts, through node:http,
// Express and Fastify.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import {
  ConfigHandle,
  JwksError,
  JwksKeys,
  configFromEnvAndFile,
  expressEnvelope,
  fetchJwks,
  parseJwks,
  withEnvelope,
} from '../src/index.js';
import { fastifyEnvelope } from '../src/fastify.js';
import { captureLogger, seal, tempDir, vectors, waitFor } from './support.mjs';

const clock = () => vectors.now;
const vectorKey = (kid) => vectors.keys.find((k) => k.kid === kid);
// The vectors' Ed25519 key, as the gateway would publish it, and two more.
const VECTOR_SEED = Buffer.from(vectorKey('ed-1').sign.split(':')[1], 'base64url');
const SEED_2 = Buffer.alloc(32, 2);
const SEED_3 = Buffer.alloc(32, 3);

/** @param {Buffer} seed */
function publicX(seed) {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  return createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' }).x;
}

/** A key as the gateway publishes it (RFC 8037 OKP); undefined members are left out. */
function jwk(seed, kid, more = {}) {
  const key = { kty: 'OKP', crv: 'Ed25519', x: publicX(seed), kid, alg: 'EdDSA', use: 'sig', ...more };
  return Object.fromEntries(Object.entries(key).filter(([, v]) => v !== undefined));
}

const doc = (...keys) => Buffer.from(JSON.stringify({ keys }));

const ES256_KEY = {
  kty: 'EC',
  crv: 'P-256',
  x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
  y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
  kid: 'es-1',
  alg: 'ES256',
  use: 'sig',
};

// --- the document ----------------------------------------------------------

test('a gateway document yields its Ed25519 keys', () => {
  const ring = parseJwks(doc(jwk(VECTOR_SEED, 'ed-1'), jwk(SEED_2, 'k2')));
  assert.deepEqual(ring.kids(), ['ed-1', 'k2']);
  assert.equal(ring.get('k2').kind, 'ed25519-public');
  assert.deepEqual(parseJwks(doc(jwk(SEED_2, 'k2', { alg: undefined, use: undefined }))).kids(), ['k2']);
  assert.equal(parseJwks(Buffer.from('{"keys":[]}')).size, 0);
});

test('keys it does not use are skipped and the others kept', () => {
  const skipped = [
    ES256_KEY,
    { kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'rsa-1' },
    jwk(SEED_3, 'x-1', { crv: 'X25519', alg: undefined }),
    jwk(SEED_3, 'enc-1', { use: 'enc' }),
    jwk(SEED_3, 'other-alg', { alg: 'ES256' }),
    jwk(SEED_3, undefined),
    jwk(SEED_3, 'not a kid!'),
  ];
  for (const key of skipped) {
    assert.deepEqual(parseJwks(doc(key, jwk(SEED_2, 'k2'))).kids(), ['k2'], JSON.stringify(key));
  }
});

test('a bad document is refused whole, without key material in the reason', () => {
  const cases = [
    [doc(jwk(SEED_2, 'k2'), jwk(SEED_3, 'k2')), 'key id k2 appears more than once'],
    [doc(jwk(SEED_2, 'k2'), { ...ES256_KEY, kid: 'k2' }), 'key id k2 appears more than once'],
    [doc({ ...jwk(SEED_2, 'k2'), x: Buffer.alloc(31).toString('base64url') }), 'key k2 has no x of 32 bytes'],
    [doc({ ...jwk(SEED_2, 'k2'), x: `${publicX(SEED_2)}=` }), 'key k2 has no x of 32 bytes'],
    [doc({ ...jwk(SEED_2, 'k2'), x: null }), 'key k2 has no x of 32 bytes'],
    [doc({ ...jwk(SEED_2, 'k2'), d: SEED_2.toString('base64url') }), 'key k2 is a private key'],
    [doc({ ...jwk(SEED_2, 'k2'), kid: 7 }), 'keys[0] has a kid that is not a string'],
    [Buffer.from('{"keys":[1]}'), 'keys[0] is not an object'],
    [Buffer.from('{"keys":{}}'), 'document has no keys array'],
    [Buffer.from('{"other":[]}'), 'document has no keys array'],
    [Buffer.from('[]'), 'document is not a strict json object'],
    [Buffer.from('not json'), 'document is not a strict json object'],
    [Buffer.from('{"keys":[],"keys":[]}'), 'document is not a strict json object'],
    [Buffer.from(`{${' '.repeat(64 * 1024)}"keys":[]}`), 'document is larger than 65536 bytes'],
  ];
  for (const [body, why] of cases) {
    assert.throws(
      () => parseJwks(body),
      (e) => e instanceof JwksError && e.message.startsWith(why) && !e.message.includes(publicX(SEED_2)),
      why,
    );
  }
});

// --- the variables ---------------------------------------------------------

const env = (more = {}) => ({ Router__IdentityEnvelopeAudience: 'orders', ...more });
const problems = (variables, text = null) => {
  const result = configFromEnvAndFile(variables, text);
  assert.equal(result.ok, false);
  return result.errors.map(String);
};

test('the JWKS variables are read with their defaults', () => {
  let result = configFromEnvAndFile(env({ Router__IdentityEnvelopeJwksUrl: ' http://gateway:9901/.well-known/stella/keys.json ' }), null);
  assert.deepEqual(result.config.jwks, {
    url: 'http://gateway:9901/.well-known/stella/keys.json',
    refreshSeconds: 300,
    cooldownSeconds: 30,
  });
  result = configFromEnvAndFile(
    env({
      ROUTER__IDENTITY_ENVELOPE_JWKS_URL: 'https://gw/keys.json',
      Router__IdentityEnvelopeJwksRefreshSeconds: '10',
      Router__IdentityEnvelopeJwksCooldownSeconds: '3600',
    }),
    null,
  );
  assert.deepEqual(result.config.jwks, { url: 'https://gw/keys.json', refreshSeconds: 10, cooldownSeconds: 3600 });
  assert.equal(configFromEnvAndFile(env({ Router__IdentityEnvelopeJwksUrl: '  ' }), null).config.jwks, null);
  assert.equal(result.config.toJSON().jwks, true);
});

test('a JWKS URL is a key source for the enforcing modes', () => {
  for (const mode of ['Hybrid', 'GatewayEnforced']) {
    const result = configFromEnvAndFile(
      env({ Router__AuthorizationTrustMode: mode, Router__IdentityEnvelopeJwksUrl: 'http://gw/keys.json' }),
      null,
    );
    assert.equal(result.ok, true);
    assert.deepEqual(result.config.acceptedKids(), []);
    assert.notEqual(result.config.verifier, null);
  }
  assert.deepEqual(problems({ Router__IdentityEnvelopeJwksUrl: 'http://gw/keys.json' }), [
    'Router__IdentityEnvelopeAudience: is required when envelope keys are configured',
  ]);
});

test('bad JWKS settings name the variable, never the value', () => {
  const url = 'must be an http or https URL with a host';
  const cases = [
    ['Router__IdentityEnvelopeJwksUrl', 'ftp://SECRETHOST/keys', url],
    ['Router__IdentityEnvelopeJwksUrl', 'SECRETHOST/keys.json', url],
    ['Router__IdentityEnvelopeJwksUrl', 'http:///SECRETPATH', url],
    ['Router__IdentityEnvelopeJwksUrl', 'http://SECRETHOST:99999/', url],
    ['Router__IdentityEnvelopeJwksUrl', 'http://SECRET HOST/', url],
    ['Router__IdentityEnvelopeJwksUrl', 'http://u:SECRET@gw/keys', 'must not carry credentials (user:password@)'],
    ['Router__IdentityEnvelopeJwksRefreshSeconds', '9', 'must be a whole number of seconds from 10 to 86400'],
    ['Router__IdentityEnvelopeJwksRefreshSeconds', '86401', 'must be a whole number of seconds from 10 to 86400'],
    ['Router__IdentityEnvelopeJwksRefreshSeconds', '5m', 'must be a whole number of seconds from 10 to 86400'],
    ['Router__IdentityEnvelopeJwksCooldownSeconds', '0', 'must be a whole number of seconds up to 3600'],
    ['Router__IdentityEnvelopeJwksCooldownSeconds', '3601', 'must be a whole number of seconds up to 3600'],
  ];
  for (const [variable, value, problem] of cases) {
    const got = problems(env({ Router__IdentityEnvelopeJwksUrl: 'http://gw/keys.json', [variable]: value }));
    assert.deepEqual(got, [`${variable}: ${problem}`], value);
    assert.ok(!got[0].includes('SECRET'));
  }
});

test('the JWKS variables may be set in the config file', () => {
  const text = 'Router__IdentityEnvelopeJwksUrl=http://gw/keys.json\nRouter__IdentityEnvelopeJwksCooldownSeconds=5\n';
  assert.deepEqual(configFromEnvAndFile(env(), text).config.jwks, {
    url: 'http://gw/keys.json',
    refreshSeconds: 300,
    cooldownSeconds: 5,
  });
  assert.deepEqual(problems(env(), 'Router__IdentityEnvelopeJwksUrl=gw/keys.json\n'), [
    'Router__IdentityEnvelopeJwksUrl: must be an http or https URL with a host (set in Router__ConfigFile line 1)',
  ]);
  const a = configFromEnvAndFile(env({ Router__IdentityEnvelopeJwksUrl: 'http://a/keys.json' }), null).config;
  const b = configFromEnvAndFile(env({ Router__IdentityEnvelopeJwksUrl: 'http://b/keys.json' }), null).config;
  assert.equal(a.sameSettings(a), true);
  assert.equal(a.sameSettings(b), false);
});

// --- fetching, against a real server ----------------------------------------

/** A JWKS endpoint the test controls: its answer, its delay, and how many GETs it served. */
async function jwksServer(t) {
  const state = { body: doc(), status: 200, delayMs: 0, fetches: 0 };
  const server = http.createServer((req, res) => {
    state.fetches++;
    const { body, status, delayMs } = state;
    const answer = () => {
      res.writeHead(status, { 'content-type': 'application/jwk-set+json', 'content-length': body.length });
      res.end(body);
    };
    // The server is slow, not the test.
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  t.after(() => server.closeAllConnections());
  state.url = `http://127.0.0.1:${server.address().port}/.well-known/stella/keys.json`;
  state.serve = (body, status = 200) => {
    state.body = body;
    state.status = status;
  };
  return state;
}

/** A handle in GatewayEnforced closed after the test. */
function handleOver(t, variables, logger = captureLogger()) {
  const handle = new ConfigHandle({
    env: { Router__AuthorizationTrustMode: 'GatewayEnforced', Router__IdentityEnvelopeAudience: 'orders', ...variables },
    logger,
  });
  t.after(() => handle.close());
  return handle;
}

const firstFetch = (handle) => waitFor(() => handle.jwks.fetches >= 1, 'the first JWKS fetch');

/** A node:http service behind the middleware; resolves to its port. */
async function service(t, handle, kind = 'node:http') {
  const options = { config: handle, clock, logger: captureLogger() };
  const body = (req) => JSON.stringify({ kid: req.stellaIdentity?.kid ?? null });
  if (kind === 'fastify') {
    const app = Fastify();
    await app.register(fastifyEnvelope, options);
    app.get('/orders/:id', (request) => JSON.parse(body(request)));
    await app.listen({ port: 0, host: '127.0.0.1' });
    t.after(() => app.close());
    return app.server.address().port;
  }
  let server;
  if (kind === 'express') {
    const app = express();
    app.use(expressEnvelope(options));
    app.get('/orders/:id', (req, res) => res.type('application/json').send(body(req)));
    server = http.createServer(app);
  } else {
    server = http.createServer(withEnvelope((req, res) => res.end(body(req)), options));
  }
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return server.address().port;
}

/** GET /orders/42 with an envelope of `seed` and `kid`: the status and the kid or refusal code seen. */
async function call(port, seed, kid) {
  const headers = kid === undefined ? [] : seal({ seed, kid: 'ed-1', headerKid: kid });
  const res = await fetch(`http://127.0.0.1:${port}/orders/42`, { headers });
  const body = await res.json();
  return { status: res.status, seen: res.status === 200 ? body.kid : body.envelope_error };
}

test('an envelope signed with a JWKS key is accepted', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  const port = await service(t, handleOver(t, { Router__IdentityEnvelopeJwksUrl: jwks.url }));
  // The first request may wait for the first fetch.
  assert.deepEqual(await call(port, VECTOR_SEED, 'ed-1'), { status: 200, seen: 'ed-1' });
  assert.deepEqual(await call(port, SEED_2, 'ed-1'), { status: 401, seen: 'bad_signature' });
  assert.equal(jwks.fetches, 1);
});

for (const kind of ['node:http', 'express', 'fastify']) {
  test(`${kind}: a rotated key is picked up by an unknown-kid refetch`, async (t) => {
    const jwks = await jwksServer(t);
    jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
    const logger = captureLogger();
    const handle = handleOver(t, { Router__IdentityEnvelopeJwksUrl: jwks.url }, logger);
    const port = await service(t, handle, kind);
    await firstFetch(handle);
    jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1'), jwk(SEED_2, 'k2')));
    assert.deepEqual(await call(port, SEED_2, 'k2'), { status: 200, seen: 'k2' });
    assert.equal(jwks.fetches, 2);
    assert.ok(logger.lines.includes('info envelope JWKS fetched from Router__IdentityEnvelopeJwksUrl: kids ed-1,k2'));
    assert.ok(!logger.lines.join('\n').includes(publicX(SEED_2)));
  });
}

test('unknown kids refetch at most once per cooldown, and are then refused at once', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  const handle = handleOver(t, {
    Router__IdentityEnvelopeJwksUrl: jwks.url,
    Router__IdentityEnvelopeJwksCooldownSeconds: '3600',
  });
  const port = await service(t, handle);
  await firstFetch(handle);
  assert.deepEqual(await call(port, SEED_2, 'k2'), { status: 401, seen: 'unknown_kid' });
  assert.equal(jwks.fetches, 2); // the one refetch of this cooldown
  jwks.serve(doc(jwk(SEED_2, 'k2')));
  const started = Date.now();
  for (const kid of ['k2', 'k3', 'k4']) assert.deepEqual(await call(port, SEED_2, kid), { status: 401, seen: 'unknown_kid' });
  assert.ok(Date.now() - started < 1000, 'refused at once, not after a wait');
  assert.equal(jwks.fetches, 2);
});

test('an HS256 envelope with an unknown kid fetches nothing', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  const handle = handleOver(t, { Router__IdentityEnvelopeJwksUrl: jwks.url });
  const port = await service(t, handle);
  await firstFetch(handle);
  const headers = seal({ kid: 'hs-1', headerKid: 'k9' });
  const res = await fetch(`http://127.0.0.1:${port}/orders/42`, { headers });
  assert.equal((await res.json()).envelope_error, 'unknown_kid');
  assert.equal(jwks.fetches, 1);
});

test('concurrent unknown kids share one fetch', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  const handle = handleOver(t, { Router__IdentityEnvelopeJwksUrl: jwks.url });
  const port = await service(t, handle);
  await firstFetch(handle);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1'), jwk(SEED_2, 'k2')));
  jwks.delayMs = 300;
  const results = await Promise.all(Array.from({ length: 8 }, () => call(port, SEED_2, 'k2')));
  assert.deepEqual(results, Array(8).fill({ status: 200, seen: 'k2' }));
  assert.equal(jwks.fetches, 2);
});

test('a refetch after the cooldown is allowed again', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  const keys = new JwksKeys({ url: jwks.url, refreshSeconds: 3600, cooldownSeconds: 0.3 }, { logger: captureLogger() });
  t.after(() => keys.close());
  await waitFor(() => keys.fetches === 1, 'the first fetch');
  const first = keys.refetchForUnknownKid();
  assert.notEqual(first, null);
  await first;
  assert.equal(keys.refetchForUnknownKid(), null); // within the cooldown
  await waitFor(() => keys.refetchForUnknownKid() !== null, 'the end of the cooldown');
  await waitFor(() => jwks.fetches === 3, 'the third fetch');
});

test('a failed fetch keeps the last good keys', async (t) => {
  const cases = [
    [Buffer.from('oops'), 500, 'http status 500'],
    [Buffer.alloc(0), 302, 'http status 302'],
    [Buffer.from('{not json'), 200, 'document is not a strict json object'],
    [doc(jwk(SEED_2, 'k2'), jwk(SEED_3, 'k2')), 200, 'key id k2 appears more than once'],
    [doc({ ...jwk(SEED_2, 'k2'), x: Buffer.alloc(16).toString('base64url') }), 200, 'key k2 has no x of 32 bytes'],
    [Buffer.alloc(64 * 1024 + 1, 0x20), 200, 'document is larger than 65536 bytes'],
  ];
  for (const [body, status, why] of cases) {
    await t.test(why, async (t) => {
      const jwks = await jwksServer(t);
      jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
      const logger = captureLogger();
      const handle = handleOver(t, { Router__IdentityEnvelopeJwksUrl: jwks.url }, logger);
      const port = await service(t, handle);
      await firstFetch(handle);
      jwks.serve(body, status);
      assert.deepEqual(await call(port, SEED_2, 'k2'), { status: 401, seen: 'unknown_kid' });
      assert.equal(jwks.fetches, 2);
      assert.ok(handle.jwks.lastError.startsWith(why), handle.jwks.lastError);
      assert.deepEqual(await call(port, VECTOR_SEED, 'ed-1'), { status: 200, seen: 'ed-1' });
      const log = logger.lines.join('\n');
      assert.match(log, /envelope JWKS fetch from Router__IdentityEnvelopeJwksUrl failed, keeping 1 keys fetched/);
      assert.ok(!log.includes(jwks.url) && !log.includes(publicX(SEED_2)));
    });
  }
});

test('a document with keys to skip still serves its good ones', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(ES256_KEY, jwk(SEED_3, 'enc', { use: 'enc' }), jwk(VECTOR_SEED, 'ed-1')));
  const port = await service(t, handleOver(t, { Router__IdentityEnvelopeJwksUrl: jwks.url }));
  assert.deepEqual(await call(port, VECTOR_SEED, 'ed-1'), { status: 200, seen: 'ed-1' });
  assert.deepEqual(await call(port, SEED_3, 'enc'), { status: 401, seen: 'unknown_kid' });
});

test('until a first fetch succeeds JWKS kids are unknown, and it is retried', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(Buffer.from('down'), 503);
  const keys = new JwksKeys({ url: jwks.url, refreshSeconds: 3600, cooldownSeconds: 0.2 }, { logger: captureLogger() });
  t.after(() => keys.close());
  await waitFor(() => keys.fetches >= 1, 'the first fetch');
  assert.equal(keys.fetchedAt, null);
  assert.equal(keys.keys().size, 0);
  assert.equal(keys.lastError, 'http status 503');
  jwks.serve(doc(jwk(SEED_2, 'k2')));
  // Retried after the cooldown, without any request asking.
  await waitFor(() => keys.keys().get('k2') !== undefined, 'the retry');
  assert.equal(keys.lastError, null);
});

test('a slow server times out', async (t) => {
  const jwks = await jwksServer(t);
  jwks.delayMs = 2000;
  const started = Date.now();
  await assert.rejects(fetchJwks(jwks.url, { timeoutMs: 300 }), new JwksError('timed out after 0.3 s'));
  assert.ok(Date.now() - started < 1500);
});

test('a static key wins over a JWKS key with the same kid', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(SEED_2, 'ed-1'), jwk(SEED_3, 'k3')));
  const handle = handleOver(t, {
    Router__IdentityEnvelopeJwksUrl: jwks.url,
    Router__IdentityEnvelopeAcceptedKeys: `ed-1=${vectorKey('ed-1').verify}`,
  });
  const port = await service(t, handle);
  assert.deepEqual(await call(port, SEED_3, 'k3'), { status: 200, seen: 'k3' }); // JWKS keys are in use
  assert.deepEqual(await call(port, VECTOR_SEED, 'ed-1'), { status: 200, seen: 'ed-1' });
  assert.deepEqual(await call(port, SEED_2, 'ed-1'), { status: 401, seen: 'bad_signature' });
});

test('a reload to another URL uses the new one', async (t) => {
  const [a, b] = [await jwksServer(t), await jwksServer(t)];
  a.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  b.serve(doc(jwk(SEED_2, 'k2')));
  const file = join(tempDir(t), 'envelope.env');
  writeFileSync(file, `Router__IdentityEnvelopeJwksUrl=${a.url}\n`);
  const handle = handleOver(t, { Router__ConfigFile: file });
  const port = await service(t, handle);
  assert.deepEqual(await call(port, VECTOR_SEED, 'ed-1'), { status: 200, seen: 'ed-1' });
  const old = handle.jwks;
  writeFileSync(file, `Router__IdentityEnvelopeJwksUrl=${b.url}\n`);
  assert.equal(handle.reload().outcome, 'applied');
  assert.deepEqual(await call(port, SEED_2, 'k2'), { status: 200, seen: 'k2' });
  assert.deepEqual(await call(port, VECTOR_SEED, 'ed-1'), { status: 401, seen: 'unknown_kid' });
  assert.notEqual(handle.jwks, old);
  // Only the intervals change: the fetcher and its keys stay.
  const kept = handle.jwks;
  writeFileSync(file, `Router__IdentityEnvelopeJwksUrl=${b.url}\nRouter__IdentityEnvelopeJwksRefreshSeconds=60\n`);
  assert.equal(handle.reload().outcome, 'applied');
  assert.equal(handle.jwks, kept);
  assert.equal(kept.settings.refreshSeconds, 60);
});

test('ServiceEnforced never waits for a refetch', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(VECTOR_SEED, 'ed-1')));
  const handle = handleOver(t, {
    Router__AuthorizationTrustMode: 'ServiceEnforced',
    Router__IdentityEnvelopeJwksUrl: jwks.url,
  });
  const port = await service(t, handle);
  await firstFetch(handle);
  assert.deepEqual(await call(port, SEED_2, 'k2'), { status: 200, seen: null });
  assert.equal(jwks.fetches, 1);
});

test('a fixed configuration with a JWKS URL needs a handle', () => {
  const { config } = configFromEnvAndFile(env({ Router__IdentityEnvelopeJwksUrl: 'http://gw/keys.json' }), null);
  assert.throws(() => withEnvelope(() => {}, { config }), /needs a ConfigHandle/);
});

test('the fetcher does not keep the process alive', async (t) => {
  const jwks = await jwksServer(t);
  jwks.delayMs = 60_000; // the first fetch hangs
  const script = `
    import { ConfigHandle } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    new ConfigHandle({ env: { Router__IdentityEnvelopeAudience: 'orders', Router__IdentityEnvelopeJwksUrl: ${JSON.stringify(jwks.url)} }, logger: { info() {}, warn() {}, error() {} } });
    // Long enough for the request to reach the server; then nothing but the
    // fetch is left.
    setTimeout(() => {}, 300);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
  const started = Date.now();
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);
  // Before the fetch's own 5 s timeout: nothing waited for it.
  assert.ok(Date.now() - started < 4000, 'the child exited without waiting for the fetch');
  assert.equal(jwks.fetches, 1, 'the fetch was in flight when the child exited');
});

test('plain http to another host is logged loudly', () => {
  const cases = [
    ['http://gateway.internal:9090/keys.json', true],
    ['https://gateway.internal/keys.json', false],
    ['http://127.0.0.1:9090/keys.json', false],
  ];
  for (const [url, warned] of cases) {
    const logger = captureLogger();
    const keys = new JwksKeys(
      { url, refreshSeconds: 300, cooldownSeconds: 30 },
      { logger, fetch: async () => Buffer.from('{"keys":[]}') },
    );
    keys.close();
    const log = logger.lines.join('\n');
    assert.equal(log.includes('is plain http to another host'), warned, url);
    assert.ok(!log.includes(url));
  }
});

test('a retuned refresh interval applies from the last fetch', async (t) => {
  const jwks = await jwksServer(t);
  jwks.serve(doc(jwk(SEED_2, 'k2')));
  const keys = new JwksKeys({ url: jwks.url, refreshSeconds: 3600, cooldownSeconds: 30 }, { logger: captureLogger() });
  t.after(() => keys.close());
  await waitFor(() => keys.fetches === 1, 'the first fetch');
  keys.retune(0.2, 30);
  await waitFor(() => jwks.fetches >= 3, 'refreshes at the new interval');
});
