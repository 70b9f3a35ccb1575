//! TLS to a service (`services[].tls`): the roots its certificate must
//! chain to, the name it must hold, the gateway's own certificate for
//! services that require one (mutual TLS), and ALPN.
//!
//! The PEM files are read and checked once per snapshot, when it is built
//! (so `check`, `run` and a reload refuse the same bad files, with their
//! key paths), into shared values that every endpoint's prebuilt peer
//! points at: a request clones `Arc`s, never reads or parses a file.
//! Pingora does the handshake with rustls (the ring provider) and always
//! verifies the certificate and the name; nothing here can turn either off.
//!
//! Everything Pingora would otherwise panic or fail on at connect time is
//! refused here instead: a certificate its X.509 parser cannot read, a root
//! rustls will not take, a key of a type rustls cannot sign with or that
//! does not match the certificate, a key whose DER Pingora cannot type.

use crate::config::resolve::ServiceTls;
use crate::config::ConfigError;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Concurrent requests one HTTP/2 connection to a service carries (the
/// service's own `SETTINGS_MAX_CONCURRENT_STREAMS` still applies).
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The loaded TLS material of one service.
pub struct UpstreamTls {
    /// `None`: the platform's roots, loaded once by Pingora's connector.
    ca: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    server_name: Option<String>,
    http2: bool,
    /// SHA-256 over the settings and the files' contents: two loads are
    /// the same material exactly when their digests are equal.
    digest: [u8; 32],
}

impl std::fmt::Debug for UpstreamTls {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("roots", &self.ca.as_ref().map_or(0, |ca| ca.len()))
            .field("client_certificate", &self.client.is_some())
            .field("server_name", &self.server_name)
            .field("http2", &self.http2)
            .finish()
    }
}

impl UpstreamTls {
    /// Whether `other` holds the same settings and file contents.
    pub fn same_as(&self, other: &UpstreamTls) -> bool {
        self.digest == other.digest
    }

    /// The name the service's certificate must hold, for an upstream whose
    /// host is `host`; also the SNI, and the health check's `Host`.
    pub fn server_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    /// A peer for `addr`, an address of the upstream whose host is `host`.
    pub fn peer(&self, addr: std::net::SocketAddr, host: &str) -> HttpPeer {
        // The name is never empty (config checked it, or the host): with an
        // empty SNI Pingora would skip verification altogether.
        let mut peer = HttpPeer::new(addr, true, self.server_name(host).to_owned());
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client.clone();
        if self.http2 {
            peer.options.alpn = ALPN::H2H1;
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        // Pingora pools connections by a hash of the peer that leaves the
        // roots out: the material's digest keeps a connection made under
        // other roots (before a reload) from being reused under these.
        let mut group = [0u8; 8];
        group.copy_from_slice(&self.digest[..8]);
        peer.group_key = u64::from_be_bytes(group);
        peer
    }
}

/// Loads and checks the material of `services[index].tls`; every problem
/// is reported with its key path, never with a file's content.
pub fn load(index: usize, tls: &ServiceTls) -> Result<UpstreamTls, Vec<ConfigError>> {
    let at = |k: &str| format!("services[{index}].tls.{k}");
    let mut errors = Vec::new();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(tls.server_name.as_deref().unwrap_or("").as_bytes());
    digest.update(&[0, u8::from(tls.http2)]);

    let ca = tls.ca_file.as_deref().and_then(|file| {
        roots(file, &mut digest)
            .map_err(|problem| errors.push(ConfigError::new(at("ca_file"), problem)))
            .ok()
    });
    digest.update(&[0]);
    let client = tls.client_identity.as_ref().and_then(|(cert, key)| {
        client_identity(cert, key, &mut digest)
            .map_err(|(key_path, problem)| errors.push(ConfigError::new(at(key_path), problem)))
            .ok()
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(UpstreamTls {
        ca,
        client,
        server_name: tls.server_name.clone(),
        http2: tls.http2,
        digest: {
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.finish().as_ref());
            out
        },
    })
}

/// The certificates of a PEM file, each checked by the X.509 parser Pingora
/// uses (which panics on what it cannot read).
fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|_| "cannot be read as pem".to_owned())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "holds a malformed pem certificate".to_owned())?;
    if certs.is_empty() {
        return Err("holds no pem certificate".into());
    }
    for (i, cert) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(cert.as_ref()).is_err() {
            return Err(format!("certificate {} is not valid x.509", i + 1));
        }
    }
    Ok(certs)
}

fn wrapped(cert: &CertificateDer<'_>) -> WrappedX509 {
    // `certificates` checked that the parser reads it.
    WrappedX509::new(cert.as_ref().to_vec(), parse_x509)
}

fn roots(file: &Path, digest: &mut ring::digest::Context) -> Result<Arc<[WrappedX509]>, String> {
    let certs = certificates(file)?;
    // What Pingora does with them at connect time, done once here.
    let mut store = rustls::RootCertStore::empty();
    for cert in &certs {
        store
            .add(cert.clone())
            .map_err(|e| format!("holds a certificate rustls refuses as a root: {e}"))?;
        digest.update(cert.as_ref());
    }
    Ok(certs.iter().map(wrapped).collect::<Vec<_>>().into())
}

/// The gateway's certificate chain and key; an error names the key
/// (`client_certificate` or `client_key`) it is about.
fn client_identity(
    cert_file: &Path,
    key_file: &Path,
    digest: &mut ring::digest::Context,
) -> Result<Arc<CertKey>, (&'static str, String)> {
    let certs = certificates(cert_file).map_err(|p| ("client_certificate", p))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|_| ("client_key", "holds no pem private key".to_owned()))?;
    let der = key.secret_der().to_vec();
    // Pingora types the key from its DER alone when it connects (and
    // panics when it cannot): it must find the same type.
    let typed = PrivateKeyDer::try_from(der.as_slice())
        .is_ok_and(|k| std::mem::discriminant(&k) == std::mem::discriminant(&key));
    if !typed {
        return Err((
            "client_key",
            "holds a private key in a form that cannot be used (use pkcs#8, sec1 or pkcs#1)".into(),
        ));
    }
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(certs.clone(), key, &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err((
                "client_key",
                "does not match the certificate in client_certificate".into(),
            ))
        }
        Err(_) => {
            return Err((
                "client_key",
                "holds a private key of an unsupported type".into(),
            ))
        }
    }
    for cert in &certs {
        digest.update(cert.as_ref());
    }
    digest.update(&der);
    Ok(Arc::new(CertKey::new(
        certs.iter().map(|c| c.as_ref().to_vec()).collect(),
        der,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("stella-upstream-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Files(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tls(ca: Option<PathBuf>, client: Option<(PathBuf, PathBuf)>) -> ServiceTls {
        ServiceTls {
            ca_file: ca,
            server_name: Some("orders.internal".into()),
            client_identity: client,
            http2: false,
        }
    }

    fn errors(result: Result<UpstreamTls, Vec<ConfigError>>) -> Vec<String> {
        result
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn files_that_are_not_pem_certificates_or_keys_are_refused_with_their_key_paths() {
        let files = Files::new("bad");
        let junk = files.write("junk.pem", "not pem at all\n");
        let bad_der = files.write(
            "bad-der.pem",
            "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n",
        );
        assert_eq!(
            errors(load(2, &tls(Some(junk.clone()), None))),
            ["services[2].tls.ca_file: holds no pem certificate"]
        );
        assert_eq!(
            errors(load(0, &tls(Some(bad_der.clone()), None))),
            ["services[0].tls.ca_file: certificate 1 is not valid x.509"]
        );
        assert_eq!(
            errors(load(0, &tls(None, Some((bad_der, junk.clone()))))),
            ["services[0].tls.client_certificate: certificate 1 is not valid x.509"]
        );
        assert_eq!(
            errors(load(
                0,
                &tls(
                    Some(files.0.join("missing.pem")),
                    Some((junk.clone(), junk))
                )
            )),
            [
                "services[0].tls.ca_file: cannot be read as pem",
                "services[0].tls.client_certificate: holds no pem certificate"
            ]
        );
    }

    #[test]
    fn a_client_key_must_match_its_certificate_and_a_changed_ca_file_is_other_material() {
        let dir = stella_test_support::TempDir::new("upstream-tls-unit");
        let pki = stella_test_support::Pki::generate(&dir);
        let identity = (pki.client_cert.clone(), pki.client_key.clone());
        let ca = dir.join("roots.pem");
        std::fs::copy(&pki.ca, &ca).unwrap();
        let loaded = load(0, &tls(Some(ca.clone()), Some(identity.clone()))).unwrap();
        assert_eq!(loaded.ca.as_ref().map(|ca| ca.len()), Some(1));
        let peer = loaded.peer("127.0.0.1:8443".parse().unwrap(), "127.0.0.1");
        assert!(peer.client_cert_key.is_some() && peer.options.ca.is_some());
        // The key never shows, not even in debug output.
        let key_pem = std::fs::read_to_string(&pki.client_key).unwrap();
        let key_line = key_pem.lines().nth(1).unwrap();
        assert!(!format!("{loaded:?} {peer:?} {peer}").contains(key_line));

        std::fs::copy(&pki.other_ca, &ca).unwrap();
        let rotated = load(0, &tls(Some(ca.clone()), Some(identity))).unwrap();
        assert!(!loaded.same_as(&rotated));
        let rotated_peer = rotated.peer("127.0.0.1:8443".parse().unwrap(), "127.0.0.1");
        assert_ne!(peer.group_key, rotated_peer.group_key);

        assert_eq!(
            errors(load(
                0,
                &tls(
                    None,
                    Some((pki.client_cert.clone(), pki.server_key.clone()))
                )
            )),
            ["services[0].tls.client_key: does not match the certificate in client_certificate"]
        );
        assert_eq!(
            errors(load(
                0,
                &tls(
                    None,
                    Some((pki.client_cert.clone(), pki.client_cert.clone()))
                )
            )),
            ["services[0].tls.client_key: holds no pem private key"]
        );
    }

    #[test]
    fn the_platform_roots_need_no_file_and_the_digest_follows_every_setting() {
        let plain = load(0, &tls(None, None)).unwrap();
        assert!(plain.ca.is_none() && plain.client.is_none());
        assert!(plain.same_as(&load(1, &tls(None, None)).unwrap()));
        let mut h2 = tls(None, None);
        h2.http2 = true;
        let h2 = load(0, &h2).unwrap();
        assert!(!plain.same_as(&h2));
        let mut other_name = tls(None, None);
        other_name.server_name = Some("billing.internal".into());
        assert!(!plain.same_as(&load(0, &other_name).unwrap()));

        let peer = h2.peer("127.0.0.1:8443".parse().unwrap(), "10.0.0.7");
        assert!(peer.is_tls());
        assert_eq!(peer.sni, "orders.internal");
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert_eq!(peer.options.alpn, ALPN::H2H1);
        assert_ne!(peer.group_key, 0);
        let mut by_host = tls(None, None);
        by_host.server_name = None;
        let by_host = load(0, &by_host).unwrap();
        let peer = by_host.peer("127.0.0.1:8443".parse().unwrap(), "orders.svc");
        assert_eq!(peer.sni, "orders.svc");
        assert_eq!(peer.options.alpn, ALPN::H1);
    }
}
