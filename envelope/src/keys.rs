//! Envelope key material, key ids and keyrings.
//!
//! A key has exactly one algorithm; that is the per-key allowlist. Secret
//! material is zeroed on drop and never shown by `Debug`.

use crate::encoding::{b64url_decode, b64url_encode};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// Shortest HS256 secret accepted, in bytes (the HMAC-SHA256 output size).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Longest key id, in bytes.
pub const MAX_KID_LEN: usize = 64;

/// Key algorithms. An envelope is signed with `HS256` or `EdDSA`; anything
/// else, `none` included, is refused. `ES256` keys sign transaction tokens
/// only (SPEC.md section 9), never an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC-SHA256 over a shared secret (the default).
    Hs256,
    /// Ed25519: services hold public keys only and cannot mint envelopes.
    EdDsa,
    /// ECDSA on P-256 with SHA-256, transaction tokens only: the one
    /// asymmetric algorithm every JWT library has (.NET's included).
    Es256,
}

impl Alg {
    /// The exact header spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
        }
    }

    /// Parses an envelope's `-Alg` header: the exact spelling
    /// (case-sensitive, as in JOSE) of `HS256` or `EdDSA`. `ES256` is not an
    /// envelope algorithm and reads as `None`.
    pub fn from_header(text: &str) -> Option<Alg> {
        match text {
            "HS256" => Some(Alg::Hs256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key id: 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(text: &str) -> Result<KeyId, KeyError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_KID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(KeyId(text.to_owned()))
        } else {
            Err(KeyError::BadKid)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why key material was refused. Never carries the material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id must be 1 to {MAX_KID_LEN} characters from A-Z a-z 0-9 . _ -")]
    BadKid,
    #[error("key must be written as hs256:<base64url>, ed25519-private:<base64url>, ed25519-public:<base64url>, p256-private:<base64url> or p256-public:<base64url>")]
    UnknownForm,
    #[error("key material is not canonical unpadded base64url")]
    Encoding,
    #[error("hs256 secret is {0} bytes; at least {MIN_HMAC_SECRET_LEN} are required")]
    ShortSecret(usize),
    #[error("ed25519 key is {0} bytes; exactly 32 are required")]
    Ed25519Length(usize),
    #[error("key list entry must be written as kid=key")]
    ListEntry,
    #[error("key id {0} appears more than once")]
    DuplicateKid(String),
    #[error("key {0} is a public key and cannot sign")]
    CannotSign(String),
    #[error("key {0} is an {1} key; transaction tokens are signed with EdDSA or ES256 keys only")]
    NotForTxnToken(String, &'static str),
    #[error("key {0} is an ES256 key, which signs transaction tokens only, never an envelope")]
    NotForEnvelope(String),
    #[error("p256 key is not a PKCS#8 P-256 private key or a 65-byte uncompressed public point")]
    P256,
}

enum Material {
    /// The secret, and ring's key made from it once: building the HMAC key
    /// schedule (two SHA-256 blocks) on every signature cost about 3 % of
    /// a pass-through request.
    Hmac(Zeroizing<Vec<u8>>, ring::hmac::Key),
    Ed25519Public([u8; 32]),
    // The seed is kept so the key can be written back out by `keys generate`.
    Ed25519Private {
        pair: Box<Ed25519KeyPair>,
        seed: Zeroizing<[u8; 32]>,
    },
    /// An uncompressed P-256 point (`0x04 || x || y`).
    P256Public(Box<[u8; 65]>),
    // The PKCS#8 document is kept so the key can be written back out.
    P256Private {
        pair: Box<EcdsaKeyPair>,
        pkcs8: Zeroizing<Vec<u8>>,
    },
}

/// One envelope key with its id and its single algorithm.
pub struct Key {
    kid: KeyId,
    material: Material,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.material {
            Material::Hmac(..) => "hs256 secret",
            Material::Ed25519Public(_) => "ed25519 public",
            Material::Ed25519Private { .. } => "ed25519 private",
            Material::P256Public(_) => "p256 public",
            Material::P256Private { .. } => "p256 private",
        };
        f.debug_struct("Key")
            .field("kid", &self.kid.0)
            .field("kind", &kind)
            .field("material", &"<redacted>")
            .finish()
    }
}

impl Key {
    /// Parses `hs256:<b64url>`, `ed25519-private:<b64url seed>`,
    /// `ed25519-public:<b64url>`, `p256-private:<b64url PKCS#8>` or
    /// `p256-public:<b64url uncompressed point>`.
    pub fn parse(kid: KeyId, spec: &str) -> Result<Key, KeyError> {
        let (form, value) = spec.split_once(':').ok_or(KeyError::UnknownForm)?;
        let form = form.trim().to_ascii_lowercase();
        // The form first: text with a colon that names no form is not a key
        // of these forms at all (for `parse_compat`, a plain secret), so its
        // value must not be judged as base64url.
        if !matches!(
            form.as_str(),
            "hs256" | "ed25519-public" | "ed25519-private" | "p256-public" | "p256-private"
        ) {
            return Err(KeyError::UnknownForm);
        }
        let bytes = Zeroizing::new(b64url_decode(value.trim()).map_err(|_| KeyError::Encoding)?);
        match form.as_str() {
            "hs256" => Key::hmac(kid, &bytes),
            "ed25519-public" => {
                let public: [u8; 32] = bytes[..]
                    .try_into()
                    .map_err(|_| KeyError::Ed25519Length(bytes.len()))?;
                Ok(Key {
                    kid,
                    material: Material::Ed25519Public(public),
                })
            }
            "ed25519-private" => {
                let seed: [u8; 32] = bytes[..]
                    .try_into()
                    .map_err(|_| KeyError::Ed25519Length(bytes.len()))?;
                Key::ed25519_from_seed(kid, seed)
            }
            "p256-public" => {
                // Uncompressed; ring checks the point is on the curve at
                // each verification.
                let point: [u8; 65] = bytes[..].try_into().map_err(|_| KeyError::P256)?;
                if point[0] != 4 {
                    return Err(KeyError::P256);
                }
                Ok(Key {
                    kid,
                    material: Material::P256Public(Box::new(point)),
                })
            }
            "p256-private" => Key::p256_from_pkcs8(kid, &bytes),
            _ => Err(KeyError::UnknownForm),
        }
    }

    /// Parses a key the way `Router__IdentityEnvelopeSigningKey` is written in
    /// existing deployments: one of the forms of [`Key::parse`], or else the
    /// text itself as an HS256 secret (at least 32 bytes).
    pub fn parse_compat(kid: KeyId, text: &str) -> Result<Key, KeyError> {
        match Key::parse(kid.clone(), text) {
            Err(KeyError::UnknownForm) => Key::hmac(kid, text.as_bytes()),
            other => other,
        }
    }

    /// An HS256 key over `secret`.
    pub fn hmac(kid: KeyId, secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Key {
            kid,
            material: Material::Hmac(
                Zeroizing::new(secret.to_vec()),
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            ),
        })
    }

    /// An Ed25519 signing key from its 32-byte seed.
    pub fn ed25519_from_seed(kid: KeyId, seed: [u8; 32]) -> Result<Key, KeyError> {
        let seed = Zeroizing::new(seed);
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..])
            .map_err(|_| KeyError::Ed25519Length(32))?;
        Ok(Key {
            kid,
            material: Material::Ed25519Private {
                pair: Box::new(pair),
                seed,
            },
        })
    }

    /// An ES256 signing key from a PKCS#8 document (as
    /// `EcdsaKeyPair::generate_pkcs8` and `openssl genpkey` write it).
    pub fn p256_from_pkcs8(kid: KeyId, pkcs8: &[u8]) -> Result<Key, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| KeyError::P256)?;
        Ok(Key {
            kid,
            material: Material::P256Private {
                pair: Box::new(pair),
                pkcs8: Zeroizing::new(pkcs8.to_vec()),
            },
        })
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        match self.material {
            Material::Hmac(..) => Alg::Hs256,
            Material::Ed25519Public(_) | Material::Ed25519Private { .. } => Alg::EdDsa,
            Material::P256Public(_) | Material::P256Private { .. } => Alg::Es256,
        }
    }

    pub fn can_sign(&self) -> bool {
        !matches!(
            self.material,
            Material::Ed25519Public(_) | Material::P256Public(_)
        )
    }

    /// The key written back in the form [`Key::parse`] reads. Contains the
    /// secret for secret keys: only `keys generate` prints it.
    pub fn to_spec(&self) -> Zeroizing<String> {
        Zeroizing::new(match &self.material {
            Material::Hmac(secret, _) => format!("hs256:{}", b64url_encode(&secret[..])),
            Material::Ed25519Public(public) => format!("ed25519-public:{}", b64url_encode(public)),
            Material::Ed25519Private { seed, .. } => {
                format!("ed25519-private:{}", b64url_encode(&seed[..]))
            }
            Material::P256Public(point) => format!("p256-public:{}", b64url_encode(&point[..])),
            Material::P256Private { pkcs8, .. } => {
                format!("p256-private:{}", b64url_encode(&pkcs8[..]))
            }
        })
    }

    /// The verification-only form: the public key for Ed25519 and P-256,
    /// the secret itself for HS256 (a shared secret has no public half).
    pub fn public_spec(&self) -> Zeroizing<String> {
        match &self.material {
            Material::Ed25519Private { pair, .. } => Zeroizing::new(format!(
                "ed25519-public:{}",
                b64url_encode(pair.public_key().as_ref())
            )),
            Material::P256Private { pair, .. } => Zeroizing::new(format!(
                "p256-public:{}",
                b64url_encode(pair.public_key().as_ref())
            )),
            _ => self.to_spec(),
        }
    }

    /// The public key as JWK members (`kty`, `crv`, `x`, `y` for P-256, and
    /// `alg`; RFC 7518, RFC 8037), for the gateway's published key set.
    /// `None` for HS256: a shared secret is never published.
    pub fn public_jwk(&self) -> Option<serde_json::Value> {
        let point = |p: &[u8]| -> serde_json::Value {
            serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "x": b64url_encode(&p[1..33]),
                "y": b64url_encode(&p[33..65]),
                "alg": "ES256",
            })
        };
        let okp = |x: &[u8]| -> serde_json::Value {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(x), "alg": "EdDSA"})
        };
        match &self.material {
            Material::Hmac(..) => None,
            Material::Ed25519Public(x) => Some(okp(x)),
            Material::Ed25519Private { pair, .. } => Some(okp(pair.public_key().as_ref())),
            Material::P256Public(p) => Some(point(&p[..])),
            Material::P256Private { pair, .. } => Some(point(pair.public_key().as_ref())),
        }
    }

    /// Signs `message`. `None` for a public key. (The signer uses
    /// [`Key::sign_b64`]; tests compare the two.)
    #[cfg(test)]
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match &self.material {
            Material::Hmac(_, key) => Some(ring::hmac::sign(key, message).as_ref().to_vec()),
            Material::Ed25519Private { .. } | Material::P256Private { .. } => {
                self.sign_asymmetric(message).map(|s| s.as_ref().to_vec())
            }
            Material::Ed25519Public(_) | Material::P256Public(_) => None,
        }
    }

    /// The base64url signature of `head` followed by `body`, signed as
    /// one message (the envelope's signing input in two parts: the HMAC is
    /// fed both, no copy is made to join them). `None` for a public key.
    pub(crate) fn sign_b64(&self, head: &[u8], body: &[u8]) -> Option<String> {
        match &self.material {
            Material::Hmac(_, key) => {
                let mut context = ring::hmac::Context::with_key(key);
                context.update(head);
                context.update(body);
                Some(b64url_encode(context.sign()))
            }
            _ => {
                let mut message = Vec::with_capacity(head.len() + body.len());
                message.extend_from_slice(head);
                message.extend_from_slice(body);
                self.sign_asymmetric(&message).map(b64url_encode)
            }
        }
    }

    /// An Ed25519 or ES256 (fixed `r || s`, 64 bytes) signature of
    /// `message`, on the stack (the transaction token signer's hot path).
    /// `None` for public keys and HS256.
    pub(crate) fn sign_asymmetric(&self, message: &[u8]) -> Option<ring::signature::Signature> {
        match &self.material {
            Material::Ed25519Private { pair, .. } => Some(pair.sign(message)),
            // SystemRandom is a handle on the OS generator, nothing to build;
            // ECDSA needs fresh randomness per signature.
            Material::P256Private { pair, .. } => {
                pair.sign(&ring::rand::SystemRandom::new(), message).ok()
            }
            _ => None,
        }
    }

    /// Whether `other` is this key: same kid, same algorithm, same material
    /// (secret material compared in constant time).
    pub(crate) fn same_as(&self, other: &Key) -> bool {
        use subtle::ConstantTimeEq;
        self.kid == other.kid
            && match (&self.material, &other.material) {
                (Material::Hmac(a, _), Material::Hmac(b, _)) => {
                    a.len() == b.len() && bool::from(a[..].ct_eq(&b[..]))
                }
                (Material::Ed25519Public(a), Material::Ed25519Public(b)) => a == b,
                (
                    Material::Ed25519Private { seed: a, .. },
                    Material::Ed25519Private { seed: b, .. },
                ) => bool::from(a[..].ct_eq(&b[..])),
                (Material::P256Public(a), Material::P256Public(b)) => a == b,
                (
                    Material::P256Private { pkcs8: a, .. },
                    Material::P256Private { pkcs8: b, .. },
                ) => a.len() == b.len() && bool::from(a[..].ct_eq(&b[..])),
                _ => false,
            }
    }

    /// Verifies `signature` over `message`; constant time for HMAC.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(_, key) => ring::hmac::verify(key, message, signature).is_ok(),
            Material::Ed25519Public(public) => ed25519_verify(public, message, signature),
            Material::Ed25519Private { pair, .. } => {
                ed25519_verify(pair.public_key().as_ref(), message, signature)
            }
            Material::P256Public(point) => p256_verify(&point[..], message, signature),
            Material::P256Private { pair, .. } => {
                p256_verify(pair.public_key().as_ref(), message, signature)
            }
        }
    }
}

fn p256_verify(point: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message, signature)
        .is_ok()
}

fn ed25519_verify(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(message, signature)
        .is_ok()
}

/// The keys a verifier accepts, by key id.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, Key>,
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds a key; a second key with the same id is an error, not a silent
    /// replacement, and so is an ES256 key (no envelope is ever ES256).
    pub fn insert(&mut self, key: Key) -> Result<(), KeyError> {
        if key.alg() == Alg::Es256 {
            return Err(KeyError::NotForEnvelope(key.kid.0.clone()));
        }
        if self.keys.contains_key(&key.kid) {
            return Err(KeyError::DuplicateKid(key.kid.0.clone()));
        }
        self.keys.insert(key.kid.clone(), key);
        Ok(())
    }

    /// Parses `kid=key;kid=key` (`;` or `,` between entries, spaces ignored).
    pub fn parse_list(text: &str) -> Result<Keyring, KeyError> {
        let mut ring = Keyring::new();
        for entry in text
            .split([';', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (kid, spec) = entry.split_once('=').ok_or(KeyError::ListEntry)?;
            ring.insert(Key::parse(KeyId::new(kid.trim())?, spec.trim())?)?;
        }
        Ok(ring)
    }

    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|(k, _)| k.0 == kid).map(|(_, v)| v)
    }

    pub fn kids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether `other` holds exactly these keys.
    pub(crate) fn same_keys(&self, other: &Keyring) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .values()
                .zip(other.keys.values())
                .all(|(a, b)| a.same_as(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kid(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    #[test]
    fn debug_never_shows_material() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let key = Key::parse_compat(kid("k1"), secret).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("<redacted>"));
        let ed = Key::ed25519_from_seed(kid("k2"), [7; 32]).unwrap();
        let spec = ed.to_spec();
        let seed_b64 = spec.split_once(':').unwrap().1;
        assert!(!format!("{ed:?}").contains(seed_b64));
    }

    #[test]
    fn key_specs_round_trip() {
        let ed = Key::ed25519_from_seed(kid("e"), [9; 32]).unwrap();
        let again = Key::parse(kid("e"), &ed.to_spec()).unwrap();
        assert_eq!(again.sign(b"m"), ed.sign(b"m"));
        let public = Key::parse(kid("e"), &ed.public_spec()).unwrap();
        assert!(!public.can_sign());
        assert!(public.verify(b"m", &ed.sign(b"m").unwrap()));
        assert!(!public.verify(b"n", &ed.sign(b"m").unwrap()));
    }

    #[test]
    fn p256_keys_round_trip_verify_and_never_sign_an_envelope() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let key = Key::p256_from_pkcs8(kid("es"), pkcs8.as_ref()).unwrap();
        assert_eq!(key.alg(), Alg::Es256);
        assert!(key.can_sign());
        let again = Key::parse(kid("es"), &key.to_spec()).unwrap();
        assert!(again.same_as(&key));
        let public = Key::parse(kid("es"), &key.public_spec()).unwrap();
        assert!(!public.can_sign());
        let signature = key.sign(b"m").unwrap();
        assert!(public.verify(b"m", &signature));
        assert!(!public.verify(b"n", &signature));
        assert_eq!(public.public_jwk(), key.public_jwk());
        // Not an envelope algorithm: no `-Alg` value, no place in a
        // service's keyring (nor a signer: sign.rs).
        assert_eq!(Alg::from_header("ES256"), None);
        assert_eq!(
            Keyring::parse_list(&format!("es={}", again.public_spec().as_str())).unwrap_err(),
            KeyError::NotForEnvelope("es".into())
        );
        assert!(!format!("{again:?}").contains(&key_b64(&again)));
        assert_eq!(
            Key::parse(kid("a"), "p256-private:AAAA").unwrap_err(),
            KeyError::P256
        );
        assert_eq!(
            Key::parse(
                kid("a"),
                &format!("p256-public:{}", b64url_encode([5u8; 65]))
            )
            .unwrap_err(),
            KeyError::P256
        );
    }

    fn key_b64(key: &Key) -> String {
        key.to_spec().split_once(':').unwrap().1.to_owned()
    }

    #[test]
    fn only_asymmetric_keys_have_a_public_jwk() {
        let ed = Key::ed25519_from_seed(kid("e"), [9; 32]).unwrap();
        let jwk = ed.public_jwk().unwrap();
        assert_eq!(
            format!("ed25519-public:{}", jwk["x"].as_str().unwrap()),
            ed.public_spec().as_str()
        );
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str()),
            (Some("OKP"), Some("EdDSA"))
        );
        assert_eq!(Key::hmac(kid("h"), &[1; 32]).unwrap().public_jwk(), None);
    }

    #[test]
    fn bad_keys_are_refused_with_reasons() {
        assert_eq!(KeyId::new(""), Err(KeyError::BadKid));
        assert_eq!(KeyId::new("a b"), Err(KeyError::BadKid));
        assert_eq!(KeyId::new(&"k".repeat(65)), Err(KeyError::BadKid));
        assert_eq!(
            Key::parse(kid("a"), "hs256:c2hvcnQ").unwrap_err(),
            KeyError::ShortSecret(5)
        );
        assert_eq!(
            Key::parse(kid("a"), "rsa:AAAA").unwrap_err(),
            KeyError::UnknownForm
        );
        assert_eq!(
            Key::parse(kid("a"), "ed25519-public:AAAA").unwrap_err(),
            KeyError::Ed25519Length(3)
        );
        assert_eq!(
            Key::parse(kid("a"), "hs256:AAA=").unwrap_err(),
            KeyError::Encoding
        );
        assert_eq!(
            Key::parse_compat(kid("a"), "too-short").unwrap_err(),
            KeyError::ShortSecret(9)
        );
    }

    #[test]
    fn a_plain_secret_with_a_colon_that_names_no_form_is_an_hs256_secret() {
        // SPEC.md section 4: "any other text" in Router__IdentityEnvelopeSigningKey.
        let text = "vault:not base64 at all, but long enough!";
        let key = Key::parse_compat(kid("a"), text).unwrap();
        assert_eq!(key.alg(), Alg::Hs256);
        let same = Key::hmac(kid("a"), text.as_bytes()).unwrap();
        assert_eq!(key.sign(b"m"), same.sign(b"m"));
        // A named form with bad material is still an error, never a secret.
        assert_eq!(
            Key::parse_compat(kid("a"), "hs256:not base64!").unwrap_err(),
            KeyError::Encoding
        );
    }

    #[test]
    fn keyrings_are_the_same_only_with_the_same_kids_and_material() {
        let ring = |list: &str| Keyring::parse_list(list).unwrap();
        let a = Key::hmac(kid("a"), &[1; 32]).unwrap().to_spec();
        let a2 = Key::hmac(kid("a"), &[2; 32]).unwrap().to_spec();
        let b = Key::ed25519_from_seed(kid("b"), [3; 32]).unwrap();
        let (b_private, b_public) = (b.to_spec(), b.public_spec());
        let (a, a2, b_private, b_public) = (&*a, &*a2, &*b_private, &*b_public);
        let same = |x: &str, y: &str| ring(x).same_keys(&ring(y));
        assert!(same(
            &format!("a={a};b={b_public}"),
            &format!("b={b_public}; a={a}")
        ));
        assert!(same("", ""));
        assert!(!same(&format!("a={a}"), &format!("a={a2}")));
        assert!(!same(&format!("a={a}"), &format!("c={a}")));
        assert!(!same(&format!("a={a}"), &format!("a={a};b={b_public}")));
        // The private and the public half of one key are different settings.
        assert!(!same(&format!("b={b_private}"), &format!("b={b_public}")));
    }

    #[test]
    fn keyring_list_parses_and_refuses_duplicates() {
        let ed = Key::ed25519_from_seed(kid("x"), [1; 32]).unwrap();
        let hs = Key::hmac(kid("y"), &[2; 32]).unwrap();
        let list = format!(
            "a={}; b={}",
            ed.public_spec().as_str(),
            hs.to_spec().as_str()
        );
        let ring = Keyring::parse_list(&list).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.get("a").unwrap().alg(), Alg::EdDsa);
        assert_eq!(ring.get("b").unwrap().alg(), Alg::Hs256);
        let dup = format!("a={0};a={0}", hs.to_spec().as_str());
        assert_eq!(
            Keyring::parse_list(&dup).unwrap_err(),
            KeyError::DuplicateKid("a".into())
        );
        assert_eq!(
            Keyring::parse_list("junk").unwrap_err(),
            KeyError::ListEntry
        );
    }
}
