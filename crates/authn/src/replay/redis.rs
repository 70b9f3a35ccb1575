//! The shared replay store: `SET <prefix><hex key> 1 NX PX <ms>` on a Redis
//! that every gateway node uses (docs/design.md §3.9). Redis makes the
//! insertion atomic across nodes: `OK` means this node stored the key first, a
//! nil reply means some node already had. Every failure is
//! [`ReplayStoreError::Unavailable`] (503, never "inserted"). The connection
//! (deadlines, reconnects, Sentinel, TLS, the password) is
//! [`crate::redis::RedisConnection`].

use super::{Fresh, ReplayStats, ReplayStore, ReplayStoreError, Unavailable};
use crate::redis::{RedisConnection, RedisTls, RedisUrlError};
use ::redis::Value;
use async_trait::async_trait;
use std::time::{Duration, Instant};

/// The default key prefix; keys are `<prefix><64 hex digits>`.
pub const DEFAULT_KEY_PREFIX: &str = "stella:dpop:jti:";

/// A replay store in Redis, shared by every node pointed at it.
pub struct RedisReplayStore {
    connection: RedisConnection,
    prefix: String,
    stats: ReplayStats,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("connection", &self.connection)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store for `url` (the forms of [`RedisConnection::with_tls`]).
    /// Nothing is connected until the first use.
    pub fn new(url: &str) -> Result<RedisReplayStore, RedisUrlError> {
        RedisReplayStore::with_tls(url, &RedisTls::default())
    }

    /// As [`RedisReplayStore::new`], with a CA and client certificate for
    /// a `rediss://` URL.
    pub fn with_tls(url: &str, tls: &RedisTls) -> Result<RedisReplayStore, RedisUrlError> {
        Ok(RedisReplayStore {
            connection: RedisConnection::with_tls(url, tls)?,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            stats: ReplayStats::default(),
        })
    }

    /// Whether `url` and `tls` would make a store, without making one (for
    /// configuration checks).
    pub fn check(url: &str, tls: &RedisTls) -> Result<(), RedisUrlError> {
        RedisConnection::check(url, tls)
    }

    /// Keys become `<prefix><hex key>`; separates deployments sharing a
    /// Redis.
    pub fn with_prefix(mut self, prefix: &str) -> RedisReplayStore {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// The deadline of each operation, connection included (default 500 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> RedisReplayStore {
        self.connection = self.connection.with_timeout(timeout);
        self
    }

    fn set_nx_command(&self, key: &[u8; 32], ttl: Duration) -> ::redis::Cmd {
        let mut name = Vec::with_capacity(self.prefix.len() + 64);
        name.extend_from_slice(self.prefix.as_bytes());
        name.extend_from_slice(&hex(key));
        // PX 0 is an error in Redis; a sub-millisecond TTL is one millisecond.
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = ::redis::cmd("SET");
        command.arg(name).arg("1").arg("NX").arg("PX").arg(millis);
        command
    }
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn insert_once(&self, key: [u8; 32], ttl: Duration) -> Result<Fresh, ReplayStoreError> {
        let started = Instant::now();
        let outcome = match self.connection.run(&self.set_nx_command(&key, ttl)).await {
            Ok(Value::Okay) => Ok(Fresh::Inserted),
            Ok(Value::Nil) => Ok(Fresh::Replayed),
            Ok(_) => Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
            Err(why) => Err(ReplayStoreError::Unavailable(why)),
        };
        self.stats.record(&outcome, started.elapsed());
        outcome
    }

    async fn ping(&self) -> Result<(), ReplayStoreError> {
        let outcome = match self.connection.run(&::redis::cmd("PING")).await {
            Ok(Value::SimpleString(pong)) if pong == "PONG" => Ok(()),
            Ok(_) => Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
            Err(why) => Err(ReplayStoreError::Unavailable(why)),
        };
        if let Err(e) = &outcome {
            self.stats.record_error(e);
        }
        outcome
    }

    fn stats(&self) -> &ReplayStats {
        &self.stats
    }
}

fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::Unavailable;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let cases = [
            ("http://h", RedisUrlError::Scheme),
            ("unix:///run/redis.sock", RedisUrlError::Scheme),
            ("redis+cluster://h", RedisUrlError::Scheme),
            ("h:6379", RedisUrlError::Scheme),
            ("redis://", RedisUrlError::Host),
            ("redis://:pw@", RedisUrlError::Host),
            ("redis://h h", RedisUrlError::Host),
            ("redis://[::1", RedisUrlError::Host),
            ("redis://h:0", RedisUrlError::Port),
            ("redis://h:70000", RedisUrlError::Port),
            ("redis://h:x", RedisUrlError::Port),
            ("redis://h/x", RedisUrlError::Database),
            ("redis://h/1/2", RedisUrlError::Database),
            ("redis://h/99999999", RedisUrlError::Database),
            ("redis://:p%zz@h", RedisUrlError::Escape),
            ("redis://h?protocol=resp3", RedisUrlError::Options),
            ("redis://user@h", RedisUrlError::UserWithoutPassword),
            ("rediss://", RedisUrlError::Host),
            ("redis://a,b", RedisUrlError::SeveralHosts),
            ("redis+sentinel://s1:26379", RedisUrlError::SentinelMaster),
            ("redis+sentinel://s1:26379/", RedisUrlError::SentinelMaster),
            (
                "redis+sentinel://s1/bad name",
                RedisUrlError::SentinelMaster,
            ),
            ("redis+sentinel://s1,/m", RedisUrlError::Host),
            ("redis+sentinel://s1/m/x", RedisUrlError::Database),
            ("rediss+sentinel://:pw@s1:0/m", RedisUrlError::Port),
        ];
        for (url, want) in cases {
            let err = RedisReplayStore::new(url).unwrap_err();
            assert_eq!(err, want, "{url}");
            assert!(!err.to_string().contains(url));
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let store = RedisReplayStore::new("redis://u:hunter2-marker@h:1/1").unwrap();
        let text = format!("{store:?}");
        assert!(!text.contains("hunter2-marker"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn set_command_is_a_resp_array_with_hex_key_and_millisecond_ttl() {
        let store = RedisReplayStore::new("redis://h")
            .unwrap()
            .with_prefix("p:");
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x01;
        let command = store
            .set_nx_command(&key, Duration::from_secs(66))
            .get_packed_command();
        let name = format!("p:ab{}01", "00".repeat(30));
        let want = format!(
            "*6\r\n$3\r\nSET\r\n${}\r\n{name}\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n66000\r\n",
            name.len()
        );
        assert_eq!(String::from_utf8(command).unwrap(), want);
        let tiny = store
            .set_nx_command(&key, Duration::from_micros(10))
            .get_packed_command();
        assert!(String::from_utf8(tiny).unwrap().ends_with("$1\r\n1\r\n"));
    }

    #[test]
    fn tls_files_need_a_tls_url() {
        let tls = RedisTls {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            ..RedisTls::default()
        };
        assert_eq!(
            RedisReplayStore::with_tls("redis://h", &tls).unwrap_err(),
            RedisUrlError::TlsWithoutTlsUrl
        );
        let garbage = RedisTls {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..RedisTls::default()
        };
        assert_eq!(
            RedisReplayStore::with_tls("rediss://h", &garbage).unwrap_err(),
            RedisUrlError::TlsMaterial
        );
        let cert_without_key = RedisTls {
            client_cert_pem: Some(b"x".to_vec()),
            ..RedisTls::default()
        };
        assert_eq!(
            RedisReplayStore::with_tls("rediss://h", &cert_without_key).unwrap_err(),
            RedisUrlError::TlsMaterial
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable_not_inserted() {
        // Bind then drop: the port is closed for the moment of the test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisReplayStore::new(&format!("redis://127.0.0.1:{port}")).unwrap();
        assert_eq!(
            store.insert_once([1; 32], Duration::from_secs(60)).await,
            Err(ReplayStoreError::Unavailable(Unavailable::Connect))
        );
        assert!(store.ping().await.is_err());
        let stats = store.stats().snapshot();
        assert!(stats.errors.contains(&("connect", 2)));
        assert_eq!(stats.inserted, 0);
    }

    #[tokio::test]
    async fn server_that_never_answers_times_out_as_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold connections without answering.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let store = RedisReplayStore::new(&format!("redis://{addr}"))
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        assert_eq!(
            store.insert_once([2; 32], Duration::from_secs(60)).await,
            Err(ReplayStoreError::Unavailable(Unavailable::Timeout))
        );
        holder.abort();
    }

    #[tokio::test]
    async fn unexpected_reply_is_a_protocol_error_not_inserted() {
        // A reply that starts with CRLF once panicked the hand-written
        // parser.
        for answer in [
            &b"+QUEUED\r\n"[..],
            b":1\r\n",
            b"$1\r\n1\r\n",
            b"\r\n",
            b"\r\n+OK\r\n",
            b"*1\r\n+OK\r\n",
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = socket.read(&mut buf).await.unwrap();
                socket.write_all(answer).await.unwrap();
                // Keep the socket open until the client is done.
                let _ = socket.read(&mut buf).await;
            });
            let store = RedisReplayStore::new(&format!("redis://{addr}")).unwrap();
            let outcome = store.insert_once([3; 32], Duration::from_secs(60)).await;
            assert_eq!(
                outcome,
                Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
                "{answer:?}"
            );
            drop(store);
            let _ = server.await;
        }
    }
}
