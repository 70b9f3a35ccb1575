// Microseconds per verification of one HS256 and one EdDSA valid vector:
// header extraction, every check of SPEC.md section 5 and the identity, as
// the middleware runs them (from node's flat rawHeaders). Prints the median
// of several runs, each long enough to swamp timer resolution.
//
//     node bench.mjs [runs] [iterations per run]

import { readFileSync } from 'node:fs';
import { Key, Keyring, Verifier } from './src/index.js';

const vectors = JSON.parse(readFileSync(new URL('../../envelope/testdata/vectors.json', import.meta.url), 'utf8'));
const runs = Number(process.argv[2] ?? 9);
const iterations = Number(process.argv[3] ?? 20_000);

const verifier = new Verifier({
  keyring: new Keyring(vectors.keys.map((k) => Key.parse(k.kid, k.verify))),
  audience: vectors.verifier.audience,
  issuer: vectors.verifier.issuer ?? null,
  clockSkewSeconds: vectors.verifier.clock_skew_seconds,
  maxLifetimeSeconds: vectors.verifier.max_lifetime_seconds,
});
const { method, path } = vectors.request;

/** The first valid vector with this alg, as node's rawHeaders. */
function rawHeadersFor(alg) {
  const vector = vectors.valid.find((v) => v.headers.some(([n, value]) => /-alg$/i.test(n) && value === alg));
  return { name: vector.name, raw: [['Host', 'orders'], ['Accept', '*/*'], ...vector.headers].flat() };
}

function bench(alg) {
  const { name, raw } = rawHeadersFor(alg);
  const once = () => verifier.verify(raw, method, path, vectors.now);
  if (once().kind !== 'valid') throw new Error(`${name} does not verify`);
  for (let i = 0; i < iterations; i++) once(); // warm up the JIT
  const perRun = [];
  for (let r = 0; r < runs; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) once();
    perRun.push(Number(process.hrtime.bigint() - start) / 1000 / iterations);
  }
  perRun.sort((a, b) => a - b);
  const median = perRun[Math.floor(perRun.length / 2)];
  console.log(
    `${alg.padEnd(6)} ${median.toFixed(2).padStart(7)} µs/verify (median of ${runs} runs x ${iterations}; ` +
      `min ${perRun[0].toFixed(2)}, max ${perRun.at(-1).toFixed(2)}) vector ${name}`,
  );
}

console.log(`node ${process.version}, ${process.platform}/${process.arch}`);
bench('HS256');
bench('EdDSA');
