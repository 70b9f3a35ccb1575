// Key forms (SPEC.md section 4), keyrings, and that key material never shows.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { Key, KeyError, Keyring } from '../src/index.js';
import { vectors } from './support.mjs';

const SECRET = 'a-shared-secret-of-at-least-32-bytes!';
const hs = (fill) => `hs256:${Buffer.alloc(32, fill).toString('base64url')}`;
const reason = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KeyError, String(e));
    return e.reason;
  }
  assert.fail('no KeyError');
};
const hmac = (secret, message) => createHmac('sha256', secret).update(message).digest();

test('each form gives a key with its one algorithm', () => {
  for (const k of vectors.keys) {
    const key = Key.parse(k.kid, k.verify);
    assert.equal(key.alg, k.alg);
    assert.equal(key.kid, k.kid);
  }
  const ed = vectors.keys.find((k) => k.alg === 'EdDSA');
  assert.equal(Key.parse('e', ed.sign).kind, 'ed25519-private');
  assert.equal(Key.parse('e', ed.sign).alg, 'EdDSA');
  // The form is case-insensitive and may be spaced.
  assert.equal(Key.parse('a', ` HS256 : ${hs(1).slice(6)}`).alg, 'HS256');
});

test('an ed25519 private key verifies what its public half verifies', () => {
  const ed = vectors.keys.find((k) => k.alg === 'EdDSA');
  const vector = vectors.valid.find((x) => x.headers.some(([, v]) => v === 'EdDSA'));
  const h = Object.fromEntries(vector.headers.map(([n, v]) => [n.split('-').pop().toLowerCase(), v]));
  const input = `StellaOps-Identity-Envelope/1\nEdDSA\n${h.kid}\n${h.iat}\n${h.exp}\n${h.envelope}`;
  const signature = Buffer.from(h.signature, 'base64url');
  for (const spec of [ed.sign, ed.verify]) {
    const key = Key.parse(ed.kid, spec);
    assert.equal(key.verify(input, signature), true, spec.split(':')[0]);
    assert.equal(key.verify(`${input}x`, signature), false);
    assert.equal(key.verify(input, signature.subarray(1)), false);
  }
});

test('bad keys are refused with a reason', () => {
  assert.equal(reason(() => Key.parse('', hs(1))), 'bad_kid');
  assert.equal(reason(() => Key.parse('a b', hs(1))), 'bad_kid');
  assert.equal(reason(() => Key.parse('k'.repeat(65), hs(1))), 'bad_kid');
  assert.equal(reason(() => Key.parse('a', 'hs256:c2hvcnQ')), 'short_secret');
  assert.equal(reason(() => Key.parse('a', 'rsa:AAAA')), 'unknown_form');
  assert.equal(reason(() => Key.parse('a', 'no colon at all')), 'unknown_form');
  assert.equal(reason(() => Key.parse('a', 'ed25519-public:AAAA')), 'ed25519_length');
  assert.equal(reason(() => Key.parse('a', 'ed25519-private:AAAA')), 'ed25519_length');
  assert.equal(reason(() => Key.parse('a', 'hs256:AAA=')), 'encoding');
  assert.equal(reason(() => Key.parseCompat('a', 'too-short')), 'short_secret');
  assert.throws(() => new Key(Symbol('forged'), 'a', 'hs256', null, null, null), TypeError);
});

test('plain text is an hs256 secret only through parseCompat', () => {
  const key = Key.parseCompat('default', SECRET);
  assert.equal(key.alg, 'HS256');
  assert.equal(key.verify('m', hmac(Buffer.from(SECRET), 'm')), true);
  assert.equal(key.verify('m', hmac(Buffer.from(`${SECRET}x`), 'm')), false);
  assert.equal(reason(() => Key.parse('default', SECRET)), 'unknown_form');
  // Text with a colon that is not one of the forms is still "any other text".
  const colon = 'legacy:secret-with-a-colon-in-it-0123456789';
  assert.equal(Key.parseCompat('default', colon).verify('m', hmac(Buffer.from(colon), 'm')), true);
  // A known form is never reinterpreted as text.
  assert.equal(reason(() => Key.parseCompat('default', `hs256:${'!'.repeat(40)}`)), 'encoding');
  // The secret is the text's UTF-8 bytes: 16 two-byte characters are 32 bytes.
  assert.equal(Key.parseCompat('u', 'é'.repeat(16)).alg, 'HS256');
});

test('key material never shows in inspect, JSON or errors', () => {
  const material = Buffer.alloc(32, 9).toString('base64url');
  const ed = vectors.keys.find((k) => k.alg === 'EdDSA');
  const seed = ed.sign.split(':')[1];
  const keys = [Key.parse('a', `hs256:${material}`), Key.parseCompat('b', SECRET), Key.parse('c', ed.sign)];
  const ring = new Keyring(keys);
  for (const shown of [inspect(keys, { showHidden: true, depth: 5 }), JSON.stringify(keys), inspect(ring), JSON.stringify(ring)]) {
    for (const secret of [material, SECRET, seed]) assert.ok(!shown.includes(secret), shown);
  }
  assert.match(inspect(keys[0]), /<redacted>/);
  const errors = [
    () => Key.parse('a', `hs256:${material.slice(0, 20)}`),
    () => Key.parseCompat('a', SECRET.slice(0, 20)),
    () => Keyring.parseList(`a=hs256:${material};a=hs256:${material}`),
    () => Keyring.parseList(material),
  ].map((fn) => {
    try {
      fn();
    } catch (e) {
      return `${e.message} ${e.stack}`;
    }
    return assert.fail('no error');
  });
  for (const message of errors) {
    for (const secret of [material, material.slice(0, 20), SECRET.slice(0, 20)]) assert.ok(!message.includes(secret), message);
  }
});

test('a keyring list parses with ; or , and refuses duplicates and junk', () => {
  const ring = Keyring.parseList(` b=${hs(2)} ; a=${hs(1)},, c=${vectors.keys[2].verify};`);
  assert.deepEqual(ring.kids(), ['a', 'b', 'c']);
  assert.equal(ring.get('c').alg, 'EdDSA');
  assert.equal(ring.get('A'), undefined);
  assert.equal(reason(() => Keyring.parseList(`a=${hs(1)};a=${hs(2)}`)), 'duplicate_kid');
  assert.equal(reason(() => Keyring.parseList('junk')), 'list_entry');
  assert.equal(reason(() => Keyring.parseList(`a b=${hs(1)}`)), 'bad_kid');
  assert.equal(Keyring.parseList(' ; ').size, 0);
});

test('keyrings are the same only with the same kids, forms and material', () => {
  const ring = (list) => Keyring.parseList(list);
  const ed = vectors.keys.find((k) => k.alg === 'EdDSA');
  const same = (x, y) => ring(x).sameKeys(ring(y));
  assert.ok(same(`a=${hs(1)};b=${ed.verify}`, `b=${ed.verify}; a=${hs(1)}`));
  assert.ok(same('', ''));
  assert.ok(!same(`a=${hs(1)}`, `a=${hs(2)}`));
  assert.ok(!same(`a=${hs(1)}`, `c=${hs(1)}`));
  assert.ok(!same(`a=${hs(1)}`, `a=${hs(1)};b=${ed.verify}`));
  // The private and the public half of one key are different settings.
  assert.ok(!same(`b=${ed.sign}`, `b=${ed.verify}`));
});
