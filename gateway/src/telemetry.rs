//! Logs and metrics. Label values come from fixed sets (route ids from the
//! policy files, decision and reason codes from enums, status codes), never
//! from client input, so cardinality is bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::fmt::Write;

/// Prometheus metrics of one gateway process.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub upstream_errors: IntCounterVec,
    /// DPoP proofs refused, by fixed reason.
    pub dpop_proof_rejected: IntCounterVec,
    /// Proofs without a valid server nonce where one was required.
    pub dpop_nonce_miss: IntCounter,
    /// Requests let through by the emergency bypass.
    pub dpop_bypass: IntCounter,
    /// Certificate-bound tokens that failed: `context-missing`,
    /// `missing-certificate`, `thumbprint-mismatch`.
    pub mtls_mismatch: IntCounterVec,
    pub replay_store_errors: IntCounter,
    /// Requests presenting a DPoP-bound token with a proof (`DPoP` scheme):
    /// the denominator of the nonce-miss ratio.
    pub dpop_requests: IntCounter,
    /// Every refusal by route and decision-log reason (a fixed set).
    pub refusals: IntCounterVec,
    /// Decisions of routes' shadow policies beside the enforced ones.
    pub shadow_decisions: IntCounterVec,
    /// DPoP requests refused with 429 because their proof key held its
    /// share of the replay store.
    pub replay_share_refusals: IntCounter,
    pub replay_store_seconds: prometheus::Histogram,
    /// Reloads by result: `applied` (including unchanged) or `rejected`.
    pub config_reloads: IntCounterVec,
    /// Upstream connect attempts retried on another address, by service.
    pub upstream_retries: IntCounterVec,
    /// Open client connections, by listener (gateway/src/front.rs).
    pub connections_open: prometheus::IntGaugeVec,
    /// Connections refused at the listener's limit, by listener.
    pub connections_refused: IntCounterVec,
    /// Connections the gateway closed for a slow or oversized request
    /// head, by listener and reason.
    pub connections_closed: IntCounterVec,
    /// Requests refused by an entry of the revocation list, by kind.
    pub revocation_hits: IntCounterVec,
}

/// Extra counters owned by other stages, read at scrape time.
pub struct External<'a> {
    pub jwks_refreshes: u64,
    pub jwks_refresh_failures: u64,
    pub jwks_keys: u64,
    pub jwks_age_seconds: Option<u64>,
    pub ready: bool,
    pub extra: &'a str,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "stella_gateway_requests_total",
                "Requests by route, decision and status",
            ),
            &["route", "decision", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "stella_gateway_request_duration_seconds",
                "Time from request head to the end of the response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "stella_gateway_upstream_errors_total",
                "Upstream failures by service and kind",
            ),
            &["service", "kind"],
        )
        .expect("static metric definition");
        let dpop_proof_rejected = IntCounterVec::new(
            Opts::new(
                "stella_gateway_dpop_proof_rejected_total",
                "DPoP proofs refused, by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let dpop_nonce_miss = IntCounter::new(
            "stella_gateway_dpop_nonce_miss_total",
            "DPoP proofs without a valid server nonce where one is required",
        )
        .expect("static metric definition");
        let dpop_bypass = IntCounter::new(
            "stella_gateway_dpop_bypass_total",
            "Requests with an unproven sender constraint let through by the emergency bypass",
        )
        .expect("static metric definition");
        let mtls_mismatch = IntCounterVec::new(
            Opts::new(
                "stella_gateway_mtls_mismatch_total",
                "Certificate-bound tokens whose certificate did not match",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let dpop_requests = IntCounter::new(
            "stella_gateway_dpop_requests_total",
            "Requests presenting a token with a DPoP proof (the DPoP scheme)",
        )
        .expect("static metric definition");
        let refusals = IntCounterVec::new(
            Opts::new(
                "stella_gateway_refusals_total",
                "Refused requests by route and reason (the decision log's reason)",
            ),
            &["route", "reason"],
        )
        .expect("static metric definition");
        let shadow_decisions = IntCounterVec::new(
            Opts::new(
                "stella_gateway_shadow_decisions_total",
                "Shadow policy decisions beside the enforced decision, by route",
            ),
            &["route", "enforced", "shadow"],
        )
        .expect("static metric definition");
        let replay_store_errors = IntCounter::new(
            "stella_gateway_replay_store_errors_total",
            "DPoP replay store failures (each answered with 503)",
        )
        .expect("static metric definition");
        let replay_share_refusals = IntCounter::new(
            "stella_gateway_replay_share_refusals_total",
            "DPoP requests refused with 429: the proof key held its share of the replay store",
        )
        .expect("static metric definition");
        let replay_store_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "stella_gateway_replay_store_seconds",
                "DPoP replay store insert latency",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
            ]),
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "stella_gateway_config_reloads_total",
                "Configuration reloads by result (applied, rejected)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let upstream_retries = IntCounterVec::new(
            Opts::new(
                "stella_gateway_upstream_retries_total",
                "Upstream connect failures retried on another address, by service",
            ),
            &["service"],
        )
        .expect("static metric definition");
        let connections_open = prometheus::IntGaugeVec::new(
            Opts::new(
                "stella_gateway_connections_open",
                "Open client connections, by listener",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "stella_gateway_connections_refused_total",
                "Client connections refused at the listener's connection limit",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "stella_gateway_connections_closed_total",
                "Client connections closed by the gateway before a request head was complete \
                 or for HTTP/2 idleness, by reason (request_head_timeout, request_header_too_large, \
                 proxy_protocol, tls_handshake_timeout, tls_handshake_failed, h2_idle_timeout)",
            ),
            &["listener", "reason"],
        )
        .expect("static metric definition");
        let revocation_hits = IntCounterVec::new(
            Opts::new(
                "stella_gateway_revocation_hits_total",
                "Requests refused because an identity they carry is revoked, by kind",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        for kind in stella_authn::revocation::Kind::ALL {
            revocation_hits.with_label_values(&[kind.as_str()]);
        }
        // Both results exist from the start, so rate() sees the first one.
        for result in ["applied", "rejected"] {
            config_reloads.with_label_values(&[result]);
        }
        for reason in [
            "context-missing",
            "missing-certificate",
            "thumbprint-mismatch",
        ] {
            mtls_mismatch.with_label_values(&[reason]);
        }
        // Registering fresh, uniquely named collectors cannot fail.
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(dpop_proof_rejected.clone()),
            Box::new(dpop_nonce_miss.clone()),
            Box::new(dpop_bypass.clone()),
            Box::new(mtls_mismatch.clone()),
            Box::new(dpop_requests.clone()),
            Box::new(refusals.clone()),
            Box::new(shadow_decisions.clone()),
            Box::new(replay_store_errors.clone()),
            Box::new(replay_share_refusals.clone()),
            Box::new(replay_store_seconds.clone()),
            Box::new(config_reloads.clone()),
            Box::new(upstream_retries.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(connections_closed.clone()),
            Box::new(revocation_hits.clone()),
        ] {
            let _ = registry.register(c);
        }
        Metrics {
            registry,
            requests,
            latency,
            upstream_errors,
            dpop_proof_rejected,
            dpop_nonce_miss,
            dpop_bypass,
            mtls_mismatch,
            dpop_requests,
            refusals,
            shadow_decisions,
            replay_store_errors,
            replay_share_refusals,
            replay_store_seconds,
            config_reloads,
            upstream_retries,
            connections_open,
            connections_refused,
            connections_closed,
            revocation_hits,
        }
    }

    /// The Prometheus text exposition.
    /// The scrape text; an error when the registry cannot be encoded (the
    /// admin listener answers 500, never an empty 200).
    pub fn render(&self, external: &External<'_>) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        let mut text = String::from_utf8(buf)
            .map_err(|_| prometheus::Error::Msg("metrics text is not utf-8".into()))?;
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        counter(
            "stella_gateway_jwks_refreshes_total",
            "Successful JWKS fetches",
            "counter",
            external.jwks_refreshes,
        );
        counter(
            "stella_gateway_jwks_refresh_failures_total",
            "Failed JWKS fetches",
            "counter",
            external.jwks_refresh_failures,
        );
        counter(
            "stella_gateway_jwks_keys",
            "Keys in the JWKS cache",
            "gauge",
            external.jwks_keys,
        );
        if let Some(age) = external.jwks_age_seconds {
            counter(
                "stella_gateway_jwks_age_seconds",
                "Seconds since the last successful JWKS fetch",
                "gauge",
                age,
            );
        }
        counter(
            "stella_gateway_ready",
            "1 when the gateway is ready",
            "gauge",
            u64::from(external.ready),
        );
        text.push_str(
            "# HELP stella_gateway_log_lines_dropped_total Log lines dropped because the queue to stderr was full\n\
             # TYPE stella_gateway_log_lines_dropped_total counter\n",
        );
        text.push_str(&format!(
            "stella_gateway_log_lines_dropped_total {}\n",
            dropped_log_lines()
        ));
        text.push_str(external.extra);
        Ok(text)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Installs the global tracing subscriber: text or JSON lines on stderr,
/// filtered by `level` (a tracing filter such as `info`).
pub fn init_logging(json: bool, level: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The filter can be replaced by a reload (`logging.level`).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Workers never write to stderr themselves: a slow or blocked stderr
    // (a full pipe, a stalled log shipper) must not stall requests. Lines
    // gather in a bounded buffer that one writer thread writes out in
    // batches; when it is full they are dropped and counted
    // (`stella_gateway_log_lines_dropped_total`; crate::log_queue).
    let (writer, guard) = match crate::log_queue::LogQueue::start(
        std::io::stderr(),
        crate::log_queue::DEFAULT_LIMIT,
        crate::log_queue::BATCH_DELAY,
        "stella-log",
    ) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("cannot start the log writer thread: {e}");
            return;
        }
    };
    let queue = writer.clone();
    if json {
        crate::decision_log::write_json_to(writer.clone());
    }
    let output = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry
            .with(output.json().flatten_event(true))
            .try_init()
            .is_ok()
    } else {
        registry.with(output).try_init().is_ok()
    };
    if installed {
        let _ = LEVEL.set(Box::new(move |f| handle.reload(f).is_ok()));
        let _ = QUEUE.set(queue);
        *LOG_GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    }
}

static QUEUE: std::sync::OnceLock<crate::log_queue::LogQueue> = std::sync::OnceLock::new();

static LOG_GUARD: std::sync::Mutex<Option<crate::log_queue::Writer>> = std::sync::Mutex::new(None);

/// Log lines dropped because the queue to stderr was full.
pub fn dropped_log_lines() -> u64 {
    QUEUE.get().map_or(0, |q| q.dropped())
}

/// Writes out every queued log line; call before the process exits.
pub fn flush_logs() {
    let writer = LOG_GUARD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(writer) = writer {
        writer.close();
    }
}

type LevelReloader = Box<dyn Fn(tracing_subscriber::EnvFilter) -> bool + Send + Sync>;

static LEVEL: std::sync::OnceLock<LevelReloader> = std::sync::OnceLock::new();

/// Applies a new log filter (a reload changed `logging.level`). An invalid
/// filter is refused by `config` before it gets here.
pub fn set_log_level(level: &str) -> bool {
    match (LEVEL.get(), tracing_subscriber::EnvFilter::try_new(level)) {
        (Some(reload), Ok(filter)) => reload(filter),
        _ => false,
    }
}
