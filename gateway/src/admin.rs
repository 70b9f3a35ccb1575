//! The admin listener: `/healthz` (the process is up), `/readyz` (the
//! Authority's keys are loaded and fresh enough, not shutting down),
//! `/metrics` (Prometheus text), `/config` (active configuration version,
//! when it was applied, the last rejected reload, key ids) and
//! `POST /reload`. It is a separate listener so it can be kept off the
//! public network.

use crate::authority::lkg::What;
use crate::gateway::{Gateway, Snapshot};
use crate::reload::{Outcome, Trigger};
use crate::response::Refusal;
use crate::telemetry::External;
use async_trait::async_trait;
use http::{header, HeaderValue, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

pub struct Admin {
    pub gateway: Arc<Gateway>,
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|e| internal_error("admin response", &e))
}

/// 500 with a problem+json body: what the admin listener answers when it
/// fails itself, never an empty 200. Built from fixed parts only, so it
/// cannot fail in turn.
fn internal_error(what: &str, error: &dyn std::fmt::Display) -> Response<Vec<u8>> {
    tracing::error!(error = %error, "{what} failed; answering 500");
    let body = Refusal::Internal.reply("admin").body;
    let mut response = Response::new(Vec::new());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = body;
    response
}

impl Admin {
    /// Whether the replay store answers (a memory store always does).
    async fn replay_store_reachable(&self, gw: &Snapshot) -> bool {
        let ping = gw.replay.ping();
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
            Ok(Ok(()))
        )
    }

    fn metrics(&self, gw: &Snapshot) -> Result<String, prometheus::Error> {
        let extra = format!(
            "# HELP stella_gateway_token_cache_hits_total Access tokens found in the verified-token cache\n\
             # TYPE stella_gateway_token_cache_hits_total counter\n\
             stella_gateway_token_cache_hits_total {}\n\
             # HELP stella_gateway_token_cache_misses_total Access tokens verified in full\n\
             # TYPE stella_gateway_token_cache_misses_total counter\n\
             stella_gateway_token_cache_misses_total {}\n\
             # HELP stella_gateway_token_cache_entries Tokens in the verified-token cache\n\
             # TYPE stella_gateway_token_cache_entries gauge\n\
             stella_gateway_token_cache_entries {}\n\
             # HELP stella_gateway_signature_verifications_total Asymmetric signature verifications (access tokens and DPoP proofs)\n\
             # TYPE stella_gateway_signature_verifications_total counter\n\
             stella_gateway_signature_verifications_total {}\n\
             # HELP stella_gateway_jwks_unknown_kid_refetches_total JWKS fetches caused by an unknown kid\n\
             # TYPE stella_gateway_jwks_unknown_kid_refetches_total counter\n\
             stella_gateway_jwks_unknown_kid_refetches_total {}\n\
             # HELP stella_gateway_authority_lkg_loads_total Persisted Authority documents read at start, by document and result\n\
             # TYPE stella_gateway_authority_lkg_loads_total counter\n\
             stella_gateway_authority_lkg_loads_total{{what=\"discovery\",result=\"loaded\"}} {}\n\
             stella_gateway_authority_lkg_loads_total{{what=\"discovery\",result=\"ignored\"}} {}\n\
             stella_gateway_authority_lkg_loads_total{{what=\"jwks\",result=\"loaded\"}} {}\n\
             stella_gateway_authority_lkg_loads_total{{what=\"jwks\",result=\"ignored\"}} {}\n\
             # HELP stella_gateway_authority_lkg_write_failures_total Failed writes of the persisted Authority documents\n\
             # TYPE stella_gateway_authority_lkg_write_failures_total counter\n\
             stella_gateway_authority_lkg_write_failures_total {}\n",
            gw.tokens.hits(),
            gw.tokens.misses(),
            gw.tokens.entry_count(),
            crate::jose::signature_verifications(),
            gw.jwks.unknown_kid_refetches(),
            gw.jwks.lkg_loads(What::Discovery, true),
            gw.jwks.lkg_loads(What::Discovery, false),
            gw.jwks.lkg_loads(What::Jwks, true),
            gw.jwks.lkg_loads(What::Jwks, false),
            gw.jwks.lkg_write_failures(),
        );
        gw.metrics().render(&External {
            jwks_refreshes: gw.jwks.refreshes(),
            jwks_refresh_failures: gw.jwks.refresh_failures(),
            jwks_keys: gw.jwks.key_ids().len() as u64,
            jwks_age_seconds: gw.jwks.age(),
            ready: gw.jwks.is_ready(),
            extra: &extra,
        })
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let post = session.req_header().method == http::Method::POST;
        if path == "/reload" {
            if !post {
                return reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    "use POST\n".into(),
                );
            }
            let outcome = self.gateway.reload(Trigger::Admin).await;
            let (status, body) = match &outcome {
                Outcome::Applied { version } | Outcome::Unchanged { version } => (
                    StatusCode::OK,
                    json!({"result": outcome.result(), "config_version": version, "errors": []}),
                ),
                Outcome::Rejected { errors } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({
                        "result": "rejected",
                        "config_version": self.gateway.current().config_version,
                        "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }),
                ),
            };
            return reply(status, "application/json", body.to_string());
        }
        let gw = self.gateway.current();
        match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => {
                let keys = gw.jwks.is_ready();
                let replay = self.replay_store_reachable(&gw).await;
                let draining = gw.shared.is_draining();
                let ready = keys && replay && !draining;
                let body = json!({
                    "ready": ready,
                    "authority_keys_loaded": keys,
                    "replay_store_reachable": replay,
                    "jwks_age_seconds": gw.jwks.age(),
                    "draining": draining,
                });
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                reply(status, "application/json", body.to_string())
            }
            "/metrics" => match self.metrics(&gw) {
                Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
                Err(e) => internal_error("metrics encoding", &e),
            },
            "/config" => {
                let status = self.gateway.reload.status();
                let body = json!({
                    "config_version": gw.config_version,
                    "applied_at": status.applied_at,
                    "applied_by": status.applied_by,
                    "generation": status.generation,
                    "last_rejected": status.last_rejected.as_ref().map(|r| json!({
                        "at": r.at,
                        "trigger": r.trigger.as_str(),
                        "errors": r.errors,
                    })),
                    "gateway_id": gw.config.gateway_id,
                    "envelope": {
                        "kid": gw.signer.key().kid().as_str(),
                        "active_kid": gw.signer.key().kid().as_str(),
                        "alg": gw.signer.key().alg().as_str(),
                        "kids": gw.config.envelope_keys.iter().map(|k| json!({
                            "kid": k.kid,
                            "alg": k.alg.as_str(),
                            "active": k.kid == gw.signer.key().kid().as_str(),
                        })).collect::<Vec<_>>(),
                    },
                    "authority": {
                        "issuer": gw.config.authority.issuer,
                        "key_ids": gw.jwks.key_ids(),
                    },
                    "services": gw.upstreams.iter().map(|u| json!({
                        "name": u.service.name,
                        "upstreams": u.service.upstreams,
                        "addresses": u.endpoints().iter().map(|e| e.addr.to_string()).collect::<Vec<_>>(),
                        "available": u.available(),
                    })).collect::<Vec<_>>(),
                    "routes": gw.policies.routes().len(),
                    "on_missing_authorization": gw.config.on_missing_authorization.as_str(),
                });
                reply(StatusCode::OK, "application/json", body.to_string())
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_internal_error(r: &Response<Vec<u8>>) {
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["status"], 500);
        assert_eq!(body["error"], "internal_error");
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            r.body().len().to_string()
        );
    }

    #[test]
    fn a_response_that_cannot_be_built_is_a_500_problem_not_an_empty_200() {
        // A header value with a line break is refused by the builder.
        let r = reply(StatusCode::OK, "text/plain\r\nx: y", "ok\n".into());
        assert_internal_error(&r);
    }

    #[test]
    fn metrics_that_cannot_be_encoded_are_a_500_problem() {
        let e = prometheus::Error::Msg("broken".into());
        assert_internal_error(&internal_error("metrics encoding", &e));
    }

    #[test]
    fn a_good_response_keeps_its_status_and_body() {
        let r = reply(StatusCode::OK, "text/plain", "ok\n".into());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.body(), b"ok\n");
    }
}
