//! Request-path normalization. One canonical spelling of the request path is
//! computed once, before routing; the same value is matched against route
//! patterns and forwarded upstream, so the gateway and the service can never
//! disagree about which resource a request names.
//!
//! Anything whose meaning differs between upstream frameworks (encoded
//! slashes, backslashes, path parameters, control characters) is refused
//! rather than guessed at. Every refusal is a client error (HTTP 400
//! `invalid_request`); nothing here panics on any input.

use std::fmt;

/// Longest raw request path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Most segments a normalized path may have. Bounds the work of pattern
/// matching, which is per request.
pub const MAX_SEGMENTS: usize = 128;

/// Why a request path was refused. Messages never echo the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request target is not in origin form (must start with '/')")]
    NotOriginForm,
    #[error("request path is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("request path has more than {max} segments")]
    TooManySegments { max: usize },
    #[error("request path has a malformed percent-escape")]
    BadEscape,
    #[error("request path has an encoded slash")]
    EncodedSlash,
    #[error("request path has an encoded backslash")]
    EncodedBackslash,
    #[error("request path has a backslash")]
    Backslash,
    #[error("request path has a nul byte")]
    NulByte,
    #[error("request path has a control character")]
    ControlChar,
    #[error("request path has a space")]
    Space,
    #[error("request path has a byte outside ascii")]
    NonAscii,
    #[error("request path has a fragment marker")]
    Fragment,
    #[error("request path has a query marker (the query must be split off first)")]
    QueryInPath,
    #[error("request path has a semicolon (path parameters are not accepted)")]
    Semicolon,
}

impl PathError {
    /// One value of every variant (limits set to 0), for code listings.
    pub const ALL: [PathError; 14] = [
        PathError::NotOriginForm,
        PathError::TooLong { max: 0 },
        PathError::TooManySegments { max: 0 },
        PathError::BadEscape,
        PathError::EncodedSlash,
        PathError::EncodedBackslash,
        PathError::Backslash,
        PathError::NulByte,
        PathError::ControlChar,
        PathError::Space,
        PathError::NonAscii,
        PathError::Fragment,
        PathError::QueryInPath,
        PathError::Semicolon,
    ];

    /// A stable, lowercase code for logs and metrics labels. Every variant
    /// maps to HTTP 400 `invalid_request`.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not_origin_form",
            PathError::TooLong { .. } => "path_too_long",
            PathError::TooManySegments { .. } => "too_many_segments",
            PathError::BadEscape => "bad_escape",
            PathError::EncodedSlash => "encoded_slash",
            PathError::EncodedBackslash => "encoded_backslash",
            PathError::Backslash => "backslash",
            PathError::NulByte => "nul_byte",
            PathError::ControlChar => "control_char",
            PathError::Space => "space",
            PathError::NonAscii => "non_ascii",
            PathError::Fragment => "fragment",
            PathError::QueryInPath => "query_in_path",
            PathError::Semicolon => "semicolon",
        }
    }
}

/// A request path in canonical form: starts with `/`, visible ASCII only,
/// no dot segments, no empty segments (except that a trailing slash is kept),
/// percent-escapes only for bytes that are not unreserved, with uppercase hex.
///
/// Only [`normalize_path`] builds one, so holding a `NormalizedPath` is proof
/// that the checks ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// The canonical path; this is what is forwarded upstream.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The non-empty segments, left to right (`/a/b/` yields `a`, `b`; `/`
    /// yields nothing). Cloning the iterator is cheap, which pattern matching
    /// uses to backtrack without allocating.
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            inner: self.0.split('/'),
        }
    }

    /// Whether the path ends with `/` and is not the root.
    pub fn has_trailing_slash(&self) -> bool {
        self.0.len() > 1 && self.0.ends_with('/')
    }
}

impl AsRef<str> for NormalizedPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterator over the non-empty segments of a [`NormalizedPath`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    inner: std::str::Split<'a, char>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        // A normalized path has empty pieces only before the leading slash
        // and after a trailing one.
        self.inner.by_ref().find(|s| !s.is_empty())
    }
}

/// Splits a raw origin-form request target at the first `?` into path and
/// query. The query (without the `?`) is `None` when there is no `?`, and
/// `Some(b"")` for a trailing bare `?`.
pub fn split_path_query(raw_target: &[u8]) -> (&[u8], Option<&[u8]>) {
    match raw_target.iter().position(|&b| b == b'?') {
        Some(i) => (&raw_target[..i], Some(&raw_target[i + 1..])),
        None => (raw_target, None),
    }
}

/// Normalizes a raw request path (the target with any query split off).
///
/// In order:
/// 1. the path must start with `/` and be at most [`MAX_PATH_LEN`] bytes;
/// 2. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
///    decoded; every other escape is kept with uppercase hex digits;
///    escapes that are malformed or encode `/`, `\`, `;`, NUL or a control
///    character are refused, as are raw backslash, `;`, `#`, `?`, space,
///    control characters, DEL and non-ASCII bytes;
/// 3. dot segments are removed (RFC 3986 section 5.2.4), after decoding, so
///    `%2e%2e` is `..`; `..` at the root stays at the root;
/// 4. empty segments (`//`) are dropped, but a trailing slash is kept.
///
/// Case is preserved: path matching is case-sensitive.
///
/// Empty segments are dropped because upstream frameworks disagree about
/// them (some collapse `//`, some route on an empty segment, some treat a
/// leading `//` as a scheme-relative authority); one canonical form leaves
/// nothing for the gateway and the service to disagree about.
///
/// `;` is refused because servlet containers and some Java frameworks strip
/// `;params` from segments and treat `..;` as `..`, which would let
/// `/public/..;/admin` match a public route and reach `/admin` upstream.
pub fn normalize_path(raw: &[u8]) -> Result<NormalizedPath, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong { max: MAX_PATH_LEN });
    }
    let decoded = decode(raw)?;
    remove_dot_segments(&decoded)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A path the normalizer accepts, for tests; panics naming it otherwise.
#[cfg(any(test, feature = "testing"))]
pub fn path_for_tests(raw: &str) -> NormalizedPath {
    match normalize_path(raw.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("path {raw:?} refused: {e}"),
    }
}

/// The value of one hex digit, either case.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Step 2: checks every byte and canonicalizes escapes. The output is
/// visible ASCII only, so it can be kept as a `String` byte by byte.
fn decode(raw: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let value = match (raw.get(i + 1), raw.get(i + 2)) {
                (Some(&hi), Some(&lo)) => match (hex_value(hi), hex_value(lo)) {
                    (Some(hi), Some(lo)) => (hi << 4) | lo,
                    _ => return Err(PathError::BadEscape),
                },
                _ => return Err(PathError::BadEscape),
            };
            match value {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                b';' => return Err(PathError::Semicolon),
                0 => return Err(PathError::NulByte),
                // Encoded CR/LF and friends would reach upstream logs and
                // any header a service builds from the decoded path.
                0x01..=0x1f | 0x7f => return Err(PathError::ControlChar),
                v if is_unreserved(v) => out.push(char::from(v)),
                v => {
                    out.push('%');
                    out.push(char::from(UPPER_HEX[usize::from(v >> 4)]));
                    out.push(char::from(UPPER_HEX[usize::from(v & 0x0f)]));
                }
            }
            i += 3;
            continue;
        }
        match b {
            0 => return Err(PathError::NulByte),
            0x01..=0x1f | 0x7f => return Err(PathError::ControlChar),
            b' ' => return Err(PathError::Space),
            0x80..=0xff => return Err(PathError::NonAscii),
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            b'?' => return Err(PathError::QueryInPath),
            b';' => return Err(PathError::Semicolon),
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    Ok(out)
}

/// Steps 3 and 4, on the checked and decoded path (which starts with `/`).
/// Works on an output buffer as RFC 3986 5.2.4 does: `..` truncates the
/// buffer back to its last `/`.
fn remove_dot_segments(decoded: &str) -> Result<NormalizedPath, PathError> {
    let mut out = String::with_capacity(decoded.len());
    let mut segments = 0usize;
    let mut trailing_slash = false;
    // The leading '/' is guaranteed by the caller; `split` on the rest yields
    // one piece per segment, the last one empty when the path ends in '/'.
    let rest = decoded.get(1..).unwrap_or("");
    let mut pieces = rest.split('/').peekable();
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        match piece {
            "" | "." => {
                if last {
                    trailing_slash = true;
                }
            }
            ".." => {
                if let Some(cut) = out.rfind('/') {
                    out.truncate(cut);
                    segments = segments.saturating_sub(1);
                }
                if last {
                    trailing_slash = true;
                }
            }
            segment => {
                out.push('/');
                out.push_str(segment);
                segments += 1;
                trailing_slash = false;
            }
        }
    }
    if segments > MAX_SEGMENTS {
        return Err(PathError::TooManySegments { max: MAX_SEGMENTS });
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(NormalizedPath(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize_path(raw.as_bytes()).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn accepted_paths_normalize_to_their_canonical_form() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/a/./b//c/", "/a/b/c/"),
            ("/../x", "/x"),
            ("/../../../x", "/x"),
            ("/..", "/"),
            ("/.", "/"),
            ("//", "/"),
            ("///a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/../", "/a/"),
            ("/a/b/", "/a/b/"),
            ("/a//", "/a/"),
            ("/a/b/../../..", "/"),
            ("/%41", "/A"),
            ("/%7e", "/~"),
            ("/%7E%2d%2E%5f", "/~-._"),
            ("/%20", "/%20"),
            ("/%3a", "/%3A"),
            ("/%c3%a9", "/%C3%A9"),
            ("/%25", "/%25"),
            ("/%252e%252e", "/%252e%252e"),
            ("/...", "/..."),
            ("/a..b/.c", "/a..b/.c"),
            ("/Admin", "/Admin"),
            ("/a*b/!$&'()+,=:@", "/a*b/!$&'()+,=:@"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(*want), "input {raw:?}");
        }
    }

    #[test]
    fn refused_paths_name_the_reason() {
        let cases: &[(&[u8], PathError)] = &[
            (b"", PathError::NotOriginForm),
            (b"admin", PathError::NotOriginForm),
            (b"*", PathError::NotOriginForm),
            (b"http://h/admin", PathError::NotOriginForm),
            (b"%2fadmin", PathError::NotOriginForm),
            (b"/public%2F..%2Fadmin", PathError::EncodedSlash),
            (b"/a%2fb", PathError::EncodedSlash),
            (b"/a%5Cb", PathError::EncodedBackslash),
            (b"/a%5cb", PathError::EncodedBackslash),
            (b"/a\\b", PathError::Backslash),
            (b"/public\\..\\admin", PathError::Backslash),
            (b"/a%00", PathError::NulByte),
            (b"/a\0", PathError::NulByte),
            (b"/a%0d%0aX: y", PathError::ControlChar),
            (b"/a%7f", PathError::ControlChar),
            (b"/a\tb", PathError::ControlChar),
            (b"/a\x7f", PathError::ControlChar),
            (b"/a b", PathError::Space),
            (b"/caf\xc3\xa9", PathError::NonAscii),
            (b"/a#frag", PathError::Fragment),
            (b"/a?q", PathError::QueryInPath),
            (b"/public/..;/admin", PathError::Semicolon),
            (b"/admin;jsessionid=1", PathError::Semicolon),
            (b"/admin%3bx", PathError::Semicolon),
            (b"/%zz", PathError::BadEscape),
            (b"/%", PathError::BadEscape),
            (b"/%G1", PathError::BadEscape),
            (b"/%4", PathError::BadEscape),
            (b"/a%4/", PathError::BadEscape),
        ];
        for (raw, want) in cases {
            assert_eq!(
                normalize_path(raw),
                Err(*want),
                "input {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn dot_dot_cannot_escape_a_public_prefix() {
        for raw in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/./../admin",
        ] {
            assert_eq!(norm(raw).as_deref(), Ok("/admin"), "input {raw:?}");
        }
    }

    #[test]
    fn encoded_slash_is_refused() {
        assert_eq!(
            normalize_path(b"/public%2F..%2Fadmin"),
            Err(PathError::EncodedSlash)
        );
        assert_eq!(normalize_path(b"/a%2fb"), Err(PathError::EncodedSlash));
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept_uppercase() {
        assert_eq!(norm("/%41").as_deref(), Ok("/A"));
        assert_eq!(norm("/%7e").as_deref(), Ok("/~"));
        assert_eq!(norm("/%20").as_deref(), Ok("/%20"));
        assert_eq!(norm("/%3f%23").as_deref(), Ok("/%3F%23"));
    }

    #[test]
    fn malformed_escape_is_refused() {
        assert_eq!(normalize_path(b"/%zz"), Err(PathError::BadEscape));
    }

    #[test]
    fn raw_space_is_refused() {
        assert_eq!(normalize_path(b"/a b"), Err(PathError::Space));
    }

    #[test]
    fn case_is_preserved() {
        assert_eq!(norm("/Admin/%62").as_deref(), Ok("/Admin/b"));
    }

    #[test]
    fn path_at_the_length_limit_is_accepted_and_one_byte_more_is_refused() {
        let mut at_limit = vec![b'a'; MAX_PATH_LEN];
        at_limit[0] = b'/';
        assert!(normalize_path(&at_limit).is_ok());
        at_limit.push(b'a');
        assert_eq!(
            normalize_path(&at_limit),
            Err(PathError::TooLong { max: MAX_PATH_LEN })
        );
    }

    #[test]
    fn too_many_segments_are_refused_but_dot_dot_frees_them() {
        let at_limit = "/a".repeat(MAX_SEGMENTS);
        assert!(normalize_path(at_limit.as_bytes()).is_ok());
        let over = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(
            normalize_path(over.as_bytes()),
            Err(PathError::TooManySegments { max: MAX_SEGMENTS })
        );
        let backed_out = format!("{over}/..");
        assert!(normalize_path(backed_out.as_bytes()).is_ok());
    }

    #[test]
    fn error_codes_are_stable_lowercase_words() {
        assert_eq!(PathError::EncodedSlash.code(), "encoded_slash");
        assert_eq!(PathError::BadEscape.code(), "bad_escape");
        assert_eq!(PathError::ControlChar.code(), "control_char");
        let all = PathError::ALL;
        for e in all {
            assert!(e
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            let msg = e.to_string();
            assert_eq!(msg, msg.to_lowercase(), "message {msg:?}");
        }
    }

    #[test]
    fn error_messages_never_echo_the_path() {
        let secret = b"/SECRET%zz";
        let err = normalize_path(secret).err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| !m.contains("SECRET")));
    }

    #[test]
    fn target_is_split_at_the_first_question_mark() {
        /// (target, path, query)
        type Case = (&'static [u8], &'static [u8], Option<&'static [u8]>);
        let cases: &[Case] = &[
            (b"/a/b", b"/a/b", None),
            (b"/a?x=1", b"/a", Some(b"x=1")),
            (b"/a?x=1?y", b"/a", Some(b"x=1?y")),
            (b"/a?", b"/a", Some(b"")),
            (b"?x", b"", Some(b"x")),
        ];
        for (raw, path, query) in cases {
            assert_eq!(split_path_query(raw), (*path, *query));
        }
    }

    #[test]
    fn segments_skip_the_leading_and_trailing_slash() {
        let p = normalize_path(b"/a/b/");
        let segs = p.as_ref().map(|p| p.segments().collect::<Vec<_>>());
        assert_eq!(segs, Ok(vec!["a", "b"]));
        let root = normalize_path(b"/").map(|p| p.segments().count());
        assert_eq!(root, Ok(0));
    }

    /// Pieces that normalization accepts, chosen for the rules they touch.
    const ACCEPTED_PIECES: &[&str] = &[
        "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", "a", "B", "z9", "~", "-", "%41", "%7e",
        "%20", "%3a", "%3A", "%25", "%c3%a9", "*", ":", "@", "!",
    ];

    /// Pieces that make normalization refuse the path wherever they appear
    /// (a lone `%` is left out: followed by `aB` it is a valid escape).
    const REFUSED_PIECES: &[&str] = &[
        "%2f", "%5c", "%zz", "%00", "%0a", ";", "?", "#", " ", "\\", "\u{e9}",
    ];

    fn accepted_path() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(ACCEPTED_PIECES);
        prop::collection::vec(piece, 0..24).prop_map(|ps| format!("/{}", ps.concat()))
    }

    /// Mostly accepted pieces with the occasional refused one.
    fn mixed_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            9 => prop::sample::select(ACCEPTED_PIECES),
            1 => prop::sample::select(REFUSED_PIECES),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|ps| format!("/{}", ps.concat()))
    }

    fn assert_canonical(p: &NormalizedPath) {
        let s = p.as_str();
        assert!(s.starts_with('/'));
        for bad in ["/./", "/../", "//", "%2F", "%2f", "%5C", "%5c", "\\", ";"] {
            assert!(!s.contains(bad), "{s:?} contains {bad:?}");
        }
        assert!(!s.ends_with("/.") && !s.ends_with("/.."), "{s:?}");
        assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{s:?}");
        assert_eq!(
            normalize_path(s.as_bytes()).as_ref(),
            Ok(p),
            "not idempotent"
        );
    }

    proptest! {
        #[test]
        fn normalizing_twice_equals_normalizing_once(raw in accepted_path()) {
            let p = normalize_path(raw.as_bytes());
            prop_assert!(p.is_ok(), "{:?} refused: {:?}", raw, p);
            if let Ok(p) = p {
                assert_canonical(&p);
            }
        }

        #[test]
        fn paths_with_refused_pieces_are_refused_and_others_are_canonical(raw in mixed_path()) {
            let has_refused = REFUSED_PIECES.iter().any(|bad| raw.contains(bad));
            match normalize_path(raw.as_bytes()) {
                Ok(p) => {
                    prop_assert!(!has_refused, "{:?} accepted as {:?}", raw, p);
                    assert_canonical(&p);
                }
                Err(_) => prop_assert!(has_refused, "{:?} refused", raw),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_any_result_is_canonical(
            raw in prop::collection::vec(any::<u8>(), 0..64)
        ) {
            let mut raw = raw;
            raw.insert(0, b'/');
            if let Ok(p) = normalize_path(&raw) {
                assert_canonical(&p);
            }
        }
    }
}
