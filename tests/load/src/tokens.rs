//! Access tokens from the Authority by client credentials: the token
//! endpoint from the issuer's discovery document, DPoP-bound tokens with a
//! proof on the token request (one `use_dpop_nonce` retry), and a refresher
//! per client that replaces each token well before it expires.

use crate::http::{send, Answer, HttpClient};
use crate::spec::Client;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stella_test_support::DpopKey;
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds since the epoch.
pub use stella_core::unix_now as now;

/// Unique proof ids: a random prefix per process and a counter.
pub struct JtiSource {
    prefix: String,
    next: AtomicU64,
}

impl JtiSource {
    pub fn new() -> Result<JtiSource, String> {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 12];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        Ok(JtiSource {
            prefix: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            next: AtomicU64::new(0),
        })
    }

    pub fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The Authority's token endpoint, from `{issuer}/.well-known/openid-configuration`.
pub async fn discover(http: &HttpClient, issuer: &str) -> Result<http::Uri, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let request = http::Request::get(&url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url}: {e}"))?;
    let answer = send(http, request, TIMEOUT)
        .await
        .map_err(|e| format!("discovery {url}: {e}"))?;
    if answer.status != 200 {
        return Err(format!("discovery {url}: status {}", answer.status));
    }
    let doc: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("discovery {url}: not json: {e}"))?;
    let endpoint = doc["token_endpoint"]
        .as_str()
        .ok_or_else(|| format!("discovery {url}: no token_endpoint"))?;
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("token_endpoint {endpoint:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "token_endpoint {endpoint:?}: only http is supported"
        ));
    }
    Ok(uri)
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a client's tokens come from.
pub struct TokenRequest {
    pub endpoint: http::Uri,
    pub client: Client,
    pub resource: Option<String>,
    /// Set for DPoP-bound tokens: the key the token is bound to.
    pub dpop: Option<Arc<DpopKey>>,
    pub jti: Arc<JtiSource>,
}

/// A token and how long it lives.
pub struct Issued {
    pub access_token: String,
    pub lifetime: Duration,
}

impl TokenRequest {
    /// One client-credentials grant.
    pub async fn fetch(&self, http: &HttpClient) -> Result<Issued, String> {
        let mut nonce: Option<String> = None;
        for _ in 0..2 {
            let answer = self.post(http, nonce.as_deref()).await?;
            let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            if answer.status == 200 {
                let access_token = body["access_token"]
                    .as_str()
                    .ok_or("token response has no access_token")?
                    .to_owned();
                let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(300));
                return Ok(Issued {
                    access_token,
                    lifetime,
                });
            }
            let fresh = answer
                .headers
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if body["error"] == "use_dpop_nonce" && fresh.is_some() && nonce.is_none() {
                nonce = fresh;
                continue;
            }
            return Err(format!(
                "token request for {}: status {}: {}",
                self.client.id,
                answer.status,
                snippet(&answer.body)
            ));
        }
        Err(format!(
            "token request for {}: nonce retry failed",
            self.client.id
        ))
    }

    async fn post(&self, http: &HttpClient, nonce: Option<&str>) -> Result<Answer, String> {
        let mut body = "grant_type=client_credentials".to_owned();
        if let Some(resource) = &self.resource {
            body.push_str(&format!("&resource={}", form(resource)));
        }
        let basic = STANDARD.encode(format!(
            "{}:{}",
            form(&self.client.id),
            form(&self.client.secret)
        ));
        let mut request = http::Request::post(self.endpoint.clone())
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        if let Some(key) = &self.dpop {
            let htu = format!(
                "http://{}{}",
                self.endpoint
                    .authority()
                    .map(|a| a.as_str())
                    .unwrap_or_default(),
                self.endpoint.path()
            );
            let proof = key.proof("POST", &htu, None, nonce, now(), &self.jti.next());
            request = request.header("dpop", proof);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("token request: {e}"))?;
        send(http, request, TIMEOUT)
            .await
            .map_err(|e| format!("token request for {}: {e}", self.client.id))
    }
}

/// Fetches the first token, then keeps replacing it in the background once
/// two thirds of its lifetime have passed (retrying every second on
/// failure, with the old token still in use until it expires).
pub async fn start(
    http: HttpClient,
    request: TokenRequest,
) -> Result<watch::Receiver<Arc<String>>, String> {
    let first = request.fetch(&http).await?;
    let (tx, rx) = watch::channel(Arc::new(first.access_token));
    let mut lifetime = first.lifetime;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(lifetime.mul_f64(2.0 / 3.0).max(Duration::from_secs(1))).await;
            loop {
                match request.fetch(&http).await {
                    Ok(issued) => {
                        lifetime = issued.lifetime;
                        if tx.send(Arc::new(issued.access_token)).is_err() {
                            return;
                        }
                        break;
                    }
                    Err(e) => {
                        eprintln!("stella-load: token refresh failed (retrying in 1 s): {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    Ok(rx)
}

/// The first 200 bytes of a body, printable.
pub fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form("svc-bearer"), "svc-bearer");
        assert_eq!(form("http://gw/api a"), "http%3A%2F%2Fgw%2Fapi%20a");
    }

    #[test]
    fn proof_ids_are_unique() {
        let jti = JtiSource::new().unwrap();
        let (a, b) = (jti.next(), jti.next());
        assert_ne!(a, b);
        assert_ne!(JtiSource::new().unwrap().next(), a);
    }
}
