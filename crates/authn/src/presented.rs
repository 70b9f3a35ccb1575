//! Which credential a request presents: reads every `Authorization` and `DPoP`
//! field line and applies the rules of docs/design.md §3.3 that do not need the
//! token's contents (several credentials at once, scheme and header
//! combinations).

/// The credential found on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    /// `Authorization: Bearer <token>` and no `DPoP` header.
    Bearer(&'a str),
    /// `Authorization: Bearer <token>` with a `DPoP` header.
    /// docs/design.md §3.3 answers it by the token: a DPoP-bound token is 401
    /// `invalid_token` ("presented as Bearer, with or without a proof"), any
    /// other is 400.
    BearerWithDpopHeader(&'a str),
    /// `Authorization: DPoP <token>` with exactly one `DPoP` field line.
    Dpop {
        token: &'a str,
        proof: &'a str,
    },
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
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    // A token is a kilobyte on every request: checked a block of 32 bytes
    // at a time, each block without an early exit, so that the compiler
    // compares a whole block in a few vector instructions.
    !body.is_empty()
        && body
            .as_bytes()
            .chunks(32)
            .all(|block| block.iter().fold(true, |ok, &b| ok & is_token68_char(b)))
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

/// Reads the credential from all `Authorization` and `DPoP` field lines.
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
    let value = std::str::from_utf8(first).map_err(|_| PresentedError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(PresentedError::Malformed)?;
    let token = token.trim_start_matches(' ');
    if !is_token68(token) {
        return Err(PresentedError::Malformed);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if !dpop.is_empty() {
            return Ok(Presented::BearerWithDpopHeader(token));
        }
        return Ok(Presented::Bearer(token));
    }
    if scheme.eq_ignore_ascii_case("dpop") {
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
                Ok(Presented::Bearer("abc.def.ghi")),
            ),
            (&["bearer abc"], &[], Ok(Presented::Bearer("abc"))),
            (&["BEARER abc=="], &[], Ok(Presented::Bearer("abc=="))),
            (&["Bearer a", "Bearer b"], &[], Err(SeveralCredentials)),
            (
                &["Bearer abc"],
                &["proof"],
                Ok(Presented::BearerWithDpopHeader("abc")),
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
            (&["Bearer a b"], &[], Err(Malformed)),
            (&["Bearer a\"b"], &[], Err(Malformed)),
        ];
        for (auth, dpop, want) in cases {
            assert_eq!(&p(auth, dpop), want, "{auth:?} {dpop:?}");
        }
    }

    #[test]
    fn the_token68_characters_are_rfc_7235_token68_without_padding() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_char(b), expected, "byte {b}");
        }
        assert!(is_token68("abc=="));
        assert!(!is_token68("=="));
        assert!(!is_token68("a=b"));
        // A bad byte in any block, also past the first and in a short tail.
        let long = "a".repeat(100);
        assert!(is_token68(&long));
        for at in [0, 31, 32, 63, 99] {
            let mut bad = long.clone().into_bytes();
            bad[at] = b' ';
            assert!(!is_token68(std::str::from_utf8(&bad).unwrap()), "at {at}");
        }
    }
}
