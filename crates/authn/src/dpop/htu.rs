//! The `htu` comparison (RFC 9449 section 4.3 item 9): both the proof's
//! `htu` and the request target are reduced to one canonical spelling, then
//! compared as strings.
//!
//! The reduction is RFC 3986 section 6.2.2 and 6.2.3 normalization, plus the
//! gateway's own path rules so that `htu` names a resource exactly when the
//! router would:
//! - query and fragment are dropped (RFC 9449 ignores them);
//! - scheme and host are lowercased, the scheme must be `http` or `https`,
//!   the default port (80, 443) is removed, userinfo is refused;
//! - the path goes through [`normalize_path`], the router's normalizer:
//!   escapes of unreserved characters are decoded and other escapes get
//!   uppercase hex, dot segments are removed, empty segments dropped, case
//!   kept. An encoded slash (`%2F`) is never decoded: such a path is refused,
//!   so it never matches a request path (which cannot contain one either).

use stella_routing::normalize_path;

/// Longest URI considered; a proof is length-capped anyway.
const MAX_URI_LEN: usize = 8 * 1024;

/// Why a URI could not be reduced. Never carries the URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NotHttpUri;

/// The canonical `scheme://host[:port]/path` form of an absolute http(s)
/// URI, without query or fragment.
pub(super) fn normalize_htu(uri: &str) -> Result<String, NotHttpUri> {
    if uri.len() > MAX_URI_LEN {
        return Err(NotHttpUri);
    }
    // RFC 9449: "ignoring any query and fragment parts".
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..end];
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NotHttpUri);
    }
    let (scheme, rest) = uri.split_once("://").ok_or(NotHttpUri)?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        return Err(NotHttpUri);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(authority)?;

    let mut out = String::with_capacity(uri.len());
    out.push_str(if default_port == 443 { "https" } else { "http" });
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    if let Some(port) = port.filter(|p| *p != default_port) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    // RFC 3986 6.2.3: an empty path is "/" for http(s).
    let path = if path.is_empty() { "/" } else { path };
    let path = normalize_path(path.as_bytes()).map_err(|_| NotHttpUri)?;
    out.push_str(path.as_str());
    Ok(out)
}

/// Splits `host[:port]` (host a reg-name, IPv4 or bracketed IPv6 literal).
/// An empty port is no port (RFC 3986 6.2.3).
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), NotHttpUri> {
    if authority.contains('@') {
        return Err(NotHttpUri);
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(NotHttpUri)?;
        let (host, after) = authority.split_at(close + 1);
        let inner = &host[1..host.len() - 1];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(NotHttpUri);
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or(NotHttpUri)?)),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err(NotHttpUri);
        }
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(digits) => {
            if digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NotHttpUri);
            }
            Some(digits.parse::<u16>().map_err(|_| NotHttpUri)?)
        }
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(uri: &str) -> Result<String, NotHttpUri> {
        normalize_htu(uri)
    }

    #[test]
    fn equivalent_spellings_reduce_to_one_form() {
        let cases: &[(&str, &str)] = &[
            (
                "https://resource.example.org/protectedresource",
                "https://resource.example.org/protectedresource",
            ),
            (
                "https://RESOURCE.example.org:443/protectedresource?x=1",
                "https://resource.example.org/protectedresource",
            ),
            (
                "HTTPS://Resource.Example.Org/a#frag",
                "https://resource.example.org/a",
            ),
            ("http://h:80/a", "http://h/a"),
            ("http://h:443/a", "http://h:443/a"),
            ("https://h:80/a", "https://h:80/a"),
            ("https://h:/a", "https://h/a"),
            ("https://h:08443/a", "https://h:8443/a"),
            ("https://h", "https://h/"),
            ("https://h?q", "https://h/"),
            ("https://h/a/./b/../c", "https://h/a/c"),
            ("https://h/a/%2e%2e/c", "https://h/c"),
            ("https://h/%7e%41", "https://h/~A"),
            ("https://h/%c3%a9", "https://h/%C3%A9"),
            ("https://h/a//b/", "https://h/a/b/"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
            ("https://[FE80::1]/x", "https://[fe80::1]/x"),
            ("https://127.0.0.1:443/x", "https://127.0.0.1/x"),
        ];
        for (uri, want) in cases {
            assert_eq!(n(uri).as_deref(), Ok(*want), "{uri}");
        }
    }

    #[test]
    fn path_case_and_trailing_slash_are_kept() {
        assert_ne!(n("https://h/Path"), n("https://h/path"));
        assert_ne!(n("https://h/a/"), n("https://h/a"));
    }

    #[test]
    fn encoded_slash_is_never_decoded() {
        assert_eq!(n("https://h/a%2Fb"), Err(NotHttpUri));
        assert_eq!(n("https://h/a%2fb"), Err(NotHttpUri));
        assert_eq!(n("https://h/a/b").as_deref(), Ok("https://h/a/b"));
    }

    #[test]
    fn non_http_or_malformed_uris_are_refused() {
        for uri in [
            "",
            "/relative",
            "resource.example.org/x",
            "ftp://h/x",
            "https:/h/x",
            "https:///x",
            "https://user@h/x",
            "https://user:pass@h/x",
            "https://h:port/x",
            "https://h:65536/x",
            "https://h:123456/x",
            "https://h/a b",
            "https://h/a\u{e9}",
            "https://h/a\\b",
            "https://h/a;b",
            "https://h/%zz",
            "https://[::1/x",
            "https://[::1]x/x",
            "https://[]/x",
            "https://h%41/x",
            "https://h:1:2/x",
        ] {
            assert_eq!(n(uri), Err(NotHttpUri), "{uri:?}");
        }
    }
}
