//! The gateway's side of emergency revocation (docs/design.md §3.3, §3.9):
//! the live list (`stella_authn::revocation::Denylist`, which every
//! snapshot's `Authenticator` checks), its state file, the shared store and
//! the loop that follows it ([`Revocations::follow_store`], run by
//! `reload::RevocationSync`), the audit line of every
//! change, and the sweep of expired entries. It lives beside the snapshots
//! in `Shared`: a reload never changes the list.
//!
//! With a shared store, a change is written to the store first and applied
//! here at once; every other node applies it when the store's notice
//! arrives (within a round trip), or at its next full read. A change the
//! store cannot take is applied here anyway, kept as pending and pushed
//! when the store answers again; the node keeps serving with the list it
//! has, and `stella_gateway_revocation_store_up` says it is cut off.
//!
//! A copy of the shared list is current while the last full read worked
//! and the subscription is open; once not, it ages from the last full read
//! that worked. Past [`Staleness::after`] it is stale
//! (`stella_gateway_revocation_stale`), and under `when_stale: refuse` the
//! list is distrusted (`Denylist::set_distrusted`): every request with a
//! credential is refused until a full read works again. A watchdog judges
//! the age a few times a second, beside the sync loop, so a sync stuck on
//! an unanswering store does not delay it.
//!
//! Audit lines (target `stella_gateway::audit`, level warn so that no
//! usual log level hides them) carry the operator, the kind, the issuer of a
//! `sub`, the SHA-256 of the value, the reason and the expiry; never the
//! value.

use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use stella_authn::redis::Unavailable;
use stella_authn::revocation::{
    Denylist, Entry, Kind, Record, Replaced, RevocationError, RevocationStore, StateFile,
    StateFileError, Upserted,
};

/// The log target of audit lines.
pub const AUDIT: &str = "stella_gateway::audit";

/// How long the sync loop waits before trying an unreachable store again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often the watchdog judges the age of the copy of the shared list.
const STALENESS_CHECK: Duration = Duration::from_millis(200);

/// What a node does with its copy of the shared list once it is old
/// (`gateway.revocation.when_stale`, `stale_after_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staleness {
    /// Refuse every request with a credential while stale (else keep
    /// checking against the copy).
    pub refuse: bool,
    /// How old the copy may get before it is stale.
    pub after: Duration,
}

/// Who asked for a change, for the audit line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// Whether a configured operator token proved it (else the admin
    /// listener has no `gateway.admin.operator_token_file`).
    pub authenticated: bool,
}

/// A change the shared store did not take yet.
enum Pending {
    Put(Entry),
    Remove(Vec<Entry>),
}

/// What this node knows of the shared store, behind one lock: changes
/// and full reads go one at a time.
#[derive(Default)]
struct SyncState {
    /// Changes made here that the store has not taken.
    pending: Vec<Pending>,
    /// The store's epoch at the last full read (`RevocationStore::seed`).
    epoch: Option<String>,
}

/// The shared store and what this node knows of it.
struct Shared {
    store: RevocationStore,
    refresh: Duration,
    /// The last full read worked and the subscription is open.
    up: AtomicBool,
    staleness: Staleness,
    /// When the store was attached: the origin of `last_read_ms`.
    origin: std::time::Instant,
    /// When the last full read worked, in milliseconds after `origin` (at
    /// start: 0, as if the copy had just been read).
    last_read_ms: AtomicU64,
    /// The copy is older than `staleness.after`.
    stale: AtomicBool,
    syncs_ok: AtomicU64,
    syncs_failed: AtomicU64,
    /// The lock also keeps a full read from replacing the list while a
    /// change is being made.
    state: tokio::sync::Mutex<SyncState>,
}

/// What a change did beyond this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// Written to the state file (or there is none).
    pub persisted: bool,
    /// Taken by the shared store: `None` without one.
    pub shared: Option<bool>,
}

/// The revocation list of this process and where it is kept.
pub struct Revocations {
    pub list: Arc<Denylist>,
    file: OnceLock<StateFile>,
    shared: OnceLock<Shared>,
    /// The list version last written to the file; writes go one at a time.
    written: Mutex<u64>,
    write_failures: AtomicU64,
}

impl Default for Revocations {
    fn default() -> Revocations {
        Revocations::new()
    }
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations {
            list: Arc::new(Denylist::new()),
            file: OnceLock::new(),
            shared: OnceLock::new(),
            written: Mutex::new(0),
            write_failures: AtomicU64::new(0),
        }
    }

    /// At start: keep the list in `file` from now on, and load what it
    /// holds (expired entries are dropped, and the file rewritten without
    /// them).
    pub fn attach_file(&self, file: StateFile, now: u64) -> Result<Replaced, StateFileError> {
        let entries = file.load()?;
        let loaded = self.list.replace_all(entries, now);
        let _ = self.file.set(file);
        if loaded.expired + loaded.invalid > 0 {
            self.persist();
        }
        Ok(loaded)
    }

    /// At start: share the list through `store` ([`Revocations::follow_store`]
    /// follows it; until its first read, the node serves what its file held).
    pub fn attach_store(&self, store: RevocationStore, refresh: Duration, staleness: Staleness) {
        let _ = self.shared.set(Shared {
            store,
            refresh,
            up: AtomicBool::new(false),
            staleness,
            origin: std::time::Instant::now(),
            last_read_ms: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            syncs_ok: AtomicU64::new(0),
            syncs_failed: AtomicU64::new(0),
            state: tokio::sync::Mutex::new(SyncState::default()),
        });
    }

    /// Whether the list is kept in a file.
    pub fn persistent(&self) -> bool {
        self.file.get().is_some()
    }

    /// With a shared store: whether it answers, and the full reads that
    /// worked and failed.
    pub fn store_status(&self) -> Option<(bool, u64, u64)> {
        self.shared.get().map(|s| {
            (
                s.up.load(Ordering::Relaxed),
                s.syncs_ok.load(Ordering::Relaxed),
                s.syncs_failed.load(Ordering::Relaxed),
            )
        })
    }

    /// With a shared store: how old this node's copy of the list is (zero
    /// while current), and whether that is past the bound.
    pub fn store_age(&self) -> Option<(Duration, bool)> {
        self.shared
            .get()
            .map(|s| (s.age(), s.stale.load(Ordering::Relaxed)))
    }

    /// Failed writes of the state file since start.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// Writes the list to its file, if it has one and the file is behind.
    /// `false`: the write failed (logged and counted); the list in memory
    /// is unchanged and serves on.
    pub fn persist(&self) -> bool {
        let Some(file) = self.file.get() else {
            return true;
        };
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let version = self.list.version();
        if *written == version && version != 0 {
            return true;
        }
        match file.save(&self.list.entries()) {
            Ok(()) => {
                *written = version;
                true
            }
            Err(e) => {
                self.write_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    file = %file.path().display(),
                    error = %e.kind(),
                    "revocation list not written to its state file; it holds in memory until the next change or restart"
                );
                false
            }
        }
    }

    /// Adds (or replaces) an entry: in the shared store first (if any),
    /// then here; logs the audit line and persists. A store that cannot
    /// take it does not stop it here: it is pushed when the store is back.
    pub async fn revoke(
        &self,
        entry: Entry,
        operator: &Operator,
        now: u64,
    ) -> Result<(Upserted, Arc<Record>, Reach), RevocationError> {
        entry.check(now)?;
        let shared = self.shared.get();
        let mut state = match shared {
            Some(s) => Some(s.state.lock().await),
            None => None,
        };
        let stored = match shared {
            Some(s) => Some(s.store.put(&entry).await),
            None => None,
        };
        let (outcome, record) = self.list.upsert(entry, now)?;
        if let (Some(state), Some(Err(why))) = (state.as_mut(), &stored) {
            state.pending.push(Pending::Put(record.entry().clone()));
            store_failed(*why, "revocation not written to the shared store; applied on this node, pushed when the store answers");
        }
        drop(state);
        let audit = record.entry();
        tracing::warn!(
            target: AUDIT,
            action = "revoke",
            operator = %operator.name,
            authenticated = operator.authenticated,
            kind = audit.kind.as_str(),
            issuer = audit.issuer.as_deref().unwrap_or(""),
            value_sha256 = record.value_sha256(),
            reason = %audit.reason,
            expires_at = audit.expires_at,
            replaced = outcome == Upserted::Replaced,
            shared = stored.as_ref().map(Result::is_ok),
            "identity revoked"
        );
        let reach = Reach {
            persisted: self.persist(),
            shared: stored.map(|r| r.is_ok()),
        };
        Ok((outcome, record, reach))
    }

    /// Removes the entries `selector` names, here and in the shared store;
    /// logs an audit line for each and persists.
    pub async fn unrevoke(
        &self,
        kind: Kind,
        selector: &str,
        issuer: Option<&str>,
        operator: &Operator,
    ) -> Result<(Vec<Arc<Record>>, Reach), RevocationError> {
        let shared = self.shared.get();
        let mut state = match shared {
            Some(s) => Some(s.state.lock().await),
            None => None,
        };
        let removed = self.list.remove(kind, selector, issuer)?;
        let entries: Vec<Entry> = removed.iter().map(|r| r.entry().clone()).collect();
        let stored = match shared {
            Some(s) if !entries.is_empty() => Some(s.store.remove(&entries).await),
            Some(_) => Some(Ok(())),
            None => None,
        };
        if let (Some(state), Some(Err(why))) = (state.as_mut(), &stored) {
            state.pending.push(Pending::Remove(entries));
            store_failed(*why, "revocation not removed from the shared store; removed on this node, pushed when the store answers");
        }
        drop(state);
        for record in &removed {
            audit_removal(record, "unrevoke", &operator.name, operator.authenticated);
        }
        let reach = Reach {
            persisted: removed.is_empty() || self.persist(),
            shared: stored.map(|r| r.is_ok()),
        };
        Ok((removed, reach))
    }

    /// Drops expired entries (an audit line each), persists, and deletes
    /// them from the shared store (every node does; it is idempotent).
    pub async fn sweep(&self, now: u64) {
        let removed = self.list.sweep(now);
        if removed.is_empty() {
            return;
        }
        for record in &removed {
            audit_removal(record, "expire", "gateway", true);
        }
        self.persist();
        if let Some(shared) = self.shared.get() {
            let entries: Vec<Entry> = removed.iter().map(|r| r.entry().clone()).collect();
            // A failure is harmless: readers leave expired entries out.
            let _ = shared.store.forget_expired(&entries).await;
        }
    }

    /// One full read of the shared store: first the changes it has not
    /// taken, then the whole list in place of this node's. A store that
    /// lost the list (no epoch, or another one than last time) gets this
    /// node's entries back first. Any failure keeps the list as it is.
    async fn sync(&self, shared: &Shared, now: u64) -> Result<(), Unavailable> {
        let mut state = shared.state.lock().await;
        while let Some(change) = state.pending.first() {
            match change {
                Pending::Put(entry) => shared.store.put(entry).await?,
                Pending::Remove(entries) => shared.store.remove(entries).await?,
            }
            state.pending.remove(0);
        }
        let mut loaded = shared.store.load().await?;
        let lost = match (&loaded.epoch, &state.epoch) {
            (None, _) => true,
            (Some(seen), Some(known)) => seen != known,
            (Some(_), None) => false,
        };
        if lost {
            let entries = self.list.entries();
            tracing::warn!(
                entries = entries.len(),
                "the shared revocation store lost the list or is a new one; writing this node's entries back"
            );
            shared.store.seed(&entries, &new_epoch()).await?;
            loaded = shared.store.load().await?;
        }
        state.epoch = loaded.epoch.clone();
        let outcome = self.list.replace_all(loaded.entries, now);
        drop(state);
        if outcome.changed {
            tracing::info!(
                entries = outcome.kept,
                expired = outcome.expired,
                invalid = outcome.invalid + loaded.unreadable,
                "revocation list updated from the shared store"
            );
            self.persist();
        }
        Ok(())
    }

    /// [`Revocations::sync`], counted, with the store's health.
    async fn sync_counted(&self, shared: &Shared, now: u64) -> bool {
        match self.sync(shared, now).await {
            Ok(()) => {
                shared.syncs_ok.fetch_add(1, Ordering::Relaxed);
                shared
                    .last_read_ms
                    .store(shared.elapsed_ms(), Ordering::Relaxed);
                if !shared.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        entries = self.list.len(),
                        "revocation store reachable; list in sync"
                    );
                }
                // Trusted again at once, not at the watchdog's next look.
                self.judge_staleness(shared);
                true
            }
            Err(why) => {
                shared.syncs_failed.fetch_add(1, Ordering::Relaxed);
                self.mark_down(shared, why);
                false
            }
        }
    }

    /// Marks the copy stale or not by its age; under `when_stale: refuse`,
    /// distrusts the list while stale. Logs each change.
    fn judge_staleness(&self, shared: &Shared) {
        let age = shared.age();
        let stale = age >= shared.staleness.after;
        if shared.staleness.refuse {
            self.list.set_distrusted(stale);
        }
        if shared.stale.swap(stale, Ordering::Relaxed) == stale {
            return;
        }
        let refuse = shared.staleness.refuse;
        if stale {
            tracing::error!(
                age_seconds = age.as_secs(),
                stale_after_seconds = shared.staleness.after.as_secs(),
                when_stale = if refuse { "refuse" } else { "keep_last_copy" },
                entries = self.list.len(),
                "{}",
                if refuse {
                    "revocation list stale: the shared store has not been read for too long; refusing every request with a credential (503) until it answers"
                } else {
                    "revocation list stale: the shared store has not been read for too long; checking requests against the last copy"
                }
            );
        } else {
            tracing::info!(entries = self.list.len(), "revocation list current again");
        }
    }

    fn mark_down(&self, shared: &Shared, why: Unavailable) {
        if shared.up.swap(false, Ordering::Relaxed)
            || shared.syncs_failed.load(Ordering::Relaxed) <= 1
        {
            tracing::error!(
                error = %why,
                code = why.code(),
                entries = self.list.len(),
                "revocation store unreachable; this node keeps the list it has until it can read the store again"
            );
        }
    }
}

impl Shared {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How old the copy is: zero while current (the last full read worked
    /// and the subscription is open), else the time since the last full
    /// read that worked.
    fn age(&self) -> Duration {
        if self.up.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let read = self.last_read_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.elapsed_ms().saturating_sub(read))
    }
}

/// A fresh epoch for the shared store: 16 random bytes, hex.
fn new_epoch() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // Only the uniqueness matters; a failed generator falls back to time.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn store_failed(why: Unavailable, message: &'static str) {
    tracing::error!(target: AUDIT, error = %why, code = why.code(), "{message}");
}

fn audit_removal(record: &Record, action: &'static str, operator: &str, authenticated: bool) {
    let entry = record.entry();
    tracing::warn!(
        target: AUDIT,
        action,
        operator,
        authenticated,
        kind = entry.kind.as_str(),
        issuer = entry.issuer.as_deref().unwrap_or(""),
        value_sha256 = record.value_sha256(),
        reason = %entry.reason,
        expires_at = entry.expires_at,
        hits = record.hits(),
        "revocation removed"
    );
}

impl Revocations {
    /// Follows the shared store until `shutdown`: a subscription to its
    /// change notices, a full read on each notice, on every (re)connection
    /// and every refresh interval. A lost subscription or a failed read
    /// marks the store down and starts over after [`RETRY_AFTER`]; the list
    /// stays as it was meanwhile. Returns at once without a store.
    pub async fn follow_store(&self, clock: &dyn stella_core::Clock, shutdown: &mut ShutdownWatch) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let watchdog = async {
            let mut tick = tokio::time::interval(STALENESS_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.judge_staleness(shared);
            }
        };
        tokio::select! {
            _ = self.follow(shared, clock, shutdown) => {}
            _ = watchdog => {}
        }
    }

    async fn follow(
        &self,
        shared: &Shared,
        clock: &dyn stella_core::Clock,
        shutdown: &mut ShutdownWatch,
    ) {
        loop {
            match shared.store.subscribe().await {
                Err(why) => {
                    shared.syncs_failed.fetch_add(1, Ordering::Relaxed);
                    self.mark_down(shared, why);
                }
                Ok(subscription) => {
                    let mut notices = subscription.into_on_message();
                    // Subscribed first, then read: no change falls between.
                    let mut healthy = self.sync_counted(shared, clock.now()).await;
                    let mut tick = tokio::time::interval(shared.refresh);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    while healthy {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            notice = notices.next() => match notice {
                                Some(_) => {
                                    healthy = self.sync_counted(shared, clock.now()).await;
                                }
                                None => {
                                    shared.syncs_failed.fetch_add(1, Ordering::Relaxed);
                                    self.mark_down(shared, Unavailable::Io);
                                    healthy = false;
                                }
                            },
                            _ = tick.tick() => {
                                healthy = self.sync_counted(shared, clock.now()).await;
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn entry(value: &str) -> Entry {
        Entry {
            kind: Kind::ClientId,
            issuer: None,
            value: value.into(),
            reason: "leaked secret".into(),
            operator: "alice".into(),
            created_at: NOW,
            expires_at: NOW + 60,
        }
    }

    fn operator() -> Operator {
        Operator {
            name: "alice".into(),
            authenticated: true,
        }
    }

    #[tokio::test]
    async fn changes_are_written_to_the_state_file_and_read_back_at_start() {
        let dir = std::env::temp_dir().join(format!("stella-revocations-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("revocations.json");
        let _ = std::fs::remove_file(&path);
        let first = Revocations::new();
        first.attach_file(StateFile::new(&path), NOW).unwrap();
        let (outcome, record, reach) = first
            .revoke(entry("svc-a"), &operator(), NOW)
            .await
            .unwrap();
        assert_eq!(outcome, Upserted::Added);
        assert_eq!(
            reach,
            Reach {
                persisted: true,
                shared: None
            }
        );
        assert_eq!(record.kind(), Kind::ClientId);
        first
            .revoke(entry("svc-b"), &operator(), NOW)
            .await
            .unwrap();
        first
            .unrevoke(Kind::ClientId, "svc-b", None, &operator())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("svc-a") && !text.contains("svc-b"), "{text}");

        // A restart: the entry is back; after its expiry it is dropped.
        let second = Revocations::new();
        let loaded = second.attach_file(StateFile::new(&path), NOW + 1).unwrap();
        assert_eq!(loaded.kept, 1);
        let third = Revocations::new();
        let loaded = third.attach_file(StateFile::new(&path), NOW + 60).unwrap();
        assert_eq!((loaded.kept, loaded.expired), (0, 1));
        assert!(!std::fs::read_to_string(&path).unwrap().contains("svc-a"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_store_that_cannot_take_a_change_does_not_stop_it_here() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let connection = stella_authn::redis::RedisConnection::with_tls(
            &format!("redis://127.0.0.1:{port}"),
            &stella_authn::replay::RedisTls::default(),
        )
        .unwrap();
        let r = Revocations::new();
        r.attach_store(
            RevocationStore::new(connection),
            Duration::from_secs(30),
            Staleness {
                refuse: true,
                after: Duration::from_secs(3600),
            },
        );
        let (_, _, reach) = r.revoke(entry("svc"), &operator(), NOW).await.unwrap();
        assert_eq!(reach.shared, Some(false));
        assert!(!r.list.is_empty());
        // A full read fails: the list stays, the change stays pending.
        let shared = r.shared.get().unwrap();
        assert!(!r.sync_counted(shared, NOW).await);
        assert_eq!(r.store_status(), Some((false, 0, 1)));
        assert_eq!(r.list.len(), 1);
        assert_eq!(shared.state.lock().await.pending.len(), 1);
        // Within the bound: still trusted.
        assert!(!r.list.is_distrusted());
        assert_eq!(r.store_age().map(|(_, stale)| stale), Some(false));
    }

    #[tokio::test]
    async fn a_copy_past_its_bound_is_distrusted_under_refuse_only() {
        for refuse in [true, false] {
            let r = Revocations::new();
            let connection = stella_authn::redis::RedisConnection::with_tls(
                "redis://127.0.0.1:1",
                &stella_authn::replay::RedisTls::default(),
            )
            .unwrap();
            r.attach_store(
                RevocationStore::new(connection),
                Duration::from_secs(30),
                Staleness {
                    refuse,
                    after: Duration::from_millis(50),
                },
            );
            let shared = r.shared.get().unwrap();
            r.judge_staleness(shared);
            assert!(!r.list.is_distrusted());
            std::thread::sleep(Duration::from_millis(60));
            r.judge_staleness(shared);
            assert_eq!(r.store_age().map(|(_, stale)| stale), Some(true));
            assert_eq!(r.list.is_distrusted(), refuse);
            assert_eq!(r.list.is_quiet(), !refuse, "an empty list");
            // A read that works (as if): current again at once.
            shared.up.store(true, Ordering::Relaxed);
            r.judge_staleness(shared);
            assert!(!r.list.is_distrusted());
            assert_eq!(r.store_age(), Some((Duration::ZERO, false)));
        }
    }

    #[tokio::test]
    async fn a_list_without_a_file_works_in_memory() {
        let r = Revocations::new();
        assert!(!r.persistent());
        let (_, _, reach) = r.revoke(entry("svc"), &operator(), NOW).await.unwrap();
        assert!(reach.persisted);
        r.sweep(NOW + 60).await;
        assert!(r.list.is_empty());
    }
}
