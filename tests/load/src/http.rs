//! The HTTP client: hyper 1 through hyper-util's pooled legacy client,
//! HTTP/1.1 with keep-alive, plain http only (the drills run on loopback).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Response bodies are read up to this size (enough for any echo answer or
/// problem document); the rest is an error.
const BODY_LIMIT: usize = 256 * 1024;

/// A pooled client that keeps up to `max_idle` idle connections per host.
pub fn client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(20))
        .build(connector)
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Failure {
    Timeout,
    /// Connect, write or read failed; the text is hyper's error chain.
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

/// A whole response: head and body.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends `request` and reads the whole response within `timeout`.
pub async fn send(
    client: &HttpClient,
    request: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| Failure::Transport(chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| Failure::Transport(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

/// An error and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
