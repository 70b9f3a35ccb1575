//! DPoP proofs (RFC 9449): the project's own client code, used by the e2e
//! tests and by the load generator.

use crate::jose::b64url;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU32, Ordering};

/// `ath`: base64url(SHA-256(access token)), RFC 9449 section 4.2.
pub fn dpop_ath(access_token: &str) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes()).as_ref())
}

/// A client's DPoP key: an ES256 (P-256) key pair. The same key signs the
/// proof of the token request (through `token.mjs`, which reads
/// [`DpopKey::write_private_jwk`]'s file) and the proofs of resource
/// requests, so the Authority binds the token (`cnf.jkt`) to this key.
pub struct DpopKey {
    /// Signatures in JWS form (`r || s`).
    fixed: EcdsaKeyPair,
    /// Signatures in ASN.1 DER form, which JWS does not allow.
    der: EcdsaKeyPair,
    /// The private scalar, 32 octets.
    d: Vec<u8>,
    /// The public point, uncompressed (`04 || x || y`).
    point: Vec<u8>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> DpopKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate p-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load p-256 key");
        // ring does not hand out the private scalar; it sits in the
        // PKCS#8 document's ECPrivateKey as `INTEGER 1, OCTET STRING (32)`.
        let doc = pkcs8.as_ref();
        let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
        let at = doc
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("ECPrivateKey in ring's pkcs8 document")
            + marker.len();
        let d = doc[at..at + 32].to_vec();
        let point = pair.public_key().as_ref().to_vec();
        DpopKey::from_parts(d, point)
    }

    /// A key from a private EC P-256 JWK (`{kty, crv, x, y, d}`).
    pub fn from_private_jwk(jwk: &Value) -> DpopKey {
        assert!(
            jwk["kty"] == "EC" && jwk["crv"] == "P-256",
            "not a P-256 jwk: {jwk}"
        );
        let member = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(
                    jwk[name]
                        .as_str()
                        .unwrap_or_else(|| panic!("jwk has no {name}")),
                )
                .unwrap_or_else(|e| panic!("jwk {name} is not base64url: {e}"))
        };
        let mut point = vec![4u8];
        point.extend(member("x"));
        point.extend(member("y"));
        DpopKey::from_parts(member("d"), point)
    }

    fn from_parts(d: Vec<u8>, point: Vec<u8>) -> DpopKey {
        let rng = ring::rand::SystemRandom::new();
        // ring checks that the private and public halves belong together.
        let pair = |alg| {
            EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point, &rng)
                .expect("consistent p-256 key pair")
        };
        DpopKey {
            fixed: pair(&ECDSA_P256_SHA256_FIXED_SIGNING),
            der: pair(&ECDSA_P256_SHA256_ASN1_SIGNING),
            d,
            point,
            rng,
        }
    }

    /// The public key as a JWK, as it goes into a proof's header.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(&self.point[1..33]),
            "y": b64url(&self.point[33..65]),
        })
    }

    /// The private key as a JWK (with `d`): the format `token.mjs
    /// --dpop-key-file` and `proof.mjs --key-file` read.
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.jwk();
        jwk["d"] = json!(b64url(&self.d));
        jwk
    }

    /// Writes [`private_jwk`](Self::private_jwk) to `path` (mode 0600 on
    /// unix), for `token.mjs` and `proof.mjs`.
    pub fn write_private_jwk(&self, path: &std::path::Path) {
        std::fs::write(path, format!("{}\n", self.private_jwk()))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
    }

    /// The RFC 7638 thumbprint: what the Authority puts in `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        // Required members only, in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default()
        );
        b64url(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// A well-formed proof: `typ: dpop+jwt`, `alg: ES256`, this key's
    /// public `jwk`; claims `jti`, `htm`, `htu`, `iat`, and `ath` /
    /// `nonce` when given.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: u64,
        jti: &str,
    ) -> String {
        self.proof_builder(method, url, iat, jti)
            .access_token(access_token)
            .nonce(nonce)
            .build()
    }

    /// A builder that starts from a well-formed proof (without `ath` or
    /// `nonce`) and can be made defective in one way at a time.
    pub fn proof_builder(&self, method: &str, url: &str, iat: u64, jti: &str) -> ProofBuilder<'_> {
        let mut header = Map::new();
        header.insert("typ".into(), json!("dpop+jwt"));
        header.insert("alg".into(), json!("ES256"));
        header.insert("jwk".into(), self.jwk());
        let mut claims = Map::new();
        claims.insert("jti".into(), json!(jti));
        claims.insert("htm".into(), json!(method));
        claims.insert("htu".into(), json!(url));
        claims.insert("iat".into(), json!(iat));
        ProofBuilder {
            key: self,
            header,
            claims,
            signature: ProofSignature::Es256,
        }
    }
}

/// How a [`ProofBuilder`] signs.
enum ProofSignature<'a> {
    /// ES256 with the builder's key, JWS form.
    Es256,
    /// ES256 with the builder's key, ASN.1 DER form.
    Der,
    /// ES256 by another key (the header still names the builder's key).
    By(&'a DpopKey),
    /// `alg: none`, empty signature.
    None,
    /// HS256 with this secret.
    Hs256(Vec<u8>),
}

/// A proof under construction; see [`DpopKey::proof_builder`].
pub struct ProofBuilder<'a> {
    key: &'a DpopKey,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signature: ProofSignature<'a>,
}

impl<'a> ProofBuilder<'a> {
    /// Sets `ath` for `access_token` (nothing when `None`).
    pub fn access_token(mut self, access_token: Option<&str>) -> Self {
        if let Some(token) = access_token {
            self.claims.insert("ath".into(), json!(dpop_ath(token)));
        }
        self
    }

    /// Sets `nonce` (nothing when `None`).
    pub fn nonce(mut self, nonce: Option<&str>) -> Self {
        if let Some(nonce) = nonce {
            self.claims.insert("nonce".into(), json!(nonce));
        }
        self
    }

    /// Sets (or replaces) a header member.
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header.insert(name.into(), value);
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Sets (or replaces) a claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn typ(self, typ: &str) -> Self {
        self.header("typ", json!(typ))
    }

    /// `alg: none` and an empty signature.
    pub fn alg_none(mut self) -> Self {
        self.signature = ProofSignature::None;
        self.header("alg", json!("none"))
    }

    /// `alg: HS256`, MACed with `secret`.
    pub fn hs256(mut self, secret: &[u8]) -> Self {
        self.signature = ProofSignature::Hs256(secret.to_vec());
        self.header("alg", json!("HS256"))
    }

    /// The header's `jwk` carries the private key (`d`) too.
    pub fn private_jwk_in_header(self) -> Self {
        let jwk = self.key.private_jwk();
        self.header("jwk", jwk)
    }

    /// The ES256 signature in ASN.1 DER instead of JWS's `r || s`.
    pub fn der_signature(mut self) -> Self {
        self.signature = ProofSignature::Der;
        self
    }

    /// Signed by `other` while the header names this key: a bad signature.
    pub fn signed_by(mut self, other: &'a DpopKey) -> Self {
        self.signature = ProofSignature::By(other);
        self
    }

    /// The compact JWS.
    pub fn build(self) -> String {
        let input = format!(
            "{}.{}",
            b64url(Value::Object(self.header).to_string().as_bytes()),
            b64url(Value::Object(self.claims).to_string().as_bytes())
        );
        let es256 = |key: &DpopKey, pair: &EcdsaKeyPair| {
            pair.sign(&key.rng, input.as_bytes())
                .expect("es256 sign")
                .as_ref()
                .to_vec()
        };
        let signature = match &self.signature {
            ProofSignature::Es256 => es256(self.key, &self.key.fixed),
            ProofSignature::Der => es256(self.key, &self.key.der),
            ProofSignature::By(other) => es256(other, &other.fixed),
            ProofSignature::None => Vec::new(),
            ProofSignature::Hs256(secret) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
        };
        format!("{input}.{}", b64url(&signature))
    }
}

/// A jti no other proof of this test process uses.
pub fn unique_jti(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .expect("random jti");
    format!("{label}-{n}-{}", b64url(&random))
}

#[cfg(test)]
mod dpop_key_tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};

    fn part(jws: &str, i: usize) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(jws.split('.').nth(i).expect("three parts"))
            .expect("base64url")
    }

    #[test]
    fn a_proof_verifies_with_the_jwk_in_its_header_and_carries_the_claims() {
        let key = DpopKey::generate();
        let proof = key.proof("GET", "https://a.test/x", Some("tok"), Some("n"), 7, "j");
        let header: Value = serde_json::from_slice(&part(&proof, 0)).unwrap();
        let claims: Value = serde_json::from_slice(&part(&proof, 1)).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"], key.jwk());
        assert!(header["jwk"].get("d").is_none());
        assert_eq!(
            claims,
            json!({"jti": "j", "htm": "GET", "htu": "https://a.test/x", "iat": 7,
                   "ath": dpop_ath("tok"), "nonce": "n"})
        );
        let input = proof.rsplit_once('.').unwrap().0;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
            .verify(input.as_bytes(), &part(&proof, 2))
            .expect("valid es256 signature");
        let der = key
            .proof_builder("GET", "u", 1, "j")
            .der_signature()
            .build();
        let input = der.rsplit_once('.').unwrap().0;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.point)
            .verify(input.as_bytes(), &part(&der, 2))
            .expect("valid der signature");
    }

    #[test]
    fn the_private_jwk_round_trips_and_keeps_the_thumbprint() {
        let key = DpopKey::generate();
        let again = DpopKey::from_private_jwk(&key.private_jwk());
        assert_eq!(again.thumbprint(), key.thumbprint());
        assert_eq!(key.thumbprint().len(), 43);
        // `ath` of RFC 9449 section 7.1's example token.
        assert_eq!(
            dpop_ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
