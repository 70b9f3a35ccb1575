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

use crate::TokenError;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    ) -> ClaimsSource {
        ClaimsSource {
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
        let fetched = self
            .flights
            .run(&key, || {
                stella_core::trace::in_child(
                    "claims_fetch",
                    self.fetch_and_store(&token, key.clone()),
                )
            })
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
