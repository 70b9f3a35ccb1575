//! The single-node replay store: a bounded map from replay key to expiry,
//! split into shards so concurrent requests rarely wait on one lock.
//!
//! Entries are never evicted before they expire: when every slot holds a
//! live entry the store answers [`ReplayStoreError::Full`] (503), because
//! forgetting a live key would let its proof be replayed. Expired entries
//! are reclaimed by a sweep of a shard at most once per second when it is
//! used, and of every shard (each still at most once a second) when the
//! store is full or a caller's share is taken, so a flood of refused
//! requests cannot make every request scan the store.
//!
//! Fairness: each entry remembers its owner (a hash of the proof key's
//! `jkt`), and one owner may hold at most a configured share of the
//! capacity; beyond it that owner's proofs are refused with
//! [`Admission::ShareExceeded`] (429) while every other caller goes on. One
//! flooding key therefore cannot fill the store for everyone.
//!
//! Sizing ([`default_max_entries`]): a proof's entry lives for the proof
//! window (`proof_max_age + proof_future_skew + 1` s), so a node that
//! accepts `R` proofs per second holds `R * window` live entries. The
//! default capacity is [`ESTIMATED_PROOFS_PER_THREAD`] per worker thread
//! times the window times [`SIZING_MARGIN`].

use super::{Admission, Fresh, ReplayStats, ReplayStore, ReplayStoreError};
use async_trait::async_trait;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use stella_core::{Clock, SystemClock};

/// DPoP proofs one proxy worker thread verifies per second at most: one
/// ES256 verification plus the proxying around it (measured on the
/// reference machine at about 8,000 per thread; rounded up).
pub const ESTIMATED_PROOFS_PER_THREAD: u64 = 10_000;

/// Head room over the estimate: faster cores, bursts, clock steps.
pub const SIZING_MARGIN: u64 = 2;

/// The share of the capacity one owner (`jkt`) may hold by default.
pub const DEFAULT_MAX_SHARE_PERCENT: u8 = 10;

/// The largest `replay_max_entries` the configuration accepts.
pub const MAX_ENTRIES_LIMIT: u64 = 100_000_000;

/// The default capacity for `threads` proxy workers and a proof window
/// of `window` (the replay TTL): enough for every worker verifying proofs
/// flat out for the whole window, times the margin, and never more than
/// [`MAX_ENTRIES_LIMIT`] (a wide proof window must not turn the default
/// into a value the configuration refuses).
pub fn default_max_entries(threads: usize, window: Duration) -> u64 {
    let secs = window
        .as_secs()
        .saturating_add(u64::from(window.subsec_nanos() > 0));
    ESTIMATED_PROOFS_PER_THREAD
        .saturating_mul(u64::try_from(threads.max(1)).unwrap_or(u64::MAX))
        .saturating_mul(secs.max(1))
        .saturating_mul(SIZING_MARGIN)
        .min(MAX_ENTRIES_LIMIT)
}

const SHARDS: usize = 16;

#[derive(Clone, Copy)]
struct Entry {
    /// The first second at which the entry is expired.
    expires: u64,
    /// Hash of the owner's `jkt`; [`NO_OWNER`] for unattributed inserts.
    owner: u64,
}

/// Inserts made without an owner (`insert_once`) are not counted against
/// any share.
const NO_OWNER: u64 = 0;

struct Shard {
    entries: HashMap<[u8; 32], Entry>,
    next_sweep: u64,
}

/// A bounded in-process replay store.
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    /// Live entries per owner hash, sharded by that hash. Locked only
    /// while a shard of `shards` is held, never the other way round.
    owners: Box<[Mutex<HashMap<u64, usize>>]>,
    /// Keys the owner hashes (random per process, so nobody can aim a key
    /// at another caller's share).
    hasher: RandomState,
    /// Entries in all shards, live or not yet reclaimed.
    len: AtomicUsize,
    max_entries: usize,
    max_per_owner: usize,
    clock: Arc<dyn Clock>,
    stats: ReplayStats,
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_entries", &self.max_entries)
            .field("max_per_owner", &self.max_per_owner)
            .finish_non_exhaustive()
    }
}

impl MemoryReplayStore {
    /// A store holding at most `max_entries` keys, on the system clock,
    /// with no per-owner share (see [`with_max_share_percent`](Self::with_max_share_percent)).
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
        let owners = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        MemoryReplayStore {
            shards,
            owners,
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            max_entries,
            max_per_owner: usize::MAX,
            clock,
            stats: ReplayStats::default(),
        }
    }

    /// Limits one owner to `percent` of the capacity (at least one entry);
    /// 100 turns the limit off.
    pub fn with_max_share_percent(mut self, percent: u8) -> MemoryReplayStore {
        if percent >= 100 {
            self.max_per_owner = usize::MAX;
            return self;
        }
        let percent = usize::from(percent.max(1));
        self.max_per_owner = (self.max_entries / 100)
            .saturating_mul(percent)
            .saturating_add(self.max_entries % 100 * percent / 100)
            .max(1);
        self
    }

    /// Keys held, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries one owner may hold.
    pub fn max_per_owner(&self) -> usize {
        self.max_per_owner
    }

    fn owner_hash(&self, owner: &str) -> u64 {
        // 0 is reserved for "no owner".
        self.hasher.hash_one(owner).max(1)
    }

    fn owner_shard(&self, owner: u64) -> &Mutex<HashMap<u64, usize>> {
        // Only the owner-count maps are indexed by this; any bits do.
        &self.owners[(owner % SHARDS as u64) as usize]
    }

    /// Counts one more entry for `owner`, unless it holds its share.
    fn take_share(&self, owner: u64) -> bool {
        if owner == NO_OWNER {
            return true;
        }
        let mut counts = lock(self.owner_shard(owner));
        let held = counts.entry(owner).or_insert(0);
        if *held >= self.max_per_owner {
            return false;
        }
        *held += 1;
        true
    }

    fn release_share(&self, owner: u64, n: usize) {
        if owner == NO_OWNER || n == 0 {
            return;
        }
        let mut counts = lock(self.owner_shard(owner));
        if let Some(held) = counts.get_mut(&owner) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                counts.remove(&owner);
            }
        }
    }

    /// The insertion itself, at `now` (unix seconds).
    fn insert_at(
        &self,
        key: [u8; 32],
        owner: u64,
        ttl: Duration,
        now: u64,
    ) -> Result<Admission, ReplayStoreError> {
        use Admission::{Checked, ShareExceeded};
        // Whole seconds, rounded up, plus one: the clock reads whole
        // seconds, so an entry made at second `now` may be up to a second
        // older than `now` says. It is live while `clock < expires`.
        let ttl_secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        let expires = now.saturating_add(ttl_secs).saturating_add(1);
        let entry = Entry { expires, owner };
        // The key is a SHA-256 output: any byte of it picks a shard evenly.
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut outcome = Err(ReplayStoreError::Full);
        for attempt in 0..2 {
            {
                let mut guard = lock(shard);
                self.sweep_if_due(&mut guard, now);
                match guard.entries.get_mut(&key) {
                    Some(old) if old.expires > now => return Ok(Checked(Fresh::Replayed)),
                    Some(old) => {
                        // Expired but not yet reclaimed: reuse its slot.
                        if self.take_share(owner) {
                            self.release_share(old.owner, 1);
                            *old = entry;
                            return Ok(Checked(Fresh::Inserted));
                        }
                        outcome = Ok(ShareExceeded);
                    }
                    None => {
                        if !self.take_share(owner) {
                            outcome = Ok(ShareExceeded);
                        } else if self.reserve_slot() {
                            guard.entries.insert(key, entry);
                            return Ok(Checked(Fresh::Inserted));
                        } else {
                            self.release_share(owner, 1);
                            outcome = Err(ReplayStoreError::Full);
                        }
                    }
                }
            }
            // Full, or the owner's share is taken: expired entries in other
            // shards may still count. Reclaim them (each shard at most once
            // a second, one shard lock at a time, never two) and try again.
            if attempt == 0 {
                self.sweep_all_due(now);
            }
        }
        outcome
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
        let mut released: HashMap<u64, usize> = HashMap::new();
        shard.entries.retain(|_, entry| {
            let live = entry.expires > now;
            if !live && entry.owner != NO_OWNER {
                *released.entry(entry.owner).or_insert(0) += 1;
            }
            live
        });
        let removed = before - shard.entries.len();
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::AcqRel);
        }
        for (owner, n) in released {
            self.release_share(owner, n);
        }
        shard.next_sweep = now.saturating_add(1);
    }

    fn sweep_all_due(&self, now: u64) {
        for shard in self.shards.iter() {
            self.sweep_if_due(&mut lock(shard), now);
        }
    }

    fn record(
        &self,
        key: [u8; 32],
        owner: u64,
        ttl: Duration,
    ) -> Result<Admission, ReplayStoreError> {
        let started = Instant::now();
        let outcome = self.insert_at(key, owner, ttl, self.clock.now());
        match outcome {
            Ok(Admission::Checked(fresh)) => self.stats.record(&Ok(fresh), started.elapsed()),
            Ok(Admission::ShareExceeded) => self.stats.record_share_exceeded(),
            Err(e) => self.stats.record(&Err(e), started.elapsed()),
        }
        outcome
    }
}

/// A poisoned lock still holds a consistent map (no code path panics
/// between changing a map and its counters), so it is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn insert_once(&self, key: [u8; 32], ttl: Duration) -> Result<Fresh, ReplayStoreError> {
        match self.record(key, NO_OWNER, ttl)? {
            Admission::Checked(fresh) => Ok(fresh),
            // Unattributed inserts have no share to exceed.
            Admission::ShareExceeded => Err(ReplayStoreError::Full),
        }
    }

    async fn insert_once_for(
        &self,
        key: [u8; 32],
        owner: &str,
        ttl: Duration,
    ) -> Result<Admission, ReplayStoreError> {
        self.record(key, self.owner_hash(owner), ttl)
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
    use crate::dpop::{check_proof, DpopRules, ProofInput};
    use serde_json::Value;
    use stella_core::identity::Binding;
    use stella_core::ManualClock;

    const TTL: Duration = Duration::from_secs(60);
    const INSERTED: Result<Admission, ReplayStoreError> = Ok(Admission::Checked(Fresh::Inserted));
    const REPLAYED: Result<Admission, ReplayStoreError> = Ok(Admission::Checked(Fresh::Replayed));
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
            access_token_hash: None,
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
                    if store.insert_at(key(9), NO_OWNER, TTL, NOW)
                        == Ok(Admission::Checked(Fresh::Inserted))
                    {
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

    #[tokio::test]
    async fn one_owner_cannot_take_more_than_its_share_and_others_go_on() {
        let (store, clock) = store(100);
        let store = store.with_max_share_percent(10);
        assert_eq!(store.max_per_owner(), 10);
        for n in 0..10 {
            assert_eq!(store.insert_once_for(key(n), "flood", TTL).await, INSERTED);
        }
        assert_eq!(
            store.insert_once_for(key(10), "flood", TTL).await,
            Ok(Admission::ShareExceeded)
        );
        // A replay of the flooder's own proof is still a replay.
        assert_eq!(store.insert_once_for(key(3), "flood", TTL).await, REPLAYED);
        // Everyone else is unaffected.
        for n in 100..150 {
            let owner = format!("caller-{n}");
            assert_eq!(store.insert_once_for(key(n), &owner, TTL).await, INSERTED);
        }
        assert_eq!(store.stats().snapshot().share_exceeded, 1);
        // Once its entries expire, the owner gets its share back.
        clock.advance(61);
        assert_eq!(store.insert_once_for(key(11), "flood", TTL).await, INSERTED);
    }

    #[tokio::test]
    async fn a_refused_insert_does_not_count_against_the_share() {
        let (store, _) = store(4);
        let store = store.with_max_share_percent(50);
        assert_eq!(store.max_per_owner(), 2);
        assert_eq!(store.insert_once_for(key(1), "a", TTL).await, INSERTED);
        assert_eq!(store.insert_once_for(key(2), "b", TTL).await, INSERTED);
        assert_eq!(store.insert_once_for(key(3), "b", TTL).await, INSERTED);
        assert_eq!(store.insert_once_for(key(4), "c", TTL).await, INSERTED);
        // Full: "a" is refused with 503, and the failed insert is not
        // counted, so it still holds only one entry.
        assert_eq!(
            store.insert_once_for(key(5), "a", TTL).await,
            Err(ReplayStoreError::Full)
        );
        assert_eq!(store.insert_once_for(key(1), "a", TTL).await, REPLAYED);
    }

    #[test]
    fn default_capacity_follows_threads_and_window() {
        let window = Duration::from_secs(66);
        assert_eq!(default_max_entries(2, window), 10_000 * 2 * 66 * 2);
        assert_eq!(
            default_max_entries(8, window),
            4 * default_max_entries(2, window)
        );
        assert_eq!(
            default_max_entries(2, Duration::from_secs(132)),
            2 * default_max_entries(2, window)
        );
        assert_eq!(
            default_max_entries(0, window),
            default_max_entries(1, window)
        );
        // A wide proof window on many threads stops at what the
        // configuration accepts.
        assert_eq!(
            default_max_entries(256, Duration::from_secs(3601)),
            MAX_ENTRIES_LIMIT
        );
    }

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// The figure in docs/replay-store.md: resident memory per live entry.
    /// Run with `cargo nextest run --run-ignored only memory_per_entry`.
    #[tokio::test]
    #[ignore]
    async fn memory_per_entry_is_measured() {
        const N: u32 = 2_000_000;
        let before = rss_kib();
        let store = MemoryReplayStore::new(N as usize).with_max_share_percent(10);
        for n in 0..N {
            // Spread like SHA-256 outputs.
            let digest = ring::digest::digest(&ring::digest::SHA256, &n.to_le_bytes());
            let mut k = [0u8; 32];
            k.copy_from_slice(digest.as_ref());
            let owner = format!("jkt-{}", n % 1000);
            let r = store.insert_once_for(k, &owner, TTL).await;
            assert_eq!(r, INSERTED);
        }
        let after = rss_kib();
        let per_entry = (after.saturating_sub(before) * 1024) as f64 / f64::from(N);
        println!(
            "replay store: {N} entries, RSS {before} KiB -> {after} KiB, {per_entry:.1} bytes per entry"
        );
        assert_eq!(store.len(), N as usize);
    }
}
