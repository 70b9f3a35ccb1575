// Check 1: finding the six headers among a request's field lines.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  EnvelopeError,
  extractEnvelopeHeaders,
  HEADER_ALG,
  HEADER_ENVELOPE,
  HEADER_KID,
  HEADER_NAMES,
  HEADER_SIGNATURE,
  signingInput,
} from '../src/index.js';

const all = (value = 'x') => HEADER_NAMES.map((n) => [n, value]);
const code = (headers) => {
  const found = extractEnvelopeHeaders(headers);
  return found instanceof EnvelopeError ? `${found.code} ${found.header}` : found;
};

test('no envelope header at all is no envelope, not an error', () => {
  assert.equal(extractEnvelopeHeaders([]), null);
  assert.equal(extractEnvelopeHeaders([['accept', '*/*'], ['x-stellaops-other', 'x']]), null);
  assert.equal(extractEnvelopeHeaders({ accept: '*/*', [HEADER_KID]: undefined }), null);
  assert.equal(extractEnvelopeHeaders(new Map()), null);
});

test('some but not all headers name the first missing one', () => {
  assert.equal(code([['x-stellaops-identity-envelope', 'e30']]), `missing_header ${HEADER_SIGNATURE}`);
  assert.equal(code(all().filter(([n]) => n !== HEADER_KID)), `missing_header ${HEADER_KID}`);
});

test('all six in any accepted form give their values', () => {
  const want = { envelope: 'e', signature: 's', alg: 'a', kid: 'k', iat: '1', exp: '2' };
  const pairs = HEADER_NAMES.map((n, i) => [n.toLowerCase(), Object.values(want)[i]]);
  assert.deepEqual(extractEnvelopeHeaders(pairs), want);
  assert.deepEqual(extractEnvelopeHeaders(pairs.flat()), want);
  assert.deepEqual(extractEnvelopeHeaders(Object.fromEntries(pairs)), want);
  assert.deepEqual(extractEnvelopeHeaders(new Map(pairs)), want);
  assert.deepEqual(extractEnvelopeHeaders(new Headers(pairs)), want);
});

test('a header on two field lines is duplicate_header whatever the case', () => {
  assert.equal(code([...all(), ['X-STELLAOPS-IDENTITY-ENVELOPE-KID', 'y']]), `duplicate_header ${HEADER_KID}`);
  // node's req.headers form: an array value is one entry per field line.
  const object = Object.fromEntries(all());
  object[HEADER_ALG] = ['HS256', 'HS256'];
  assert.equal(code(object), `duplicate_header ${HEADER_ALG}`);
  // fetch's Headers joins repeated values: the joined value has a space.
  const joined = new Headers(all());
  joined.append(HEADER_ALG, 'HS256');
  assert.equal(code(joined), `malformed_header ${HEADER_ALG}`);
});

test('size limits are 16384 bytes for the envelope and 256 for the others', () => {
  const withValue = (name, value) => all().map(([n, v]) => [n, n === name ? value : v]);
  assert.equal(typeof code(withValue(HEADER_ENVELOPE, 'A'.repeat(16384))), 'object');
  assert.equal(code(withValue(HEADER_ENVELOPE, 'A'.repeat(16385))), `header_too_large ${HEADER_ENVELOPE}`);
  assert.equal(typeof code(withValue(HEADER_KID, 'k'.repeat(256))), 'object');
  assert.equal(code(withValue(HEADER_KID, 'k'.repeat(257))), `header_too_large ${HEADER_KID}`);
  // Node hands header bytes over as latin1, one character per byte; a
  // caller's character above U+00FF counts as its UTF-8 bytes.
  assert.equal(code(withValue(HEADER_KID, 'é'.repeat(200))), `malformed_header ${HEADER_KID}`);
  assert.equal(code(withValue(HEADER_KID, 'Ā'.repeat(200))), `header_too_large ${HEADER_KID}`);
});

test('values must be visible ascii', () => {
  for (const bad of ['a b', 'a\tb', '\u007f', '\u0080', 'é', '\u0000', 'ā']) {
    const headers = all().map(([n, v]) => [n, n === HEADER_SIGNATURE ? bad : v]);
    assert.equal(code(headers), `malformed_header ${HEADER_SIGNATURE}`, JSON.stringify(bad));
  }
  assert.equal(typeof code(all('!~')), 'object');
  // An empty value is visible ASCII (no byte is not); later checks refuse it.
  assert.equal(typeof code(all('')), 'object');
});

test('the first problem in field order wins, then the first missing header', () => {
  const big = [HEADER_ENVELOPE, 'A'.repeat(16385)];
  assert.equal(code([big, ...all(), [HEADER_KID, 'again']]), `header_too_large ${HEADER_ENVELOPE}`);
  assert.equal(code([[HEADER_KID, 'a'], [HEADER_KID, 'b'], big]), `duplicate_header ${HEADER_KID}`);
});

test('only ascii letters fold: a Kelvin sign is not a K', () => {
  const kelvin = all().map(([n, v]) => [n === HEADER_KID ? n.replace('K', '\u212a') : n, v]);
  assert.equal(code(kelvin), `missing_header ${HEADER_KID}`);
});

test('the signing input is the documented byte string', () => {
  assert.equal(
    signingInput({ alg: 'HS256', kid: 'k1', iat: '10', exp: '70', envelope: 'e30', signature: 'x' }),
    'StellaOps-Identity-Envelope/1\nHS256\nk1\n10\n70\ne30',
  );
});

test('headers of an unknown shape are a programming error', () => {
  assert.throws(() => extractEnvelopeHeaders('X-StellaOps-Identity-Envelope: x'), TypeError);
  assert.throws(() => extractEnvelopeHeaders(['a', 'b', 'c']), TypeError);
  assert.throws(() => extractEnvelopeHeaders([[HEADER_KID, 7]]), TypeError);
});
