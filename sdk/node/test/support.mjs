// Shared by the tests: the published vectors (read from the Rust crate's
// testdata, never copied, so a vector added there runs here), a signer for
// envelopes the vectors do not have, a log capture and bounded waits.

import { createHmac, createPrivateKey, sign as edSign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromEnvAndFile, Key, Keyring, Verifier } from '../src/index.js';

export const VECTORS_PATH = new URL('../../../envelope/testdata/vectors.json', import.meta.url);

/** The vectors file, parsed. */
export function loadVectors() {
  return JSON.parse(readFileSync(VECTORS_PATH, 'utf8'));
}

export const vectors = loadVectors();

/** The verifier the vectors describe. */
export function vectorVerifier(v = vectors) {
  return new Verifier({
    keyring: new Keyring(v.keys.map((k) => Key.parse(k.kid, k.verify))),
    audience: v.verifier.audience,
    issuer: v.verifier.issuer ?? null,
    clockSkewSeconds: v.verifier.clock_skew_seconds,
    maxLifetimeSeconds: v.verifier.max_lifetime_seconds,
  });
}

/** `kid=verify-form;...` for every vector key: Router__IdentityEnvelopeAcceptedKeys. */
export const vectorAcceptedKeys = vectors.keys.map((k) => `${k.kid}=${k.verify}`).join(';');

/** A vector by name. */
export function validVector(name) {
  const found = vectors.valid.find((x) => x.name === name);
  if (!found) throw new Error(`no valid vector ${name}`);
  return found;
}

/** The first valid vector signed with `alg`. */
export function validVectorFor(alg) {
  const found = vectors.valid.find((x) => x.headers.some(([n, val]) => /-alg$/i.test(n) && val === alg));
  if (!found) throw new Error(`no valid ${alg} vector`);
  return found;
}

/**
 * A ServiceConfig accepting the vector keys with the vectors' audience and
 * issuer, in `mode`.
 */
export function vectorConfig(mode, extra = {}) {
  const result = configFromEnvAndFile(
    {
      Router__AuthorizationTrustMode: mode,
      Router__IdentityEnvelopeAcceptedKeys: vectorAcceptedKeys,
      Router__IdentityEnvelopeAudience: vectors.verifier.audience,
      Router__IdentityEnvelopeIssuer: vectors.verifier.issuer,
      ...extra,
    },
    null,
  );
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.config;
}

/** The payload of the first valid vector: a template for signed test envelopes. */
export function basePayload(overrides = {}) {
  return { ...validVector('hs256_bearer').expect_payload, ...overrides };
}

/**
 * Signs an envelope as the gateway would, with the vector key `kid` (or a
 * given secret, or the Ed25519 key of a given 32-byte `seed`): the six
 * headers as [name, value] pairs. `json` replaces the serialized payload (a
 * string, or raw bytes) when a test needs what JSON.stringify never writes.
 */
export function seal({ kid = 'hs-1', payload = basePayload(), json, secret, alg, headerKid, seed } = {}) {
  const key = vectors.keys.find((k) => k.kid === kid);
  const useAlg = alg ?? (seed ? 'EdDSA' : undefined) ?? key?.alg ?? 'HS256';
  const bytes = Buffer.isBuffer(json) ? json : Buffer.from(json ?? JSON.stringify(payload), 'utf8');
  const envelope = bytes.toString('base64url');
  const iat = String(payload.iat);
  const exp = String(payload.exp);
  const sentKid = headerKid ?? kid;
  const input = `StellaOps-Identity-Envelope/1\n${useAlg}\n${sentKid}\n${iat}\n${exp}\n${envelope}`;
  let signature;
  if (useAlg === 'EdDSA') {
    const seedBytes = seed ?? Buffer.from(key.sign.split(':')[1], 'base64url');
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seedBytes]);
    signature = edSign(null, Buffer.from(input), createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
  } else {
    signature = createHmac('sha256', secret ?? Buffer.from(key.secret_utf8, 'utf8')).update(input).digest();
  }
  return [
    ['X-StellaOps-Identity-Envelope', envelope],
    ['X-StellaOps-Identity-Envelope-Signature', signature.toString('base64url')],
    ['X-StellaOps-Identity-Envelope-Alg', useAlg],
    ['X-StellaOps-Identity-Envelope-Kid', sentKid],
    ['X-StellaOps-Identity-Envelope-Iat', iat],
    ['X-StellaOps-Identity-Envelope-Exp', exp],
  ];
}

/** A logger that keeps every line, for assertions (and keeps test output quiet). */
export function captureLogger() {
  const lines = [];
  const keep = (level) => (message) => lines.push(`${level} ${message}`);
  return { lines, info: keep('info'), warn: keep('warn'), error: keep('error') };
}

/** A temporary directory removed after the test. */
export function tempDir(t, tag = 'envelope') {
  const dir = mkdtempSync(join(tmpdir(), `stella-${tag}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Resolves once `predicate()` is true; fails after `timeoutMs`. Polls: the
 * events waited for (file watches, signals) have no promise of their own.
 */
export async function waitFor(predicate, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves after `ms`: only to show that something did NOT happen. */
export const quietFor = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
