//! Effective claims: a verified token's claims plus what the Authority's
//! claims endpoint says about the token's subject and client.
//!
//! The endpoint gets a form POST of `sub` and `client_id` with the
//! gateway's client credentials (`client_secret_basic`) and answers a JSON
//! object: `roles` (array of strings), `tenant` (string) and any other
//! members (`entitlements`, ...). Merge rules, per claim:
//! - `roles`: the union, the token's first;
//! - `tenant`: the token's when it has one (it was issued for it), else the
//!   Authority's;
//! - any other member: the Authority's wins over the token's claim of the
//!   same name (it is the fresher source), except the claims that make the
//!   token what it is (`iss`, `sub`, `aud`, `client_id`, `jti`, `scope`,
//!   `exp`, `nbf`, `iat`, `cnf`), which the Authority's answer never
//!   changes.
//!
//! Answers are cached per (subject, client) in a cache of this Authority
//! alone, each for `cache_seconds` and never past the expiry of the token
//! that fetched it. A hit within `refresh_ahead_seconds` of the end starts
//! one background refresh. When the endpoint cannot answer, cached claims
//! serve up to `max_stale_seconds` past their end; then the request gets
//! 503 with `Retry-After`, never 401.
//!
//! With the Authority's `state_dir`, the cache is also written to a file
//! there (`stella_authority::stale::file`: per subject and client, MAC'd
//! with a key from the client secret) and read at start, so a gateway
//! restarted during an outage serves the claims it had within the same
//! `max_stale_seconds`.

use crate::TokenError;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stella_authority::stale::file::{Persister, Record, StaleFile};
use stella_authority::stale::{Flights, StaleCache};
use stella_authority::HttpFetcher;
use stella_authority::{ClaimsConfig, ClientCredentials};
use stella_core::identity::{Names, TokenClaims, TYPED_CLAIMS};
use stella_core::Clock;
use stella_jose::JsonObject;

/// Subjects kept at most; beyond it the least used are dropped.
const MAX_ENTRIES: usize = 100_000;

/// What the Authority supplies for one subject and client.
#[derive(Debug, Default, PartialEq)]
pub struct AuthorityClaims {
    pub roles: Vec<Arc<str>>,
    pub tenant: Option<Box<str>>,
    pub other: Vec<(Box<str>, Value)>,
}

impl AuthorityClaims {
    /// Reads an answer of the claims endpoint; `None` if a typed member has
    /// the wrong type.
    pub fn from_document(mut doc: JsonObject) -> Option<AuthorityClaims> {
        let roles = match doc.remove("roles") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|r| match r {
                    Value::String(r) => Some(Arc::from(r.as_str())),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
            Some(_) => return None,
        };
        let tenant = match doc.remove("tenant") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if !t.is_empty() => Some(t.into_boxed_str()),
            Some(_) => return None,
        };
        let other = doc
            .into_iter()
            .filter(|(k, _)| !TYPED_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.into_boxed_str(), v))
            .collect();
        Some(AuthorityClaims {
            roles,
            tenant,
            other,
        })
    }

    /// The answer these were read from, as the endpoint gave it (for the
    /// cache's file): `from_document(to_document())` is the same value.
    pub fn to_document(&self) -> JsonObject {
        let mut doc = JsonObject::new();
        for (k, v) in &self.other {
            doc.insert(k.to_string(), v.clone());
        }
        doc.insert(
            "roles".into(),
            Value::Array(self.roles.iter().map(|r| Value::from(&**r)).collect()),
        );
        if let Some(tenant) = &self.tenant {
            doc.insert("tenant".into(), Value::from(&**tenant));
        }
        doc
    }

    /// The token's claims merged with these (see the module rules).
    pub fn merge_into(&self, token: &TokenClaims) -> TokenClaims {
        let mut merged = token.clone();
        let extra_roles: Vec<Arc<str>> = self
            .roles
            .iter()
            .filter(|r| !token.roles.iter().any(|t| t == *r))
            .cloned()
            .collect();
        if !extra_roles.is_empty() {
            let roles: Names = token.roles.iter().cloned().chain(extra_roles).collect();
            merged.roles = roles;
        }
        if merged.tenant.is_none() {
            merged.tenant = self.tenant.clone();
        }
        if !self.other.is_empty() {
            let mut extra: Vec<(Box<str>, Value)> = token
                .extra
                .iter()
                .filter(|(k, _)| !self.other.iter().any(|(o, _)| o == k))
                .cloned()
                .collect();
            extra.extend(self.other.iter().cloned());
            merged.extra = extra.into_boxed_slice();
        }
        merged
    }
}

/// Counters for `stella_gateway_claims_refreshes_total{issuer,result}` and
/// the cache.
#[derive(Debug, Default)]
pub struct ClaimsCounters {
    pub ok: AtomicU64,
    pub error: AtomicU64,
    pub hit: AtomicU64,
    pub stale: AtomicU64,
}

/// The claims endpoint client and cache of one Authority.
pub struct ClaimsSource {
    issuer: Arc<str>,
    config: ClaimsConfig,
    client: ClientCredentials,
    fetcher: HttpFetcher,
    clock: Arc<dyn Clock>,
    cache: StaleCache<String, Arc<AuthorityClaims>>,
    /// One claims request per subject and client at a time.
    flights: Flights<String, Result<Arc<AuthorityClaims>, &'static str>>,
    counters: ClaimsCounters,
    /// The cache's file in `state_dir`, when persisted.
    persisted: Option<Persister>,
}

impl std::fmt::Debug for ClaimsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsSource")
            .field("issuer", &self.issuer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClaimsSource {
    pub fn new(
        issuer: Arc<str>,
        config: ClaimsConfig,
        client: ClientCredentials,
        fetcher: HttpFetcher,
        clock: Arc<dyn Clock>,
        state_dir: Option<&std::path::Path>,
    ) -> ClaimsSource {
        let persisted = state_dir
            .filter(|_| config.persist_max_entries > 0)
            .map(|dir| {
                Persister::new(StaleFile::new(
                    dir,
                    &issuer,
                    "claims",
                    client.secret.expose().as_bytes(),
                    config.persist_max_entries,
                ))
            });
        ClaimsSource {
            persisted,
            issuer,
            config,
            client,
            fetcher,
            clock,
            cache: StaleCache::new(MAX_ENTRIES),
            flights: Flights::default(),
            counters: ClaimsCounters::default(),
        }
    }

    pub fn counters(&self) -> &ClaimsCounters {
        &self.counters
    }

    /// Seconds since the endpoint last answered; `None` before that.
    pub fn staleness(&self) -> Option<u64> {
        self.cache.staleness(self.clock.now())
    }

    pub fn max_stale(&self) -> u64 {
        self.config.max_stale.as_secs()
    }

    /// The effective claims of a verified token.
    pub async fn effective(
        self: &Arc<Self>,
        token: Arc<TokenClaims>,
    ) -> Result<Arc<TokenClaims>, TokenError> {
        let key = cache_key(&token);
        let now = self.clock.now();
        let cached = self.cache.get(&key);
        if let Some(entry) = cached.as_ref().filter(|c| c.is_fresh(now)) {
            self.counters.hit.fetch_add(1, Ordering::Relaxed);
            let ahead = self.config.refresh_ahead.as_secs();
            if entry.due_for_refresh(now, ahead) {
                if let Some(refresh) = entry.claim_refresh() {
                    let this = self.clone();
                    let token = token.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        // Failures are counted; the entry serves until it
                        // ends, then stale as configured.
                        let _ = this.fetch_and_store(&token, key).await;
                        drop(refresh);
                    });
                }
            }
            return Ok(Arc::new(entry.value.merge_into(&token)));
        }
        // Boxed: the call to the Authority is a large future (an HTTP
        // exchange), needed only on a miss; inline it would be copied on
        // every request that only reads the cache (docs/performance.md).
        let fetched = Box::pin(self.flights.run(&key, || {
            stella_core::trace::in_child("claims_fetch", self.fetch_and_store(&token, key.clone()))
        }))
        .await;
        match fetched {
            Ok(claims) => Ok(Arc::new(claims.merge_into(&token))),
            Err(reason) => {
                if let Some(entry) =
                    cached.filter(|c| c.serves_stale(now, self.config.max_stale.as_secs()))
                {
                    self.counters.stale.fetch_add(1, Ordering::Relaxed);
                    return Ok(Arc::new(entry.value.merge_into(&token)));
                }
                tracing::warn!(
                    issuer = &*self.issuer,
                    reason,
                    "authority claims unavailable; refusing with 503"
                );
                Err(TokenError::Unavailable { what: "claims" })
            }
        }
    }

    /// Reads the persisted claims (at start, before the first request),
    /// keeping those that may still serve (fresh, or within
    /// `max_stale_seconds`). Returns how many were loaded.
    pub fn load_persisted(&self) -> usize {
        let Some(persisted) = &self.persisted else {
            return 0;
        };
        let now = self.clock.now();
        let max_stale = self.config.max_stale.as_secs();
        let mut loaded = 0;
        for record in persisted.read() {
            if now >= record.fresh_until.saturating_add(max_stale) {
                continue;
            }
            let Some(claims) = AuthorityClaims::from_document(record.value) else {
                continue;
            };
            self.cache
                .insert(record.key, Arc::new(claims), record.fresh_until);
            loaded += 1;
        }
        if loaded > 0 {
            tracing::info!(
                issuer = &*self.issuer,
                file = %persisted.file().path().display(),
                entries = loaded,
                "persisted authority claims loaded"
            );
        }
        loaded
    }

    /// Writes the cached claims to `state_dir` if the cache changed since
    /// the last write; how many were written.
    pub fn persist(&self) -> Option<usize> {
        let persisted = self.persisted.as_ref()?;
        let now = self.clock.now();
        let max_stale = self.config.max_stale.as_secs();
        persisted.write_if_changed(self.cache.changes(), now, || {
            self.cache
                .entries()
                .into_iter()
                .filter(|(_, _, fresh_until)| now < fresh_until.saturating_add(max_stale))
                .map(|(key, claims, fresh_until)| Record {
                    key,
                    fresh_until,
                    value: claims.to_document(),
                })
                .collect()
        })
    }

    /// Fetches the claims for `token`'s subject and client and caches them.
    async fn fetch_and_store(
        &self,
        token: &TokenClaims,
        key: String,
    ) -> Result<Arc<AuthorityClaims>, &'static str> {
        let mut form = String::new();
        if let Some(sub) = token.subject() {
            form.push_str("sub=");
            form.push_str(&stella_authority::http::form_encode(sub));
        }
        if let Some(client) = token.client_id() {
            if !form.is_empty() {
                form.push('&');
            }
            form.push_str("client_id=");
            form.push_str(&stella_authority::http::form_encode(client));
        }
        let answer = self
            .fetcher
            .post_form_json(
                &self.config.endpoint,
                form,
                &self.client.id,
                self.client.secret.expose(),
            )
            .await
            .map_err(|e| e.code());
        let claims = match answer {
            Ok(doc) => AuthorityClaims::from_document(doc).ok_or("malformed_response"),
            Err(code) => Err(code),
        };
        match claims {
            Ok(claims) => {
                let now = self.clock.now();
                self.counters.ok.fetch_add(1, Ordering::Relaxed);
                self.cache.answered(now);
                let claims = Arc::new(claims);
                let fresh_until = now
                    .saturating_add(self.config.cache.as_secs())
                    .min(token.expires_at());
                self.cache.insert(key, claims.clone(), fresh_until);
                Ok(claims)
            }
            Err(code) => {
                self.counters.error.fetch_add(1, Ordering::Relaxed);
                Err(code)
            }
        }
    }
}

/// The cache key: subject and client, separated by a byte neither holds.
fn cache_key(token: &TokenClaims) -> String {
    format!(
        "{}\u{0}{}",
        token.subject().unwrap_or_default(),
        token.client_id().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> JsonObject {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn merge_unions_roles_keeps_the_tokens_tenant_and_lets_the_authority_win_elsewhere() {
        let mut token = TokenClaims::for_tests("svc", &["echo.read"]).with_roles(&["reader"]);
        token.tenant = Some("acme".into());
        token.extra = vec![("level".into(), json!(1)), ("keep".into(), json!("t"))].into();
        let authority = AuthorityClaims::from_document(doc(json!({
            "roles": ["reader", "auditor"],
            "tenant": "globex",
            "level": 2,
            "entitlements": ["export"],
            "sub": "someone-else",
            "scope": "admin",
        })))
        .unwrap();
        let merged = authority.merge_into(&token);
        let roles: Vec<&str> = merged.roles().iter().map(|r| &**r).collect();
        assert_eq!(roles, ["reader", "auditor"]);
        assert_eq!(merged.tenant(), Some("acme"));
        assert_eq!(merged.subject(), Some("svc"));
        let scopes: Vec<&str> = merged.scopes().iter().map(|r| &**r).collect();
        assert_eq!(scopes, ["echo.read"]);
        let extra: Vec<(&str, &Value)> = merged.extra.iter().map(|(k, v)| (&**k, v)).collect();
        assert!(extra.contains(&("level", &json!(2))), "{extra:?}");
        assert!(extra.contains(&("keep", &json!("t"))), "{extra:?}");
        assert!(
            extra.contains(&("entitlements", &json!(["export"]))),
            "{extra:?}"
        );
        assert!(!extra.iter().any(|(k, _)| *k == "sub" || *k == "scope"));
    }

    #[test]
    fn claims_written_to_a_document_read_back_the_same() {
        let claims = AuthorityClaims::from_document(doc(json!({
            "roles": ["reader", "auditor"],
            "tenant": "globex",
            "entitlements": ["export"],
        })))
        .unwrap();
        let again = AuthorityClaims::from_document(claims.to_document()).unwrap();
        assert_eq!(again, claims);
        let empty = AuthorityClaims::from_document(doc(json!({}))).unwrap();
        assert_eq!(
            AuthorityClaims::from_document(empty.to_document()).unwrap(),
            empty
        );
    }

    #[test]
    fn a_token_without_tenant_takes_the_authoritys() {
        let token = TokenClaims::for_tests("svc", &[]);
        let authority = AuthorityClaims::from_document(doc(json!({"tenant": "globex"}))).unwrap();
        assert_eq!(authority.merge_into(&token).tenant(), Some("globex"));
    }

    #[test]
    fn typed_members_of_the_wrong_type_make_the_answer_unusable() {
        for bad in [
            json!({"roles": "admin"}),
            json!({"roles": [1]}),
            json!({"tenant": 7}),
        ] {
            assert_eq!(
                AuthorityClaims::from_document(doc(bad.clone())),
                None,
                "{bad}"
            );
        }
        assert!(AuthorityClaims::from_document(doc(json!({}))).is_some());
    }
}
