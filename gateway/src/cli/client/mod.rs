//! The gateway's client for people and scripts: `token` (client
//! credentials at the Authority, as Bearer, DPoP-bound or
//! certificate-bound, cached in a 0600 file until near expiry) and `call`
//! (one request with the right `Authorization` and a fresh DPoP proof,
//! printed like `curl -i`). `smoke` (cli/smoke.rs) sends its probes
//! through the same code.
//!
//! Secrets (client secrets, tokens, private keys) are never printed or
//! put into messages; the only exception is `token --print`.

pub mod call;
pub mod dpop;
pub mod profile;
pub mod token;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::time::Duration;

/// Each request (connect, send, read the whole answer) within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Seconds since the epoch.
pub use stella_core::unix_now as now;

/// Writes `bytes` to `path` readable by the owner only (0600 on unix):
/// through a new temporary file in the same folder, renamed over `path`,
/// so a reader never sees half a file and the mode holds from the start.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{shown}: cannot create its folder: {}", e.kind()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{shown}: cannot write: {}", e.kind())
    })
}

/// A finished HTTP exchange.
pub struct Answer {
    pub status: http::StatusCode,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `WWW-Authenticate` value joined, for looking for an error code.
    pub fn challenges(&self) -> String {
        self.headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An HTTP/1.1 client over rustls (ring), trusting the platform roots
/// plus an optional CA file, presenting an optional client certificate.
pub struct Http {
    client: stella_authority::http::HttpClient,
    runtime: tokio::runtime::Runtime,
}

impl Http {
    pub fn new(
        ca_file: Option<&Path>,
        cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    ) -> Result<Http, String> {
        // Without a platform store, only `ca_file` is trusted (fail closed).
        let mut roots = stella_authority::http::platform_roots();
        if let Some(ca) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|_| format!("{}: cannot be read as pem certificates", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: holds no pem certificate", ca.display()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|_| format!("{}: holds an unusable certificate", ca.display()))?;
            }
        }
        let identity = match cert {
            None => None,
            Some((cert_file, key_file)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                    .and_then(|i| i.collect::<Result<_, _>>())
                    .map_err(|_| format!("{}: cannot be read as pem", cert_file.display()))?;
                if chain.is_empty() {
                    return Err(format!("{}: holds no pem certificate", cert_file.display()));
                }
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|_| format!("{}: holds no pem private key", key_file.display()))?;
                Some((chain, key))
            }
        };
        let client =
            stella_authority::http::client(roots, identity, true, true).map_err(|e| {
                match (e, cert) {
                    (
                        stella_authority::http::ClientError::ClientCertificate,
                        Some((_, key_file)),
                    ) => {
                        format!("{}: does not match the certificate", key_file.display())
                    }
                    _ => "tls setup failed".to_string(),
                }
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start: {e}"))?;
        Ok(Http { client, runtime })
    }

    /// Sends one request and reads the whole answer.
    pub fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, String> {
        let shown = format!(
            "{}://{}{}",
            request.uri().scheme_str().unwrap_or("http"),
            request.uri().authority().map(|a| a.as_str()).unwrap_or(""),
            request.uri().path()
        );
        let call = async {
            let response = self.client.request(request).await.map_err(|e| {
                // The innermost cause says what happened (refused, tls).
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                format!("{shown}: {cause}")
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("{shown}: reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            })
        };
        self.runtime.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, call)
                .await
                .map_err(|_| format!("{shown}: no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
        })
    }
}

/// `application/x-www-form-urlencoded` / RFC 6749 2.3.1 escaping: the
/// Authority client's, so token requests and introspection encode alike.
pub use stella_authority::http::form_encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_but_the_unreserved_set() {
        assert_eq!(form_encode("a b:c/d%e"), "a+b%3Ac%2Fd%25e");
        assert_eq!(form_encode("svc-dpop_1.x*"), "svc-dpop_1.x*");
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("stella-private-{}", std::process::id()));
        let path = dir.join("sub/file.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
