//! The client's address behind load balancers (docs/design.md §3.10).
//!
//! A listener believes forwarding headers (`Forwarded`, RFC 7239, else
//! `X-Forwarded-For` and `X-Forwarded-Proto`) only from a peer inside its
//! `trusted_proxies`: the chain is walked from the right, trusted proxies
//! are skipped, and the right-most address that is not a trusted proxy is
//! the client. Anyone else's forwarding headers are ignored (and, as
//! always, removed before forwarding: `forward.rs`). With `proxy_protocol`
//! the peer is the source address of the connection's PROXY header
//! ([`proxy_protocol`]), which the listener writes into the connection's
//! socket digest before anything else reads it.
//!
//! Pure functions over addresses and header values; the proxy calls
//! [`resolve`] once per request. With no `trusted_proxies` it is the peer
//! address as it is, and no header is read.

pub mod proxy_protocol;

use ipnet::IpNet;
use std::net::IpAddr;

/// The CIDR blocks of a listener's `trusted_proxies`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`) or single
    /// addresses (a /32 or /128); each problem as (index, what is wrong).
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, Vec<(usize, String)>> {
        let mut nets = Vec::new();
        let mut errors = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let text = entry.trim();
            let parsed = match text.parse::<IpNet>() {
                Ok(net) => Ok(net.trunc()),
                Err(_) => text.parse::<IpAddr>().map(IpNet::from),
            };
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => errors.push((
                    i,
                    "is not a cidr block or an ip address (e.g. 10.0.0.0/8, 2001:db8::/32)"
                        .to_owned(),
                )),
            }
        }
        if errors.is_empty() {
            Ok(TrustedProxies(nets))
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in one of the blocks (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The blocks as configured (normalized), for the printed configuration.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// How a listener learns the client's address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyTrust {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
}

/// The scheme the client used, as a trusted proxy reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn parse(value: &str) -> Option<Scheme> {
        let value = value.trim().trim_matches('"');
        if value.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else if value.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }
}

/// The client of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// The client's address; `None` only when the connection has no IP
    /// peer (never on the gateway's TCP listeners).
    pub ip: Option<IpAddr>,
    /// The scheme a trusted proxy reported; `None`: the listener's own.
    pub scheme: Option<Scheme>,
}

/// The client of a request that arrived from `peer` with these header
/// values (every line of each, in order).
pub fn resolve<'a>(
    peer: Option<IpAddr>,
    trusted: &TrustedProxies,
    forwarded: impl Fn() -> Vec<&'a [u8]>,
    x_forwarded_for: impl Fn() -> Vec<&'a [u8]>,
    x_forwarded_proto: impl Fn() -> Vec<&'a [u8]>,
) -> Client {
    let peer = peer.map(|ip| ip.to_canonical());
    let untrusted = Client {
        ip: peer,
        scheme: None,
    };
    let Some(peer_ip) = peer.filter(|ip| !trusted.is_empty() && trusted.contains(*ip)) else {
        return untrusted;
    };
    let forwarded = forwarded();
    if !forwarded.is_empty() {
        let elements = forwarded_elements(&forwarded);
        let (index, ip) = walk(peer_ip, trusted, elements.iter().map(|e| e.node));
        let scheme = index
            .and_then(|i| elements[i].proto)
            .and_then(Scheme::parse);
        return Client {
            ip: Some(ip),
            scheme,
        };
    }
    let xff = list_items(&x_forwarded_for());
    let (index, ip) = walk(peer_ip, trusted, xff.iter().copied());
    let protos = list_items(&x_forwarded_proto());
    // Index-aligned when each proxy appended one of each; otherwise the
    // nearest proxy's word.
    let proto = match index {
        Some(i) if protos.len() == xff.len() => protos.get(i),
        _ => protos.last(),
    };
    Client {
        ip: Some(ip),
        scheme: proto.and_then(|p| Scheme::parse(p)),
    }
}

/// The client of a request on a listener that trusts `trusted`: one
/// branch and the peer's address when nothing is trusted.
pub fn of_session(session: &pingora::proxy::Session, trusted: &TrustedProxies) -> Client {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if trusted.is_empty() {
        return Client {
            ip: peer.map(|ip| ip.to_canonical()),
            scheme: None,
        };
    }
    let req = session.req_header();
    let lines = |name: &'static str| {
        move || -> Vec<&[u8]> {
            req.headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .collect()
        }
    };
    resolve(
        peer,
        trusted,
        lines("forwarded"),
        lines("x-forwarded-for"),
        lines("x-forwarded-proto"),
    )
}

/// Walks `nodes` (left to right as sent) from the right, starting from the
/// trusted peer: a trusted address is skipped, the first other address is
/// the client. An entry that is no address (`unknown`, an obfuscated
/// identifier, garbage) stops the walk: nothing left of it can be
/// believed, so the client is the last trusted hop passed. Returns the
/// index of the element the client came from (`None`: the peer itself).
fn walk<'a>(
    peer: IpAddr,
    trusted: &TrustedProxies,
    nodes: impl DoubleEndedIterator<Item = &'a str> + ExactSizeIterator,
) -> (Option<usize>, IpAddr) {
    let mut last = (None, peer);
    let count = nodes.len();
    for (back, node) in nodes.rev().enumerate() {
        let index = count - 1 - back;
        let Some(ip) = node_ip(node) else {
            return last;
        };
        if !trusted.contains(ip) {
            return (Some(index), ip);
        }
        last = (Some(index), ip);
    }
    last
}

/// The comma-separated items of every line, trimmed, empty ones dropped.
fn list_items<'a>(lines: &[&'a [u8]]) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|line| std::str::from_utf8(line).ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

/// An address as a forwarding header writes it: `192.0.2.1`,
/// `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`,
/// optionally quoted.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // IPv4 with a port.
    let (ip, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// One element of a `Forwarded` header: its `for` node and `proto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Element<'a> {
    /// Empty when the element has no `for` (which stops a walk).
    node: &'a str,
    proto: Option<&'a str>,
}

/// The elements of every `Forwarded` line (RFC 7239 section 4), in order.
/// Quoted strings may hold `,` and `;`; a line that is not UTF-8 gives one
/// element without `for`, which stops a walk there.
fn forwarded_elements<'a>(lines: &[&'a [u8]]) -> Vec<Element<'a>> {
    let mut out = Vec::new();
    for line in lines {
        let Ok(line) = std::str::from_utf8(line) else {
            out.push(Element::default());
            continue;
        };
        for element in split_unquoted(line, ',') {
            if element.trim().is_empty() {
                continue;
            }
            let mut parsed = Element::default();
            for pair in split_unquoted(element, ';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim();
                match name.trim() {
                    n if n.eq_ignore_ascii_case("for") => parsed.node = value,
                    n if n.eq_ignore_ascii_case("proto") => parsed.proto = Some(value),
                    _ => {}
                }
            }
            out.push(parsed);
        }
    }
    out
}

/// Splits on `sep` outside double quotes (a backslash escapes inside them).
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        let owned: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
        TrustedProxies::parse(&owned).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Resolves with headers given as (name, value) lines.
    fn client(peer: &str, blocks: &[&str], headers: &[(&str, &'static str)]) -> Client {
        let lines = |name: &str| -> Vec<&'static [u8]> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
                .collect()
        };
        resolve(
            Some(ip(peer)),
            &trusted(blocks),
            || lines("forwarded"),
            || lines("x-forwarded-for"),
            || lines("x-forwarded-proto"),
        )
    }

    #[test]
    fn bad_blocks_are_refused_by_index_and_addresses_are_single_blocks() {
        let entries: Vec<String> = ["10.0.0.0/8", "nonsense", "192.0.2.7", "10.0.0.0/33", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let errors = TrustedProxies::parse(&entries).unwrap_err();
        assert_eq!(
            errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let ok = trusted(&["10.1.2.3/8", "192.0.2.7", "2001:db8::/32"]);
        assert_eq!(
            ok.to_strings(),
            vec!["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
        );
        assert!(ok.contains(ip("10.200.0.1")));
        assert!(ok.contains(ip("::ffff:10.9.9.9")), "ipv4-mapped counts");
        assert!(!ok.contains(ip("192.0.2.8")));
        assert!(ok.contains(ip("2001:db8:1::5")));
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_and_no_header_is_read() {
        let peer = Some(ip("203.0.113.9"));
        let never = || -> Vec<&'static [u8]> { panic!("a header was read") };
        let c = resolve(peer, &TrustedProxies::default(), never, never, never);
        assert_eq!(
            c,
            Client {
                ip: peer,
                scheme: None
            }
        );
    }

    #[test]
    fn an_untrusted_peer_spoofing_forwarding_headers_is_the_client() {
        let c = client(
            "203.0.113.9",
            &["10.0.0.0/8"],
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=7.7.7.7;proto=https"),
            ],
        );
        assert_eq!(c.ip, Some(ip("203.0.113.9")));
        assert_eq!(c.scheme, None);
    }

    #[test]
    fn the_right_most_untrusted_address_of_x_forwarded_for_is_the_client() {
        // A client that prepends a made-up address gains nothing: the
        // proxies append, so the walk from the right meets the real one.
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[
                ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "https"),
            ],
        );
        assert_eq!(c.ip, Some(ip("198.51.100.4")));
        assert_eq!(c.scheme, Some(Scheme::Https));
        // Every hop trusted: the left-most.
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[("x-forwarded-for", "10.0.0.7, 10.0.0.1")],
        );
        assert_eq!(c.ip, Some(ip("10.0.0.7")));
        // No header from a trusted peer: the peer.
        let c = client("10.0.0.2", &["10.0.0.0/8"], &[]);
        assert_eq!(c.ip, Some(ip("10.0.0.2")));
        // Ports and brackets as some proxies write them.
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[("x-forwarded-for", "[2001:db8::5]:443, 198.51.100.4:5555")],
        );
        assert_eq!(c.ip, Some(ip("198.51.100.4")));
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk_at_the_last_trusted_hop() {
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[("x-forwarded-for", "198.51.100.4, unknown, 10.0.0.1")],
        );
        assert_eq!(c.ip, Some(ip("10.0.0.1")));
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[("x-forwarded-for", "not an address")],
        );
        assert_eq!(c.ip, Some(ip("10.0.0.2")));
    }

    #[test]
    fn proto_is_aligned_with_the_client_when_every_hop_added_one() {
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[
                ("x-forwarded-for", "198.51.100.4, 10.0.0.1"),
                ("x-forwarded-proto", "https, http"),
            ],
        );
        assert_eq!(c.scheme, Some(Scheme::Https));
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[
                ("x-forwarded-for", "198.51.100.4"),
                ("x-forwarded-proto", "gopher"),
            ],
        );
        assert_eq!(c.scheme, None, "only http and https are believed");
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_follows_rfc_7239() {
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8", "2001:db8::/32"],
            &[
                (
                    "forwarded",
                    "for=6.6.6.6, for=\"[2001:db9::17]:4711\";proto=https;by=10.0.0.1",
                ),
                ("forwarded", "for=\"[2001:db8::1]\";proto=http"),
                ("x-forwarded-for", "5.5.5.5"),
            ],
        );
        assert_eq!(c.ip, Some(ip("2001:db9::17")));
        assert_eq!(c.scheme, Some(Scheme::Https));
        // Quoted separators do not split elements; case is ignored.
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[(
                "forwarded",
                "For=\"198.51.100.4\";host=\"a,b;c\";PROTO=HTTPS",
            )],
        );
        assert_eq!(c.ip, Some(ip("198.51.100.4")));
        assert_eq!(c.scheme, Some(Scheme::Https));
        // Obfuscated identifiers stop the walk.
        let c = client(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[("forwarded", "for=198.51.100.4, for=_hidden, for=10.0.0.1")],
        );
        assert_eq!(c.ip, Some(ip("10.0.0.1")));
    }

    #[test]
    fn malformed_input_never_panics() {
        for value in [
            "",
            ",,,",
            "for=",
            "for=\"",
            "for=\"[",
            "for=[::1",
            "for=[::1]x",
            ";;;=",
            "\"\\",
            "for=1.2.3.4:99999",
            "for=\u{fe0f}",
            "=,=;=",
        ] {
            let lines: Vec<&[u8]> = vec![value.as_bytes()];
            let _ = forwarded_elements(&lines);
            let _ = list_items(&lines).into_iter().map(node_ip).count();
        }
        let bad: Vec<&[u8]> = vec![&[0xff, 0xfe]];
        assert_eq!(forwarded_elements(&bad), vec![Element::default()]);
    }
}
