//! Sample service behind Stella Gateway. It adopts `stella-envelope` the way a
//! real service would, reading its trust mode and keys from the `Router__*`
//! environment variables, and answers every request with what it accepted
//! and what it received, so end-to-end tests can assert on both.
//!
//! Own variables:
//! - `ECHO_LISTEN`: address to bind (default `127.0.0.1:0`, an ephemeral port).
//! - `ECHO_SERVICE_TOKEN`: the service's own authentication, a static bearer
//!   token used whenever the trust mode sends the request to service auth.
//! - `ECHO_NAME`: a name reported in responses (default: the audience).
//!
//! - `ECHO_WATCH_CONFIG_FILE`: `false` to reload only on SIGHUP, not when
//!   the file `Router__ConfigFile` names changes (default `true`).
//! - `RUST_LOG`: log filter for stderr (default `info,notify=warn`).
//!
//! The envelope configuration is reloadable (SPEC.md 7.1): SIGHUP, or a
//! change of the file `Router__ConfigFile` names, re-reads it; a bad one is
//! refused and logged, and the service goes on with the configuration it
//! had. Each request is answered with the configuration it started with,
//! and its response body reports that configuration's `mode`.
//!
//! On start it prints one line, `ECHO_READY {"addr":...,"mode":...}`, to
//! stdout, once the reload triggers and the shutdown signals are installed.
//! Outside the envelope layer (and not counted):
//! - `GET /__echo/requests` reports how many requests reached the service;
//! - `GET /__echo/config` reports the configuration in use: `mode`,
//!   `enabled`, `accepted_kids`, `generation` (1 at start, one more per
//!   applied reload) and `last_error` (the problems of the latest reload if
//!   it was refused, else null).
//!
//! A request header `X-Echo-Delay-Ms: N` (at most 10000) makes the service
//! wait N ms before answering, to hold a request in flight across a reload
//! or a shutdown. SIGTERM or SIGINT stops accepting connections, finishes
//! the requests in flight, and exits 0. With `ECHO_DRAIN_MS=N` it first
//! serves on for N ms while `GET /__echo/health` answers 503 (200 before),
//! so a gateway with an active health check stops sending to it before its
//! connections close.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stella_envelope::middleware::{EnvelopeLayer, EnvelopeOutcome, RequestConfig};
use stella_envelope::reload::{spawn_reload_triggers_with, TriggerOptions};
use stella_envelope::ServiceConfigHandle;
use tokio::signal::unix::{signal, SignalKind};

/// Without `RUST_LOG`. notify reports, at info, the watch it fails to remove
/// for a file already replaced: expected on every rename, so not shown.
const DEFAULT_LOG: &str = "info,notify=warn";

/// Longest `X-Echo-Delay-Ms` honoured.
const MAX_DELAY_MS: u64 = 10_000;

struct Echo {
    name: String,
    service_token: Option<String>,
    requests: AtomicU64,
    config: Arc<ServiceConfigHandle>,
    /// Set on SIGTERM/SIGINT: `/__echo/health` answers 503 from then on.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .init();
    let handle = match ServiceConfigHandle::from_process_env() {
        Ok(handle) => Arc::new(handle),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(2);
        }
    };
    let watch_file = match std::env::var("ECHO_WATCH_CONFIG_FILE").as_deref() {
        Err(_) | Ok("true") => true,
        Ok("false") => false,
        Ok(_) => {
            eprintln!("ECHO_WATCH_CONFIG_FILE: must be true or false");
            std::process::exit(2);
        }
    };
    // Before the ready line: from then on SIGHUP reloads and never kills,
    // and SIGTERM/SIGINT drain instead of killing.
    let options = TriggerOptions {
        watch_file,
        ..TriggerOptions::default()
    };
    if let Err(e) = spawn_reload_triggers_with(handle.clone(), options) {
        eprintln!("cannot install the reload triggers: {e}");
        std::process::exit(1);
    }
    // Lame duck: for ECHO_DRAIN_MS after the signal the service still serves
    // but its health check fails, so a gateway that checks it stops sending
    // before the listener and idle connections close.
    let drain = std::time::Duration::from_millis(
        std::env::var("ECHO_DRAIN_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = draining.clone();
    let shutdown = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                flag.store(true, Ordering::Relaxed);
                if !drain.is_zero() {
                    eprintln!("echo: draining for {drain:?} (health check fails)");
                    tokio::time::sleep(drain).await;
                }
                eprintln!("echo: shutting down, finishing requests in flight");
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot install the shutdown signal handlers: {e}");
            std::process::exit(1);
        }
    };

    let config = handle.current();
    let audience = config
        .verifier
        .as_ref()
        .map(|v| v.settings().audience.clone());
    let state = Arc::new(Echo {
        name: std::env::var("ECHO_NAME")
            .ok()
            .or(audience)
            .unwrap_or_else(|| "echo".into()),
        service_token: std::env::var("ECHO_SERVICE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        requests: AtomicU64::new(0),
        config: handle.clone(),
        draining,
    });
    let app = Router::new()
        .fallback(echo)
        .layer(EnvelopeLayer::from_handle(handle.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .route("/__echo/requests", get(requests))
        .route("/__echo/config", get(active_config))
        .route("/__echo/health", get(health))
        .with_state(state.clone());

    let listen = std::env::var("ECHO_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {listen}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "ECHO_READY {}",
        json!({
            "addr": addr,
            "mode": config.mode.as_str(),
            "name": state.name,
            "enabled": config.enabled,
            "generation": handle.status().generation,
            "config_file": handle.config_file().map(|p| p.display().to_string()),
        })
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

async fn count(State(state): State<Arc<Echo>>, request: Request, next: Next) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}

/// 200 while serving, 503 once shutting down (during `ECHO_DRAIN_MS`).
async fn health(State(state): State<Arc<Echo>>) -> StatusCode {
    if state.draining.load(Ordering::Relaxed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn requests(State(state): State<Arc<Echo>>) -> Json<Value> {
    Json(json!({"requests": state.requests.load(Ordering::Relaxed)}))
}

fn unix_seconds(time: Option<SystemTime>) -> Option<u64> {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The configuration new requests get, with the reload history. Key ids
/// only, never key material.
async fn active_config(State(state): State<Arc<Echo>>) -> Json<Value> {
    let status = state.config.status();
    let config = &status.config;
    Json(json!({
        "mode": config.mode.as_str(),
        "enabled": config.enabled,
        "accepted_kids": config.accepted_kids().map(|k| k.as_str()).collect::<Vec<_>>(),
        "audience": config.verifier.as_ref().map(|v| v.settings().audience.as_str()),
        "generation": status.generation,
        "last_error": status
            .last_errors
            .map(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()),
        "last_applied_unix": unix_seconds(status.last_applied),
        "last_rejected_unix": unix_seconds(status.last_rejected),
        "config_file": state.config.config_file().map(|p| p.display().to_string()),
    }))
}

/// `X-Echo-Delay-Ms`, capped.
fn delay(headers: &HeaderMap) -> Option<Duration> {
    let ms: u64 = headers
        .get("x-echo-delay-ms")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms.min(MAX_DELAY_MS)))
}

fn received(headers: &HeaderMap) -> Value {
    let mut list = Vec::new();
    for (name, value) in headers {
        list.push(json!([
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes())
        ]));
    }
    Value::Array(list)
}

async fn echo(
    State(state): State<Arc<Echo>>,
    outcome: EnvelopeOutcome,
    RequestConfig(config): RequestConfig,
    request: Request<Body>,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Some(wait) = delay(&parts.headers) {
        tokio::time::sleep(wait).await;
    }
    let base = json!({
        "service": state.name,
        // The configuration this request was decided with, even if a reload
        // happened while it was in flight.
        "mode": config.mode.as_str(),
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "received_headers": received(&parts.headers),
    });
    match outcome {
        EnvelopeOutcome::Trusted(envelope) => {
            let mut body = base;
            body["source"] = json!("envelope");
            body["identity"] = json!(envelope.identity());
            body["envelope"] = json!({
                "kid": envelope.kid().as_str(),
                "issuer": envelope.issuer(),
                "audience": envelope.audience(),
                "request_id": envelope.request_id(),
            });
            Json(body).into_response()
        }
        EnvelopeOutcome::ServiceAuth { ignored_invalid } => {
            let ignored = ignored_invalid.as_ref().map(|e| e.code());
            if own_auth(&state, &parts.headers) {
                let mut body = base;
                body["source"] = json!("service");
                body["identity"] = json!({"subject": "service-token"});
                body["ignored_envelope_error"] = json!(ignored);
                Json(body).into_response()
            } else {
                let body = json!({
                    "type": "about:blank",
                    "title": "Unauthorized",
                    "status": 401,
                    "error": "service_auth_required",
                    "ignored_envelope_error": ignored,
                });
                let mut response = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"echo\""),
                );
                response
            }
        }
    }
}

/// The service's own authentication: a static bearer token, compared in
/// constant time.
fn own_auth(state: &Echo, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.service_token else {
        return false;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
