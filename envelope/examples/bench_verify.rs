//! Micro-benchmark: microseconds per envelope verification, the Rust figure
//! beside the SDKs' (`bench/envelope-verify.sh` runs all four in one
//! sitting). Verifies the `hs256_bearer` and `eddsa_dpop` vectors of
//! `testdata/vectors.json` the way a service does (`check_request`: header
//! extraction, every check of SPEC.md section 5, payload decoding) and
//! prints the median of 7 runs.
//!
//! `cargo run --release -p stella-envelope --example bench_verify`

use serde_json::Value;
use std::hint::black_box;
use std::time::Instant;
use stella_envelope::*;

const RUNS: usize = 7;

fn main() {
    let v: Value = serde_json::from_str(include_str!("../testdata/vectors.json"))
        .expect("vectors.json parses");
    let mut ring = Keyring::new();
    for key in v["keys"].as_array().expect("keys") {
        let kid = KeyId::new(key["kid"].as_str().expect("kid")).expect("a valid kid");
        ring.insert(Key::parse(kid, key["verify"].as_str().expect("verify")).expect("a key"))
            .expect("unique kids");
    }
    let s = &v["verifier"];
    let verifier = Verifier::new(
        ring,
        VerifierSettings {
            audience: s["audience"].as_str().expect("audience").into(),
            issuer: s["issuer"].as_str().map(Into::into),
            clock_skew_secs: s["clock_skew_seconds"].as_u64().expect("skew"),
            max_lifetime_secs: s["max_lifetime_seconds"].as_u64().expect("lifetime"),
        },
    );
    let binding = RequestBinding {
        method: v["request"]["method"].as_str().expect("method"),
        path: v["request"]["path"].as_str().expect("path"),
    };
    let now = v["now"].as_u64().expect("now");
    println!("rust, median of {RUNS} runs");
    for name in ["hs256_bearer", "eddsa_dpop"] {
        let vector = v["valid"]
            .as_array()
            .expect("valid")
            .iter()
            .find(|x| x["name"] == name)
            .expect("the vector");
        let fields: Vec<(String, String)> =
            serde_json::from_value(vector["headers"].clone()).expect("headers");
        let once = || {
            check_request(
                Some(&verifier),
                fields.iter().map(|(n, val)| (n.as_str(), val.as_bytes())),
                &binding,
                now,
            )
        };
        assert!(
            matches!(once(), EnvelopeCheck::Valid(_)),
            "{name} did not verify"
        );
        // Enough calls for about 0.2 s a run.
        let started = Instant::now();
        let mut calibrate = 0u64;
        while started.elapsed().as_millis() < 50 {
            black_box(once());
            calibrate += 1;
        }
        let calls = (calibrate * 4).max(100);
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..calls {
                    black_box(once());
                }
                t.elapsed().as_secs_f64() * 1e6 / calls as f64
            })
            .collect();
        runs.sort_by(|a, b| a.total_cmp(b));
        let alg = fields
            .iter()
            .find(|(n, _)| n == "X-StellaOps-Identity-Envelope-Alg")
            .map(|(_, a)| a.as_str())
            .unwrap_or("?");
        println!(
            "{alg:6} {name:14} {:8.2} µs/verification (min {:.2}, max {:.2}, {calls} calls a run)",
            runs[RUNS / 2],
            runs[0],
            runs[RUNS - 1]
        );
    }
}
