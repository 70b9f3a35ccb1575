// Service configuration (SPEC.md section 7): the variables, the
// Router__ConfigFile format and overlay (7.1), and that no problem ever
// shows a value.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  configFromEnv,
  configFromEnvAndFile,
  foldEnvName,
  loadConfig,
  parseConfigFile,
  ServiceConfig,
} from '../src/index.js';
import { tempDir, vectors } from './support.mjs';

const SECRET = 'plain-shared-secret-value-0123456789-XYZ';
const keyOf = (fill) => `hs256:${Buffer.alloc(32, fill).toString('base64url')}`;
const K1 = keyOf(1);
const K2 = keyOf(2);

/** The problems of a configuration that must fail, as strings. */
function problems(result) {
  assert.equal(result.ok, false, 'expected configuration problems');
  return result.errors.map(String);
}

/** The configuration that must load. */
function config(result) {
  assert.equal(result.ok, true, result.ok ? '' : result.errors.join('\n'));
  return result.config;
}

/** Asserts that no problem shows any of `values`, nor a long part of one. */
function showsNoValue(lines, values) {
  for (const line of lines) {
    for (const value of values) {
      for (let at = 0; at + 12 <= value.length; at += 6) {
        assert.ok(!line.includes(value.slice(at, at + 12)), `${line} shows part of a value`);
      }
    }
  }
}

test('with nothing set, envelopes are processed in ServiceEnforced with no keys', () => {
  const c = config(configFromEnvAndFile({ PATH: '/bin' }, null));
  assert.equal(c.enabled, true);
  assert.equal(c.mode, 'ServiceEnforced');
  assert.equal(c.verifier, null);
  assert.ok(Object.isFrozen(c));
});

test('names match case-insensitively with _ ignored', () => {
  assert.equal(foldEnvName('ROUTER__AUTHORIZATION_TRUST_MODE'), foldEnvName('Router__AuthorizationTrustMode'));
  const c = config(
    configFromEnvAndFile(
      {
        ROUTER__AUTHORIZATIONTRUSTMODE: 'hybrid',
        router_identity_envelope_signing_key: SECRET,
        Router_IdentityEnvelope_SigningKeyId: 'k-legacy',
        ROUTER__IDENTITYENVELOPEAUDIENCE: ' orders ',
        routeridentityenvelopeclockskewseconds: '+5',
      },
      null,
    ),
  );
  assert.equal(c.mode, 'Hybrid');
  assert.deepEqual(c.acceptedKids(), ['k-legacy']);
  assert.equal(c.verifier.audience, 'orders');
  assert.equal(c.verifier.clockSkewSeconds, 5);
  assert.equal(c.verifier.maxLifetimeSeconds, 300);
  assert.equal(c.verifier.issuer, null);
});

test('the signing key and the accepted keys make one keyring', () => {
  const c = config(
    configFromEnvAndFile(
      {
        Router__IdentityEnvelopeSigningKey: SECRET,
        Router__IdentityEnvelopeAcceptedKeys: `k1=${K1}; k2=${K2}`,
        Router__IdentityEnvelopeAudience: 'orders',
        Router__IdentityEnvelopeIssuer: 'gw',
        Router__AuthorizationTrustMode: 'GatewayEnforced',
      },
      null,
    ),
  );
  assert.deepEqual(c.acceptedKids(), ['default', 'k1', 'k2']);
  assert.equal(c.verifier.issuer, 'gw');
});

test('every problem is reported at once, by variable, never with its value', () => {
  const env = {
    Router__Enabled: 'maybe-not-secret-0123456789',
    Router__AuthorizationTrustMode: 'TrustEveryone-0123456789',
    Router__IdentityEnvelopeClockSkewSeconds: '301',
    Router__IdentityEnvelopeMaxLifetimeSeconds: '0',
    Router__IdentityEnvelopeAcceptedKeys: `k1=hs256:${SECRET}`,
    Router__IdentityEnvelopeSigningKey: SECRET.slice(0, 20),
  };
  const lines = problems(configFromEnvAndFile(env, null));
  assert.deepEqual(
    lines.map((l) => l.split(':')[0]),
    [
      'Router__Enabled',
      'Router__AuthorizationTrustMode',
      'Router__IdentityEnvelopeClockSkewSeconds',
      'Router__IdentityEnvelopeMaxLifetimeSeconds',
      'Router__IdentityEnvelopeAcceptedKeys',
      'Router__IdentityEnvelopeSigningKey',
    ],
  );
  showsNoValue(lines, Object.values(env));
});

test('Hybrid and GatewayEnforced need a key, and keys need an audience', () => {
  for (const mode of ['Hybrid', 'GatewayEnforced']) {
    assert.deepEqual(problems(configFromEnvAndFile({ Router__AuthorizationTrustMode: mode }, null)), [
      `Router__IdentityEnvelopeSigningKey: ${mode} needs Router__IdentityEnvelopeSigningKey, Router__IdentityEnvelopeAcceptedKeys or Router__IdentityEnvelopeJwksUrl`,
    ]);
  }
  // Disabled, a mode without keys is allowed: envelopes are ignored.
  const off = config(configFromEnvAndFile({ Router__Enabled: 'false', Router__AuthorizationTrustMode: 'GatewayEnforced' }, null));
  assert.equal(off.enabled, false);
  assert.deepEqual(problems(configFromEnvAndFile({ Router__IdentityEnvelopeAcceptedKeys: `a=${K1}` }, null)), [
    'Router__IdentityEnvelopeAudience: is required when envelope keys are configured',
  ]);
  assert.equal(
    problems(configFromEnvAndFile({ Router__IdentityEnvelopeAcceptedKeys: `a=${K1}`, Router__IdentityEnvelopeAudience: ' ' }, null)).length,
    1,
  );
});

test('the signing key id may not repeat an accepted kid', () => {
  const lines = problems(
    configFromEnvAndFile(
      {
        Router__IdentityEnvelopeSigningKey: SECRET,
        Router__IdentityEnvelopeSigningKeyId: 'k1',
        Router__IdentityEnvelopeAcceptedKeys: `k1=${K1}`,
        Router__IdentityEnvelopeAudience: 'orders',
      },
      null,
    ),
  );
  assert.deepEqual(lines, [
    'Router__IdentityEnvelopeSigningKeyId: key id k1 appears more than once (also in Router__IdentityEnvelopeAcceptedKeys)',
  ]);
  assert.deepEqual(
    problems(configFromEnvAndFile({ Router__IdentityEnvelopeSigningKey: SECRET, Router__IdentityEnvelopeSigningKeyId: 'a b' }, null)).map((l) => l.split(':')[0]),
    ['Router__IdentityEnvelopeSigningKeyId'],
  );
});

test('numbers and booleans take the forms and ranges of SPEC.md section 7', () => {
  const with_ = (extra) => configFromEnvAndFile({ Router__IdentityEnvelopeAcceptedKeys: `a=${K1}`, Router__IdentityEnvelopeAudience: 'o', ...extra }, null);
  for (const [skew, ok] of [['0', true], ['300', true], [' 030 ', true], ['301', false], ['-1', false], ['1.5', false], ['', false], ['1e2', false]]) {
    assert.equal(with_({ Router__IdentityEnvelopeClockSkewSeconds: skew }).ok, ok, `skew ${JSON.stringify(skew)}`);
  }
  for (const [life, ok] of [['1', true], ['3600', true], ['0', false], ['3601', false], ['99999999999999999999999', false]]) {
    assert.equal(with_({ Router__IdentityEnvelopeMaxLifetimeSeconds: life }).ok, ok, `lifetime ${life}`);
  }
  for (const [text, enabled] of [['true', true], ['TRUE', true], ['1', true], ['yes', true], ['false', false], [' No ', false], ['0', false]]) {
    assert.equal(config(with_({ Router__Enabled: text })).enabled, enabled, text);
  }
  assert.equal(with_({ Router__Enabled: 'on' }).ok, false);
});

test('configFromEnv refuses a Router__ConfigFile it would not read', () => {
  const lines = problems(configFromEnv({ Router__ConfigFile: '/etc/stella/envelope.env' }));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^Router__ConfigFile: /);
  assert.equal(config(configFromEnv({ Router__ConfigFile: '  ' })).mode, 'ServiceEnforced');
});

test('the config file format: comments, export, quotes, CRLF, BOM', () => {
  const text = [
    '\ufeff# orders service, envelope settings',
    '',
    '   # indented comment',
    'export Router__AuthorizationTrustMode=GatewayEnforced',
    `ROUTER__IDENTITYENVELOPEACCEPTEDKEYS="k1=${K1};k2=${K2}"\r`,
    "Router__IdentityEnvelopeAudience='orders'",
    'Router__IdentityEnvelopeIssuer=gw # not a comment',
    'export\tRouter__IdentityEnvelopeClockSkewSeconds = 10 ',
  ].join('\n');
  const { entries, errors } = parseConfigFile(text);
  assert.deepEqual(errors, []);
  assert.deepEqual(
    entries.map((e) => [e.name, e.line]),
    [
      ['Router__AuthorizationTrustMode', 4],
      ['Router__IdentityEnvelopeAcceptedKeys', 5],
      ['Router__IdentityEnvelopeAudience', 6],
      ['Router__IdentityEnvelopeIssuer', 7],
      ['Router__IdentityEnvelopeClockSkewSeconds', 8],
    ],
  );
  assert.equal(entries[2].value, 'orders');
  assert.equal(entries[3].value, 'gw # not a comment');
  assert.equal(entries[4].value, '10');
  const c = config(configFromEnvAndFile({}, text));
  assert.equal(c.mode, 'GatewayEnforced');
  assert.deepEqual(c.acceptedKids(), ['k1', 'k2']);
  assert.equal(c.verifier.issuer, 'gw # not a comment');
});

test('bad config file lines name the variable and the line, never the value', () => {
  const text = [
    `${SECRET}`, // a value pasted on a line of its own
    'Router__ConfigFile=/elsewhere',
    'Router__Nonsense=x',
    `NotOurs_${SECRET}=1`,
    `Router__IdentityEnvelopeSigningKey="${SECRET}`,
    `Router__IdentityEnvelopeSigningKey='${SECRET}"`,
    `Router__IdentityEnvelopeAcceptedKeys=k1=${K1}`,
    `router_identity_envelope_accepted_keys=k2=${K2}`,
  ].join('\n');
  const lines = problems(configFromEnvAndFile({ Router__IdentityEnvelopeAudience: 'orders' }, text));
  assert.deepEqual(lines, [
    'Router__ConfigFile: line 1: expected Name=value',
    'Router__ConfigFile: line 2: Router__ConfigFile cannot be set in the file it names',
    'Router__ConfigFile: line 3: Router__Nonsense is not a service envelope variable (SPEC.md section 7)',
    'Router__ConfigFile: line 4: the name is not a service envelope variable (SPEC.md section 7)',
    'Router__ConfigFile: line 5: the value of Router__IdentityEnvelopeSigningKey has an unmatched quote',
    'Router__ConfigFile: line 6: the value of Router__IdentityEnvelopeSigningKey has an unmatched quote',
    'Router__ConfigFile: line 8: Router__IdentityEnvelopeAcceptedKeys is already set on line 7',
  ]);
  showsNoValue(lines, [SECRET, K1, K2]);
});

test('the file overlays the environment: replaces any spelling, empty removes, silence keeps', () => {
  const env = {
    ROUTER__IDENTITYENVELOPESIGNINGKEY: SECRET,
    Router__IdentityEnvelopeSigningKeyId: 'old',
    Router__IdentityEnvelopeAudience: 'orders',
    Router__AuthorizationTrustMode: 'ServiceEnforced',
    Router__ConfigFile: '/not/read/by/the/pure/function',
  };
  const file = [
    'Router__AuthorizationTrustMode=GatewayEnforced',
    `Router__IdentityEnvelopeAcceptedKeys=new=${K1}`,
    'Router__IdentityEnvelopeSigningKey=',
  ].join('\n');
  const c = config(configFromEnvAndFile(env, file));
  assert.equal(c.mode, 'GatewayEnforced');
  assert.deepEqual(c.acceptedKids(), ['new'], 'the environment key is removed');
  assert.equal(c.verifier.audience, 'orders', 'kept from the environment');
  // Without the file's line, the environment's key is in use.
  assert.deepEqual(config(configFromEnvAndFile(env, file.split('\n').slice(0, 2).join('\n'))).acceptedKids(), ['new', 'old']);
});

test('a problem with a setting from the file names its line', () => {
  const lines = problems(configFromEnvAndFile({ Router__IdentityEnvelopeAudience: 'orders' }, `\nRouter__IdentityEnvelopeAcceptedKeys=k1=hs256:${SECRET.slice(0, 30)}`));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^Router__IdentityEnvelopeAcceptedKeys: .* \(set in Router__ConfigFile line 2\)$/);
  showsNoValue(lines, [SECRET]);
  // Bad lines and bad settings are reported in one pass.
  assert.deepEqual(problems(configFromEnvAndFile({}, 'junk\nRouter__AuthorizationTrustMode=Hybrid')), [
    'Router__ConfigFile: line 1: expected Name=value',
    'Router__IdentityEnvelopeSigningKey: Hybrid needs Router__IdentityEnvelopeSigningKey, Router__IdentityEnvelopeAcceptedKeys or Router__IdentityEnvelopeJwksUrl',
  ]);
});

test('loadConfig reads the file Router__ConfigFile names, and says when it cannot', (t) => {
  const dir = tempDir(t, 'config');
  const file = join(dir, 'envelope.env');
  writeFileSync(file, `Router__IdentityEnvelopeAcceptedKeys=${vectors.keys[0].kid}=${vectors.keys[0].verify}\n`);
  const c = config(loadConfig({ Router__ConfigFile: ` ${file} `, Router__IdentityEnvelopeAudience: 'orders' }));
  assert.deepEqual(c.acceptedKids(), [vectors.keys[0].kid]);
  assert.deepEqual(problems(loadConfig({ Router__ConfigFile: join(dir, 'missing.env') })), [
    `Router__ConfigFile: cannot read ${join(dir, 'missing.env')}: not found`,
  ]);
  assert.match(problems(loadConfig({ Router__ConfigFile: dir }))[0], /is a directory$/);
  writeFileSync(file, Buffer.from([0x52, 0x3d, 0xff, 0x0a]));
  assert.match(problems(loadConfig({ Router__ConfigFile: file }))[0], /not valid UTF-8$/);
});

test('a ServiceConfig is checked when built by hand too', () => {
  assert.throws(() => new ServiceConfig({ enabled: true, mode: 'GatewayEnforced', verifier: null }), TypeError);
  assert.throws(() => new ServiceConfig({ enabled: true, mode: 'gatewayenforced', verifier: null }), TypeError);
  assert.equal(new ServiceConfig({ enabled: false, mode: 'Hybrid', verifier: null }).mode, 'Hybrid');
});
