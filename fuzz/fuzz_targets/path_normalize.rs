//! Request-target splitting and path normalization
//! (`routing::split_path_query`, `routing::normalize_path`).
//!
//! Input: a raw request target (any bytes).
//!
//! Besides "never panics": the split gives the target back; a normalized
//! path is visible ASCII starting with `/`, with no empty, `.` or `..`
//! segment, at most `MAX_SEGMENTS` segments, only uppercase escapes of
//! reserved bytes, and it normalizes to itself (the gateway forwards it,
//! so a second normalization upstream must not read another path).

#![no_main]

use libfuzzer_sys::fuzz_target;
use stella_routing::normalize::MAX_SEGMENTS;
use stella_routing::{normalize_path, split_path_query};

fuzz_target!(|data: &[u8]| {
    let (path, query) = split_path_query(data);
    assert!(!path.contains(&b'?'));
    match query {
        Some(q) => assert_eq!([path, b"?", q].concat(), data),
        None => assert_eq!(path, data),
    }

    let normalized = match normalize_path(path) {
        Ok(n) => n,
        Err(e) => {
            let _ = (e.code(), e.to_string());
            return;
        }
    };
    let text = normalized.as_str();
    assert!(text.starts_with('/'));
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    for forbidden in ['\\', ';', '#', '?'] {
        assert!(!text.contains(forbidden), "{text:?}");
    }
    let segments: Vec<&str> = normalized.segments().collect();
    assert!(segments.len() <= MAX_SEGMENTS);
    for segment in &segments {
        assert!(
            !segment.is_empty() && *segment != "." && *segment != "..",
            "{text:?}"
        );
    }
    let body = text.trim_end_matches('/');
    assert_eq!(
        body.split('/').skip(1).collect::<Vec<_>>(),
        segments,
        "{text:?}"
    );
    assert_eq!(
        normalized.has_trailing_slash(),
        text.len() > 1 && text.ends_with('/')
    );
    // Escapes left in place are uppercase and of bytes that are not
    // unreserved (those are decoded).
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('%') {
        let hex = &bytes[i + 1..i + 3];
        assert!(hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)));
        let value = u8::from_str_radix(std::str::from_utf8(hex).expect("ascii"), 16).expect("hex");
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "{text:?}"
        );
    }

    let again = normalize_path(text.as_bytes()).expect("a normalized path normalizes");
    assert_eq!(again.as_str(), text, "normalization is not idempotent");
});
