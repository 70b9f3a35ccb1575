//! One cached answer with bounded staleness: what the Authority said, kept
//! fresh for a while and, when the Authority cannot answer, served a bounded
//! time past that. Token introspection and effective claims both cache
//! this way (each with its own cache, per Authority).
//!
//! The cache decides nothing about what an answer means: callers store
//! values with the time they stay fresh ([`StaleCache::insert`]), ask for
//! an entry ([`StaleCache::get`]), and, when asking the Authority failed,
//! whether an old entry may still serve ([`Cached::serves_stale`]). Time
//! comes from the caller (`now`), so the rules are tested with a frozen
//! clock.

pub mod file;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// An entry: the value, until when it is fresh, and whether a background
/// refresh of it runs.
#[derive(Debug)]
pub struct Cached<V> {
    pub value: V,
    /// Served without asking the Authority again until then (unix seconds).
    pub fresh_until: u64,
    refreshing: Arc<AtomicBool>,
}

impl<V: Clone> Clone for Cached<V> {
    fn clone(&self) -> Self {
        Cached {
            value: self.value.clone(),
            fresh_until: self.fresh_until,
            refreshing: self.refreshing.clone(),
        }
    }
}

impl<V> Cached<V> {
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }

    /// Whether this entry may still serve at `now`, the Authority not
    /// answering: up to `max_stale` seconds past its freshness.
    pub fn serves_stale(&self, now: u64, max_stale: u64) -> bool {
        now < self.fresh_until.saturating_add(max_stale)
    }

    /// Whether a fresh entry is due for a refresh ahead of its end, at most
    /// `ahead` seconds before it.
    pub fn due_for_refresh(&self, now: u64, ahead: u64) -> bool {
        now.saturating_add(ahead) >= self.fresh_until
    }

    /// Claims this entry's one background refresh: `Some` for the first
    /// caller while none runs; the refresh is over when the guard drops.
    pub fn claim_refresh(&self) -> Option<RefreshGuard> {
        (!self.refreshing.swap(true, Ordering::AcqRel)).then(|| RefreshGuard {
            flag: self.refreshing.clone(),
        })
    }
}

/// Held by the one background refresh of an entry; see
/// [`Cached::claim_refresh`].
#[derive(Debug)]
pub struct RefreshGuard {
    flag: Arc<AtomicBool>,
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
    }
}

/// Answers by key, bounded in number (the least used go first), with when
/// the Authority last answered.
pub struct StaleCache<K, V> {
    entries: quick_cache::sync::Cache<K, Cached<V>>,
    /// Unix seconds of the last answer from the Authority (0: none yet).
    last_answer: AtomicU64,
    /// Bumped by every insert and removal: whether there is anything new
    /// to persist.
    changes: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> std::fmt::Debug for StaleCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaleCache")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> StaleCache<K, V> {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> StaleCache<K, V> {
        StaleCache {
            entries: quick_cache::sync::Cache::new(capacity),
            last_answer: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// The entry for `key`, fresh or not.
    pub fn get(&self, key: &K) -> Option<Cached<V>> {
        self.entries.get(key)
    }

    /// Stores `value`, fresh until `fresh_until`.
    pub fn insert(&self, key: K, value: V, fresh_until: u64) {
        self.entries.insert(
            key,
            Cached {
                value,
                fresh_until,
                refreshing: Arc::new(AtomicBool::new(false)),
            },
        );
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn remove(&self, key: &K) {
        self.entries.remove(key);
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Every entry with its value and freshness, for persisting.
    pub fn entries(&self) -> Vec<(K, V, u64)> {
        self.entries
            .iter()
            .map(|(k, c)| (k, c.value, c.fresh_until))
            .collect()
    }

    /// Inserts and removals so far (compare two readings to know whether
    /// anything changed in between).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The Authority answered at `now` (whatever it said).
    pub fn answered(&self, now: u64) {
        self.last_answer.store(now.max(1), Ordering::Relaxed);
    }

    /// Seconds since the Authority last answered; `None` before it did.
    pub fn staleness(&self, now: u64) -> Option<u64> {
        match self.last_answer.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now.saturating_sub(at)),
        }
    }
}

/// One call per key at a time: concurrent requests for the same key (the
/// same opaque token, the same subject and client) share the first one's
/// call and its answer instead of each asking the Authority. The entry is
/// removed when the call ends, so the next miss (after the cache entry it
/// filled expires) calls again. A leader dropped mid-call (its request was
/// cancelled) hands the call to the next waiter.
pub struct Flights<K, T> {
    calls: std::sync::Mutex<HashMap<K, Arc<tokio::sync::OnceCell<T>>>>,
}

impl<K: Eq + Hash + Clone, T: Clone> Default for Flights<K, T> {
    fn default() -> Self {
        Flights {
            calls: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Flights<K, T> {
    /// The answer of `call` for `key`: run here, or awaited from a call
    /// already running for the same key.
    pub async fn run<F, Fut>(&self, key: &K, call: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let cell = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.entry(key.clone()).or_default().clone()
        };
        let answer = cell.get_or_init(call).await.clone();
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            calls.remove(key);
        }
        answer
    }

    /// Calls running now.
    pub fn running(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_fresh_until_its_time_then_serves_stale_for_max_stale_only() {
        let cache: StaleCache<&str, u32> = StaleCache::new(10);
        cache.insert("a", 7, 100);
        let entry = cache.get(&"a").unwrap();
        assert_eq!(entry.value, 7);
        assert!(entry.is_fresh(99));
        assert!(!entry.is_fresh(100));
        assert!(entry.serves_stale(129, 30));
        assert!(!entry.serves_stale(130, 30));
        assert!(!entry.serves_stale(100, 0));
        // Saturating: a far future freshness plus max-stale does not wrap.
        cache.insert("b", 1, u64::MAX);
        assert!(cache.get(&"b").unwrap().serves_stale(u64::MAX - 1, 10));
        cache.remove(&"a");
        assert!(cache.get(&"a").is_none());
    }

    #[test]
    fn only_one_refresh_runs_per_entry_and_the_next_may_start_once_it_ends() {
        let cache: StaleCache<u8, u8> = StaleCache::new(10);
        cache.insert(1, 1, 100);
        let entry = cache.get(&1).unwrap();
        assert!(entry.due_for_refresh(40, 60));
        assert!(!entry.due_for_refresh(39, 60));
        let guard = entry.claim_refresh().expect("first claim");
        // Another request reading the same entry finds the refresh running.
        assert!(cache.get(&1).unwrap().claim_refresh().is_none());
        drop(guard);
        assert!(cache.get(&1).unwrap().claim_refresh().is_some());
    }

    #[test]
    fn staleness_counts_from_the_last_answer() {
        let cache: StaleCache<u8, u8> = StaleCache::new(1);
        assert_eq!(cache.staleness(50), None);
        cache.answered(40);
        assert_eq!(cache.staleness(50), Some(10));
        assert_eq!(cache.staleness(30), Some(0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_key_make_one_call_and_share_its_answer() {
        let flights: Arc<Flights<&'static str, u32>> = Arc::new(Flights::default());
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (flights, calls) = (flights.clone(), calls.clone());
            let key = if i % 10 == 9 { "other" } else { "token" };
            tasks.push(tokio::spawn(async move {
                flights
                    .run(&key, || async {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        n
                    })
                    .await
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one call per key");
        answers.sort();
        answers.dedup();
        assert_eq!(answers.len(), 2, "every caller of a key got its one answer");
        assert_eq!(flights.running(), 0, "nothing left behind");
        // The next miss calls again.
        let again = flights.run(&"token", || async { 99 }).await;
        assert_eq!(again, 99);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_the_call_to_the_next_caller() {
        let flights: Arc<Flights<u8, u8>> = Arc::new(Flights::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(&1, || async {
                        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                        1
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        leader.abort();
        let _ = leader.await;
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            flights.run(&1, || async { 2 }),
        )
        .await
        .expect("not stuck behind the cancelled call");
        assert_eq!(answer, 2);
    }
}
