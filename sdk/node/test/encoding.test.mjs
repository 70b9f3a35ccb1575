// Strict decoders: one encoding per value.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  b64urlDecode,
  b64urlEncode,
  JsonError,
  JsonNumber,
  parseCanonicalDecimal,
  parseStrictJsonObject,
} from '../src/index.js';

const json = (text) => parseStrictJsonObject(Buffer.from(text, 'utf8'));
const jsonFails = (text, reason) =>
  assert.throws(() => (typeof text === 'string' ? json(text) : parseStrictJsonObject(text)), (e) => {
    assert.ok(e instanceof JsonError, String(e));
    assert.equal(e.reason, reason, `${JSON.stringify(String(text))}: ${e.reason}`);
    return true;
  });

test('base64url round-trips and refuses padding, other alphabets and stray bits', () => {
  assert.equal(b64urlDecode(b64urlEncode(Buffer.from('hello'))).toString(), 'hello');
  assert.equal(b64urlDecode('QQ').toString(), 'A');
  assert.equal(b64urlDecode('').length, 0);
  for (const bad of ['aGVsbG8=', 'aGVsbG+', 'aGVsbG/', 'QR', 'Q', ' QQ', 'QQ ', 'Q Q', 'QQ\n', 'QQ==', 'é']) {
    assert.equal(b64urlDecode(bad), null, JSON.stringify(bad));
  }
});

test('the RFC 8705 example thumbprint is not canonical base64url', () => {
  // Its last character carries non-zero unused bits.
  assert.equal(b64urlDecode('bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2'), null);
  assert.equal(b64urlDecode('bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0').length, 32);
});

test('canonical decimals only: digits, no sign, no leading zero, at most 15 digits', () => {
  assert.equal(parseCanonicalDecimal('0'), 0);
  assert.equal(parseCanonicalDecimal('1700000000'), 1_700_000_000);
  assert.equal(parseCanonicalDecimal('999999999999999'), 999_999_999_999_999);
  for (const bad of ['', '01', '00', '+1', '-1', '1.0', ' 1', '1 ', '1e3', '0x10', '1234567890123456', '١']) {
    assert.equal(parseCanonicalDecimal(bad), null, JSON.stringify(bad));
  }
});

test('strict json reads objects into maps and numbers as their literal', () => {
  const doc = json(' {"a":1,"b":[true,false,null,"x\\u00e9\\ud83d\\ude00\\n"],"c":{"d":-1.5e3}} ');
  assert.ok(doc instanceof Map);
  assert.deepEqual(doc.get('a'), new JsonNumber('1', true));
  assert.deepEqual(doc.get('b'), [true, false, null, 'xé😀\n']);
  assert.deepEqual(doc.get('c').get('d'), new JsonNumber('-1.5e3', false));
  // A member named __proto__ is just a member.
  assert.equal(json('{"__proto__":{"polluted":1}}').get('__proto__').get('polluted').text, '1');
  assert.equal({}.polluted, undefined);
});

test('duplicate member names are refused at any depth, compared after unescaping', () => {
  jsonFails('{"a":1,"a":2}', 'duplicate_member');
  jsonFails('{"a":{"x":1,"x":1}}', 'duplicate_member');
  jsonFails('{"a":[{"x":1,"x":1}]}', 'duplicate_member');
  jsonFails('{"a":1,"\\u0061":2}', 'duplicate_member');
  assert.equal(json('{"a":1,"A":2}').size, 2);
});

test('anything but one well-formed object is refused', () => {
  jsonFails('[1]', 'not_object');
  jsonFails('"x"', 'not_object');
  jsonFails('', 'not_object');
  jsonFails('\ufeff{}', 'not_object');
  jsonFails('\f{}', 'not_object');
  for (const bad of [
    '{"a":1} x', '{"a":1}{}', '{"a":1,}', '{"a":[1,]}', '{"a" 1}', "{'a':1}", '{a:1}',
    '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":+1}', '{"a":-}', '{"a":1e}', '{"a":NaN}',
    '{"a":tru}', '{"a":"\t"}', '{"a":"\\x"}', '{"a":"\\u12"}', '{"a":"unterminated}',
    '{"a":"\\ud800"}', '{"a":"\\udc00"}', '{"a":"\\ud800\\u0041"}', '{"a":1}\f',
  ]) {
    jsonFails(bad, 'syntax');
  }
});

test('bytes that are not UTF-8 are refused, not replaced', () => {
  jsonFails(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), 'utf8');
  jsonFails(Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]), 'utf8'); // CESU surrogate
});

test('nesting deeper than 16 is refused', () => {
  const nested = (n) => `{"a":${'['.repeat(n)}${']'.repeat(n)}}`;
  assert.ok(json(nested(15)));
  jsonFails(nested(16), 'too_deep');
  jsonFails(nested(10_000), 'too_deep');
});
