//! The Authority's signing keys, as token verification sees them.
//!
//! A [`KeySet`] is parsed from a JWKS document (pure) and published in an
//! immutable snapshot that readers clone an `Arc` of; a refresh swaps the
//! snapshot whole, so a reader never sees half a key set.
//!
//! Rules (docs/design.md §3.7):
//! - keys that do not parse as public keys ([`PublicJwk::from_json`]), whose
//!   `use` is not `sig`, or that allow none of the accepted algorithms are
//!   skipped and counted, never fatal; a set with no usable key is a failed
//!   refresh;
//! - `kid` selects the key. Several keys may share a `kid` (RFC 7517 4.5
//!   allows it for keys of different types); the one allowing the token's
//!   `alg` is chosen. A key without `kid` can only be selected by a token
//!   without `kid`, and a token without `kid` only when the whole set is one
//!   key: with more, choosing would be guessing;
//! - freshness: keys are fresh for `jwks_refresh` after the last successful
//!   fetch and then served stale for at most `jwks_max_stale` more (so
//!   `max_stale: 0` means "no stale keys"). Past that, or before the first
//!   load, lookups report [`KeyLookupError::Unavailable`] (503), not an
//!   invalid token (401). A failed refresh keeps the old keys;
//! - an unknown `kid` triggers at most one on-demand JWKS fetch per
//!   `jwks_cooldown`, shared by all concurrent callers (single flight);
//!   fetches never overlap, scheduled or not. Within the cooldown an unknown
//!   kid is [`KeyLookupError::UnknownKid`] (401) if the last fetch worked and
//!   `Unavailable` if it failed: "not there" and "could not look" differ,
//!   and that answer is given at once, without taking any lock;
//! - a request with an unknown `kid` never queues behind a fetch for longer
//!   than [`UNKNOWN_KID_WAIT`] (or the HTTP timeout, if shorter): while a
//!   fetch (scheduled or on demand) is in flight, it waits that long for the
//!   fetch to finish and then answers [`Unavailable::Busy`] (503
//!   `temporarily_unavailable`). The on-demand fetch runs on its own task,
//!   so the request that started it waits no longer than the others.
//!   Requests whose `kid` is known never wait.
//! - last-known-good: with a state folder configured, each successful
//!   discovery and JWKS fetch is persisted ([`super::lkg`]), and before the
//!   first fetch the persisted copies are loaded, checked exactly as
//!   fetched ones. Loaded keys carry their original fetch time, so the
//!   staleness rules above count from the fetch, not from the restart.

use super::discovery::{discover_document, Discovery};
use super::http::HttpFetcher;
use super::lkg::{Ignored, LkgStore, What};
use super::{AuthorityError, Document};
use crate::settings::AuthorityConfig;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use stella_core::Clock;
use stella_jose::{JsonObject, JwsAlg, VerifyingKey};

/// The longest wait between retries after failed refreshes.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How long a request with an unknown `kid` waits for a JWKS fetch in
/// flight before it is answered 503.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_millis(500);

/// One published key set and when it was fetched.
#[derive(Debug, Default)]
struct Snapshot {
    keys: KeySet,
    /// Unix seconds of the successful fetch; `None` before the first.
    fetched_at: Option<u64>,
}

impl Snapshot {
    fn select(
        &self,
        kid: Option<&str>,
        alg: JwsAlg,
        now: u64,
        max_age: u64,
    ) -> Result<Selection, KeyLookupError> {
        let Some(fetched_at) = self.fetched_at else {
            return Err(KeyLookupError::Unavailable(Unavailable::NeverLoaded));
        };
        let age = now.saturating_sub(fetched_at);
        if age > max_age {
            return Err(KeyLookupError::Unavailable(Unavailable::Stale {
                age,
                max_age,
            }));
        }
        Ok(self.keys.select(kid, alg))
    }
}

/// On-demand refetch bookkeeping, read without any lock so that requests
/// within the cooldown are answered at once.
#[derive(Debug, Default)]
struct OnDemand {
    /// Unix seconds of the last on-demand attempt, plus one (0: none yet).
    last_attempt: AtomicU64,
    last_failed: AtomicBool,
    /// A fetch (scheduled or on demand) holds the fetch gate.
    fetching: AtomicBool,
}

/// The cooldown of on-demand fetches, as a pure decision: with the last
/// attempt at `last` (unix seconds; `None`: never), whether a fetch may start
/// at `now`. At most one per `cooldown` seconds; a clock that went back
/// counts as within the cooldown.
pub(crate) fn cooldown_over(last: Option<u64>, now: u64, cooldown: u64) -> bool {
    match last {
        None => true,
        Some(at) => now >= at.saturating_add(cooldown),
    }
}

impl OnDemand {
    /// Claims the one on-demand fetch of this cooldown at `now`: `true` for
    /// the one caller that may fetch, `false` for every other (within the
    /// cooldown, or another caller claimed it first). Lock-free, so
    /// requests within the cooldown are answered at once.
    fn try_claim(&self, now: u64, cooldown: u64) -> bool {
        let last = self.last_attempt.load(Ordering::Acquire);
        cooldown_over(last.checked_sub(1), now, cooldown)
            && self
                .last_attempt
                .compare_exchange(
                    last,
                    now.saturating_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// The answer for an unknown kid when no fetch is due.
    fn answer(&self) -> KeyLookupError {
        if self.last_failed.load(Ordering::Acquire) {
            KeyLookupError::Unavailable(Unavailable::RefetchFailed)
        } else {
            KeyLookupError::UnknownKid
        }
    }
}

/// Marks a fetch in flight for as long as it lives.
struct Fetching<'a>(&'a AtomicBool);

impl<'a> Fetching<'a> {
    fn start(flag: &'a AtomicBool) -> Fetching<'a> {
        flag.store(true, Ordering::Release);
        Fetching(flag)
    }
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Counters for the metrics module; monotonically increasing.
#[derive(Debug, Default)]
struct Counters {
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    unknown_kid_refetches: AtomicU64,
    unknown_kid_busy: AtomicU64,
    /// Persisted documents loaded at start: [discovery, jwks] x
    /// [loaded, ignored].
    lkg_loads: [[AtomicU64; 2]; 2],
    lkg_write_failures: AtomicU64,
    /// Unix seconds of the discovery document in use (fetched or loaded);
    /// 0: none yet.
    discovery_fetched_at: AtomicU64,
}

/// The persisted last-known-good state of one cache.
#[derive(Debug)]
struct Persisted {
    store: LkgStore,
    /// Set once the persisted documents have been read (at most once).
    loaded: AtomicBool,
    /// In a streak of failed writes: warn once per streak.
    failing: AtomicBool,
}

/// The JWKS of one Authority, kept fresh by [`JwksCache::run_refresh_loop`]
/// and refetched on unknown `kid`.
pub struct JwksCache {
    issuer: String,
    require_https: bool,
    /// Whether the key set's url comes from the issuer's metadata
    /// (`false`: it was configured, [`JwksCache::with_jwks_uri`]).
    discover: bool,
    fetcher: HttpFetcher,
    clock: Arc<dyn Clock>,
    refresh_every: Duration,
    cooldown: u64,
    max_age: u64,
    snapshot: RwLock<Arc<Snapshot>>,
    discovery: RwLock<Option<Arc<Discovery>>>,
    /// Held for every fetch: fetches never overlap. Callers with an
    /// unknown kid wait here (at most `unknown_kid_wait`) for a fetch in
    /// flight.
    fetch_gate: Arc<tokio::sync::Mutex<()>>,
    on_demand: OnDemand,
    unknown_kid_wait: Duration,
    counters: Counters,
    persisted: Option<Persisted>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("refresh_every", &self.refresh_every)
            .field("cooldown", &self.cooldown)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache for the Authority in `config`, empty until the first
    /// [`refresh`](Self::refresh). Fails only if the issuer is not a usable
    /// url or TLS cannot be set up.
    pub fn new(
        config: &AuthorityConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<JwksCache, AuthorityError> {
        super::discovery::check_url("issuer", &config.issuer, config.require_https_metadata)
            .map_err(|_| AuthorityError::BadIssuer)?;
        let fetcher = HttpFetcher::with_roots(
            config.http_timeout,
            !config.require_https_metadata,
            crate::http::authority_roots(config.ca.as_ref()),
        )
        .map_err(|source| AuthorityError::Fetch {
            document: Document::Discovery,
            source,
        })?;
        let refresh_every = config.jwks_refresh;
        Ok(JwksCache {
            issuer: config.issuer.clone(),
            require_https: config.require_https_metadata,
            discover: true,
            fetcher,
            clock,
            refresh_every,
            cooldown: config.jwks_cooldown.as_secs(),
            max_age: refresh_every
                .as_secs()
                .saturating_add(config.jwks_max_stale.as_secs()),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            discovery: RwLock::new(None),
            fetch_gate: Arc::new(tokio::sync::Mutex::new(())),
            on_demand: OnDemand::default(),
            unknown_kid_wait: UNKNOWN_KID_WAIT.min(config.http_timeout),
            counters: Counters::default(),
            persisted: config.state_dir.as_ref().map(|dir| Persisted {
                store: LkgStore::new(dir, &config.issuer),
                loaded: AtomicBool::new(false),
                failing: AtomicBool::new(false),
            }),
        })
    }

    /// A cache of the keys at `jwks_uri`, fetched without discovery: the
    /// keys of a Shared Signals transmitter, whose metadata is not an
    /// OpenID provider's. Every other rule (refresh, unknown `kid`,
    /// staleness, last known good with a `state_dir`) is the same.
    pub fn with_jwks_uri(
        config: &AuthorityConfig,
        jwks_uri: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<JwksCache, AuthorityError> {
        super::discovery::check_url("jwks_uri", jwks_uri, config.require_https_metadata)?;
        let mut cache = JwksCache::new(config, clock)?;
        cache.discover = false;
        *cache
            .discovery
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(Discovery::fixed(&config.issuer, jwks_uri)));
        Ok(cache)
    }

    /// Runs discovery, then fetches the JWKS, and publishes the new keys.
    /// On failure the previous keys stay (until they are too old).
    pub async fn refresh(&self) -> Result<(), AuthorityError> {
        let _gate = self.fetch_gate.lock().await;
        let _fetching = Fetching::start(&self.on_demand.fetching);
        self.fetch_and_publish(true).await
    }

    /// Refreshes now, then every `jwks_refresh`; after a failure it retries
    /// sooner (1 s, 2 s, 4 s ... at most a minute, never later than the
    /// regular interval). Runs until the task is dropped or aborted.
    pub async fn run_refresh_loop(self: Arc<Self>) {
        self.load_persisted();
        let mut failures: u32 = 0;
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    failures = 0;
                    self.refresh_every
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    retry_delay(failures, self.refresh_every)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The key for a token whose header has `kid` and `alg`. See the module
    /// documentation for the refetch and staleness rules.
    pub async fn key_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: JwsAlg,
    ) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        match self.try_select(kid, alg) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e @ KeyLookupError::Unavailable(Unavailable::Stale { .. })) => {
                self.refetch_stale();
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        let od = &self.on_demand;
        // Claim the on-demand fetch; only one caller per cooldown wins.
        if !od.try_claim(self.clock.now(), self.cooldown) {
            if !od.fetching.load(Ordering::Acquire) {
                return Err(od.answer());
            }
            // A fetch is in flight: it may bring this kid. Wait for it, a
            // little.
            drop(self.wait_for_gate().await?);
            return match self.try_select(kid, alg)? {
                Some(found) => Ok(found),
                None => Err(od.answer()),
            };
        }
        let gate =
            tokio::time::timeout(self.unknown_kid_wait, self.fetch_gate.clone().lock_owned())
                .await
                .map_err(|_| self.busy())?;
        // A scheduled refresh may have brought the kid while this waited.
        if let Some(found) = self.try_select(kid, alg)? {
            return Ok(found);
        }
        self.counters
            .unknown_kid_refetches
            .fetch_add(1, Ordering::Relaxed);
        od.fetching.store(true, Ordering::Release);
        // The fetch runs on its own task, holding the gate, so that no
        // request (this one included) waits for it longer than the budget;
        // the keys it brings serve every later request.
        let this = self.clone();
        // The request's span, if traced: the fetch is its child.
        let trace = stella_core::trace::current();
        tokio::spawn(async move {
            let _gate = gate;
            let _fetching = Fetching(&this.on_demand.fetching);
            // Discovery is reused: a token's unknown kid is no reason to
            // re-read metadata (the scheduled refresh does).
            let fetched =
                stella_core::trace::in_child_of(trace, "jwks_fetch", this.fetch_and_publish(false))
                    .await;
            this.on_demand
                .last_failed
                .store(fetched.is_err(), Ordering::Release);
        });
        drop(self.wait_for_gate().await?);
        match self.try_select(kid, alg)? {
            Some(found) => Ok(found),
            None => Err(od.answer()),
        }
    }

    /// Keys past their max age and a token that needs them: start one
    /// fetch in the background (once per cooldown, never beside another
    /// fetch), so that an Authority that is back serves again at the next
    /// request instead of at the refresh loop's next retry. The request
    /// itself is answered 503 at once.
    fn refetch_stale(self: &Arc<Self>) {
        if !self.on_demand.try_claim(self.clock.now(), self.cooldown) {
            return;
        }
        let Ok(gate) = self.fetch_gate.clone().try_lock_owned() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _gate = gate;
            let _fetching = Fetching::start(&this.on_demand.fetching);
            let fetched = this.fetch_and_publish(false).await;
            this.on_demand
                .last_failed
                .store(fetched.is_err(), Ordering::Release);
        });
    }

    fn busy(&self) -> KeyLookupError {
        self.counters
            .unknown_kid_busy
            .fetch_add(1, Ordering::Relaxed);
        KeyLookupError::Unavailable(Unavailable::Busy)
    }

    /// The fetch gate, waited for at most `unknown_kid_wait`.
    async fn wait_for_gate(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, KeyLookupError> {
        tokio::time::timeout(self.unknown_kid_wait, self.fetch_gate.lock())
            .await
            .map_err(|_| {
                self.counters
                    .unknown_kid_busy
                    .fetch_add(1, Ordering::Relaxed);
                KeyLookupError::Unavailable(Unavailable::Busy)
            })
    }

    /// Unknown-kid requests answered 503 because a fetch in flight did not
    /// finish within the wait budget.
    pub fn unknown_kid_busy(&self) -> u64 {
        self.counters.unknown_kid_busy.load(Ordering::Relaxed)
    }

    /// Keys loaded and not too old: the gateway can verify tokens.
    pub fn is_ready(&self) -> bool {
        self.current()
            .fetched_at
            .is_some_and(|at| self.clock.now().saturating_sub(at) <= self.max_age)
    }

    /// Unix seconds of the last successful JWKS fetch.
    pub fn last_success(&self) -> Option<u64> {
        self.current().fetched_at
    }

    /// Seconds since the last successful JWKS fetch (for a staleness
    /// gauge); `None` before the first.
    pub fn age(&self) -> Option<u64> {
        self.last_success()
            .map(|at| self.clock.now().saturating_sub(at))
    }

    /// Seconds since the discovery document in use was fetched (by this
    /// process or, persisted, by an earlier one); `None` before any.
    pub fn discovery_age(&self) -> Option<u64> {
        match self.counters.discovery_fetched_at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(self.clock.now().saturating_sub(at)),
        }
    }

    /// The key ids currently published, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        self.current().keys.kids()
    }

    /// Keys skipped in the current set.
    pub fn skipped_keys(&self) -> usize {
        self.current().keys.skipped()
    }

    /// The last successfully checked metadata (for introspection).
    pub fn discovery(&self) -> Option<Arc<Discovery>> {
        self.discovery
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Successful JWKS fetches (scheduled and on-demand).
    pub fn refreshes(&self) -> u64 {
        self.counters.refreshes.load(Ordering::Relaxed)
    }

    /// Failed discovery or JWKS fetches (scheduled and on-demand).
    pub fn refresh_failures(&self) -> u64 {
        self.counters.refresh_failures.load(Ordering::Relaxed)
    }

    /// On-demand fetches triggered by an unknown kid.
    pub fn unknown_kid_refetches(&self) -> u64 {
        self.counters.unknown_kid_refetches.load(Ordering::Relaxed)
    }

    /// How old keys may get before lookups report them unavailable:
    /// `jwks_refresh + jwks_max_stale`, in seconds.
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    fn current(&self) -> Arc<Snapshot> {
        // Writers only swap an `Arc`, which cannot panic half-way, so a
        // poisoned lock still holds a whole snapshot.
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `Ok(None)` means unknown kid, worth a refetch.
    fn try_select(
        &self,
        kid: Option<&str>,
        alg: JwsAlg,
    ) -> Result<Option<Arc<VerifyingKey>>, KeyLookupError> {
        match self
            .current()
            .select(kid, alg, self.clock.now(), self.max_age)?
        {
            Selection::Found(key) => Ok(Some(key)),
            Selection::UnknownKid => Ok(None),
            Selection::MissingKid => Err(KeyLookupError::MissingKid),
        }
    }

    /// Fetches (discovery when asked or never done, then JWKS) and
    /// publishes; counts and logs the outcome. Callers hold the fetch gate.
    async fn fetch_and_publish(&self, rediscover: bool) -> Result<(), AuthorityError> {
        match self.load(rediscover).await {
            Ok((keys, document)) => {
                let fetched_at = self.clock.now();
                let previous = self.current();
                // Log changes, not every refresh.
                if previous.fetched_at.is_none()
                    || previous.keys.kids() != keys.kids()
                    || previous.keys.skipped() != keys.skipped()
                {
                    tracing::info!(
                        issuer = %self.issuer,
                        keys = keys.len(),
                        kids = ?keys.kids(),
                        "authority signing keys loaded"
                    );
                    if keys.skipped() > 0 {
                        tracing::warn!(
                            issuer = %self.issuer,
                            skipped = keys.skipped(),
                            "authority jwks has keys the gateway cannot use"
                        );
                    }
                }
                let snapshot = Arc::new(Snapshot {
                    keys,
                    fetched_at: Some(fetched_at),
                });
                *self
                    .snapshot
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = snapshot;
                // Persisted before it is counted: whoever waits for the
                // first fetch (the ready line) finds the state on disk.
                self.persist(What::Jwks, document, fetched_at).await;
                self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.counters
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    issuer = %self.issuer,
                    %error,
                    code = error.code(),
                    age_seconds = self.age(),
                    "authority key refresh failed; keeping the previous keys"
                );
                Err(error)
            }
        }
    }

    /// The checked key set and the JWKS document as fetched.
    async fn load(&self, rediscover: bool) -> Result<(KeySet, JsonObject), AuthorityError> {
        let known = if rediscover && self.discover {
            None
        } else {
            self.discovery()
        };
        let discovery = match known {
            Some(d) => d,
            None => {
                let (d, document) =
                    discover_document(&self.fetcher, &self.issuer, self.require_https).await?;
                let d = Arc::new(d);
                *self
                    .discovery
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(d.clone());
                let now = self.clock.now();
                self.counters
                    .discovery_fetched_at
                    .store(now.max(1), Ordering::Relaxed);
                self.persist(What::Discovery, document, now).await;
                d
            }
        };
        let doc = self
            .fetcher
            .get_json(discovery.jwks_uri())
            .await
            .map_err(|source| AuthorityError::Fetch {
                document: Document::Jwks,
                source,
            })?;
        let keys = KeySet::from_jwks(&doc)?;
        Ok((keys, doc))
    }
}

/// The wait before retry number `failures` (1-based): doubling from one
/// second, at most a minute and never longer than the regular interval.
pub fn retry_delay(failures: u32, refresh_every: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(1u64 << exponent)
        .min(MAX_RETRY_DELAY)
        .min(refresh_every)
}

mod keyset;
mod persist;

pub use keyset::{KeyLookupError, KeySet, Selection, Unavailable};

#[cfg(test)]
mod tests;
