//! Who may change the gateway through the admin listener. With
//! `gateway.admin.operator_token_file`, every request that changes state
//! (any method but GET and HEAD: `POST /reload`, the revocation calls) and
//! every revocation call need `Authorization: Bearer <operator token>`:
//! none, or one that is not a bearer token, is 401; a token that is not
//! configured is 403. Without the setting they need nothing, as before
//! (the gateway warns at start). A pure decision over the request's method,
//! path and header.

use crate::config::resolve::OperatorTokens;
use crate::revocation::Operator;

/// The name an operator goes by when no token names one.
pub const DEFAULT_OPERATOR: &str = "operator";

/// Why an admin request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no operator token, or not as one bearer token.
    Missing,
    /// 403: a token that is not an operator's.
    Wrong,
}

impl Denied {
    pub fn status(self) -> u16 {
        match self {
            Denied::Missing => 401,
            Denied::Wrong => 403,
        }
    }

    /// The problem body's `error`.
    pub fn code(self) -> &'static str {
        match self {
            Denied::Missing => "operator_token_required",
            Denied::Wrong => "operator_token_refused",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Denied::Missing => {
                "this admin call needs an operator token: Authorization: Bearer <token>"
            }
            Denied::Wrong => "the operator token is not valid",
        }
    }
}

/// Whether a request needs an operator: anything but a read, and every
/// revocation call (the list is not for any reader of the admin port).
pub fn needs_operator(method: &http::Method, path: &str) -> bool {
    !matches!(*method, http::Method::GET | http::Method::HEAD)
        || path == "/revocations"
        || path.starts_with("/revocations/")
}

/// The operator behind a request that needs one. `authorization` holds the
/// request's `Authorization` header values.
pub fn authorize(
    tokens: Option<&OperatorTokens>,
    authorization: &[&[u8]],
) -> Result<Operator, Denied> {
    let Some(tokens) = tokens else {
        return Ok(Operator {
            name: DEFAULT_OPERATOR.into(),
            authenticated: false,
        });
    };
    let [header] = authorization else {
        return Err(Denied::Missing);
    };
    let Some(token) = bearer(header) else {
        return Err(Denied::Missing);
    };
    match tokens.operator(token) {
        Some(name) => Ok(Operator {
            name: name.to_owned(),
            authenticated: true,
        }),
        None => Err(Denied::Wrong),
    }
}

/// The token of `Bearer <token>` (scheme in any case).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn tokens() -> OperatorTokens {
        OperatorTokens::parse(&format!("alice {TOKEN}\n")).unwrap()
    }

    #[test]
    fn reads_need_no_operator_but_changes_and_the_revocation_list_do() {
        use http::Method;
        for (method, path, needs) in [
            (Method::GET, "/metrics", false),
            (Method::HEAD, "/readyz", false),
            (Method::GET, "/config", false),
            (Method::POST, "/reload", true),
            (Method::POST, "/metrics", true),
            (Method::GET, "/revocations", true),
            (Method::POST, "/revocations", true),
            (Method::DELETE, "/revocations/jti/abc", true),
            (Method::GET, "/revocationsx", false),
        ] {
            assert_eq!(needs_operator(&method, path), needs, "{method} {path}");
        }
    }

    #[test]
    fn an_operator_token_is_401_when_missing_and_403_when_wrong() {
        let tokens = tokens();
        let good = format!("Bearer {TOKEN}");
        let lower = format!("bearer {TOKEN}");
        assert_eq!(
            authorize(Some(&tokens), &[good.as_bytes()]),
            Ok(Operator {
                name: "alice".into(),
                authenticated: true
            })
        );
        assert!(authorize(Some(&tokens), &[lower.as_bytes()]).is_ok());
        for (headers, want) in [
            (vec![], Denied::Missing),
            (vec![&b"Basic abc"[..]], Denied::Missing),
            (vec![&b"Bearer "[..]], Denied::Missing),
            (vec![good.as_bytes(), good.as_bytes()], Denied::Missing),
            (vec![&b"Bearer wrong-token"[..]], Denied::Wrong),
        ] {
            assert_eq!(authorize(Some(&tokens), &headers), Err(want), "{headers:?}");
        }
    }

    #[test]
    fn without_operator_tokens_every_caller_is_the_unauthenticated_operator() {
        assert_eq!(
            authorize(None, &[]),
            Ok(Operator {
                name: DEFAULT_OPERATOR.into(),
                authenticated: false
            })
        );
    }
}
