// Runtime reload (SPEC.md 7.1): the handle keeps the old configuration on
// any problem, logs what it did without key material, and the triggers
// (file rewritten, file renamed into place, Kubernetes ..data swap,
// SIGHUP) reload it. Waits are bounded; nothing sleeps a fixed time except
// to show that something did not happen.

import assert from 'node:assert/strict';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigHandle, EnvelopeConfigError } from '../src/index.js';
import {
  captureLogger,
  quietFor,
  seal,
  tempDir,
  validVector,
  vectors,
  waitFor,
} from './support.mjs';

const [HS1, HS2, ED1] = vectors.keys;
const accept = (...keys) => `Router__IdentityEnvelopeAcceptedKeys=${keys.map((k) => `${k.kid}=${k.verify}`).join(';')}`;
const material = vectors.keys.map((k) => k.verify.split(':')[1]);

/** A handle on a config file in a fresh directory. */
function setup(t, lines, env = {}) {
  const dir = tempDir(t, 'reload');
  const file = join(dir, 'envelope.env');
  writeFileSync(file, lines.join('\n'));
  const logger = captureLogger();
  const handle = new ConfigHandle({
    env: { Router__ConfigFile: file, Router__IdentityEnvelopeAudience: 'orders', ...env },
    logger,
  });
  return { dir, file, logger, handle };
}

/** Replaces `file` the way editors and kubectl do: write beside, rename over. */
function renameIntoPlace(file, lines) {
  const next = `${file}.next`;
  writeFileSync(next, lines.join('\n'));
  renameSync(next, file);
}

const verifyWith = (config, headers) =>
  config.verifier.verify(headers, vectors.request.method, vectors.request.path, vectors.now);

function assertNoKeyMaterial(lines) {
  for (const line of lines) for (const m of material) assert.ok(!line.includes(m), line);
}

test('reload applies, reports unchanged, and refuses, with generations and log lines', (t) => {
  const { file, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  const first = handle.current();
  assert.equal(handle.status().generation, 1);
  assert.deepEqual(first.acceptedKids(), ['hs-1']);

  assert.deepEqual(handle.reload(), { outcome: 'unchanged', generation: 1 });
  assert.equal(handle.current(), first, 'an unchanged reload swaps nothing');

  writeFileSync(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1, ED1)].join('\n'));
  assert.deepEqual(handle.reload(), { outcome: 'applied', generation: 2 });
  assert.equal(handle.current().mode, 'Hybrid');
  assert.deepEqual(handle.current().acceptedKids(), ['ed-1', 'hs-1']);
  assert.ok(handle.status().lastApplied instanceof Date);

  writeFileSync(file, ['Router__AuthorizationTrustMode=Trusting', `Router__IdentityEnvelopeAcceptedKeys=x=hs256:${material[0].slice(0, 20)}`].join('\n'));
  const refused = handle.reload();
  assert.equal(refused.outcome, 'refused');
  assert.equal(refused.generation, 2);
  assert.deepEqual(refused.errors.map((e) => e.variable), ['Router__AuthorizationTrustMode', 'Router__IdentityEnvelopeAcceptedKeys']);
  assert.equal(handle.current().mode, 'Hybrid', 'a bad reload changes nothing');
  assert.equal(handle.status().lastErrors.length, 2);

  writeFileSync(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1, ED1)].join('\n'));
  assert.equal(handle.reload().outcome, 'unchanged');
  assert.equal(handle.status().lastErrors, null, 'a good reload clears the last errors');

  assert.deepEqual(
    logger.lines,
    [
      'info envelope configuration loaded: generation 1, enabled true, mode GatewayEnforced, accepted kids hs-1',
      'info envelope configuration reloaded: unchanged, generation 1, mode GatewayEnforced, accepted kids hs-1',
      'info envelope configuration reloaded: applied, generation 2, enabled true, mode Hybrid, accepted kids ed-1,hs-1',
      'error envelope configuration reload refused, generation 2 (mode Hybrid) stays in use: Router__AuthorizationTrustMode: trust mode must be ServiceEnforced, Hybrid or GatewayEnforced (set in Router__ConfigFile line 1)',
      'error envelope configuration reload refused, generation 2 (mode Hybrid) stays in use: Router__IdentityEnvelopeAcceptedKeys: hs256 secret is 15 bytes; at least 32 are required (set in Router__ConfigFile line 2)',
      'info envelope configuration reloaded: unchanged, generation 2, mode Hybrid, accepted kids ed-1,hs-1',
    ],
  );
  assertNoKeyMaterial(logger.lines);
});

test('a missing or unreadable file on reload keeps the configuration in use', (t) => {
  const { file, dir, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  renameSync(file, join(dir, 'moved-away.env'));
  const refused = handle.reload();
  assert.equal(refused.outcome, 'refused');
  assert.equal(String(refused.errors[0]), `Router__ConfigFile: cannot read ${file}: not found`);
  assert.equal(handle.current().mode, 'GatewayEnforced');
  assert.match(logger.lines.at(-1), /^error .*Router__ConfigFile: cannot read/);
});

test('at start, problems are an EnvelopeConfigError with exit code 2 and every problem', (t) => {
  const dir = tempDir(t, 'start');
  const file = join(dir, 'envelope.env');
  writeFileSync(file, ['Router__AuthorizationTrustMode=GatewayEnforced', 'oops'].join('\n'));
  assert.throws(
    () => new ConfigHandle({ env: { Router__ConfigFile: file }, logger: captureLogger() }),
    (e) => {
      assert.ok(e instanceof EnvelopeConfigError);
      assert.equal(e.exitCode, 2);
      assert.deepEqual(e.problems.map(String), [
        'Router__ConfigFile: line 2: expected Name=value',
        'Router__IdentityEnvelopeSigningKey: GatewayEnforced needs Router__IdentityEnvelopeSigningKey, Router__IdentityEnvelopeAcceptedKeys or Router__IdentityEnvelopeJwksUrl',
      ]);
      assert.match(e.message, /line 2: expected Name=value/);
      return true;
    },
  );
});

test('a snapshot taken before a reload keeps deciding with its own keys', (t) => {
  const { file, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1, HS2)]);
  const inFlight = handle.current();
  const envelope = validVector('hs256_bearer').headers; // signed with hs-1
  writeFileSync(file, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS2)].join('\n'));
  assert.equal(handle.reload().outcome, 'applied');
  assert.equal(verifyWith(inFlight, envelope).kind, 'valid');
  assert.equal(verifyWith(handle.current(), envelope).error.code, 'unknown_kid');
  assert.ok(Object.isFrozen(inFlight) && Object.isFrozen(inFlight.verifier));
});

test('keys rotate in three waves without a request failing (SPEC.md 7.1)', (t) => {
  // The environment holds the old key as the signing key, as deployments do.
  const { file, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced'], {
    Router__IdentityEnvelopeSigningKey: HS1.secret_utf8,
    Router__IdentityEnvelopeSigningKeyId: 'hs-1',
  });
  const old = seal({ kid: 'hs-1' });
  const next = seal({ kid: 'hs-2' });
  assert.equal(verifyWith(handle.current(), old).kind, 'valid');
  assert.equal(verifyWith(handle.current(), next).error.code, 'unknown_kid');
  // Wave 1: every service accepts both.
  writeFileSync(file, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS2)].join('\n'));
  assert.equal(handle.reload().outcome, 'applied');
  assert.equal(verifyWith(handle.current(), old).kind, 'valid');
  assert.equal(verifyWith(handle.current(), next).kind, 'valid');
  // Wave 2 is the gateway's. Wave 3: the old key goes, from the file and
  // from the environment (an empty value removes it).
  writeFileSync(file, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS2), 'Router__IdentityEnvelopeSigningKey='].join('\n'));
  assert.equal(handle.reload().outcome, 'applied');
  assert.deepEqual(handle.current().acceptedKids(), ['hs-2']);
  assert.equal(verifyWith(handle.current(), old).error.code, 'unknown_kid');
  assert.equal(verifyWith(handle.current(), next).kind, 'valid');
});

test('a file rewritten in place is reloaded once it has been quiet for 200 ms', async (t) => {
  const { file, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  const triggers = handle.watch();
  t.after(() => triggers.close());
  assert.equal(triggers.watchedFile, file);
  const written = Date.now();
  writeFileSync(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1)].join('\n'));
  await waitFor(() => handle.status().generation === 2, 'the rewrite to be applied');
  assert.ok(Date.now() - written >= 190, 'debounced');
  assert.equal(handle.current().mode, 'Hybrid');
  assert.ok(logger.lines.includes('info reloading envelope configuration (file change)'));
});

test('a file renamed into place is reloaded', async (t) => {
  const { file, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  const triggers = handle.watch({ debounceMs: 50 });
  t.after(() => triggers.close());
  renameIntoPlace(file, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1, HS2)]);
  await waitFor(() => handle.status().generation === 2, 'the renamed file to be applied');
  assert.deepEqual(handle.current().acceptedKids(), ['hs-1', 'hs-2']);
  // And again: the new inode is watched as well as the first was.
  renameIntoPlace(file, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS2)]);
  await waitFor(() => handle.status().generation === 3, 'the second renamed file to be applied');
  assert.deepEqual(handle.current().acceptedKids(), ['hs-2']);
});

test('a Kubernetes volume update (..data swapped) is reloaded', async (t) => {
  const dir = tempDir(t, 'k8s');
  // The layout kubelet writes: a timestamped directory, ..data pointing at
  // it, and the file a symlink through ..data.
  const publish = (name, lines) => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'envelope.env'), lines.join('\n'));
    symlinkSync(name, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  publish('..v1', ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  symlinkSync('..data/envelope.env', join(dir, 'envelope.env'));
  const handle = new ConfigHandle({
    env: { Router__ConfigFile: join(dir, 'envelope.env'), Router__IdentityEnvelopeAudience: 'orders' },
    logger: captureLogger(),
  });
  const triggers = handle.watch({ debounceMs: 50 });
  t.after(() => triggers.close());
  publish('..v2', ['Router__AuthorizationTrustMode=Hybrid', accept(HS1)]);
  await waitFor(() => handle.status().generation === 2, 'the ..data swap to be applied');
  assert.equal(handle.current().mode, 'Hybrid');
});

test('a bad file written while serving keeps the configuration, and the fix applies', async (t) => {
  const { file, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  const before = handle.current();
  const triggers = handle.watch({ debounceMs: 50 });
  t.after(() => triggers.close());
  renameIntoPlace(file, ['Router__AuthorizationTrustMode=GatewayEnforced', `Router__IdentityEnvelopeAcceptedKeys=${HS1.kid}=hs256:c2hvcnQ`]);
  await waitFor(() => handle.status().lastErrors !== null, 'the bad file to be refused');
  assert.equal(handle.current(), before);
  const refusal = logger.lines.filter((l) => l.startsWith('error '));
  assert.equal(refusal.length, 2, refusal.join('\n'));
  assert.match(
    refusal[0],
    /: Router__IdentityEnvelopeAcceptedKeys: hs256 secret is 5 bytes; at least 32 are required \(set in Router__ConfigFile line 2\)$/,
  );
  // The bad key left no key at all, which GatewayEnforced does not allow.
  assert.match(refusal[1], /: Router__IdentityEnvelopeSigningKey: GatewayEnforced needs /);
  renameIntoPlace(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1)]);
  await waitFor(() => handle.status().generation === 2, 'the fixed file to be applied');
  assert.equal(handle.current().mode, 'Hybrid');
  assertNoKeyMaterial(logger.lines);
});

test('a burst of writes is one reload, and other files in the directory are ignored', async (t) => {
  const { dir, file, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  const triggers = handle.watch({ debounceMs: 100 });
  t.after(() => triggers.close());
  const reloads = () => logger.lines.filter((l) => l.includes('(file change)')).length;
  writeFileSync(join(dir, 'other.env'), 'unrelated');
  writeFileSync(`${file}.swp`, 'editor swap file');
  await quietFor(400);
  assert.equal(reloads(), 0, 'other files do not reload');
  for (let i = 0; i < 5; i++) {
    writeFileSync(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1), `# edit ${i}`].join('\n'));
  }
  await waitFor(() => handle.status().generation === 2, 'the burst to be applied');
  // Long enough for a second reload, had the burst or the reload's own
  // read of the file caused one.
  await quietFor(400);
  assert.equal(reloads(), 1);
});

test('close() stops the file watch', async (t) => {
  const { file, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  handle.watch({ debounceMs: 50 }).close();
  writeFileSync(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1)].join('\n'));
  await quietFor(300);
  assert.equal(handle.status().generation, 1);
  assert.ok(!logger.lines.some((l) => l.includes('reloading')));
});

test('SIGHUP reloads when asked, and only while the triggers are installed', async (t) => {
  const { file, logger, handle } = setup(t, ['Router__AuthorizationTrustMode=GatewayEnforced', accept(HS1)]);
  const listeners = process.listenerCount('SIGHUP');
  const fileOnly = handle.watch();
  assert.equal(process.listenerCount('SIGHUP'), listeners, 'SIGHUP is only handled when asked');
  fileOnly.close();
  const triggers = handle.watch({ sighup: true, file: false });
  t.after(() => triggers.close());
  assert.equal(triggers.watchedFile, null);
  assert.equal(process.listenerCount('SIGHUP'), listeners + 1);
  // Written without any file watch: only the signal can pick it up.
  writeFileSync(file, ['Router__AuthorizationTrustMode=Hybrid', accept(HS1)].join('\n'));
  process.kill(process.pid, 'SIGHUP');
  await waitFor(() => handle.status().generation === 2, 'SIGHUP to reload');
  assert.equal(handle.current().mode, 'Hybrid');
  assert.ok(logger.lines.includes('info reloading envelope configuration (SIGHUP)'));
  triggers.close();
  assert.equal(process.listenerCount('SIGHUP'), listeners);
});
