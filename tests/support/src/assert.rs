//! Assertions on what the user sees: refusals as problem+json with their
//! challenge, and what the echo service received.

use crate::http::Response;
use serde_json::Value;

/// A refusal made by the gateway: status, problem+json body, `error` code.
#[track_caller]
pub fn assert_problem(r: &Response, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{r:?}"
    );
    assert_eq!(r.json()["error"], error, "{}", r.text());
}

/// A 401 for an invalid token, with its challenge and the verifier's reason.
#[track_caller]
pub fn assert_invalid_token(r: &Response) {
    assert_problem(r, 401, "invalid_token");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"stella-gateway\"")
            && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
}

/// The echo service answered, having accepted the gateway's envelope.
#[track_caller]
pub fn assert_reached_via_envelope(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["source"], "envelope", "{body}");
    body
}

/// Every header the service received, names lowercased.
pub fn received(body: &Value) -> Vec<(String, String)> {
    body["received_headers"]
        .as_array()
        .expect("received_headers")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// All values of one received header.
pub fn received_values(body: &Value, name: &str) -> Vec<String> {
    received(body)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// A 401 for a DPoP proof defect: problem+json `invalid_dpop_proof`, one
/// `DPoP` challenge with that error and the `algs` the gateway accepts.
#[track_caller]
pub fn assert_invalid_dpop_proof(r: &Response) {
    assert_problem(r, 401, "invalid_dpop_proof");
    let challenges = r.header_all("www-authenticate");
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    let c = challenges[0];
    assert!(
        c.starts_with("DPoP realm=\"stella-gateway\"")
            && c.contains("error=\"invalid_dpop_proof\"")
            && c.contains("algs=\""),
        "{c}"
    );
}
