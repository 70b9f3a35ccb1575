// Pre-generates DPoP proofs for bench/run.sh, outside the measured loop:
// node make-proofs.mjs KEY_FILE METHOD URL TOKEN COUNT OUT
// KEY_FILE is the private P-256 JWK the token is bound to (token.mjs
// --dpop-key-file). Writes one proof per line; each has a unique jti, since
// the gateway refuses a replayed proof.
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const [keyFile, method, url, token, countText, out] = process.argv.slice(2);
const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
const key = createPrivateKey({ key: jwk, format: 'jwk' });
const b64 = (data) => Buffer.from(data).toString('base64url');
const header = b64(JSON.stringify({
  typ: 'dpop+jwt', alg: 'ES256',
  jwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y },
}));
const ath = createHash('sha256').update(token).digest('base64url');
const iat = Math.floor(Date.now() / 1000);
const lines = [];
for (let i = 0; i < Number(countText); i++) {
  const payload = b64(JSON.stringify({ jti: randomBytes(12).toString('base64url'), htm: method, htu: url, iat, ath }));
  const input = `${header}.${payload}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  lines.push(`${input}.${b64(signature)}`);
}
writeFileSync(out, lines.join('\n') + '\n');
