//! `services[]`: the upstream services, their timeouts, ejection and health checks.

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
        });
    }

    services
}
