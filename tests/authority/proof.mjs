#!/usr/bin/env node
// Print one DPoP proof (RFC 9449) for a resource request, made by the npm
// `dpop` library: an independent client implementation the gateway's
// end-to-end tests check their own proofs against.
//
//   node proof.mjs --key-file key.json --method GET --url URL
//                  [--token TOKEN] [--nonce N]
//
// --key-file  private EC P-256 JWK ({kty, crv, x, y, d}), the same format
//             token.mjs reads and writes; it must exist
// --url       the request URI, used as `htu` as given (RFC 9449 wants it
//             without query and fragment)
// --token     the access token the proof goes with (sets `ath`)
// --nonce     a server nonce from a DPoP-Nonce response header
//
// The proof (one line) goes to stdout; exit code 1 with a message on error.

import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

import * as DPoP from 'dpop';

const USAGE = 'usage: node proof.mjs --key-file key.json --method GET --url URL '
  + '[--token TOKEN] [--nonce N]';

function fail(message) {
  process.stderr.write(`proof.mjs: ${message}\n`);
  process.exit(1);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      'key-file': { type: 'string' },
      method: { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
      nonce: { type: 'string' },
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
for (const required of ['key-file', 'method', 'url']) {
  if (!values[required]) fail(`--${required} is required\n${USAGE}`);
}

let jwk;
try {
  jwk = JSON.parse(fs.readFileSync(values['key-file'], 'utf8'));
} catch (err) {
  fail(`cannot read ${values['key-file']}: ${err.message}`);
}
if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) {
  fail(`${values['key-file']}: expected a private EC P-256 JWK`);
}

const alg = { name: 'ECDSA', namedCurve: 'P-256' };
const { kty, crv, x, y, d } = jwk;
const keyPair = {
  privateKey: await crypto.subtle.importKey('jwk', { kty, crv, x, y, d }, alg, false, ['sign']),
  publicKey: await crypto.subtle.importKey('jwk', { kty, crv, x, y }, alg, true, ['verify']),
};

const proof = await DPoP.generateProof(
  keyPair,
  values.url,
  values.method,
  values.nonce,
  values.token,
);
process.stdout.write(`${proof}\n`);
