//! The client's DPoP key (ES256, P-256) and its proofs (RFC 9449): the key
//! lives in a private JWK file (`{kty, crv, x, y, d}`, mode 0600, the
//! format node tools such as `dpop` read), generated on first use.

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use std::path::Path;
use stella_envelope::encoding::{b64url_decode, b64url_encode};
use stella_jose::{thumbprint_sha256, PublicJwk};
use zeroize::Zeroizing;

pub struct DpopKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl DpopKey {
    /// The key in `path`, or a new one written there (0600) if the file does
    /// not exist. Problems name the file, never key material.
    pub fn load_or_generate(path: &Path) -> Result<DpopKey, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                DpopKey::from_private_jwk(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, jwk) = DpopKey::generate()?;
                super::write_private(path, jwk.as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(format!("{}: cannot read: {}", path.display(), e.kind())),
        }
    }

    fn from_private_jwk(bytes: &[u8]) -> Result<DpopKey, String> {
        let jwk: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| "not a json private key".to_string())?;
        if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
            return Err("not an EC P-256 private jwk".into());
        }
        let member = |name: &str| {
            jwk[name]
                .as_str()
                .and_then(|v| b64url_decode(v).ok())
                .ok_or_else(|| format!("jwk member {name} is missing or not base64url"))
        };
        let d = Zeroizing::new(member("d")?);
        let mut point = vec![4u8];
        point.extend(member("x")?);
        point.extend(member("y")?);
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &point,
            &rng,
        )
        .map_err(|_| "the private and public halves do not form a P-256 key".to_string())?;
        Ok(DpopKey { pair, rng })
    }

    /// A new key and its private JWK text.
    fn generate() -> Result<(DpopKey, Zeroizing<String>), String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "generating a P-256 key failed".to_string())?;
        // ring does not hand out the private scalar; its PKCS#8 template
        // holds the ECPrivateKey as `INTEGER 1, OCTET STRING (32)`.
        let doc = pkcs8.as_ref();
        let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
        let at = doc
            .windows(marker.len())
            .position(|w| w == marker)
            .map(|p| p + marker.len())
            .filter(|at| at + 32 <= doc.len())
            .ok_or_else(|| "unexpected pkcs8 layout from ring".to_string())?;
        let d = &doc[at..at + 32];
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc, &rng)
            .map_err(|_| "loading the new P-256 key failed".to_string())?;
        let key = DpopKey { pair, rng };
        let mut jwk = key.public_jwk();
        jwk["d"] = json!(b64url_encode(d));
        let text = Zeroizing::new(jwk.to_string());
        Ok((key, text))
    }

    /// `{kty, crv, x, y}`: what goes into a proof's header.
    pub fn public_jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(&point[1..33]),
            "y": b64url_encode(&point[33..65]),
        })
    }

    /// The RFC 7638 thumbprint: the `cnf.jkt` tokens are bound to.
    pub fn thumbprint(&self) -> String {
        let jwk = self.public_jwk();
        match jwk.as_object().map(PublicJwk::from_json) {
            Some(Ok(jwk)) => thumbprint_sha256(&jwk),
            // Unreachable: the JWK above is a well-formed P-256 key.
            _ => String::new(),
        }
    }

    /// A proof for `method url` (its query and fragment are dropped for
    /// `htu`), with `ath` for `access_token` and the server's `nonce`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<String, String> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| "the system random number generator failed".to_string())?;
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()});
        let mut claims = json!({
            "jti": b64url_encode(jti),
            "htm": method,
            "htu": htu(url),
            "iat": now,
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(ath(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing the proof failed".to_string())?;
        Ok(format!("{input}.{}", b64url_encode(signature.as_ref())))
    }
}

/// `htu`: the request URL without query and fragment (RFC 9449 4.2).
pub fn htu(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    b64url_encode(ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_drops_query_and_fragment() {
        assert_eq!(htu("http://a/b/c?x=1#f"), "http://a/b/c");
        assert_eq!(htu("http://a/b#f?x"), "http://a/b");
        assert_eq!(htu("http://a/b"), "http://a/b");
    }

    #[test]
    fn a_generated_key_is_written_0600_reloads_to_the_same_thumbprint_and_signs_valid_proofs() {
        let dir = std::env::temp_dir().join(format!("stella-dpop-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("key.json");
        let key = DpopKey::load_or_generate(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = DpopKey::load_or_generate(&path).unwrap();
        assert_eq!(key.thumbprint(), again.thumbprint());
        let proof = key
            .proof("GET", "http://a/b?q", Some("tok"), Some("n1"), 1000)
            .unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&b64url_decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["htu"], "http://a/b");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["iat"], 1000);
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["ath"], ath("tok"));
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            key.pair.public_key().as_ref().to_vec(),
        );
        let input = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(input.as_bytes(), &b64url_decode(parts[2]).unwrap())
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
