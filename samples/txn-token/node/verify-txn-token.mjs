// Verifies a Stella Gateway transaction token with `jose`, a generic JOSE
// library, and nothing of the gateway's own SDK (envelope/SPEC.md section 9).
//
//   node verify-txn-token.mjs --jwks URL --audience SERVICE [--issuer ID]
//                             [--method GET --path /orders/7] [TOKEN]
//
// The token is read from the argument, else from stdin. The keys come from
// the gateway's JWKS (`/.well-known/stella/keys.json`) through
// `createRemoteJWKSet`, which caches them and fetches again when it meets a
// kid it does not know: that is how a service follows a key rotation.
//
// Checks: the signature (EdDSA or ES256, the key chosen by `kid`), `typ`
// `txntoken+jwt`, `aud` (this service), `exp` and `iat` (30 s tolerance),
// the claims the gateway always writes, and, when `--method` and `--path`
// are given, that the token was issued for this very request
// (`rctx.req_method`, `rctx.req_path`: the path without the query). Prints
// the claims as JSON and exits 0; prints the reason on stderr and exits 1
// when the token is refused, 2 on bad arguments.

import { parseArgs } from 'node:util';
import { text } from 'node:stream/consumers';
import { createRemoteJWKSet, jwtVerify, errors } from 'jose';

export const TYP = 'txntoken+jwt';
const REQUIRED = ['iat', 'exp', 'aud', 'txn', 'scope', 'req_wl', 'tctx', 'rctx'];

/** The verified claims of `token`; throws a `jose` error otherwise. */
export async function verify(token, jwks, { audience, issuer, method, path }) {
  const { payload } = await jwtVerify(token, jwks, {
    typ: TYP,
    audience,
    issuer,
    algorithms: ['EdDSA', 'ES256'],
    requiredClaims: REQUIRED,
    clockTolerance: 30,
  });
  const rctx = payload.rctx ?? {};
  if (method !== undefined && rctx.req_method !== method) {
    throw new errors.JWTClaimValidationFailed('issued for another method (rctx.req_method)', payload, 'rctx');
  }
  if (path !== undefined && rctx.req_path !== path) {
    throw new errors.JWTClaimValidationFailed('issued for another path (rctx.req_path)', payload, 'rctx');
  }
  return payload;
}

async function main() {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      allowPositionals: true,
      options: {
        jwks: { type: 'string' },
        audience: { type: 'string' },
        issuer: { type: 'string' },
        method: { type: 'string' },
        path: { type: 'string' },
      },
    }));
    if (!values.jwks || !values.audience) throw new Error('--jwks and --audience are required');
  } catch (e) {
    console.error(`usage: verify-txn-token.mjs --jwks URL --audience SERVICE [--issuer ID] [--method M --path P] [TOKEN]\n${e.message}`);
    return 2;
  }
  const token = (positionals[0] ?? (await text(process.stdin))).trim();
  const jwks = createRemoteJWKSet(new URL(values.jwks), { cacheMaxAge: 300_000, timeoutDuration: 10_000 });
  try {
    const claims = await verify(token, jwks, values);
    console.log(JSON.stringify(claims));
    return 0;
  } catch (e) {
    if (e instanceof errors.JOSEError) {
      console.error(`refused: ${e.code}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main();
}
