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
//! On start it prints one line, `ECHO_READY {"addr":...,"mode":...}`, to
//! stdout. `GET /__echo/requests` reports how many requests reached the
//! service (outside the envelope layer, not counted itself).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stella_envelope::middleware::{EnvelopeLayer, EnvelopeOutcome};
use stella_envelope::{ProcessEnv, ServiceConfig};

struct Echo {
    name: String,
    mode: String,
    service_token: Option<String>,
    requests: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = match ServiceConfig::from_env(&ProcessEnv) {
        Ok(config) => Arc::new(config),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(2);
        }
    };
    let audience = config
        .verifier
        .as_ref()
        .map(|v| v.settings().audience.clone());
    let state = Arc::new(Echo {
        name: std::env::var("ECHO_NAME")
            .ok()
            .or(audience)
            .unwrap_or_else(|| "echo".into()),
        mode: config.mode.to_string(),
        service_token: std::env::var("ECHO_SERVICE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .fallback(echo)
        .layer(EnvelopeLayer::new(config.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .route("/__echo/requests", get(requests))
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
        json!({"addr": addr, "mode": state.mode, "name": state.name, "enabled": config.enabled})
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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

async fn requests(State(state): State<Arc<Echo>>) -> Json<Value> {
    Json(json!({"requests": state.requests.load(Ordering::Relaxed)}))
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
    request: Request<Body>,
) -> Response {
    let (parts, _) = request.into_parts();
    let base = json!({
        "service": state.name,
        "mode": state.mode,
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
