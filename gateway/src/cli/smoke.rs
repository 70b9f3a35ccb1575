//! `smoke`: every route of a gateway configuration probed against a
//! running gateway. Each route gets a probe (method and concrete path from
//! its pattern, or from the route's `smoke:` block), sent twice: without
//! credentials (expected 401, any 2xx on anonymous routes, or the block's
//! `anonymous_status`) and with the credential profile the block names or
//! `--profile` gives (expected any 2xx, or the block's `status`), with
//! DPoP proofs made per request and the profile's client certificate,
//! to the profile's `base_url` if it has one (a client-certificate profile
//! probing the TLS listener) or else the one base URL of the run.
//! Prints one row per probe and a summary; exit 0 only when every row got
//! what it expected and no answer was a 5xx, 1 otherwise, 2 for invalid
//! files or arguments.

use crate::cli::client::call::{send_with, token_refused};
use crate::cli::client::profile::{self, Mode, Profile};
use crate::cli::client::token::{obtain, Credential};
use crate::cli::client::Http;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use stella_envelope::config::ProcessEnv;
use stella_policy::file::{self, Checked, FileSmoke, PolicyFile};
use stella_policy::Policies;
use stella_routing::{normalize_path, Lookup};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub struct SmokeArgs {
    /// The gateway configuration (its policies_dir, public_origin and
    /// plain listener are read).
    #[arg(long)]
    pub config: PathBuf,
    /// Where the gateway answers (default: gateway.public_origin, else the
    /// plain listener). A profile's own `base_url` wins for its probes.
    #[arg(long)]
    pub base_url: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only routes whose id matches this glob (`*`, `?`).
    #[arg(long)]
    pub routes: Option<String>,
    /// The profiles file (default $STELLA_GATEWAY_PROFILES, else
    /// ~/.config/stella-gateway/profiles.yaml); needed once a probe names a
    /// profile.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// The profile of routes whose `smoke:` block names none (default:
    /// such routes are probed without credentials only).
    #[arg(long)]
    pub profile: Option<String>,
}

/// What a row expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Status(u16),
    Success,
}

impl Expect {
    fn matches(self, got: u16) -> bool {
        match self {
            Expect::Status(s) => s == got,
            Expect::Success => (200..300).contains(&got),
        }
    }

    fn label(self) -> String {
        match self {
            Expect::Status(s) => s.to_string(),
            Expect::Success => "2xx".into(),
        }
    }
}

/// One planned probe.
struct Probe {
    route: String,
    method: String,
    path: String,
    host: Option<String>,
    /// None: without credentials.
    profile: Option<String>,
    expect: Expect,
}

/// One result row.
#[derive(Serialize)]
struct Row {
    route: String,
    method: String,
    path: String,
    credential: String,
    expected: String,
    /// The status, or None when no answer came.
    got: Option<u16>,
    ms: u64,
    ok: bool,
    /// Why it failed beyond the status (no answer, no token, a probe that
    /// reaches another route).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// A concrete path for a route pattern: every `**`, `*` and `{param}`
/// becomes `smoke`.
pub fn probe_path(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("**") {
            out.push_str("smoke");
            rest = &rest[2..];
        } else if c == '*' {
            out.push_str("smoke");
            rest = &rest[1..];
        } else if c == '{' {
            let end = rest.find('}').map(|i| i + 1).unwrap_or(rest.len());
            out.push_str("smoke");
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Shell-style glob over route ids: `*` any run, `?` one character.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// What smoke reads from the gateway configuration.
struct Target {
    policies_dir: PathBuf,
    base_url: String,
}

/// Reads the configuration as `run` does, environment overrides included
/// (`Gateway__Policies_Dir`, `Gateway__Public_Origin`, ...), so smoke probes
/// the routes the running gateway serves.
fn read_target(path: &Path, base_url: Option<&str>) -> Result<Target, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {}", e.kind()))?;
    let (config, errors) = crate::config::parse(&text, &shown.to_string(), &ProcessEnv);
    let config = match (config, errors.first()) {
        (Some(config), None) => config,
        (_, Some(e)) => return Err(format!("{shown}: {e}")),
        (None, None) => return Err(format!("{shown}: cannot be read as a configuration")),
    };
    let gateway = &config.gateway;
    let dir = gateway
        .policies_dir
        .as_deref()
        .ok_or_else(|| format!("{shown}: gateway.policies_dir: is not set"))?;
    let policies_dir = path.parent().unwrap_or(Path::new(".")).join(dir.trim());
    let base_url = match base_url {
        Some(url) => url.to_owned(),
        None => match (
            gateway.public_origin.as_deref(),
            gateway.listeners.http.as_deref(),
        ) {
            (Some(origin), _) => origin.to_owned(),
            (None, Some(addr)) => format!("http://{}", addr.replace("0.0.0.0", "127.0.0.1")),
            (None, None) => {
                return Err(format!(
                    "{shown}: neither gateway.public_origin nor gateway.listeners.http: pass --base-url"
                ))
            }
        },
    };
    Ok(Target {
        policies_dir,
        base_url: base_url.trim_end_matches('/').to_owned(),
    })
}

/// Every route's probes, in file and route order.
fn plan(
    dir: &Path,
    only: Option<&str>,
    default_profile: Option<&str>,
) -> Result<Vec<Probe>, Vec<String>> {
    let files = stella_policy::compile::read_yaml_files(dir)
        .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let mut probes = Vec::new();
    for source in &files {
        let Ok(value) = file::parse_yaml(&source.text) else {
            continue;
        };
        let (Some(parsed), _) = file::read_value::<PolicyFile>(value) else {
            continue;
        };
        for route in parsed.routes.into_iter().flatten() {
            let Checked::Valid(route) = route else {
                continue;
            };
            if only.is_some_and(|g| !glob_matches(g, &route.id)) {
                continue;
            }
            let smoke = route.smoke.clone().unwrap_or_default();
            let FileSmoke {
                path,
                method,
                profile,
                status,
                anonymous_status,
            } = smoke;
            let method = method
                .or_else(|| route.methods.as_ref().and_then(|m| m.first().cloned()))
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            let path = path.unwrap_or_else(|| probe_path(&route.path));
            let host = route.host.as_ref().map(|h| h.replace('*', "smoke"));
            let anonymous = route
                .policy
                .as_ref()
                .and_then(|p| p.anonymous)
                .unwrap_or(false);
            probes.push(Probe {
                route: route.id.clone(),
                method: method.clone(),
                path: path.clone(),
                host: host.clone(),
                profile: None,
                expect: match (anonymous_status, anonymous) {
                    (Some(s), _) => Expect::Status(s),
                    (None, true) => Expect::Success,
                    (None, false) => Expect::Status(401),
                },
            });
            if let Some(profile) = profile.or_else(|| default_profile.map(str::to_owned)) {
                probes.push(Probe {
                    route: route.id.clone(),
                    method,
                    path,
                    host,
                    profile: Some(profile),
                    expect: status.map(Expect::Status).unwrap_or(Expect::Success),
                });
            }
        }
    }
    Ok(probes)
}

/// `stella-gateway smoke`.
pub fn main(args: &SmokeArgs) -> i32 {
    let target = match read_target(&args.config, args.base_url.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    // The policies are checked as the gateway checks them; probes are then
    // looked up in the compiled table to be sure each reaches its route.
    let policies = match Policies::load_dir(&target.policies_dir, None) {
        Ok(p) => p,
        Err(errors) => {
            crate::config::report(&errors);
            return 2;
        }
    };
    let probes = match plan(
        &target.policies_dir,
        args.routes.as_deref(),
        args.profile.as_deref(),
    ) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return 2;
        }
    };
    if probes.is_empty() {
        eprintln!("no route to probe");
        return 2;
    }
    let wanted: Vec<&str> = {
        let mut names: Vec<&str> = probes.iter().filter_map(|p| p.profile.as_deref()).collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
    if !wanted.is_empty() {
        let loaded = profile::profiles_path(args.profiles.as_deref())
            .map_err(|e| vec![e])
            .and_then(|path| profile::load(&path).map(|all| (path, all)));
        match loaded {
            Ok((path, mut all)) => {
                for name in wanted {
                    match all.remove(name) {
                        Some(p) => {
                            profiles.insert(name.to_owned(), p);
                        }
                        None => {
                            eprintln!("{}: has no profile {name}", path.display());
                            return 2;
                        }
                    }
                }
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                return 2;
            }
        }
    }
    let anonymous_http = match Http::new(None, None) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    // One client and one token per profile; a failure is reported on
    // each of its rows.
    // A certificate profile has its client and no token.
    let mut sessions: BTreeMap<String, Result<(Http, Option<Credential>), String>> =
        BTreeMap::new();
    for (name, p) in &profiles {
        let session = Http::new(p.ca_file.as_deref(), p.cert.as_ref()).and_then(|http| {
            if p.mode == Mode::Certificate {
                return Ok((http, None));
            }
            obtain(p, &http, false)
                .map(|c| (http, Some(c)))
                .map_err(|e| format!("no token: {e}"))
        });
        sessions.insert(name.clone(), session);
    }

    let mut rows = Vec::with_capacity(probes.len());
    for probe in &probes {
        let mut note = None;
        if let Ok(path) = normalize_path(probe.path.as_bytes()) {
            match policies.lookup(probe.host.as_deref(), &probe.method, &path) {
                Lookup::Matched(route) if *route.value().route_id == *probe.route => {}
                Lookup::Matched(route) => {
                    note = Some(format!(
                        "probe reaches route {}; set smoke.path",
                        route.value().route_id
                    ))
                }
                _ => note = Some("probe reaches no route; set smoke.path".into()),
            }
        }
        // A profile may send its probes elsewhere (a client-certificate
        // profile to the TLS listener).
        let base = probe
            .profile
            .as_deref()
            .and_then(|name| profiles.get(name))
            .and_then(|p| p.base_url.as_deref())
            .unwrap_or(&target.base_url);
        let url = format!("{base}{}", probe.path);
        let headers: Vec<(String, String)> = probe
            .host
            .iter()
            .map(|h| ("host".to_owned(), h.clone()))
            .collect();
        let method = http::Method::from_bytes(probe.method.as_bytes()).unwrap_or(http::Method::GET);
        let started = Instant::now();
        let result = match &probe.profile {
            None => send_with(
                &anonymous_http,
                None,
                &method,
                &url,
                &headers,
                &Bytes::new(),
            ),
            Some(name) => match sessions.get_mut(name) {
                Some(Ok((http, credential))) => {
                    let send = |c: Option<&Credential>| {
                        send_with(http, c, &method, &url, &headers, &Bytes::new())
                    };
                    let first = send(credential.as_ref());
                    // A cached token the gateway refuses (the Authority's
                    // keys changed, say): once more with a new one, kept for
                    // the next rows, as `call` does.
                    let stale = credential.as_ref().is_some_and(|c| !c.fresh)
                        && first.as_ref().is_ok_and(|s| token_refused(&s.answer));
                    match (stale, profiles.get(name)) {
                        (true, Some(p)) => match obtain(p, http, true) {
                            Ok(fresh) => {
                                let again = send(Some(&fresh));
                                *credential = Some(fresh);
                                again
                            }
                            Err(e) => Err(format!("no token: {e}")),
                        },
                        _ => first,
                    }
                }
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("profile {name} not loaded")),
            },
        };
        let ms = started.elapsed().as_millis() as u64;
        let got = match result {
            Ok(sent) => Some(sent.answer.status.as_u16()),
            Err(e) => {
                note.get_or_insert(e);
                None
            }
        };
        let ok = note.is_none() && got.is_some_and(|g| probe.expect.matches(g));
        rows.push(Row {
            route: probe.route.clone(),
            method: probe.method.clone(),
            path: probe.path.clone(),
            credential: probe.profile.clone().unwrap_or_else(|| "none".into()),
            expected: probe.expect.label(),
            got,
            ms,
            ok,
            note,
        });
    }

    let summary = Summary::of(&rows);
    match args.format {
        Format::Table => print_table(&rows, &summary),
        Format::Csv => print_csv(&rows),
        Format::Json => {
            let doc = serde_json::json!({"rows": rows, "summary": summary});
            println!("{doc:#}");
        }
    }
    if summary.passed() {
        0
    } else {
        1
    }
}

#[derive(Serialize)]
struct Summary {
    rows: usize,
    ok: usize,
    failed: usize,
    #[serde(rename = "2xx")]
    s2xx: usize,
    #[serde(rename = "3xx")]
    s3xx: usize,
    #[serde(rename = "4xx")]
    s4xx: usize,
    #[serde(rename = "5xx")]
    s5xx: usize,
    /// Probes that got no answer.
    error: usize,
}

impl Summary {
    fn of(rows: &[Row]) -> Summary {
        let class = |c: u16| {
            rows.iter()
                .filter(|r| r.got.is_some_and(|g| g / 100 == c))
                .count()
        };
        let ok = rows.iter().filter(|r| r.ok).count();
        Summary {
            rows: rows.len(),
            ok,
            failed: rows.len() - ok,
            s2xx: class(2),
            s3xx: class(3),
            s4xx: class(4),
            s5xx: class(5),
            error: rows.iter().filter(|r| r.got.is_none()).count(),
        }
    }

    fn passed(&self) -> bool {
        self.failed == 0 && self.s5xx == 0
    }

    fn line(&self) -> String {
        format!(
            "{} {} rows: ok={} failed={} 2xx={} 3xx={} 4xx={} 5xx={} error={}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.rows,
            self.ok,
            self.failed,
            self.s2xx,
            self.s3xx,
            self.s4xx,
            self.s5xx,
            self.error
        )
    }
}

fn print_table(rows: &[Row], summary: &Summary) {
    let width = |f: &dyn Fn(&Row) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let wr = width(&|r| r.route.len(), "route");
    let wm = width(&|r| r.method.len(), "method");
    let wp = width(&|r| r.path.len(), "path");
    let wc = width(&|r| r.credential.len(), "credential");
    println!(
        "{:<wr$}  {:<wm$}  {:<wp$}  {:<wc$}  {:<8}  {:<4}  {:>6}  result",
        "route", "method", "path", "credential", "expected", "got", "ms"
    );
    for r in rows {
        let got = r.got.map(|g| g.to_string()).unwrap_or_else(|| "-".into());
        let result = match (&r.ok, &r.note) {
            (true, _) => "ok".to_owned(),
            (false, Some(note)) => format!("FAIL ({note})"),
            (false, None) => "FAIL".to_owned(),
        };
        println!(
            "{:<wr$}  {:<wm$}  {:<wp$}  {:<wc$}  {:<8}  {:<4}  {:>6}  {result}",
            r.route, r.method, r.path, r.credential, r.expected, got, r.ms
        );
    }
    println!("{}", summary.line());
}

fn print_csv(rows: &[Row]) {
    let field = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    println!("route,method,path,credential,expected,got,ms,ok,note");
    for r in rows {
        println!(
            "{},{},{},{},{},{},{},{},{}",
            field(&r.route),
            field(&r.method),
            field(&r.path),
            field(&r.credential),
            field(&r.expected),
            r.got.map(|g| g.to_string()).unwrap_or_default(),
            r.ms,
            r.ok,
            field(r.note.as_deref().unwrap_or(""))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_paths_fill_every_wildcard_and_parameter() {
        for (pattern, path) in [
            ("/items/**", "/items/smoke"),
            ("/a/*/b", "/a/smoke/b"),
            ("/executors/{eid}/heartbeat", "/executors/smoke/heartbeat"),
            ("/exact", "/exact"),
            ("/f/*.json", "/f/smoke.json"),
        ] {
            assert_eq!(probe_path(pattern), path, "{pattern}");
        }
    }

    #[test]
    fn route_globs_match_like_a_shell() {
        assert!(glob_matches("echo-*", "echo-items-read"));
        assert!(glob_matches("*-read", "echo-items-read"));
        assert!(glob_matches("echo-?pop", "echo-dpop"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("echo-*", "other"));
        assert!(!glob_matches("echo", "echo-dpop"));
        assert!(glob_matches("e*o*d*", "echo-dpop"));
    }

    #[test]
    fn a_row_passes_only_on_its_expected_status() {
        assert!(Expect::Success.matches(204));
        assert!(!Expect::Success.matches(401));
        assert!(Expect::Status(401).matches(401));
        assert!(!Expect::Status(200).matches(502));
    }
}
