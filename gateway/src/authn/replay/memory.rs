//! The single-node replay store: a bounded map from replay key to expiry,
//! split into shards so concurrent requests rarely wait on one lock.
//!
//! Entries are never evicted before they expire: when every slot holds a
//! live entry the store answers [`ReplayStoreError::Full`] (503), because
//! forgetting a live key would let its proof be replayed. Expired entries
//! are reclaimed by a sweep of a shard at most once per second when it is
//! used, and of every shard when the store is full.

use super::{Fresh, ReplayStats, ReplayStore, ReplayStoreError};
use crate::authority::{Clock, SystemClock};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A default capacity: a minute of 3,000 proofs per second, at most about
/// 20 MiB of map.
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;

const SHARDS: usize = 16;

struct Shard {
    /// Replay key -> the first second at which it is expired.
    entries: HashMap<[u8; 32], u64>,
    next_sweep: u64,
}

/// A bounded in-process replay store.
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    /// Entries in all shards, live or not yet reclaimed.
    len: AtomicUsize,
    max_entries: usize,
    clock: Arc<dyn Clock>,
    stats: ReplayStats,
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl MemoryReplayStore {
    /// A store holding at most `max_entries` keys, on the system clock.
    pub fn new(max_entries: usize) -> MemoryReplayStore {
        MemoryReplayStore::with_clock(max_entries, Arc::new(SystemClock))
    }

    /// A store on `clock` (tests freeze and advance it).
    pub fn with_clock(max_entries: usize, clock: Arc<dyn Clock>) -> MemoryReplayStore {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: HashMap::new(),
                    next_sweep: 0,
                })
            })
            .collect();
        MemoryReplayStore {
            shards,
            len: AtomicUsize::new(0),
            max_entries,
            clock,
            stats: ReplayStats::default(),
        }
    }

    /// Keys held, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The insertion itself, at `now` (unix seconds).
    fn insert_at(&self, key: [u8; 32], ttl: Duration, now: u64) -> Result<Fresh, ReplayStoreError> {
        // Whole seconds, rounded up, plus one: the clock reads whole
        // seconds, so an entry made at second `now` may be up to a second
        // older than `now` says. It is live while `clock < expires`.
        let ttl_secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        let expires = now.saturating_add(ttl_secs).saturating_add(1);
        // The key is a SHA-256 output: any byte of it picks a shard evenly.
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        for attempt in 0..2 {
            {
                let mut guard = lock(shard);
                self.sweep_if_due(&mut guard, now);
                match guard.entries.get_mut(&key) {
                    Some(expiry) if *expiry > now => return Ok(Fresh::Replayed),
                    Some(expiry) => {
                        // Expired but not yet reclaimed: reuse its slot.
                        *expiry = expires;
                        return Ok(Fresh::Inserted);
                    }
                    None => {
                        if self.reserve_slot() {
                            guard.entries.insert(key, expires);
                            return Ok(Fresh::Inserted);
                        }
                    }
                }
            }
            // Full: reclaim expired entries everywhere (one shard lock at a
            // time, never two) and try once more.
            if attempt == 0 {
                self.sweep_all(now);
            }
        }
        Err(ReplayStoreError::Full)
    }

    fn reserve_slot(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                (len < self.max_entries).then_some(len + 1)
            })
            .is_ok()
    }

    fn sweep_if_due(&self, shard: &mut Shard, now: u64) {
        if now >= shard.next_sweep {
            self.sweep(shard, now);
        }
    }

    fn sweep(&self, shard: &mut Shard, now: u64) {
        let before = shard.entries.len();
        shard.entries.retain(|_, expiry| *expiry > now);
        let removed = before - shard.entries.len();
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::AcqRel);
        }
        shard.next_sweep = now.saturating_add(1);
    }

    fn sweep_all(&self, now: u64) {
        for shard in self.shards.iter() {
            self.sweep(&mut lock(shard), now);
        }
    }
}

/// A poisoned shard still holds a consistent map (no code path panics
/// between changing the map and the counter), so it is used as is.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn insert_once(&self, key: [u8; 32], ttl: Duration) -> Result<Fresh, ReplayStoreError> {
        let started = Instant::now();
        let outcome = self.insert_at(key, ttl, self.clock.now());
        self.stats.record(&outcome, started.elapsed());
        outcome
    }

    async fn ping(&self) -> Result<(), ReplayStoreError> {
        Ok(())
    }

    fn stats(&self) -> &ReplayStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::dpop::{check_proof, DpopRules, ProofInput};
    use crate::authority::ManualClock;
    use crate::identity::Binding;
    use serde_json::Value;

    const TTL: Duration = Duration::from_secs(60);
    const NOW: u64 = 1_800_000_000;

    fn key(n: u32) -> [u8; 32] {
        let mut key = [0u8; 32];
        // Spread over shards like real hashes: vary the first byte too.
        key[..4].copy_from_slice(&n.to_le_bytes());
        key
    }

    fn store(max: usize) -> (MemoryReplayStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(NOW));
        (MemoryReplayStore::with_clock(max, clock.clone()), clock)
    }

    #[tokio::test]
    async fn first_use_is_inserted_and_second_is_replayed() {
        let (store, _) = store(10);
        assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Inserted));
        assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Replayed));
        assert_eq!(store.insert_once(key(2), TTL).await, Ok(Fresh::Inserted));
        let stats = store.stats().snapshot();
        assert_eq!((stats.inserted, stats.replayed), (2, 1));
        assert_eq!(stats.latency_count, 3);
    }

    #[tokio::test]
    async fn rfc9449_figure_13_proof_used_twice_is_a_replay() {
        let v: Value =
            serde_json::from_str(include_str!("../dpop/testdata/rfc-vectors.json")).unwrap();
        let get = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap().to_owned();
        let base = "/rfc9449/resource_request_proof";
        let now = v
            .pointer(&format!("{base}/now"))
            .and_then(Value::as_u64)
            .unwrap();
        let binding = Binding::Jkt(get(&format!("{base}/cnf_jkt")));
        let (proof, token, url) = (
            get(&format!("{base}/proof")),
            get("/rfc9449/access_token"),
            get(&format!("{base}/url")),
        );
        let input = ProofInput {
            method: "GET",
            target_uri: &url,
            proof: &proof,
            access_token: &token,
            binding: &binding,
            nonce: None,
        };
        let rules = DpopRules::default();
        let clock = Arc::new(ManualClock::new(now));
        let store = MemoryReplayStore::with_clock(100, clock);
        let first = check_proof(&input, &rules, now).unwrap();
        assert_eq!(
            store
                .insert_once(first.replay_key(), rules.replay_ttl())
                .await,
            Ok(Fresh::Inserted)
        );
        // The same proof a second later still passes every stateless check;
        // only the store catches it.
        let second = check_proof(&input, &rules, now + 1).unwrap();
        assert_eq!(
            store
                .insert_once(second.replay_key(), rules.replay_ttl())
                .await,
            Ok(Fresh::Replayed)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_inserts_of_one_key_yield_exactly_one_inserted() {
        let (store, _) = store(1000);
        let store = Arc::new(store);
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.insert_once(key(7), TTL).await
                })
            })
            .collect();
        let mut inserted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(Fresh::Inserted) => inserted += 1,
                Ok(Fresh::Replayed) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(inserted, 1);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn fifty_threads_racing_on_one_key_yield_exactly_one_inserted() {
        let (store, _) = store(1000);
        let barrier = std::sync::Barrier::new(50);
        let inserted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| {
                    barrier.wait();
                    if store.insert_at(key(9), TTL, NOW) == Ok(Fresh::Inserted) {
                        inserted.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(inserted.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn entry_lives_at_least_its_ttl_then_expires() {
        let (store, clock) = store(10);
        assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Inserted));
        clock.advance(60);
        assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Replayed));
        clock.advance(1);
        // Expired: the key may be used again (its proof is stale by now).
        assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Inserted));
        assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Replayed));
    }

    #[tokio::test]
    async fn sub_second_ttl_is_rounded_up() {
        let (store, clock) = store(10);
        let ttl = Duration::from_millis(1500);
        assert_eq!(store.insert_once(key(1), ttl).await, Ok(Fresh::Inserted));
        clock.advance(2);
        assert_eq!(store.insert_once(key(1), ttl).await, Ok(Fresh::Replayed));
        clock.advance(1);
        assert_eq!(store.insert_once(key(1), ttl).await, Ok(Fresh::Inserted));
    }

    #[tokio::test]
    async fn full_store_of_live_entries_refuses_instead_of_forgetting() {
        let (store, clock) = store(3);
        for n in 0..3 {
            assert_eq!(store.insert_once(key(n), TTL).await, Ok(Fresh::Inserted));
        }
        assert_eq!(
            store.insert_once(key(3), TTL).await,
            Err(ReplayStoreError::Full)
        );
        // Every live key is still remembered.
        for n in 0..3 {
            assert_eq!(store.insert_once(key(n), TTL).await, Ok(Fresh::Replayed));
        }
        assert_eq!(store.stats().snapshot().errors[0], ("full", 1));
        // Once they expire, their slots are reclaimed.
        clock.advance(61);
        assert_eq!(store.insert_once(key(3), TTL).await, Ok(Fresh::Inserted));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn expired_entries_are_reclaimed_as_shards_are_used() {
        let (store, clock) = store(10_000);
        for n in 0..1000 {
            store.insert_once(key(n), TTL).await.unwrap();
        }
        assert_eq!(store.len(), 1000);
        clock.advance(61);
        // Touch every shard once.
        for n in 1000..1000 + 256 {
            store.insert_once(key(n), TTL).await.unwrap();
        }
        assert_eq!(store.len(), 256);
    }

    #[tokio::test]
    async fn zero_capacity_store_is_always_full() {
        let (store, _) = store(0);
        assert_eq!(
            store.insert_once(key(1), TTL).await,
            Err(ReplayStoreError::Full)
        );
    }
}
