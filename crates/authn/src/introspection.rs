//! Opaque access tokens, checked by token introspection (RFC 7662).
//!
//! A token that is not a JWS goes to the introspection endpoint of the one
//! Authority configured for opaque tokens, with the gateway's client
//! credentials (`client_secret_basic`). The answer is cached by the
//! token's hash (BLAKE3, [`crate::TokenKey`]), in a cache that belongs to this Authority alone:
//! - `active: true`: its claims are checked as a JWT's are (issuer,
//!   audience, times; `cnf` as the binding) and reused for
//!   `cache_seconds`, never past the token's `exp`;
//! - `active: false`: remembered for `inactive_cache_seconds`, answered
//!   401 `invalid_token` (reason `inactive`);
//! - no answer (endpoint down, timeout, error status): a cached active
//!   result still serves for `max_stale_seconds` past its cache time (never
//!   past `exp`); otherwise 503 with `Retry-After`, never 401.
//!
//! So a revoked token is refused once its cache entry expires: at most
//! `cache_seconds` after revocation.
//!
//! With the Authority's `state_dir`, active results are also written to a
//! file there (`stella_authority::stale::file`: keyed by the token's hash,
//! the answer as the endpoint gave it, MAC'd with a key from the client
//! secret) and read at start, each checked again as a fresh answer is, so
//! a gateway restarted during an outage serves them within the same
//! `max_stale_seconds`.

use crate::bearer::{check_claims, ClaimsSource};
use crate::{TokenError, TokenKey, TokenRules};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stella_authority::jwks::JwksCache;
use stella_authority::stale::file::{hex, unhex, Persister, Record, StaleFile};
use stella_authority::stale::{Flights, StaleCache};
use stella_authority::HttpFetcher;
use stella_authority::{ClientCredentials, IntrospectionConfig};
use stella_core::identity::TokenClaims;
use stella_core::Clock;
use stella_jose::JsonObject;

/// Entries kept at most; beyond it the least used are dropped.
const MAX_ENTRIES: usize = 100_000;

/// What the endpoint said of a token; the cache keeps it fresh for
/// `cache_seconds` (active) or `inactive_cache_seconds` (inactive).
#[derive(Clone)]
enum Entry {
    /// The checked claims, and the answer they came from when the cache
    /// is persisted.
    Active(Arc<TokenClaims>, Option<Arc<JsonObject>>),
    Inactive,
}

/// Counters for `stella_gateway_introspection_total{issuer,result}`.
#[derive(Debug, Default)]
pub struct IntrospectionCounters {
    pub hit: AtomicU64,
    pub miss: AtomicU64,
    pub inactive: AtomicU64,
    pub error: AtomicU64,
    pub stale: AtomicU64,
}

impl IntrospectionCounters {
    /// `(result label, count)` for every result.
    pub fn rows(&self) -> [(&'static str, u64); 5] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("hit", get(&self.hit)),
            ("miss", get(&self.miss)),
            ("inactive", get(&self.inactive)),
            ("error", get(&self.error)),
            ("stale", get(&self.stale)),
        ]
    }
}

/// The introspection client and result cache of one Authority.
pub struct Introspector {
    rules: TokenRules,
    config: IntrospectionConfig,
    client: ClientCredentials,
    fetcher: HttpFetcher,
    /// The Authority's discovery document, for `introspection_endpoint`
    /// when none is configured.
    jwks: Arc<JwksCache>,
    clock: Arc<dyn Clock>,
    cache: StaleCache<[u8; 32], Entry>,
    /// One introspection request per token at a time.
    flights: Flights<[u8; 32], Fetched>,
    counters: IntrospectionCounters,
    /// The cache's file in `state_dir`, when persisted.
    persisted: Option<Persister>,
}

/// What one introspection call settled, shared by every request for the
/// token that waited on it: the checked claims or the token's refusal (both
/// cached), or why the endpoint gave no answer.
type Fetched = Result<Result<Arc<TokenClaims>, TokenError>, &'static str>;

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.rules.issuer())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one introspection request brought.
enum Answer {
    Active(JsonObject),
    Inactive,
}

impl Introspector {
    pub fn new(
        rules: TokenRules,
        config: IntrospectionConfig,
        client: ClientCredentials,
        fetcher: HttpFetcher,
        jwks: Arc<JwksCache>,
        clock: Arc<dyn Clock>,
        state_dir: Option<&std::path::Path>,
    ) -> Introspector {
        let persisted = state_dir
            .filter(|_| config.persist_max_entries > 0)
            .map(|dir| {
                Persister::new(StaleFile::new(
                    dir,
                    rules.issuer(),
                    "introspection",
                    client.secret.expose().as_bytes(),
                    config.persist_max_entries,
                ))
            });
        Introspector {
            persisted,
            rules,
            config,
            client,
            fetcher,
            jwks,
            clock,
            cache: StaleCache::new(MAX_ENTRIES),
            flights: Flights::default(),
            counters: IntrospectionCounters::default(),
        }
    }

    pub fn counters(&self) -> &IntrospectionCounters {
        &self.counters
    }

    /// Seconds since the endpoint last answered; `None` before that.
    pub fn staleness(&self) -> Option<u64> {
        self.cache.staleness(self.clock.now())
    }

    /// How long past its cache time a result serves when the endpoint is
    /// down.
    pub fn max_stale(&self) -> u64 {
        self.config.max_stale.as_secs()
    }

    /// The claims of an opaque token, from the cache or the endpoint.
    pub async fn check(&self, token: &str, key: &TokenKey) -> Result<Arc<TokenClaims>, TokenError> {
        let now = self.clock.now();
        let cached = self.cache.get(key.as_bytes());
        if let Some(entry) = cached.as_ref().filter(|c| c.is_fresh(now)) {
            self.counters.hit.fetch_add(1, Ordering::Relaxed);
            return match &entry.value {
                Entry::Active(claims, _) => Ok(claims.clone()),
                Entry::Inactive => Err(TokenError::Inactive),
            };
        }
        self.counters.miss.fetch_add(1, Ordering::Relaxed);
        // Boxed: the call to the endpoint is a large future (an HTTP
        // exchange), needed only on a miss; inline it would be copied on
        // every request that only reads the cache (docs/performance.md).
        let fetched = Box::pin(self.flights.run(key.as_bytes(), || {
            stella_core::trace::in_child("introspection", self.fetch_and_store(token, key))
        }))
        .await;
        match fetched {
            Ok(verdict) => verdict,
            Err(reason) => {
                self.counters.error.fetch_add(1, Ordering::Relaxed);
                if let Some(entry) = cached.filter(|c| c.serves_stale(now, self.max_stale())) {
                    if let Entry::Active(claims, _) = entry.value {
                        // Never past the token's own expiry.
                        let usable_until = claims.expires_at().saturating_add(self.rules.leeway());
                        if now < usable_until {
                            self.counters.stale.fetch_add(1, Ordering::Relaxed);
                            return Ok(claims);
                        }
                    }
                }
                tracing::warn!(
                    issuer = self.rules.issuer(),
                    reason,
                    "token introspection unavailable; refusing with 503"
                );
                Err(TokenError::Unavailable {
                    what: "introspection",
                })
            }
        }
    }

    /// Asks the endpoint and caches what it said (the active claims once
    /// checked, or the inactive verdict); the error when it gave no answer.
    async fn fetch_and_store(&self, token: &str, key: &TokenKey) -> Fetched {
        let now = self.clock.now();
        match self.ask(token).await? {
            Answer::Active(claims) => {
                self.cache.answered(now);
                let now = self.clock.now();
                let answer = self.persisted.as_ref().map(|_| Arc::new(claims.clone()));
                let claims =
                    match check_claims(claims, &self.rules, now, ClaimsSource::Introspection) {
                        Ok(claims) => Arc::new(claims),
                        Err(e) => return Ok(Err(e)),
                    };
                let fresh_until = now
                    .saturating_add(self.config.cache.as_secs())
                    .min(claims.expires_at());
                self.cache.insert(
                    *key.as_bytes(),
                    Entry::Active(claims.clone(), answer),
                    fresh_until,
                );
                Ok(Ok(claims))
            }
            Answer::Inactive => {
                self.cache.answered(now);
                self.counters.inactive.fetch_add(1, Ordering::Relaxed);
                let hold = self.config.inactive_cache.as_secs();
                if hold > 0 {
                    self.cache
                        .insert(*key.as_bytes(), Entry::Inactive, now.saturating_add(hold));
                } else {
                    self.cache.remove(key.as_bytes());
                }
                Ok(Err(TokenError::Inactive))
            }
        }
    }

    /// Reads the persisted results (at start, before the first request):
    /// each one checked as a fresh answer (issuer, audience, times) and kept
    /// only while it may serve (fresh, or within `max_stale_seconds`, never
    /// past the token's `exp`). Returns how many were loaded.
    pub fn load_persisted(&self) -> usize {
        let Some(persisted) = &self.persisted else {
            return 0;
        };
        let now = self.clock.now();
        let mut loaded = 0;
        for record in persisted.read() {
            let Some(key) = unhex(&record.key).and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
                continue;
            };
            if now >= record.fresh_until.saturating_add(self.max_stale()) {
                continue;
            }
            let answer = Arc::new(record.value.clone());
            let Ok(claims) =
                check_claims(record.value, &self.rules, now, ClaimsSource::Introspection)
            else {
                continue;
            };
            let fresh_until = record.fresh_until.min(claims.expires_at());
            self.cache.insert(
                key,
                Entry::Active(Arc::new(claims), Some(answer)),
                fresh_until,
            );
            loaded += 1;
        }
        if loaded > 0 {
            tracing::info!(
                issuer = self.rules.issuer(),
                file = %persisted.file().path().display(),
                entries = loaded,
                "persisted introspection results loaded"
            );
        }
        loaded
    }

    /// Writes the active results to `state_dir` if the cache changed since
    /// the last write; how many were written.
    pub fn persist(&self) -> Option<usize> {
        let persisted = self.persisted.as_ref()?;
        let now = self.clock.now();
        let max_stale = self.max_stale();
        persisted.write_if_changed(self.cache.changes(), now, || {
            self.cache
                .entries()
                .into_iter()
                .filter_map(|(key, entry, fresh_until)| match entry {
                    Entry::Active(claims, Some(answer))
                        if now < fresh_until.saturating_add(max_stale)
                            && now < claims.expires_at() =>
                    {
                        Some(Record {
                            key: hex(&key),
                            fresh_until,
                            value: (*answer).clone(),
                        })
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// One introspection request. Errors are a fixed label (never the
    /// token or the response).
    async fn ask(&self, token: &str) -> Result<Answer, &'static str> {
        let endpoint = match &self.config.endpoint {
            Some(url) => url.clone(),
            None => self
                .jwks
                .discovery()
                .and_then(|d| d.introspection_endpoint().map(str::to_owned))
                .ok_or("no_endpoint")?,
        };
        let form = format!(
            "token={}&token_type_hint=access_token",
            stella_authority::http::form_encode(token)
        );
        let mut answer = self
            .fetcher
            .post_form_json(
                &endpoint,
                form,
                &self.client.id,
                self.client.secret.expose(),
            )
            .await
            .map_err(|e| e.code())?;
        match answer.remove("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Ok(Answer::Inactive),
            _ => return Err("malformed_response"),
        }
        // RFC 7662 members that say nothing about the caller.
        for member in ["token_type", "username"] {
            answer.remove(member);
        }
        // `iss` is optional in a response; when present it must be this
        // Authority (check_claims compares it), when absent it is.
        if !answer.contains_key("iss") {
            answer.insert("iss".into(), Value::String(self.rules.issuer().to_owned()));
        }
        Ok(Answer::Active(answer))
    }
}
