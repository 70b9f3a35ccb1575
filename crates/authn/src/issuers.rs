//! Every configured Authority, and which one a token belongs to.
//!
//! A JWT's `iss` selects exactly one Authority (compared byte for byte);
//! its keys, rules, introspection results and claims are that Authority's
//! alone, so a token of issuer B is verified with B's keys only, even if A
//! publishes a key with the same `kid`. An opaque token (not a JWS) names
//! no issuer: it goes to the one Authority configured for introspection,
//! or is refused. A tenant may be bound to one Authority: a token of that
//! tenant from any other issuer is refused.

use super::claims::ClaimsSource;
use super::introspection::Introspector;
use crate::{TokenError, TokenRules};
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use stella_authority::jwks::JwksCache;
use stella_authority::AuthorityConfig;
use stella_authority::HttpFetcher;
use stella_core::identity::TokenClaims;
use stella_core::Clock;
use stella_core::ConfigError;

/// One Authority: its configuration and everything built from it.
#[derive(Debug)]
pub struct Issuer {
    pub config: AuthorityConfig,
    pub rules: TokenRules,
    pub jwks: Arc<JwksCache>,
    pub introspection: Option<Introspector>,
    pub claims: Option<Arc<ClaimsSource>>,
}

impl Issuer {
    fn build(config: &AuthorityConfig, clock: &Arc<dyn Clock>) -> Result<Issuer, ConfigError> {
        let rules = TokenRules::from_config(config)
            .map_err(|e| ConfigError::new(&config.path, e.to_string()))?;
        if rules.mapping().is_some_and(|m| !m.require_aud) {
            // Weaker than RFC 9068's audience rule: say so whenever it is
            // built, as the emergency bypass does.
            tracing::warn!(
                issuer = %config.issuer,
                "access tokens without aud are accepted from this authority when their client id \
                 is one of its audiences (token_claims.require_aud: false)"
            );
        }
        let jwks = Arc::new(
            JwksCache::new(config, clock.clone())
                .map_err(|e| ConfigError::new(format!("{}.issuer", config.path), e.to_string()))?,
        );
        // One pool per Authority for the request path: introspection and
        // claims requests reuse its connections.
        let pooled = HttpFetcher::pooled(
            config.http_timeout,
            !config.require_https_metadata,
            stella_authority::http::authority_roots(config.ca.as_ref()),
        )
        .map_err(|e| ConfigError::new(&config.path, e.to_string()))?;
        let fetcher = || -> Result<HttpFetcher, ConfigError> { Ok(pooled.clone()) };
        let introspection = match (&config.introspection, &config.client) {
            (Some(i), Some(client)) => Some(Introspector::new(
                rules.clone(),
                i.clone(),
                client.clone(),
                fetcher()?,
                jwks.clone(),
                clock.clone(),
                config.state_dir.as_deref(),
            )),
            _ => None,
        };
        let claims = match (&config.claims, &config.client) {
            (Some(c), Some(client)) => Some(Arc::new(ClaimsSource::new(
                config.issuer.as_str().into(),
                c.clone(),
                client.clone(),
                fetcher()?,
                clock.clone(),
                config.state_dir.as_deref(),
            ))),
            _ => None,
        };
        Ok(Issuer {
            config: config.clone(),
            rules,
            jwks,
            introspection,
            claims,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Loads the persisted introspection results and claims (at start).
    pub fn load_persisted_caches(&self) {
        if let Some(i) = &self.introspection {
            i.load_persisted();
        }
        if let Some(c) = &self.claims {
            c.load_persisted();
        }
    }

    /// Writes the introspection results and claims that changed to
    /// `state_dir` (periodically and on shutdown).
    pub fn persist_caches(&self) {
        if let Some(i) = &self.introspection {
            i.persist();
        }
        if let Some(c) = &self.claims {
            c.persist();
        }
    }
}

/// The configured Authorities.
#[derive(Debug)]
pub struct Issuers {
    list: Vec<Arc<Issuer>>,
    /// Tenant -> index of the Authority it is bound to.
    tenants: HashMap<String, usize>,
    /// The Authority that takes opaque tokens.
    opaque: Option<usize>,
}

impl Issuers {
    /// Builds every Authority of `configs`, keeping those of `previous`
    /// whose configuration is unchanged (with their cached keys, results
    /// and claims).
    pub fn build(
        configs: &[AuthorityConfig],
        previous: Option<&Issuers>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Issuers, Vec<ConfigError>> {
        let mut list = Vec::with_capacity(configs.len());
        let mut errors = Vec::new();
        for config in configs {
            let kept = previous
                .and_then(|p| p.list.iter().find(|i| i.config == *config))
                .cloned();
            match kept {
                Some(issuer) => list.push(issuer),
                None => match Issuer::build(config, clock) {
                    Ok(issuer) => list.push(Arc::new(issuer)),
                    Err(e) => errors.push(e),
                },
            }
        }
        if list.is_empty() && errors.is_empty() {
            errors.push(ConfigError::new(
                "gateway.auth.authority",
                "at least one Authority is required",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let tenants = list
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.config.tenants.iter().map(move |t| (t.clone(), i)))
            .collect();
        let opaque = list.iter().position(|a| a.introspection.is_some());
        Ok(Issuers {
            list,
            tenants,
            opaque,
        })
    }

    pub fn list(&self) -> &[Arc<Issuer>] {
        &self.list
    }

    /// The first Authority (`gateway.auth.authority` when set).
    pub fn first(&self) -> &Arc<Issuer> {
        &self.list[0]
    }

    /// Whether `self` and `other` hold the very same Authorities.
    pub fn same_as(&self, other: &Issuers) -> bool {
        self.list.len() == other.list.len()
            && self
                .list
                .iter()
                .zip(&other.list)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// The Authority that verifies a JWS token: with one Authority, that
    /// one (its verifier refuses another `iss`); with several, the one its
    /// `iss` names, read before verification only to choose the keys.
    pub fn for_jws(&self, token: &str) -> Result<&Arc<Issuer>, TokenError> {
        if self.list.len() == 1 {
            return Ok(&self.list[0]);
        }
        let iss = peek_issuer(token).ok_or(TokenError::UnknownIssuer)?;
        self.by_issuer(&iss).ok_or(TokenError::UnknownIssuer)
    }

    pub fn by_issuer(&self, issuer: &str) -> Option<&Arc<Issuer>> {
        self.list.iter().find(|a| a.config.issuer == issuer)
    }

    /// The Authority that introspects opaque tokens, if one does.
    pub fn for_opaque(&self) -> Option<&Arc<Issuer>> {
        self.opaque.map(|i| &self.list[i])
    }

    /// Refuses a token whose (effective) tenant is bound to another
    /// Authority than the one that issued it.
    pub fn check_tenant(&self, claims: &TokenClaims) -> Result<(), TokenError> {
        if self.tenants.is_empty() {
            return Ok(());
        }
        match claims.tenant().and_then(|t| self.tenants.get(t)) {
            Some(&bound) if self.list[bound].config.issuer != claims.issuer() => {
                Err(TokenError::TenantIssuerMismatch)
            }
            _ => Ok(()),
        }
    }
}

/// Whether a token is a compact JWS rather than an opaque string: three
/// dot-separated parts, the first a base64url JSON object with a string
/// `alg` (a JOSE header). An opaque token may contain two dots (several
/// providers' formats do); one whose first part is no JWS header goes to
/// introspection, where an Authority is configured for it, instead of being
/// refused as a malformed JWS. Only the header is looked at: whether it is
/// a good one is the verifier's to say.
pub fn looks_like_jws(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok())
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

/// The `iss` of a compact JWS, unverified: only to choose whose keys
/// verify it. `None` if the payload does not decode or has no string `iss`.
pub fn peek_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"ES256"}"#), b(payload))
    }

    #[test]
    fn peek_reads_iss_and_nothing_else() {
        assert_eq!(
            peek_issuer(&jws(r#"{"iss":"https://a.example","sub":"x"}"#)).as_deref(),
            Some("https://a.example")
        );
        assert_eq!(peek_issuer(&jws(r#"{"sub":"x"}"#)), None);
        assert_eq!(peek_issuer(&jws(r#"{"iss":7}"#)), None);
        assert_eq!(peek_issuer("a.%%%.c"), None);
        assert_eq!(peek_issuer("opaque"), None);
    }

    #[test]
    fn only_three_part_tokens_with_a_jose_header_are_jws() {
        assert!(looks_like_jws(&jws(r#"{"iss":"x"}"#)));
        assert!(!looks_like_jws(
            "Xxlw6P48RFifp9aNmyTRaLfueMB2SQzFPHwIna7ucgT"
        ));
        // Two dots, but no JWS header: opaque.
        assert!(!looks_like_jws("a.b.c"));
        assert!(!looks_like_jws("opaque.with-two.dots-inside"));
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        assert!(!looks_like_jws(&format!(
            "{}.e30.sig",
            b(r#"{"typ":"JWT"}"#)
        )));
        assert!(!looks_like_jws(&format!("{}.e30.sig", b(r#"{"alg":7}"#))));
        assert!(!looks_like_jws(&format!("{}.e30.sig", b("[1]"))));
        assert!(!looks_like_jws("a.b"));
        assert!(!looks_like_jws(&format!("{}.c.d", jws("{}"))));
    }
}
