//! `services[]`: the upstream services, their timeouts, ejection, health
//! checks and TLS.

use super::authority::check_url;
use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `host:port` addresses, used round-robin.
    pub upstreams: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub forward_credentials: bool,
    pub trust_mode: Option<TrustMode>,
    pub eject_after_failures: u32,
    pub eject: Duration,
    pub health_check: Option<HealthCheck>,
    /// The service's own OpenAPI document, for `stella-gateway openapi`.
    pub openapi: Option<OpenApiSource>,
    /// The envelope key that signs this service's envelopes; `None`: the
    /// active key.
    pub envelope_kid: Option<String>,
    /// How the identity is forwarded to it.
    pub identity_format: IdentityFormat,
    /// HTTPS to the service; `None`: plain HTTP.
    pub tls: Option<ServiceTls>,
}

impl Service {
    /// The files of its TLS material: watched, and part of the
    /// configuration's version, so a change to one reloads.
    pub fn tls_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.tls.iter().flat_map(|t| {
            t.ca_file
                .iter()
                .chain(t.client_identity.iter().flat_map(|(c, k)| [c, k]))
        })
    }
}

/// `services[].tls`, checked: its files exist and the name the service's
/// certificate must hold is one TLS can verify. The PEM material itself is
/// loaded and checked with the snapshot (`upstream::tls`), which `check`
/// builds too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTls {
    /// The roots the service's certificate must chain to; `None`: the
    /// platform's.
    pub ca_file: Option<PathBuf>,
    /// SNI and the verified name; `None`: each upstream's own host.
    pub server_name: Option<String>,
    /// (certificate chain, key) the gateway presents, for services that
    /// require a client certificate.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Offer HTTP/2 (ALPN `h2`, then `http/1.1`).
    pub http2: bool,
}

/// Whether `name` is a DNS name or an IP address a certificate can be
/// verified against (what rustls accepts as a server name).
pub fn tls_server_name_ok(name: &str) -> bool {
    !name.is_empty() && rustls::pki_types::ServerName::try_from(name).is_ok()
}

/// The host of a checked `host:port` upstream, without IPv6 brackets.
fn upstream_host(upstream: &str) -> &str {
    let host = upstream.rsplit_once(':').map_or(upstream, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `services[i].tls`: `None` when absent or `enabled: false`.
fn service_tls(
    e: &mut Errors,
    i: usize,
    section: Option<&ServiceTlsSection>,
    upstreams: &[String],
    base: &Path,
    effective: &mut Option<ServiceTlsSection>,
) -> Option<ServiceTls> {
    let t = section?;
    let at = |k: &str| format!("services[{i}].tls.{k}");
    let enabled = t.enabled.unwrap_or(true);
    let http2 = t.http2.unwrap_or(false);
    if let Some(effective) = effective.as_mut() {
        effective.enabled = Some(enabled);
        effective.http2 = Some(http2);
    }
    if !enabled {
        return None;
    }
    let ca_file = t
        .ca_file
        .as_ref()
        .and_then(|_| existing_file(e, &at("ca_file"), base, &t.ca_file));
    let server_name = t.server_name.as_deref().map(str::trim).map(str::to_owned);
    match &server_name {
        Some(name) if !tls_server_name_ok(name) => e.add(
            &at("server_name"),
            "must be a dns name such as orders.internal or an ip address",
        ),
        Some(_) => {}
        // Each upstream's host is its name: it must be one TLS can verify.
        None => {
            for (j, u) in upstreams.iter().enumerate() {
                let host = upstream_host(u.trim());
                if !tls_server_name_ok(host) {
                    e.add(
                        &format!("services[{i}].upstreams[{j}]"),
                        format!(
                            "host {host} is not a name tls can verify; set {}",
                            at("server_name")
                        ),
                    );
                }
            }
        }
    }
    let client_identity = match (&t.client_certificate, &t.client_key) {
        (None, None) => None,
        (Some(_), None) => {
            e.add(&at("client_key"), "is required with client_certificate");
            None
        }
        (None, Some(_)) => {
            e.add(&at("client_certificate"), "is required with client_key");
            None
        }
        (Some(_), Some(_)) => {
            let cert = existing_file(e, &at("client_certificate"), base, &t.client_certificate);
            let key = existing_file(e, &at("client_key"), base, &t.client_key);
            cert.zip(key)
        }
    };
    Some(ServiceTls {
        ca_file,
        server_name,
        client_identity,
        http2,
    })
}

/// How a service receives the caller's identity (`services[].identity_format`,
/// docs/design.md §3.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityFormat {
    /// The six `X-StellaOps-Identity-Envelope*` headers (envelope/SPEC.md).
    #[default]
    Envelope,
    /// One `Txn-Token` header: a JWT (draft-ietf-oauth-transaction-tokens)
    /// signed with an EdDSA key the gateway publishes as a JWKS.
    TxnToken,
    /// Both, for services moving from one to the other.
    Both,
}

impl IdentityFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityFormat::Envelope => "envelope",
            IdentityFormat::TxnToken => "txn-token",
            IdentityFormat::Both => "both",
        }
    }

    /// Exactly as documented; case-insensitive.
    pub fn parse(text: &str) -> Option<IdentityFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "envelope" => Some(IdentityFormat::Envelope),
            "txn-token" => Some(IdentityFormat::TxnToken),
            "both" => Some(IdentityFormat::Both),
            _ => None,
        }
    }

    pub fn sends_envelope(self) -> bool {
        self != IdentityFormat::TxnToken
    }

    pub fn sends_txn_token(self) -> bool {
        self != IdentityFormat::Envelope
    }
}

/// Where a service publishes its OpenAPI document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenApiSource {
    File(PathBuf),
    Url(String),
}

/// Every service.
pub(super) fn services(
    e: &mut Errors,
    file: &FileConfig,
    effective: &mut FileConfig,
    base: &Path,
    envelope_keys: &[EnvelopeKeyInfo],
    active_kid: Option<&str>,
) -> Vec<Service> {
    let mut services = Vec::new();
    for (i, s) in file.services.iter().enumerate() {
        let at = |k: &str| format!("services[{i}].{k}");
        let name = s.name.clone().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !name_ok {
            e.add(&at("name"), "must be 1 to 64 characters from a-z 0-9 - _ .");
        } else if file.services[..i]
            .iter()
            .any(|o| o.name.as_deref() == Some(name.as_str()))
        {
            e.add(&at("name"), "is used by another service");
        }
        if s.upstreams.is_empty() {
            e.add(&at("upstreams"), "must list at least one host:port");
        }
        for (j, u) in s.upstreams.iter().enumerate() {
            if !host_port(u.trim()) {
                e.add(
                    &format!("services[{i}].upstreams[{j}]"),
                    "must be host:port",
                );
            }
        }
        let connect = setting(
            e,
            &at("connect_timeout_ms"),
            s.connect_timeout_ms,
            2_000,
            (1, 600_000),
            &mut effective.services[i].connect_timeout_ms,
        );
        let read = setting(
            e,
            &at("read_timeout_ms"),
            s.read_timeout_ms,
            30_000,
            (1, 3_600_000),
            &mut effective.services[i].read_timeout_ms,
        );
        let trust_mode = s.trust_mode.as_ref().and_then(|m| {
            m.parse::<TrustMode>()
                .map_err(|err| e.add(&at("trust_mode"), err.to_string()))
                .ok()
        });
        let eject_after = setting(
            e,
            &at("eject_after_failures"),
            s.eject_after_failures,
            2,
            (1, 1_000),
            &mut effective.services[i].eject_after_failures,
        );
        let eject = setting(
            e,
            &at("eject_seconds"),
            s.eject_seconds,
            10,
            (1, 3_600),
            &mut effective.services[i].eject_seconds,
        );
        let health_check = s.health_check.as_ref().map(|h| {
            let path = h.path.clone().unwrap_or_default();
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                e.add(
                    &at("health_check.path"),
                    "must be an absolute path such as /healthz",
                );
            }
            let interval = seconds(
                e,
                &at("health_check.interval_ms"),
                h.interval_ms,
                5_000,
                (100, 3_600_000),
            );
            let timeout = seconds(
                e,
                &at("health_check.timeout_ms"),
                h.timeout_ms,
                1_000,
                (10, 60_000),
            );
            HealthCheck {
                path,
                interval: Duration::from_millis(interval),
                timeout: Duration::from_millis(timeout),
            }
        });
        let openapi = s.openapi.as_deref().map(str::trim).and_then(|text| {
            if text.starts_with("http://") || text.starts_with("https://") {
                check_url(e, &at("openapi"), text, false);
                Some(OpenApiSource::Url(text.to_owned()))
            } else {
                existing_file(e, &at("openapi"), base, &Some(text.to_owned()))
                    .map(OpenApiSource::File)
            }
        });
        let envelope_kid = s.envelope_kid.as_deref().map(str::trim).and_then(|kid| {
            if envelope_keys.iter().any(|k| k.kid == kid) {
                Some(kid.to_owned())
            } else {
                e.add(
                    &at("envelope_kid"),
                    format!("names {kid}, which is not a configured envelope key"),
                );
                None
            }
        });
        let identity_format =
            s.identity_format
                .as_deref()
                .map_or(IdentityFormat::Envelope, |text| {
                    IdentityFormat::parse(text).unwrap_or_else(|| {
                        e.add(
                            &at("identity_format"),
                            "must be envelope, txn-token or both",
                        );
                        IdentityFormat::Envelope
                    })
                });
        let own_key = envelope_kid
            .as_deref()
            .and_then(|kid| envelope_keys.iter().find(|k| k.kid == kid));
        if let Some(key) = own_key.filter(|k| k.alg == Alg::Es256) {
            if identity_format.sends_envelope() {
                e.add(
                    &at("envelope_kid"),
                    format!(
                        "names {}, an ES256 key, which signs transaction tokens only; set identity_format: txn-token, or name an HS256 or EdDSA key",
                        key.kid
                    ),
                );
            }
        }
        if identity_format.sends_txn_token() {
            // An envelope_kid that names no key is reported above.
            let kid = match (&s.envelope_kid, &envelope_kid) {
                (_, Some(kid)) => Some(kid.as_str()),
                (Some(_), None) => None,
                (None, None) => active_kid,
            };
            txn_token_key(e, &at, identity_format, envelope_keys, kid);
        }
        let tls = service_tls(
            e,
            i,
            s.tls.as_ref(),
            &s.upstreams,
            base,
            &mut effective.services[i].tls,
        );
        let es = &mut effective.services[i];
        es.forward_credentials = Some(s.forward_credentials.unwrap_or(false));
        services.push(Service {
            name,
            upstreams: s.upstreams.iter().map(|u| u.trim().to_owned()).collect(),
            connect_timeout: Duration::from_millis(connect),
            read_timeout: Duration::from_millis(read),
            forward_credentials: s.forward_credentials.unwrap_or(false),
            trust_mode,
            eject_after_failures: eject_after as u32,
            eject: Duration::from_secs(eject),
            health_check,
            openapi,
            envelope_kid,
            identity_format,
            tls,
        });
    }

    services
}

/// A service that gets transaction tokens needs an EdDSA or ES256 key:
/// generic JWT libraries verify with the public keys of the gateway's JWKS,
/// and an HS256 secret has no public half. `kid` is the service's key (its own, else the
/// active one); `None` when the keyring already failed.
fn txn_token_key(
    e: &mut Errors,
    at: &dyn Fn(&str) -> String,
    format: IdentityFormat,
    envelope_keys: &[EnvelopeKeyInfo],
    kid: Option<&str>,
) {
    let Some(key) = kid.and_then(|kid| envelope_keys.iter().find(|k| k.kid == kid)) else {
        return;
    };
    if key.alg == Alg::Hs256 {
        e.add(
            &at("identity_format"),
            format!(
                "{} needs an EdDSA or ES256 key, but the service signs with {}, an {} key ({}); set {} to an EdDSA or ES256 key of router.identity_envelope_keys (keys generate --alg EdDSA or ES256)",
                format.as_str(),
                key.kid,
                key.alg.as_str(),
                key.path,
                at("envelope_kid"),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HEAD: &str =
        "gateway:\n  listeners: {http: \"127.0.0.1:8080\"}\n  auth:\n    authority:\n      \
                        issuer: https://authority.example\n      audiences: [api]\n";
    const HS: &str = "a-secret-value-that-is-at-least-32-bytes";

    fn ed() -> String {
        Key::ed25519_from_seed(KeyId::new("ed").unwrap(), [3; 32])
            .unwrap()
            .to_spec()
            .to_string()
    }

    fn resolve_text(text: &str) -> Result<crate::config::Config, Vec<String>> {
        let (file, errors) = crate::config::parse(text, "test.yaml", &HashMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        super::super::resolve(&file.unwrap(), Path::new("."), &HashMap::new())
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn identity_format_defaults_to_envelope_and_reads_the_three_documented_values() {
        let ed = ed();
        let config = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_signing_key: \"{ed}\"\n\
             services:\n  - {{name: a, upstreams: [\"a:1\"]}}\n  - {{name: b, upstreams: [\"b:1\"], identity_format: envelope}}\n\
             \x20 - {{name: c, upstreams: [\"c:1\"], identity_format: Txn-Token}}\n  - {{name: d, upstreams: [\"d:1\"], identity_format: both}}\n"
        ))
        .unwrap();
        let formats: Vec<&str> = config
            .services
            .iter()
            .map(|s| s.identity_format.as_str())
            .collect();
        assert_eq!(formats, ["envelope", "envelope", "txn-token", "both"]);
        // Printed only where the file sets it: deployments without it print
        // (and version) their configuration as before.
        let printed = crate::config::redacted_yaml(&config.effective);
        assert_eq!(printed.matches("identity_format").count(), 3, "{printed}");
        let e = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_signing_key: \"{ed}\"\n\
             services:\n  - {{name: a, upstreams: [\"a:1\"], identity_format: jwt}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            ["services[0].identity_format: must be envelope, txn-token or both"]
        );
    }

    #[test]
    fn a_txn_token_service_signed_with_an_hs256_key_is_refused_naming_the_key_and_its_path() {
        // The active key is HS256, and the service has no key of its own.
        let e = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_signing_key: \"{HS}\"\n\
             services:\n  - {{name: orders, upstreams: [\"o:1\"], identity_format: txn-token}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            ["services[0].identity_format: txn-token needs an EdDSA or ES256 key, but the service signs with \
              default, an HS256 key (router.identity_envelope_signing_key); set services[0].envelope_kid to an \
              EdDSA or ES256 key of router.identity_envelope_keys (keys generate --alg EdDSA or ES256)"]
        );
        // Its own key is HS256.
        let ed = ed();
        let e = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_active_kid: ed\n  identity_envelope_keys:\n\
             \x20   - {{kid: hs, key: \"{HS}\"}}\n    - {{kid: ed, key: \"{ed}\"}}\n\
             services:\n  - {{name: a, upstreams: [\"a:1\"]}}\n  - {{name: orders, upstreams: [\"o:1\"], envelope_kid: hs, identity_format: both}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("services[1].identity_format: both needs an EdDSA or ES256 key, but the service signs with hs, an HS256 key (router.identity_envelope_keys[0].key)"),
            "{e:?}"
        );
        // An EdDSA key of its own, or an EdDSA active key, is accepted.
        resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_active_kid: hs\n  identity_envelope_keys:\n\
             \x20   - {{kid: hs, key: \"{HS}\"}}\n    - {{kid: ed, key: \"{ed}\"}}\n\
             services:\n  - {{name: orders, upstreams: [\"o:1\"], envelope_kid: ed, identity_format: txn-token}}\n"
        ))
        .unwrap();
        resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_signing_key: \"{ed}\"\n\
             services:\n  - {{name: orders, upstreams: [\"o:1\"], identity_format: txn-token}}\n"
        ))
        .unwrap();
    }

    fn es() -> String {
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        Key::p256_from_pkcs8(KeyId::new("es").unwrap(), pkcs8.as_ref())
            .unwrap()
            .to_spec()
            .to_string()
    }

    #[test]
    fn an_es256_key_signs_transaction_tokens_only_never_an_envelope() {
        let es = es();
        let ring = format!(
            "router:\n  identity_envelope_active_kid: hs\n  identity_envelope_keys:\n\
             \x20   - {{kid: hs, key: \"{HS}\"}}\n    - {{kid: es, key: \"{es}\"}}\n"
        );
        let config = resolve_text(&format!(
            "{HEAD}{ring}services:\n  - {{name: orders, upstreams: [\"o:1\"], envelope_kid: es, identity_format: txn-token}}\n"
        ))
        .unwrap();
        assert_eq!(config.services[0].identity_format, IdentityFormat::TxnToken);
        for format in ["both", "envelope"] {
            let e = resolve_text(&format!(
                "{HEAD}{ring}services:\n  - {{name: orders, upstreams: [\"o:1\"], envelope_kid: es, identity_format: {format}}}\n"
            ))
            .unwrap_err();
            assert_eq!(
                e,
                ["services[0].envelope_kid: names es, an ES256 key, which signs transaction tokens only; \
                  set identity_format: txn-token, or name an HS256 or EdDSA key"],
                "{format}"
            );
        }
        // Nor can it be the active key, which signs every other envelope.
        let e = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_active_kid: es\n  identity_envelope_keys:\n\
             \x20   - {{kid: hs, key: \"{HS}\"}}\n    - {{kid: es, key: \"{es}\"}}\n\
             services:\n  - {{name: a, upstreams: [\"a:1\"]}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("router.identity_envelope_active_kid: names es, an ES256 key, which signs transaction tokens only"),
            "{e:?}"
        );
        let e = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_signing_key: \"{es}\"\nservices:\n  - {{name: a, upstreams: [\"a:1\"]}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("router.identity_envelope_signing_key: is an ES256 key"),
            "{e:?}"
        );
        assert!(
            !e[0].contains(es.trim_start_matches("p256-private:")),
            "{e:?}"
        );
    }

    #[test]
    fn service_tls_is_checked_with_key_paths_and_its_files_are_watched() {
        let dir = std::env::temp_dir().join(format!("stella-service-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not read here").unwrap();
        let ca = ca.display();
        let resolve_in = |text: &str| {
            let (file, errors) = crate::config::parse(text, "test.yaml", &HashMap::new());
            assert!(errors.is_empty(), "{errors:?}");
            super::super::resolve(&file.unwrap(), &dir, &HashMap::new())
                .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let head = format!("{HEAD}router:\n  identity_envelope_signing_key: \"{HS}\"\nservices:\n");

        // A section turns TLS on; its files are watched; defaults printed.
        let config = resolve_in(&format!(
            "{head}  - {{name: a, upstreams: [\"orders.svc:8443\", \"10.0.0.7:8443\"], tls: {{ca_file: {ca}}}}}\n\
             \x20 - {{name: b, upstreams: [\"b:1\"], tls: {{enabled: false, ca_file: missing.pem}}}}\n\
             \x20 - {{name: c, upstreams: [\"c:1\"]}}\n"
        ))
        .unwrap();
        let tls = config.services[0].tls.as_ref().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        assert_eq!((tls.server_name.as_deref(), tls.http2), (None, false));
        assert!(config.services[1].tls.is_none() && config.services[2].tls.is_none());
        assert!(config.sources.contains(&dir.join("ca.pem")));
        let printed = crate::config::redacted_yaml(&config.effective);
        assert_eq!(printed.matches("http2: false").count(), 2, "{printed}");
        assert_eq!(
            printed.matches("    enabled: false").count(),
            1,
            "{printed}"
        );

        let e = resolve_in(&format!(
            "{head}  - {{name: a, upstreams: [\"a:1\"], tls: {{server_name: \"not a name\", ca_file: missing.pem, client_certificate: {ca}}}}}\n\
             \x20 - {{name: b, upstreams: [\"b:1\"], tls: {{client_key: {ca}, http2: true}}}}\n\
             \x20 - {{name: c, upstreams: [\"c..d:1\"], tls: {{}}}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            [
                format!(
                    "services[0].tls.ca_file: file {} does not exist",
                    dir.join("missing.pem").display()
                ),
                "services[0].tls.server_name: must be a dns name such as orders.internal or an ip address"
                    .into(),
                "services[0].tls.client_key: is required with client_certificate".into(),
                "services[1].tls.client_certificate: is required with client_key".into(),
                "services[2].upstreams[0]: host c..d is not a name tls can verify; set services[2].tls.server_name"
                    .into(),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_envelope_kid_that_names_no_key_is_reported_once_not_again_as_a_txn_token_problem() {
        let e = resolve_text(&format!(
            "{HEAD}router:\n  identity_envelope_signing_key: \"{HS}\"\n\
             services:\n  - {{name: orders, upstreams: [\"o:1\"], envelope_kid: nope, identity_format: txn-token}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            ["services[0].envelope_kid: names nope, which is not a configured envelope key"]
        );
    }
}
