//! The admin listener: `/healthz` (the process is up), `/readyz` (this
//! process can serve: configuration loaded, every Authority's keys loaded
//! once, not draining; `?verbose` adds the state of each dependency),
//! `/metrics` (Prometheus text), `/config` (active configuration version,
//! when it was applied, the last rejected reload, key ids),
//! `POST /reload`, the revocation calls (`revocations`) and, when
//! configured, the Shared Signals push endpoint (`ssf`). It is a
//! separate listener so it can be kept off the public network; with an
//! operator token file, calls that change state need an operator token
//! (`operator`), except the push endpoint, whose SETs are signed.

mod operator;
mod revocations;
mod ssf;

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
use stella_authority::lkg::What;

pub struct Admin {
    pub gateway: Arc<Gateway>,
    /// The Shared Signals receiver (`gateway.revocation.ssf`), if any.
    pub ssf: Option<Arc<crate::ssf::Receiver>>,
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

/// A JSON answer.
fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", body.to_string())
}

/// A problem+json answer of the admin listener's own (fixed text).
fn problem(status: StatusCode, error: &str, detail: &str) -> Response<Vec<u8>> {
    reply(
        status,
        "application/problem+json",
        json!({
            "type": "about:blank",
            "title": crate::response::title(status.as_u16()),
            "status": status.as_u16(),
            "error": error,
            "detail": detail,
        })
        .to_string(),
    )
}

/// The answer to an admin call refused for its operator token: 401 with a
/// challenge, or 403.
fn denied(denied: operator::Denied) -> Response<Vec<u8>> {
    let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = problem(status, denied.code(), denied.detail());
    if denied == operator::Denied::Missing {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"stella-gateway-admin\""),
        );
    }
    response
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
        let ping = gw.authn.replay.ping();
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
            Ok(Ok(()))
        )
    }

    fn metrics(&self, gw: &Snapshot, replay_reachable: bool) -> Result<String, prometheus::Error> {
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
             stella_gateway_authority_lkg_write_failures_total {}\n\
             # HELP stella_gateway_revocation_state_write_failures_total Failed writes of the revocation list's state file\n\
             # TYPE stella_gateway_revocation_state_write_failures_total counter\n\
             stella_gateway_revocation_state_write_failures_total {}\n",
            gw.authn.tokens.hits(),
            gw.authn.tokens.misses(),
            gw.authn.tokens.entry_count(),
            stella_jose::signature_verifications(),
            sum(gw, |j| j.unknown_kid_refetches()),
            sum(gw, |j| j.lkg_loads(What::Discovery, true)),
            sum(gw, |j| j.lkg_loads(What::Discovery, false)),
            sum(gw, |j| j.lkg_loads(What::Jwks, true)),
            sum(gw, |j| j.lkg_loads(What::Jwks, false)),
            sum(gw, |j| j.lkg_write_failures()),
            gw.shared.revocations.write_failures(),
        ) + &authority_metrics(gw)
            + &revocation_entries_metric(gw)
            + &self.ssf.as_ref().map(|r| r.metrics()).unwrap_or_default()
            + &degraded_metric(gw, replay_reachable);
        let issuers = gw.authn.issuers.list();
        gw.metrics().render(&External {
            jwks_refreshes: sum(gw, |j| j.refreshes()),
            jwks_refresh_failures: sum(gw, |j| j.refresh_failures()),
            jwks_keys: sum(gw, |j| j.key_ids().len() as u64),
            jwks_age_seconds: issuers.iter().filter_map(|i| i.jwks.age()).max(),
            ready: ready(gw),
            extra: &extra,
        })
    }
}

/// A JWKS counter summed over every Authority.
fn sum(gw: &Snapshot, f: impl Fn(&stella_authority::JwksCache) -> u64) -> u64 {
    gw.authn.issuers.list().iter().map(|i| f(&i.jwks)).sum()
}

/// Readiness: this process can serve. Its configuration is loaded (it
/// would not run otherwise), it has had every Authority's keys (fetched,
/// or loaded from the last-known-good state), and it is not draining.
/// Shared dependencies are deliberately not part of it: the keys' age, the
/// replay store and the claims and introspection endpoints fail on every
/// replica at once, and a load balancer that followed them would take all
/// of them out, including the routes that do not need them. Those are
/// `degraded` instead (`/readyz?verbose`, `stella_gateway_degraded`), and
/// refused by exactly the requests that need them (docs/design.md §3.8).
fn ready(gw: &Snapshot) -> bool {
    keys_loaded(gw) && !gw.shared.is_draining()
}

/// Every Authority's keys have been loaded once.
fn keys_loaded(gw: &Snapshot) -> bool {
    gw.authn
        .issuers
        .list()
        .iter()
        .all(|i| i.jwks.last_success().is_some())
}

/// Every Authority's keys are loaded and within their max age (refresh
/// plus max-stale); past it, tokens not yet verified get 503.
fn keys_fresh(gw: &Snapshot) -> bool {
    gw.authn.issuers.list().iter().all(|i| i.jwks.is_ready())
}

/// The dependencies that are degraded: `authority_keys` (some Authority's
/// keys are past their max age or were never loaded) and `replay_store`
/// (the DPoP replay store does not answer a ping within 1 s).
fn degraded(gw: &Snapshot, replay_reachable: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !keys_fresh(gw) {
        out.push("authority_keys");
    }
    if !replay_reachable {
        out.push("replay_store");
    }
    out
}

/// `stella_gateway_degraded`, one series per dependency.
fn degraded_metric(gw: &Snapshot, replay_reachable: bool) -> String {
    let down = degraded(gw, replay_reachable);
    let mut text = String::from(
        "# HELP stella_gateway_degraded 1 when a shared dependency is degraded: the requests that need it get 503 while the gateway stays ready\n\
         # TYPE stella_gateway_degraded gauge\n",
    );
    for dependency in ["authority_keys", "replay_store"] {
        let value = u8::from(down.contains(&dependency));
        text.push_str(&format!(
            "stella_gateway_degraded{{dependency=\"{dependency}\"}} {value}\n"
        ));
    }
    text
}

/// `stella_gateway_revocation_entries{kind}`: entries in the revocation
/// list, one series per kind (zero included).
fn revocation_entries_metric(gw: &Snapshot) -> String {
    use stella_authn::revocation::Kind;
    let mut counts = [0u64; Kind::ALL.len()];
    for record in gw.shared.revocations.list.records() {
        if let Some(i) = Kind::ALL.iter().position(|k| *k == record.kind()) {
            counts[i] += 1;
        }
    }
    let mut text = String::from(
        "# HELP stella_gateway_revocation_entries Entries in the revocation list, by kind\n\
         # TYPE stella_gateway_revocation_entries gauge\n",
    );
    for (kind, n) in Kind::ALL.iter().zip(counts) {
        text.push_str(&format!(
            "stella_gateway_revocation_entries{{kind=\"{}\"}} {n}\n",
            escape_label(kind.as_str())
        ));
    }
    // Only with a shared store: an alert on 0 means something there.
    if let Some((up, ok, failed)) = gw.shared.revocations.store_status() {
        text.push_str(&format!(
            "# HELP stella_gateway_revocation_store_up 1 when the shared revocation store answered the last full read and the change subscription is open\n\
             # TYPE stella_gateway_revocation_store_up gauge\n\
             stella_gateway_revocation_store_up {}\n\
             # HELP stella_gateway_revocation_store_syncs_total Full reads of the shared revocation store, by result\n\
             # TYPE stella_gateway_revocation_store_syncs_total counter\n\
             stella_gateway_revocation_store_syncs_total{{result=\"ok\"}} {ok}\n\
             stella_gateway_revocation_store_syncs_total{{result=\"error\"}} {failed}\n",
            u8::from(up)
        ));
    }
    if let Some((age, stale)) = gw.shared.revocations.store_age() {
        text.push_str(&format!(
            "# HELP stella_gateway_revocation_store_age_seconds How old this node's copy of the shared revocation list is: 0 while current, else the time since the last full read that worked\n\
             # TYPE stella_gateway_revocation_store_age_seconds gauge\n\
             stella_gateway_revocation_store_age_seconds {:.3}\n\
             # HELP stella_gateway_revocation_stale 1 when this node's copy of the shared revocation list is older than gateway.revocation.stale_after_seconds (with when_stale: refuse, requests with a credential get 503)\n\
             # TYPE stella_gateway_revocation_stale gauge\n\
             stella_gateway_revocation_stale {}\n",
            age.as_secs_f64(),
            u8::from(stale)
        ));
    }
    text
}

/// Per-Authority staleness, max-stale, introspection and claims metrics.
/// The `issuer` label takes one value per configured Authority.
fn authority_metrics(gw: &Snapshot) -> String {
    use std::fmt::Write;
    let mut staleness = String::new();
    let mut max_stale = String::new();
    let mut introspection = String::new();
    let mut claims = String::new();
    for issuer in gw.authn.issuers.list() {
        let label = escape_label(issuer.issuer());
        let jwks = &issuer.jwks;
        let mut rows: Vec<(&str, Option<u64>, u64)> = vec![
            ("discovery", jwks.discovery_age(), jwks.max_age()),
            ("jwks", jwks.age(), jwks.max_age()),
        ];
        if let Some(i) = &issuer.introspection {
            rows.push(("introspection", i.staleness(), i.max_stale()));
            for (result, n) in i.counters().rows() {
                let _ = writeln!(
                    introspection,
                    "stella_gateway_introspection_total{{issuer=\"{label}\",result=\"{result}\"}} {n}"
                );
            }
        }
        if let Some(c) = &issuer.claims {
            rows.push(("claims", c.staleness(), c.max_stale()));
            let counters = c.counters();
            for (result, n) in [
                ("ok", counters.ok.load(std::sync::atomic::Ordering::Relaxed)),
                (
                    "error",
                    counters.error.load(std::sync::atomic::Ordering::Relaxed),
                ),
            ] {
                let _ = writeln!(
                    claims,
                    "stella_gateway_claims_refreshes_total{{issuer=\"{label}\",result=\"{result}\"}} {n}"
                );
            }
        }
        for (what, age, limit) in rows {
            if let Some(age) = age {
                let _ = writeln!(
                    staleness,
                    "stella_gateway_authority_staleness_seconds{{issuer=\"{label}\",what=\"{what}\"}} {age}"
                );
            }
            let _ = writeln!(
                max_stale,
                "stella_gateway_authority_max_stale_seconds{{issuer=\"{label}\",what=\"{what}\"}} {limit}"
            );
        }
    }
    let mut out = String::new();
    for (name, kind, help, body) in [
        (
            "stella_gateway_authority_staleness_seconds",
            "gauge",
            "Seconds since the last successful fetch from the Authority, by issuer and document",
            staleness,
        ),
        (
            "stella_gateway_authority_max_stale_seconds",
            "gauge",
            "Staleness at which requests needing that document get 503, by issuer and document",
            max_stale,
        ),
        (
            "stella_gateway_introspection_total",
            "counter",
            "Opaque-token introspection lookups by issuer and result (hit, miss, inactive, error, stale)",
            introspection,
        ),
        (
            "stella_gateway_claims_refreshes_total",
            "counter",
            "Claims endpoint fetches by issuer and result (ok, error)",
            claims,
        ),
    ] {
        if body.is_empty() {
            continue;
        }
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{body}");
    }
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let verbose = session.req_header().uri.query().is_some_and(|q| {
            q.split('&')
                .any(|p| p == "verbose" || p.starts_with("verbose="))
        });
        let post = session.req_header().method == http::Method::POST;
        if let Some(receiver) = self.ssf.as_ref().filter(|r| r.path() == path) {
            let gw = self.gateway.current();
            return ssf::handle(session, &gw, receiver).await;
        }
        let operator = if operator::needs_operator(&session.req_header().method, &path) {
            let headers: Vec<&[u8]> = session
                .req_header()
                .headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let gw = self.gateway.current();
            match operator::authorize(gw.config.admin.operators.as_ref(), &headers) {
                Ok(operator) => Some(operator),
                Err(refusal) => {
                    tracing::warn!(
                        target: crate::revocation::AUDIT,
                        method = %session.req_header().method,
                        // A fixed name, never the path as sent.
                        call = match path.split('/').nth(1) {
                            Some("reload") => "reload",
                            Some("revocations") => "revocations",
                            _ => "other",
                        },
                        status = refusal.status(),
                        "admin call refused: {}",
                        refusal.detail()
                    );
                    return denied(refusal);
                }
            }
        } else {
            None
        };
        if path == "/revocations" || path.starts_with("/revocations/") {
            let gw = self.gateway.current();
            let operator = operator.unwrap_or_else(|| crate::revocation::Operator {
                name: operator::DEFAULT_OPERATOR.into(),
                authenticated: false,
            });
            return revocations::handle(session, &gw, operator).await;
        }
        if path == "/reload" {
            if !post {
                return reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    "use POST\n".into(),
                );
            }
            if let Some(operator) = &operator {
                tracing::info!(
                    target: crate::revocation::AUDIT,
                    action = "reload",
                    operator = %operator.name,
                    authenticated = operator.authenticated,
                    "reload asked on the admin listener"
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
                let ready = ready(&gw);
                let mut body = json!({
                    "ready": ready,
                    "draining": gw.shared.is_draining(),
                    "authority_keys_loaded": keys_loaded(&gw),
                });
                if verbose {
                    let replay = self.replay_store_reachable(&gw).await;
                    body["authority_keys_fresh"] = json!(keys_fresh(&gw));
                    body["replay_store_reachable"] = json!(replay);
                    body["jwks_age_seconds"] = json!(gw
                        .authn
                        .issuers
                        .list()
                        .iter()
                        .filter_map(|i| i.jwks.age())
                        .max());
                    body["degraded"] = json!(degraded(&gw, replay));
                    body["authorities"] = gw
                        .authn
                        .issuers
                        .list()
                        .iter()
                        .map(|i| {
                            json!({
                                "issuer": i.issuer(),
                                "keys_loaded": i.jwks.last_success().is_some(),
                                "keys_fresh": i.jwks.is_ready(),
                                "jwks_age_seconds": i.jwks.age(),
                                "max_age_seconds": i.jwks.max_age(),
                            })
                        })
                        .collect();
                }
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                reply(status, "application/json", body.to_string())
            }
            // The public envelope keys as a JWKS (crate::keyset).
            crate::keyset::PATH => reply(
                StatusCode::OK,
                crate::keyset::CONTENT_TYPE,
                String::from_utf8_lossy(&gw.keyset).into_owned(),
            ),
            "/metrics" => match self.metrics(&gw, self.replay_store_reachable(&gw).await) {
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
                        "public_jwks": gw.config.listeners.public_jwks,
                        "services": gw.signer.service_kids().map(|(service, kid)| json!({
                            "service": service,
                            "kid": kid,
                        })).collect::<Vec<_>>(),
                    },
                    "authority": {
                        "issuer": gw.authn.issuers.first().issuer(),
                        "key_ids": gw.authn.issuers.first().jwks.key_ids(),
                    },
                    "authorities": gw.authn.issuers.list().iter().map(|i| json!({
                        "issuer": i.issuer(),
                        "key_ids": i.jwks.key_ids(),
                        "jwks_age_seconds": i.jwks.age(),
                        "tenants": i.config.tenants,
                        "introspection": i.introspection.is_some(),
                        "claims": i.claims.is_some(),
                    })).collect::<Vec<_>>(),
                    "services": gw.upstreams.iter().map(|u| json!({
                        "name": u.service.name,
                        "identity_format": u.service.identity_format.as_str(),
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
