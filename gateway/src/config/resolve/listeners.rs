//! `gateway.listeners`: the plain, TLS and admin listeners.

use super::*;
pub use crate::client_addr::{ProxyTrust, TrustedProxies};

/// Client certificate handling on the TLS listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertMode {
    None,
    Optional,
    Required,
}

impl ClientCertMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertMode::None => "none",
            ClientCertMode::Optional => "optional",
            ClientCertMode::Required => "required",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_certificates: ClientCertMode,
    pub client_ca_file: Option<PathBuf>,
    /// (trust domain, CA file) pairs.
    pub spiffe_roots: Vec<(String, PathBuf)>,
    pub http2: bool,
    /// Its load balancers (`trusted_proxies`, `proxy_protocol`).
    pub proxy: ProxyTrust,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    pub http: Option<SocketAddr>,
    pub tls: Option<TlsListener>,
    pub admin: Option<SocketAddr>,
    /// Answer `/.well-known/stella/keys.json` on the http and tls
    /// listeners too (`gateway.listeners.public_jwks`).
    pub public_jwks: bool,
    /// The http listener's load balancers (`http_trusted_proxies`,
    /// `http_proxy_protocol`).
    pub http_proxy: ProxyTrust,
}

impl Listeners {
    /// How the listener a request came in on learns its client.
    pub fn proxy_trust(&self, tls: bool) -> &ProxyTrust {
        match (&self.tls, tls) {
            (Some(t), true) => &t.proxy,
            _ => &self.http_proxy,
        }
    }
}

/// `trusted_proxies` and `proxy_protocol` of one listener, checked.
fn proxy_trust(
    e: &mut Errors,
    trusted_key: &str,
    trusted: &[String],
    proxy_protocol: Option<bool>,
) -> ProxyTrust {
    let trusted_proxies = match TrustedProxies::parse(trusted) {
        Ok(t) => t,
        Err(problems) => {
            for (i, problem) in problems {
                e.add(&format!("{trusted_key}[{i}]"), problem);
            }
            TrustedProxies::default()
        }
    };
    ProxyTrust {
        trusted_proxies,
        proxy_protocol: proxy_protocol.unwrap_or(false),
    }
}

/// The listeners section (the plain, TLS and admin addresses).
pub(super) fn listeners(
    e: &mut Errors,
    l: &ListenersSection,
    base: &Path,
    sources: &mut Vec<PathBuf>,
) -> Listeners {
    let http = socket_addr(e, "gateway.listeners.http", &l.http);
    let admin = socket_addr(e, "gateway.listeners.admin", &l.admin);
    let tls = l.tls.as_ref().and_then(|t| {
        let addr = match socket_addr(e, "gateway.listeners.tls.addr", &t.addr) {
            Some(a) => Some(a),
            None if t.addr.is_none() => {
                e.add("gateway.listeners.tls.addr", "is required");
                None
            }
            None => None,
        };
        let cert_file = existing_file(e, "gateway.listeners.tls.cert_file", base, &t.cert_file);
        let key_file = existing_file(e, "gateway.listeners.tls.key_file", base, &t.key_file);
        let mode = match t
            .client_certificates
            .as_deref()
            .map(|m| m.trim().to_ascii_lowercase())
        {
            None => ClientCertMode::None,
            Some(m) if m == "none" => ClientCertMode::None,
            Some(m) if m == "optional" => ClientCertMode::Optional,
            Some(m) if m == "required" => ClientCertMode::Required,
            Some(_) => {
                e.add(
                    "gateway.listeners.tls.client_certificates",
                    "must be none, optional or required",
                );
                ClientCertMode::None
            }
        };
        let mut spiffe_roots = Vec::new();
        for (i, r) in t.spiffe_roots.iter().enumerate() {
            let at = |k: &str| format!("gateway.listeners.tls.spiffe_roots[{i}].{k}");
            let domain = r.trust_domain.clone().unwrap_or_default();
            if stella_authn::spiffe::parse_spiffe_uri(&format!("spiffe://{domain}/x")).is_err() {
                e.add(
                    &at("trust_domain"),
                    "must be a lowercase spiffe trust domain such as example.org",
                );
            } else if spiffe_roots.iter().any(|(d, _)| d == &domain) {
                e.add(&at("trust_domain"), "is listed twice");
            }
            if let Some(file) = existing_file(e, &at("ca_file"), base, &r.ca_file) {
                spiffe_roots.push((domain, file));
            }
        }
        if !t.spiffe_roots.is_empty() && mode == ClientCertMode::None {
            e.add(
                "gateway.listeners.tls.spiffe_roots",
                "needs client_certificates optional or required",
            );
        }
        // With per-domain roots alone, certificates without a SPIFFE ID have
        // no roots, so client_ca_file becomes optional.
        let client_ca_file = match mode {
            ClientCertMode::None => None,
            _ if !t.spiffe_roots.is_empty() && t.client_ca_file.is_none() => None,
            _ => existing_file(
                e,
                "gateway.listeners.tls.client_ca_file",
                base,
                &t.client_ca_file,
            ),
        };
        sources.extend(cert_file.iter().cloned());
        sources.extend(key_file.iter().cloned());
        sources.extend(client_ca_file.iter().cloned());
        sources.extend(spiffe_roots.iter().map(|(_, f)| f.clone()));
        Some(TlsListener {
            addr: addr?,
            cert_file: cert_file?,
            key_file: key_file?,
            client_certificates: mode,
            client_ca_file,
            spiffe_roots,
            http2: t.http2.unwrap_or(true),
            proxy: proxy_trust(
                e,
                "gateway.listeners.tls.trusted_proxies",
                &t.trusted_proxies,
                t.proxy_protocol,
            ),
        })
    });
    if l.http.is_none() && l.tls.is_none() {
        e.add("gateway.listeners", "needs an http or a tls listener");
    }
    let http_proxy = proxy_trust(
        e,
        "gateway.listeners.http_trusted_proxies",
        &l.http_trusted_proxies,
        l.http_proxy_protocol,
    );

    Listeners {
        http,
        tls,
        admin,
        public_jwks: l.public_jwks.unwrap_or(false),
        http_proxy,
    }
}
