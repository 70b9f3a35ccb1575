//! The gateway's one HTTP client ([`client`]: hyper over rustls), used for
//! the Authority's documents here, and by the command line (`token`, `call`,
//! `smoke`) and the OTLP trace exporter; and over it, one bounded JSON
//! request to the Authority: a GET (discovery, JWKS) or a form POST with
//! client authentication (introspection, claims).
//!
//! HTTP/1.1 through hyper, TLS through rustls with the ring provider (the
//! tree's only TLS crypto backend) and the platform's root certificates, or
//! an Authority's own (`ca_file`, [`authority_roots`]).
//! Each request is bounded: a total timeout covering connect, headers and
//! body, and a 1 MiB body cap. Redirects are not followed, plain http is
//! refused unless the fetcher was built to allow it, and the body must be a
//! single JSON object without duplicate members.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use stella_envelope::encoding::check_json_object;
use stella_jose::JsonObject;

/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

const USER_AGENT_VALUE: &str = concat!("stella-gateway/", env!("CARGO_PKG_VERSION"));

/// Why a fetch failed. Carries no document content and no url.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("url is not an absolute http(s) url")]
    InvalidUrl,
    #[error("url is plain http and only https is allowed")]
    InsecureScheme,
    #[error("request did not complete within {millis} ms")]
    Timeout { millis: u64 },
    #[error("connection or tls failure")]
    Transport,
    #[error("http status {0}, expected 200")]
    Status(u16),
    #[error("body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("body is not a json object without duplicate members")]
    NotJson,
    #[error("tls client configuration could not be built")]
    TlsSetup,
}

impl FetchError {
    /// A stable label for metrics and logs; one of a fixed set.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl => "invalid_url",
            FetchError::InsecureScheme => "insecure_scheme",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Transport => "transport",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::NotJson => "not_json",
            FetchError::TlsSetup => "tls_setup",
        }
    }
}

/// The client type every user of [`client`] holds.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why [`client`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("tls client configuration could not be built")]
    TlsSetup,
    #[error("the client key does not match its certificate")]
    ClientCertificate,
}

/// The gateway's HTTP client: HTTP/1.1 through hyper, TLS through rustls
/// with the ring provider (the tree's only TLS crypto backend), trusting
/// exactly `roots` ([`platform_roots`], plus a private CA where the caller
/// has one). `identity`: a client certificate chain and its key, for
/// servers that ask for one. `allow_http`: plain http urls too. `pooled`:
/// keep idle connections for reuse (their tasks live on the runtime that
/// opened them, so only for callers that stay on one runtime).
pub fn client(
    roots: rustls::RootCertStore,
    identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
    allow_http: bool,
    pooled: bool,
) -> Result<HttpClient, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ClientError::TlsSetup)?
        .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|_| ClientError::ClientCertificate)?,
    };
    let connector = HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = if allow_http {
        connector.https_or_http()
    } else {
        connector.https_only()
    }
    .enable_http1()
    .build();
    let mut builder = Client::builder(TokioExecutor::new());
    if !pooled {
        builder.pool_max_idle_per_host(0);
    }
    Ok(builder.build(connector))
}

/// A reusable client for the Authority's documents; one connection per
/// fetch, or pooled ([`HttpFetcher::pooled`]).
#[derive(Clone)]
pub struct HttpFetcher {
    client: HttpClient,
    timeout: Duration,
    allow_http: bool,
}

impl std::fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("timeout", &self.timeout)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

impl HttpFetcher {
    /// A fetcher whose requests each complete within `timeout`. With
    /// `allow_http` false, only https urls are fetched.
    ///
    /// Root certificates come from the platform store. If none can be
    /// loaded, https fetches fail certificate verification (fail closed) and
    /// an error is logged once here; plain http, where allowed, still works.
    pub fn new(timeout: Duration, allow_http: bool) -> Result<HttpFetcher, FetchError> {
        HttpFetcher::with_roots(timeout, allow_http, platform_roots())
    }

    /// Like [`HttpFetcher::new`], trusting exactly `roots` for https (a
    /// private CA, or a test's own).
    pub fn with_roots(
        timeout: Duration,
        allow_http: bool,
        roots: rustls::RootCertStore,
    ) -> Result<HttpFetcher, FetchError> {
        // No connection pooling: fetches are minutes apart, and a pooled
        // connection's task lives on the runtime that opened it, which under
        // Pingora (one runtime per service) need not be the caller's.
        let client = client(roots, None, allow_http, false).map_err(|_| FetchError::TlsSetup)?;
        Ok(HttpFetcher {
            client,
            timeout,
            allow_http,
        })
    }

    /// Like [`HttpFetcher::new`], keeping connections open between
    /// requests (one pool, shared by clones): for the requests made on the
    /// request path (introspection, claims), which follow each other
    /// closely. A pooled connection is driven by the runtime that opened it;
    /// Pingora's runtimes live as long as the process.
    /// Trusts exactly `roots`, as [`HttpFetcher::with_roots`].
    pub fn pooled(
        timeout: Duration,
        allow_http: bool,
        roots: rustls::RootCertStore,
    ) -> Result<HttpFetcher, FetchError> {
        let client = client(roots, None, allow_http, true).map_err(|_| FetchError::TlsSetup)?;
        Ok(HttpFetcher {
            client,
            timeout,
            allow_http,
        })
    }

    /// Whether plain http urls are fetched.
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// GETs `url` and returns its body as a JSON object. Only status 200 is
    /// accepted; redirects are errors.
    pub async fn get_json(&self, url: &str) -> Result<JsonObject, FetchError> {
        let uri = self.check_url(url)?;
        let request = Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(Full::new(Bytes::new()))
            .map_err(|_| FetchError::InvalidUrl)?;
        self.bounded(request).await
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`, already encoded)
    /// to `url` with HTTP Basic client authentication (RFC 6749 2.3.1:
    /// the id and secret form-encoded, then base64), and returns the body
    /// as a JSON object. Only status 200 is accepted.
    pub async fn post_form_json(
        &self,
        url: &str,
        form: String,
        client_id: &str,
        client_secret: &str,
    ) -> Result<JsonObject, FetchError> {
        use base64::Engine;
        let uri = self.check_url(url)?;
        let credentials = zeroize::Zeroizing::new(format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(client_secret)
        ));
        let basic = zeroize::Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes())
        ));
        let mut authorization =
            hyper::header::HeaderValue::from_str(&basic).map_err(|_| FetchError::InvalidUrl)?;
        authorization.set_sensitive(true);
        let request = Request::post(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| FetchError::InvalidUrl)?;
        self.bounded(request).await
    }

    async fn bounded(&self, request: Request<Full<Bytes>>) -> Result<JsonObject, FetchError> {
        let millis = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(self.timeout, self.fetch(request)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { millis }),
        }
    }

    fn check_url(&self, url: &str) -> Result<Uri, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(FetchError::InvalidUrl);
        }
        match uri.scheme_str() {
            Some("https") => Ok(uri),
            Some("http") if self.allow_http => Ok(uri),
            Some("http") => Err(FetchError::InsecureScheme),
            _ => Err(FetchError::InvalidUrl),
        }
    }

    async fn fetch(&self, request: Request<Full<Bytes>>) -> Result<JsonObject, FetchError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| FetchError::Transport)?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        // Refuse early when the server says it is too large; the limit on
        // the body below catches servers that do not say or lie.
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64) {
            return Err(FetchError::TooLarge {
                max: MAX_DOCUMENT_BYTES,
            });
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge {
                        max: MAX_DOCUMENT_BYTES,
                    }
                } else {
                    FetchError::Transport
                }
            })?
            .to_bytes();
        parse_json_object(&body)
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value:
/// unreserved bytes as they are, space as `+`, every other byte `%XX`.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The roots an Authority's https certificate must chain to: its
/// `ca_file`'s certificates only when it has one (a private CA does not
/// widen to every public one, nor the reverse), else the platform's.
pub fn authority_roots(ca: Option<&crate::settings::CaRoots>) -> rustls::RootCertStore {
    match ca {
        Some(ca) => ca.store(),
        None => platform_roots(),
    }
}

/// The platform's trusted roots (honouring `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`). None loaded means https fetches fail verification: fail
/// closed, and said once here.
pub fn platform_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (_added, ignored) = roots.add_parsable_certificates(certs);
            if ignored > 0 {
                tracing::warn!(
                    ignored,
                    "some platform root certificates could not be parsed"
                );
            }
        }
        Err(error) => {
            tracing::error!(%error, "reading the platform root certificates failed");
        }
    }
    if roots.is_empty() {
        tracing::error!(
            "no platform root certificates; https fetches from the authority will fail"
        );
    }
    roots
}

/// Parses a document body: one JSON object, no duplicate members at any
/// depth (the same strictness as token payloads).
pub fn parse_json_object(body: &[u8]) -> Result<JsonObject, FetchError> {
    check_json_object(body).map_err(|_| FetchError::NotJson)?;
    serde_json::from_slice(body).map_err(|_| FetchError::NotJson)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, TestServer};

    fn fetcher(allow_http: bool) -> HttpFetcher {
        HttpFetcher::new(Duration::from_millis(500), allow_http).unwrap()
    }

    #[tokio::test]
    async fn json_object_with_status_200_is_returned() {
        let server = TestServer::start();
        server.set("/doc", Reply::json(r#"{"a":1,"b":["x"]}"#));
        let doc = fetcher(true).get_json(&server.url("/doc")).await.unwrap();
        assert_eq!(doc.get("a"), Some(&serde_json::json!(1)));
        assert_eq!(server.count("/doc"), 1);
    }

    #[tokio::test]
    async fn status_other_than_200_is_a_typed_error() {
        let server = TestServer::start();
        server.set("/moved", Reply::status(302, "{}"));
        server.set("/gone", Reply::status(404, "{}"));
        server.set("/down", Reply::status(503, "{}"));
        let f = fetcher(true);
        assert_eq!(
            f.get_json(&server.url("/moved")).await,
            Err(FetchError::Status(302))
        );
        assert_eq!(
            f.get_json(&server.url("/gone")).await,
            Err(FetchError::Status(404))
        );
        let err = f.get_json(&server.url("/down")).await.unwrap_err();
        assert_eq!(err, FetchError::Status(503));
        assert_eq!(err.code(), "http_status");
    }

    #[tokio::test]
    async fn non_json_or_non_object_or_duplicate_members_is_not_json() {
        let server = TestServer::start();
        server.set("/html", Reply::json("<html>hi</html>"));
        server.set("/array", Reply::json("[1,2]"));
        server.set("/dup", Reply::json(r#"{"keys":[],"keys":[{}]}"#));
        let f = fetcher(true);
        for path in ["/html", "/array", "/dup"] {
            assert_eq!(
                f.get_json(&server.url(path)).await,
                Err(FetchError::NotJson),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn oversize_body_is_refused_whether_declared_or_not() {
        let server = TestServer::start();
        let big = format!(r#"{{"pad":"{}"}}"#, "a".repeat(MAX_DOCUMENT_BYTES));
        server.set("/declared", Reply::json(&big));
        server.set("/chunked", Reply::json(&big).chunked());
        let f = fetcher(true);
        for path in ["/declared", "/chunked"] {
            assert_eq!(
                f.get_json(&server.url(path)).await,
                Err(FetchError::TooLarge {
                    max: MAX_DOCUMENT_BYTES
                }),
                "{path}"
            );
        }
        // Exactly at the limit is fine.
        let exact = format!(r#"{{"pad":"{}"}}"#, "a".repeat(MAX_DOCUMENT_BYTES - 10));
        assert_eq!(exact.len(), MAX_DOCUMENT_BYTES);
        server.set("/exact", Reply::json(&exact).chunked());
        assert!(f.get_json(&server.url("/exact")).await.is_ok());
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let server = TestServer::start();
        server.set("/slow", Reply::json("{}").delay(Duration::from_secs(3)));
        let f = HttpFetcher::new(Duration::from_millis(200), true).unwrap();
        let err = f.get_json(&server.url("/slow")).await.unwrap_err();
        assert_eq!(err, FetchError::Timeout { millis: 200 });
        assert_eq!(err.code(), "timeout");
    }

    #[tokio::test]
    async fn plain_http_is_refused_without_a_request_unless_allowed() {
        let server = TestServer::start();
        server.set("/doc", Reply::json("{}"));
        assert_eq!(
            fetcher(false).get_json(&server.url("/doc")).await,
            Err(FetchError::InsecureScheme)
        );
        assert_eq!(server.count("/doc"), 0);
        assert!(fetcher(true).get_json(&server.url("/doc")).await.is_ok());
    }

    #[tokio::test]
    async fn relative_or_odd_scheme_urls_are_invalid() {
        let f = fetcher(true);
        for url in [
            "/jwks",
            "ftp://a.example/jwks",
            "file:///etc/passwd",
            "",
            "https://",
        ] {
            assert_eq!(
                f.get_json(url).await,
                Err(FetchError::InvalidUrl),
                "{url:?}"
            );
        }
    }

    #[tokio::test]
    async fn refused_connection_is_a_transport_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = fetcher(true)
            .get_json(&format!("http://127.0.0.1:{port}/jwks"))
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Transport);
    }

    #[tokio::test]
    async fn tls_to_a_plain_http_server_fails_closed() {
        let server = TestServer::start();
        server.set("/doc", Reply::json("{}"));
        let url = server.url("/doc").replacen("http://", "https://", 1);
        // The server never answers a ClientHello: the request fails, by
        // timeout here, and nothing is read as a document.
        let err = fetcher(false).get_json(&url).await.unwrap_err();
        assert!(
            matches!(err, FetchError::Transport | FetchError::Timeout { .. }),
            "{err:?}"
        );
    }

    /// `openssl s_server -WWW` on 127.0.0.1 with a fresh self-signed
    /// P-256 certificate for 127.0.0.1, serving one JSON file. Killed and
    /// cleaned up on drop.
    struct TlsServer {
        child: std::process::Child,
        dir: std::path::PathBuf,
        port: u16,
    }

    impl TlsServer {
        fn start() -> TlsServer {
            use std::io::BufRead;
            use std::process::{Command, Stdio};
            let dir = std::env::temp_dir().join(format!(
                "stella-authority-tls-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("doc.json"), r#"{"ok":true}"#).unwrap();
            let status = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args([
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1",
                ])
                .args(["-subj", "/CN=authority.test"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl is installed (CI installs it)");
            assert!(status.success(), "openssl req failed");
            let mut child = Command::new("openssl")
                .args(["s_server", "-cert", "cert.pem", "-key", "key.pem"])
                .args(["-accept", "127.0.0.1:0", "-WWW"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start openssl s_server");
            let stdout = child.stdout.take().unwrap();
            let mut port = None;
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if let Some(addr) = line.strip_prefix("ACCEPT ") {
                    port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
                    break;
                }
            }
            let port = port.expect("s_server printed its port");
            TlsServer { child, dir, port }
        }

        fn roots(&self) -> rustls::RootCertStore {
            let pem = std::fs::read_to_string(self.dir.join("cert.pem")).unwrap();
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let der =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(der))
                .unwrap();
            roots
        }
    }

    impl Drop for TlsServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn https_document_is_fetched_over_rustls_with_a_trusted_root() {
        let server = TlsServer::start();
        let url = format!("https://127.0.0.1:{}/doc.json", server.port);
        let trusting =
            HttpFetcher::with_roots(Duration::from_secs(5), false, server.roots()).unwrap();
        let doc = trusting.get_json(&url).await.unwrap();
        assert_eq!(doc.get("ok"), Some(&serde_json::json!(true)));
    }

    #[tokio::test]
    async fn https_server_with_an_untrusted_certificate_is_refused() {
        let server = TlsServer::start();
        let url = format!("https://127.0.0.1:{}/doc.json", server.port);
        let untrusting = HttpFetcher::with_roots(
            Duration::from_secs(5),
            false,
            rustls::RootCertStore::empty(),
        )
        .unwrap();
        assert_eq!(untrusting.get_json(&url).await, Err(FetchError::Transport));
    }
}
