// The published vectors (envelope/testdata/vectors.json), read at test
// time: every valid vector verifies to its payload, every invalid one fails
// with its code, and every valid vector with any one header value changed,
// dropped or repeated is refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HEADER_NAMES, VerifiedIdentity } from '../src/index.js';
import { vectors, vectorVerifier } from './support.mjs';

const verifier = vectorVerifier();
const { method, path } = vectors.request;

/** Every vector's headers, as pairs and as node's flat rawHeaders. */
const flat = (pairs) => pairs.flat();

test('the vectors file has the lists this suite runs', () => {
  assert.ok(vectors.valid.length >= 4, 'valid vectors');
  assert.ok(vectors.invalid.length >= 15, 'invalid vectors');
  assert.equal(typeof vectors.now, 'number');
});

test('every valid vector verifies to its expected payload', async (t) => {
  for (const vector of vectors.valid) {
    await t.test(vector.name, () => {
      for (const headers of [vector.headers, flat(vector.headers)]) {
        const check = verifier.verify(headers, method, path, vectors.now);
        assert.equal(check.kind, 'valid', check.error?.message);
        const id = check.identity;
        assert.ok(id instanceof VerifiedIdentity);
        const want = vector.expect_payload;
        assert.deepEqual(id.payload, want);
        assert.equal(id.subject, want.sub);
        assert.equal(id.tenant, want.tenant);
        assert.equal(id.clientId, want.client_id);
        assert.deepEqual([...id.scopes], want.scopes);
        assert.deepEqual([...id.roles], want.roles);
        assert.equal(id.authMethod, want.auth_method);
        assert.deepEqual(
          { jkt: id.confirmation.jkt, 'x5t#S256': id.confirmation.x5tS256, spiffe_id: id.confirmation.spiffeId },
          want.cnf,
        );
        assert.equal(id.issuer, want.iss);
        assert.equal(id.audience, want.aud);
        assert.equal(id.requestId, want.request_id);
        assert.equal(id.issuedAt, want.iat);
        assert.equal(id.expiresAt, want.exp);
        const kid = vector.headers.find(([n]) => /-kid$/i.test(n))[1];
        assert.equal(id.kid, kid);
        assert.ok(Object.isFrozen(id) && Object.isFrozen(id.payload) && Object.isFrozen(id.scopes));
      }
    });
  }
});

test('every invalid vector fails with its expect_error', async (t) => {
  for (const vector of vectors.invalid) {
    await t.test(vector.name, () => {
      const request = vector.request ?? vectors.request;
      const check = verifier.verify(vector.headers, request.method, request.path, vectors.now);
      assert.equal(check.kind, 'invalid', `${vector.name} was accepted`);
      assert.equal(check.error.code, vector.expect_error, check.error.message);
    });
  }
});

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Another character of the same kind, so the value still looks plausible. */
function otherChar(c) {
  if (c >= '0' && c <= '9') return String.fromCharCode(48 + ((c.charCodeAt(0) - 48 + 1) % 10));
  const i = B64URL.indexOf(c);
  return i >= 0 ? B64URL[(i + 1) % B64URL.length] : 'A';
}

test('every valid vector with one character of one header value changed is refused', async (t) => {
  let cases = 0;
  for (const vector of vectors.valid) {
    await t.test(vector.name, () => {
      for (let h = 0; h < vector.headers.length; h++) {
        const [name, value] = vector.headers[h];
        // Every position: the signature covers each byte of every value.
        for (let at = 0; at < value.length; at++) {
          const changed = value.slice(0, at) + otherChar(value[at]) + value.slice(at + 1);
          assert.notEqual(changed, value);
          const headers = vector.headers.map((pair, i) => (i === h ? [name, changed] : pair));
          const check = verifier.verify(headers, method, path, vectors.now);
          assert.equal(check.kind, 'invalid', `${vector.name}: ${name} changed at ${at} was accepted`);
          cases++;
        }
      }
    });
  }
  t.diagnostic(`mutated: ${cases} one-character changes refused`);
  assert.ok(cases > vectors.valid.length * 6);
});

test('every valid vector with one header dropped is refused as missing_header', async (t) => {
  for (const vector of vectors.valid) {
    for (const [name] of vector.headers) {
      const headers = vector.headers.filter(([n]) => n !== name);
      const check = verifier.verify(headers, method, path, vectors.now);
      assert.equal(check.kind, 'invalid', `${vector.name} without ${name}`);
      assert.equal(check.error.code, 'missing_header');
      assert.equal(check.error.header, HEADER_NAMES.find((n) => n.toLowerCase() === name.toLowerCase()));
    }
  }
  t.diagnostic(`mutated: ${vectors.valid.length * 6} dropped headers refused`);
});

test('every valid vector with one header sent twice is refused as duplicate_header', async (t) => {
  let cases = 0;
  for (const vector of vectors.valid) {
    for (const [name, value] of vector.headers) {
      // The same value, and another spelling of the name: still one header.
      for (const second of [[name, value], [name.toLowerCase(), value], [name.toUpperCase(), `${value}x`]]) {
        for (const headers of [[...vector.headers, second], [second, ...vector.headers]]) {
          for (const form of [headers, flat(headers)]) {
            const check = verifier.verify(form, method, path, vectors.now);
            assert.equal(check.kind, 'invalid', `${vector.name} with ${name} twice`);
            assert.equal(check.error.code, 'duplicate_header');
            cases++;
          }
        }
      }
    }
  }
  t.diagnostic(`mutated: ${cases} duplicated headers refused`);
});

test('header names match in any case and any order, among other headers', () => {
  for (const vector of vectors.valid) {
    const shuffled = [...vector.headers]
      .reverse()
      .map(([n, v], i) => [i % 2 ? n.toLowerCase() : n.toUpperCase(), v]);
    const headers = [['Host', 'orders'], ...shuffled, ['Accept', '*/*']];
    assert.equal(verifier.verify(headers, method, path, vectors.now).kind, 'valid', vector.name);
  }
});

test('a vector is bound to its request: another method or path is request_mismatch', () => {
  const [vector] = vectors.valid;
  for (const [m, p] of [['POST', path], [method, `${path}/`], [method, path.toUpperCase()], ['get', path]]) {
    const check = verifier.verify(vector.headers, m, p, vectors.now);
    assert.equal(check.error?.code, 'request_mismatch', `${m} ${p}`);
  }
});
