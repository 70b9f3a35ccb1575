//! Which credential a request presents: reads every `Authorization` and `DPoP`
//! field line and applies the rules of docs/design.md §3.3 that do not need the
//! token's contents (several credentials at once, scheme and header
//! combinations).

/// The credential found on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    /// `Authorization: Bearer <token>` and no `DPoP` header.
    Bearer(Token<'a>),
    /// `Authorization: Bearer <token>` with a `DPoP` header.
    /// docs/design.md §3.3 answers it by the token: a DPoP-bound token is 401
    /// `invalid_token` ("presented as Bearer, with or without a proof"), any
    /// other is 400.
    BearerWithDpopHeader(Token<'a>),
    /// `Authorization: DPoP <token>` with exactly one `DPoP` field line.
    Dpop {
        token: &'a str,
        proof: &'a str,
    },
}

/// A Bearer token as presented: the bytes after the scheme, not yet known
/// to be a token68. [`Token::text`] checks it (400 `malformed_authorization`
/// when it is not). The pipeline asks only when the token cache does not
/// know the token: a cached token is byte for byte (by its BLAKE3) one that
/// passed the check, so a kilobyte is not scanned twice on every request.
/// A DPoP token is checked at once ([`Presented::Dpop`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token<'a>(&'a [u8]);

impl<'a> Token<'a> {
    /// The bytes, as hashed for the token cache.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token as text, if it is a token68.
    pub fn text(&self) -> Result<&'a str, PresentedError> {
        token68(self.0)
    }
}

impl std::fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A credential: its length only.
        write!(f, "Token({} bytes)", self.0.len())
    }
}

impl<'a> From<&'a str> for Token<'a> {
    fn from(s: &'a str) -> Token<'a> {
        Token(s.as_bytes())
    }
}

/// Why the header combination is refused before looking at the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresentedError {
    /// Several `Authorization` lines: 400 `invalid_request`.
    SeveralCredentials,
    /// Not `<scheme> <token68>`, or a scheme the gateway does not take:
    /// 400 `invalid_request`.
    Malformed,
    /// The DPoP scheme without exactly one well-formed `DPoP` field line:
    /// 401 `invalid_dpop_proof`.
    DpopProofMissing,
    /// A `DPoP` header with no `Authorization`: 401 `invalid_dpop_proof`.
    DpopWithoutToken,
}

impl PresentedError {
    pub fn code(self) -> &'static str {
        match self {
            PresentedError::SeveralCredentials => "several_credentials",
            PresentedError::Malformed => "malformed_authorization",
            PresentedError::DpopProofMissing => "dpop_proof_missing",
            PresentedError::DpopWithoutToken => "dpop_without_token",
        }
    }
}

/// RFC 7235 token68: the only form an access token can take here.
fn is_token68(s: &[u8]) -> bool {
    let end = s.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body = &s[..end];
    // A token is a kilobyte: checked a block of 32 bytes at a time, each
    // block without an early exit, so that the compiler compares a whole
    // block in a few vector instructions.
    let (blocks, tail) = body.as_chunks::<32>();
    !body.is_empty()
        && blocks
            .iter()
            .all(|block| block.iter().fold(true, |ok, &b| ok & is_token68_char(b)))
        && tail.iter().all(|&b| is_token68_char(b))
}

/// `s` as text if it is a token68 (which is ASCII).
fn token68(s: &[u8]) -> Result<&str, PresentedError> {
    if !is_token68(s) {
        return Err(PresentedError::Malformed);
    }
    std::str::from_utf8(s).map_err(|_| PresentedError::Malformed)
}

/// The token68 characters other than `=`: letters, digits, `-._~+/`.
#[inline(always)]
fn is_token68_char(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// Reads the credential from all `Authorization` and `DPoP` field lines
/// (two of each suffice: a second line is refused whatever it holds).
/// A Bearer token is handed on unchecked ([`Token`]); everything else,
/// the DPoP token included, is checked here.
pub fn presented<'a>(
    authorization: &[&'a [u8]],
    dpop: &[&'a [u8]],
) -> Result<Presented<'a>, PresentedError> {
    let Some(first) = authorization.first() else {
        return if dpop.is_empty() {
            Ok(Presented::None)
        } else {
            Err(PresentedError::DpopWithoutToken)
        };
    };
    if authorization.len() > 1 {
        return Err(PresentedError::SeveralCredentials);
    }
    let space = first
        .iter()
        .position(|&b| b == b' ')
        .ok_or(PresentedError::Malformed)?;
    let (scheme, rest) = first.split_at(space);
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if scheme.eq_ignore_ascii_case(b"bearer") {
        let token = Token(token);
        if token.is_empty() {
            return Err(PresentedError::Malformed);
        }
        if !dpop.is_empty() {
            return Ok(Presented::BearerWithDpopHeader(token));
        }
        return Ok(Presented::Bearer(token));
    }
    let token = token68(token)?;
    if scheme.eq_ignore_ascii_case(b"dpop") {
        // Exactly one field line, and one value in it: a comma would mean
        // two proofs folded into one line.
        return match dpop {
            [proof] => {
                let proof =
                    std::str::from_utf8(proof).map_err(|_| PresentedError::DpopProofMissing)?;
                if proof.is_empty() || proof.contains(',') || proof.contains(' ') {
                    return Err(PresentedError::DpopProofMissing);
                }
                Ok(Presented::Dpop { token, proof })
            }
            _ => Err(PresentedError::DpopProofMissing),
        };
    }
    Err(PresentedError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(auth: &[&'a str], dpop: &[&'a str]) -> Result<Presented<'a>, PresentedError> {
        let a: Vec<&[u8]> = auth.iter().map(|s| s.as_bytes()).collect();
        let d: Vec<&[u8]> = dpop.iter().map(|s| s.as_bytes()).collect();
        presented(&a, &d)
    }

    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        Result<Presented<'a>, PresentedError>,
    );

    #[test]
    fn credential_rules_case_table() {
        use PresentedError::*;
        let cases: &[Case] = &[
            (&[], &[], Ok(Presented::None)),
            (
                &["Bearer abc.def.ghi"],
                &[],
                Ok(Presented::Bearer("abc.def.ghi".into())),
            ),
            (&["bearer abc"], &[], Ok(Presented::Bearer("abc".into()))),
            (
                &["BEARER abc=="],
                &[],
                Ok(Presented::Bearer("abc==".into())),
            ),
            (&["Bearer a", "Bearer b"], &[], Err(SeveralCredentials)),
            (
                &["Bearer abc"],
                &["proof"],
                Ok(Presented::BearerWithDpopHeader("abc".into())),
            ),
            (
                &["DPoP abc"],
                &["p.r.f"],
                Ok(Presented::Dpop {
                    token: "abc",
                    proof: "p.r.f",
                }),
            ),
            (&["dpop abc"], &[], Err(DpopProofMissing)),
            (&["DPoP abc"], &["a", "b"], Err(DpopProofMissing)),
            (&["DPoP abc"], &["a,b"], Err(DpopProofMissing)),
            (&[], &["proof"], Err(DpopWithoutToken)),
            (&["Basic dXNlcjpwYXNz"], &[], Err(Malformed)),
            (&["Bearer"], &[], Err(Malformed)),
            (&["Bearer "], &[], Err(Malformed)),
            (&["DPoP a b"], &["p"], Err(Malformed)),
            (&["DPoP a\"b"], &[], Err(Malformed)),
        ];
        for (auth, dpop, want) in cases {
            assert_eq!(&p(auth, dpop), want, "{auth:?} {dpop:?}");
        }
    }

    /// A Bearer token is handed on as presented; what is not a token68 is
    /// refused when its text is asked for (the pipeline asks unless the
    /// token cache knows it).
    #[test]
    fn a_bearer_token_is_checked_when_its_text_is_needed() {
        let bearer = |auth: &'static str| match p(&[auth], &[]) {
            Ok(Presented::Bearer(token)) => token,
            other => panic!("{auth}: {other:?}"),
        };
        assert_eq!(bearer("Bearer abc.def").text(), Ok("abc.def"));
        assert_eq!(bearer("Bearer   abc==").text(), Ok("abc=="));
        for bad in [
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ==",
            "Bearer a=b",
            "Bearer \u{e9}t\u{e9}",
        ] {
            assert_eq!(bearer(bad).text(), Err(PresentedError::Malformed), "{bad}");
        }
        let with_proof = p(&["Bearer a b"], &["proof"]);
        let Ok(Presented::BearerWithDpopHeader(token)) = with_proof else {
            panic!("{with_proof:?}");
        };
        assert_eq!(token.text(), Err(PresentedError::Malformed));
        // Not UTF-8: refused the same way, never a panic.
        let raw: &[u8] = b"Bearer \xff\xfe";
        let Ok(Presented::Bearer(token)) = presented(&[raw], &[]) else {
            panic!("bytes");
        };
        assert_eq!(token.as_bytes(), b"\xff\xfe");
        assert_eq!(token.text(), Err(PresentedError::Malformed));
        assert_eq!(format!("{token:?}"), "Token(2 bytes)");
    }

    #[test]
    fn the_token68_characters_are_rfc_7235_token68_without_padding() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_char(b), expected, "byte {b}");
        }
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b""));
        // A bad byte in any block, also past the first and in a short tail.
        let long = "a".repeat(100);
        assert!(is_token68(long.as_bytes()));
        for at in [0, 31, 32, 63, 99] {
            let mut bad = long.clone().into_bytes();
            bad[at] = b' ';
            assert!(!is_token68(&bad), "at {at}");
        }
    }
}
