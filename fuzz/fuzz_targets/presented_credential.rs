//! Presented-credential header parsing (`authn::presented::presented`).
//!
//! Input: LF-separated field lines. A line starting with `A` is an
//! `Authorization` field value (the rest of the line), one starting with `D`
//! a `DPoP` field value; other lines are ignored. Values may hold any byte.
//!
//! Besides "never panics": a token handed on is taken from the single
//! `Authorization` line after its scheme (a DPoP token checked to be a
//! token68 at once, a Bearer token when its text is asked for, which gives
//! it exactly when it is one), a proof is the single `DPoP` line unchanged
//! and holds no space or comma, and a request without credentials reads as
//! none.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stella_authn::presented::{presented, Presented, PresentedError, Token};

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fuzz_target!(|data: &[u8]| {
    let mut authorization: Vec<&[u8]> = Vec::new();
    let mut dpop: Vec<&[u8]> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        match line.split_first() {
            Some((b'A', value)) => authorization.push(value),
            Some((b'D', value)) => dpop.push(value),
            _ => {}
        }
    }
    let result = presented(&authorization, &dpop);
    let token_of = |token: &str| {
        assert!(is_token68(token), "token {token:?} is not a token68");
        assert_eq!(authorization.len(), 1);
        let line = std::str::from_utf8(authorization[0]).expect("utf-8 authorization");
        assert!(line.ends_with(token), "token is not the end of the line");
        let scheme = line.split(' ').next().expect("a scheme");
        scheme.to_ascii_lowercase()
    };
    let bearer = |token: Token| {
        assert_eq!(authorization.len(), 1);
        let line = authorization[0];
        assert!(line.ends_with(token.as_bytes()), "token is not the end of the line");
        assert!(!token.is_empty() && !token.as_bytes().starts_with(b" "));
        let scheme = &line[..line.len() - token.len()];
        assert!(scheme.trim_ascii_end().eq_ignore_ascii_case(b"bearer"), "{scheme:?}");
        match (token.text(), std::str::from_utf8(token.as_bytes())) {
            (Ok(text), Ok(raw)) => {
                assert_eq!(text, raw);
                assert!(is_token68(text));
            }
            (Err(e), raw) => {
                assert_eq!(e, PresentedError::Malformed);
                assert!(raw.map_or(true, |t| !is_token68(t)));
            }
            (Ok(_), Err(_)) => panic!("text of bytes that are not UTF-8"),
        }
    };
    match result {
        Ok(Presented::None) => assert!(authorization.is_empty() && dpop.is_empty()),
        Ok(Presented::Bearer(token)) => {
            bearer(token);
            assert!(dpop.is_empty());
        }
        Ok(Presented::BearerWithDpopHeader(token)) => {
            bearer(token);
            assert!(!dpop.is_empty());
        }
        Ok(Presented::Dpop { token, proof }) => {
            assert_eq!(token_of(token), "dpop");
            assert_eq!(dpop.len(), 1);
            assert_eq!(proof.as_bytes(), dpop[0]);
            assert!(!proof.is_empty() && !proof.contains(',') && !proof.contains(' '));
        }
        Err(e) => {
            let _ = (
                e.code(),
                stella_gateway::response::Refusal::from(e).status(),
            );
            match e {
                PresentedError::SeveralCredentials => assert!(authorization.len() > 1),
                PresentedError::DpopWithoutToken => {
                    assert!(authorization.is_empty() && !dpop.is_empty())
                }
                PresentedError::Malformed | PresentedError::DpopProofMissing => {
                    assert_eq!(authorization.len(), 1)
                }
            }
        }
    }
});
