//! Envelope signing: the gateway's side.

use crate::claims::{AuthMethod, Confirmation, Identity};
use crate::encoding::b64url_encode;
#[cfg(doc)]
use crate::format::Payload;
use crate::format::{signing_input, EnvelopeHeaders, SIGNING_DOMAIN, VERSION};
use crate::keys::{Key, KeyError};
use serde::Serialize;

/// Why an envelope could not be issued. The caller must not forward the
/// request without one: an empty signature is never sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("envelope key {kid} cannot sign")]
    KeyCannotSign { kid: String },
    #[error("envelope payload could not be encoded")]
    Encoding,
    #[error("service {service} has no transaction token key")]
    NoTxnTokenKey { service: String },
}

/// The request an envelope is issued for.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The service the request is forwarded to (the envelope's `aud`).
    pub audience: &'a str,
    /// The request method as forwarded.
    pub method: &'a str,
    /// The normalized path as forwarded, without the query.
    pub path: &'a str,
    pub request_id: &'a str,
}

/// An identity as [`Signer::sign_ref`] reads it, borrowed from wherever
/// the caller keeps it (names as `String`s, `Arc<str>`s, ...), so that an
/// envelope is issued without copying the caller's claims into an
/// [`Identity`] first. It writes the same payload as the [`Identity`] with
/// the same values.
#[derive(Clone, Copy, Debug)]
pub struct IdentityRef<'a, S> {
    pub subject: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub scopes: &'a [S],
    pub roles: &'a [S],
    pub auth_method: AuthMethod,
    pub confirmation: &'a Confirmation,
}

impl<'a> From<&'a Identity> for IdentityRef<'a, String> {
    fn from(identity: &'a Identity) -> IdentityRef<'a, String> {
        IdentityRef {
            subject: identity.subject.as_deref(),
            tenant: identity.tenant.as_deref(),
            client_id: identity.client_id.as_deref(),
            scopes: &identity.scopes,
            roles: &identity.roles,
            auth_method: identity.auth_method,
            confirmation: &identity.confirmation,
        }
    }
}

/// Signs envelopes with one active key.
#[derive(Debug)]
pub struct Signer {
    key: Key,
    issuer: String,
    lifetime_secs: u64,
}

impl Signer {
    /// `lifetime_secs` is how long an envelope stays valid after `iat`.
    pub fn new(
        key: Key,
        issuer: impl Into<String>,
        lifetime_secs: u64,
    ) -> Result<Signer, KeyError> {
        if !key.can_sign() {
            return Err(KeyError::CannotSign(key.kid().to_string()));
        }
        if key.alg() == crate::keys::Alg::Es256 {
            return Err(KeyError::NotForEnvelope(key.kid().to_string()));
        }
        Ok(Signer {
            key,
            issuer: issuer.into(),
            lifetime_secs: lifetime_secs.max(1),
        })
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues the envelope headers for `identity` on `target` at `now`
    /// (unix seconds). An error means no envelope: the request must not be
    /// forwarded.
    pub fn sign(
        &self,
        identity: &Identity,
        target: &Target<'_>,
        now: u64,
    ) -> Result<EnvelopeHeaders, SignError> {
        self.sign_ref(identity.into(), target, now)
    }

    /// [`Signer::sign`] for a borrowed identity.
    pub fn sign_ref<S: AsRef<str>>(
        &self,
        identity: IdentityRef<'_, S>,
        target: &Target<'_>,
        now: u64,
    ) -> Result<EnvelopeHeaders, SignError> {
        let exp = now.saturating_add(self.lifetime_secs);
        let payload = PayloadRef::new(&self.issuer, identity, target, now, exp);
        // `iat` and `exp` in decimal once, for the payload and the headers.
        let (iat, exp) = (decimal(now), decimal(exp));
        let json = payload.to_json_with(&iat, &exp);
        seal_texts(&self.key, b64url_encode(json), iat, exp)
    }
}

/// [`Payload`] as the signer writes it: the same fields in the same order,
/// borrowed from the identity and the request instead of copied, written by
/// [`PayloadRef::to_json`] (tests check that it writes the bytes serde_json
/// writes for both).
#[derive(Serialize)]
struct PayloadRef<'a, S> {
    ver: u32,
    iss: &'a str,
    aud: &'a str,
    sub: Option<&'a str>,
    tenant: Option<&'a str>,
    client_id: Option<&'a str>,
    scopes: &'a [S],
    roles: &'a [S],
    auth_method: AuthMethod,
    cnf: &'a Confirmation,
    method: &'a str,
    path: &'a str,
    request_id: &'a str,
    iat: u64,
    exp: u64,
}

impl<'a, S> PayloadRef<'a, S> {
    fn new(
        issuer: &'a str,
        identity: IdentityRef<'a, S>,
        target: &Target<'a>,
        iat: u64,
        exp: u64,
    ) -> PayloadRef<'a, S> {
        PayloadRef {
            ver: VERSION,
            iss: issuer,
            aud: target.audience,
            sub: identity.subject,
            tenant: identity.tenant,
            client_id: identity.client_id,
            scopes: identity.scopes,
            roles: identity.roles,
            auth_method: identity.auth_method,
            cnf: identity.confirmation,
            method: target.method,
            path: target.path,
            request_id: target.request_id,
            iat,
            exp,
        }
    }
}

impl<S: AsRef<str>> PayloadRef<'_, S> {
    /// The payload's JSON, compact, members in the order of [`Payload`]:
    /// byte for byte what `serde_json` writes for it, without its
    /// per-member machinery (the payload is written on every request).
    #[cfg(test)]
    fn to_json(&self) -> Vec<u8> {
        self.to_json_with(&decimal(self.iat), &decimal(self.exp))
    }

    /// The JSON, with `iat` and `exp` already written in decimal.
    fn to_json_with(&self, iat: &str, exp: &str) -> Vec<u8> {
        let strings = [self.iss, self.aud, self.method, self.path, self.request_id]
            .iter()
            .map(|s| s.len())
            .sum::<usize>()
            + [self.sub, self.tenant, self.client_id]
                .iter()
                .map(|s| s.map_or(0, str::len))
                .sum::<usize>()
            + self
                .scopes
                .iter()
                .chain(self.roles)
                .map(|s| s.as_ref().len() + 3)
                .sum::<usize>();
        let mut out = Vec::with_capacity(strings + 320);
        out.extend_from_slice(b"{\"ver\":");
        push_u64(&mut out, u64::from(self.ver));
        out.extend_from_slice(b",\"iss\":");
        push_str(&mut out, self.iss);
        out.extend_from_slice(b",\"aud\":");
        push_str(&mut out, self.aud);
        out.extend_from_slice(b",\"sub\":");
        push_opt(&mut out, self.sub);
        out.extend_from_slice(b",\"tenant\":");
        push_opt(&mut out, self.tenant);
        out.extend_from_slice(b",\"client_id\":");
        push_opt(&mut out, self.client_id);
        out.extend_from_slice(b",\"scopes\":");
        push_list(&mut out, self.scopes);
        out.extend_from_slice(b",\"roles\":");
        push_list(&mut out, self.roles);
        out.extend_from_slice(b",\"auth_method\":");
        push_str(&mut out, self.auth_method.as_str());
        out.extend_from_slice(b",\"cnf\":{\"jkt\":");
        push_opt(&mut out, self.cnf.jkt.as_deref());
        out.extend_from_slice(b",\"x5t#S256\":");
        push_opt(&mut out, self.cnf.x5t_s256.as_deref());
        out.extend_from_slice(b",\"spiffe_id\":");
        push_opt(&mut out, self.cnf.spiffe_id.as_deref());
        out.extend_from_slice(b"},\"method\":");
        push_str(&mut out, self.method);
        out.extend_from_slice(b",\"path\":");
        push_str(&mut out, self.path);
        out.extend_from_slice(b",\"request_id\":");
        push_str(&mut out, self.request_id);
        out.extend_from_slice(b",\"iat\":");
        out.extend_from_slice(iat.as_bytes());
        out.extend_from_slice(b",\"exp\":");
        out.extend_from_slice(exp.as_bytes());
        out.push(b'}');
        out
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `n` in decimal, without `fmt` (every envelope has two).
fn decimal(n: u64) -> String {
    let mut out = Vec::with_capacity(20);
    push_u64(&mut out, n);
    // Exactly its length: a header value made from it then takes the
    // buffer as it is, without another allocation.
    out.shrink_to_fit();
    String::from_utf8(out).unwrap_or_default()
}

fn push_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_list<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, item.as_ref());
    }
    out.push(b']');
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control
/// characters as `\b \t \n \f \r` or `\u00XX` (lowercase hex), the rest
/// (non-ASCII and DEL included) as it is.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if crate::encoding::json_plain(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Signs an already encoded payload: for the test-vector generator, which
/// needs payloads a well-behaved signer would never write ([`Signer::sign`]
/// uses [`seal_texts`]).
#[cfg(test)]
pub(crate) fn seal(
    key: &Key,
    envelope: String,
    iat: u64,
    exp: u64,
) -> Result<EnvelopeHeaders, SignError> {
    seal_texts(key, envelope, decimal(iat), decimal(exp))
}

/// [`seal`] with `iat` and `exp` already in decimal.
fn seal_texts(
    key: &Key,
    envelope: String,
    iat: String,
    exp: String,
) -> Result<EnvelopeHeaders, SignError> {
    let alg = key.alg().as_str();
    let kid = key.kid().as_str();
    // The signing input's first five lines, on the stack when they fit
    // (always, for kids of the usual length); the payload follows them.
    let mut head = [0u8; 192];
    let mut len = 0;
    for part in [SIGNING_DOMAIN, alg, kid, &iat, &exp] {
        match head.get_mut(len..len + part.len() + 1) {
            Some(slot) => {
                slot[..part.len()].copy_from_slice(part.as_bytes());
                slot[part.len()] = b'\n';
                len += part.len() + 1;
            }
            None => {
                len = usize::MAX;
                break;
            }
        }
    }
    let signature = match head.get(..len) {
        Some(head) => key.sign_b64(head, envelope.as_bytes()),
        None => key.sign_b64(&signing_input(alg, kid, &iat, &exp, &envelope), b""),
    };
    // `Signer::new` refuses keys that cannot sign; should one get here
    // anyway, the answer is an error, never an empty signature.
    let signature = signature.ok_or_else(|| SignError::KeyCannotSign {
        kid: kid.to_owned(),
    })?;
    Ok(EnvelopeHeaders {
        envelope,
        signature,
        alg: alg.to_owned(),
        kid: kid.to_owned(),
        iat,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;

    /// The signature over the signing input fed in two parts is the one
    /// over the joined input, for both algorithms and a kid of the longest
    /// length.
    #[test]
    fn the_seal_signs_the_documented_signing_input() {
        let long_kid = "k".repeat(crate::keys::MAX_KID_LEN);
        for (kid, spec) in [
            (
                "k1",
                "hs256:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0",
            ),
            (
                long_kid.as_str(),
                "hs256:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0",
            ),
            (
                "ed",
                "ed25519-private:nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            ),
            (
                long_kid.as_str(),
                "ed25519-private:nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            ),
        ] {
            let key = Key::parse(KeyId::new(kid).unwrap(), spec).unwrap();
            for (iat, exp) in [(0, 60), (1_800_000_000, u64::MAX)] {
                let headers = seal(&key, "eyJ2ZXIiOjF9".into(), iat, exp).unwrap();
                let input = signing_input(
                    key.alg().as_str(),
                    kid,
                    &iat.to_string(),
                    &exp.to_string(),
                    "eyJ2ZXIiOjF9",
                );
                assert_eq!(
                    headers.signature,
                    b64url_encode(key.sign(&input).unwrap()),
                    "{kid} {iat}"
                );
                assert_eq!(
                    (headers.iat, headers.exp),
                    (iat.to_string(), exp.to_string())
                );
            }
        }
    }

    #[test]
    fn a_key_that_cannot_sign_is_an_error_never_an_empty_signature() {
        let public = || {
            Key::parse(
                KeyId::new("pub-1").unwrap(),
                "ed25519-public:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            )
            .unwrap()
        };
        assert!(Signer::new(public(), "gw", 60).is_err());
        // Reachable only here: a signer around a public key.
        let signer = Signer {
            key: public(),
            issuer: "gw".into(),
            lifetime_secs: 60,
        };
        let target = Target {
            audience: "echo",
            method: "GET",
            path: "/",
            request_id: "r-1",
        };
        assert_eq!(
            signer.sign(&Identity::anonymous(), &target, 1_800_000_000),
            Err(SignError::KeyCannotSign {
                kid: "pub-1".into()
            })
        );
    }

    #[test]
    fn an_es256_key_never_signs_an_envelope() {
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let key = Key::p256_from_pkcs8(KeyId::new("es").unwrap(), pkcs8.as_ref()).unwrap();
        assert_eq!(
            Signer::new(key, "gw", 60).unwrap_err(),
            KeyError::NotForEnvelope("es".into())
        );
    }

    #[test]
    fn the_borrowed_payload_writes_the_same_bytes_as_the_payload_document() {
        let full = Identity {
            subject: Some("alice \"quoted\" \u{e9}".into()),
            tenant: Some("acme".into()),
            client_id: Some("svc-a".into()),
            scopes: vec!["echo.read".into(), "echo.write".into()],
            roles: vec!["admin".into()],
            auth_method: AuthMethod::Dpop,
            confirmation: Confirmation {
                jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
                x5t_s256: Some("x5t".into()),
                spiffe_id: Some("spiffe://td/w".into()),
            },
        };
        let target = Target {
            audience: "echo",
            method: "POST",
            path: "/a/b",
            request_id: "r-1",
        };
        for identity in [Identity::anonymous(), full] {
            let borrowed = PayloadRef::new(
                "gw",
                (&identity).into(),
                &target,
                1_800_000_000,
                1_800_000_060,
            );
            let owned = crate::format::Payload {
                ver: VERSION,
                iss: "gw".into(),
                aud: target.audience.into(),
                sub: identity.subject.clone(),
                tenant: identity.tenant.clone(),
                client_id: identity.client_id.clone(),
                scopes: identity.scopes.clone(),
                roles: identity.roles.clone(),
                auth_method: identity.auth_method,
                cnf: identity.confirmation.clone(),
                method: target.method.into(),
                path: target.path.into(),
                request_id: target.request_id.into(),
                iat: 1_800_000_000,
                exp: 1_800_000_060,
            };
            assert_eq!(
                serde_json::to_string(&borrowed).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
            assert_eq!(
                String::from_utf8(borrowed.to_json()).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
        }
    }

    #[test]
    fn decimals_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 1_800_000_000, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    /// Every character that JSON escapes, in every position, and numbers
    /// at their extremes: the hand-written payload is serde_json's, byte
    /// for byte.
    #[test]
    fn the_hand_written_payload_json_is_serde_jsons_for_any_string() {
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        texts.extend(
            [
                "",
                "plain",
                "a\"b\\c/d",
                "\u{e9}\u{1f600}\u{7f}\u{80}\u{2028}",
                "\u{0}\u{1f} tail",
                "lead \n\r\t\u{8}\u{c}",
            ]
            .map(String::from),
        );
        for text in &texts {
            let identity = Identity {
                subject: Some(text.clone()),
                tenant: Some(format!("t{text}t")),
                client_id: None,
                scopes: vec![text.clone(), "s".into()],
                roles: vec![],
                auth_method: AuthMethod::Mtls,
                confirmation: Confirmation {
                    jkt: None,
                    x5t_s256: Some(text.clone()),
                    spiffe_id: None,
                },
            };
            let target = Target {
                audience: text,
                method: "GET",
                path: text,
                request_id: text,
            };
            for (iat, exp) in [(0, 0), (9, 10), (u64::MAX - 1, u64::MAX)] {
                let payload = PayloadRef::new(text, (&identity).into(), &target, iat, exp);
                assert_eq!(
                    payload.to_json(),
                    serde_json::to_vec(&payload).unwrap(),
                    "{text:?}"
                );
            }
        }
    }
}
