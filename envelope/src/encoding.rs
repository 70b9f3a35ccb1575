//! Strict decoders shared by the envelope and, through the gateway, by every
//! token and proof parser: canonical unpadded base64url, canonical decimal
//! integers, and JSON objects without duplicate members.
//!
//! "Strict" means one encoding per value. A lenient decoder lets an attacker
//! produce many byte strings for one meaning, which breaks replay keys,
//! thumbprint comparisons and signature-covered headers.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Unpadded base64url that refuses padding and non-zero trailing bits.
const STRICT_B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Why a strict decode failed. Carries no input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not canonical unpadded base64url")]
    Base64,
    #[error("not a canonical decimal integer")]
    Integer,
    #[error("not a json object")]
    NotObject,
    #[error("malformed json")]
    Json,
    #[error("duplicate json member")]
    DuplicateMember,
    #[error("json nested too deeply")]
    TooDeep,
}

/// Whether `bytes` go into a JSON string as they are: no `"`, `\\` or
/// control character. Almost every value written on the request path is
/// such. Eight bytes are checked at a time (a string of 8 or more ends with
/// an overlapping word), without an early exit; shorter strings byte by
/// byte.
pub fn json_plain(bytes: &[u8]) -> bool {
    let Some(last) = bytes.last_chunk::<8>() else {
        return bytes
            .iter()
            .all(|&b| (b >= 0x20) & (b != b'"') & (b != b'\\'));
    };
    let (words, _) = bytes.as_chunks::<8>();
    let special = words
        .iter()
        .chain(std::iter::once(last))
        .fold(0, |any, word| {
            any | special_bytes(u64::from_le_bytes(*word))
        });
    special == 0
}

/// Non-zero when a byte of `word` is below 0x20, `"` or `\\`: the classic
/// "has a zero byte" and "has a byte less than n" tests, exact for the
/// word as a whole (a set bit above the first match may be a borrow, never
/// a match where there is none).
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    (below_space | quote | backslash) & HIGH
}

/// Encodes bytes as unpadded base64url. With `base64-simd`: the envelope
/// payload is encoded on every forwarded request, and its vector encoder
/// costs a fraction of the `base64` crate's table lookups
/// (docs/dependencies.md, "base64-simd"); a test holds the two to the same
/// text.
pub fn b64url_encode(bytes: impl AsRef<[u8]>) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Decodes canonical unpadded base64url: no padding, no whitespace, no
/// non-zero bits after the last full octet.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    // A length of 1 mod 4 can never be produced by an encoder.
    if text.len() % 4 == 1 {
        return Err(DecodeError::Base64);
    }
    STRICT_B64URL.decode(text).map_err(|_| DecodeError::Base64)
}

/// True when `text` is the canonical unpadded base64url encoding of some
/// byte string of exactly `len` octets.
pub fn is_canonical_b64url_of_len(text: &str, len: usize) -> bool {
    matches!(b64url_decode(text), Ok(bytes) if bytes.len() == len)
}

/// Parses a non-negative decimal integer in canonical form: ASCII digits only,
/// no sign, no leading zero (except "0" itself), at most 15 digits.
pub fn parse_canonical_u64(text: &str) -> Result<u64, DecodeError> {
    let bytes = text.as_bytes();
    let canonical = !bytes.is_empty()
        && bytes.len() <= 15
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if !canonical {
        return Err(DecodeError::Integer);
    }
    text.parse().map_err(|_| DecodeError::Integer)
}

/// Maximum nesting of arrays and objects accepted in untrusted JSON.
const MAX_DEPTH: usize = 16;

/// Checks that `json` is one JSON object and that no object anywhere inside it
/// repeats a member name. serde_json alone keeps the last duplicate for
/// untyped values and ignores duplicates of unknown fields; a verifier and a
/// later reader could then disagree on what was signed.
pub fn check_json_object(json: &[u8]) -> Result<(), DecodeError> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError::NotObject);
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let result = de::Deserializer::deserialize_any(&mut de, Strict { depth: 0 });
    match result {
        Ok(()) => de.end().map_err(|_| DecodeError::Json),
        Err(e) => Err(classify(&e)),
    }
}

fn classify(e: &serde_json::Error) -> DecodeError {
    let text = e.to_string();
    if text.starts_with(DUPLICATE) {
        DecodeError::DuplicateMember
    } else if text.starts_with(TOO_DEEP) {
        DecodeError::TooDeep
    } else {
        DecodeError::Json
    }
}

const DUPLICATE: &str = "stella: duplicate member";
const TOO_DEEP: &str = "stella: too deep";

/// A visitor that walks any JSON value, failing on duplicate object members.
#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
}

impl Strict {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(Strict {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any json value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.into_owned()) {
                return Err(de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// A payload member that must be present and may be `null` (SPEC.md
/// section 2: exactly these members). Serde reads a missing `Option` member
/// as `None`; a field read through this function has no such default, so a
/// missing member is an error.
pub(crate) fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector encoder writes what the `base64` crate writes, for every
    /// length to past a few vector blocks and every byte value.
    #[test]
    fn the_encoder_writes_what_the_base64_crate_writes() {
        let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1200).collect();
        for len in 0..bytes.len() {
            for start in [0, 1, 7] {
                let input = &bytes[start..(start + len).min(bytes.len())];
                assert_eq!(
                    b64url_encode(input),
                    reference.encode(input),
                    "{len} from {start}"
                );
            }
        }
    }

    /// Every byte value in every position of strings of every length to
    /// 40: the word-at-a-time check says what a byte-by-byte one says.
    #[test]
    fn json_plain_finds_every_byte_that_needs_an_escape() {
        let plain = |bytes: &[u8]| bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        for len in 0..40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(json_plain(&bytes), plain(&bytes), "{b:#x} at {at} of {len}");
                    // Non-ASCII bytes around it change nothing.
                    bytes
                        .iter_mut()
                        .filter(|c| **c == b'a')
                        .for_each(|c| *c = 0xe9);
                    assert_eq!(json_plain(&bytes), plain(&bytes), "{b:#x} at {at} of {len}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn json_plain_is_a_byte_by_byte_check(bytes: Vec<u8>) {
            let plain = bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(json_plain(&bytes), plain);
        }

        #[test]
        fn any_bytes_encode_as_the_base64_crate_encodes_them(bytes: Vec<u8>) {
            let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            proptest::prop_assert_eq!(b64url_encode(&bytes), reference.encode(&bytes));
        }
    }

    #[test]
    fn base64url_round_trips_and_refuses_padding_and_stray_bits() {
        assert_eq!(b64url_decode(&b64url_encode(b"hello")).unwrap(), b"hello");
        assert_eq!(b64url_decode("aGVsbG8="), Err(DecodeError::Base64));
        // "aGVsbG9" would be canonical; "aGVsbG+" uses the wrong alphabet.
        assert_eq!(b64url_decode("aGVsbG+"), Err(DecodeError::Base64));
        // "QQ" is canonical for "A"; "QR" differs only in trailing bits.
        assert_eq!(b64url_decode("QQ").unwrap(), b"A");
        assert_eq!(b64url_decode("QR"), Err(DecodeError::Base64));
        assert_eq!(b64url_decode("Q"), Err(DecodeError::Base64));
        assert_eq!(b64url_decode(" QQ"), Err(DecodeError::Base64));
    }

    #[test]
    fn rfc8705_example_thumbprint_is_not_canonical() {
        // ../shared/reference/rfc-vectors.json: the RFC's example ends in a
        // character with non-zero padding bits.
        let example = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2";
        assert!(!is_canonical_b64url_of_len(example, 32));
        let fixed = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0";
        assert!(is_canonical_b64url_of_len(fixed, 32));
    }

    #[test]
    fn canonical_integers_only() {
        assert_eq!(parse_canonical_u64("0"), Ok(0));
        assert_eq!(parse_canonical_u64("1700000000"), Ok(1_700_000_000));
        for bad in [
            "",
            "01",
            "+1",
            "-1",
            "1.0",
            " 1",
            "1e3",
            "0x10",
            "1234567890123456",
        ] {
            assert_eq!(
                parse_canonical_u64(bad),
                Err(DecodeError::Integer),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn json_duplicates_are_found_at_any_depth() {
        assert_eq!(check_json_object(br#"{"a":1,"b":[1,{"c":2}]}"#), Ok(()));
        assert_eq!(
            check_json_object(br#"{"a":1,"a":2}"#),
            Err(DecodeError::DuplicateMember)
        );
        assert_eq!(
            check_json_object(br#"{"a":{"x":1,"x":1}}"#),
            Err(DecodeError::DuplicateMember)
        );
        // An escaped name is the same member as its plain spelling.
        assert_eq!(
            check_json_object(br#"{"a":1,"\u0061":2}"#),
            Err(DecodeError::DuplicateMember)
        );
        assert_eq!(check_json_object(b"[1]"), Err(DecodeError::NotObject));
        assert_eq!(check_json_object(br#"{"a":1} x"#), Err(DecodeError::Json));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            check_json_object(deep.as_bytes()),
            Err(DecodeError::TooDeep)
        );
    }
}
