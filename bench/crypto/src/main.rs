//! Prints per-operation costs and two JOSE behaviours for
//! docs/dependencies.md. Median of 7 rounds; each round times N operations.

use std::hint::black_box;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

fn median_ns(rounds: usize, n: u32, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[rounds / 2]
}

fn main() {
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair};

    let rng = SystemRandom::new();
    let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCIsImlhdCI6MTcwMDAwMDAwMH0";

    // ES256 with ring.
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    let sig = pair.sign(&rng, msg).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let ring_key = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public);
    let ring_es256 = median_ns(7, 2_000, || {
        ring_key.verify(black_box(msg), sig.as_ref()).unwrap();
    });

    // ES256 with RustCrypto p256 (jsonwebtoken's rust_crypto backend).
    use p256::ecdsa::signature::Verifier;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
    let psig = p256::ecdsa::Signature::from_slice(sig.as_ref()).unwrap();
    let p256_es256 = median_ns(7, 500, || {
        vk.verify(black_box(msg), &psig).unwrap();
    });

    // HMAC-SHA256 over an envelope-sized input: ring (key precomputed, as
    // the nonce issuer does), ring (key built per call, as the envelope
    // signer did), and hmac + sha2.
    let key_bytes = [7u8; 32];
    let input = vec![b'x'; 600];
    let ring_key_pre = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let ring_hmac_pre = median_ns(7, 50_000, || {
        black_box(ring::hmac::sign(&ring_key_pre, black_box(&input)));
    });
    let ring_hmac_per_call = median_ns(7, 50_000, || {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, black_box(&key_bytes));
        black_box(ring::hmac::sign(&k, black_box(&input)));
    });
    use hmac::Mac;
    let rc_hmac = median_ns(7, 50_000, || {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(black_box(&key_bytes)).unwrap();
        m.update(black_box(&input));
        black_box(m.finalize().into_bytes());
    });

    // SHA-256 of a 900-byte access token.
    let token = vec![b't'; 900];
    let ring_sha = median_ns(7, 50_000, || {
        black_box(ring::digest::digest(&ring::digest::SHA256, black_box(&token)));
    });
    use sha2::Digest;
    let rc_sha = median_ns(7, 50_000, || {
        black_box(sha2::Sha256::digest(black_box(&token)));
    });

    println!("| operation | ring | RustCrypto |");
    println!("|---|---|---|");
    println!(
        "| ES256 verify (P-256) | {:.1} us | {:.1} us (p256 0.13) |",
        ring_es256 / 1000.0,
        p256_es256 / 1000.0
    );
    println!(
        "| HMAC-SHA256, 600 B, key precomputed | {:.2} us | - |",
        ring_hmac_pre / 1000.0
    );
    println!(
        "| HMAC-SHA256, 600 B, key built per call | {:.2} us | {:.2} us (hmac 0.12 + sha2 0.10) |",
        ring_hmac_per_call / 1000.0,
        rc_hmac / 1000.0
    );
    println!(
        "| SHA-256, 900 B | {:.2} us | {:.2} us (sha2 0.10) |",
        ring_sha / 1000.0,
        rc_sha / 1000.0
    );

    // jsonwebtoken and JOSE strictness: a header with duplicate "alg"
    // members and a header with "crit".
    let secret = b"a-shared-secret-of-thirty-two-bytes!";
    let claims = r#"{"sub":"x","exp":4102444800}"#;
    let hs = |header: &str, claims: &str| {
        let input = format!(
            "{}.{}",
            B64.encode(header.as_bytes()),
            B64.encode(claims.as_bytes())
        );
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sig = ring::hmac::sign(&k, input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    };
    let key = jsonwebtoken::DecodingKey::from_secret(secret);
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    let check = |name: &str, header: &str, claims: &str| {
        let r = jsonwebtoken::decode::<serde_json::Value>(&hs(header, claims), &key, &v);
        println!(
            "| {name} | {} |",
            match r {
                Ok(t) => format!("accepted, claims {}", t.claims),
                Err(e) => format!("refused ({e})"),
            }
        );
    };
    println!();
    println!("| jsonwebtoken 9, HS256 token with | result |");
    println!("|---|---|");
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
    check(
        "duplicate `alg` in the header",
        r#"{"alg":"HS384","alg":"HS256"}"#,
        claims,
    );
    check(
        "duplicate `sub` in the claims",
        hs256,
        r#"{"sub":"alice","sub":"admin","exp":4102444800}"#,
    );
    check(
        "duplicate `exp` (past, then future)",
        hs256,
        r#"{"sub":"x","exp":1,"exp":4102444800}"#,
    );
    check(
        "duplicate `scope` in the claims",
        hs256,
        r#"{"sub":"x","scope":"read","scope":"admin","exp":4102444800}"#,
    );
    check(
        "`crit: [\"exp-x\"]` (an extension it does not know)",
        r#"{"alg":"HS256","crit":["exp-x"],"exp-x":1}"#,
        claims,
    );
}
