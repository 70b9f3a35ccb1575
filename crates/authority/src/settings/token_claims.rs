//! How an Authority's access tokens are shaped: which header `typ` values
//! they carry, where their scopes, roles, tenant and client id are, and
//! what must be present (`token_profile` and `token_claims` of an
//! Authority, docs/authorities.md).
//!
//! Plain checked data: the named presets ([`TokenProfile`]) and the claim
//! path syntax ([`ClaimPath`]) are here so that the configuration can build,
//! show and override them; `stella_authn::bearer::mapping` applies a
//! [`ClaimMapping`] to a verified token's claims.
//!
//! A claim path is dot-separated member names into the claims object:
//! `realm_access.roles`. A segment in double quotes is one member name taken
//! as written, dots and all (`"https://example.com/roles"`), with `\"` and
//! `\\` as its only escapes. The unquoted segment `{client_id}` stands for
//! the token's client id as mapped (`resource_access.{client_id}.roles`); a
//! quoted `"{client_id}"` is the literal member name. Any other character
//! (`:` in `cognito:groups`, `-`, `/`) may appear unquoted, except white
//! space, `"`, `{`, `}` and `.`.

use std::fmt;

/// Most segments in one claim path.
const MAX_SEGMENTS: usize = 16;
/// Longest claim path, in bytes as written.
const MAX_PATH_LEN: usize = 512;

/// A named preset: the access-token format one provider documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenProfile {
    /// RFC 9068, the gateway's default.
    Rfc9068,
    Keycloak,
    /// Microsoft Entra ID, v2.0 access tokens.
    Entra,
    Auth0,
    /// Okta custom authorization servers.
    Okta,
    /// Amazon Cognito user pools.
    Cognito,
}

impl TokenProfile {
    pub const ALL: [TokenProfile; 6] = [
        TokenProfile::Rfc9068,
        TokenProfile::Keycloak,
        TokenProfile::Entra,
        TokenProfile::Auth0,
        TokenProfile::Okta,
        TokenProfile::Cognito,
    ];

    /// The name in the configuration (`token_profile: keycloak`).
    pub fn name(self) -> &'static str {
        match self {
            TokenProfile::Rfc9068 => "rfc9068",
            TokenProfile::Keycloak => "keycloak",
            TokenProfile::Entra => "entra",
            TokenProfile::Auth0 => "auth0",
            TokenProfile::Okta => "okta",
            TokenProfile::Cognito => "cognito",
        }
    }

    /// The profile named `name` (exactly as [`TokenProfile::name`] spells it).
    pub fn parse(name: &str) -> Option<TokenProfile> {
        TokenProfile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The mapping this profile stands for. Each follows the format its
    /// provider documents (the pages are cited in docs/authorities.md).
    pub fn mapping(self) -> ClaimMapping {
        let paths = |texts: &[&str]| -> Vec<ClaimPath> {
            texts
                .iter()
                .map(|t| ClaimPath::parse(t).unwrap_or_else(|e| unreachable(t, e)))
                .collect()
        };
        let strings = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect();
        let value = |claim: &str, value: &str| RequiredValue {
            claim: ClaimPath::parse(claim).unwrap_or_else(|e| unreachable(claim, e)),
            value: value.to_owned(),
        };
        match self {
            TokenProfile::Rfc9068 => ClaimMapping {
                profile: self,
                typ: strings(&["at+jwt"]),
                require_typ: true,
                scope: paths(&["scope"]),
                scope_format: ScopeFormat::String,
                roles: paths(&["roles"]),
                tenant: paths(&["tenant"]),
                client_id: paths(&["client_id"]),
                require_jti: true,
                require_aud: true,
                required_values: Vec::new(),
            },
            // Header `typ: JWT` (`at+jwt` when a client asks for RFC 9068
            // headers). The payload's own `typ` is `Bearer` in an access
            // token and `ID` in an ID token, which is what tells them apart
            // when both name the same audience.
            TokenProfile::Keycloak => ClaimMapping {
                profile: self,
                typ: strings(&["JWT", "at+jwt"]),
                require_typ: false,
                scope: paths(&["scope"]),
                scope_format: ScopeFormat::String,
                roles: paths(&["realm_access.roles"]),
                tenant: Vec::new(),
                client_id: paths(&["azp"]),
                require_jti: true,
                require_aud: true,
                required_values: vec![value("typ", "Bearer")],
            },
            // v2.0 tokens name the client `azp`, v1.0 ones `appid`; the
            // token identifier is `uti`, not `jti`.
            TokenProfile::Entra => ClaimMapping {
                profile: self,
                typ: strings(&["JWT"]),
                require_typ: true,
                scope: paths(&["scp"]),
                scope_format: ScopeFormat::String,
                roles: paths(&["roles"]),
                tenant: paths(&["tid"]),
                client_id: paths(&["azp", "appid"]),
                require_jti: false,
                require_aud: true,
                required_values: Vec::new(),
            },
            // The Auth0 token profile (`typ: JWT`, `azp`, no `jti`) and its
            // RFC 9068 profile (`at+jwt`, `client_id`, `jti`) both fit.
            TokenProfile::Auth0 => ClaimMapping {
                profile: self,
                typ: strings(&["JWT", "at+jwt"]),
                require_typ: true,
                scope: paths(&["scope"]),
                scope_format: ScopeFormat::String,
                roles: paths(&["permissions"]),
                tenant: paths(&["org_id"]),
                client_id: paths(&["azp", "client_id"]),
                require_jti: false,
                require_aud: true,
                required_values: Vec::new(),
            },
            // No `typ` in the header (`at+jwt`, should one come, can only
            // mean an access token); `groups` once the authorization server
            // has a groups claim.
            TokenProfile::Okta => ClaimMapping {
                profile: self,
                typ: strings(&["at+jwt"]),
                require_typ: false,
                scope: paths(&["scp"]),
                scope_format: ScopeFormat::Array,
                roles: paths(&["groups"]),
                tenant: Vec::new(),
                client_id: paths(&["cid"]),
                require_jti: true,
                require_aud: true,
                required_values: Vec::new(),
            },
            // No `typ` in the header and no `aud` in an access token: the
            // app client is `client_id`, checked against the audiences, and
            // `token_use: access` keeps ID tokens (whose `aud` is that same
            // client id) out.
            TokenProfile::Cognito => ClaimMapping {
                profile: self,
                typ: strings(&["at+jwt"]),
                require_typ: false,
                scope: paths(&["scope"]),
                scope_format: ScopeFormat::String,
                roles: paths(&["cognito:groups"]),
                tenant: Vec::new(),
                client_id: paths(&["client_id"]),
                require_jti: true,
                require_aud: false,
                required_values: vec![value("token_use", "access")],
            },
        }
    }
}

/// The presets are written above as literals that parse.
fn unreachable(text: &str, e: PathError) -> ClaimPath {
    unreachable!("preset claim path {text:?} does not parse: {e}")
}

impl fmt::Display for TokenProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How scopes are written in the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScopeFormat {
    /// One string, scopes separated by spaces (RFC 8693 `scope`).
    String,
    /// An array of strings (Okta's `scp`).
    Array,
}

impl ScopeFormat {
    pub fn name(self) -> &'static str {
        match self {
            ScopeFormat::String => "string",
            ScopeFormat::Array => "array",
        }
    }

    pub fn parse(name: &str) -> Option<ScopeFormat> {
        [ScopeFormat::String, ScopeFormat::Array]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// Where the gateway's vocabulary is found in one Authority's access
/// tokens, and what those tokens must carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimMapping {
    /// The preset the mapping started from (explicit keys may have
    /// changed any part of it).
    pub profile: TokenProfile,
    /// Header `typ` values accepted, compared as RFC 9068 section 4 says
    /// (case-insensitive, with or without `application/`).
    pub typ: Vec<String>,
    /// A header without `typ` is refused.
    pub require_typ: bool,
    /// Every path's scopes, in order, without repeats.
    pub scope: Vec<ClaimPath>,
    pub scope_format: ScopeFormat,
    /// Every path's roles (arrays of strings), in order, without repeats.
    pub roles: Vec<ClaimPath>,
    /// The first path present gives the tenant (a string).
    pub tenant: Vec<ClaimPath>,
    /// The first path present gives the client id (a string); one must be.
    pub client_id: Vec<ClaimPath>,
    pub require_jti: bool,
    /// `false`: a token without `aud` is accepted when its client id is one
    /// of the Authority's audiences (a token with `aud` is checked as ever).
    pub require_aud: bool,
    /// Claims that must be strings with exactly these values.
    pub required_values: Vec<RequiredValue>,
}

/// A claim that must hold exactly one string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequiredValue {
    pub claim: ClaimPath,
    pub value: String,
}

/// One segment of a [`ClaimPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A member name.
    Name(String),
    /// `{client_id}`: the token's mapped client id.
    ClientId,
}

/// A path into the claims object; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    segments: Vec<Segment>,
}

/// Why a claim path does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("has more than {MAX_SEGMENTS} segments")]
    TooDeep,
    #[error("has an empty segment (two dots, or a dot at an end)")]
    EmptySegment,
    #[error("has a quoted segment that is not closed")]
    UnclosedQuote,
    #[error("has an escape other than \\\" or \\\\ in a quoted segment")]
    BadEscape,
    #[error("has a character after a closing quote that is not a dot")]
    AfterQuote,
    #[error("has white space, a quote or a brace outside quotes (quote the segment: \"...\")")]
    NeedsQuotes,
    #[error("has a placeholder other than {{client_id}}")]
    UnknownPlaceholder,
}

impl ClaimPath {
    /// Parses a path as the configuration writes it.
    pub fn parse(text: &str) -> Result<ClaimPath, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        let mut segments = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            if segments.len() == MAX_SEGMENTS {
                return Err(PathError::TooDeep);
            }
            let segment = match chars.peek() {
                None | Some('.') => return Err(PathError::EmptySegment),
                Some('"') => {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            None => return Err(PathError::UnclosedQuote),
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(c @ ('"' | '\\')) => name.push(c),
                                _ => return Err(PathError::BadEscape),
                            },
                            Some(c) => name.push(c),
                        }
                    }
                    if name.is_empty() {
                        return Err(PathError::EmptySegment);
                    }
                    if chars.peek().is_some_and(|c| *c != '.') {
                        return Err(PathError::AfterQuote);
                    }
                    Segment::Name(name)
                }
                Some(_) => {
                    let mut bare = String::new();
                    while let Some(c) = chars.peek().copied() {
                        if c == '.' {
                            break;
                        }
                        bare.push(c);
                        chars.next();
                    }
                    if bare == "{client_id}" {
                        Segment::ClientId
                    } else if bare.starts_with('{') && bare.ends_with('}') && bare.len() > 2 {
                        return Err(PathError::UnknownPlaceholder);
                    } else if bare.chars().any(needs_quotes) {
                        return Err(PathError::NeedsQuotes);
                    } else {
                        Segment::Name(bare)
                    }
                }
            };
            segments.push(segment);
            match chars.next() {
                None => break,
                // A dot: another segment follows (an empty one is refused
                // at the top of the loop).
                Some(_) => continue,
            }
        }
        Ok(ClaimPath { segments })
    }

    /// A path of one member name, as written.
    pub fn member(name: &str) -> ClaimPath {
        ClaimPath {
            segments: vec![Segment::Name(name.to_owned())],
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the path has a `{client_id}` segment.
    pub fn uses_client_id(&self) -> bool {
        self.segments.contains(&Segment::ClientId)
    }
}

fn needs_quotes(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '{' | '}' | '\\')
}

/// The path as the configuration would write it: segments that need quotes
/// are quoted, so the text parses back to the same path.
impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match segment {
                Segment::ClientId => f.write_str("{client_id}")?,
                Segment::Name(name)
                    if !name.is_empty() && !name.chars().any(|c| c == '.' || needs_quotes(c)) =>
                {
                    f.write_str(name)?
                }
                Segment::Name(name) => {
                    f.write_str("\"")?;
                    for c in name.chars() {
                        if matches!(c, '"' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &ClaimPath) -> Vec<String> {
        path.segments()
            .iter()
            .map(|s| match s {
                Segment::Name(n) => n.clone(),
                Segment::ClientId => "<client_id>".into(),
            })
            .collect()
    }

    #[test]
    fn paths_parse_into_their_segments() {
        for (text, segments) in [
            ("scope", vec!["scope"]),
            ("realm_access.roles", vec!["realm_access", "roles"]),
            (
                "resource_access.{client_id}.roles",
                vec!["resource_access", "<client_id>", "roles"],
            ),
            ("cognito:groups", vec!["cognito:groups"]),
            ("custom:tenant-id/x", vec!["custom:tenant-id/x"]),
            (
                "\"https://example.com/roles\"",
                vec!["https://example.com/roles"],
            ),
            (
                "\"https://example.com/claims\".roles",
                vec!["https://example.com/claims", "roles"],
            ),
            ("a.\"b.c\".d", vec!["a", "b.c", "d"]),
            ("\"{client_id}\"", vec!["{client_id}"]),
            ("\"say \\\"hi\\\" \\\\ there\"", vec!["say \"hi\" \\ there"]),
            ("\u{e9}t\u{e9}", vec!["\u{e9}t\u{e9}"]),
        ] {
            let path = ClaimPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(names(&path), segments, "{text}");
            // Shown as the configuration writes it, and read back the same.
            assert_eq!(ClaimPath::parse(&path.to_string()), Ok(path), "{text}");
        }
    }

    #[test]
    fn malformed_paths_are_refused_with_the_reason() {
        for (text, error) in [
            ("", PathError::Empty),
            (".roles", PathError::EmptySegment),
            ("roles.", PathError::EmptySegment),
            ("realm_access..roles", PathError::EmptySegment),
            ("\"\"", PathError::EmptySegment),
            ("\"https://x", PathError::UnclosedQuote),
            ("\"a\\nb\"", PathError::BadEscape),
            ("\"a\"b", PathError::AfterQuote),
            ("my roles", PathError::NeedsQuotes),
            ("a\"b", PathError::NeedsQuotes),
            (
                "resource_access.{client}.roles",
                PathError::UnknownPlaceholder,
            ),
            ("x{client_id}", PathError::NeedsQuotes),
        ] {
            assert_eq!(ClaimPath::parse(text), Err(error), "{text:?}");
        }
        assert_eq!(
            ClaimPath::parse(&format!("{}b", "a.".repeat(MAX_SEGMENTS))),
            Err(PathError::TooDeep)
        );
        assert_eq!(
            ClaimPath::parse(&"a".repeat(MAX_PATH_LEN + 1)),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn every_profile_has_a_name_that_parses_back_and_a_client_id_path() {
        for profile in TokenProfile::ALL {
            assert_eq!(TokenProfile::parse(profile.name()), Some(profile));
            let mapping = profile.mapping();
            assert_eq!(mapping.profile, profile);
            assert!(!mapping.client_id.is_empty(), "{profile}");
            assert!(
                mapping.client_id.iter().all(|p| !p.uses_client_id()),
                "{profile}"
            );
            // A profile that requires typ accepts at least one value.
            assert!(!mapping.require_typ || !mapping.typ.is_empty(), "{profile}");
        }
        assert_eq!(TokenProfile::parse("Keycloak"), None);
        assert_eq!(TokenProfile::parse("azure"), None);
    }

    #[test]
    fn only_rfc9068_is_as_strict_as_the_default() {
        let strict = TokenProfile::Rfc9068.mapping();
        assert_eq!(strict.typ, vec!["at+jwt".to_owned()]);
        assert!(strict.require_typ && strict.require_jti && strict.require_aud);
        // Cognito alone lets a token without aud in, and only with
        // token_use: access.
        for profile in TokenProfile::ALL {
            let m = profile.mapping();
            assert_eq!(m.require_aud, profile != TokenProfile::Cognito, "{profile}");
        }
        let cognito = TokenProfile::Cognito.mapping();
        assert_eq!(
            cognito.required_values,
            vec![RequiredValue {
                claim: ClaimPath::member("token_use"),
                value: "access".into()
            }]
        );
    }
}
