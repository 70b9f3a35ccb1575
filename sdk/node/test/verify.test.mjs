// Checks 2 to 16 beyond the published vectors: the payload's exact members
// and types, the time boundaries, and the order of the checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRequest, VerifiedIdentity, Verifier } from '../src/index.js';
import { basePayload, seal, vectors, vectorVerifier } from './support.mjs';

const verifier = vectorVerifier();
const { method, path } = vectors.request;
const NOW = vectors.now;

/** The code of verifying `headers`, or 'valid'. */
function outcome(headers, v = verifier, now = NOW, m = method, p = path) {
  const check = v.verify(headers, m, p, now);
  return check.kind === 'invalid' ? check.error.code : check.kind;
}

/** The base payload as JSON with `edit` applied to its text. */
const editedJson = (edit) => edit(JSON.stringify(basePayload()));

test('a signed test envelope built like the vectors verifies', () => {
  assert.equal(outcome(seal()), 'valid');
  assert.equal(outcome(seal({ kid: 'ed-1' })), 'valid');
});

test('every payload member is required, the nullable ones too', () => {
  for (const member of Object.keys(basePayload())) {
    const payload = basePayload();
    delete payload[member];
    // The headers keep the base payload's iat and exp.
    assert.equal(outcome(seal({ json: JSON.stringify(payload) })), 'malformed_payload', member);
  }
  for (const member of ['jkt', 'x5t#S256', 'spiffe_id']) {
    const cnf = { ...basePayload().cnf };
    delete cnf[member];
    assert.equal(outcome(seal({ payload: basePayload({ cnf }) })), 'malformed_payload', `cnf.${member}`);
  }
});

test('unknown members are refused, at the top and in cnf', () => {
  assert.equal(outcome(seal({ payload: basePayload({ admin: true }) })), 'malformed_payload');
  assert.equal(
    outcome(seal({ json: editedJson((j) => j.replace('{', '{"__proto__":{},')) })),
    'malformed_payload',
  );
  const cnf = { ...basePayload().cnf, extra: null };
  assert.equal(outcome(seal({ payload: basePayload({ cnf }) })), 'malformed_payload');
});

test('each member must have its exact type', () => {
  const wrong = {
    ver: ['1', 1.5, -1, true, null],
    iss: [null, 1, ['x']],
    aud: [null, {}],
    sub: [1, [], {}],
    tenant: [false],
    client_id: [0],
    scopes: ['orders.read', [1], [null], null, {}],
    roles: [[['clerk']], null],
    auth_method: ['Bearer', 'password', null, 1],
    cnf: [null, [], 'x', { jkt: 1, 'x5t#S256': null, spiffe_id: null }],
    method: [null, 1],
    path: [null, ['/']],
    request_id: [null, 7],
  };
  for (const [member, values] of Object.entries(wrong)) {
    for (const value of values) {
      const code = outcome(seal({ payload: basePayload({ [member]: value }) }));
      assert.equal(code, 'malformed_payload', `${member}: ${JSON.stringify(value)}`);
    }
  }
  // Integers are integer literals: no fraction, no exponent, no sign.
  for (const literal of ['1.0', '1e0', '10e-1', '-0']) {
    const json = editedJson((j) => j.replace('"ver":1', `"ver":${literal}`));
    assert.equal(outcome(seal({ json })), 'malformed_payload', literal);
  }
  const iat = basePayload().iat;
  const json = editedJson((j) => j.replace(`"iat":${iat}`, `"iat":${iat}.0`));
  assert.equal(outcome(seal({ json })), 'malformed_payload');
});

test('every auth_method of the SPEC is accepted', () => {
  for (const m of ['bearer', 'dpop', 'mtls', 'spiffe', 'anonymous', 'bypass']) {
    assert.equal(outcome(seal({ payload: basePayload({ auth_method: m }) })), 'valid', m);
  }
});

test('ver is range-checked as u32 before it is compared with 1', () => {
  assert.equal(outcome(seal({ payload: basePayload({ ver: 2 }) })), 'unsupported_version');
  assert.equal(outcome(seal({ payload: basePayload({ ver: 0 }) })), 'unsupported_version');
  assert.equal(outcome(seal({ payload: basePayload({ ver: 4294967295 }) })), 'unsupported_version');
  assert.equal(outcome(seal({ payload: basePayload({ ver: 4294967296 }) })), 'malformed_payload');
});

test('payload iat and exp are exact u64: a large one differs from the header, a huge one is malformed', () => {
  const p = basePayload();
  // 2^53 + 1 would round to 2^53 as a double: compared exactly, it differs.
  for (const [literal, code] of [
    ['9007199254740993', 'timestamp_mismatch'],
    ['18446744073709551615', 'timestamp_mismatch'],
    ['18446744073709551616', 'malformed_payload'],
    ['-1', 'malformed_payload'],
  ]) {
    const json = JSON.stringify(p).replace(`"exp":${p.exp}`, `"exp":${literal}`);
    assert.equal(outcome(seal({ payload: p, json })), code, literal);
  }
});

test('duplicate members anywhere, lone surrogates and bad UTF-8 are malformed_payload', () => {
  const cases = [
    editedJson((j) => j.replace('"jkt":null', '"jkt":null,"jkt":null')),
    editedJson((j) => j.replace('"sub":"user-7"', '"sub":"user-7","s\\u0075b":"admin"')),
    editedJson((j) => j.replace('"sub":"user-7"', '"sub":"user-\\ud800"')),
    editedJson((j) => `${j} x`),
    editedJson((j) => `\ufeff${j}`),
  ];
  for (const json of cases) assert.equal(outcome(seal({ json })), 'malformed_payload', json.slice(0, 40));
  const [before, after] = editedJson((j) => j).split('user-7');
  const latin1 = Buffer.concat([Buffer.from(before), Buffer.from([0x75, 0xe9]), Buffer.from(after)]);
  assert.equal(outcome(seal({ json: latin1 })), 'malformed_payload', 'not UTF-8');
  const escaped = editedJson((j) => j.replace('"sub":"user-7"', '"sub":"user-\\u0037\\ud83d\\ude00"'));
  assert.equal(verifier.verify(seal({ json: escaped }), method, path, NOW).identity.subject, 'user-7😀');
});

test('lifetime, expiry and issue time are checked at their boundaries', () => {
  const at = (iat, exp, now = NOW) => outcome(seal({ payload: basePayload({ iat, exp }) }), verifier, now);
  const { clock_skew_seconds: skew, max_lifetime_seconds: max } = vectors.verifier;
  assert.equal(at(NOW, NOW + max), 'valid');
  assert.equal(at(NOW, NOW + max + 1), 'bad_lifetime');
  assert.equal(at(NOW, NOW), 'bad_lifetime');
  assert.equal(at(NOW, NOW - 1), 'bad_lifetime');
  assert.equal(at(NOW - 60, NOW - skew), 'valid');
  assert.equal(at(NOW - 60, NOW - skew - 1), 'expired');
  assert.equal(at(NOW + skew, NOW + skew + 60), 'valid');
  assert.equal(at(NOW + skew + 1, NOW + skew + 60), 'issued_in_future');
});

test('the first failing check decides the code', () => {
  // Unknown kid and a malformed timestamp: check 3 comes before check 5.
  const headers = seal().map(([n, v]) => [n, /-kid$/i.test(n) ? 'nobody' : /-iat$/i.test(n) ? '01' : v]);
  assert.equal(outcome(headers), 'unknown_kid');
  // A bad signature over a payload that would not parse: check 7 before 8.
  const garbage = seal({ json: '{' }).map(([n, v]) => [n, /-signature$/i.test(n) ? 'AAAA' : v]);
  assert.equal(outcome(garbage), 'bad_signature');
  // Expired and for another audience and request: check 12 first.
  const stale = seal({ payload: basePayload({ iat: NOW - 600, exp: NOW - 500, aud: 'billing' }) });
  assert.equal(outcome(stale, verifier, NOW, 'POST', '/elsewhere'), 'expired');
  // Wrong issuer and wrong audience: check 14 before 15.
  assert.equal(outcome(seal({ payload: basePayload({ iss: 'rogue', aud: 'billing' }) })), 'issuer_mismatch');
});

test('with no issuer configured any iss is accepted', () => {
  const anyIssuer = new Verifier({ keyring: verifier.keyring, audience: verifier.audience });
  assert.equal(outcome(seal({ payload: basePayload({ iss: 'another-gateway' }) }), anyIssuer), 'valid');
});

test('an envelope with no key configured is unknown_kid, and no envelope is absent', () => {
  assert.equal(checkRequest(null, seal(), method, path, NOW).error.code, 'unknown_kid');
  assert.equal(checkRequest(null, [['accept', '*/*']], method, path, NOW).kind, 'absent');
  assert.equal(checkRequest(null, seal().slice(1), method, path, NOW).error.code, 'missing_header');
});

test('now must be whole unix seconds', () => {
  assert.throws(() => verifier.verify(seal(), method, path, Date.now() / 1000), TypeError);
  assert.throws(() => verifier.verify([], method, path, '1767225600'), TypeError);
});

test('only verify makes a VerifiedIdentity, and it cannot be changed', () => {
  assert.throws(() => new VerifiedIdentity(Symbol('forged'), basePayload(), 'hs-1', 'HS256'), TypeError);
  const { identity } = verifier.verify(seal(), method, path, NOW);
  assert.throws(() => {
    identity.subject = 'admin';
  }, TypeError);
  assert.throws(() => identity.scopes.push('orders.write'), TypeError);
  assert.ok(identity.hasScope('orders.read') && !identity.hasScope('orders.write'));
  assert.ok(identity.hasRole('clerk'));
});
