//! The one Redis connection of this crate, shared by the stores that use
//! Redis (the DPoP replay store, `crate::replay`; the revocation list,
//! `crate::revocation`). It is the `redis` crate's: a multiplexed
//! connection that reconnects by itself (`ConnectionManager`) for one
//! server, or a master found through Sentinel. This module keeps what the
//! crate does not know: the gateway's URL forms and their refusals, one
//! deadline per operation, the mapping of every failure to an
//! [`Unavailable`] with a fixed label, and the password out of every log.
//!
//! - Each operation has one deadline covering connecting, TLS,
//!   authenticating and the command itself. The crate's own connect and
//!   response timeouts are set to the same value and it makes no retries
//!   of its own, so an outage answers within the deadline.
//! - A connection the server closed (a restart, an idle timeout) gets one
//!   retry within the same deadline, on the connection the manager opens in
//!   its place. The commands the stores send are safe to repeat (`SET NX`
//!   reads nil the second time: a spurious replay at worst, never a second
//!   insertion; `HSET`, `HDEL` and `PUBLISH` of a notice are idempotent).
//! - The manager replaces a connection only after an I/O error. A failure
//!   while it connects that is not one (a refused password, `LOADING`, a
//!   database the server lacks) would stick to it for good, so after any
//!   other error this module drops the manager and builds a fresh one on
//!   the next operation: a fixed password or a loaded dataset is picked up
//!   without restarting the gateway.
//! - Sentinel: the master address is asked of the sentinels when there is
//!   no connection; any error drops the connection, so after a failover
//!   (`READONLY` from the demoted master, or a closed socket) the next
//!   operation asks again.
//! - Subscriptions ([`RedisConnection::subscribe`]) take a connection of
//!   their own (a subscribed connection can do nothing else), made on the
//!   same terms.
//! - The password is parsed into a zeroizing buffer and handed to the
//!   crate when the connection is built (the crate keeps its own copy, which
//!   it redacts in `Debug` but does not zeroize). It is sent only in `AUTH`;
//!   `Debug` shows whether there is one, errors keep a fixed label and never
//!   the server's text, and URL errors never echo the URL.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, TlsCertificates, TlsMode, Value,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use zeroize::Zeroizing;

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_SENTINEL_PORT: u16 = 26379;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Sentinels listed in one URL, at most.
const MAX_SENTINELS: usize = 16;

/// What went wrong talking to a remote store. Fixed set: a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unavailable {
    /// No TCP connection could be made.
    Connect,
    /// The operation did not finish within the configured timeout.
    Timeout,
    /// The connection failed mid-operation.
    Io,
    /// The server refused the credentials.
    Auth,
    /// The server answered with an error (out of memory, read-only replica,
    /// wrong database, ...).
    ServerError,
    /// The server's answer was not what the command can return.
    Protocol,
}

impl Unavailable {
    pub fn code(self) -> &'static str {
        match self {
            Unavailable::Connect => "connect",
            Unavailable::Timeout => "timeout",
            Unavailable::Io => "io",
            Unavailable::Auth => "auth",
            Unavailable::ServerError => "server_error",
            Unavailable::Protocol => "protocol",
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unavailable::Connect => "cannot connect",
            Unavailable::Timeout => "timed out",
            Unavailable::Io => "connection failed",
            Unavailable::Auth => "authentication refused",
            Unavailable::ServerError => "server answered with an error",
            Unavailable::Protocol => "unexpected reply",
        })
    }
}

/// How a connection reaches its master.
enum Backend {
    /// One server; the manager is built on first use (it needs a runtime)
    /// and dropped after an error it would not recover from.
    Single {
        client: redis::Client,
        manager: Mutex<Option<Arc<ConnectionManager>>>,
    },
    /// A master found through Sentinel; the connection is dropped after
    /// any error so that the next operation asks the sentinels again.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        connection: Mutex<Option<Arc<MultiplexedConnection>>>,
    },
}

/// The connection one operation uses.
#[derive(Clone)]
enum Handle {
    Managed(Arc<ConnectionManager>),
    Direct(Arc<MultiplexedConnection>),
}

impl Handle {
    async fn query(&self, command: &::redis::Cmd) -> Result<Value, RedisError> {
        match self {
            Handle::Managed(manager) => {
                command
                    .query_async(&mut ConnectionManager::clone(manager))
                    .await
            }
            Handle::Direct(conn) => {
                command
                    .query_async(&mut MultiplexedConnection::clone(conn))
                    .await
            }
        }
    }
}

/// A connection to one Redis (a server, or a master found through
/// Sentinel), for stores shared by every node pointed at it.
pub struct RedisConnection {
    target: Target,
    backend: Backend,
    timeout: Duration,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// A connection for `url`: `redis://host:port/db`,
    /// `redis://:password@host`, `redis://user:password@host:port/db` (user
    /// and password may be percent-encoded), the same with `rediss://` for
    /// TLS, or `redis+sentinel://host:26379,host:26379/<master>/db` for a
    /// master found through Sentinel, with a CA and client certificate for
    /// TLS. Nothing is connected until the first use.
    pub fn with_tls(url: &str, tls: &RedisTls) -> Result<RedisConnection, RedisUrlError> {
        let target = Target::parse(url)?;
        if !tls.is_empty() && !target.tls {
            return Err(RedisUrlError::TlsWithoutTlsUrl);
        }
        tls.check()?;
        let certificates = tls.certificates();
        let backend = match &target.master {
            None => {
                let node = target.nodes.first().ok_or(RedisUrlError::Host)?;
                let info = target
                    .address(node)
                    .into_connection_info()
                    .map_err(|_| RedisUrlError::Host)?
                    .set_redis_settings(target.redis_settings());
                let client = match certificates {
                    Some(certs) => redis::Client::build_with_tls(info, certs)
                        .map_err(|_| RedisUrlError::TlsMaterial)?,
                    None => redis::Client::open(info).map_err(|_| RedisUrlError::Host)?,
                };
                Backend::Single {
                    client,
                    manager: Mutex::new(None),
                }
            }
            Some(master) => {
                let sentinels = target.nodes.iter().map(|node| target.address(node));
                let mut builder =
                    SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)
                        .map_err(|_| RedisUrlError::Host)?
                        .set_client_to_redis_db(i64::from(target.db));
                if let Some(user) = &target.user {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &target.password {
                    builder = builder.set_client_to_redis_password(password.as_str());
                }
                if target.tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if let Some(certs) = certificates {
                        builder = builder
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs);
                    }
                }
                let client = builder.build().map_err(|_| RedisUrlError::TlsMaterial)?;
                Backend::Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    connection: Mutex::new(None),
                }
            }
        };
        Ok(RedisConnection {
            target,
            backend,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Whether `url` and `tls` would make a connection, without making one (for
    /// configuration checks).
    pub fn check(url: &str, tls: &RedisTls) -> Result<(), RedisUrlError> {
        let target = Target::parse(url)?;
        if !tls.is_empty() && !target.tls {
            return Err(RedisUrlError::TlsWithoutTlsUrl);
        }
        tls.check()
    }

    /// The deadline of each operation, connection included (default 500 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> RedisConnection {
        self.timeout = timeout;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one command within the deadline: at most two attempts, the
    /// second only after the connection failed.
    pub async fn run(&self, command: &::redis::Cmd) -> Result<Value, Unavailable> {
        let attempt = async {
            let mut retried = false;
            loop {
                let handle = self.handle().await.map_err(|e| classify(&e))?;
                match handle.query(command).await {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        self.discard(&handle, &e);
                        let broken = e.is_io_error() && !e.is_timeout();
                        if broken && !retried {
                            retried = true;
                            continue;
                        }
                        return Err(classify(&e));
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(Err(Unavailable::Timeout))
    }

    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    async fn handle(&self) -> Result<Handle, RedisError> {
        match &self.backend {
            Backend::Single { client, manager } => {
                let mut slot = manager.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(current) = slot.as_ref() {
                    return Ok(Handle::Managed(current.clone()));
                }
                // No retries inside the manager: the caller's deadline
                // decides, and a failed connect is retried by the next
                // operation.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let fresh = Arc::new(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?);
                *slot = Some(fresh.clone());
                Ok(Handle::Managed(fresh))
            }
            Backend::Sentinel { client, connection } => {
                if let Some(current) = connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    return Ok(Handle::Direct(current.clone()));
                }
                // One discovery at a time; the others wait for its result.
                let mut client = client.lock().await;
                if let Some(current) = connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    return Ok(Handle::Direct(current.clone()));
                }
                let fresh = Arc::new(
                    client
                        .get_async_connection_with_config(&self.connection_config())
                        .await?,
                );
                *connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
                Ok(Handle::Direct(fresh))
            }
        }
    }

    /// Forgets the connection `used` after `error`, unless another
    /// operation already replaced it.
    fn discard(&self, used: &Handle, error: &RedisError) {
        match (&self.backend, used) {
            (Backend::Single { manager, .. }, Handle::Managed(used)) => {
                // The manager reconnects by itself after I/O errors.
                if error.is_io_error() {
                    return;
                }
                let mut slot = manager.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|m| Arc::ptr_eq(m, used)) {
                    *slot = None;
                }
            }
            (Backend::Sentinel { connection, .. }, Handle::Direct(used)) => {
                let mut slot = connection.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, used)) {
                    *slot = None;
                }
            }
            _ => {}
        }
    }

    /// A connection of its own subscribed to `channel`, within the
    /// deadline. Its messages end when the connection does.
    pub async fn subscribe(&self, channel: &str) -> Result<::redis::aio::PubSub, Unavailable> {
        let attempt = async {
            let client = match &self.backend {
                Backend::Single { client, .. } => client.clone(),
                Backend::Sentinel { client, .. } => client.lock().await.async_get_client().await?,
            };
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(Unavailable::Timeout),
        }
    }
}

/// The fixed label of a failure. Its text (which may quote the server) is
/// not kept.
fn classify(error: &RedisError) -> Unavailable {
    if error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        Unavailable::Auth
    } else if error.is_timeout() {
        Unavailable::Timeout
    } else if error.is_connection_refusal() {
        Unavailable::Connect
    } else if error.is_io_error() {
        Unavailable::Io
    } else {
        match error.kind() {
            ErrorKind::Server(_) | ErrorKind::Extension => Unavailable::ServerError,
            ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::EmptySentinelList => Unavailable::Connect,
            _ => Unavailable::Protocol,
        }
    }
}

mod url;

use url::Target;
pub use url::{RedisTls, RedisUrlError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_db_and_credentials() {
        let t = Target::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(t.nodes, [("127.0.0.1".to_owned(), 6380)]);
        assert_eq!((t.db, t.tls, t.master.as_deref()), (2, false, None));
        assert!(t.user.is_none() && t.password.is_none());

        let t = Target::parse("redis://cache.internal").unwrap();
        assert_eq!(t.nodes, [("cache.internal".to_owned(), 6379)]);
        assert_eq!(t.db, 0);

        let t = Target::parse("redis://:s%40cret%3A1@cache:7000").unwrap();
        assert_eq!(t.password.as_deref().map(String::as_str), Some("s@cret:1"));
        assert!(t.user.is_none());
        assert_eq!(t.nodes[0].1, 7000);

        let t = Target::parse("REDIS://gateway:pw@[::1]:7001/3").unwrap();
        assert_eq!(t.nodes, [("::1".to_owned(), 7001)]);
        assert_eq!(t.db, 3);
        assert_eq!(t.user.as_deref(), Some("gateway"));

        let t = Target::parse("redis://:@h/").unwrap();
        assert!(t.password.is_none());

        let t = Target::parse("rediss://:pw@cache.internal:6380/1").unwrap();
        assert!(t.tls);
        assert_eq!((t.nodes[0].1, t.db), (6380, 1));

        let t = Target::parse("redis+sentinel://:pw@s1,s2:26380,[::1]/replay-master/4").unwrap();
        assert!(!t.tls);
        assert_eq!(
            t.nodes,
            [
                ("s1".to_owned(), 26379),
                ("s2".to_owned(), 26380),
                ("::1".to_owned(), 26379)
            ]
        );
        assert_eq!((t.master.as_deref(), t.db), (Some("replay-master"), 4));
        assert_eq!(t.password.as_deref().map(String::as_str), Some("pw"));

        let t = Target::parse("rediss+sentinel://s1/m").unwrap();
        assert!(t.tls);
        assert_eq!((t.master.as_deref(), t.db), (Some("m"), 0));
    }
}
