// The trust-mode table of SPEC.md section 6, row by row, and the
// problem+json body a rejection is answered with.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decide, parseTrustMode, problemBody, problemHeaders, TrustMode } from '../src/index.js';
import { basePayload, seal, vectors, vectorVerifier } from './support.mjs';

const verifier = vectorVerifier();
const check = (headers) => verifier.verify(headers, vectors.request.method, vectors.request.path, vectors.now);
const valid = check(seal());
const absent = check([]);
const badSignature = check(seal().map(([n, v]) => [n, /-kid$/i.test(n) ? 'hs-2' : v]));
const wrongAudience = check(seal({ payload: basePayload({ aud: 'billing' }) }));

/** An action as a comparable summary. */
function summary(action) {
  switch (action.action) {
    case 'use_envelope':
      return `use_envelope ${action.identity.subject}`;
    case 'service_auth':
      return `service_auth ignored=${action.ignored?.code ?? '-'}`;
    case 'reject':
      return `reject ${action.rejection.status} ${action.rejection.code} cause=${action.rejection.cause?.code ?? '-'}`;
  }
}

test('the checks this table uses are what they claim', () => {
  assert.equal(valid.kind, 'valid');
  assert.equal(absent.kind, 'absent');
  assert.equal(badSignature.error.code, 'bad_signature');
  assert.equal(wrongAudience.error.code, 'audience_mismatch');
});

test('trust mode table, row by row', () => {
  const rows = [
    [TrustMode.ServiceEnforced, valid, 'service_auth ignored=-'],
    [TrustMode.ServiceEnforced, absent, 'service_auth ignored=-'],
    [TrustMode.ServiceEnforced, badSignature, 'service_auth ignored=bad_signature'],
    [TrustMode.ServiceEnforced, wrongAudience, 'service_auth ignored=audience_mismatch'],
    [TrustMode.Hybrid, valid, 'use_envelope user-7'],
    [TrustMode.Hybrid, absent, 'service_auth ignored=-'],
    [TrustMode.Hybrid, badSignature, 'reject 401 envelope_invalid cause=bad_signature'],
    [TrustMode.Hybrid, wrongAudience, 'reject 401 envelope_invalid cause=audience_mismatch'],
    [TrustMode.GatewayEnforced, valid, 'use_envelope user-7'],
    [TrustMode.GatewayEnforced, absent, 'reject 401 envelope_required cause=-'],
    [TrustMode.GatewayEnforced, badSignature, 'reject 401 envelope_invalid cause=bad_signature'],
    [TrustMode.GatewayEnforced, wrongAudience, 'reject 403 envelope_audience_mismatch cause=audience_mismatch'],
  ];
  for (const [mode, result, want] of rows) {
    assert.equal(summary(decide(mode, result)), want, `${mode} ${result.kind}`);
  }
  assert.throws(() => decide('Trusting', valid), TypeError);
});

test('the problem body names the codes, matches the Rust layer, and echoes no header', () => {
  const rejection = decide(TrustMode.GatewayEnforced, badSignature).rejection;
  assert.equal(
    problemBody(rejection),
    '{"envelope_error":"bad_signature","error":"envelope_invalid","status":401,"title":"Unauthorized","type":"about:blank"}',
  );
  assert.equal(
    problemBody(decide(TrustMode.GatewayEnforced, absent).rejection),
    '{"envelope_error":null,"error":"envelope_required","status":401,"title":"Unauthorized","type":"about:blank"}',
  );
  const forbidden = problemBody(decide(TrustMode.GatewayEnforced, wrongAudience).rejection);
  assert.equal(JSON.parse(forbidden).title, 'Forbidden');
  assert.ok(!forbidden.includes('billing'), 'the seen audience is not echoed');
  assert.deepEqual(problemHeaders(forbidden), {
    'content-type': 'application/problem+json',
    'cache-control': 'no-store',
    'content-length': String(forbidden.length),
  });
});

test('trust modes parse case-insensitively, ignoring _ and -', () => {
  for (const [text, mode] of [
    ['GatewayEnforced', 'GatewayEnforced'],
    [' gateway_enforced ', 'GatewayEnforced'],
    ['HYBRID', 'Hybrid'],
    ['service-enforced', 'ServiceEnforced'],
  ]) {
    assert.equal(parseTrustMode(text), mode, text);
  }
  for (const text of ['', 'Gateway', 'enforced', 'hybrid2']) assert.equal(parseTrustMode(text), null, text);
});
