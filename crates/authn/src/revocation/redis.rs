//! The revocation list in a Redis every node shares (docs/design.md §3.9).
//! One hash holds the list (`stella:revocations`: field
//! `<kind>\n<issuer>\n<value>`, the entry as JSON, as in the state file), and
//! a node that changes it publishes a notice on a channel
//! (`stella:revocations:changed`). Every node keeps a subscription to the
//! channel and reads the whole hash again on each notice, when it
//! (re)connects and every few seconds, so a change made on any node is in
//! force on every node within a round trip, and a lost notice within the
//! refresh interval. The node applies what it reads with
//! [`super::Denylist::replace_all`]; a node that cannot reach the store keeps
//! the list it had (the gateway's sync loop, gateway/src/revocation.rs).
//!
//! Expired entries are left out when read, and deleted from the hash by the
//! node that sweeps them; Redis expiry is not used (it is per key, and the
//! list is one key).
//!
//! A Redis can lose what it holds (a restart without persistence, a
//! failover to a replica that had not caught up), and an empty hash must
//! not empty every node's list. So the hash carries an epoch (field
//! `epoch`, a random id written once with `HSETNX`): removing entries never
//! touches it, and a hash without it, or with another one than a node last
//! saw, is a store that lost the list. The node then writes its own entries
//! back ([`RevocationStore::seed`]) before it reads again: a loss can bring
//! back an entry that was removed meanwhile, never drop one.

use super::Entry;
use crate::redis::{RedisConnection, Unavailable};
use ::redis::Value;

/// The hash that holds the list.
pub const DEFAULT_KEY: &str = "stella:revocations";
/// The channel change notices go to.
pub const DEFAULT_CHANNEL: &str = "stella:revocations:changed";

/// The hash field of the epoch; entry fields always hold a line break.
const EPOCH_FIELD: &str = "epoch";

/// The shared list, through one connection.
#[derive(Debug)]
pub struct RevocationStore {
    connection: RedisConnection,
    key: String,
    channel: String,
}

/// What [`RevocationStore::load`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    pub entries: Vec<Entry>,
    /// Fields whose content is not an entry (left out).
    pub unreadable: usize,
    /// The hash's epoch; `None`: a store that never held the list, or lost
    /// it.
    pub epoch: Option<String>,
}

impl RevocationStore {
    pub fn new(connection: RedisConnection) -> RevocationStore {
        RevocationStore {
            connection,
            key: DEFAULT_KEY.to_owned(),
            channel: DEFAULT_CHANNEL.to_owned(),
        }
    }

    /// The channel change notices go to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Every entry in the store.
    pub async fn load(&self) -> Result<Loaded, Unavailable> {
        let value = self
            .connection
            .run(::redis::cmd("HGETALL").arg(&self.key))
            .await?;
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            ::redis::from_redis_value(value).map_err(|_| Unavailable::Protocol)?;
        let mut loaded = Loaded::default();
        for (field, json) in pairs {
            if field == EPOCH_FIELD.as_bytes() {
                loaded.epoch = Some(String::from_utf8_lossy(&json).into_owned());
                continue;
            }
            match serde_json::from_slice::<Entry>(&json) {
                Ok(entry) => loaded.entries.push(entry),
                Err(_) => loaded.unreadable += 1,
            }
        }
        Ok(loaded)
    }

    /// Adds or replaces `entry`, and tells every node.
    pub async fn put(&self, entry: &Entry) -> Result<(), Unavailable> {
        let json = serde_json::to_vec(entry).map_err(|_| Unavailable::Protocol)?;
        let mut command = ::redis::cmd("HSET");
        command.arg(&self.key).arg(field(entry)).arg(json);
        match self.connection.run(&command).await? {
            Value::Int(_) => self.notify().await,
            _ => Err(Unavailable::Protocol),
        }
    }

    /// Removes `entries`, and tells every node.
    pub async fn remove(&self, entries: &[Entry]) -> Result<(), Unavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        self.delete(entries).await?;
        self.notify().await
    }

    /// Removes expired `entries` without a notice: every node leaves them
    /// out by itself, and every node sweeps them (a notice each would make
    /// every node read the list once per node).
    pub async fn forget_expired(&self, entries: &[Entry]) -> Result<(), Unavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        self.delete(entries).await
    }

    async fn delete(&self, entries: &[Entry]) -> Result<(), Unavailable> {
        let mut command = ::redis::cmd("HDEL");
        command.arg(&self.key);
        for entry in entries {
            command.arg(field(entry));
        }
        match self.connection.run(&command).await? {
            Value::Int(_) => Ok(()),
            _ => Err(Unavailable::Protocol),
        }
    }

    /// Writes `entries` into a store that lost the list (or never had it),
    /// and `epoch` as its epoch unless another node wrote one first; tells
    /// every node.
    pub async fn seed(&self, entries: &[Entry], epoch: &str) -> Result<(), Unavailable> {
        if !entries.is_empty() {
            let mut command = ::redis::cmd("HSET");
            command.arg(&self.key);
            for entry in entries {
                let json = serde_json::to_vec(entry).map_err(|_| Unavailable::Protocol)?;
                command.arg(field(entry)).arg(json);
            }
            if !matches!(self.connection.run(&command).await?, Value::Int(_)) {
                return Err(Unavailable::Protocol);
            }
        }
        let mut command = ::redis::cmd("HSETNX");
        command.arg(&self.key).arg(EPOCH_FIELD).arg(epoch);
        match self.connection.run(&command).await? {
            Value::Int(_) => self.notify().await,
            _ => Err(Unavailable::Protocol),
        }
    }

    /// A connection of its own, subscribed to the change notices.
    pub async fn subscribe(&self) -> Result<::redis::aio::PubSub, Unavailable> {
        self.connection.subscribe(&self.channel).await
    }

    async fn notify(&self) -> Result<(), Unavailable> {
        let mut command = ::redis::cmd("PUBLISH");
        command.arg(&self.channel).arg("changed");
        match self.connection.run(&command).await? {
            Value::Int(_) => Ok(()),
            _ => Err(Unavailable::Protocol),
        }
    }
}

/// The hash field of an entry: what makes it unique.
fn field(entry: &Entry) -> String {
    format!(
        "{}\n{}\n{}",
        entry.kind.as_str(),
        entry.issuer.as_deref().unwrap_or(""),
        entry.value
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Kind;

    fn entry(kind: Kind, issuer: Option<&str>, value: &str) -> Entry {
        Entry {
            kind,
            issuer: issuer.map(str::to_owned),
            value: value.into(),
            reason: "r".into(),
            operator: "o".into(),
            created_at: 1,
            expires_at: 2,
        }
    }

    #[test]
    fn an_entry_has_one_field_per_identifier() {
        assert_eq!(field(&entry(Kind::Jti, None, "t")), "jti\n\nt");
        assert_eq!(
            field(&entry(Kind::Sub, Some("https://a"), "bob")),
            "sub\nhttps://a\nbob"
        );
        assert_ne!(
            field(&entry(Kind::Sub, Some("https://a"), "bob")),
            field(&entry(Kind::Sub, Some("https://b"), "bob"))
        );
    }

    #[tokio::test]
    async fn a_store_nobody_answers_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let connection = RedisConnection::with_tls(
            &format!("redis://127.0.0.1:{port}"),
            &crate::redis::RedisTls::default(),
        )
        .unwrap();
        let store = RevocationStore::new(connection);
        assert_eq!(store.load().await.unwrap_err(), Unavailable::Connect);
        assert!(store.put(&entry(Kind::Jti, None, "t")).await.is_err());
        assert!(store.subscribe().await.is_err());
    }
}
