//! The Shared Signals push endpoint of the admin listener (RFC 8935):
//! `POST <gateway.revocation.ssf.path>` with `Content-Type:
//! application/secevent+jwt` and one SET as the body. 202 with no body when
//! the SET was checked (its events applied or ignored); 400 with
//! `{"err", "description"}` (RFC 8935 §2.3) when it is refused; 503 when
//! the transmitter's keys or the replay store cannot answer (the
//! transmitter retries). No operator token: the SET's signature
//! authenticates the transmitter (`crate::ssf`).

use crate::gateway::Snapshot;
use crate::ssf::{Answer, Receiver};
use http::{header, Method, Response, StatusCode};
use serde_json::json;
use stella_authn::revocation::ssf::{SetError, MAX_SET_BYTES, MEDIA_TYPE};

pub(super) async fn handle(
    session: &mut pingora::protocols::http::ServerSession,
    gw: &Snapshot,
    receiver: &Receiver,
) -> Response<Vec<u8>> {
    if session.req_header().method != Method::POST {
        let mut response = refused(
            StatusCode::METHOD_NOT_ALLOWED,
            &SetError::InvalidRequest("use POST".into()),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    let media_type = session
        .req_header()
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|m| m.eq_ignore_ascii_case(MEDIA_TYPE)) {
        return answer(receiver.refuse(SetError::InvalidRequest(format!(
            "the content type must be {MEDIA_TYPE}"
        ))));
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_SET_BYTES {
                    return answer(receiver.refuse(SetError::InvalidRequest(format!(
                        "the SET is longer than {MAX_SET_BYTES} bytes"
                    ))));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                return answer(receiver.refuse(SetError::InvalidRequest(
                    "the request body could not be read".into(),
                )))
            }
        }
    }
    let issuers = &gw.authn.issuers;
    let authority = |iss: &str| issuers.by_issuer(iss).is_some();
    let outcome = receiver
        .receive(
            &body,
            &gw.shared.revocations,
            gw.authn.replay.as_ref(),
            &authority,
            gw.shared.clock.now(),
        )
        .await;
    answer(outcome)
}

/// The HTTP answer to a receiver's answer.
fn answer(answer: Answer) -> Response<Vec<u8>> {
    match answer {
        Answer::Accepted { .. } => {
            let mut response = Response::new(Vec::new());
            *response.status_mut() = StatusCode::ACCEPTED;
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, http::HeaderValue::from(0));
            response
        }
        Answer::Refused(e) => refused(StatusCode::BAD_REQUEST, &e),
        Answer::Unavailable(why) => {
            let mut response = super::json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"err": "temporarily_unavailable", "description": why}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
            response
        }
    }
}

/// An RFC 8935 §2.3 error answer.
fn refused(status: StatusCode, e: &SetError) -> Response<Vec<u8>> {
    super::json_reply(
        status,
        json!({"err": e.err(), "description": e.to_string()}),
    )
}
