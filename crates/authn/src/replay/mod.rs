//! DPoP replay detection (RFC 9449 section 11.1; docs/design.md §3.3, §3.9):
//! each `(jkt, jti)` may be used once while its proof could still be accepted.
//!
//! The store sees only [`crate::dpop::CheckedProof::replay_key`]
//! (a SHA-256, never proof bytes) and a TTL of at least
//! [`crate::dpop::DpopRules::replay_ttl`]. Insertion is atomic and an
//! entry is never forgotten before its TTL: when that cannot be promised (a
//! full memory store, an unreachable Redis) the answer is an error that the
//! caller turns into 503, never "fresh". Fail closed.
//!
//! - [`MemoryReplayStore`]: one node, bounded, sharded mutexes; no caller
//!   (proof key, `jkt`) may hold more than its share of the entries;
//! - [`RedisReplayStore`]: several nodes sharing one Redis (plain, TLS or
//!   found through Sentinel), `SET NX PX`.
//!
//! The gateway inserts a proof's key only once the proof, the token binding
//! and the route's policy have all passed, so refused requests never take
//! entries.

mod memory;
mod redis;

pub use crate::redis::{RedisTls, RedisUrlError, Unavailable};
pub use memory::{
    default_max_entries, MemoryReplayStore, DEFAULT_MAX_SHARE_PERCENT, ESTIMATED_PROOFS_PER_THREAD,
    MAX_ENTRIES_LIMIT, SIZING_MARGIN,
};
pub use redis::{RedisReplayStore, DEFAULT_KEY_PREFIX};

use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The outcome of one insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fresh {
    /// First use: the key was absent and is now stored for the TTL.
    Inserted,
    /// The key was already stored: a replayed proof (401).
    Replayed,
}

/// The outcome of an insertion on behalf of an owner
/// ([`ReplayStore::insert_once_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The store answered as [`ReplayStore::insert_once`] does.
    Checked(Fresh),
    /// Not stored: the owner already holds its share of a bounded store
    /// (429). Other callers are unaffected.
    ShareExceeded,
}

/// Why the store could not answer. Both are 503 with `Retry-After`: the
/// gateway cannot tell a fresh proof from a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayStoreError {
    #[error("replay store is full of entries that have not expired")]
    Full,
    #[error("replay store is unavailable: {0}")]
    Unavailable(Unavailable),
}

impl ReplayStoreError {
    /// A stable label for metrics and logs; one of [`ReplayStats::ERROR_CODES`].
    pub fn code(&self) -> &'static str {
        match self {
            ReplayStoreError::Full => "full",
            ReplayStoreError::Unavailable(why) => why.code(),
        }
    }

    fn index(&self) -> usize {
        match self {
            ReplayStoreError::Full => 0,
            ReplayStoreError::Unavailable(Unavailable::Connect) => 1,
            ReplayStoreError::Unavailable(Unavailable::Timeout) => 2,
            ReplayStoreError::Unavailable(Unavailable::Io) => 3,
            ReplayStoreError::Unavailable(Unavailable::Auth) => 4,
            ReplayStoreError::Unavailable(Unavailable::ServerError) => 5,
            ReplayStoreError::Unavailable(Unavailable::Protocol) => 6,
        }
    }
}

/// A store of used replay keys.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Stores `key` for at least `ttl` unless it is already stored; atomic
    /// across every caller sharing the store.
    async fn insert_once(&self, key: [u8; 32], ttl: Duration) -> Result<Fresh, ReplayStoreError>;

    /// [`insert_once`](Self::insert_once) on behalf of `owner` (the proof
    /// key's `jkt`): a bounded store refuses an owner that already holds its
    /// share with [`Fresh::ShareExceeded`]. Stores without a share (Redis,
    /// which bounds memory with its own `maxmemory`) ignore the owner.
    async fn insert_once_for(
        &self,
        key: [u8; 32],
        owner: &str,
        ttl: Duration,
    ) -> Result<Admission, ReplayStoreError> {
        let _ = owner;
        self.insert_once(key, ttl).await.map(Admission::Checked)
    }

    /// Whether the store can answer now (for `/readyz`).
    async fn ping(&self) -> Result<(), ReplayStoreError>;

    /// Counters for `/metrics`.
    fn stats(&self) -> &ReplayStats;
}

/// Latency histogram bounds, in microseconds (Prometheus `le` values).
pub const LATENCY_BUCKETS_MICROS: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000,
];

/// Counters a store keeps about its own operations. Lock-free; read with
/// [`ReplayStats::snapshot`].
#[derive(Debug, Default)]
pub struct ReplayStats {
    inserted: AtomicU64,
    replayed: AtomicU64,
    share_exceeded: AtomicU64,
    errors: [AtomicU64; 7],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Per bucket (not cumulative); the last slot is "above every bound".
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
}

/// A copy of [`ReplayStats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStatsSnapshot {
    pub inserted: u64,
    pub replayed: u64,
    /// Insertions refused because the owner held its share.
    pub share_exceeded: u64,
    /// `(code, count)` for every code in [`ReplayStats::ERROR_CODES`].
    pub errors: Vec<(&'static str, u64)>,
    pub latency_count: u64,
    pub latency_sum_micros: u64,
    /// `(upper bound in microseconds, cumulative count)`, Prometheus style;
    /// the `+Inf` bucket is `latency_count`.
    pub latency_buckets: Vec<(u64, u64)>,
}

impl ReplayStats {
    /// Every error label, in a fixed order.
    pub const ERROR_CODES: [&'static str; 7] = [
        "full",
        "connect",
        "timeout",
        "io",
        "auth",
        "server_error",
        "protocol",
    ];

    /// Records one `insert_once` and how long it took.
    pub(crate) fn record(&self, outcome: &Result<Fresh, ReplayStoreError>, elapsed: Duration) {
        match outcome {
            Ok(Fresh::Inserted) => self.inserted.fetch_add(1, Ordering::Relaxed),
            Ok(Fresh::Replayed) => self.replayed.fetch_add(1, Ordering::Relaxed),
            Err(e) => self.errors[e.index()].fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Records an insertion refused because the owner held its share.
    pub(crate) fn record_share_exceeded(&self) {
        self.share_exceeded.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an error outside `insert_once` (a failed `ping`).
    pub(crate) fn record_error(&self, error: &ReplayStoreError) {
        self.errors[error.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ReplayStatsSnapshot {
        let mut cumulative = 0u64;
        let latency_buckets = LATENCY_BUCKETS_MICROS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(bound, count)| {
                cumulative = cumulative.saturating_add(count.load(Ordering::Relaxed));
                (*bound, cumulative)
            })
            .collect();
        ReplayStatsSnapshot {
            inserted: self.inserted.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            share_exceeded: self.share_exceeded.load(Ordering::Relaxed),
            errors: Self::ERROR_CODES
                .iter()
                .zip(&self.errors)
                .map(|(code, count)| (*code, count.load(Ordering::Relaxed)))
                .collect(),
            latency_count: self.latency_count.load(Ordering::Relaxed),
            latency_sum_micros: self.latency_sum_micros.load(Ordering::Relaxed),
            latency_buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_listed_code_at_its_index() {
        let all = [
            ReplayStoreError::Full,
            ReplayStoreError::Unavailable(Unavailable::Connect),
            ReplayStoreError::Unavailable(Unavailable::Timeout),
            ReplayStoreError::Unavailable(Unavailable::Io),
            ReplayStoreError::Unavailable(Unavailable::Auth),
            ReplayStoreError::Unavailable(Unavailable::ServerError),
            ReplayStoreError::Unavailable(Unavailable::Protocol),
        ];
        for e in all {
            assert_eq!(ReplayStats::ERROR_CODES[e.index()], e.code());
            let message = e.to_string();
            assert_eq!(message, message.to_lowercase());
        }
    }

    #[test]
    fn stats_count_outcomes_and_latency() {
        let stats = ReplayStats::default();
        stats.record(&Ok(Fresh::Inserted), Duration::from_micros(90));
        stats.record(&Ok(Fresh::Replayed), Duration::from_micros(700));
        stats.record(
            &Err(ReplayStoreError::Unavailable(Unavailable::Timeout)),
            Duration::from_secs(2),
        );
        let s = stats.snapshot();
        assert_eq!((s.inserted, s.replayed, s.latency_count), (1, 1, 3));
        assert_eq!(s.latency_sum_micros, 90 + 700 + 2_000_000);
        assert!(s.errors.contains(&("timeout", 1)));
        assert!(s.errors.contains(&("full", 0)));
        assert_eq!(s.latency_buckets[0], (100, 1));
        assert_eq!(s.latency_buckets[3], (1_000, 2));
        // Above every bound: only in the +Inf bucket (latency_count).
        assert_eq!(s.latency_buckets.last(), Some(&(500_000, 2)));
    }
}
