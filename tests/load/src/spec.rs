//! What to send: request kinds (method, URL, credential, expected statuses,
//! weight) from the command line or a YAML/JSON spec file, parsed into
//! checked values. Pure: no I/O besides reading the spec file's text.

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// A set of HTTP statuses, written `2xx`, `200`, `200-204` or a
/// comma-separated list of those (`2xx,404`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    ranges: Vec<(u16, u16)>,
    text: String,
}

impl Expected {
    pub fn success() -> Expected {
        Expected::parse("2xx").unwrap_or_else(|_| unreachable!("2xx is a valid status set"))
    }

    pub fn parse(text: &str) -> Result<Expected, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim) {
            let bad =
                || format!("{item:?} is not a status, a class like 2xx, or a range like 200-204");
            let range =
                if let Some(class) = item.strip_suffix("xx").or_else(|| item.strip_suffix("XX")) {
                    match class.parse::<u16>() {
                        Ok(c) if (1..=5).contains(&c) => (c * 100, c * 100 + 99),
                        _ => return Err(bad()),
                    }
                } else if let Some((lo, hi)) = item.split_once('-') {
                    match (status(lo), status(hi)) {
                        (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
                        _ => return Err(bad()),
                    }
                } else {
                    let s = status(item).ok_or_else(bad)?;
                    (s, s)
                };
            ranges.push(range);
        }
        Ok(Expected {
            ranges,
            text: text.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        })
    }

    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= status && status <= hi)
    }
}

fn status(text: &str) -> Option<u16> {
    text.trim().parse().ok().filter(|s| (100..=599).contains(s))
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// Nothing.
    None,
    /// `Authorization: Bearer` with a client-credentials token of this client.
    Bearer(Client),
    /// `Authorization: DPoP` with a DPoP-bound token of this client and a
    /// fresh proof per request.
    Dpop(Client),
    /// `Authorization: Bearer` with the token read from this file at start
    /// (for a service that checks one known token itself).
    TokenFile(PathBuf),
}

/// An Authority client. The secret defaults to `<id>-secret`, the test
/// Authority's convention (`svc-bearer` / `svc-bearer-secret`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl Credential {
    pub fn parse(text: &str) -> Result<Credential, String> {
        let client = |rest: &str| -> Result<Client, String> {
            let (id, secret) = match rest.split_once(':') {
                Some((id, secret)) => (id, secret.to_owned()),
                None => (rest, format!("{rest}-secret")),
            };
            if id.is_empty() {
                return Err(format!("credential {text:?} names no client"));
            }
            Ok(Client {
                id: id.to_owned(),
                secret,
            })
        };
        match text.split_once(':') {
            None if text == "none" => Ok(Credential::None),
            Some(("bearer", rest)) => Ok(Credential::Bearer(client(rest)?)),
            Some(("dpop", rest)) => Ok(Credential::Dpop(client(rest)?)),
            Some(("token-file", path)) if !path.is_empty() => {
                Ok(Credential::TokenFile(PathBuf::from(path)))
            }
            _ => Err(format!(
                "credential {text:?}: expected none, bearer:CLIENT[:SECRET], dpop:CLIENT[:SECRET] or token-file:PATH"
            )),
        }
    }

    /// The client whose tokens this credential needs from the Authority.
    pub fn client(&self) -> Option<&Client> {
        match self {
            Credential::Bearer(c) | Credential::Dpop(c) => Some(c),
            Credential::None | Credential::TokenFile(_) => None,
        }
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::None => f.write_str("none"),
            Credential::Bearer(c) => write!(f, "bearer:{}", c.id),
            Credential::Dpop(c) => write!(f, "dpop:{}", c.id),
            Credential::TokenFile(p) => write!(f, "token-file:{}", p.display()),
        }
    }
}

/// One kind of request, checked.
#[derive(Debug, Clone)]
pub struct Kind {
    pub name: String,
    pub method: http::Method,
    pub url: http::Uri,
    /// `htu` of DPoP proofs: the URL without query or fragment.
    pub htu: String,
    pub credential: Credential,
    pub expect: Expected,
    pub weight: u32,
    pub body: bytes::Bytes,
}

/// A kind as written in a spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindFile {
    name: String,
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default = "none")]
    credential: String,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    body: String,
}

fn get() -> String {
    "GET".into()
}
fn none() -> String {
    "none".into()
}
fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    kinds: Vec<KindFile>,
}

impl Kind {
    fn build(file: KindFile) -> Result<Kind, String> {
        let at = |e: String| format!("kind {:?}: {e}", file.name);
        if file.name.is_empty() || file.name.contains(char::is_whitespace) {
            return Err(format!("kind name {:?} must be one word", file.name));
        }
        let method = http::Method::from_bytes(file.method.as_bytes())
            .map_err(|_| at(format!("{:?} is not a method", file.method)))?;
        let url: http::Uri = file
            .url
            .parse()
            .map_err(|e| at(format!("url {:?}: {e}", file.url)))?;
        match url.scheme_str() {
            Some("http") => {}
            _ => {
                return Err(at(format!(
                    "url {:?}: only http:// URLs are supported",
                    file.url
                )))
            }
        }
        let authority = url
            .authority()
            .ok_or_else(|| at(format!("url {:?} has no host", file.url)))?;
        let htu = format!("http://{authority}{}", url.path());
        let credential = Credential::parse(&file.credential).map_err(at)?;
        let expect = match &file.expect {
            Some(e) => Expected::parse(e).map_err(at)?,
            None => Expected::success(),
        };
        if file.weight == 0 {
            return Err(at("weight must be at least 1".into()));
        }
        Ok(Kind {
            name: file.name,
            method,
            url,
            htu,
            credential,
            expect,
            weight: file.weight,
            body: bytes::Bytes::from(file.body),
        })
    }

    /// A kind from the command line:
    /// `NAME METHOD URL CREDENTIAL [expect=STATUSES] [weight=N]`.
    pub fn parse_arg(text: &str) -> Result<Kind, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [name, method, url, credential, options @ ..] = words.as_slice() else {
            return Err(format!(
                "--kind {text:?}: expected NAME METHOD URL CREDENTIAL [expect=STATUSES] [weight=N]"
            ));
        };
        let mut file = KindFile {
            name: (*name).to_owned(),
            method: (*method).to_owned(),
            url: (*url).to_owned(),
            credential: (*credential).to_owned(),
            expect: None,
            weight: 1,
            body: String::new(),
        };
        for option in options {
            match option.split_once('=') {
                Some(("expect", v)) => file.expect = Some(v.to_owned()),
                Some(("weight", v)) => {
                    file.weight = v
                        .parse()
                        .map_err(|_| format!("--kind {name}: weight {v:?} is not a number"))?
                }
                _ => return Err(format!("--kind {name}: unknown option {option:?}")),
            }
        }
        Kind::build(file)
    }
}

/// Every kind of a spec file (YAML, or JSON, which is YAML too):
/// `kinds: [{name, method, url, credential, expect, weight, body}]`.
pub fn parse_spec(text: &str) -> Result<Vec<Kind>, String> {
    let spec: SpecFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    spec.kinds.into_iter().map(Kind::build).collect()
}

/// Checks that kind names are unique and that there is at least one.
pub fn check_kinds(kinds: &[Kind]) -> Result<(), String> {
    if kinds.is_empty() {
        return Err("no kinds: give --kind or --spec".into());
    }
    for (i, k) in kinds.iter().enumerate() {
        if kinds[..i].iter().any(|o| o.name == k.name) {
            return Err(format!("kind {:?} is given twice", k.name));
        }
    }
    Ok(())
}

/// The order in which kinds are sent: each kind `weight` times, spread out
/// (smooth weighted round robin), so any window of the schedule has the mix.
pub fn schedule(kinds: &[Kind]) -> Vec<usize> {
    let total: i64 = kinds.iter().map(|k| i64::from(k.weight)).sum();
    let mut current = vec![0i64; kinds.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, k) in current.iter_mut().zip(kinds) {
            *c += i64::from(k.weight);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, -(i as i64)))
        else {
            break;
        };
        current[best] -= total;
        order.push(best);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets_parse_classes_ranges_and_lists() {
        let cases: &[(&str, &[u16], &[u16])] = &[
            ("2xx", &[200, 204, 299], &[199, 300, 404]),
            ("404", &[404], &[200, 403]),
            ("200-204,404", &[200, 203, 204, 404], &[205, 403]),
            ("2xx, 403", &[201, 403], &[401]),
        ];
        for (text, inside, outside) in cases {
            let e = Expected::parse(text).unwrap();
            for s in *inside {
                assert!(e.contains(*s), "{text} should contain {s}");
            }
            for s in *outside {
                assert!(!e.contains(*s), "{text} should not contain {s}");
            }
        }
        for bad in ["", "2x", "6xx", "abc", "204-200", "42", "200,"] {
            assert!(Expected::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn credentials_name_a_client_and_default_its_secret() {
        assert_eq!(Credential::parse("none").unwrap(), Credential::None);
        assert_eq!(
            Credential::parse("bearer:svc-bearer").unwrap(),
            Credential::Bearer(Client {
                id: "svc-bearer".into(),
                secret: "svc-bearer-secret".into()
            })
        );
        assert_eq!(
            Credential::parse("dpop:c:s3").unwrap(),
            Credential::Dpop(Client {
                id: "c".into(),
                secret: "s3".into()
            })
        );
        for bad in ["", "bearer", "bearer:", "basic:x", "token-file:"] {
            assert!(Credential::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_kind_from_the_command_line_keeps_htu_without_the_query() {
        let k = Kind::parse_arg(
            "items GET http://127.0.0.1:8080/items/1?x=1 dpop:svc-dpop expect=2xx,404 weight=3",
        )
        .unwrap();
        assert_eq!(k.name, "items");
        assert_eq!(k.htu, "http://127.0.0.1:8080/items/1");
        assert_eq!(k.weight, 3);
        assert!(k.expect.contains(404));
        assert_eq!(k.expect.to_string(), "2xx,404");
        for bad in [
            "items GET http://a/x",
            "items GET https://a/x none",
            "items G@T http://a/x none",
            "items GET http://a/x none weight=0",
            "items GET http://a/x none colour=red",
        ] {
            assert!(Kind::parse_arg(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_spec_file_gives_defaults_and_refuses_unknown_fields() {
        let kinds = parse_spec(
            "kinds:\n  - {name: pub, url: 'http://h:1/public/x'}\n  - {name: w, method: POST, url: 'http://h:1/items/1', credential: 'bearer:svc-bearer', expect: '201', weight: 2, body: '{}'}\n",
        )
        .unwrap();
        assert_eq!(kinds[0].method, http::Method::GET);
        assert_eq!(kinds[0].credential, Credential::None);
        assert!(kinds[0].expect.contains(200));
        assert_eq!(kinds[1].body.as_ref(), b"{}");
        assert!(parse_spec("kinds: [{name: a, url: 'http://h/x', colour: red}]").is_err());
        assert!(check_kinds(&[kinds[0].clone(), kinds[0].clone()]).is_err());
        assert!(check_kinds(&[]).is_err());
    }

    #[test]
    fn the_schedule_spreads_each_kind_by_its_weight() {
        let mk = |name: &str, weight| {
            let mut k = Kind::parse_arg(&format!("{name} GET http://h/x none")).unwrap();
            k.weight = weight;
            k
        };
        let order = schedule(&[mk("a", 3), mk("b", 1), mk("c", 2)]);
        assert_eq!(order.len(), 6);
        assert_eq!(order.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(order.iter().filter(|&&i| i == 2).count(), 2);
        // Smooth: the heaviest kind never runs three times in a row.
        assert_eq!(order, vec![0, 2, 0, 1, 2, 0]);
    }
}
