#!/usr/bin/env node
// Fetch a client_credentials access token from the test Authority and print
// it (the access token only, one line) on stdout.
//
//   node token.mjs --issuer URL --client ID --secret S [--scope "a b"]
//                  [--resource URL] [--dpop-key-file f.json] [--cert-pem file]
//                  [--json]
//
// --dpop-key-file  private EC P-256 JWK used to sign the DPoP proof of the
//                  token request (created if the file does not exist); the
//                  token is then bound to that key (cnf.jkt)
// --cert-pem       PEM certificate sent URL-encoded in the x-test-client-cert
//                  header; the token is then bound to it (cnf.x5t#S256)
// --json           print the whole token endpoint response instead
//
// Exit code 1 with the error response on stderr when the request fails.

import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

import * as DPoP from 'dpop';

const USAGE = 'usage: node token.mjs --issuer URL --client ID --secret S [--scope "a b"] '
  + '[--resource URL] [--dpop-key-file f.json] [--cert-pem file] [--json]';

function fail(message) {
  process.stderr.write(`token.mjs: ${message}\n`);
  process.exit(1);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      issuer: { type: 'string' },
      client: { type: 'string' },
      secret: { type: 'string' },
      scope: { type: 'string' },
      resource: { type: 'string' },
      'dpop-key-file': { type: 'string' },
      'cert-pem': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }));
} catch (err) {
  fail(`${err.message}\n${USAGE}`);
}

if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
for (const required of ['issuer', 'client', 'secret']) {
  if (!values[required]) fail(`--${required} is required\n${USAGE}`);
}

// Load (or create) a private EC P-256 JWK and return a dpop KeyPair.
async function loadDpopKeyPair(file) {
  let jwk;
  if (fs.existsSync(file)) {
    jwk = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) {
      throw new Error(`${file}: expected a private EC P-256 JWK`);
    }
  } else {
    const pair = await DPoP.generateKeyPair('ES256', { extractable: true });
    const exported = await crypto.subtle.exportKey('jwk', pair.privateKey);
    jwk = { kty: exported.kty, crv: exported.crv, x: exported.x, y: exported.y, d: exported.d };
    fs.writeFileSync(file, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
  }
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  const { d, ...pub } = jwk;
  const privateKey = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d }, alg, false, ['sign']);
  const publicKey = await crypto.subtle.importKey('jwk', { kty: pub.kty, crv: pub.crv, x: pub.x, y: pub.y }, alg, true, ['verify']);
  return { privateKey, publicKey };
}

const issuer = values.issuer.replace(/\/+$/, '');
let tokenEndpoint;
{
  const res = await fetch(`${issuer}/.well-known/openid-configuration`).catch((err) => fail(`discovery failed: ${err.message}`));
  if (!res.ok) fail(`discovery failed: HTTP ${res.status}`);
  ({ token_endpoint: tokenEndpoint } = await res.json());
  if (!tokenEndpoint) fail('discovery document has no token_endpoint');
}

const body = new URLSearchParams({ grant_type: 'client_credentials' });
if (values.scope) body.set('scope', values.scope);
if (values.resource) body.set('resource', values.resource);

const basic = Buffer.from(
  `${encodeURIComponent(values.client)}:${encodeURIComponent(values.secret)}`,
).toString('base64');
const headers = {
  authorization: `Basic ${basic}`,
  'content-type': 'application/x-www-form-urlencoded',
  accept: 'application/json',
};

if (values['cert-pem']) {
  headers['x-test-client-cert'] = encodeURIComponent(fs.readFileSync(values['cert-pem'], 'utf8').trim());
}

let keyPair;
if (values['dpop-key-file']) {
  try {
    keyPair = await loadDpopKeyPair(values['dpop-key-file']);
  } catch (err) {
    fail(err.message);
  }
}

async function request(nonce) {
  const h = { ...headers };
  if (keyPair) h.dpop = await DPoP.generateProof(keyPair, tokenEndpoint, 'POST', nonce);
  return fetch(tokenEndpoint, { method: 'POST', headers: h, body });
}

let res = await request();
// Retry once if the Authority demands a DPoP nonce.
if (keyPair && res.status === 400 && res.headers.get('dpop-nonce')) {
  const err = await res.clone().json().catch(() => ({}));
  if (err.error === 'use_dpop_nonce') res = await request(res.headers.get('dpop-nonce'));
}

const text = await res.text();
if (!res.ok) fail(`token request failed: HTTP ${res.status} ${text}`);
const json = JSON.parse(text);
process.stdout.write(`${values.json ? JSON.stringify(json) : json.access_token}\n`);
