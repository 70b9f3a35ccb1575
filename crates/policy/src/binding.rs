//! Identity binding: the confused-deputy guard. A route can name a path
//! parameter and say which part of the caller's identity it must equal:
//!
//! ```yaml
//! - id: executor-heartbeat
//!   path: /executors/{eid}/heartbeat
//!   identity_binding: {eid: spiffe_path_last}
//!   policy: {spiffe_ids: [...]}   # or any policy that needs a caller
//! ```
//!
//! so `spiffe://prod.example/executors/e1` may call
//! `/executors/e1/heartbeat` and no other executor's. Pure: the compiled
//! binding, the caller's identity values and the normalized path in, a
//! verdict out.
//!
//! Comparison rules:
//! - the segment is read from the [`NormalizedPath`] the route matched, and
//!   percent-decoded (normalization already decoded unreserved characters
//!   and refused encoded `/`, `\`, `;` and control characters), so
//!   `e%32` is `e2` and `user%3A1` is `user:1`;
//! - it is compared to the identity value byte for byte: no case folding,
//!   no trimming;
//! - a caller without that identity value (no `sub`, no client certificate,
//!   an empty value) never matches.
//!
//! A bound parameter must come before any `**` in the pattern, so the
//! segment it names never depends on how `**` was expanded.

use std::fmt;

use stella_core::identity::Caller;
use stella_routing::normalize::hex_value;
use stella_routing::NormalizedPath;

/// Where the value a parameter must equal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentitySource {
    /// The access token's `sub`.
    Sub,
    /// The access token's `client_id`.
    ClientId,
    /// The access token's `tenant`.
    Tenant,
    /// The last path segment of the caller's SPIFFE ID
    /// (`spiffe://td/executors/e1` gives `e1`).
    SpiffePathLast,
}

impl IdentitySource {
    /// There is no source for the whole SPIFFE ID: it holds `/`, which a
    /// path segment never does (an encoded slash is refused), so such a
    /// binding could never hold.
    pub const ALL: [IdentitySource; 4] = [
        IdentitySource::Sub,
        IdentitySource::ClientId,
        IdentitySource::Tenant,
        IdentitySource::SpiffePathLast,
    ];

    pub fn parse(text: &str) -> Option<IdentitySource> {
        IdentitySource::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::Sub => "sub",
            IdentitySource::ClientId => "client_id",
            IdentitySource::Tenant => "tenant",
            IdentitySource::SpiffePathLast => "spiffe_path_last",
        }
    }

    /// `sub, client_id, ...` for messages.
    pub fn list() -> String {
        IdentitySource::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the value comes from an access token (a SPIFFE caller with a
    /// certificate alone never has it).
    pub fn from_token(self) -> bool {
        matches!(
            self,
            IdentitySource::Sub | IdentitySource::ClientId | IdentitySource::Tenant
        )
    }

    fn value<'a>(self, who: &CallerIdentity<'a>) -> Option<&'a str> {
        let v = match self {
            IdentitySource::Sub => who.sub,
            IdentitySource::ClientId => who.client_id,
            IdentitySource::Tenant => who.tenant,
            IdentitySource::SpiffePathLast => who.spiffe_id.and_then(spiffe_path_last),
        };
        v.filter(|v| !v.is_empty())
    }
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last segment of a SPIFFE ID's path; `None` for an ID without a path
/// or ending in `/`.
fn spiffe_path_last(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let (_domain, path) = rest.split_once('/')?;
    path.rsplit('/').next().filter(|s| !s.is_empty())
}

/// One bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundParam {
    pub name: Box<str>,
    /// 0-based index of the path segment the parameter matched.
    pub segment: usize,
    pub source: IdentitySource,
}

/// A route's compiled `identity_binding`: every parameter must equal its
/// identity value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityBinding {
    params: Box<[BoundParam]>,
}

/// The identity values of a caller a binding can compare with. Built from a
/// [`Caller`]; the proxy adds the SPIFFE ID of a certificate-bound token's
/// client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerIdentity<'a> {
    pub sub: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub spiffe_id: Option<&'a str>,
}

impl<'a> CallerIdentity<'a> {
    pub fn of(caller: &'a Caller) -> CallerIdentity<'a> {
        match caller {
            Caller::Anonymous => CallerIdentity::default(),
            Caller::Spiffe { spiffe_id } => CallerIdentity {
                spiffe_id: Some(spiffe_id),
                ..CallerIdentity::default()
            },
            Caller::Token { claims, .. } => CallerIdentity {
                sub: claims.subject(),
                client_id: claims.client_id(),
                tenant: claims.tenant(),
                spiffe_id: None,
            },
        }
    }

    /// Adds the SPIFFE ID of the client certificate a token is bound to.
    pub fn with_certificate_spiffe_id(mut self, id: Option<&'a str>) -> CallerIdentity<'a> {
        if self.spiffe_id.is_none() {
            self.spiffe_id = id;
        }
        self
    }
}

/// The result of checking one parameter, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamCheck<'a> {
    pub param: &'a BoundParam,
    /// The segment as it appears in the normalized path.
    pub segment: Option<&'a str>,
    /// The caller's value, `None` when it has none.
    pub value: Option<&'a str>,
    pub matched: bool,
}

impl IdentityBinding {
    pub fn new(params: Vec<BoundParam>) -> IdentityBinding {
        IdentityBinding {
            params: params.into_boxed_slice(),
        }
    }

    pub fn params(&self) -> &[BoundParam] {
        &self.params
    }

    /// Whether every bound parameter equals its identity value. Allocation
    /// free.
    pub fn holds(&self, path: &NormalizedPath, who: &CallerIdentity<'_>) -> bool {
        self.params.iter().all(|p| check_param(p, path, who).2)
    }

    /// Each parameter with the segment, the value and the verdict.
    pub fn explain<'a>(
        &'a self,
        path: &'a NormalizedPath,
        who: &CallerIdentity<'a>,
    ) -> Vec<ParamCheck<'a>> {
        self.params
            .iter()
            .map(|param| {
                let (segment, value, matched) = check_param(param, path, who);
                ParamCheck {
                    param,
                    segment,
                    value,
                    matched,
                }
            })
            .collect()
    }
}

impl fmt::Display for IdentityBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{{{}}} = {}", p.name, p.source)?;
        }
        Ok(())
    }
}

/// The parameter's segment, the caller's value, and whether they match.
fn check_param<'a>(
    param: &BoundParam,
    path: &'a NormalizedPath,
    who: &CallerIdentity<'a>,
) -> (Option<&'a str>, Option<&'a str>, bool) {
    let segment = path.segments().nth(param.segment);
    let value = param.source.value(who);
    let matched = match (segment, value) {
        (Some(s), Some(v)) => decoded_equals(s, v),
        _ => false,
    };
    (segment, value, matched)
}

/// Whether the percent-decoded `segment` is byte for byte `value`, without
/// allocating. A malformed escape (which a normalized path never holds)
/// never matches.
fn decoded_equals(segment: &str, value: &str) -> bool {
    let seg = segment.as_bytes();
    let mut want = value.bytes();
    let mut i = 0;
    while i < seg.len() {
        let b = if seg[i] == b'%' {
            match (
                seg.get(i + 1).copied().and_then(hex_value),
                seg.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    (hi << 4) | lo
                }
                _ => return false,
            }
        } else {
            i += 1;
            seg[i - 1]
        };
        if want.next() != Some(b) {
            return false;
        }
    }
    want.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use stella_core::identity::TokenClaims;
    use stella_envelope::AuthMethod;

    use stella_routing::normalize::path_for_tests as path;

    fn binding(segment: usize, source: IdentitySource) -> IdentityBinding {
        IdentityBinding::new(vec![BoundParam {
            name: "eid".into(),
            segment,
            source,
        }])
    }

    fn spiffe(id: &str) -> Caller {
        Caller::Spiffe {
            spiffe_id: id.into(),
        }
    }

    #[test]
    fn spiffe_path_last_is_the_last_segment_of_the_id_path() {
        let cases: &[(&str, Option<&str>)] = &[
            ("spiffe://td/executors/e1", Some("e1")),
            ("spiffe://td/e1", Some("e1")),
            ("spiffe://td/a/b/c", Some("c")),
            ("spiffe://td/a/", None),
            ("spiffe://td", None),
            ("https://td/a", None),
        ];
        for (id, want) in cases {
            assert_eq!(spiffe_path_last(id), *want, "{id:?}");
        }
    }

    #[test]
    fn a_spiffe_executor_may_call_its_own_path_and_no_other() {
        let b = binding(1, IdentitySource::SpiffePathLast);
        let e1 = spiffe("spiffe://stella.test/executors/e1");
        let who = CallerIdentity::of(&e1);
        let cases: &[(&str, bool)] = &[
            ("/executors/e1/heartbeat", true),
            ("/executors/e2/heartbeat", false),
            ("/executors/e%32/heartbeat", false),
            ("/executors/%65%31/heartbeat", true),
            ("/executors/E1/heartbeat", false),
            ("/executors/e1x/heartbeat", false),
            ("/executors/e/heartbeat", false),
            ("/executors/e1%20/heartbeat", false),
            ("/executors/x/../e1/heartbeat", true),
        ];
        for (raw, want) in cases {
            assert_eq!(b.holds(&path(raw), &who), *want, "{raw:?}");
        }
    }

    #[test]
    fn reserved_characters_are_compared_decoded() {
        let b = binding(1, IdentitySource::Sub);
        let claims = TokenClaims::for_tests("user:1@acme", &[]);
        let caller = Caller::Token {
            claims: Arc::new(claims),
            method: AuthMethod::Bearer,
        };
        let who = CallerIdentity::of(&caller);
        assert!(b.holds(&path("/agents/user:1@acme"), &who));
        assert!(b.holds(&path("/agents/user%3A1%40acme"), &who));
        assert!(b.holds(&path("/agents/user%3a1%40acme"), &who));
        assert!(!b.holds(&path("/agents/user%3A2%40acme"), &who));
    }

    #[test]
    fn a_missing_identity_value_never_matches() {
        let b = binding(1, IdentitySource::SpiffePathLast);
        let token = Caller::Token {
            claims: Arc::new(TokenClaims::for_tests("e1", &[])),
            method: AuthMethod::Mtls,
        };
        assert!(!b.holds(&path("/executors/e1"), &CallerIdentity::of(&token)));
        assert!(!b.holds(
            &path("/executors/e1"),
            &CallerIdentity::of(&Caller::Anonymous)
        ));
        // A certificate-bound token whose certificate is an SVID.
        let with_cert = CallerIdentity::of(&token)
            .with_certificate_spiffe_id(Some("spiffe://stella.test/executors/e1"));
        assert!(b.holds(&path("/executors/e1"), &with_cert));
        let sub = binding(1, IdentitySource::Sub);
        let spiffe_caller = spiffe("spiffe://stella.test/executors/e1");
        assert!(!sub.holds(&path("/executors/e1"), &CallerIdentity::of(&spiffe_caller)));
        let mut empty = CallerIdentity::of(&token);
        empty.sub = Some("");
        assert!(!sub.holds(&path("/executors/e1"), &empty));
        // A path shorter than the binding expects (never happens for a
        // matched route) does not match either.
        assert!(!binding(5, IdentitySource::Sub).holds(&path("/e1"), &CallerIdentity::of(&token)));
    }

    #[test]
    fn client_id_and_tenant_are_read_from_the_token() {
        let claims = TokenClaims::for_tests("ann", &[]).with_tenant("acme");
        let caller = Caller::Token {
            claims: Arc::new(claims),
            method: AuthMethod::Dpop,
        };
        let who = CallerIdentity::of(&caller);
        assert!(binding(1, IdentitySource::ClientId).holds(&path("/clients/client"), &who));
        assert!(!binding(1, IdentitySource::ClientId).holds(&path("/clients/ann"), &who));
        assert!(binding(0, IdentitySource::Tenant).holds(&path("/acme/x"), &who));
        assert!(!binding(0, IdentitySource::Tenant).holds(&path("/Acme/x"), &who));
    }

    #[test]
    fn every_parameter_must_hold() {
        let b = IdentityBinding::new(vec![
            BoundParam {
                name: "tenant".into(),
                segment: 0,
                source: IdentitySource::Tenant,
            },
            BoundParam {
                name: "agent".into(),
                segment: 2,
                source: IdentitySource::Sub,
            },
        ]);
        let claims = TokenClaims::for_tests("ann", &[]).with_tenant("acme");
        let caller = Caller::Token {
            claims: Arc::new(claims),
            method: AuthMethod::Bearer,
        };
        let who = CallerIdentity::of(&caller);
        assert!(b.holds(&path("/acme/agents/ann"), &who));
        assert!(!b.holds(&path("/acme/agents/bob"), &who));
        assert!(!b.holds(&path("/other/agents/ann"), &who));
        let bob = path("/acme/agents/bob");
        let shown = b.explain(&bob, &who);
        assert_eq!(
            shown
                .iter()
                .map(|c| (c.segment, c.value, c.matched))
                .collect::<Vec<_>>(),
            vec![
                (Some("acme"), Some("acme"), true),
                (Some("bob"), Some("ann"), false)
            ]
        );
        assert_eq!(b.to_string(), "{tenant} = tenant, {agent} = sub");
    }

    #[test]
    fn sources_parse_from_their_names_only() {
        for s in IdentitySource::ALL {
            assert_eq!(IdentitySource::parse(s.as_str()), Some(s));
        }
        assert_eq!(IdentitySource::parse("Sub"), None);
        assert_eq!(IdentitySource::parse("spiffe"), None);
        assert_eq!(IdentitySource::parse("spiffe_id"), None);
    }
}
