//! What the upstream receives (docs/design.md §3.5 and §3.6): which client
//! headers are removed, and which headers the gateway sets in their place (its
//! own forwarding headers, trace context, request id and the signed envelope).
//!
//! Pure functions over header names and values; the proxy applies the plan.

use http::HeaderValue;
use pingora::http::CasedHeaderName;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::LazyLock;

/// Whether a client-sent header must not reach the upstream. Names are
/// compared case-insensitively; the caller removes every duplicate.
pub fn is_stripped(name: &str, forward_credentials: bool, trusted_tls_terminator: bool) -> bool {
    // Most fields (`host`, `accept`, `user-agent`, `content-type`) are
    // told apart by their first byte and length alone: every name below
    // starts with `x`, or is one of these few lengths with its first byte.
    let first = name.as_bytes().first().map_or(0, u8::to_ascii_lowercase);
    let candidate = first == b'x'
        || matches!(
            (name.len(), first),
            (4, b'd') | (9, b't' | b'f') | (10, b't') | (11, b'c' | b't') | (13, b'a') | (17, b'c')
        );
    candidate && is_stripped_name(name, forward_credentials, trusted_tls_terminator)
}

/// [`is_stripped`] without the first-byte-and-length shortcut.
fn is_stripped_name(name: &str, forward_credentials: bool, trusted_tls_terminator: bool) -> bool {
    // `_` is folded to `-`: CGI/WSGI-style frameworks read `X_Stella_Tenant`
    // and `X-Stella-Tenant` as the same variable. Folded on the stack, for
    // every field of every request: each name below and each prefix is
    // shorter than the buffer, so its first bytes decide.
    let mut folded = [0u8; 32];
    for (to, from) in folded.iter_mut().zip(name.bytes()) {
        *to = match from {
            b'_' => b'-',
            b => b.to_ascii_lowercase(),
        };
    }
    let head = &folded[..name.len().min(folded.len())];
    let is = |candidate: &str| name.len() == candidate.len() && head == candidate.as_bytes();
    let starts = |prefix: &str| head.starts_with(prefix.as_bytes());
    // The envelope's headers and the transaction token (`Txn-Token`,
    // draft-ietf-oauth-transaction-tokens): only the gateway sets them.
    let identity = starts("x-stellaops-") || starts("x-stella-") || is("txn-token");
    let client_cert = (is("client-cert") || is("client-cert-chain") || is("x-ssl-client-cert"))
        && !trusted_tls_terminator;
    let forwarding =
        is("forwarded") || starts("x-forwarded-") || is("x-real-ip") || is("x-request-id");
    // Replaced by the gateway's own trace context below.
    let trace = is("traceparent") || is("tracestate");
    let credentials = !forward_credentials && (is("authorization") || is("dpop"));
    // Headers that would change, after the policy decided, what a service
    // does: the method (override) or the path (rewrite).
    let intent = is("x-http-method-override")
        || is("x-http-method")
        || is("x-method-override")
        || is("x-original-url")
        || is("x-rewrite-url");
    identity || client_cert || forwarding || trace || credentials || intent
}

/// Whether a query string carries an access token (RFC 6750 section 2.3:
/// `access_token=`), which the gateway refuses (docs/design.md §3.3): a token
/// in a URL ends up in logs, and a second credential method is ambiguous. The
/// parameter name is matched after percent-decoding, case-sensitively as
/// RFC 6750 names it.
pub fn query_has_access_token(query: &[u8]) -> bool {
    query.split(|b| *b == b'&' || *b == b';').any(|pair| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let mut decoded = Vec::with_capacity(name.len());
        let mut i = 0;
        while i < name.len() {
            match name[i] {
                b'%' if i + 2 < name.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(name[i + 1]), hex(name[i + 2])) {
                        (Some(h), Some(l)) => {
                            decoded.push((h * 16 + l) as u8);
                            i += 3;
                            continue;
                        }
                        _ => decoded.push(b'%'),
                    }
                }
                b'+' => decoded.push(b' '),
                c => decoded.push(c),
            }
            i += 1;
        }
        decoded == b"access_token"
    })
}

/// The headers the gateway adds, given what the client sent.
pub struct Added {
    pub forwarded_for: String,
    pub forwarded_proto: &'static str,
    /// The client's `Host`, passed on as it came (no copy).
    pub forwarded_host: Option<HeaderValue>,
    pub request_id: String,
    pub traceparent: String,
    /// Kept only when the incoming `traceparent` was valid; the client's
    /// value as it came.
    pub tracestate: Option<HeaderValue>,
}

/// A value for a header the gateway sets: made for this request, or one
/// the request brought (shared, not copied or checked again).
pub enum Value {
    Made(String),
    Kept(HeaderValue),
}

impl Added {
    pub fn into_pairs(self) -> impl Iterator<Item = (&'static CasedHeaderName, Value)> {
        let names = &*NAMES;
        [
            (&names.forwarded_for, Some(Value::Made(self.forwarded_for))),
            (
                &names.forwarded_proto,
                Some(Value::Kept(HeaderValue::from_static(self.forwarded_proto))),
            ),
            (&names.request_id, Some(Value::Made(self.request_id))),
            (&names.traceparent, Some(Value::Made(self.traceparent))),
            (&names.forwarded_host, self.forwarded_host.map(Value::Kept)),
            (&names.tracestate, self.tracestate.map(Value::Kept)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

/// A header value the gateway made, without `HeaderValue`'s byte-by-byte
/// check when every byte is visible ASCII (checked here in one loop the
/// compiler vectorizes): the envelope, its signature and the other values the gateway
/// sets are a kilobyte a request, and that check was 1,200 of a forwarded
/// request's instructions (docs/performance.md). Any other value gets
/// `HeaderValue`'s own check and its answer.
pub fn made_value(text: String) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    if is_visible_ascii(text.as_bytes()) {
        // SAFETY: `HeaderValue` accepts every visible ASCII byte (it
        // refuses only controls other than tab, and DEL).
        Ok(unsafe { HeaderValue::from_maybe_shared_unchecked(bytes::Bytes::from(text)) })
    } else {
        HeaderValue::try_from(text)
    }
}

/// Every byte is `0x20..=0x7e`. A fold without an early exit, which the
/// compiler vectorizes.
fn is_visible_ascii(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |all, &b| all & (b.wrapping_sub(0x20) < 0x5f))
}

/// The names of the headers the gateway sets, each parsed once: inserting
/// one then neither parses nor allocates a name (docs/performance.md).
pub struct Names {
    pub forwarded_for: CasedHeaderName,
    pub forwarded_proto: CasedHeaderName,
    pub forwarded_host: CasedHeaderName,
    pub request_id: CasedHeaderName,
    pub traceparent: CasedHeaderName,
    pub tracestate: CasedHeaderName,
    /// In the order of [`stella_envelope::EnvelopeHeaders::into_pairs`].
    pub envelope: [CasedHeaderName; 6],
    pub txn_token: CasedHeaderName,
}

/// The most headers one forwarded request gets: [`Added`]'s six, the
/// envelope's six and the transaction token.
pub const MAX_ADDED: usize = 13;

pub static NAMES: LazyLock<Names> = LazyLock::new(|| Names {
    forwarded_for: CasedHeaderName::new("x-forwarded-for"),
    forwarded_proto: CasedHeaderName::new("x-forwarded-proto"),
    forwarded_host: CasedHeaderName::new("x-forwarded-host"),
    request_id: CasedHeaderName::new("x-request-id"),
    traceparent: CasedHeaderName::new("traceparent"),
    tracestate: CasedHeaderName::new("tracestate"),
    envelope: stella_envelope::format::HEADER_NAMES.map(CasedHeaderName::new),
    txn_token: CasedHeaderName::new(stella_envelope::txn_token::HEADER),
});

/// A W3C trace context parent: version 00, trace id, parent (span) id, flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` unless it is valid per W3C
    /// Trace Context (lowercase hex, non-zero ids, version not `ff`).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        match parts.as_slice() {
            [version, trace, parent, flags, ..]
                if hex(version, 2)
                    && *version != "ff"
                    && (*version != "00" || parts.len() == 4)
                    && hex(trace, 32)
                    && !zero(trace)
                    && hex(parent, 16)
                    && !zero(parent)
                    && hex(flags, 2) =>
            {
                Some(TraceParent {
                    trace_id: trace.to_string(),
                    parent_id: parent.to_string(),
                    flags: flags.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The value written back (the request path writes it in one string
    /// with [`traceparent`] and [`next_trace`]; tests compare the two).
    #[cfg(test)]
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(
            3 + self.trace_id.len() + 1 + self.parent_id.len() + 1 + self.flags.len(),
        );
        for (part, sep) in [
            ("00", "-"),
            (self.trace_id.as_str(), "-"),
            (self.parent_id.as_str(), "-"),
            (self.flags.as_str(), ""),
        ] {
            out.push_str(part);
            out.push_str(sep);
        }
        out
    }
}

thread_local! {
    /// Per-thread generator state for trace and span ids, seeded once from
    /// the operating system. Ids must be unique, not secret, so a fast
    /// generator replaces a system call per id on the hot path.
    static ID_STATE: std::cell::Cell<u64> = std::cell::Cell::new(os_seed());
}

fn os_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SystemRandom fails only without an OS randomness source; the
    // address of a local still differs between threads then.
    if SystemRandom::new().fill(&mut seed).is_err() {
        return &seed as *const _ as u64 | 1;
    }
    u64::from_le_bytes(seed) | 1
}

/// splitmix64: the next 64 random bits of this thread's id generator.
fn next_u64() -> u64 {
    ID_STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// Random lowercase hex of `bytes` bytes, for ids (not for secrets).
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    let mut remaining = bytes;
    while remaining > 0 {
        let word = next_u64().to_le_bytes();
        let take = remaining.min(8);
        push_hex(&mut out, &word[..take]);
        remaining -= take;
    }
    out
}

/// `00-<trace id>-<parent id>-<flags>`, in lowercase hex, in one string.
pub fn traceparent(trace_id: &[u8; 16], parent_id: &[u8; 8], flags: u8) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, trace_id);
    out.push('-');
    push_hex(&mut out, parent_id);
    out.push('-');
    push_hex(&mut out, &[flags]);
    out
}

/// Written as bytes into a buffer and appended once a block: pushing the
/// digits one `char` at a time costs several times more.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buffer = [0u8; 32];
    for block in bytes.chunks(16) {
        for (pair, b) in buffer.chunks_exact_mut(2).zip(block) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        // Always ASCII: only digits and `a`-`f` were written.
        if let Ok(text) = std::str::from_utf8(&buffer[..block.len() * 2]) {
            out.push_str(text);
        }
    }
}

/// The `tracestate` passed on: the client's, when its `traceparent` is
/// valid (the one [`next_trace`] returns, without making new ids).
pub fn continued_state(
    incoming: Option<&str>,
    incoming_state: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    incoming
        .and_then(TraceParent::parse)
        .and(incoming_state.cloned())
}

/// The trace context for the upstream hop, as the `traceparent` value and
/// the `tracestate` to pass on: the client's trace continued with a new
/// span id when valid, otherwise a new trace. Written in one string.
pub fn next_trace(
    incoming: Option<&str>,
    incoming_state: Option<&HeaderValue>,
) -> (String, Option<HeaderValue>) {
    let parent_id = next_u64().to_le_bytes();
    match incoming.and_then(TraceParent::parse) {
        Some(parent) => {
            let mut out = String::with_capacity(55);
            out.push_str("00-");
            out.push_str(&parent.trace_id);
            out.push('-');
            push_hex(&mut out, &parent_id);
            out.push('-');
            out.push_str(&parent.flags);
            (out, incoming_state.cloned())
        }
        None => {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&next_u64().to_le_bytes());
            trace_id[8..].copy_from_slice(&next_u64().to_le_bytes());
            (traceparent(&trace_id, &parent_id, 1), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_names_are_in_the_order_the_headers_come() {
        let headers = stella_envelope::EnvelopeHeaders {
            envelope: "e".into(),
            signature: "s".into(),
            alg: "a".into(),
            kid: "k".into(),
            iat: "i".into(),
            exp: "x".into(),
        };
        let pairs = headers.into_pairs();
        assert_eq!(pairs.len(), NAMES.envelope.len());
        for ((name, _), cased) in pairs.iter().zip(&NAMES.envelope) {
            assert_eq!(cased.name().as_str(), name.to_ascii_lowercase());
        }
        let added = Added {
            forwarded_for: "192.0.2.1".into(),
            forwarded_proto: "https",
            forwarded_host: Some(HeaderValue::from_static("h")),
            request_id: "r".into(),
            traceparent: "t".into(),
            tracestate: Some(HeaderValue::from_static("s")),
        };
        assert_eq!(added.into_pairs().count() + pairs.len() + 1, MAX_ADDED);
    }

    #[test]
    fn headers_that_change_method_or_path_after_the_decision_are_stripped() {
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "X-Original-URL",
            "x-rewrite-url",
            "X_HTTP_Method_Override",
            "x_original_url",
        ] {
            assert!(is_stripped(name, true, true), "{name}");
        }
        assert!(!is_stripped("x-http-methods", false, false));
    }

    #[test]
    fn access_token_in_the_query_is_found_in_any_position_and_encoding() {
        for query in [
            "access_token=abc",
            "a=1&access_token=abc",
            "a=1;access_token",
            "access%5Ftoken=abc",
            "%61ccess_token=x",
            "access_token",
        ] {
            assert!(query_has_access_token(query.as_bytes()), "{query}");
        }
        for query in [
            "",
            "a=access_token",
            "access_tokens=1",
            "xaccess_token=1",
            "access_token2=1",
            "%",
            "%6",
        ] {
            assert!(!query_has_access_token(query.as_bytes()), "{query}");
        }
    }

    #[test]
    fn identity_forwarding_and_certificate_headers_are_stripped_in_any_case() {
        for name in [
            "X-StellaOps-Identity-Envelope",
            "x-stellaops-identity-envelope-kid",
            "X-STELLA-TENANT",
            "X-Stella-Anything",
            "Client-Cert",
            "client-cert-chain",
            "X-SSL-Client-Cert",
            "Forwarded",
            "X-Forwarded-For",
            "x-forwarded-host",
            "X-Real-IP",
            "traceparent",
            "X_StellaOps_Identity_Envelope",
            "x-stella_tenant",
            "X_Forwarded_For",
        ] {
            assert!(is_stripped(name, true, false), "{name}");
        }
        for name in [
            "Accept",
            "Content-Type",
            "X-Stellar",
            "Cookie",
            "User-Agent",
        ] {
            assert!(!is_stripped(name, false, false), "{name}");
        }
    }

    #[test]
    fn a_client_sent_transaction_token_is_stripped_in_any_spelling_whatever_the_service() {
        for name in [
            "Txn-Token",
            "txn-token",
            "TXN-TOKEN",
            "Txn_Token",
            "txn_token",
        ] {
            for (credentials, terminator) in [(false, false), (true, true)] {
                assert!(is_stripped(name, credentials, terminator), "{name}");
            }
        }
        for name in ["Txn-Tokens", "Txn-Token-Id", "X-Txn-Token", "Txn"] {
            assert!(!is_stripped(name, false, false), "{name}");
        }
    }

    /// Every name the full check strips, in the spellings a client may
    /// send, and names one byte away from them.
    fn spellings() -> Vec<String> {
        let names = [
            "x-stellaops-identity-envelope",
            "x-stella-tenant",
            "txn-token",
            "client-cert",
            "client-cert-chain",
            "x-ssl-client-cert",
            "forwarded",
            "x-forwarded-for",
            "x-real-ip",
            "x-request-id",
            "traceparent",
            "tracestate",
            "authorization",
            "dpop",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "x-original-url",
            "x-rewrite-url",
            "host",
            "accept",
            "user-agent",
            "content-type",
            "content-length",
            "cookie",
        ];
        let mut out = Vec::new();
        for name in names {
            out.push(name.to_owned());
            out.push(name.to_ascii_uppercase());
            out.push(name.replace('-', "_"));
            out.push(format!("{name}s"));
            out.push(name[1..].to_owned());
            out.push(name[..name.len() - 1].to_owned());
        }
        out
    }

    #[test]
    fn the_shortcut_never_changes_what_is_stripped() {
        for name in spellings() {
            for (credentials, terminator) in [(false, false), (true, false), (false, true)] {
                assert_eq!(
                    is_stripped(&name, credentials, terminator),
                    is_stripped_name(&name, credentials, terminator),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn a_made_value_is_what_header_value_makes_of_it() {
        // Every byte, at the start, in the middle and at the end of values
        // on both sides of the vector width.
        for len in [1usize, 15, 16, 17, 33, 500] {
            for at in [0, len / 2, len - 1] {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let Ok(text) = String::from_utf8(bytes.clone()) else {
                        continue;
                    };
                    let made = made_value(text.clone()).ok();
                    let reference = HeaderValue::try_from(text).ok();
                    assert_eq!(made, reference, "{b:#x} at {at} of {len}");
                    assert_eq!(
                        made.map(|v| v.as_bytes().to_vec()),
                        reference.map(|_| bytes)
                    );
                }
            }
        }
        // Non-ASCII text takes `HeaderValue`'s own check, which accepts it.
        let text = "caf\u{e9}".to_owned();
        assert_eq!(
            made_value(text.clone()).ok(),
            HeaderValue::try_from(text).ok()
        );
        assert!(made_value(String::new()).is_ok_and(|v| v.is_empty()));
    }

    proptest::proptest! {
        #[test]
        fn any_made_value_is_what_header_value_makes_of_it(text in "\\PC{0,80}|[\\x00-\\x7f]{0,80}") {
            proptest::prop_assert_eq!(
                made_value(text.clone()).ok(),
                HeaderValue::try_from(text).ok()
            );
        }

        #[test]
        fn any_name_is_stripped_as_the_full_check_says(
            name in "[a-zA-Z_-]{0,40}",
            credentials: bool,
            terminator: bool,
        ) {
            proptest::prop_assert_eq!(
                is_stripped(&name, credentials, terminator),
                is_stripped_name(&name, credentials, terminator)
            );
        }
    }

    #[test]
    fn credentials_are_forwarded_only_to_services_that_ask_for_them() {
        assert!(is_stripped("Authorization", false, false));
        assert!(is_stripped("DPoP", false, false));
        assert!(!is_stripped("Authorization", true, false));
        assert!(!is_stripped("dpop", true, false));
    }

    #[test]
    fn client_certificate_headers_pass_only_from_a_trusted_tls_terminator() {
        assert!(!is_stripped("Client-Cert", false, true));
        assert!(is_stripped("X-StellaOps-Identity-Envelope", false, true));
    }

    fn hex(bytes: &[u8]) -> String {
        let mut out = String::new();
        push_hex(&mut out, bytes);
        out
    }

    #[test]
    fn ids_are_written_in_lowercase_hex_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xf0, 0x9c]), "00ab0ff09c");
        assert_eq!(hex(&[]), "");
        // Past one block of 16 bytes.
        let long: Vec<u8> = (0..=40).collect();
        let expected: String = long.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&long), expected);
    }

    #[test]
    fn random_ids_have_the_requested_length_and_differ() {
        let a = random_hex(16);
        let b = random_hex(16);
        assert_eq!(a.len(), 32);
        assert_eq!(random_hex(3).len(), 6);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn valid_traceparent_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let congo = HeaderValue::from_static("congo=t61rcWkgMzE");
        let (header, state) = next_trace(Some(incoming), Some(&congo));
        assert_eq!(header.len(), 55);
        let next = TraceParent::parse(&header).unwrap();
        assert_eq!(next.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(next.parent_id, "00f067aa0ba902b7");
        assert_eq!(next.flags, "01");
        assert_eq!(state.as_ref(), Some(&congo));
        // A new span id each time.
        let (again, _) = next_trace(Some(incoming), None);
        assert_ne!(
            TraceParent::parse(&again).unwrap().parent_id,
            next.parent_id
        );
        // With traces on the ids come from the span; the state is the same.
        assert_eq!(continued_state(Some(incoming), Some(&congo)), state);
        assert_eq!(continued_state(Some(incoming), None), None);
        assert_eq!(continued_state(None, Some(&congo)), None);
        // The span's ids written as one header value.
        let ids = TraceParent::parse(incoming).unwrap();
        let written = traceparent(
            &[
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36,
            ],
            &[0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
            1,
        );
        assert_eq!(written, incoming);
        assert_eq!(written, ids.header());
    }

    #[test]
    fn invalid_traceparent_starts_a_new_trace_and_drops_tracestate() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let state = HeaderValue::from_static("x=y");
            let (header, kept) = next_trace(Some(bad), Some(&state));
            let next = TraceParent::parse(&header).expect("a valid new traceparent");
            assert_ne!(next.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert_eq!((next.flags.as_str(), header.len()), ("01", 55), "{bad}");
            assert_eq!(kept, None, "{bad}");
            assert_eq!(continued_state(Some(bad), Some(&state)), None, "{bad}");
        }
    }
}
