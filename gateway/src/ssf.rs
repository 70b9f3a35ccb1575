//! The Shared Signals receiver (docs/design.md §3.3): the transmitters'
//! keys, and what one pushed Security Event Token does. The rules are
//! `stella_authn::revocation::ssf`'s; this finds the key (a fetched JWKS,
//! through the one JWKS cache, or a file read at start), spends the SET's
//! `jti` in the replay store (the DPoP one: shared by every node with
//! Redis, bounded in memory otherwise), and makes the entries through
//! [`Revocations::revoke`], the path of the admin calls: shared through the
//! store, persisted, one audit line each, the transmitter as operator.
//!
//! Built once at start (`gateway.revocation` is a process setting) and
//! kept by the admin listener, which answers the push (`admin::ssf`).

use crate::config::resolve::{SsfConfig, SsfKeys};
use crate::revocation::{Operator, Revocations};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stella_authn::replay::{Fresh, ReplayStore};
use stella_authn::revocation::ssf::{self, EventKind, SetError, Transmitter, Window};
use stella_authority::{AuthorityConfig, JwksCache, KeyLookupError, KeySet};
use stella_core::Clock;
use stella_jose::VerifyingKey;

/// How often a fetched JWKS is read again (and at most how often an
/// unknown `kid` fetches it).
const JWKS_REFRESH: Duration = Duration::from_secs(300);
const JWKS_COOLDOWN: Duration = Duration::from_secs(10);
/// Keys are used for this long past a failed refresh.
const JWKS_MAX_STALE: Duration = Duration::from_secs(3_600);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// The results a pushed SET can have, in the order of the metric's series.
const RESULTS: [&str; 7] = [
    "accepted",
    "invalid_request",
    "invalid_issuer",
    "invalid_key",
    "invalid_audience",
    "replayed",
    "unavailable",
];

/// Where one transmitter's keys are.
enum Keys {
    File(KeySet),
    Fetched(Arc<JwksCache>),
}

struct Source {
    settings: Transmitter,
    keys: Keys,
}

/// What the receiver answers a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 202: checked; `revoked` entries made, `ignored` events without one.
    Accepted { revoked: usize, ignored: usize },
    /// 400 with the RFC 8935 error.
    Refused(SetError),
    /// 503: the keys or the replay store could not answer; the transmitter
    /// tries again.
    Unavailable(&'static str),
}

/// The receiver of this process.
pub struct Receiver {
    path: String,
    window: Window,
    sources: Vec<Source>,
    /// By [`RESULTS`].
    sets: [AtomicU64; RESULTS.len()],
    /// By [`EventKind::ALL`], then revoked / ignored.
    events: [[AtomicU64; 2]; EventKind::ALL.len()],
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("path", &self.path)
            .field("transmitters", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// The receiver `config` describes. Fails only when a key cache cannot
    /// be set up (its URL, TLS), which `check` already looked at.
    pub fn build(config: &SsfConfig, clock: Arc<dyn Clock>) -> Result<Receiver, String> {
        let mut sources = Vec::with_capacity(config.transmitters.len());
        for t in &config.transmitters {
            let keys = match &t.keys {
                SsfKeys::File { path, jwks } => {
                    let doc = stella_authority::http::parse_json_object(jwks.as_bytes())
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    Keys::File(
                        KeySet::from_jwks(&doc).map_err(|e| format!("{}: {e}", path.display()))?,
                    )
                }
                SsfKeys::Uri { url, require_https } => {
                    let cache = JwksCache::with_jwks_uri(
                        &key_settings(&t.settings.issuer, *require_https),
                        url,
                        clock.clone(),
                    )
                    .map_err(|e| format!("transmitter {}: {e}", t.settings.issuer))?;
                    Keys::Fetched(Arc::new(cache))
                }
            };
            sources.push(Source {
                settings: t.settings.clone(),
                keys,
            });
        }
        Ok(Receiver {
            path: config.path.clone(),
            window: config.window,
            sources,
            sets: Default::default(),
            events: Default::default(),
        })
    }

    /// The admin listener's path that takes pushes.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The key caches to keep refreshed.
    pub fn caches(&self) -> Vec<Arc<JwksCache>> {
        self.sources
            .iter()
            .filter_map(|s| match &s.keys {
                Keys::Fetched(cache) => Some(cache.clone()),
                Keys::File(_) => None,
            })
            .collect()
    }

    /// Checks a pushed SET and applies its events. `authority` tells
    /// whether an issuer is a configured Authority.
    pub async fn receive(
        &self,
        body: &[u8],
        revocations: &Revocations,
        replay: &dyn ReplayStore,
        authority: &(dyn Fn(&str) -> bool + Sync),
        now: u64,
    ) -> Answer {
        let answer = self
            .check_and_apply(body, revocations, replay, authority, now)
            .await;
        self.record(answer)
    }

    /// A push refused before its body was read (its media type, its size):
    /// counted and logged like the others.
    pub fn refuse(&self, e: SetError) -> Answer {
        self.record(Answer::Refused(e))
    }

    /// Counts and logs an answer.
    fn record(&self, answer: Answer) -> Answer {
        let result = match &answer {
            Answer::Accepted { .. } => "accepted",
            Answer::Refused(SetError::InvalidRequest(why)) if why == REPLAYED => "replayed",
            Answer::Refused(e) => e.err(),
            Answer::Unavailable(_) => "unavailable",
        };
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.sets[i].fetch_add(1, Ordering::Relaxed);
        }
        match &answer {
            Answer::Accepted { revoked, ignored } => tracing::info!(
                revoked,
                ignored,
                "security event token accepted from a shared signals transmitter"
            ),
            Answer::Refused(e) => tracing::warn!(
                err = e.err(),
                description = %e,
                "security event token refused"
            ),
            Answer::Unavailable(why) => tracing::warn!(
                why,
                "security event token not processed; the transmitter is asked to retry"
            ),
        }
        answer
    }

    async fn check_and_apply(
        &self,
        body: &[u8],
        revocations: &Revocations,
        replay: &dyn ReplayStore,
        authority: &(dyn Fn(&str) -> bool + Sync),
        now: u64,
    ) -> Answer {
        let unverified = match ssf::parse(body) {
            Ok(u) => u,
            Err(e) => return Answer::Refused(e),
        };
        let Some(source) = self
            .sources
            .iter()
            .find(|s| s.settings.issuer == unverified.issuer())
        else {
            return Answer::Refused(SetError::InvalidIssuer);
        };
        let key = match self.key(source, &unverified).await {
            Ok(key) => key,
            Err(answer) => return answer,
        };
        let set = match unverified.verify(&key, &source.settings, self.window, now) {
            Ok(set) => set,
            Err(e) => return Answer::Refused(e),
        };
        let outcomes = match set.outcomes(&source.settings, authority, now) {
            Ok(outcomes) => outcomes,
            Err(e) => return Answer::Refused(e),
        };
        let ttl = Duration::from_secs(self.window.max_age.saturating_add(self.window.leeway));
        match replay.insert_once(set.replay_key(), ttl).await {
            Ok(Fresh::Inserted) => {}
            Ok(Fresh::Replayed) => {
                return Answer::Refused(SetError::InvalidRequest(REPLAYED.into()))
            }
            Err(_) => return Answer::Unavailable("the replay store cannot answer"),
        }
        let operator = Operator {
            name: source.settings.operator.clone(),
            authenticated: true,
        };
        let (mut revoked, mut ignored) = (0, 0);
        for outcome in outcomes {
            let event = EventKind::ALL
                .iter()
                .position(|k| *k == outcome.kind)
                .unwrap_or(EventKind::ALL.len() - 1);
            if let Some(why) = outcome.ignored {
                ignored += 1;
                self.events[event][1].fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    event = outcome.kind.as_str(),
                    ignored = why.as_str(),
                    "security event revokes nothing"
                );
                continue;
            }
            self.events[event][0].fetch_add(1, Ordering::Relaxed);
            for entry in outcome.entries {
                match revocations.revoke(entry, &operator, now).await {
                    Ok(_) => revoked += 1,
                    // The list is full: the transmitter retries later
                    // (its jti is spent; a retry under a new jti works).
                    Err(e) => {
                        tracing::error!(error = %e, "security event not applied");
                        return Answer::Unavailable("the revocation list refused the entry");
                    }
                }
            }
        }
        Answer::Accepted { revoked, ignored }
    }

    /// The transmitter's key for the SET's `kid` and `alg`.
    async fn key(
        &self,
        source: &Source,
        set: &ssf::Unverified,
    ) -> Result<Arc<VerifyingKey>, Answer> {
        let unknown = || {
            Answer::Refused(SetError::InvalidKey(
                "no key of the transmitter has the SET's kid".into(),
            ))
        };
        match &source.keys {
            Keys::File(keys) => match keys.select(set.kid(), set.alg()) {
                stella_authority::jwks::Selection::Found(key) => Ok(key),
                _ => Err(unknown()),
            },
            Keys::Fetched(cache) => {
                // Before the refresh loop's first fetch: fetch now.
                if cache.last_success().is_none() {
                    let _ = cache.refresh().await;
                }
                match cache.key_for(set.kid(), set.alg()).await {
                    Ok(key) => Ok(key),
                    Err(KeyLookupError::Unavailable(_)) => Err(Answer::Unavailable(
                        "the transmitter's keys cannot be fetched",
                    )),
                    Err(_) => Err(unknown()),
                }
            }
        }
    }

    /// `stella_gateway_ssf_sets_total` and `stella_gateway_ssf_events_total`.
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut text = String::from(
            "# HELP stella_gateway_ssf_sets_total Security Event Tokens pushed to the Shared Signals receiver, by result\n\
             # TYPE stella_gateway_ssf_sets_total counter\n",
        );
        for (result, n) in RESULTS.iter().zip(&self.sets) {
            let _ = writeln!(
                text,
                "stella_gateway_ssf_sets_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        text.push_str(
            "# HELP stella_gateway_ssf_events_total Events of accepted Security Event Tokens, by event type and result (revoked: made entries; ignored)\n\
             # TYPE stella_gateway_ssf_events_total counter\n",
        );
        for (kind, counts) in EventKind::ALL.iter().zip(&self.events) {
            for (result, n) in ["revoked", "ignored"].iter().zip(counts) {
                let _ = writeln!(
                    text,
                    "stella_gateway_ssf_events_total{{event=\"{}\",result=\"{result}\"}} {}",
                    kind.as_str(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        text
    }
}

/// The description of a replayed SET's refusal.
const REPLAYED: &str = "the SET's jti was received before (a replay)";

/// The key-cache settings of a transmitter: the one JWKS cache's rules
/// with the receiver's fixed intervals.
fn key_settings(issuer: &str, require_https: bool) -> AuthorityConfig {
    AuthorityConfig {
        path: "gateway.revocation.ssf.transmitters".into(),
        issuer: issuer.to_owned(),
        require_https_metadata: require_https,
        audiences: Vec::new(),
        algorithms: Vec::new(),
        leeway: Duration::ZERO,
        required_claims: Vec::new(),
        jwks_refresh: JWKS_REFRESH,
        jwks_cooldown: JWKS_COOLDOWN,
        jwks_max_stale: JWKS_MAX_STALE,
        http_timeout: JWKS_TIMEOUT,
        ca: None,
        state_dir: None,
        tenants: Vec::new(),
        client: None,
        introspection: None,
        claims: None,
        token_claims: None,
    }
}

/// Keeps the fetched transmitter keys fresh until the process ends.
pub struct KeyRefresh {
    pub receiver: Arc<Receiver>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for KeyRefresh {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let loops: Vec<_> = self
            .receiver
            .caches()
            .into_iter()
            .map(|cache| tokio::spawn(cache.run_refresh_loop()))
            .collect();
        let _ = shutdown.changed().await;
        loops.iter().for_each(|l| l.abort());
    }
}
