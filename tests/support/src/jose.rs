//! JWS helpers: base64url, the parts of a compact JWS, HS256, and signing
//! keys for tokens the Authority did not issue ([`AttackerKey`]) or that it
//! did sign but differ from a valid one ([`AuthorityKeys`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::Path;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("compact jws");
    serde_json::from_slice(&b64url_decode(part)).expect("json part")
}

pub fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

pub fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// HS256 over the signing input with `secret`.
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let input = signing_input(header, claims);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// An ES256 key the test holds (never the Authority's): for tokens that are
/// correctly signed, by the wrong key.
pub struct AttackerKey {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl AttackerKey {
    pub fn generate() -> AttackerKey {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate p-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load p-256 key");
        AttackerKey { pair, rng }
    }

    /// The public key as a JWK.
    pub fn jwk(&self, kid: &str) -> Value {
        use ring::signature::KeyPair;
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
        })
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .expect("es256 sign");
        format!("{input}.{}", b64url(sig.as_ref()))
    }
}

/// The Authority's own private signing keys, read from its
/// `AUTHORITY_KEYS_FILE`: tokens that carry the real signature and differ
/// from a valid one in exactly the way a test wants.
pub struct AuthorityKeys {
    pub ec_kid: String,
    pub rsa_kid: String,
    ec: ring::signature::EcdsaKeyPair,
    ec_der: ring::signature::EcdsaKeyPair,
    rsa: ring::rsa::KeyPair,
    rng: ring::rand::SystemRandom,
}

impl AuthorityKeys {
    pub fn load(keys_file: &Path) -> AuthorityKeys {
        use ring::signature::{
            EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let text = std::fs::read_to_string(keys_file).expect("read authority keys file");
        let jwks: Value = serde_json::from_str(&text).expect("keys file is json");
        let keys = jwks["keys"].as_array().expect("keys");
        let find = |kty: &str| {
            keys.iter()
                .find(|k| k["kty"] == kty)
                .unwrap_or_else(|| panic!("no {kty} key in {}", keys_file.display()))
        };
        let member = |k: &Value, name: &str| b64url_decode(k[name].as_str().expect(name));
        let ec = find("EC");
        let rng = ring::rand::SystemRandom::new();
        let mut point = vec![4u8];
        point.extend(member(ec, "x"));
        point.extend(member(ec, "y"));
        let d = member(ec, "d");
        let ec_pair = |alg| {
            EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point, &rng)
                .expect("authority ec key")
        };
        let rsa = find("RSA");
        let components = ring::rsa::KeyPairComponents {
            public_key: ring::rsa::PublicKeyComponents {
                n: member(rsa, "n"),
                e: member(rsa, "e"),
            },
            d: member(rsa, "d"),
            p: member(rsa, "p"),
            q: member(rsa, "q"),
            dP: member(rsa, "dp"),
            dQ: member(rsa, "dq"),
            qInv: member(rsa, "qi"),
        };
        AuthorityKeys {
            ec_kid: ec["kid"].as_str().expect("kid").to_owned(),
            rsa_kid: rsa["kid"].as_str().expect("kid").to_owned(),
            ec: ec_pair(&ECDSA_P256_SHA256_FIXED_SIGNING),
            ec_der: ec_pair(&ECDSA_P256_SHA256_ASN1_SIGNING),
            rsa: ring::rsa::KeyPair::from_components(&components).expect("authority rsa key"),
            rng,
        }
    }

    /// ES256 with the Authority's EC key (JWS form: r || s).
    pub fn es256(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self.ec.sign(&self.rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    /// ES256 signature in ASN.1 DER form, which JWS does not allow.
    pub fn es256_der(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self.ec_der.sign(&self.rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    /// RS256 (PKCS#1 v1.5) or PS256 (PSS) with the Authority's RSA key.
    pub fn rsa(&self, pss: bool, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.rsa.public().modulus_len()];
        let padding: &'static dyn ring::signature::RsaEncoding = if pss {
            &ring::signature::RSA_PSS_SHA256
        } else {
            &ring::signature::RSA_PKCS1_SHA256
        };
        self.rsa
            .sign(padding, &self.rng, input.as_bytes(), &mut sig)
            .expect("sign");
        format!("{input}.{}", b64url(&sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{
        UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED,
        RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
    };

    fn split(jws: &str) -> (String, Vec<u8>) {
        let (input, sig) = jws.rsplit_once('.').expect("compact jws");
        (input.to_owned(), b64url_decode(sig))
    }

    fn ec_point(jwk: &Value) -> Vec<u8> {
        let mut point = vec![4u8];
        point.extend(b64url_decode(jwk["x"].as_str().unwrap()));
        point.extend(b64url_decode(jwk["y"].as_str().unwrap()));
        point
    }

    #[test]
    fn header_and_claims_round_trip_through_the_compact_form() {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let claims = json!({"sub": "a", "n": 1});
        let token = hs256(&header, &claims, b"k");
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(jwt_header(&token), header);
        assert_eq!(jwt_claims(&token), claims);
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("-_8"), b"\xfb\xff");
    }

    #[test]
    fn hs256_is_the_hmac_of_the_signing_input() {
        let (header, claims) = (json!({"alg": "HS256"}), json!({"sub": "a"}));
        let (input, tag) = split(&hs256(&header, &claims, b"secret"));
        assert_eq!(input, signing_input(&header, &claims));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        ring::hmac::verify(&key, input.as_bytes(), &tag).expect("valid tag");
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"other");
        assert!(ring::hmac::verify(&other, input.as_bytes(), &tag).is_err());
    }

    #[test]
    fn an_attacker_token_verifies_with_the_attacker_jwk() {
        let key = AttackerKey::generate();
        let jwk = key.jwk("evil");
        assert_eq!(jwk["kid"], "evil");
        let (input, sig) = split(&key.sign(&json!({"alg": "ES256"}), &json!({"sub": "a"})));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec_point(&jwk))
            .verify(input.as_bytes(), &sig)
            .expect("valid es256 signature");
        let stranger = AttackerKey::generate().jwk("other");
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec_point(&stranger))
                .verify(input.as_bytes(), &sig)
                .is_err()
        );
    }

    /// Uses `openssl` and `node`, as the Authority's keys file does.
    #[test]
    fn authority_keys_sign_what_their_public_halves_verify() {
        let dir = crate::temp::TempDir::new("jose-unit");
        let file = dir.join("keys.json");
        crate::authority::write_authority_keys(&file);
        let keys = AuthorityKeys::load(&file);
        let jwks: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let find = |kty: &str| {
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kty"] == kty)
                .unwrap()
                .clone()
        };
        let (ec, rsa) = (find("EC"), find("RSA"));
        assert_eq!(keys.ec_kid, ec["kid"].as_str().unwrap());
        assert_eq!(keys.rsa_kid, rsa["kid"].as_str().unwrap());
        let (h, c) = (json!({"alg": "x"}), json!({"sub": "a"}));

        let (input, sig) = split(&keys.es256(&h, &c));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec_point(&ec))
            .verify(input.as_bytes(), &sig)
            .expect("es256");
        let (input, sig) = split(&keys.es256_der(&h, &c));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, ec_point(&ec))
            .verify(input.as_bytes(), &sig)
            .expect("es256 in der");

        let public = ring::signature::RsaPublicKeyComponents {
            n: b64url_decode(rsa["n"].as_str().unwrap()),
            e: b64url_decode(rsa["e"].as_str().unwrap()),
        };
        let (input, sig) = split(&keys.rsa(false, &h, &c));
        public
            .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
            .expect("rs256");
        assert!(public
            .verify(&RSA_PSS_2048_8192_SHA256, input.as_bytes(), &sig)
            .is_err());
        let (input, sig) = split(&keys.rsa(true, &h, &c));
        public
            .verify(&RSA_PSS_2048_8192_SHA256, input.as_bytes(), &sig)
            .expect("ps256");
    }
}
