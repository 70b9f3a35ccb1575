//! `redis://`, `rediss://` and `redis+sentinel://` urls and the TLS
//! material of a Redis store, parsed and checked without connecting.

use super::*;

/// Why a Redis URL (or the TLS material beside it) was refused. The URL is
/// never echoed (it may hold a password).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlError {
    #[error(
        "redis url must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://"
    )]
    Scheme,
    #[error("redis url has no usable host")]
    Host,
    #[error("redis url port is not a number from 1 to 65535")]
    Port,
    #[error("redis url database is not a number from 0 to 1000000")]
    Database,
    #[error("redis url user or password has a malformed percent-escape")]
    Escape,
    #[error("redis url query or fragment options are not supported")]
    Options,
    #[error("redis url user name without a password")]
    UserWithoutPassword,
    #[error("redis url lists several hosts; only a sentinel url (redis+sentinel://) may")]
    SeveralHosts,
    #[error(
        "redis sentinel url must name the master: redis+sentinel://host:26379[,host:port...]/<master>[/<db>]"
    )]
    SentinelMaster,
    #[error("redis tls files are set but the url is not rediss:// or rediss+sentinel://")]
    TlsWithoutTlsUrl,
    #[error("redis tls certificate or key is not usable pem")]
    TlsMaterial,
}

/// TLS material for `rediss://`, as PEM. Without a CA the platform trust
/// store is used; a client certificate and key are for servers that ask for
/// one (`tls-auth-clients yes`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field(
                "client_key",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl RedisTls {
    /// Whether the PEM is usable: at least one certificate in each of the
    /// CA and the client chain, one private key, and a client certificate
    /// only together with its key.
    pub fn check(&self) -> Result<(), RedisUrlError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certificates = |pem: &[u8]| {
            CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|certs| !certs.is_empty())
                .map(|_| ())
                .ok_or(RedisUrlError::TlsMaterial)
        };
        if let Some(ca) = &self.ca_pem {
            certificates(ca)?;
        }
        match (&self.client_cert_pem, &self.client_key_pem) {
            (None, None) => Ok(()),
            (Some(cert), Some(key)) => {
                certificates(cert)?;
                PrivateKeyDer::from_pem_slice(key)
                    .map(|_| ())
                    .map_err(|_| RedisUrlError::TlsMaterial)
            }
            _ => Err(RedisUrlError::TlsMaterial),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.client_cert_pem.is_none() && self.client_key_pem.is_none()
    }

    /// The crate's form; `None` when nothing is set (platform roots).
    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        if self.is_empty() {
            return None;
        }
        let client_tls = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.to_vec(),
            }),
            _ => None,
        };
        Some(TlsCertificates {
            client_tls,
            root_cert: self.ca_pem.clone(),
        })
    }
}

/// Where and how to connect, parsed from
/// `redis[s]://[[user]:password@]host[:port][/db]` or
/// `redis[s]+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]`.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) tls: bool,
    /// The server, or the sentinels.
    pub(super) nodes: Vec<(String, u16)>,
    /// The master's name, for a sentinel URL.
    pub(super) master: Option<String>,
    pub(super) db: u32,
    pub(super) user: Option<String>,
    pub(super) password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("tls", &self.tls)
            .field("nodes", &self.nodes)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, RedisUrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(RedisUrlError::Scheme)?;
        let (tls, sentinel) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+sentinel" => (false, true),
            "rediss+sentinel" => (true, true),
            _ => return Err(RedisUrlError::Scheme),
        };
        if rest.contains(['?', '#']) {
            return Err(RedisUrlError::Options);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        // The password may contain '@' only escaped; the last '@' ends it.
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (info, None),
                };
                let user = if user.is_empty() {
                    None
                } else {
                    Some(percent_decode(user)?)
                };
                let password = match password {
                    Some(p) if !p.is_empty() => Some(Zeroizing::new(percent_decode(p)?)),
                    _ => None,
                };
                if user.is_some() && password.is_none() {
                    return Err(RedisUrlError::UserWithoutPassword);
                }
                (user, password)
            }
        };
        let default_port = if sentinel {
            DEFAULT_SENTINEL_PORT
        } else {
            DEFAULT_PORT
        };
        let nodes = hosts
            .split(',')
            .map(|hostport| parse_host_port(hostport, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.len() > 1 && !sentinel {
            return Err(RedisUrlError::SeveralHosts);
        }
        if nodes.len() > MAX_SENTINELS {
            return Err(RedisUrlError::Host);
        }
        let (master, db_text) = if sentinel {
            let (master, db) = path.split_once('/').unwrap_or((path, ""));
            if master.is_empty()
                || master.len() > 128
                || !master
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(RedisUrlError::SentinelMaster);
            }
            (Some(master.to_owned()), db)
        } else {
            (None, path)
        };
        let db = match db_text {
            "" => 0,
            p => parse_number(p)
                .filter(|n| *n <= 1_000_000)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(RedisUrlError::Database)?,
        };
        Ok(Target {
            tls,
            nodes,
            master,
            db,
            user,
            password,
        })
    }

    pub(super) fn address(&self, (host, port): &(String, u16)) -> ConnectionAddr {
        if self.tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        }
    }

    /// Database and credentials for the data node. The client library name
    /// is not sent: connecting is then only `AUTH` and `SELECT` as needed.
    pub(super) fn redis_settings(&self) -> RedisConnectionInfo {
        let mut settings = RedisConnectionInfo::default()
            .set_db(i64::from(self.db))
            .set_skip_set_lib_name();
        if let Some(user) = &self.user {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.as_str());
        }
        settings
    }
}

pub(super) fn parse_host_port(
    hostport: &str,
    default_port: u16,
) -> Result<(String, u16), RedisUrlError> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(RedisUrlError::Host)?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(RedisUrlError::Host);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(RedisUrlError::Host)?),
        };
        (host, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
    {
        return Err(RedisUrlError::Host);
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => parse_number(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
            .ok_or(RedisUrlError::Port)?,
    };
    Ok((host.to_owned(), port))
}

pub(super) fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(super) fn percent_decode(text: &str) -> Result<String, RedisUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(RedisUrlError::Escape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| RedisUrlError::Escape)?;
            let value = u8::from_str_radix(hex, 16).map_err(|_| RedisUrlError::Escape)?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RedisUrlError::Escape)
}
