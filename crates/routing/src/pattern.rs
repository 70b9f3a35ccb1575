//! Route path patterns: parsed and checked once from config text, then
//! matched per request against a [`NormalizedPath`], segment by segment and
//! without allocating.
//!
//! Syntax (a pattern is a `/`-separated list of segments):
//! - a literal segment matches itself, case-sensitively;
//! - `*` matches exactly one non-empty segment;
//! - `**` matches zero or more whole segments;
//! - `{name}` matches exactly one non-empty segment, as `*` does, and names
//!   it, so a route can bind it to the caller's identity
//!   (`policy::binding`). Names are `[a-z][a-z0-9_]*`, unique within a
//!   pattern. A parameter ranks as `*` for specificity, and `/a/{id}`
//!   matches the same paths as `/a/*` (two routes differing only there are
//!   ambiguous).
//!
//! A pattern without wildcards (or parameters) is *exact*; one whose only wildcard is a final
//! `**` is a *prefix* (`/api/**`, also built by [`PathPattern::prefix`]):
//! segment-aware, so it matches `/api` and `/api/x` but not `/apix`. Anything
//! else is a *glob*.
//!
//! A trailing slash is ignored when matching, on both sides: `/admin` matches
//! `/admin/`. Some upstream frameworks treat the two as the same resource, so
//! letting `/admin/` fall through to a broader route could skip the policy of
//! the `/admin` route.

use std::cmp::Ordering;
use std::fmt;

use super::normalize::{NormalizedPath, MAX_PATH_LEN, MAX_SEGMENTS};

/// Why a path pattern from config was refused. Messages name the position of
/// the faulty segment (1-based) but never echo the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("path pattern is empty")]
    Empty,
    #[error("path pattern must start with '/'")]
    NotAbsolute,
    #[error("path pattern is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("path pattern has more than {max} segments")]
    TooManySegments { max: usize },
    #[error("path pattern has an empty segment at position {position} ('//')")]
    EmptySegment { position: usize },
    #[error("path pattern has a '.' or '..' segment at position {position}")]
    DotSegment { position: usize },
    #[error(
        "path pattern has '%' at segment {position}; patterns match decoded paths, write the character itself"
    )]
    PercentSign { position: usize },
    #[error("path pattern segment {position} mixes '*' with other characters; '*' and '**' must be whole segments")]
    BadWildcard { position: usize },
    #[error("path pattern has consecutive '**' segments at position {position}")]
    RepeatedDoubleStar { position: usize },
    #[error("path pattern segment {position} has a character not allowed in a path (allowed: letters, digits, - . _ ~ ! $ & ' ( ) * + , = : @)")]
    InvalidChar { position: usize },
    #[error("path pattern segment {position} is a parameter with an invalid name; write {{name}} with a name of lowercase letters, digits and '_', starting with a letter")]
    BadParam { position: usize },
    #[error("path pattern segment {position} repeats the name of an earlier parameter")]
    DuplicateParam { position: usize },
}

/// One compiled segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Literal(Box<str>),
    /// `*`
    One,
    /// `**`
    Many,
    /// `{name}`: one segment, as `*`, with a name.
    Param(Box<str>),
}

impl Seg {
    /// Rank used when comparing specificity position by position.
    fn rank(&self) -> u8 {
        match self {
            Seg::Literal(_) => 2,
            Seg::One | Seg::Param(_) => 1,
            Seg::Many => 0,
        }
    }

    /// Matches exactly one segment, whatever it is.
    fn is_one(&self) -> bool {
        matches!(self, Seg::One | Seg::Param(_))
    }
}

/// Where a named parameter sits in a pattern, for reading its segment from
/// a path the pattern matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamPosition {
    /// The parameter is the segment at this 0-based index of every path the
    /// pattern matches (no `**` comes before it).
    Fixed(usize),
    /// A `**` comes before the parameter, so which segment it matched can
    /// depend on how `**` was expanded.
    AfterDoubleStar,
}

/// The shape of a pattern, derived from its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// No wildcards.
    Exact,
    /// Literal segments then a final `**`.
    Prefix,
    /// Any other use of `*`, `**` or `{name}`.
    Glob,
}

/// A compiled route path pattern. Two patterns are equal when they match the
/// same paths by construction (same canonical text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPattern {
    /// Canonical text: no trailing slash (except the root), wildcards and
    /// parameters as written.
    text: Box<str>,
    /// The text with every parameter written `*`: patterns with the same
    /// shape match the same paths.
    shape: Box<str>,
    segs: Box<[Seg]>,
    kind: PatternKind,
}

impl PathPattern {
    /// Parses config text: `/admin` (exact), `/api/**` (prefix), or a glob
    /// such as `/a/*/c` or `/a/**/c`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if !text.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        if text.len() > MAX_PATH_LEN {
            return Err(PatternError::TooLong { max: MAX_PATH_LEN });
        }
        let body = &text[1..];
        // A trailing slash is ignored (see the module doc), so `/a/` and `/a`
        // compile to the same pattern; the root `/` has no segments.
        let body = match body.strip_suffix('/') {
            Some("") => return Err(PatternError::EmptySegment { position: 1 }),
            Some(stripped) => stripped,
            None => body,
        };
        let mut segs: Vec<Seg> = Vec::new();
        if !body.is_empty() {
            for (i, raw) in body.split('/').enumerate() {
                let position = i + 1;
                let seg = parse_segment(raw, position)?;
                if seg == Seg::Many && segs.last() == Some(&Seg::Many) {
                    return Err(PatternError::RepeatedDoubleStar { position });
                }
                if let Seg::Param(name) = &seg {
                    if segs.iter().any(|s| matches!(s, Seg::Param(n) if n == name)) {
                        return Err(PatternError::DuplicateParam { position });
                    }
                }
                segs.push(seg);
            }
        }
        if segs.len() > MAX_SEGMENTS {
            return Err(PatternError::TooManySegments { max: MAX_SEGMENTS });
        }
        Ok(Self::from_segs(segs))
    }

    /// An exact pattern: `text` must contain no wildcard.
    pub fn exact(text: &str) -> Result<Self, PatternError> {
        let pattern = Self::parse(text)?;
        match pattern.kind {
            PatternKind::Exact => Ok(pattern),
            _ => Err(PatternError::BadWildcard {
                position: pattern.first_wildcard_position(),
            }),
        }
    }

    /// A segment-aware prefix: `prefix("/api")` is `/api/**` and matches
    /// `/api`, `/api/`, `/api/x`, but not `/apix`. `text` must contain no
    /// wildcard; `prefix("/")` matches every path.
    pub fn prefix(text: &str) -> Result<Self, PatternError> {
        let pattern = Self::exact(text)?;
        let mut segs = pattern.segs.into_vec();
        segs.push(Seg::Many);
        if segs.len() > MAX_SEGMENTS {
            return Err(PatternError::TooManySegments { max: MAX_SEGMENTS });
        }
        Ok(Self::from_segs(segs))
    }

    fn from_segs(segs: Vec<Seg>) -> Self {
        let wildcards = segs
            .iter()
            .filter(|s| !matches!(s, Seg::Literal(_)))
            .count();
        let kind = match (wildcards, segs.last()) {
            (0, _) => PatternKind::Exact,
            (1, Some(Seg::Many)) => PatternKind::Prefix,
            _ => PatternKind::Glob,
        };
        let mut text = String::new();
        let mut shape = String::new();
        for seg in &segs {
            text.push('/');
            shape.push('/');
            match seg {
                Seg::Literal(l) => {
                    text.push_str(l);
                    shape.push_str(l);
                }
                Seg::One => {
                    text.push('*');
                    shape.push('*');
                }
                Seg::Many => {
                    text.push_str("**");
                    shape.push_str("**");
                }
                Seg::Param(name) => {
                    text.push('{');
                    text.push_str(name);
                    text.push('}');
                    shape.push('*');
                }
            }
        }
        if text.is_empty() {
            text.push('/');
            shape.push('/');
        }
        Self {
            text: text.into_boxed_str(),
            shape: shape.into_boxed_str(),
            segs: segs.into_boxed_slice(),
            kind,
        }
    }

    fn first_wildcard_position(&self) -> usize {
        self.segs
            .iter()
            .position(|s| !matches!(s, Seg::Literal(_)))
            .map_or(0, |i| i + 1)
    }

    /// The canonical text (trailing slash dropped).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical text with every parameter written `*`. Two patterns
    /// with the same shape match exactly the same paths.
    pub fn shape(&self) -> &str {
        &self.shape
    }

    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// The pattern as an OpenAPI path template, and its parameters: `{name}`
    /// stays, `*` becomes `{segN}` and `**` `{restN}` (N its position), so
    /// `/items/**` reads `/items/{rest1}`. Each parameter comes with whether
    /// it stands for several segments (`**`), which a template cannot say.
    pub fn openapi_template(&self) -> (String, Vec<(String, bool)>) {
        let mut path = String::new();
        let mut params = Vec::new();
        for (i, seg) in self.segs.iter().enumerate() {
            path.push('/');
            let param = match seg {
                Seg::Literal(text) => {
                    path.push_str(text);
                    continue;
                }
                Seg::One => (format!("seg{i}"), false),
                Seg::Many => (format!("rest{i}"), true),
                Seg::Param(name) => (name.to_string(), false),
            };
            path.push('{');
            path.push_str(&param.0);
            path.push('}');
            params.push(param);
        }
        if path.is_empty() {
            path.push('/');
        }
        (path, params)
    }

    /// The names of the pattern's `{name}` parameters, left to right.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Param(name) => Some(&**name),
            _ => None,
        })
    }

    /// Where the parameter `name` sits; `None` when the pattern has no such
    /// parameter.
    pub fn param_position(&self, name: &str) -> Option<ParamPosition> {
        let index = self
            .segs
            .iter()
            .position(|s| matches!(s, Seg::Param(n) if **n == *name))?;
        Some(if self.segs[..index].contains(&Seg::Many) {
            ParamPosition::AfterDoubleStar
        } else {
            ParamPosition::Fixed(index)
        })
    }

    /// Whether `path` matches, ignoring a trailing slash. Allocation-free;
    /// at worst O(pattern segments x path segments) with several `**`.
    pub fn matches(&self, path: &NormalizedPath) -> bool {
        match self.kind {
            PatternKind::Exact => {
                let mut segs = path.segments();
                for want in self.segs.iter() {
                    match (want, segs.next()) {
                        (Seg::Literal(l), Some(s)) if **l == *s => {}
                        _ => return false,
                    }
                }
                segs.next().is_none()
            }
            PatternKind::Prefix => {
                let mut segs = path.segments();
                for want in self.segs.iter() {
                    match (want, segs.next()) {
                        (Seg::Many, _) => return true,
                        (Seg::Literal(l), Some(s)) if **l == *s => {}
                        _ => return false,
                    }
                }
                // Unreachable for a prefix (it ends in `**`); refusing keeps
                // the function total without a panic.
                false
            }
            PatternKind::Glob => glob_match(&self.segs, path.segments()),
        }
    }

    /// The first segment of every path this pattern matches, when the
    /// pattern starts with a literal: a table compares it with the path's
    /// first segment and skips the pattern without walking it.
    pub fn first_literal(&self) -> Option<&str> {
        match self.segs.first() {
            Some(Seg::Literal(l)) => Some(l),
            _ => None,
        }
    }

    /// This pattern's rank for choosing among several matching routes.
    pub fn specificity(&self) -> Specificity {
        let literal_prefix = self
            .segs
            .iter()
            .take_while(|s| matches!(s, Seg::Literal(_)))
            .count();
        let literals = self
            .segs
            .iter()
            .filter(|s| matches!(s, Seg::Literal(_)))
            .count();
        let many = self.segs.iter().filter(|s| **s == Seg::Many).count();
        let one = self.segs.iter().filter(|s| s.is_one()).count();
        Specificity {
            exact: self.kind == PatternKind::Exact,
            literal_prefix,
            literals,
            many,
            one,
            ranks: self.segs.iter().map(Seg::rank).collect(),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn is_pattern_char(b: u8) -> bool {
    // RFC 3986 pchar without pct-encoded and without ';' (which
    // `normalize_path` refuses, so it could never match).
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

/// `[a-z][a-z0-9_]*`: a parameter name.
fn is_param_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Longest parameter name; names end up in config error paths and
/// `policy explain` output.
const MAX_PARAM_NAME_LEN: usize = 64;

fn parse_segment(raw: &str, position: usize) -> Result<Seg, PatternError> {
    if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        return if is_param_name(inner) && inner.len() <= MAX_PARAM_NAME_LEN {
            Ok(Seg::Param(inner.into()))
        } else {
            Err(PatternError::BadParam { position })
        };
    }
    match raw {
        "" => Err(PatternError::EmptySegment { position }),
        "." | ".." => Err(PatternError::DotSegment { position }),
        "*" => Ok(Seg::One),
        "**" => Ok(Seg::Many),
        _ if raw.contains('%') => Err(PatternError::PercentSign { position }),
        _ if raw.contains('*') => Err(PatternError::BadWildcard { position }),
        _ if !raw.bytes().all(is_pattern_char) => Err(PatternError::InvalidChar { position }),
        _ => Ok(Seg::Literal(raw.into())),
    }
}

/// Wildcard matching over segments: `*` is one segment, `**` any run of
/// segments. The classic greedy algorithm with a single backtrack point
/// (the last `**` seen) is exact here because `**` is the only variable-length
/// token; cloning the segment iterator saves a position without allocating.
fn glob_match<'a, I>(pat: &[Seg], mut path: I) -> bool
where
    I: Iterator<Item = &'a str> + Clone,
{
    let mut p = 0usize;
    // (pattern index after the last `**`, path position it currently covers up to)
    let mut backtrack: Option<(usize, I)> = None;
    loop {
        let mut ahead = path.clone();
        let Some(seg) = ahead.next() else {
            return pat
                .get(p..)
                .is_some_and(|rest| rest.iter().all(|s| *s == Seg::Many));
        };
        match pat.get(p) {
            Some(Seg::Many) => {
                p += 1;
                backtrack = Some((p, path.clone()));
                continue;
            }
            Some(Seg::One | Seg::Param(_)) => {
                p += 1;
                path = ahead;
                continue;
            }
            Some(Seg::Literal(l)) if **l == *seg => {
                p += 1;
                path = ahead;
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last `**` swallow one more segment and retry.
        match backtrack.as_mut() {
            Some((after_many, covered)) => {
                if covered.next().is_none() {
                    return false;
                }
                p = *after_many;
                path = covered.clone();
            }
            None => return false,
        }
    }
}

/// How specific a pattern is; `Greater` means more specific. Among routes
/// whose pattern matches a path, the most specific wins:
///
/// 1. an exact pattern beats any pattern with a wildcard;
/// 2. a longer literal prefix (leading literal segments) wins;
/// 3. more literal segments in total win;
/// 4. fewer `**` win, then fewer `*` ("fewer wildcards", with `**` counted
///    as the broader one, so `/a/*/*` beats `/a/**`);
/// 5. position by position, literal beats `*` beats `**`; if one pattern's
///    ranks are a prefix of the other's, the longer one wins.
///
/// Patterns still equal after that are ordered by their canonical text by the
/// route table, so the choice never depends on config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specificity {
    exact: bool,
    literal_prefix: usize,
    literals: usize,
    many: usize,
    one: usize,
    ranks: Box<[u8]>,
}

impl Ord for Specificity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.exact
            .cmp(&other.exact)
            .then(self.literal_prefix.cmp(&other.literal_prefix))
            .then(self.literals.cmp(&other.literals))
            .then(other.many.cmp(&self.many))
            .then(other.one.cmp(&self.one))
            .then(self.ranks.cmp(&other.ranks))
    }
}

impl PartialOrd for Specificity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pat(text: &str) -> PathPattern {
        match PathPattern::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("pattern {text:?} refused: {e}"),
        }
    }

    use crate::normalize::path_for_tests as path;

    #[test]
    fn patterns_match_the_paths_their_kind_promises() {
        // (pattern, path, matches)
        let cases: &[(&str, &str, bool)] = &[
            ("/admin", "/admin", true),
            ("/admin", "/admin/", true),
            ("/admin", "/Admin", false),
            ("/admin", "/admin/x", false),
            ("/admin", "/adminx", false),
            ("/", "/", true),
            ("/", "/a", false),
            ("/api/**", "/api", true),
            ("/api/**", "/api/", true),
            ("/api/**", "/api/x", true),
            ("/api/**", "/api/x/y", true),
            ("/api/**", "/apix", false),
            ("/api/**", "/ap", false),
            ("/api/**", "/", false),
            ("/**", "/", true),
            ("/**", "/anything/at/all", true),
            ("/a/*/c", "/a/b/c", true),
            ("/a/*/c", "/a/c", false),
            ("/a/*/c", "/a/b/b/c", false),
            ("/a/*", "/a", false),
            ("/a/*", "/a/b", true),
            ("/a/*", "/a/b/c", false),
            ("/a/**/c", "/a/c", true),
            ("/a/**/c", "/a/b/c", true),
            ("/a/**/c", "/a/b/b/c", true),
            ("/a/**/c", "/a/b/c/d", false),
            ("/a/**/c/**", "/a/x/c/y/z", true),
            ("/a/**/c/*", "/a/c/c/c", true),
            ("/a/**/c/*", "/a/c", false),
            ("/**/z", "/z", true),
            ("/**/z", "/x/y/z", true),
            ("/**/z", "/x/y/z/w", false),
            ("/*/**", "/", false),
            ("/*/**", "/a", true),
            ("/a/**/b/**/c", "/a/b/x/b/c", true),
            ("/a/**/b/**/c", "/a/c/b", false),
            ("/v1/things:get", "/v1/things:get", true),
            ("/v1/things:get", "/v1/things%3Aget", false),
        ];
        for (p, raw, want) in cases {
            assert_eq!(pat(p).matches(&path(raw)), *want, "{p:?} vs {raw:?}");
        }
    }

    #[test]
    fn a_named_parameter_matches_one_segment_like_a_star() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "/executors/{eid}/heartbeat",
                "/executors/e1/heartbeat",
                true,
            ),
            (
                "/executors/{eid}/heartbeat",
                "/executors/e%32/heartbeat",
                true,
            ),
            ("/executors/{eid}/heartbeat", "/executors/heartbeat", false),
            ("/executors/{eid}/heartbeat", "/executors//heartbeat", false),
            (
                "/executors/{eid}/heartbeat",
                "/executors/a/b/heartbeat",
                false,
            ),
            ("/executors/{eid}", "/executors/e1/", true),
            ("/executors/{eid}", "/executors", false),
            ("/executors/{eid}/**", "/executors/e1", true),
            ("/executors/{eid}/**", "/executors/e1/x/y", true),
            ("/{tenant}/{agent}", "/t/a", true),
            ("/{tenant}/{agent}", "/t", false),
            ("/**/{last}", "/a/b/c", true),
            ("/**/{last}", "/", false),
        ];
        for (p, raw, want) in cases {
            assert_eq!(pat(p).matches(&path(raw)), *want, "{p:?} vs {raw:?}");
        }
    }

    #[test]
    fn a_parameter_is_located_by_name_unless_a_double_star_precedes_it() {
        let p = pat("/t/{tenant}/executors/{eid}/**");
        assert_eq!(p.as_str(), "/t/{tenant}/executors/{eid}/**");
        assert_eq!(p.shape(), "/t/*/executors/*/**");
        assert_eq!(p.kind(), PatternKind::Glob);
        assert_eq!(p.params().collect::<Vec<_>>(), vec!["tenant", "eid"]);
        assert_eq!(p.param_position("tenant"), Some(ParamPosition::Fixed(1)));
        assert_eq!(p.param_position("eid"), Some(ParamPosition::Fixed(3)));
        assert_eq!(p.param_position("other"), None);
        let after = pat("/a/**/{id}");
        assert_eq!(
            after.param_position("id"),
            Some(ParamPosition::AfterDoubleStar)
        );
        assert_eq!(pat("/a/*").params().count(), 0);
    }

    #[test]
    fn a_parameter_ranks_as_a_star() {
        use std::cmp::Ordering::{Equal, Greater};
        let spec = |t: &str| pat(t).specificity();
        assert_eq!(spec("/a/{id}").cmp(&spec("/a/*")), Equal);
        assert_eq!(spec("/a/b").cmp(&spec("/a/{id}")), Greater);
        assert_eq!(spec("/a/{id}").cmp(&spec("/a/**")), Greater);
        assert_eq!(spec("/a/{id}/c").cmp(&spec("/a/*/*")), Greater);
    }

    #[test]
    fn malformed_parameters_are_refused_at_config_time() {
        let cases: &[(&str, PatternError)] = &[
            ("/a/{}", PatternError::BadParam { position: 2 }),
            ("/a/{Id}", PatternError::BadParam { position: 2 }),
            ("/a/{1d}", PatternError::BadParam { position: 2 }),
            ("/a/{_id}", PatternError::BadParam { position: 2 }),
            ("/a/{i-d}", PatternError::BadParam { position: 2 }),
            ("/a/{i d}", PatternError::BadParam { position: 2 }),
            ("/a/{{id}}", PatternError::BadParam { position: 2 }),
            ("/a/{*}", PatternError::BadParam { position: 2 }),
            ("/a/{id", PatternError::InvalidChar { position: 2 }),
            ("/a/id}", PatternError::InvalidChar { position: 2 }),
            ("/a/x{id}", PatternError::InvalidChar { position: 2 }),
            ("/a/{id}x", PatternError::InvalidChar { position: 2 }),
            ("/{id}/b/{id}", PatternError::DuplicateParam { position: 3 }),
        ];
        for (text, want) in cases {
            assert_eq!(PathPattern::parse(text).as_ref(), Err(want), "{text:?}");
        }
        let long = format!("/{{{}}}", "a".repeat(MAX_PARAM_NAME_LEN + 1));
        assert_eq!(
            PathPattern::parse(&long),
            Err(PatternError::BadParam { position: 1 })
        );
        assert!(PathPattern::exact("/a/{id}").is_err());
        for text in ["/a/{Id}", "/{a}/{a}"] {
            let msg = PathPattern::parse(text).err().map(|e| e.to_string());
            let msg = msg.unwrap_or_default();
            assert_eq!(msg, msg.to_lowercase(), "{msg:?}");
            assert!(!msg.contains("Id"), "the pattern is not echoed: {msg:?}");
        }
    }

    #[test]
    fn prefix_is_segment_aware() {
        let api = PathPattern::prefix("/api");
        assert_eq!(api.as_ref().map(PathPattern::as_str), Ok("/api/**"));
        assert_eq!(api.as_ref().map(PathPattern::kind), Ok(PatternKind::Prefix));
        let api = pat("/api/**");
        assert!(api.matches(&path("/api")));
        assert!(api.matches(&path("/api/x")));
        assert!(!api.matches(&path("/apix")));
        assert_eq!(
            PathPattern::prefix("/").map(|p| p.matches(&path("/x/y"))),
            Ok(true)
        );
    }

    #[test]
    fn kinds_are_derived_from_the_wildcards() {
        assert_eq!(pat("/admin").kind(), PatternKind::Exact);
        assert_eq!(pat("/").kind(), PatternKind::Exact);
        assert_eq!(pat("/api/**").kind(), PatternKind::Prefix);
        assert_eq!(pat("/**").kind(), PatternKind::Prefix);
        assert_eq!(pat("/a/*").kind(), PatternKind::Glob);
        assert_eq!(pat("/a/**/b").kind(), PatternKind::Glob);
        assert_eq!(pat("/a/*/**").kind(), PatternKind::Glob);
    }

    #[test]
    fn trailing_slash_in_a_pattern_is_ignored() {
        assert_eq!(pat("/admin/"), pat("/admin"));
        assert_eq!(pat("/admin/").as_str(), "/admin");
        assert_eq!(pat("/").as_str(), "/");
    }

    #[test]
    fn malformed_patterns_are_refused_at_config_time() {
        let cases: &[(&str, PatternError)] = &[
            ("", PatternError::Empty),
            ("admin", PatternError::NotAbsolute),
            ("*", PatternError::NotAbsolute),
            ("/a//b", PatternError::EmptySegment { position: 2 }),
            ("//", PatternError::EmptySegment { position: 1 }),
            ("/a/../b", PatternError::DotSegment { position: 2 }),
            ("/a/./b", PatternError::DotSegment { position: 2 }),
            ("/..", PatternError::DotSegment { position: 1 }),
            ("/a%2Fb", PatternError::PercentSign { position: 1 }),
            ("/a/%41", PatternError::PercentSign { position: 2 }),
            ("/**x", PatternError::BadWildcard { position: 1 }),
            ("/a/x**", PatternError::BadWildcard { position: 2 }),
            ("/a*", PatternError::BadWildcard { position: 1 }),
            ("/***", PatternError::BadWildcard { position: 1 }),
            ("/a/**/**", PatternError::RepeatedDoubleStar { position: 3 }),
            ("/a b", PatternError::InvalidChar { position: 1 }),
            ("/a\\b", PatternError::InvalidChar { position: 1 }),
            ("/a;b", PatternError::InvalidChar { position: 1 }),
            ("/a?b", PatternError::InvalidChar { position: 1 }),
            ("/a#b", PatternError::InvalidChar { position: 1 }),
            ("/a{id}", PatternError::InvalidChar { position: 1 }),
            ("/caf\u{e9}", PatternError::InvalidChar { position: 1 }),
        ];
        for (text, want) in cases {
            assert_eq!(PathPattern::parse(text).as_ref(), Err(want), "{text:?}");
        }
        assert!(PathPattern::exact("/a/*").is_err());
        assert!(PathPattern::prefix("/a/**").is_err());
        let too_many = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(
            PathPattern::parse(&too_many),
            Err(PatternError::TooManySegments { max: MAX_SEGMENTS })
        );
    }

    #[test]
    fn pattern_errors_are_lowercase() {
        for text in ["", "a", "/a//b", "/..", "/%", "/**x", "/**/**", "/ "] {
            if let Err(e) = PathPattern::parse(text) {
                let msg = e.to_string();
                assert_eq!(msg, msg.to_lowercase(), "{msg:?}");
            } else {
                panic!("{text:?} was accepted");
            }
        }
    }

    #[test]
    fn more_specific_patterns_rank_higher() {
        // Each pair: (more specific, less specific).
        let cases: &[(&str, &str)] = &[
            ("/admin", "/admin/**"),
            ("/a/b", "/a/*"),
            ("/a/b/**", "/a/**"),
            ("/a/b/**", "/a/*/c"),
            ("/a/*/c", "/a/**"),
            ("/a/*/*", "/a/**"),
            ("/a/*", "/a/**"),
            ("/a/**/b", "/a/**"),
            ("/a/**/b/**", "/a/**"),
            ("/a/*/b/*", "/a/**/b/**"),
            ("/a/*/c/**", "/a/*/**/c"),
            ("/api/**", "/*/x/y/z"),
            ("/**/z", "/**"),
            ("/*", "/**"),
        ];
        for (hi, lo) in cases {
            assert_eq!(
                pat(hi).specificity().cmp(&pat(lo).specificity()),
                Ordering::Greater,
                "{hi:?} should beat {lo:?}"
            );
        }
    }

    fn pattern_text() -> impl Strategy<Value = String> {
        let seg = prop::sample::select(vec!["a", "b", "*", "**", "{p}"]);
        prop::collection::vec(seg, 0..6).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn path_text() -> impl Strategy<Value = String> {
        let seg = prop::sample::select(vec!["a", "b", "c"]);
        prop::collection::vec(seg, 0..7).prop_map(|s| format!("/{}", s.join("/")))
    }

    /// Straightforward recursive reference matcher.
    fn reference_match(pat: &[&str], path: &[&str]) -> bool {
        match pat.split_first() {
            None => path.is_empty(),
            Some((&"**", rest)) => (0..=path.len()).any(|k| reference_match(rest, &path[k..])),
            Some((&("*" | "{p}"), rest)) => !path.is_empty() && reference_match(rest, &path[1..]),
            Some((lit, rest)) => path.first() == Some(lit) && reference_match(rest, &path[1..]),
        }
    }

    proptest! {
        #[test]
        fn glob_matching_agrees_with_a_reference_matcher(p in pattern_text(), q in path_text()) {
            if let Ok(compiled) = PathPattern::parse(&p) {
                let pat_segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
                let path_segs: Vec<&str> = q.split('/').filter(|s| !s.is_empty()).collect();
                prop_assert_eq!(
                    compiled.matches(&path(&q)),
                    reference_match(&pat_segs, &path_segs)
                );
                // What the route table skips on never matches.
                if let Some(first) = compiled.first_literal() {
                    if path_segs.first() != Some(&first) {
                        prop_assert!(!compiled.matches(&path(&q)));
                    }
                }
            }
        }
    }
}
