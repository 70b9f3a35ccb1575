//! `call`: one request with the profile's credentials, printed like
//! `curl -i`. DPoP: `Authorization: DPoP <token>` and a fresh proof for
//! this method and URL (`ath` included); when the server answers 401 with
//! `use_dpop_nonce` and a `DPoP-Nonce`, the request is sent once more with
//! a new proof carrying that nonce. Bearer and certificate-bound tokens go
//! as `Authorization: Bearer`; the profile's client certificate, if any,
//! is presented on TLS connections.

use super::profile::Mode;
use super::token::Credential;
use super::{now, Answer, Http};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct CallArgs {
    /// The profiles file (default $STELLA_GATEWAY_PROFILES, else
    /// ~/.config/stella-gateway/profiles.yaml).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// Exit 22 when the status is 400 or above (as curl --fail).
    #[arg(long)]
    pub fail: bool,
    pub method: String,
    pub url: String,
}

/// What one authorized exchange did.
pub struct Sent {
    pub answer: Answer,
    /// The first answer asked for a DPoP nonce and the request was sent
    /// again with it.
    pub nonce_retried: bool,
}

/// Sends `method url` with `credential` (none: anonymous), retrying once
/// with the server's DPoP nonce when it asks for one.
pub fn send_with(
    http: &Http,
    credential: Option<&Credential>,
    method: &http::Method,
    url: &str,
    headers: &[(String, String)],
    body: &Bytes,
) -> Result<Sent, String> {
    let attempt = |nonce: Option<&str>| -> Result<Answer, String> {
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(c) = credential {
            match (c.mode, &c.key) {
                (Mode::Dpop, Some(key)) => {
                    builder = builder
                        .header(
                            http::header::AUTHORIZATION,
                            format!("DPoP {}", c.access_token.as_str()),
                        )
                        .header(
                            "DPoP",
                            key.proof(
                                method.as_str(),
                                url,
                                Some(c.access_token.as_str()),
                                nonce,
                                now(),
                            )?,
                        );
                }
                _ => {
                    builder = builder.header(
                        http::header::AUTHORIZATION,
                        format!("Bearer {}", c.access_token.as_str()),
                    );
                }
            }
        }
        let request = builder
            .body(Full::new(body.clone()))
            .map_err(|_| "not a usable request (method, url or header)".to_string())?;
        http.send(request)
    };
    let answer = attempt(None)?;
    let dpop = credential.is_some_and(|c| c.mode == Mode::Dpop);
    if dpop
        && answer.status == http::StatusCode::UNAUTHORIZED
        && answer.challenges().contains("use_dpop_nonce")
    {
        if let Some(nonce) = answer.header("dpop-nonce").map(str::to_owned) {
            return Ok(Sent {
                answer: attempt(Some(&nonce))?,
                nonce_retried: true,
            });
        }
    }
    Ok(Sent {
        answer,
        nonce_retried: false,
    })
}

/// A 401 whose challenge says the token itself is no good.
pub fn token_refused(answer: &Answer) -> bool {
    answer.status == http::StatusCode::UNAUTHORIZED
        && answer.challenges().contains("error=\"invalid_token\"")
}

/// `Name: value` pairs from `-H`.
pub fn parse_headers(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| "-H: expected `Name: value`".to_string())?;
            let name = name.trim();
            if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("dpop") {
                return Err(format!("-H: {name} is set from the profile"));
            }
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// `stella-gateway call`.
pub fn main(args: &CallArgs) -> i32 {
    let method = match http::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            eprintln!("METHOD: not an http method");
            return 2;
        }
    };
    if args
        .url
        .parse::<http::Uri>()
        .map(|u| u.scheme().is_none())
        .unwrap_or(true)
    {
        eprintln!("URL: expected an absolute http(s) url");
        return 2;
    }
    let headers = match parse_headers(&args.headers) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let profile = match super::profile::profiles_path(args.profiles.as_deref())
        .map_err(|e| vec![e])
        .and_then(|path| super::profile::load_one(&path, &args.profile))
    {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return 2;
        }
    };
    let http = match Http::new(profile.ca_file.as_deref(), profile.cert.as_ref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    // A certificate profile sends its client certificate alone.
    let credential = match profile.mode {
        Mode::Certificate => None,
        _ => match super::token::obtain(&profile, &http, false) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("token: {e}");
                return 1;
            }
        },
    };
    let body = Bytes::from(args.data.clone().unwrap_or_default());
    let send = |credential: Option<&Credential>| {
        send_with(&http, credential, &method, &args.url, &headers, &body)
    };
    let mut sent = match send(credential.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    // A cached token the server no longer accepts (revoked, signed with a
    // retired key): one more try with a new one.
    if credential.as_ref().is_some_and(|c| !c.fresh) && token_refused(&sent.answer) {
        eprintln!("* the cached token was refused; asking the Authority for a new one");
        let retried = super::token::obtain(&profile, &http, true)
            .map_err(|e| format!("token: {e}"))
            .and_then(|fresh| send(Some(&fresh)));
        sent = match retried {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
    }
    if sent.nonce_retried {
        eprintln!("* the server asked for a DPoP nonce; sent again with it");
    }
    print_answer(&sent.answer);
    if args.fail && sent.answer.status.as_u16() >= 400 {
        22
    } else {
        0
    }
}

/// Status line, headers, blank line, body: as `curl -i` shows them.
fn print_answer(answer: &Answer) {
    let mut out = std::io::stdout().lock();
    let version = match answer.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    };
    let _ = write!(
        out,
        "{version} {} {}\r\n",
        answer.status.as_u16(),
        answer.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &answer.headers {
        let _ = write!(
            out,
            "{name}: {}\r\n",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    let _ = write!(out, "\r\n");
    let _ = out.write_all(&answer.body);
    let _ = out.flush();
}
