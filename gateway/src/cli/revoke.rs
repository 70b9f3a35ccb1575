//! `revoke`, `unrevoke` and `revocations list`: the revocation calls of a
//! running gateway's admin listener (gateway/src/admin/revocations.rs), with
//! the operator token read from a file. Exit codes: 0 done; 1 the gateway
//! refused the call (a wrong token, an invalid entry, nothing to remove),
//! or applied it on that node only (its shared store did not answer);
//! 2 invalid arguments, an unreadable token or value file, or an admin
//! listener that cannot be reached. Values are sent in the request body
//! (a value file keeps them off the command line) and never printed.

use super::client::Http;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where the admin listener is and how to prove the caller is an operator.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin listener, such as http://127.0.0.1:9090.
    #[arg(long)]
    pub admin: String,
    /// A file holding the operator token (needed when the gateway sets
    /// `gateway.admin.operator_token_file`). Its first line that is not a
    /// comment; a `name token` line gives the token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// The value an entry names: on the command line, or in a file.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct ValueArgs {
    /// The identifier itself (a jti, subject, client id, thumbprint,
    /// SPIFFE ID, tenant or sid).
    #[arg(long)]
    pub value: Option<String>,
    /// A file holding the identifier (trailing line breaks are dropped):
    /// keeps it out of the process list and the shell history.
    #[arg(long, value_name = "FILE")]
    pub value_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// jti, sub, client_id, jkt, x5t#S256 (or x5t_s256), spiffe_id, tenant
    /// or sid.
    #[arg(long)]
    pub kind: String,
    #[command(flatten)]
    pub value: ValueArgs,
    /// How long the revocation lasts: 90s, 15m, 12h, 7d, 1h30m (at most
    /// 366 days).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why, for the audit log and the listing (at most 256 characters).
    #[arg(long)]
    pub reason: String,
    /// For sub: the issuer whose subject this is (default: the gateway's
    /// only Authority). For jti, client_id and sid: revoke only that
    /// issuer's (default: every issuer's identifier of that value).
    #[arg(long)]
    pub issuer: Option<String>,
}

#[derive(clap::Args)]
pub struct UnrevokeArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The kind of the entry, as for `revoke`.
    #[arg(long)]
    pub kind: String,
    /// The identifier.
    #[arg(long, group = "which")]
    pub value: Option<String>,
    /// A file holding the identifier.
    #[arg(long, value_name = "FILE", group = "which")]
    pub value_file: Option<PathBuf>,
    /// The SHA-256 of the identifier, or a prefix of it of at least 8 hex
    /// digits, as `revocations list` shows it.
    #[arg(long, group = "which")]
    pub hash: Option<String>,
    /// For sub, jti, client_id, sid: remove the entry of this issuer only
    /// (without it, every entry of that value goes).
    #[arg(long)]
    pub issuer: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum RevocationsCommand {
    /// Every entry: kind, issuer, a prefix of the value's SHA-256, expiry,
    /// hits, operator and reason; never the value.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// `table` or `json` (the admin listener's answer).
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// `revoke`.
pub fn revoke(args: &RevokeArgs) -> i32 {
    let value = match read_value(
        args.value.value.as_deref(),
        args.value.value_file.as_deref(),
    ) {
        Ok(value) => value,
        Err(e) => return usage(&e),
    };
    let seconds = match parse_duration(&args.duration) {
        Some(seconds) => seconds,
        None => return usage("--for: a duration such as 90s, 15m, 12h, 7d or 1h30m"),
    };
    let mut body = json!({
        "kind": args.kind,
        "value": value,
        "for_seconds": seconds,
        "reason": args.reason,
    });
    if let Some(issuer) = &args.issuer {
        body["issuer"] = json!(issuer);
    }
    let answer = match call(&args.admin, http::Method::POST, "/revocations", Some(&body)) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    match answer.0 {
        200 | 201 => {
            let r = &answer.1["revocation"];
            println!(
                "{}: {} {} revoked for {} s (until unix {}), reason: {}",
                answer.1["result"].as_str().unwrap_or("done"),
                r["kind"].as_str().unwrap_or("?"),
                r["value_sha256_prefix"].as_str().unwrap_or("?"),
                r["expires_in_seconds"],
                r["expires_at"],
                r["reason"].as_str().unwrap_or(""),
            );
            reach(&answer.1)
        }
        _ => refused(&answer),
    }
}

/// `unrevoke`.
pub fn unrevoke(args: &UnrevokeArgs) -> i32 {
    let selector = match (&args.hash, &args.value, &args.value_file) {
        (Some(hash), None, None) => hash.trim().to_ascii_lowercase(),
        (None, value, file) if value.is_some() || file.is_some() => {
            match read_value(value.as_deref(), file.as_deref()) {
                Ok(value) => value,
                Err(e) => return usage(&e),
            }
        }
        _ => return usage("give one of --value, --value-file and --hash"),
    };
    let mut path = format!(
        "/revocations/{}/{}",
        percent_encode(&args.kind),
        percent_encode(&selector)
    );
    if let Some(issuer) = &args.issuer {
        path.push_str(&format!("?issuer={}", percent_encode(issuer)));
    }
    let answer = match call(&args.admin, http::Method::DELETE, &path, None) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    match answer.0 {
        200 => {
            for r in answer.1["removed"].as_array().into_iter().flatten() {
                println!(
                    "removed: {} {}{} (reason was: {})",
                    r["kind"].as_str().unwrap_or("?"),
                    r["value_sha256_prefix"].as_str().unwrap_or("?"),
                    r["issuer"]
                        .as_str()
                        .map(|i| format!(" at {i}"))
                        .unwrap_or_default(),
                    r["reason"].as_str().unwrap_or(""),
                );
            }
            reach(&answer.1)
        }
        _ => refused(&answer),
    }
}

/// `revocations list`.
pub fn list(command: &RevocationsCommand) -> i32 {
    let RevocationsCommand::List { admin, format } = command;
    if format != "table" && format != "json" {
        return usage("--format: table or json");
    }
    let answer = match call(admin, http::Method::GET, "/revocations", None) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    if answer.0 != 200 {
        return refused(&answer);
    }
    if format == "json" {
        println!("{}", answer.1);
        return 0;
    }
    println!(
        "{:<10} {:<14} {:>10} {:>6} {:<12} {:<24} reason",
        "kind", "sha256", "expires_in", "hits", "operator", "issuer"
    );
    let rows = answer.1["revocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in &rows {
        println!(
            "{:<10} {:<14} {:>9}s {:>6} {:<12} {:<24} {}",
            r["kind"].as_str().unwrap_or("?"),
            r["value_sha256_prefix"].as_str().unwrap_or("?"),
            r["expires_in_seconds"],
            r["hits"],
            r["operator"].as_str().unwrap_or(""),
            r["issuer"].as_str().unwrap_or("-"),
            r["reason"].as_str().unwrap_or(""),
        );
    }
    println!("{} revocations", rows.len());
    0
}

fn usage(message: &str) -> i32 {
    eprintln!("{message}");
    2
}

/// The gateway's refusal: its problem detail, exit 1.
fn refused(answer: &(u16, Value)) -> i32 {
    let (status, body) = answer;
    eprintln!(
        "refused ({status} {}): {}",
        body["error"].as_str().unwrap_or("error"),
        body["detail"].as_str().unwrap_or("")
    );
    1
}

/// Warns about a change that did not reach the state file; exit 1 when it
/// did not reach the shared store (the other nodes do not have it yet).
fn reach(body: &Value) -> i32 {
    if body["persisted"] == json!(false) {
        eprintln!(
            "warning: applied, but the gateway could not write its state file: a restart would lose this change (see its log)"
        );
    }
    if body["shared"] == json!(false) {
        eprintln!(
            "applied on this node only: the shared revocation store did not answer; the node pushes the change when it does (or make the call on every node)"
        );
        return 1;
    }
    0
}

/// One call to the admin listener: (status, JSON body), or the exit code.
pub fn call(
    admin: &AdminArgs,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), i32> {
    let url = format!("{}{path}", admin.admin.trim_end_matches('/'));
    let uri: http::Uri = url.parse().map_err(|_| usage("--admin: not a url"))?;
    let token = match &admin.token_file {
        Some(file) => Some(read_token(file).map_err(|e| usage(&e))?),
        None => None,
    };
    let mut request = http::Request::builder().method(method).uri(uri);
    if let Some(token) = &token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", &**token));
    }
    let bytes = match body {
        Some(body) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(bytes))
        .map_err(|_| usage("--admin: not a url"))?;
    let http = Http::new(None, None).map_err(|e| {
        eprintln!("{e}");
        2
    })?;
    let answer = http.send(request).map_err(|e| {
        eprintln!("cannot reach the admin listener: {e}");
        2
    })?;
    let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    Ok((answer.status.as_u16(), body))
}

/// The token in an operator's token file: the first line that is neither
/// blank nor a comment; of a `name token` line, the token.
fn read_token(file: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file)
            .map_err(|e| format!("--token-file: {}: {}", file.display(), e.kind()))?,
    );
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .ok_or_else(|| format!("--token-file: {}: holds no token", file.display()))?;
    Ok(zeroize::Zeroizing::new(token.to_owned()))
}

fn read_value(value: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    match (value, file) {
        (Some(value), None) => Ok(value.to_owned()),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("--value-file: {}: {}", file.display(), e.kind())),
        _ => Err("give one of --value and --value-file".into()),
    }
}

/// Seconds of `90s`, `15m`, `12h`, `7d`, `1h30m` or a bare number of
/// seconds; `None` for anything else or zero.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return (seconds > 0).then_some(seconds);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && total > 0).then_some(total)
}

/// Percent-encodes everything but the unreserved set (RFC 3986), for a
/// path segment or a query value.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds() {
        for (text, want) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("15m", Some(900)),
            ("12h", Some(43_200)),
            ("7d", Some(604_800)),
            ("1h30m", Some(5_400)),
            ("0", None),
            ("0s", None),
            ("", None),
            ("10", Some(10)),
            ("5x", None),
            ("h", None),
            ("1h30", None),
            ("-5m", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            percent_encode("spiffe://example.org/w"),
            "spiffe%3A%2F%2Fexample.org%2Fw"
        );
        assert_eq!(percent_encode("x5t#S256"), "x5t%23S256");
        assert_eq!(percent_encode("abc-_.~"), "abc-_.~");
    }
}
