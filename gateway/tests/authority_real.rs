//! End to end against the real test Authority (node-oidc-provider in
//! tests/authority): discovery and JWKS load over loopback, then a real
//! `svc-bearer` access token verifies and carries its claims through.
//!
//! Needs `node` and `tests/authority/node_modules` (`npm ci` there).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use stella_authn::{authenticate_bearer, TokenCache, TokenError, TokenRules};
use stella_authority::JwksCache;
use stella_core::identity::Binding;
use stella_core::{Clock, SystemClock};
use stella_gateway::config::resolve::AuthorityConfig;
use stella_test_support::Process;

const AUDIENCE: &str = "http://gateway.local/api";

fn authority_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/authority")
}

fn start_authority() -> Process {
    let dir = authority_dir();
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in {} first",
        dir.display()
    );
    let mut command = Command::new("node");
    command.arg("server.mjs").current_dir(&dir);
    Process::start(
        "authority",
        command,
        "AUTHORITY_READY",
        Duration::from_secs(30),
    )
}

fn token(issuer: &str, client: &str, secret: &str, extra: &[&str]) -> String {
    let output = Command::new("node")
        .arg("token.mjs")
        .args(["--issuer", issuer, "--client", client, "--secret", secret])
        .args(extra)
        .current_dir(authority_dir())
        .output()
        .expect("run token.mjs");
    assert!(
        output.status.success(),
        "token.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 token")
        .trim()
        .to_owned()
}

fn config(issuer: &str) -> AuthorityConfig {
    AuthorityConfig {
        path: "gateway.auth.authority".to_owned(),
        issuer: issuer.to_owned(),
        require_https_metadata: false,
        audiences: vec![AUDIENCE.to_owned()],
        algorithms: ["ES256", "ES384", "EdDSA", "PS256", "RS256"]
            .map(str::to_owned)
            .to_vec(),
        leeway: Duration::from_secs(30),
        required_claims: vec!["client_id".to_owned(), "jti".to_owned()],
        jwks_refresh: Duration::from_secs(300),
        jwks_cooldown: Duration::from_secs(10),
        jwks_max_stale: Duration::from_secs(3600),
        http_timeout: Duration::from_secs(5),
        ca: None,
        state_dir: None,
        tenants: Vec::new(),
        client: None,
        introspection: None,
        claims: None,
        token_claims: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_authority_token_verifies_with_keys_from_discovery() {
    let authority = start_authority();
    let issuer = authority.ready["issuer"]
        .as_str()
        .expect("ready line names the issuer")
        .to_owned();
    let config = config(&issuer);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let jwks = std::sync::Arc::new(JwksCache::new(&config, clock.clone()).unwrap());

    jwks.refresh().await.unwrap();
    assert!(jwks.is_ready());
    let discovery = jwks.discovery().unwrap();
    assert_eq!(discovery.issuer(), issuer);
    assert_eq!(discovery.jwks_uri(), format!("{issuer}/jwks"));
    assert!(discovery.introspection_endpoint().is_some());
    // One ES256 and one RS256 key, both usable.
    assert_eq!(jwks.key_ids().len(), 2);
    assert_eq!(jwks.skipped_keys(), 0);

    let rules = TokenRules::from_config(&config).unwrap();
    let cache = TokenCache::new(1000);
    let token = token(&issuer, "svc-bearer", "svc-bearer-secret", &[]);
    let claims = authenticate_bearer(&token, &rules, &jwks, &cache, clock.now())
        .await
        .unwrap();
    assert_eq!(claims.issuer(), issuer);
    assert_eq!(
        claims.audiences(),
        &*stella_core::identity::names([AUDIENCE])
    );
    assert_eq!(claims.client_id(), Some("svc-bearer"));
    assert_eq!(claims.subject(), Some("svc-bearer"));
    assert_eq!(claims.tenant(), Some("acme"));
    let mut scopes = claims.scopes().to_vec();
    scopes.sort();
    assert_eq!(
        scopes,
        ["admin", "echo.read", "echo.write"].map(std::sync::Arc::<str>::from)
    );
    assert!(claims.jti().is_some_and(|j| !j.is_empty()));
    assert!(claims.expires_at() > clock.now());
    assert_eq!(claims.binding(), &Binding::Unbound);
    assert_eq!(
        claims.claim("tenant").as_deref(),
        Some(&Value::String("acme".into()))
    );

    // Presented again: from the cache, no further JWKS fetch.
    let refreshes = jwks.refreshes();
    let again = authenticate_bearer(&token, &rules, &jwks, &cache, clock.now())
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&claims, &again));
    assert_eq!((cache.hits(), cache.misses()), (1, 1));
    assert_eq!(jwks.refreshes(), refreshes);
    assert_eq!(jwks.unknown_kid_refetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_authority_token_for_another_resource_is_refused() {
    let authority = start_authority();
    let issuer = authority.ready["issuer"].as_str().unwrap().to_owned();
    let config = config(&issuer);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let jwks = std::sync::Arc::new(JwksCache::new(&config, clock.clone()).unwrap());
    jwks.refresh().await.unwrap();
    let rules = TokenRules::from_config(&config).unwrap();
    let cache = TokenCache::new(1000);

    let other = token(
        &issuer,
        "svc-readonly",
        "svc-readonly-secret",
        &["--resource", "http://other.local/api"],
    );
    let err = authenticate_bearer(&other, &rules, &jwks, &cache, clock.now())
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::WrongAudience);

    // The same client's token for the gateway works, with its own tenant.
    let mine = token(&issuer, "svc-readonly", "svc-readonly-secret", &[]);
    let claims = authenticate_bearer(&mine, &rules, &jwks, &cache, clock.now())
        .await
        .unwrap();
    assert_eq!(claims.tenant(), Some("globex"));
    assert_eq!(
        claims.scopes(),
        &*stella_core::identity::names(["echo.read"])
    );
}
