//! The process's own settings: connection limits, logging, traces.

use super::*;

/// Which traces are recorded (the `OTEL_TRACES_SAMPLER` names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

/// OpenTelemetry traces (`traces`); read once at start.
#[derive(Clone, Debug, PartialEq)]
pub struct Traces {
    pub enabled: bool,
    /// OTLP/HTTP base url (`/v1/traces` is appended); the exporter's
    /// default (`http://localhost:4318`) when unset.
    pub endpoint: Option<String>,
    pub service_name: String,
    pub sampler: TraceSampler,
    pub max_queue_size: usize,
    pub export_timeout: Duration,
}

pub(super) fn resolve_traces(
    e: &mut Errors,
    file: &TracesSection,
    effective: &mut TracesSection,
) -> Traces {
    let endpoint = file
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(url) = endpoint {
        let ok = url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
        if !ok {
            e.add("traces.endpoint", "must be an http(s) url");
        }
    }
    let arg = file.sampler_arg.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&arg) {
        e.add("traces.sampler_arg", "must be between 0 and 1");
    }
    let sampler = match file.sampler.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => TraceSampler::ParentBasedAlwaysOn,
        Some("always_on") => TraceSampler::AlwaysOn,
        Some("always_off") => TraceSampler::AlwaysOff,
        Some("traceidratio") => TraceSampler::TraceIdRatio(arg),
        Some("parentbased_always_off") => TraceSampler::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => TraceSampler::ParentBasedTraceIdRatio(arg),
        Some(_) => {
            e.add(
                "traces.sampler",
                "must be always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            );
            TraceSampler::ParentBasedAlwaysOn
        }
    };
    let traces = Traces {
        enabled: file.enabled.unwrap_or(false),
        endpoint: endpoint.map(str::to_owned),
        service_name: file
            .service_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("stella-gateway")
            .to_owned(),
        sampler,
        max_queue_size: seconds(
            e,
            "traces.max_queue_size",
            file.max_queue_size,
            2_048,
            (1, 1_000_000),
        ) as usize,
        export_timeout: Duration::from_millis(seconds(
            e,
            "traces.export_timeout_ms",
            file.export_timeout_ms,
            10_000,
            (100, 60_000),
        )),
    };
    effective.enabled = Some(traces.enabled);
    effective.service_name = Some(traces.service_name.clone());
    effective.sampler = Some(
        file.sampler
            .clone()
            .unwrap_or_else(|| "parentbased_always_on".into()),
    );
    effective.max_queue_size = Some(traces.max_queue_size as u64);
    effective.export_timeout_ms = Some(traces.export_timeout.as_millis() as u64);
    traces
}

#[derive(Clone, Debug)]
pub struct Logging {
    pub json: bool,
    pub level: String,
}

/// Limits on one client connection (gateway/src/front.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub request_head_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub max_request_headers: usize,
    /// Per listener.
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    pub h2_idle_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_bytes: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_request_header_bytes: 65_536,
            max_request_headers: 100,
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            h2_idle_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 100,
            h2_max_header_list_bytes: 65_536,
        }
    }
}

pub(super) fn resolve_limits(e: &mut Errors, file: &LimitsSection) -> Limits {
    let d = Limits::default();
    let path = |name: &str| format!("gateway.limits.{name}");
    Limits {
        request_head_timeout: Duration::from_millis(seconds(
            e,
            &path("request_head_timeout_ms"),
            file.request_head_timeout_ms,
            d.request_head_timeout.as_millis() as u64,
            (100, 600_000),
        )),
        idle_timeout: Duration::from_secs(seconds(
            e,
            &path("idle_timeout_seconds"),
            file.idle_timeout_seconds,
            d.idle_timeout.as_secs(),
            (1, 3_600),
        )),
        max_request_header_bytes: seconds(
            e,
            &path("max_request_header_bytes"),
            file.max_request_header_bytes,
            d.max_request_header_bytes as u64,
            (1_024, 1_048_576),
        ) as usize,
        max_request_headers: seconds(
            e,
            &path("max_request_headers"),
            file.max_request_headers,
            d.max_request_headers as u64,
            (8, 256),
        ) as usize,
        max_connections: seconds(
            e,
            &path("max_connections"),
            file.max_connections,
            d.max_connections as u64,
            (1, 1_000_000),
        ) as usize,
        tls_handshake_timeout: Duration::from_millis(seconds(
            e,
            &path("tls_handshake_timeout_ms"),
            file.tls_handshake_timeout_ms,
            d.tls_handshake_timeout.as_millis() as u64,
            (100, 600_000),
        )),
        h2_idle_timeout: Duration::from_secs(seconds(
            e,
            &path("h2_idle_timeout_seconds"),
            file.h2_idle_timeout_seconds,
            d.h2_idle_timeout.as_secs(),
            (1, 3_600),
        )),
        h2_max_concurrent_streams: seconds(
            e,
            &path("h2_max_concurrent_streams"),
            file.h2_max_concurrent_streams,
            u64::from(d.h2_max_concurrent_streams),
            (1, 10_000),
        ) as u32,
        h2_max_header_list_bytes: seconds(
            e,
            &path("h2_max_header_list_bytes"),
            file.h2_max_header_list_bytes,
            u64::from(d.h2_max_header_list_bytes),
            (1_024, 1_048_576),
        ) as u32,
    }
}
