//! The revocation calls of the admin listener (docs/design.md §3.8):
//!
//! - `POST /revocations` with `{"kind", "value", "reason", "for_seconds"
//!   or "expires_at", "issuer" (sub: default the only Authority; jti,
//!   client_id, sid: optional, default any issuer)}`: 201 added, 200
//!   replaced;
//! - `DELETE /revocations/{kind}/{value, its SHA-256 or a prefix of at
//!   least 8 hex digits}` (`?issuer=` narrows it to one issuer's): 200 with what was
//!   removed, 404 when nothing matched, 409 when a prefix is ambiguous;
//! - `GET /revocations`: every entry as kind, issuer, a prefix of the
//!   value's SHA-256, reason, operator, times and hits; never the value.
//!
//! Every change is applied at once (the next request sees it), written to
//! the state file when there is one, and logged as an audit line
//! (`crate::revocation`).

use crate::gateway::Snapshot;
use crate::revocation::Operator;
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use stella_authn::revocation::{Entry, Kind, Record, RevocationError, Upserted};

/// Largest request body read.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    kind: String,
    value: String,
    /// For `sub`: the issuer (default: the only configured Authority);
    /// for `jti`, `client_id`, `sid`: the issuer if only its identifier is
    /// meant (default: any issuer's).
    #[serde(default)]
    issuer: Option<String>,
    reason: String,
    /// How long the entry lives; or `expires_at`.
    #[serde(default)]
    for_seconds: Option<u64>,
    /// Unix seconds; or `for_seconds`.
    #[serde(default)]
    expires_at: Option<u64>,
}

/// The answer to a request under `/revocations`.
pub(super) async fn handle(
    session: &mut pingora::protocols::http::ServerSession,
    gw: &Snapshot,
    operator: Operator,
) -> Response<Vec<u8>> {
    let method = session.req_header().method.clone();
    let path = session.req_header().uri.path().to_owned();
    let query = session.req_header().uri.query().map(str::to_owned);
    let now = gw.shared.clock.now();
    match (method, path.strip_prefix("/revocations")) {
        (Method::GET, Some("" | "/")) => list(gw, now),
        (Method::POST, Some("" | "/")) => {
            let body = match read_body(session).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            revoke(gw, &body, operator, now).await
        }
        (Method::DELETE, Some(rest)) if rest.len() > 1 => {
            unrevoke(gw, &rest[1..], query.as_deref(), &operator, now).await
        }
        (_, Some("" | "/")) => super::json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method_not_allowed", "detail": "use GET or POST /revocations, DELETE /revocations/{kind}/{value}"}),
        ),
        _ => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such revocation call",
        ),
    }
}

async fn read_body(
    session: &mut pingora::protocols::http::ServerSession,
) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(problem(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request",
                        "the request body is larger than 64 KiB",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read",
                ))
            }
        }
    }
}

fn list(gw: &Snapshot, now: u64) -> Response<Vec<u8>> {
    let revocations = &gw.shared.revocations;
    let records = revocations.list.records();
    super::json_reply(
        StatusCode::OK,
        json!({
            "count": records.len(),
            "persistent": revocations.persistent(),
            "shared_store_up": revocations.store_status().map(|(up, _, _)| up),
            "revocations": records.iter().map(|r| summary(r, now)).collect::<Vec<_>>(),
        }),
    )
}

async fn revoke(gw: &Snapshot, body: &[u8], operator: Operator, now: u64) -> Response<Vec<u8>> {
    let request: RevokeRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a json object with kind, value, reason and for_seconds or expires_at (issuer for sub, jti, client_id, sid)",
            )
        }
    };
    let Some(kind) = Kind::parse(&request.kind) else {
        return unknown_kind();
    };
    let expires_at = match (request.for_seconds, request.expires_at) {
        (Some(seconds), None) => now.saturating_add(seconds),
        (None, Some(at)) => at,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give exactly one of for_seconds and expires_at",
            )
        }
    };
    let issuer = match (kind, request.issuer) {
        (Kind::Sub, None) => match gw.authn.issuers.list() {
            [only] => Some(only.issuer().to_owned()),
            _ => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "issuer is required for sub: several Authorities are configured",
                )
            }
        },
        (Kind::Sub | Kind::Jti | Kind::ClientId | Kind::Sid, Some(issuer)) => {
            if gw.authn.issuers.by_issuer(&issuer).is_none() {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "issuer is not one of the configured Authorities",
                );
            }
            Some(issuer)
        }
        (_, issuer) => issuer,
    };
    let entry = Entry {
        kind,
        issuer,
        value: request.value,
        reason: request.reason,
        operator: operator.name.clone(),
        created_at: now,
        expires_at,
    };
    match gw.shared.revocations.revoke(entry, &operator, now).await {
        Ok((outcome, record, reach)) => {
            let (status, result) = match outcome {
                Upserted::Added => (StatusCode::CREATED, "added"),
                Upserted::Replaced => (StatusCode::OK, "replaced"),
            };
            super::json_reply(
                status,
                json!({
                    "result": result,
                    "revocation": summary(&record, now),
                    "persisted": reach.persisted,
                    "shared": reach.shared,
                }),
            )
        }
        Err(e) => refused(&e),
    }
}

async fn unrevoke(
    gw: &Snapshot,
    rest: &str,
    query: Option<&str>,
    operator: &Operator,
    now: u64,
) -> Response<Vec<u8>> {
    let (kind, selector) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(kind) = percent_decode(kind).as_deref().and_then(Kind::parse) else {
        return unknown_kind();
    };
    let Some(selector) = percent_decode(selector).filter(|s| !s.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name the entry: DELETE /revocations/{kind}/{value or its sha-256 prefix}",
        );
    };
    let issuer = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("issuer="))
        .and_then(percent_decode);
    match gw
        .shared
        .revocations
        .unrevoke(kind, &selector, issuer.as_deref(), operator)
        .await
    {
        Ok((removed, _)) if removed.is_empty() => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no revocation of that kind matches",
        ),
        Ok((removed, reach)) => super::json_reply(
            StatusCode::OK,
            json!({
                "result": "removed",
                "removed": removed.iter().map(|r| summary(r, now)).collect::<Vec<_>>(),
                "persisted": reach.persisted,
                "shared": reach.shared,
            }),
        ),
        Err(e) => refused(&e),
    }
}

/// An entry as the API shows it: never the value.
fn summary(record: &Record, now: u64) -> Value {
    let entry = record.entry();
    json!({
        "kind": entry.kind.as_str(),
        "issuer": entry.issuer,
        "value_sha256_prefix": record.hash_prefix(),
        "reason": entry.reason,
        "operator": entry.operator,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "expires_in_seconds": entry.expires_at.saturating_sub(now),
        "hits": record.hits(),
    })
}

fn refused(e: &RevocationError) -> Response<Vec<u8>> {
    let (status, code) = match e {
        RevocationError::Full => (StatusCode::CONFLICT, "revocation_list_full"),
        RevocationError::Ambiguous => (StatusCode::CONFLICT, "ambiguous_selector"),
        _ => (StatusCode::BAD_REQUEST, "invalid_request"),
    };
    problem(status, code, &e.to_string())
}

fn unknown_kind() -> Response<Vec<u8>> {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "kind must be one of jti, sub, client_id, jkt, x5t#S256 (or x5t_s256), spiffe_id, tenant, sid",
    )
}

fn problem(status: StatusCode, error: &str, detail: &str) -> Response<Vec<u8>> {
    super::problem(status, error, detail)
}

/// `%XX` sequences decoded; `None` for a bad sequence or bytes that are
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded_and_bad_escapes_refused() {
        assert_eq!(
            percent_decode("spiffe%3A%2F%2Fexample.org%2Fw").as_deref(),
            Some("spiffe://example.org/w")
        );
        assert_eq!(percent_decode("x5t%23S256").as_deref(), Some("x5t#S256"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%+1"), None);
    }
}
