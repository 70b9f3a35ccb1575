//! A tower layer and axum extractors so a Rust service adopts envelopes in a
//! few lines:
//!
//! ```ignore
//! let config = Arc::new(ServiceConfig::from_env(&ProcessEnv)?);
//! let app = Router::new()
//!     .route("/", get(handler))
//!     .layer(EnvelopeLayer::new(config));
//! async fn handler(identity: GatewayIdentity) -> String { ... }
//! ```
//!
//! The layer is the shell: it reads the clock and the request, calls the
//! pure [`check_request`] and [`decide`], answers rejections itself and
//! hands everything else to the handler with an [`EnvelopeOutcome`].
//!
//! With [`EnvelopeLayer::from_handle`] the configuration can be reloaded
//! while the service runs. The layer loads it once per request and decides
//! the whole request with that snapshot; the handler sees the same one as
//! [`RequestConfig`].

use crate::config::ServiceConfig;
use crate::reload::ServiceConfigHandle;
use crate::trust::{decide, Action, Rejection};
use crate::verify::{RequestBinding, VerifiedEnvelope};
use crate::{check_request, EnvelopeError};
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, Request, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};
use tower::{Layer, Service};

/// What the layer concluded for a request, available to handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvelopeOutcome {
    /// A valid envelope, trusted in this mode.
    Trusted(Box<VerifiedEnvelope>),
    /// The handler must authenticate the caller itself. `ignored_invalid`
    /// is set when an invalid envelope was ignored (`ServiceEnforced`).
    ServiceAuth {
        ignored_invalid: Option<EnvelopeError>,
    },
}

/// The configuration a request was decided with: loaded once when the
/// request reached the layer, kept until it is answered, whatever reloads
/// happen meanwhile. Available to handlers as an extractor.
#[derive(Clone, Debug)]
pub struct RequestConfig(pub Arc<ServiceConfig>);

/// Where the layer gets its configuration.
#[derive(Clone)]
enum Source {
    Static(Arc<ServiceConfig>),
    Reloadable(Arc<ServiceConfigHandle>),
}

impl Source {
    fn snapshot(&self) -> Arc<ServiceConfig> {
        match self {
            Source::Static(config) => config.clone(),
            Source::Reloadable(handle) => handle.current(),
        }
    }
}

/// Applies the configured trust mode to every request.
#[derive(Clone)]
pub struct EnvelopeLayer {
    source: Source,
}

impl EnvelopeLayer {
    /// A fixed configuration, for the life of the service.
    pub fn new(config: Arc<ServiceConfig>) -> EnvelopeLayer {
        EnvelopeLayer {
            source: Source::Static(config),
        }
    }

    /// The configuration `handle` holds at the time each request arrives.
    pub fn from_handle(handle: Arc<ServiceConfigHandle>) -> EnvelopeLayer {
        EnvelopeLayer {
            source: Source::Reloadable(handle),
        }
    }
}

impl<S> Layer<S> for EnvelopeLayer {
    type Service = EnvelopeService<S>;
    fn layer(&self, inner: S) -> EnvelopeService<S> {
        EnvelopeService {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service produced by [`EnvelopeLayer`].
#[derive(Clone)]
pub struct EnvelopeService<S> {
    inner: S,
    source: Source,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<S> Service<Request<Body>> for EnvelopeService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The one read of the configuration for this request.
        let config = self.source.snapshot();
        let outcome = if config.enabled {
            let check = check_request(
                config.verifier.as_ref(),
                request
                    .headers()
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_bytes())),
                &RequestBinding {
                    method: request.method().as_str(),
                    path: request.uri().path(),
                },
                unix_now(),
            );
            match decide(config.mode, check) {
                Action::UseEnvelope(valid) => EnvelopeOutcome::Trusted(valid),
                Action::ServiceAuth { ignored } => {
                    if let Some(e) = &ignored {
                        tracing::warn!(
                            mode = %config.mode,
                            code = e.code(),
                            "invalid envelope ignored: {e}"
                        );
                    }
                    EnvelopeOutcome::ServiceAuth {
                        ignored_invalid: ignored,
                    }
                }
                Action::Reject(rejection) => {
                    if let Some(e) = &rejection.cause {
                        tracing::warn!(
                            mode = %config.mode,
                            code = e.code(),
                            "envelope rejected: {e}"
                        );
                    }
                    return Box::pin(std::future::ready(Ok(rejection_response(&rejection))));
                }
            }
        } else {
            EnvelopeOutcome::ServiceAuth {
                ignored_invalid: None,
            }
        };
        request.extensions_mut().insert(outcome);
        request.extensions_mut().insert(RequestConfig(config));
        // Take the service that was driven to readiness; leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}

/// The problem+json response for a rejection. Names the failed check by its
/// code, never echoes header values.
pub fn rejection_response(rejection: &Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": rejection.status,
        "error": rejection.code,
        "envelope_error": rejection.cause.as_ref().map(EnvelopeError::code),
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<St: Send + Sync> FromRequestParts<St> for EnvelopeOutcome {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Response> {
        parts
            .extensions
            .get::<EnvelopeOutcome>()
            .cloned()
            .ok_or_else(missing_layer)
    }
}

impl<St: Send + Sync> FromRequestParts<St> for RequestConfig {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Response> {
        parts
            .extensions
            .get::<RequestConfig>()
            .cloned()
            .ok_or_else(missing_layer)
    }
}

/// The caller's identity from a trusted envelope. Extracting it fails with
/// 401 `envelope_required` when the request was not vouched for by the
/// gateway (the handler then has no identity to act on).
#[derive(Clone, Debug)]
pub struct GatewayIdentity(pub VerifiedEnvelope);

impl<St: Send + Sync> FromRequestParts<St> for GatewayIdentity {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Response> {
        match parts.extensions.get::<EnvelopeOutcome>() {
            Some(EnvelopeOutcome::Trusted(v)) => Ok(GatewayIdentity(v.as_ref().clone())),
            Some(EnvelopeOutcome::ServiceAuth { .. }) => Err(rejection_response(&Rejection {
                status: 401,
                code: "envelope_required",
                cause: None,
            })),
            None => Err(missing_layer()),
        }
    }
}

fn missing_layer() -> Response {
    // A wiring mistake in the service, not a client error.
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "envelope layer is not installed",
    )
        .into_response()
}
