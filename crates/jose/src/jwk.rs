//! Public JSON Web Keys (RFC 7517, 7518 section 6, RFC 8037): parsing and
//! the alg/key consistency rule.
//!
//! Only the exact encodings are accepted: coordinates at their full length
//! (a short `x` is refused, never left-padded), RSA integers without a
//! leading zero octet. Private or symmetric material is refused outright, so
//! a key that should never have been published is not silently used.
//!
//! Whether an EC point lies on its curve is not checked here: ring checks it
//! on every verification and fails the signature if it does not (see the
//! `off_curve_point_fails_verification` test).

use super::alg::{JwsAlg, KeyKind};
use super::error::{JoseError, KeyProblem, MemberProblem};
use super::jws::JsonObject;
use serde_json::Value;
use stella_envelope::encoding::b64url_decode;

/// Members that only a private or symmetric key has (RFC 7518 6.2.2, 6.3.2,
/// 6.4.1; RFC 8037 2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RSA modulus sizes accepted (docs/design.md §3.3), in bits.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;
/// ring refuses RSA exponents above 2^33 - 1; refusing them here keeps
/// "parsed" and "usable" the same thing.
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// A validated public key from a JWK, with the members a JWKS lookup needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicJwk {
    material: KeyMaterial,
    kid: Option<String>,
    alg: Option<String>,
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
}

/// The key itself. Encoded members are kept as received (they are
/// canonical base64url, so received and re-encoded agree) for the
/// thumbprint; decoded bytes are kept for verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum KeyMaterial {
    Ec {
        curve: EcCurve,
        x: String,
        y: String,
        /// SEC 1 uncompressed point: `0x04 || x || y`.
        point: Vec<u8>,
    },
    Rsa {
        n: String,
        e: String,
        /// Big-endian, no leading zero octet.
        n_bytes: Vec<u8>,
        /// Big-endian, no leading zero octet.
        e_bytes: Vec<u8>,
    },
    Ed25519 {
        x: String,
        key: [u8; 32],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EcCurve {
    P256,
    P384,
}

impl EcCurve {
    pub(super) fn name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
        }
    }
}

impl PublicJwk {
    /// Parses one JWK object. Unknown members are ignored; members the
    /// gateway reads must have the right JSON type.
    pub fn from_json(jwk: &JsonObject) -> Result<PublicJwk, JoseError> {
        let kty = required_str(jwk, "kty")?;
        if kty == "oct" {
            return Err(JoseError::SymmetricJwk);
        }
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(JoseError::PrivateKeyInJwk);
        }
        let kid = optional_str(jwk, "kid")?.map(str::to_owned);
        let alg = optional_str(jwk, "alg")?.map(str::to_owned);
        let key_use = optional_str(jwk, "use")?.map(str::to_owned);
        let key_ops = match jwk.get("key_ops") {
            None => None,
            Some(Value::Array(ops)) => Some(
                ops.iter()
                    .map(|op| match op {
                        Value::String(op) => Ok(op.clone()),
                        _ => Err(KeyProblem::Member("key_ops", MemberProblem::WrongType)),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => {
                return Err(KeyProblem::Member("key_ops", MemberProblem::WrongType).into());
            }
        };
        let material = match kty {
            "EC" => ec(jwk)?,
            "RSA" => rsa(jwk)?,
            "OKP" => okp(jwk)?,
            _ => return Err(KeyProblem::UnsupportedKty.into()),
        };
        Ok(PublicJwk {
            material,
            kid,
            alg,
            key_use,
            key_ops,
        })
    }

    /// Key type and curve.
    pub fn kind(&self) -> KeyKind {
        match &self.material {
            KeyMaterial::Ec {
                curve: EcCurve::P256,
                ..
            } => KeyKind::EcP256,
            KeyMaterial::Ec {
                curve: EcCurve::P384,
                ..
            } => KeyKind::EcP384,
            KeyMaterial::Rsa { .. } => KeyKind::Rsa,
            KeyMaterial::Ed25519 { .. } => KeyKind::Ed25519,
        }
    }

    /// The `kid` member as received.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg` member as received (it may name an alg the gateway does
    /// not accept; such a key then verifies nothing).
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// The `use` member as received.
    pub fn key_use(&self) -> Option<&str> {
        self.key_use.as_deref()
    }

    /// The `key_ops` member as received.
    pub fn key_ops(&self) -> Option<&[String]> {
        self.key_ops.as_deref()
    }

    /// Checks that this key may verify `alg` signatures: the key kind must
    /// be the one `alg` needs (else [`JoseError::AlgKeyMismatch`]), and the
    /// key's own `alg`, `use` and `key_ops`, when present, must allow it
    /// (else [`JoseError::KeyUseMismatch`]).
    pub fn check_alg(&self, alg: JwsAlg) -> Result<(), JoseError> {
        let key = self.kind();
        if alg.key_kind() != key {
            return Err(JoseError::AlgKeyMismatch { alg, key });
        }
        let alg_ok = self.alg.as_deref().is_none_or(|a| a == alg.as_str());
        let use_ok = self.key_use.as_deref().is_none_or(|u| u == "sig");
        let ops_ok = self
            .key_ops
            .as_deref()
            .is_none_or(|ops| ops.iter().any(|op| op == "verify"));
        if alg_ok && use_ok && ops_ok {
            Ok(())
        } else {
            Err(JoseError::KeyUseMismatch { alg })
        }
    }

    pub(super) fn material(&self) -> &KeyMaterial {
        &self.material
    }
}

fn ec(jwk: &JsonObject) -> Result<KeyMaterial, KeyProblem> {
    let curve = match required_str(jwk, "crv")? {
        "P-256" => EcCurve::P256,
        "P-384" => EcCurve::P384,
        _ => return Err(KeyProblem::UnsupportedCurve),
    };
    let len = curve.coordinate_len();
    let (x, x_bytes) = fixed_len_member(jwk, "x", len)?;
    let (y, y_bytes) = fixed_len_member(jwk, "y", len)?;
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x_bytes);
    point.extend_from_slice(&y_bytes);
    Ok(KeyMaterial::Ec { curve, x, y, point })
}

fn rsa(jwk: &JsonObject) -> Result<KeyMaterial, KeyProblem> {
    let n = required_str(jwk, "n")?;
    let e = required_str(jwk, "e")?;
    let n_bytes = b64url_decode(n).map_err(|_| KeyProblem::Encoding("n"))?;
    let e_bytes = b64url_decode(e).map_err(|_| KeyProblem::Encoding("e"))?;

    // RFC 7518 6.3.1: Base64urlUInt is the minimal big-endian encoding.
    let Some(&top) = n_bytes.first() else {
        return Err(KeyProblem::RsaModulusSize { bits: 0 });
    };
    if top == 0 {
        return Err(KeyProblem::LeadingZero("n"));
    }
    // At most 8 bits per octet; saturating keeps a huge input from
    // overflowing before it is refused.
    let bits = n_bytes
        .len()
        .saturating_mul(8)
        .saturating_sub(top.leading_zeros() as usize);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(KeyProblem::RsaModulusSize { bits });
    }
    if n_bytes.last().is_none_or(|b| b & 1 == 0) {
        // An even modulus is not an RSA modulus; ring would refuse it later.
        return Err(KeyProblem::RsaModulusEven);
    }

    if e_bytes.first() == Some(&0) {
        return Err(KeyProblem::LeadingZero("e"));
    }
    if e_bytes.is_empty() || e_bytes.len() > 5 {
        return Err(KeyProblem::RsaExponent);
    }
    let e_value = e_bytes
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e_value < 3 || e_value % 2 == 0 || e_value > RSA_MAX_EXPONENT {
        return Err(KeyProblem::RsaExponent);
    }

    Ok(KeyMaterial::Rsa {
        n: n.to_owned(),
        e: e.to_owned(),
        n_bytes,
        e_bytes,
    })
}

fn okp(jwk: &JsonObject) -> Result<KeyMaterial, KeyProblem> {
    // X25519 and X448 are key agreement keys; Ed448 is not an accepted alg.
    if required_str(jwk, "crv")? != "Ed25519" {
        return Err(KeyProblem::UnsupportedCurve);
    }
    let (x, bytes) = fixed_len_member(jwk, "x", 32)?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyProblem::Length {
            member: "x",
            expected: 32,
        })?;
    Ok(KeyMaterial::Ed25519 { x, key })
}

/// Decodes a member that must be exactly `len` octets: a shorter encoding of
/// the same integer (leading zeros dropped) is a different, invalid key.
fn fixed_len_member(
    jwk: &JsonObject,
    name: &'static str,
    len: usize,
) -> Result<(String, Vec<u8>), KeyProblem> {
    let text = required_str(jwk, name)?;
    let bytes = b64url_decode(text).map_err(|_| KeyProblem::Encoding(name))?;
    if bytes.len() != len {
        return Err(KeyProblem::Length {
            member: name,
            expected: len,
        });
    }
    Ok((text.to_owned(), bytes))
}

fn required_str<'a>(jwk: &'a JsonObject, name: &'static str) -> Result<&'a str, KeyProblem> {
    optional_str(jwk, name)?.ok_or(KeyProblem::Member(name, MemberProblem::Missing))
}

fn optional_str<'a>(
    jwk: &'a JsonObject,
    name: &'static str,
) -> Result<Option<&'a str>, KeyProblem> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyProblem::Member(name, MemberProblem::WrongType)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stella_envelope::encoding::b64url_encode;

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(map) => map,
            _ => panic!("test jwk is not an object"),
        }
    }

    fn parse(value: Value) -> Result<PublicJwk, JoseError> {
        PublicJwk::from_json(&object(value))
    }

    /// A P-256 JWK with the given coordinates; not necessarily on the curve
    /// (parsing does not check that).
    fn ec_p256(x: &[u8], y: &[u8]) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": b64url_encode(x), "y": b64url_encode(y)})
    }

    /// An RSA JWK with modulus `n` (given as bytes) and exponent 65537.
    fn rsa_with_n(n: &[u8]) -> Value {
        json!({"kty": "RSA", "n": b64url_encode(n), "e": "AQAB"})
    }

    fn rsa_modulus(len: usize, top: u8) -> Vec<u8> {
        let mut n = vec![0xA5; len];
        n[0] = top;
        n[len - 1] |= 1;
        n
    }

    #[test]
    fn ec_p256_p384_and_ed25519_keys_parse_with_their_kind() {
        let p256 = parse(ec_p256(&[1; 32], &[2; 32])).unwrap();
        assert_eq!(p256.kind(), KeyKind::EcP256);
        let p384 = parse(json!({"kty": "EC", "crv": "P-384",
            "x": b64url_encode([1; 48]), "y": b64url_encode([2; 48])}))
        .unwrap();
        assert_eq!(p384.kind(), KeyKind::EcP384);
        let ed =
            parse(json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode([3; 32])})).unwrap();
        assert_eq!(ed.kind(), KeyKind::Ed25519);
        let rsa = parse(rsa_with_n(&rsa_modulus(256, 0x80))).unwrap();
        assert_eq!(rsa.kind(), KeyKind::Rsa);
    }

    #[test]
    fn ec_point_is_encoded_uncompressed_for_ring() {
        let key = parse(ec_p256(&[1; 32], &[2; 32])).unwrap();
        let KeyMaterial::Ec { point, .. } = key.material() else {
            panic!("not an ec key");
        };
        assert_eq!(point.len(), 65);
        assert_eq!(point[0], 0x04);
        assert_eq!(&point[1..33], &[1; 32]);
        assert_eq!(&point[33..], &[2; 32]);
    }

    #[test]
    fn short_p256_x_coordinate_is_refused() {
        assert_eq!(
            parse(ec_p256(&[1; 31], &[2; 32])),
            Err(JoseError::BadKey(KeyProblem::Length {
                member: "x",
                expected: 32
            }))
        );
    }

    #[test]
    fn ec_coordinates_of_the_wrong_length_are_refused() {
        for (crv, x_len, y_len, member, expected) in [
            ("P-256", 33, 32, "x", 32),
            ("P-256", 32, 31, "y", 32),
            ("P-256", 48, 48, "x", 32),
            ("P-384", 32, 32, "x", 48),
            ("P-384", 48, 47, "y", 48),
            ("P-384", 0, 48, "x", 48),
        ] {
            let jwk = json!({"kty": "EC", "crv": crv,
                "x": b64url_encode(vec![1; x_len]), "y": b64url_encode(vec![2; y_len])});
            assert_eq!(
                parse(jwk),
                Err(JoseError::BadKey(KeyProblem::Length { member, expected })),
                "{crv} {x_len} {y_len}"
            );
        }
    }

    #[test]
    fn ed25519_x_must_be_exactly_32_octets() {
        for len in [31, 33, 0] {
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(vec![3; len])});
            assert_eq!(
                parse(jwk),
                Err(JoseError::BadKey(KeyProblem::Length {
                    member: "x",
                    expected: 32
                })),
                "{len}"
            );
        }
    }

    #[test]
    fn unsupported_curves_and_key_types_are_refused() {
        let x = b64url_encode([1; 32]);
        for (jwk, problem) in [
            (
                json!({"kty": "EC", "crv": "P-521", "x": x, "y": x}),
                KeyProblem::UnsupportedCurve,
            ),
            (
                json!({"kty": "EC", "crv": "secp256k1", "x": x, "y": x}),
                KeyProblem::UnsupportedCurve,
            ),
            (
                json!({"kty": "EC", "crv": "p-256", "x": x, "y": x}),
                KeyProblem::UnsupportedCurve,
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": x}),
                KeyProblem::UnsupportedCurve,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed448", "x": x}),
                KeyProblem::UnsupportedCurve,
            ),
            (
                json!({"kty": "ec", "crv": "P-256", "x": x, "y": x}),
                KeyProblem::UnsupportedKty,
            ),
            (json!({"kty": "DSA"}), KeyProblem::UnsupportedKty),
        ] {
            let err = parse(jwk.clone()).unwrap_err();
            assert_eq!(err, JoseError::BadKey(problem), "{jwk}");
            assert_eq!(err.code(), "bad_key");
        }
    }

    #[test]
    fn private_members_are_refused_with_their_own_error() {
        let base = object(ec_p256(&[1; 32], &[2; 32]));
        for member in PRIVATE_MEMBERS {
            let mut jwk = base.clone();
            jwk.insert(member.to_owned(), Value::String(b64url_encode([9; 32])));
            let err = PublicJwk::from_json(&jwk).unwrap_err();
            assert_eq!(err, JoseError::PrivateKeyInJwk, "{member}");
            assert_eq!(err.code(), "private_key_in_jwk");
        }
        // Presence is enough, whatever the value.
        let mut jwk = object(rsa_with_n(&rsa_modulus(256, 0x80)));
        jwk.insert("d".to_owned(), Value::Null);
        assert_eq!(PublicJwk::from_json(&jwk), Err(JoseError::PrivateKeyInJwk));
    }

    #[test]
    fn symmetric_oct_key_is_refused_as_symmetric() {
        for jwk in [
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "oct"}),
        ] {
            let err = parse(jwk).unwrap_err();
            assert_eq!(err, JoseError::SymmetricJwk);
            assert_eq!(err.code(), "symmetric_jwk");
        }
    }

    #[test]
    fn members_of_the_wrong_type_or_missing_are_refused() {
        let x = b64url_encode([1; 32]);
        for (jwk, member, problem) in [
            (json!({}), "kty", MemberProblem::Missing),
            (json!({"kty": 1}), "kty", MemberProblem::WrongType),
            (
                json!({"kty": "EC", "x": x, "y": x}),
                "crv",
                MemberProblem::Missing,
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "y": x}),
                "x",
                MemberProblem::Missing,
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": [1]}),
                "y",
                MemberProblem::WrongType,
            ),
            (
                json!({"kty": "RSA", "e": "AQAB"}),
                "n",
                MemberProblem::Missing,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": 5}),
                "kid",
                MemberProblem::WrongType,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": null}),
                "alg",
                MemberProblem::WrongType,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": ["sig"]}),
                "use",
                MemberProblem::WrongType,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "key_ops": "verify"}),
                "key_ops",
                MemberProblem::WrongType,
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "key_ops": [1]}),
                "key_ops",
                MemberProblem::WrongType,
            ),
        ] {
            assert_eq!(
                parse(jwk.clone()),
                Err(JoseError::BadKey(KeyProblem::Member(member, problem))),
                "{jwk}"
            );
        }
    }

    #[test]
    fn non_canonical_base64_in_key_members_is_refused() {
        let x = b64url_encode([1; 32]);
        let padded = format!("{x}=");
        let std_alphabet = b64url_encode([0xfb; 32]).replace('-', "+");
        for (jwk, member) in [
            (
                json!({"kty": "EC", "crv": "P-256", "x": padded, "y": x}),
                "x",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": std_alphabet}),
                "y",
            ),
            (json!({"kty": "OKP", "crv": "Ed25519", "x": padded}), "x"),
            (json!({"kty": "RSA", "n": "AQAB=", "e": "AQAB"}), "n"),
            (
                json!({"kty": "RSA", "n": b64url_encode(rsa_modulus(256, 0x80)), "e": "AQB"}),
                "e",
            ),
        ] {
            assert_eq!(
                parse(jwk.clone()),
                Err(JoseError::BadKey(KeyProblem::Encoding(member))),
                "{jwk}"
            );
        }
    }

    #[test]
    fn rsa_modulus_outside_2048_to_8192_bits_is_refused() {
        for (n, bits) in [
            (rsa_modulus(128, 0x80), 1024),
            (rsa_modulus(256, 0x7f), 2047),
            (rsa_modulus(256, 0x01), 2041),
            (rsa_modulus(1025, 0x01), 8193),
            (rsa_modulus(1200, 0x80), 9600),
        ] {
            assert_eq!(
                parse(rsa_with_n(&n)),
                Err(JoseError::BadKey(KeyProblem::RsaModulusSize { bits })),
                "{bits}"
            );
        }
        for (n, bits) in [
            (rsa_modulus(256, 0x80), 2048),
            (rsa_modulus(384, 0xff), 3072),
            (rsa_modulus(1024, 0x80), 8192),
        ] {
            assert!(parse(rsa_with_n(&n)).is_ok(), "{bits}");
        }
    }

    #[test]
    fn rsa_1024_bit_key_is_refused() {
        let err = parse(rsa_with_n(&rsa_modulus(128, 0xc1))).unwrap_err();
        assert_eq!(
            err,
            JoseError::BadKey(KeyProblem::RsaModulusSize { bits: 1024 })
        );
        assert_eq!(
            err.to_string(),
            "rsa modulus is 1024 bits, outside 2048..=8192"
        );
    }

    #[test]
    fn rsa_integers_with_a_leading_zero_octet_are_refused() {
        let mut n = vec![0];
        n.extend(rsa_modulus(256, 0x80));
        assert_eq!(
            parse(rsa_with_n(&n)),
            Err(JoseError::BadKey(KeyProblem::LeadingZero("n")))
        );
        let jwk = json!({"kty": "RSA", "n": b64url_encode(rsa_modulus(256, 0x80)),
            "e": b64url_encode([0, 1, 0, 1])});
        assert_eq!(
            parse(jwk),
            Err(JoseError::BadKey(KeyProblem::LeadingZero("e")))
        );
    }

    #[test]
    fn even_rsa_modulus_is_refused() {
        let mut n = rsa_modulus(256, 0x80);
        n[255] &= 0xfe;
        assert_eq!(
            parse(rsa_with_n(&n)),
            Err(JoseError::BadKey(KeyProblem::RsaModulusEven))
        );
    }

    #[test]
    fn rsa_exponent_must_be_odd_at_least_3_and_below_2_pow_33() {
        let n = b64url_encode(rsa_modulus(256, 0x80));
        let exponent = |e: &[u8]| json!({"kty": "RSA", "n": n, "e": b64url_encode(e)});
        for e in [
            &[][..],
            &[1],
            &[2],
            &[1, 0, 0],
            &[2, 0, 0, 0, 1],
            &[1, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(
                parse(exponent(e)),
                Err(JoseError::BadKey(KeyProblem::RsaExponent)),
                "{e:?}"
            );
        }
        for e in [&[3][..], &[1, 0, 1], &[1, 0xff, 0xff, 0xff, 0xff]] {
            assert!(parse(exponent(e)).is_ok(), "{e:?}");
        }
    }

    #[test]
    fn kid_alg_use_and_key_ops_are_kept_and_unknown_members_ignored() {
        let key = parse(
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode([3; 32]),
            "kid": "k-1", "alg": "EdDSA", "use": "sig", "key_ops": ["verify"],
            "x5t#S256": "whatever", "ext": true}),
        )
        .unwrap();
        assert_eq!(key.kid(), Some("k-1"));
        assert_eq!(key.alg(), Some("EdDSA"));
        assert_eq!(key.key_use(), Some("sig"));
        assert_eq!(key.key_ops(), Some(&["verify".to_owned()][..]));
    }

    #[test]
    fn ec_key_with_es384_alg_is_an_alg_key_mismatch() {
        let key = parse(ec_p256(&[1; 32], &[2; 32])).unwrap();
        let err = key.check_alg(JwsAlg::Es384).unwrap_err();
        assert_eq!(
            err,
            JoseError::AlgKeyMismatch {
                alg: JwsAlg::Es384,
                key: KeyKind::EcP256
            }
        );
        assert_eq!(err.code(), "alg_key_mismatch");
        assert_eq!(key.check_alg(JwsAlg::Es256), Ok(()));
    }

    #[test]
    fn each_alg_accepts_only_its_key_kind() {
        let keys = [
            parse(ec_p256(&[1; 32], &[2; 32])).unwrap(),
            parse(json!({"kty": "EC", "crv": "P-384",
                "x": b64url_encode([1; 48]), "y": b64url_encode([2; 48])}))
            .unwrap(),
            parse(json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode([3; 32])})).unwrap(),
            parse(rsa_with_n(&rsa_modulus(256, 0x80))).unwrap(),
        ];
        for alg in JwsAlg::ALL {
            for key in &keys {
                let fits = alg.key_kind() == key.kind();
                assert_eq!(key.check_alg(alg).is_ok(), fits, "{alg} {:?}", key.kind());
            }
        }
        let rsa = &keys[3];
        assert_eq!(rsa.check_alg(JwsAlg::Rs256), Ok(()));
        assert_eq!(rsa.check_alg(JwsAlg::Ps256), Ok(()));
    }

    #[test]
    fn declared_alg_use_or_key_ops_can_forbid_an_otherwise_fitting_alg() {
        let n = b64url_encode(rsa_modulus(256, 0x80));
        for (extra, alg) in [
            (json!({"alg": "RS256"}), JwsAlg::Ps256),
            (json!({"alg": "RS512"}), JwsAlg::Rs256),
            (json!({"use": "enc"}), JwsAlg::Rs256),
            (json!({"key_ops": ["sign", "encrypt"]}), JwsAlg::Rs256),
            (json!({"key_ops": []}), JwsAlg::Rs256),
        ] {
            let mut jwk = object(json!({"kty": "RSA", "n": n, "e": "AQAB"}));
            jwk.extend(object(extra.clone()));
            let key = PublicJwk::from_json(&jwk).unwrap();
            let err = key.check_alg(alg).unwrap_err();
            assert_eq!(err, JoseError::KeyUseMismatch { alg }, "{extra}");
            assert_eq!(err.code(), "key_use_mismatch");
        }
        let mut jwk = object(json!({"kty": "RSA", "n": n, "e": "AQAB"}));
        jwk.extend(object(
            json!({"alg": "PS256", "use": "sig", "key_ops": ["verify"]}),
        ));
        let key = PublicJwk::from_json(&jwk).unwrap();
        assert_eq!(key.check_alg(JwsAlg::Ps256), Ok(()));
    }
}
