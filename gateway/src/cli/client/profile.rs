//! Credential profiles: a small YAML file naming, per profile, the
//! Authority, the client and how its tokens are bound.
//!
//! ```yaml
//! profiles:
//!   default:
//!     issuer: https://authority.example.com
//!     client_id: svc-dpop
//!     secret_file: svc-dpop.secret     # the client secret, one line
//!     mode: dpop                       # bearer (default), dpop, mtls or certificate
//!     key_file: svc-dpop.jwk           # DPoP key (private JWK); made if missing
//!     cert_file: client.pem            # client certificate (mtls; any mode may send one)
//!     cert_key_file: client.key
//!     ca_file: ca.pem                  # extra roots for https
//!     scope: echo.read echo.write      # optional
//!     resource: https://api.example.com  # optional (RFC 8707)
//!     cache_file: default.token.json   # default <name>.token.json
//!     base_url: https://gw.example.com:8443  # smoke: where this profile's probes go
//! ```
//!
//! `certificate` gets no token: the client certificate alone (SPIFFE
//! routes); it needs `cert_file` and `cert_key_file`, not `issuer` or
//! `client_id`.
//!
//! Relative paths are relative to the profiles file. The file is read into
//! [`Profile`], where every path is resolved and every mode has what it
//! needs.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the profile's access tokens are bound to their holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Bearer,
    Dpop,
    Mtls,
    /// No token: the client certificate alone (SPIFFE routes).
    Certificate,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bearer => "bearer",
            Mode::Dpop => "dpop",
            Mode::Mtls => "mtls",
            Mode::Certificate => "certificate",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    profiles: BTreeMap<String, FileProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProfile {
    issuer: Option<String>,
    client_id: Option<String>,
    secret_file: Option<PathBuf>,
    mode: Option<Mode>,
    key_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    cert_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    scope: Option<String>,
    resource: Option<String>,
    cache_file: Option<PathBuf>,
    base_url: Option<String>,
}

/// A checked profile; paths are absolute or relative to the working folder.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// Empty in certificate mode (no token).
    pub issuer: String,
    /// Empty in certificate mode (no token).
    pub client_id: String,
    pub secret_file: Option<PathBuf>,
    pub mode: Mode,
    /// Set in DPoP mode.
    pub key_file: Option<PathBuf>,
    /// Certificate and key, both or neither.
    pub cert: Option<(PathBuf, PathBuf)>,
    pub ca_file: Option<PathBuf>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub cache_file: PathBuf,
    /// Where `smoke` sends the probes made with this profile, e.g. the TLS
    /// listener for a client-certificate profile; no trailing slash. Unset:
    /// smoke's `--base-url` (or its default).
    pub base_url: Option<String>,
}

/// `--profiles`, else `$STELLA_GATEWAY_PROFILES`, else
/// `$HOME/.config/stella-gateway/profiles.yaml`.
pub fn profiles_path(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("STELLA_GATEWAY_PROFILES") {
        return Ok(PathBuf::from(path));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config/stella-gateway/profiles.yaml")),
        None => Err("no profiles file: pass --profiles or set STELLA_GATEWAY_PROFILES".into()),
    }
}

/// Every profile of the file at `path`, or the problems found (each
/// `file: profiles.NAME.key: problem`; values are never quoted).
pub fn load(path: &Path) -> Result<BTreeMap<String, Profile>, Vec<String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{shown}: cannot read: {}", e.kind())])?;
    let file: ProfilesFile = serde_yaml::from_str(&text).map_err(|e| {
        // serde_yaml's message may quote a value; keep only where it is.
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        let message = e.to_string();
        // "unknown field `x`" and "missing field `x`" name keys only.
        let what = if message.starts_with("unknown field") || message.starts_with("missing field") {
            message
                .split(" at line")
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            "not a profiles file (profiles: NAME: {issuer, client_id, ...})".to_owned()
        };
        vec![format!("{shown}: {what}{at}")]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut profiles = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, p) in file.profiles {
        let at = |key: &str| format!("{shown}: profiles.{name}.{key}");
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let mode = p.mode.unwrap_or(Mode::Bearer);
        let tokens = mode != Mode::Certificate;
        match &p.issuer {
            Some(i) if !(i.starts_with("https://") || i.starts_with("http://")) => {
                errors.push(format!("{}: must be an http(s) url", at("issuer")));
            }
            None if tokens => errors.push(format!("{}: is required", at("issuer"))),
            _ => {}
        }
        if p.client_id.is_none() && tokens {
            errors.push(format!("{}: is required", at("client_id")));
        }
        if let Some(url) = &p.base_url {
            let usable = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']));
            if !usable {
                errors.push(format!(
                    "{}: must be an http(s) url without query",
                    at("base_url")
                ));
            }
        }
        let cert = match (resolve(&p.cert_file), resolve(&p.cert_key_file)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                errors.push(format!(
                    "{}: cert_file and cert_key_file go together",
                    at("cert_file")
                ));
                None
            }
        };
        if matches!(mode, Mode::Mtls | Mode::Certificate) && cert.is_none() {
            errors.push(format!(
                "{}: {} needs cert_file and cert_key_file",
                at("mode"),
                mode.as_str()
            ));
        }
        let key_file = match mode {
            Mode::Dpop => Some(
                resolve(&p.key_file).unwrap_or_else(|| base.join(format!("{name}.dpop-key.json"))),
            ),
            _ => resolve(&p.key_file),
        };
        let cache_file =
            resolve(&p.cache_file).unwrap_or_else(|| base.join(format!("{name}.token.json")));
        profiles.insert(
            name.clone(),
            Profile {
                name: name.clone(),
                issuer: p
                    .issuer
                    .map(|i| i.trim_end_matches('/').to_owned())
                    .unwrap_or_default(),
                client_id: p.client_id.unwrap_or_default(),
                secret_file: resolve(&p.secret_file),
                mode,
                key_file,
                cert,
                ca_file: resolve(&p.ca_file),
                scope: p.scope,
                resource: p.resource,
                cache_file,
                base_url: p.base_url.map(|u| u.trim_end_matches('/').to_owned()),
            },
        );
    }
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(errors)
    }
}

/// The profile `name` of the file at `path`.
pub fn load_one(path: &Path, name: &str) -> Result<Profile, Vec<String>> {
    let mut all = load(path)?;
    all.remove(name).ok_or_else(|| {
        vec![format!(
            "{}: has no profile {name} (it has: {})",
            path.display(),
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "stella-profiles-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("profiles.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn paths_resolve_against_the_profiles_file_and_dpop_gets_a_default_key_file() {
        let (dir, path) = write(
            "profiles:\n  p:\n    issuer: http://a.test/\n    client_id: c\n    secret_file: s\n    mode: dpop\n",
        );
        let p = load_one(&path, "p").unwrap();
        assert_eq!(p.issuer, "http://a.test");
        assert_eq!(p.secret_file, Some(dir.join("s")));
        assert_eq!(p.key_file, Some(dir.join("p.dpop-key.json")));
        assert_eq!(p.cache_file, dir.join("p.token.json"));
    }

    #[test]
    fn mtls_without_a_certificate_and_unknown_keys_are_refused() {
        let (_, path) =
            write("profiles:\n  m:\n    issuer: http://a.test\n    client_id: c\n    mode: mtls\n");
        let e = load(&path).unwrap_err();
        assert!(e[0].contains("profiles.m.mode: mtls needs"), "{e:?}");
        let (_, path) = write(
            "profiles:\n  m:\n    issuer: http://a.test\n    client_id: c\n    secret: hunter2\n",
        );
        let e = load(&path).unwrap_err();
        assert!(!e[0].contains("hunter2"), "{e:?}");
    }

    #[test]
    fn base_url_is_an_http_origin_or_prefix() {
        let (_, path) = write(
            "profiles:\n  t:\n    issuer: http://a.test\n    client_id: c\n    base_url: https://127.0.0.1:8443/\n",
        );
        let p = load_one(&path, "t").unwrap();
        assert_eq!(p.base_url.as_deref(), Some("https://127.0.0.1:8443"));
        let (_, path) = write(
            "profiles:\n  t:\n    issuer: http://a.test\n    client_id: c\n    base_url: 127.0.0.1:8443\n",
        );
        let e = load(&path).unwrap_err();
        assert!(
            e[0].contains("profiles.t.base_url: must be an http(s) url"),
            "{e:?}"
        );
    }

    #[test]
    fn certificate_mode_needs_a_certificate_and_no_authority() {
        let (_, path) = write(
            "profiles:\n  w:\n    mode: certificate\n    cert_file: c.pem\n    cert_key_file: c.key\n",
        );
        let p = load_one(&path, "w").unwrap();
        assert_eq!(p.mode, Mode::Certificate);
        assert!(p.issuer.is_empty());
        let (_, path) = write("profiles:\n  w:\n    mode: certificate\n");
        let e = load(&path).unwrap_err();
        assert!(
            e[0].contains("profiles.w.mode: certificate needs cert_file"),
            "{e:?}"
        );
        let (_, path) = write("profiles:\n  b:\n    mode: bearer\n");
        let e = load(&path).unwrap_err();
        assert!(e[0].contains("profiles.b.issuer: is required"), "{e:?}");
        assert!(e[1].contains("profiles.b.client_id: is required"), "{e:?}");
    }
}
