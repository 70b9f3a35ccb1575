//! TLS termination: the listener's rustls settings (server certificate,
//! client certificates `none | optional | required` against a CA bundle,
//! HTTP/2), and what the handshake tells the request path about the client
//! certificate: its RFC 8705 SHA-256 thumbprint and its SPIFFE ID.

use crate::config::resolve::{ClientCertMode, TlsListener};
use crate::config::ConfigError;
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::any::Any;
use std::sync::Arc;
use stella_authn::spiffe::{spiffe_id, SpiffeError};
use stella_envelope::encoding::b64url_encode;

/// What the gateway knows about a TLS client's certificate, captured once
/// per connection at the end of the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// base64url (no padding) of SHA-256 over the leaf's DER bytes as
    /// received: the RFC 8705 `x5t#S256` value.
    pub thumbprint: String,
    /// The SPIFFE ID, when the leaf is a valid X.509-SVID.
    pub spiffe: Result<Option<String>, SpiffeError>,
}

impl ClientCert {
    pub fn from_der(der: &[u8]) -> ClientCert {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        ClientCert {
            thumbprint: b64url_encode(digest.as_ref()),
            spiffe: spiffe_id(der),
        }
    }
}

/// Captures the client certificate at the end of each handshake.
struct CaptureClientCert;

#[async_trait::async_trait]
impl TlsAccept for CaptureClientCert {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        Some(Arc::new(ClientCert::from_der(der)))
    }
}

fn err(path: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("gateway.listeners.tls.{path}"), problem)
}

/// The listener's certificate, key and client-certificate roots, loaded and
/// checked. Built at start and at every reload; [`LiveTls::apply`] makes it
/// the material of new handshakes.
pub struct TlsMaterial {
    cert: Arc<CertifiedKey>,
    client_auth: ClientAuth,
}

/// Loads and checks the certificate, key and CA files. Every problem is
/// reported (Pingora itself would panic on a bad file), before any port is
/// bound or any reload applied.
pub fn material(listener: &TlsListener) -> Result<TlsMaterial, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_file_iter(&listener.cert_file) {
            Ok(iter) => match iter.collect::<Result<Vec<_>, _>>() {
                Ok(c) if !c.is_empty() => c,
                _ => {
                    errors.push(err("cert_file", "holds no pem certificate"));
                    Vec::new()
                }
            },
            Err(_) => {
                errors.push(err("cert_file", "cannot be read as pem"));
                Vec::new()
            }
        };
    let key = match PrivateKeyDer::from_pem_file(&listener.key_file) {
        Ok(der) => match rustls::crypto::ring::sign::any_supported_type(&der) {
            Ok(key) => Some(key),
            Err(_) => {
                errors.push(err(
                    "key_file",
                    "holds a private key of an unsupported type",
                ));
                None
            }
        },
        Err(_) => {
            errors.push(err("key_file", "holds no pem private key"));
            None
        }
    };
    let cert = match key {
        Some(key) if !certs.is_empty() => {
            let certified = CertifiedKey::new(certs, key);
            match certified.keys_match() {
                // `Unknown` when the key type cannot tell; the handshake
                // would then fail for every client, so still refuse a clear
                // mismatch only.
                Ok(())
                | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                    Some(Arc::new(certified))
                }
                Err(_) => {
                    errors.push(err(
                        "key_file",
                        "does not match the certificate in cert_file",
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    let optional = listener.client_certificates == ClientCertMode::Optional;
    let verifier = match listener.client_certificates {
        ClientCertMode::None => None,
        _ => {
            let default = listener.client_ca_file.as_ref().and_then(|ca| {
                client_verifier(ca, optional)
                    .map_err(|problem| errors.push(err("client_ca_file", problem)))
                    .ok()
            });
            let mut domains = Vec::new();
            for (i, (domain, ca)) in listener.spiffe_roots.iter().enumerate() {
                match client_verifier(ca, optional) {
                    Ok(v) => domains.push((domain.clone(), v)),
                    Err(problem) => {
                        errors.push(err(&format!("spiffe_roots[{i}].ca_file"), problem))
                    }
                }
            }
            if default.is_none() && domains.is_empty() && errors.is_empty() {
                errors.push(err(
                    "client_ca_file",
                    "is required when client_certificates is not none",
                ));
            }
            if domains.is_empty() {
                default
            } else {
                Some(Arc::new(TrustDomainVerifier::new(default, domains, optional)) as Verifier)
            }
        }
    };
    match cert {
        Some(cert) if errors.is_empty() => Ok(TlsMaterial {
            cert,
            client_auth: ClientAuth::new(verifier),
        }),
        _ => Err(errors),
    }
}

/// The TLS material new handshakes use, swapped whole by a reload.
/// Established connections keep what they negotiated.
#[derive(Debug)]
pub struct LiveTls {
    cert: ArcSwap<CertifiedKey>,
    client_auth: ArcSwap<ClientAuth>,
}

impl LiveTls {
    pub fn apply(&self, material: TlsMaterial) {
        self.cert.store(material.cert);
        self.client_auth.store(Arc::new(material.client_auth));
    }
}

/// The client-certificate verifier of one configuration (none when client
/// certificates are off) and its CA hints.
#[derive(Debug)]
struct ClientAuth {
    verifier: Option<Verifier>,
    hints: &'static [rustls::DistinguishedName],
}

impl ClientAuth {
    fn new(verifier: Option<Verifier>) -> ClientAuth {
        let hints: Vec<rustls::DistinguishedName> = verifier
            .as_ref()
            .map(|v| v.root_hint_subjects().to_vec())
            .unwrap_or_default();
        ClientAuth {
            verifier,
            hints: intern_hints(hints),
        }
    }
}

/// rustls asks for the CA hints by reference to the verifier, which lives
/// as long as the listener, while the hints change with each reload of the
/// CA bundles. Each distinct hint list is kept for the life of the process
/// (a few hundred bytes per distinct bundle, not per reload).
fn intern_hints(hints: Vec<rustls::DistinguishedName>) -> &'static [rustls::DistinguishedName] {
    static SEEN: std::sync::Mutex<Vec<&'static [rustls::DistinguishedName]>> =
        std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let same = |a: &[rustls::DistinguishedName]| {
        a.len() == hints.len() && a.iter().zip(&hints).all(|(x, y)| x.as_ref() == y.as_ref())
    };
    if let Some(found) = seen.iter().find(|s| same(s)) {
        return found;
    }
    let leaked: &'static [rustls::DistinguishedName] = Vec::leak(hints);
    seen.push(leaked);
    leaked
}

impl rustls::server::ResolvesServerCert for LiveTls {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.cert.load_full())
    }
}

/// Delegates to the client-certificate verifier of the current material.
/// Handshake signatures are checked with the ring provider's algorithms
/// (what every verifier here uses), whatever the current roots.
#[derive(Debug)]
struct LiveVerifier {
    live: Arc<LiveTls>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl LiveVerifier {
    fn new(live: Arc<LiveTls>) -> LiveVerifier {
        LiveVerifier {
            live,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    fn current(&self) -> arc_swap::Guard<Arc<ClientAuth>> {
        self.live.client_auth.load()
    }
}

impl rustls::server::danger::ClientCertVerifier for LiveVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current()
            .verifier
            .as_ref()
            .is_some_and(|v| v.offer_client_auth())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current()
            .verifier
            .as_ref()
            .is_some_and(|v| v.client_auth_mandatory())
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.current().hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match &self.current().verifier {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General("client certificates are off".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The listener settings over live material: the certificate resolver and
/// the client-certificate verifier read the current material at each
/// handshake, so a reload needs no new listener.
pub fn settings(
    listener: &TlsListener,
    material: TlsMaterial,
) -> Result<(TlsSettings, Arc<LiveTls>), Vec<ConfigError>> {
    let live = Arc::new(LiveTls {
        cert: ArcSwap::new(material.cert),
        client_auth: ArcSwap::from_pointee(material.client_auth),
    });
    let mut settings = TlsSettings::with_callbacks(Box::new(CaptureClientCert))
        .map_err(|_| vec![err("addr", "tls settings cannot be created")])?;
    settings.set_cert_resolver(live.clone());
    if listener.http2 {
        settings.enable_h2();
    }
    settings.set_client_cert_verifier(Arc::new(LiveVerifier::new(live.clone())));
    Ok((settings, live))
}

type Verifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

/// Chooses the roots by the client certificate: an X.509-SVID is verified
/// only against its own trust domain's roots (so one domain's CA can never
/// vouch for another domain's IDs); any other certificate against the
/// default bundle.
#[derive(Debug)]
struct TrustDomainVerifier {
    default: Option<Verifier>,
    domains: Vec<(String, Verifier)>,
    optional: bool,
    hints: Vec<rustls::DistinguishedName>,
}

impl TrustDomainVerifier {
    fn new(default: Option<Verifier>, domains: Vec<(String, Verifier)>, optional: bool) -> Self {
        let mut hints: Vec<rustls::DistinguishedName> = Vec::new();
        for v in default.iter().chain(domains.iter().map(|(_, v)| v)) {
            for h in v.root_hint_subjects() {
                if !hints.iter().any(|x| x.as_ref() == h.as_ref()) {
                    hints.push(h.clone());
                }
            }
        }
        TrustDomainVerifier {
            default,
            domains,
            optional,
            hints,
        }
    }

    /// Any verifier, for the handshake signature (it uses only the
    /// certificate's key, not the roots).
    fn any(&self) -> &Verifier {
        // `new` is only called with at least one domain.
        self.default.as_ref().unwrap_or(&self.domains[0].1)
    }
}

impl rustls::server::danger::ClientCertVerifier for TrustDomainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.optional
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let refused = || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let verifier = match spiffe_id(end_entity.as_ref()) {
            Ok(Some(id)) => {
                let domain = id
                    .strip_prefix("spiffe://")
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_default();
                self.domains
                    .iter()
                    .find(|(d, _)| d == domain)
                    .map(|(_, v)| v)
                    .ok_or_else(refused)?
            }
            Ok(None) => self.default.as_ref().ok_or_else(refused)?,
            // A certificate claiming a SPIFFE ID that is not a valid SVID.
            Err(_) => {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::BadEncoding,
                ))
            }
        };
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.any().supported_verify_schemes()
    }
}

fn client_verifier(
    ca_file: &std::path::Path,
    optional: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca_file).map_err(|_| "cannot be read as pem".to_owned())?;
    for cert in certs {
        let cert = cert.map_err(|_| "holds a malformed pem certificate".to_owned())?;
        roots
            .add(cert)
            .map_err(|e| format!("holds a certificate rustls refuses as a root: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| format!("cannot build a client certificate verifier: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_base64url_sha256_of_the_der() {
        let cert = ClientCert::from_der(b"not a certificate");
        let expected = b64url_encode(ring::digest::digest(
            &ring::digest::SHA256,
            b"not a certificate",
        ));
        assert_eq!(cert.thumbprint, expected);
        assert_eq!(cert.spiffe, Err(SpiffeError::Unparsable));
    }
}
