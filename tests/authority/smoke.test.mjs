// Smoke test of the test Authority: node --test (from tests/authority).
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as DPoP from 'dpop';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';

const here = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_RESOURCE = 'http://gateway.local/api';

let child;
let issuer;
let tokenEndpoint;
let jwks;
let tmp;
let stderr = '';

function startAuthority(env = {}) {
  const proc = spawn(process.execPath, [path.join(here, 'server.mjs')], {
    env: { ...process.env, AUTHORITY_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr += d; });
  const ready = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no AUTHORITY_READY within 15s\n${stderr}`)), 15000);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl !== -1) {
        clearTimeout(timer);
        const line = out.slice(0, nl);
        const m = /^AUTHORITY_READY (\{.*\})$/.exec(line);
        if (!m) reject(new Error(`unexpected first stdout line: ${JSON.stringify(line)}`));
        else resolve(JSON.parse(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`authority exited early (${code})\n${stderr}`));
    });
  });
  return { proc, ready };
}

function stop(proc) {
  if (!proc || proc.exitCode !== null) return Promise.resolve(proc?.exitCode);
  return new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve(code ?? signal));
    proc.kill('SIGTERM');
  });
}

function decodeJwt(jwt) {
  const [h, p] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString()),
  };
}

async function tokenRequest(client, secret, params = {}, headers = {}) {
  const res = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client}:${secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
      ...headers,
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', ...params }),
  });
  return { status: res.status, body: await res.json() };
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'authority-smoke-'));
  const started = startAuthority({ AUTHORITY_KEYS_FILE: path.join(tmp, 'keys.json') });
  child = started.proc;
  const ready = await started.ready;
  issuer = ready.issuer;
  assert.equal(issuer, `http://127.0.0.1:${ready.port}`);
  assert.ok(ready.port > 0);
});

after(async () => {
  await stop(child);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('test authority', () => {
  test('discovery document and JWKS', async () => {
    const res = await fetch(`${issuer}/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const doc = await res.json();
    assert.equal(doc.issuer, issuer);
    assert.equal(doc.jwks_uri, `${issuer}/jwks`);
    assert.ok(doc.token_endpoint);
    assert.ok(doc.grant_types_supported.includes('client_credentials'));
    assert.ok(doc.dpop_signing_alg_values_supported.includes('ES256'));
    assert.equal(doc.tls_client_certificate_bound_access_tokens, true);
    tokenEndpoint = doc.token_endpoint;

    jwks = await (await fetch(doc.jwks_uri)).json();
    const algs = jwks.keys.map((k) => k.alg).sort();
    assert.deepEqual(algs, ['ES256', 'RS256']);
    for (const k of jwks.keys) assert.equal(k.d, undefined, 'JWKS must not leak private keys');
  });

  test('svc-bearer gets an RFC 9068 JWT access token (ES256, at+jwt)', async () => {
    const { status, body } = await tokenRequest('svc-bearer', 'svc-bearer-secret', {
      scope: 'echo.read echo.write',
      resource: 'https://api.example.test/echo',
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, 300);
    const { header, payload } = decodeJwt(body.access_token);
    assert.equal(header.typ, 'at+jwt');
    assert.equal(header.alg, 'ES256');
    assert.ok(jwks.keys.some((k) => k.kid === header.kid && k.alg === 'ES256'), 'kid must be the ES256 JWKS key');

    // signature verifies against the published JWKS
    const verified = await jwtVerify(body.access_token, createLocalJWKSet(jwks), {
      issuer,
      audience: 'https://api.example.test/echo',
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
    assert.deepEqual(verified.payload, payload);

    assert.equal(payload.iss, issuer);
    assert.equal(payload.aud, 'https://api.example.test/echo');
    assert.equal(payload.client_id, 'svc-bearer');
    assert.equal(payload.sub, 'svc-bearer');
    assert.equal(payload.tenant, 'acme');
    assert.equal(payload.scope, 'echo.read echo.write');
    assert.equal(typeof payload.jti, 'string');
    assert.equal(typeof payload.iat, 'number');
    assert.equal(payload.exp - payload.iat, 300);
    assert.equal(payload.cnf, undefined);
  });

  test('no resource and no scope: default resource and all client scopes', async () => {
    const { status, body } = await tokenRequest('svc-bearer', 'svc-bearer-secret');
    assert.equal(status, 200, JSON.stringify(body));
    const { payload } = decodeJwt(body.access_token);
    assert.equal(payload.aud, DEFAULT_RESOURCE);
    assert.equal(payload.scope, 'echo.read echo.write admin');
  });

  test('DPoP-bound token via the dpop package', async () => {
    const keyPair = await DPoP.generateKeyPair('ES256', { extractable: true });
    const proof = await DPoP.generateProof(keyPair, tokenEndpoint, 'POST');
    const { status, body } = await tokenRequest('svc-dpop', 'svc-dpop-secret', { scope: 'echo.read' }, { dpop: proof });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.token_type, 'DPoP');
    const { header, payload } = decodeJwt(body.access_token);
    assert.equal(header.typ, 'at+jwt');

    const publicJwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
    const expected = await calculateJwkThumbprint(publicJwk, 'sha256');
    assert.equal(payload.cnf.jkt, expected);
    assert.equal(payload.cnf.jkt, await DPoP.calculateThumbprint(keyPair.publicKey));
    assert.equal(payload.tenant, 'acme');
    assert.equal(payload.client_id, 'svc-dpop');
  });

  test('svc-dpop without a DPoP proof is refused', async () => {
    const { status, body } = await tokenRequest('svc-dpop', 'svc-dpop-secret');
    assert.equal(status, 400);
    assert.equal(body.error, 'invalid_grant');
  });

  test('DPoP-bound token via oauth4webapi (independent client)', async () => {
    const url = new URL(issuer);
    const as = await oauth.processDiscoveryResponse(
      url,
      await oauth.discoveryRequest(url, { [oauth.allowInsecureRequests]: true }),
    );
    const client = { client_id: 'svc-dpop' };
    const keyPair = await oauth.generateKeyPair('ES256', { extractable: true });
    const DPoPHandle = oauth.DPoP(client, keyPair);
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      oauth.ClientSecretBasic('svc-dpop-secret'),
      new URLSearchParams({ scope: 'echo.read', resource: DEFAULT_RESOURCE }),
      { DPoP: DPoPHandle, [oauth.allowInsecureRequests]: true },
    );
    const result = await oauth.processClientCredentialsResponse(as, client, response);
    assert.equal(result.token_type, 'dpop');
    const { payload } = decodeJwt(result.access_token);
    const publicJwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
    assert.equal(payload.cnf.jkt, await calculateJwkThumbprint(publicJwk, 'sha256'));
  });

  test('certificate-bound token via the x-test-client-cert header', () => {
    const keyFile = path.join(tmp, 'client.key');
    const certFile = path.join(tmp, 'client.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-subj', '/CN=test', '-days', '1', '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'ignore' });
    const pem = fs.readFileSync(certFile, 'utf8');
    const der = new crypto.X509Certificate(pem).raw;
    const expected = crypto.createHash('sha256').update(der).digest('base64url');

    return (async () => {
      // URL-encoded PEM (the documented encoding)
      const r1 = await tokenRequest('svc-mtls', 'svc-mtls-secret', {}, { 'x-test-client-cert': encodeURIComponent(pem) });
      assert.equal(r1.status, 200, JSON.stringify(r1.body));
      assert.equal(r1.body.token_type, 'Bearer');
      const { payload } = decodeJwt(r1.body.access_token);
      assert.equal(payload.cnf['x5t#S256'], expected);
      assert.equal(payload.client_id, 'svc-mtls');

      // PEM with "\n" escapes is accepted too
      const r2 = await tokenRequest('svc-mtls', 'svc-mtls-secret', {}, { 'x-test-client-cert': pem.trim().replace(/\n/g, '\\n') });
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      assert.equal(decodeJwt(r2.body.access_token).payload.cnf['x5t#S256'], expected);

      // svc-mtls without a certificate is refused
      const r3 = await tokenRequest('svc-mtls', 'svc-mtls-secret');
      assert.equal(r3.status, 400);
      assert.equal(r3.body.error, 'invalid_grant');

      // token.mjs --cert-pem gives the same binding
      const cli = execFileSync(process.execPath, [
        path.join(here, 'token.mjs'), '--issuer', issuer, '--client', 'svc-mtls',
        '--secret', 'svc-mtls-secret', '--cert-pem', certFile,
      ], { encoding: 'utf8' });
      assert.match(cli, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
      assert.equal(decodeJwt(cli.trim()).payload.cnf['x5t#S256'], expected);
    })();
  });

  test('token.mjs with --dpop-key-file creates the key and binds the token', () => {
    const keyFile = path.join(tmp, 'dpop-key.json');
    const run = () => execFileSync(process.execPath, [
      path.join(here, 'token.mjs'), '--issuer', issuer, '--client', 'svc-dpop',
      '--secret', 'svc-dpop-secret', '--scope', 'echo.read', '--dpop-key-file', keyFile,
    ], { encoding: 'utf8' }).trim();
    const first = decodeJwt(run()).payload;
    const jwk = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
    assert.equal(jwk.kty, 'EC');
    assert.equal(jwk.crv, 'P-256');
    assert.ok(jwk.d);
    const { d, ...pub } = jwk;
    const jkt = crypto.createHash('sha256')
      .update(JSON.stringify({ crv: pub.crv, kty: pub.kty, x: pub.x, y: pub.y }))
      .digest('base64url');
    assert.equal(first.cnf.jkt, jkt);
    assert.equal(decodeJwt(run()).payload.cnf.jkt, jkt, 'the key file is reused');
  });

  test('wrong client secret gives 401 invalid_client', async () => {
    const { status, body } = await tokenRequest('svc-bearer', 'wrong-secret');
    assert.equal(status, 401);
    assert.equal(body.error, 'invalid_client');
  });

  test('svc-readonly asking for admin is refused with invalid_scope', async () => {
    const refused = await tokenRequest('svc-readonly', 'svc-readonly-secret', { scope: 'echo.read admin' });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_scope');

    const ok = await tokenRequest('svc-readonly', 'svc-readonly-secret', { scope: 'echo.read' });
    assert.equal(ok.status, 200);
    const { payload } = decodeJwt(ok.body.access_token);
    assert.equal(payload.scope, 'echo.read');
    assert.equal(payload.tenant, 'globex');
  });

  test('restart with AUTHORITY_KEYS_FILE keeps the signing keys', async () => {
    const second = startAuthority({ AUTHORITY_KEYS_FILE: path.join(tmp, 'keys.json'), AUTHORITY_AT_TTL: '42' });
    try {
      const ready = await second.ready;
      assert.notEqual(ready.issuer, issuer);
      const otherJwks = await (await fetch(`${ready.issuer}/jwks`)).json();
      assert.deepEqual(otherJwks, jwks);
      const res = await fetch(`${ready.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials', client_id: 'svc-bearer', client_secret: 'svc-bearer-secret',
        }),
      });
      // oidc-provider treats client_secret_basic and client_secret_post as
      // interchangeable: a client registered for basic may also post.
      assert.equal(res.status, 200);

      const ok = await fetch(`${ready.issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from('svc-bearer:svc-bearer-secret').toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials' }),
      });
      assert.equal(ok.status, 200);
      const body = await ok.json();
      assert.equal(body.expires_in, 42);
      const { header, payload } = decodeJwt(body.access_token);
      assert.equal(header.kid, jwks.keys.find((k) => k.alg === 'ES256').kid);
      assert.equal(payload.exp - payload.iat, 42);
      assert.equal(payload.iss, ready.issuer);
    } finally {
      const code = await stop(second.proc);
      assert.equal(code, 0, 'clean exit on SIGTERM');
    }
  });
  test('AUTHORITY_MTLS_PORT: a token from the mtls_endpoint_aliases endpoint is bound to the certificate presented on TLS', async () => {
    const selfSigned = (name, extra = []) => {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-subj', `/CN=${name}`, '-days', '1', '-keyout', path.join(tmp, `${name}.key`),
        '-out', path.join(tmp, `${name}.pem`), ...extra,
      ], { stdio: 'ignore' });
      return { cert: fs.readFileSync(path.join(tmp, `${name}.pem`)), key: fs.readFileSync(path.join(tmp, `${name}.key`)) };
    };
    const server = selfSigned('mtls-server', ['-addext', 'subjectAltName=IP:127.0.0.1']);
    const client = selfSigned('mtls-client');
    const expected = crypto.createHash('sha256').update(new crypto.X509Certificate(client.cert).raw).digest('base64url');
    const withAlias = startAuthority({
      AUTHORITY_MTLS_PORT: '0',
      AUTHORITY_MTLS_CERT_FILE: path.join(tmp, 'mtls-server.pem'),
      AUTHORITY_MTLS_KEY_FILE: path.join(tmp, 'mtls-server.key'),
    });
    try {
      const ready = await withAlias.ready;
      assert.match(ready.mtls, /^https:\/\/127\.0\.0\.1:\d+$/);
      const meta = await (await fetch(`${ready.issuer}/.well-known/openid-configuration`)).json();
      assert.equal(meta.mtls_endpoint_aliases.token_endpoint, `${ready.mtls}/token`);
      const post = (tls) => new Promise((resolve, reject) => {
        const req = https.request(`${ready.mtls}/token`, {
          method: 'POST',
          ca: server.cert,
          ...tls,
          headers: {
            authorization: `Basic ${Buffer.from('svc-mtls:svc-mtls-secret').toString('base64')}`,
            'content-type': 'application/x-www-form-urlencoded',
          },
        }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => { body += d; });
          res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
        });
        req.on('error', reject);
        req.end('grant_type=client_credentials');
      });
      const bound = await post({ cert: client.cert, key: client.key });
      assert.equal(bound.status, 200, JSON.stringify(bound.body));
      assert.equal(decodeJwt(bound.body.access_token).payload.cnf['x5t#S256'], expected);
      // No certificate on the connection: nothing to bind to.
      const unbound = await post({});
      assert.equal(unbound.status, 400, JSON.stringify(unbound.body));
      assert.equal(unbound.body.error, 'invalid_grant');
    } finally {
      assert.equal(await stop(withAlias.proc), 0, 'clean exit on SIGTERM');
    }
  });
  test('AUTHORITY_ISSUER and AUTHORITY_HOST: the issuer is the configured name, not the bound address', async () => {
    // As in compose: bound on every address, known to clients by a service name.
    const named = startAuthority({ AUTHORITY_HOST: '0.0.0.0', AUTHORITY_ISSUER: 'http://authority.test:7100' });
    try {
      const ready = await named.ready;
      assert.equal(ready.issuer, 'http://authority.test:7100');
      const base = `http://127.0.0.1:${ready.port}`;
      const meta = await (await fetch(`${base}/.well-known/openid-configuration`)).json();
      assert.equal(meta.issuer, 'http://authority.test:7100');
      // Endpoint URLs follow the request's Host (authority:7100 in compose).
      assert.equal(meta.token_endpoint, `${base}/token`);
      const res = await fetch(`${base}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from('svc-bearer:svc-bearer-secret').toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials' }),
      });
      assert.equal(res.status, 200);
      assert.equal(decodeJwt((await res.json()).access_token).payload.iss, 'http://authority.test:7100');
    } finally {
      assert.equal(await stop(named.proc), 0, 'clean exit on SIGTERM');
    }
  });

  test('AUTHORITY_TEST_MINT: provider-shaped tokens verify with the keys their issuer\'s discovery names', async () => {
    const minting = startAuthority({ AUTHORITY_KEYS_FILE: path.join(tmp, 'keys.json'), AUTHORITY_TEST_MINT: '1' });
    try {
      const ready = await minting.ready;
      const shapes = await (await fetch(`${ready.issuer}/__test/shapes`)).json();
      assert.deepEqual(Object.keys(shapes), ['keycloak', 'entra', 'auth0', 'okta', 'cognito', 'cognito-id']);
      assert.match(shapes.entra.issuer, /^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]{36}\/v2\.0$/);
      assert.ok(shapes.auth0.issuer.endsWith('/auth0/'));
      const expected = {
        keycloak: { typ: 'JWT', client: 'azp', roles: (p) => p.realm_access.roles },
        entra: { typ: 'JWT', client: 'azp', roles: (p) => p.roles },
        auth0: { typ: 'JWT', client: 'azp', roles: (p) => p.permissions },
        okta: { typ: undefined, client: 'cid', roles: (p) => p.groups },
        cognito: { typ: undefined, client: 'client_id', roles: (p) => p['cognito:groups'] },
      };
      for (const [name, want] of Object.entries(expected)) {
        const { issuer: shapeIssuer } = shapes[name];
        const meta = await (await fetch(`${shapeIssuer.replace(/\/$/, '')}/.well-known/openid-configuration`)).json();
        assert.equal(meta.issuer, shapeIssuer, name);
        const keys = createLocalJWKSet(await (await fetch(meta.jwks_uri)).json());
        const res = await fetch(`${ready.issuer}/__test/mint?shape=${name}&roles=auditor&scope=echo.read`, { method: 'POST' });
        assert.equal(res.status, 200, name);
        const token = (await res.text()).trim();
        const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer: shapeIssuer });
        assert.equal(protectedHeader.alg, 'RS256', name);
        assert.equal(protectedHeader.typ, want.typ, name);
        assert.equal(payload[want.client], 'svc-bearer', name);
        assert.ok(want.roles(payload).includes('auditor'), name);
      }
      const unknown = await fetch(`${ready.issuer}/__test/mint?shape=azure`, { method: 'POST' });
      assert.equal(unknown.status, 400);
    } finally {
      assert.equal(await stop(minting.proc), 0, 'clean exit on SIGTERM');
    }
  });

  test('AUTHORITY_ISSUER with a path is refused at start', async () => {
    const bad = startAuthority({ AUTHORITY_ISSUER: 'http://authority.test/x/' });
    await assert.rejects(bad.ready, /AUTHORITY_ISSUER must be an http\(s\) origin/);
  });
});
