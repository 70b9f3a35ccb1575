//! Compact JWS parsing (RFC 7515 section 7.1) with one encoding per value.
//!
//! Every part is strict unpadded base64url, header and payload are JSON
//! objects without duplicate members, and the signing input is kept exactly
//! as received: it is never rebuilt from decoded values.

use super::alg::JwsAlg;
use super::error::{JoseError, JwsPart, MemberProblem};
use super::verify::VerifyingKey;
use serde_json::{Map, Value};
use stella_envelope::encoding::{b64url_decode, check_json_object};

/// A JSON object as parsed from a header or key.
pub type JsonObject = Map<String, Value>;

/// The JOSE header members the gateway reads, typed.
///
/// Built only by [`CompactJws::parse`], so holding one means `alg` is one
/// of the accepted algorithms and no `crit` extension was asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct JwsHeader {
    alg: JwsAlg,
    typ: Option<String>,
    kid: Option<String>,
    jwk: Option<JsonObject>,
    has_jku: bool,
    has_x5u: bool,
    has_x5c: bool,
    has_b64: bool,
}

impl JwsHeader {
    fn from_object(header: &JsonObject) -> Result<JwsHeader, JoseError> {
        // No extension is understood, so any `crit` must fail (RFC 7515 4.1.11).
        if header.contains_key("crit") {
            return Err(JoseError::UnsupportedHeader("crit"));
        }
        // RFC 7797: `b64: false` changes what the signature covers. `true`
        // is the default and harmless; anything else is refused.
        let has_b64 = match header.get("b64") {
            None => false,
            Some(Value::Bool(true)) => true,
            Some(Value::Bool(false)) => return Err(JoseError::UnsupportedHeader("b64")),
            Some(_) => {
                return Err(JoseError::HeaderMember("b64", MemberProblem::WrongType));
            }
        };
        let alg = match header.get("alg") {
            None => return Err(JoseError::HeaderMember("alg", MemberProblem::Missing)),
            Some(Value::String(alg)) => JwsAlg::from_header(alg)?,
            Some(_) => {
                return Err(JoseError::HeaderMember("alg", MemberProblem::WrongType));
            }
        };
        let jwk = match header.get("jwk") {
            None => None,
            Some(Value::Object(jwk)) => Some(jwk.clone()),
            Some(_) => {
                return Err(JoseError::HeaderMember("jwk", MemberProblem::WrongType));
            }
        };
        Ok(JwsHeader {
            alg,
            typ: optional_string(header, "typ")?,
            kid: optional_string(header, "kid")?,
            jwk,
            has_jku: header.contains_key("jku"),
            has_x5u: header.contains_key("x5u"),
            has_x5c: header.contains_key("x5c"),
            has_b64,
        })
    }

    /// The signature algorithm; always one of [`JwsAlg::ALL`].
    pub fn alg(&self) -> JwsAlg {
        self.alg
    }

    /// The `typ` member as received; compare it with [`typ_matches`].
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The `kid` member as received.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The embedded `jwk` object, unparsed. Only DPoP proofs may use it
    /// (through [`super::PublicJwk::from_json`]); access tokens must not.
    pub fn jwk(&self) -> Option<&JsonObject> {
        self.jwk.as_ref()
    }

    /// A `jku` member is present.
    pub fn has_jku(&self) -> bool {
        self.has_jku
    }

    /// An `x5u` member is present.
    pub fn has_x5u(&self) -> bool {
        self.has_x5u
    }

    /// An `x5c` member is present.
    pub fn has_x5c(&self) -> bool {
        self.has_x5c
    }

    /// A `b64` member is present (it can only be `true`; `false` is refused).
    pub fn has_b64(&self) -> bool {
        self.has_b64
    }

    /// The header points at key material by URL or certificate chain
    /// (`jku`, `x5u`, `x5c`). Keys never come from there; callers that
    /// want to refuse such tokens outright check this.
    pub fn references_external_key(&self) -> bool {
        self.has_jku || self.has_x5u || self.has_x5c
    }
}

fn optional_string(header: &JsonObject, name: &'static str) -> Result<Option<String>, JoseError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JoseError::HeaderMember(name, MemberProblem::WrongType)),
    }
}

/// A parsed, not yet verified, compact JWS.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactJws {
    signing_input: Vec<u8>,
    header: JwsHeader,
    header_json: JsonObject,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl CompactJws {
    /// Parses `token` (at most `max_len` bytes) as a compact JWS: exactly
    /// three non-empty parts, each canonical unpadded base64url; header and
    /// payload JSON objects with no duplicate member at any depth; a header
    /// with an accepted `alg` and no `crit`.
    pub fn parse(token: &str, max_len: usize) -> Result<CompactJws, JoseError> {
        if token.len() > max_len {
            return Err(JoseError::TooLong { max: max_len });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed);
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(JoseError::Malformed);
        }

        let header_bytes = decode_part(header_b64, JwsPart::Header)?;
        let payload = decode_part(payload_b64, JwsPart::Payload)?;
        let signature = decode_part(signature_b64, JwsPart::Signature)?;
        let header_json = json_object(&header_bytes, JwsPart::Header)?;
        check_json_object(&payload).map_err(|reason| JoseError::Json {
            part: JwsPart::Payload,
            reason,
        })?;
        let header = JwsHeader::from_object(&header_json)?;

        // The bytes as received, not a re-encoding of what was decoded.
        let mut signing_input = Vec::with_capacity(header_b64.len() + 1 + payload_b64.len());
        signing_input.extend_from_slice(header_b64.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload_b64.as_bytes());

        Ok(CompactJws {
            signing_input,
            header,
            header_json,
            payload,
            signature,
        })
    }

    /// The typed header.
    pub fn header(&self) -> &JwsHeader {
        &self.header
    }

    /// The whole decoded header object, for checks on members not typed
    /// in [`JwsHeader`].
    pub fn header_json(&self) -> &JsonObject {
        &self.header_json
    }

    /// The decoded payload: a JSON object without duplicate members.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// `header_b64 "." payload_b64`, byte for byte as received.
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Verifies the signature with `key` under the header's `alg`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), JoseError> {
        key.verify(self.header.alg, &self.signing_input, &self.signature)
    }
}

fn decode_part(text: &str, part: JwsPart) -> Result<Vec<u8>, JoseError> {
    b64url_decode(text).map_err(|_| JoseError::Encoding(part))
}

fn json_object(bytes: &[u8], part: JwsPart) -> Result<JsonObject, JoseError> {
    check_json_object(bytes).map_err(|reason| JoseError::Json { part, reason })?;
    serde_json::from_slice(bytes).map_err(|_| JoseError::Json {
        part,
        reason: stella_envelope::encoding::DecodeError::Json,
    })
}

/// Compares a `typ` value with the expected media type (such as `at+jwt` or
/// `dpop+jwt`) case-insensitively, ignoring an optional `application/`
/// prefix on either (RFC 7515 4.1.9; docs/design.md §3.3).
pub fn typ_matches(value: &str, expected: &str) -> bool {
    let expected = strip_application(expected);
    !expected.is_empty() && strip_application(value).eq_ignore_ascii_case(expected)
}

fn strip_application(text: &str) -> &str {
    const PREFIX: &str = "application/";
    match (text.get(..PREFIX.len()), text.get(PREFIX.len()..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case(PREFIX) => rest,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stella_envelope::encoding::{b64url_encode, DecodeError};

    const MAX: usize = 8192;

    fn token(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header),
            b64url_encode(payload),
            b64url_encode(signature)
        )
    }

    fn parse_header(header: &str) -> Result<CompactJws, JoseError> {
        CompactJws::parse(&token(header, r#"{"sub":"a"}"#, &[1; 64]), MAX)
    }

    #[test]
    fn well_formed_token_keeps_signing_input_as_received() {
        let t = token(
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"sub":"a"}"#,
            &[7; 64],
        );
        let jws = CompactJws::parse(&t, MAX).unwrap();
        let second_dot = t.rfind('.').unwrap();
        assert_eq!(jws.signing_input(), &t.as_bytes()[..second_dot]);
        assert_eq!(jws.payload(), br#"{"sub":"a"}"#);
        assert_eq!(jws.signature(), &[7; 64]);
        let header = jws.header();
        assert_eq!(header.alg(), JwsAlg::Es256);
        assert_eq!(header.typ(), Some("at+jwt"));
        assert_eq!(header.kid(), Some("k1"));
        assert_eq!(header.jwk(), None);
        assert!(!header.references_external_key());
        assert_eq!(jws.header_json().len(), 3);
    }

    #[test]
    fn two_four_or_empty_parts_are_malformed() {
        let good = token(r#"{"alg":"ES256"}"#, r#"{}"#, &[1; 64]);
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        for bad in [
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}.{p}.{s}."),
            format!("{h}..{s}"),
            format!(".{p}.{s}"),
            format!("{h}.{p}."),
            String::new(),
            "..".to_owned(),
            h.to_owned(),
        ] {
            assert_eq!(
                CompactJws::parse(&bad, MAX),
                Err(JoseError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_over_the_length_limit_is_refused_before_parsing() {
        let t = token(r#"{"alg":"ES256"}"#, r#"{}"#, &[1; 64]);
        assert!(CompactJws::parse(&t, t.len()).is_ok());
        let err = CompactJws::parse(&t, t.len() - 1).unwrap_err();
        assert_eq!(err, JoseError::TooLong { max: t.len() - 1 });
        assert_eq!(err.code(), "jws_too_long");
    }

    #[test]
    fn padded_or_non_canonical_base64_is_refused_in_every_part() {
        let h = b64url_encode(r#"{"alg":"ES256"}"#); // 20 chars: no padding needed
        let p = b64url_encode(r#"{"a":1}"#); // 10 chars: would carry "=="
        let s = b64url_encode([1u8; 64]); // 86 chars: would carry "=="
        assert_eq!(h.len() % 4, 0);
        assert!(s.ends_with('Q'));
        let cases = [
            (format!("{h}.{p}==.{s}"), JwsPart::Payload),
            (format!("{h}.{p}.{s}=="), JwsPart::Signature),
            (format!("{h}=.{p}.{s}"), JwsPart::Header),
            // Standard alphabet instead of the URL-safe one.
            (format!("{}.{p}.{s}", h.replace('J', "+")), JwsPart::Header),
            // Same top bits, non-zero trailing bits: "…Q" -> "…R".
            (
                format!("{h}.{p}.{}R", &s[..s.len() - 1]),
                JwsPart::Signature,
            ),
            (format!("{h}.{p} .{s}"), JwsPart::Payload),
        ];
        for (bad, part) in cases {
            assert_eq!(
                CompactJws::parse(&bad, MAX),
                Err(JoseError::Encoding(part)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn duplicate_header_member_is_refused() {
        for header in [
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"alg":"none","alg":"ES256"}"#,
            r#"{"alg":"ES256","\u0061lg":"ES256"}"#,
            r#"{"alg":"ES256","jwk":{"x":"a","x":"b"}}"#,
        ] {
            let err = parse_header(header).unwrap_err();
            assert_eq!(
                err,
                JoseError::Json {
                    part: JwsPart::Header,
                    reason: DecodeError::DuplicateMember
                },
                "{header}"
            );
            assert_eq!(err.code(), "malformed_jws");
        }
    }

    #[test]
    fn duplicate_payload_member_is_refused() {
        let t = token(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#, &[1; 64]);
        assert_eq!(
            CompactJws::parse(&t, MAX),
            Err(JoseError::Json {
                part: JwsPart::Payload,
                reason: DecodeError::DuplicateMember
            })
        );
    }

    #[test]
    fn header_and_payload_must_be_json_objects() {
        for (header, payload, part) in [
            (r#"["ES256"]"#, r#"{}"#, JwsPart::Header),
            (r#""ES256""#, r#"{}"#, JwsPart::Header),
            (r#"{"alg":"ES256"}"#, "hello", JwsPart::Payload),
            (r#"{"alg":"ES256"}"#, "[]", JwsPart::Payload),
            (r#"{"alg":"ES256"}"#, r#"{"a":1} {}"#, JwsPart::Payload),
            (r#"{"alg":"ES256"}"#, "{\"a\":\"\u{0}\"", JwsPart::Payload),
        ] {
            let t = token(header, payload, &[1; 64]);
            assert!(
                matches!(CompactJws::parse(&t, MAX), Err(JoseError::Json { part: p, .. }) if p == part),
                "{header} {payload}"
            );
        }
    }

    #[test]
    fn none_and_symmetric_algs_are_unsupported() {
        for alg in ["none", "HS256", "HS512", "RS512", "ES512", "es256"] {
            let err = parse_header(&format!(r#"{{"alg":"{alg}"}}"#)).unwrap_err();
            assert_eq!(err, JoseError::UnsupportedAlg, "{alg}");
            assert_eq!(err.code(), "unsupported_alg");
        }
    }

    #[test]
    fn header_members_of_the_wrong_json_type_are_errors_not_absent() {
        for (header, member, problem) in [
            (r#"{}"#, "alg", MemberProblem::Missing),
            (r#"{"alg":null}"#, "alg", MemberProblem::WrongType),
            (r#"{"alg":["ES256"]}"#, "alg", MemberProblem::WrongType),
            (
                r#"{"alg":"ES256","typ":1}"#,
                "typ",
                MemberProblem::WrongType,
            ),
            (
                r#"{"alg":"ES256","typ":null}"#,
                "typ",
                MemberProblem::WrongType,
            ),
            (
                r#"{"alg":"ES256","kid":7}"#,
                "kid",
                MemberProblem::WrongType,
            ),
            (
                r#"{"alg":"ES256","jwk":"e30"}"#,
                "jwk",
                MemberProblem::WrongType,
            ),
            (
                r#"{"alg":"ES256","b64":"true"}"#,
                "b64",
                MemberProblem::WrongType,
            ),
        ] {
            let err = parse_header(header).unwrap_err();
            assert_eq!(err, JoseError::HeaderMember(member, problem), "{header}");
            assert_eq!(err.code(), "malformed_header");
        }
    }

    #[test]
    fn header_with_crit_is_refused_whatever_it_lists() {
        for header in [
            r#"{"alg":"ES256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"ES256","crit":[]}"#,
            r#"{"alg":"ES256","crit":null}"#,
            r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#,
        ] {
            let err = parse_header(header).unwrap_err();
            assert_eq!(err, JoseError::UnsupportedHeader("crit"), "{header}");
            assert_eq!(err.code(), "unsupported_header");
        }
    }

    #[test]
    fn unencoded_payload_option_is_refused_and_b64_true_is_reported() {
        assert_eq!(
            parse_header(r#"{"alg":"ES256","b64":false}"#),
            Err(JoseError::UnsupportedHeader("b64"))
        );
        let jws = parse_header(r#"{"alg":"ES256","b64":true}"#).unwrap();
        assert!(jws.header().has_b64());
    }

    #[test]
    fn key_references_in_the_header_are_reported_for_callers_to_refuse() {
        let jws = parse_header(r#"{"alg":"RS256","jku":"https://e.example/jwks"}"#).unwrap();
        assert!(jws.header().has_jku() && jws.header().references_external_key());
        let jws = parse_header(r#"{"alg":"RS256","x5u":"https://e.example/c"}"#).unwrap();
        assert!(jws.header().has_x5u() && jws.header().references_external_key());
        let jws = parse_header(r#"{"alg":"RS256","x5c":["MIIB"]}"#).unwrap();
        assert!(jws.header().has_x5c() && jws.header().references_external_key());
        let jws = parse_header(r#"{"alg":"RS256","kid":"a"}"#).unwrap();
        assert!(!jws.header().references_external_key());
    }

    #[test]
    fn embedded_jwk_is_kept_as_a_raw_object() {
        let jws = parse_header(r#"{"alg":"ES256","jwk":{"kty":"EC","crv":"P-256"}}"#).unwrap();
        let jwk = jws.header().jwk().unwrap();
        assert_eq!(jwk.get("kty"), Some(&Value::String("EC".into())));
        assert_eq!(jwk.len(), 2);
    }

    #[test]
    fn error_messages_never_echo_the_input() {
        let marker = "ZZmarkerZZ";
        let cases = [
            format!(r#"{{"alg":"{marker}"}}"#),
            format!(r#"{{"alg":"ES256","{marker}":1,"{marker}":2}}"#),
            format!(r#"{{"alg":"ES256","typ":["{marker}"]}}"#),
            format!(r#"{{"alg":"ES256","crit":["{marker}"]}}"#),
        ];
        for header in cases {
            let err = parse_header(&header).unwrap_err();
            let text = err.to_string();
            assert!(!text.contains(marker), "{text}");
        }
    }

    #[test]
    fn typ_is_compared_case_insensitively_with_optional_application_prefix() {
        for value in [
            "at+jwt",
            "AT+JWT",
            "At+Jwt",
            "application/at+jwt",
            "APPLICATION/AT+JWT",
            "Application/at+JWT",
        ] {
            assert!(typ_matches(value, "at+jwt"), "{value}");
        }
        assert!(typ_matches("dpop+jwt", "application/dpop+jwt"));
        for value in [
            "jwt",
            "JWT",
            "application/jwt",
            "at+jwt ",
            " at+jwt",
            "application/application/at+jwt",
            "applicationat+jwt",
            "text/at+jwt",
            "dpop+jwt",
            "",
            "application/",
            "\u{212a}at+jwt",
        ] {
            assert!(!typ_matches(value, "at+jwt"), "{value:?}");
        }
        assert!(!typ_matches("", ""));
        assert!(!typ_matches("application/", "application/"));
    }
}
