//! Key set parsing (pure) and the cache's fetch rules against a loopback
//! Authority that counts requests, with an injected clock.

use super::*;
use crate::test_server::{
    authority_server, test_config, Reply, TestServer, DISCOVERY_PATH, JWKS_PATH,
};
use crate::FetchError;
use serde_json::{json, Value};
use stella_core::ManualClock;
use stella_envelope::encoding::b64url_encode;
use stella_jose::testing::{jwks, TestKey};
use stella_jose::KeyKind;

const NOW: u64 = 1_700_000_000;
const AUDIENCE: &str = "http://gateway.local/api";

fn doc(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap()
}

fn set_of(keys: Vec<Value>) -> Result<KeySet, AuthorityError> {
    KeySet::from_jwks(&doc(json!({ "keys": keys })))
}

fn found_kind(selection: Selection) -> KeyKind {
    match selection {
        Selection::Found(key) => key.kind(),
        other => panic!("expected a key, got {other:?}"),
    }
}

// KeySet: pure.

#[test]
fn unusable_keys_are_skipped_and_counted() {
    let good = TestKey::es256(Some("good"));
    let mut enc = TestKey::es256(Some("enc")).jwk().clone();
    enc["use"] = json!("enc");
    let mut hs = TestKey::es256(Some("hs")).jwk().clone();
    hs["alg"] = json!("HS256");
    let mut no_verify = TestKey::es256(Some("nv")).jwk().clone();
    no_verify["key_ops"] = json!(["sign"]);
    let mut private = TestKey::es256(Some("priv")).jwk().clone();
    private["d"] = json!(b64url_encode([1u8; 32]));
    let short_rsa = json!({"kty": "RSA", "kid": "rsa1024",
        "n": b64url_encode([0xc1u8; 128]), "e": "AQAB"});
    let set = set_of(vec![
        good.jwk().clone(),
        enc,
        hs,
        no_verify,
        private,
        short_rsa,
        json!({"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}),
        json!({"kty": "EC", "crv": "P-521", "kid": "p521"}),
        json!("not an object"),
        json!(null),
    ])
    .unwrap();
    assert_eq!((set.len(), set.skipped()), (1, 9));
    assert_eq!(set.kids(), ["good"]);
}

#[test]
fn jwks_without_a_keys_array_is_refused() {
    for value in [json!({}), json!({"keys": {}}), json!({"keys": "k"})] {
        let err = KeySet::from_jwks(&doc(value.clone())).unwrap_err();
        assert_eq!(
            err,
            AuthorityError::MissingMember {
                document: Document::Jwks,
                member: "keys"
            },
            "{value}"
        );
    }
}

#[test]
fn jwks_with_no_usable_key_is_an_error() {
    let err = set_of(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]).unwrap_err();
    assert_eq!(err, AuthorityError::NoUsableKeys { skipped: 1 });
    assert_eq!(err.code(), "no_usable_keys");
    assert_eq!(
        set_of(vec![]).unwrap_err(),
        AuthorityError::NoUsableKeys { skipped: 0 }
    );
}

#[test]
fn token_without_kid_uses_the_key_only_when_the_set_is_one_key() {
    let named = set_of(vec![TestKey::es256(Some("k1")).jwk().clone()]).unwrap();
    assert_eq!(
        found_kind(named.select(None, JwsAlg::Es256)),
        KeyKind::EcP256
    );
    let unnamed = set_of(vec![TestKey::ed25519(None).jwk().clone()]).unwrap();
    assert_eq!(
        found_kind(unnamed.select(None, JwsAlg::EdDsa)),
        KeyKind::Ed25519
    );
    let two = set_of(vec![
        TestKey::es256(Some("k1")).jwk().clone(),
        TestKey::es256(None).jwk().clone(),
    ])
    .unwrap();
    assert!(matches!(
        two.select(None, JwsAlg::Es256),
        Selection::MissingKid
    ));
}

#[test]
fn key_without_kid_is_never_chosen_for_a_token_with_a_kid() {
    let unnamed = set_of(vec![TestKey::es256(None).jwk().clone()]).unwrap();
    assert!(matches!(
        unnamed.select(Some("k1"), JwsAlg::Es256),
        Selection::UnknownKid
    ));
}

#[test]
fn keys_sharing_a_kid_are_told_apart_by_alg() {
    let set = set_of(vec![
        TestKey::es256(Some("same")).jwk().clone(),
        TestKey::ed25519(Some("same")).jwk().clone(),
    ])
    .unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.kids(), ["same"]);
    assert_eq!(
        found_kind(set.select(Some("same"), JwsAlg::EdDsa)),
        KeyKind::Ed25519
    );
    assert_eq!(
        found_kind(set.select(Some("same"), JwsAlg::Es256)),
        KeyKind::EcP256
    );
    // No key fits: the first is handed out so verification reports the
    // mismatch.
    assert_eq!(
        found_kind(set.select(Some("same"), JwsAlg::Rs256)),
        KeyKind::EcP256
    );
}

#[test]
fn retry_delay_doubles_to_a_minute_and_never_exceeds_the_interval() {
    let hour = Duration::from_secs(3600);
    let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n, hour).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(retry_delay(u32::MAX, hour), Duration::from_secs(60));
    assert_eq!(
        retry_delay(7, Duration::from_secs(10)),
        Duration::from_secs(10)
    );
}

// JwksCache over loopback.

struct Setup {
    server: TestServer,
    cache: Arc<JwksCache>,
    clock: Arc<ManualClock>,
}

fn cache_for(server: &TestServer) -> (Arc<JwksCache>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let config = test_config(&server.base(), AUDIENCE);
    let cache = Arc::new(JwksCache::new(&config, clock.clone()).unwrap());
    (cache, clock)
}

async fn loaded(keys: &[&TestKey]) -> Setup {
    let server = authority_server(&jwks(keys));
    let (cache, clock) = cache_for(&server);
    cache.refresh().await.unwrap();
    Setup {
        server,
        cache,
        clock,
    }
}

#[tokio::test]
async fn refresh_reads_discovery_then_the_jwks() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    assert_eq!(s.server.count(DISCOVERY_PATH), 1);
    assert_eq!(s.server.count(JWKS_PATH), 1);
    assert!(s.cache.is_ready());
    assert_eq!(s.cache.key_ids(), ["k1"]);
    assert_eq!(s.cache.refreshes(), 1);
    assert_eq!(s.cache.refresh_failures(), 0);
    assert_eq!(s.cache.last_success(), Some(NOW));
    assert_eq!(
        s.cache.discovery().unwrap().jwks_uri(),
        s.server.url(JWKS_PATH)
    );
    let key = s.cache.key_for(Some("k1"), JwsAlg::Es256).await.unwrap();
    assert_eq!(key.kind(), KeyKind::EcP256);
}

#[tokio::test]
async fn a_configured_jwks_uri_is_fetched_without_discovery() {
    let key = TestKey::es256(Some("tx"));
    let server = TestServer::start();
    server.set("/ssf/jwks", Reply::json(&jwks(&[&key])));
    let clock = Arc::new(ManualClock::new(NOW));
    let config = test_config(&server.base(), AUDIENCE);
    let cache = Arc::new(
        JwksCache::with_jwks_uri(&config, &server.url("/ssf/jwks"), clock.clone()).unwrap(),
    );
    cache.refresh().await.unwrap();
    cache.refresh().await.unwrap();
    assert!(cache.key_for(Some("tx"), JwsAlg::Es256).await.is_ok());
    assert_eq!(server.count("/ssf/jwks"), 2);
    assert_eq!(server.count(DISCOVERY_PATH), 0);
    let mut https_only = config.clone();
    https_only.require_https_metadata = true;
    https_only.issuer = "https://transmitter.example".into();
    assert!(JwksCache::with_jwks_uri(&https_only, &server.url("/ssf/jwks"), clock).is_err());
}

#[tokio::test]
async fn keys_are_unavailable_before_the_first_load() {
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    let (cache, _clock) = cache_for(&server);
    assert!(!cache.is_ready());
    let err = cache.key_for(Some("k1"), JwsAlg::Es256).await.unwrap_err();
    assert_eq!(err, KeyLookupError::Unavailable(Unavailable::NeverLoaded));
    assert!(err.is_unavailable());
    assert_eq!(server.count(JWKS_PATH), 0);
}

#[tokio::test]
async fn unknown_kid_triggers_exactly_one_refetch_for_twenty_concurrent_lookups() {
    let k1 = TestKey::es256(Some("k1"));
    let k2 = TestKey::es256(Some("k2"));
    let s = loaded(&[&k1]).await;
    // The rotated set, served slowly so that all lookups queue on one fetch.
    s.server.set(
        JWKS_PATH,
        Reply::json(&jwks(&[&k1, &k2])).delay(Duration::from_millis(300)),
    );
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let cache = s.cache.clone();
            tokio::spawn(async move { cache.key_for(Some("k2"), JwsAlg::Es256).await })
        })
        .collect();
    for lookup in lookups {
        assert!(lookup.await.unwrap().is_ok());
    }
    assert_eq!(s.server.count(JWKS_PATH), 2);
    assert_eq!(s.cache.unknown_kid_refetches(), 1);
    // The on-demand fetch reuses discovery.
    assert_eq!(s.server.count(DISCOVERY_PATH), 1);
}

#[tokio::test]
async fn concurrent_lookups_of_a_kid_that_stays_unknown_share_one_refetch() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.server.set(
        JWKS_PATH,
        Reply::json(&jwks(&[&k1])).delay(Duration::from_millis(200)),
    );
    let lookups: Vec<_> = (0..20)
        .map(|i| {
            let cache = s.cache.clone();
            tokio::spawn(async move {
                cache
                    .key_for(Some(&format!("nope-{i}")), JwsAlg::Es256)
                    .await
            })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(
            lookup.await.unwrap().err(),
            Some(KeyLookupError::UnknownKid)
        );
    }
    assert_eq!(s.server.count(JWKS_PATH), 2);
}

#[tokio::test]
async fn second_unknown_kid_within_the_cooldown_does_not_refetch_and_after_it_does() {
    let k1 = TestKey::es256(Some("k1"));
    let k3 = TestKey::es256(Some("k3"));
    let s = loaded(&[&k1]).await;
    assert_eq!(
        s.cache
            .key_for(Some("k2"), JwsAlg::Es256)
            .await
            .unwrap_err(),
        KeyLookupError::UnknownKid
    );
    assert_eq!(s.server.count(JWKS_PATH), 2);

    s.server.set(JWKS_PATH, Reply::json(&jwks(&[&k1, &k3])));
    s.clock.advance(9); // cooldown is 10 s
    let err = s
        .cache
        .key_for(Some("k3"), JwsAlg::Es256)
        .await
        .unwrap_err();
    assert_eq!(err, KeyLookupError::UnknownKid);
    assert_eq!(err.code(), "unknown_kid");
    assert_eq!(s.server.count(JWKS_PATH), 2);

    s.clock.advance(1);
    assert!(s.cache.key_for(Some("k3"), JwsAlg::Es256).await.is_ok());
    assert_eq!(s.server.count(JWKS_PATH), 3);
    assert_eq!(s.cache.unknown_kid_refetches(), 2);
}

#[tokio::test]
async fn token_without_kid_against_several_keys_does_not_refetch() {
    let s = loaded(&[&TestKey::es256(Some("a")), &TestKey::es256(Some("b"))]).await;
    assert_eq!(
        s.cache.key_for(None, JwsAlg::Es256).await.unwrap_err(),
        KeyLookupError::MissingKid
    );
    assert_eq!(s.server.count(JWKS_PATH), 1);
}

#[tokio::test]
async fn cached_keys_keep_working_when_the_authority_goes_down() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.server.stop();
    let err = s.cache.refresh().await.unwrap_err();
    assert_eq!(
        err,
        AuthorityError::Fetch {
            document: Document::Discovery,
            source: FetchError::Transport
        }
    );
    assert_eq!(s.cache.refresh_failures(), 1);
    s.clock.advance(s.cache.max_age());
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
    assert!(s.cache.is_ready());
}

#[tokio::test]
async fn unknown_kid_while_the_authority_is_down_is_unavailable_not_invalid() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.server.set(JWKS_PATH, Reply::status(503, "{}"));
    let unavailable = KeyLookupError::Unavailable(Unavailable::RefetchFailed);
    assert_eq!(
        s.cache.key_for(Some("k2"), JwsAlg::Es256).await.err(),
        Some(unavailable)
    );
    // Within the cooldown the answer stays the same, without a fetch.
    assert_eq!(
        s.cache.key_for(Some("k9"), JwsAlg::Es256).await.err(),
        Some(unavailable)
    );
    assert_eq!(s.server.count(JWKS_PATH), 2);
    // Known keys are unaffected.
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
}

#[tokio::test]
async fn keys_past_max_stale_are_unavailable_until_a_refresh_succeeds() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.server.set(JWKS_PATH, Reply::status(500, "{}"));
    // max_age = refresh (300) + max_stale (600).
    assert_eq!(s.cache.max_age(), 900);
    s.clock.advance(900);
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
    s.clock.advance(1);
    assert!(s.cache.refresh().await.is_err());
    assert!(!s.cache.is_ready());
    let err = s
        .cache
        .key_for(Some("k1"), JwsAlg::Es256)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        KeyLookupError::Unavailable(Unavailable::Stale {
            age: 901,
            max_age: 900
        })
    );
    assert_eq!(err.code(), "keys_unavailable");
    assert_eq!(
        err.to_string(),
        "authority signing keys unavailable: last successful jwks fetch was 901 s ago, \
         more than the 900 s allowed"
    );
    assert_eq!(s.cache.age(), Some(901));

    s.server.set(JWKS_PATH, Reply::json(&jwks(&[&k1])));
    s.cache.refresh().await.unwrap();
    assert!(s.cache.is_ready());
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
}

#[tokio::test]
async fn refresh_with_no_usable_key_keeps_the_previous_keys() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.server.set(
        JWKS_PATH,
        Reply::json(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
    );
    assert_eq!(
        s.cache.refresh().await,
        Err(AuthorityError::NoUsableKeys { skipped: 1 })
    );
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
    assert_eq!(s.cache.key_ids(), ["k1"]);
    assert_eq!((s.cache.refreshes(), s.cache.refresh_failures()), (1, 1));
}

#[tokio::test]
async fn scheduled_refresh_replaces_the_key_set_whole() {
    let k1 = TestKey::es256(Some("k1"));
    let k2 = TestKey::ed25519(Some("k2"));
    let s = loaded(&[&k1]).await;
    s.server.set(JWKS_PATH, Reply::json(&jwks(&[&k2])));
    s.clock.advance(300);
    s.cache.refresh().await.unwrap();
    assert_eq!(s.cache.key_ids(), ["k2"]);
    assert_eq!(s.cache.last_success(), Some(NOW + 300));
    // The withdrawn key is gone (one refetch confirms it).
    assert_eq!(
        s.cache.key_for(Some("k1"), JwsAlg::Es256).await.err(),
        Some(KeyLookupError::UnknownKid)
    );
    assert_eq!(s.server.count(DISCOVERY_PATH), 2);
}

#[tokio::test]
async fn discovery_with_a_mismatched_issuer_loads_no_keys() {
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    server.set(
        DISCOVERY_PATH,
        Reply::json(
            &json!({"issuer": "http://127.0.0.1:1", "jwks_uri": server.url(JWKS_PATH)}).to_string(),
        ),
    );
    let (cache, _clock) = cache_for(&server);
    assert_eq!(cache.refresh().await, Err(AuthorityError::IssuerMismatch));
    assert_eq!(server.count(JWKS_PATH), 0);
    assert!(!cache.is_ready());
    assert!(cache.discovery().is_none());
}

#[tokio::test]
async fn http_jwks_uri_is_refused_when_https_metadata_is_required() {
    // With require_https_metadata an http issuer is refused up front...
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    let mut config = test_config(&server.base(), AUDIENCE);
    config.require_https_metadata = true;
    let err = JwksCache::new(&config, Arc::new(ManualClock::new(NOW))).unwrap_err();
    assert_eq!(err, AuthorityError::BadIssuer);
    // ...and an https issuer whose document names an http jwks_uri is refused.
    let d = doc(json!({"issuer": "https://a.example", "jwks_uri": "http://a.example/jwks"}));
    assert_eq!(
        Discovery::from_document(&d, "https://a.example", true),
        Err(AuthorityError::InsecureMetadata("jwks_uri"))
    );
    assert_eq!(server.count(DISCOVERY_PATH), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_loop_retries_soon_after_a_failure() {
    let k1 = TestKey::es256(Some("k1"));
    let server = authority_server(&jwks(&[&k1]));
    server.set(JWKS_PATH, Reply::status(500, "{}"));
    let (cache, _clock) = cache_for(&server);
    let task = tokio::spawn(cache.clone().run_refresh_loop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cache.refresh_failures() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.refresh_failures() >= 1);
    server.set(JWKS_PATH, Reply::json(&jwks(&[&k1])));
    // The first retry comes after one second, not after the 300 s interval.
    while !cache.is_ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(cache.is_ready());
    assert_eq!(cache.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_does_not_queue_behind_a_slow_scheduled_refresh() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.server.set(
        JWKS_PATH,
        Reply::json(&jwks(&[&k1])).delay(Duration::from_secs(4)),
    );
    let refresh = {
        let cache = s.cache.clone();
        tokio::spawn(async move { cache.refresh().await })
    };
    // Wait until the scheduled refresh is at the Authority (holding the gate).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.server.count(JWKS_PATH) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "refresh never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    let lookups: Vec<_> = (0..50)
        .map(|i| {
            let cache = s.cache.clone();
            tokio::spawn(async move {
                cache
                    .key_for(Some(&format!("storm-{i}")), JwsAlg::Es256)
                    .await
            })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(
            lookup.await.unwrap().err(),
            Some(KeyLookupError::Unavailable(Unavailable::Busy))
        );
    }
    // Answered after the wait budget (0.5 s), long before the fetch ends
    // (it gives up at the 2 s HTTP timeout; the Authority is slower).
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "unknown kids waited {:?}",
        started.elapsed()
    );
    assert_eq!(s.cache.unknown_kid_busy(), 50);
    // Known kids never waited, and do not now.
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
    assert!(refresh.await.unwrap().is_err());
    // No on-demand fetch was made behind the scheduled one.
    assert_eq!(s.cache.unknown_kid_refetches(), 0);
    assert_eq!(s.server.count(JWKS_PATH), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_random_kids_costs_one_fetch_per_cooldown_and_is_answered_at_once() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    let lookups: Vec<_> = (0..2000)
        .map(|i| {
            let cache = s.cache.clone();
            tokio::spawn(async move {
                cache
                    .key_for(Some(&format!("random-{i}")), JwsAlg::Es256)
                    .await
            })
        })
        .collect();
    for lookup in lookups {
        let answer = lookup.await.unwrap().err();
        // Unknown, or (for the few that raced the one fetch and waited
        // past the budget on a slow machine) busy; never found.
        assert!(
            matches!(
                answer,
                Some(KeyLookupError::UnknownKid)
                    | Some(KeyLookupError::Unavailable(Unavailable::Busy))
            ),
            "{answer:?}"
        );
    }
    assert_eq!(s.cache.unknown_kid_refetches(), 1);
    assert_eq!(s.server.count(JWKS_PATH), 2);
    // After the cooldown, one more.
    s.clock.advance(10);
    for i in 0..100 {
        let _ = s
            .cache
            .key_for(Some(&format!("again-{i}")), JwsAlg::Es256)
            .await;
    }
    assert_eq!(s.server.count(JWKS_PATH), 3);
}

// Last-known-good: persisted on fetch, loaded at start.

fn persisting_cache(server: &TestServer, dir: &std::path::Path, now: u64) -> Arc<JwksCache> {
    let mut config = test_config(&server.base(), AUDIENCE);
    config.state_dir = Some(dir.to_owned());
    Arc::new(JwksCache::new(&config, Arc::new(ManualClock::new(now))).unwrap())
}

#[tokio::test]
async fn persisted_keys_serve_a_restart_while_the_authority_is_down_with_age_from_the_fetch() {
    let dir = stella_test_support::temp::TempDir::new("lkg-restart");
    let k1 = TestKey::es256(Some("k1"));
    let server = authority_server(&jwks(&[&k1]));
    let first = persisting_cache(&server, dir.path(), NOW);
    first.refresh().await.unwrap();
    assert_eq!(first.lkg_write_failures(), 0);
    server.stop();

    // A new process, 100 s later, with the Authority down.
    let restarted = persisting_cache(&server, dir.path(), NOW + 100);
    assert!(!restarted.is_ready());
    restarted.load_persisted();
    assert!(restarted.is_ready());
    assert_eq!(restarted.age(), Some(100));
    assert_eq!(restarted.last_success(), Some(NOW));
    assert_eq!(restarted.lkg_loads(What::Jwks, true), 1);
    assert_eq!(restarted.lkg_loads(What::Discovery, true), 1);
    assert_eq!(
        restarted.discovery().unwrap().jwks_uri(),
        server.url(JWKS_PATH)
    );
    assert!(restarted.refresh().await.is_err());
    let key = restarted.key_for(Some("k1"), JwsAlg::Es256).await.unwrap();
    assert_eq!(key.kind(), KeyKind::EcP256);

    // Past max-stale counted from the original fetch: unavailable, as for
    // keys fetched by this process.
    let late = persisting_cache(&server, dir.path(), NOW + restarted.max_age() + 1);
    late.load_persisted();
    assert!(!late.is_ready());
    assert!(matches!(
        late.key_for(Some("k1"), JwsAlg::Es256).await.unwrap_err(),
        KeyLookupError::Unavailable(Unavailable::Stale { .. })
    ));
}

#[tokio::test]
async fn persisted_jwks_from_another_issuer_is_ignored() {
    let dir = stella_test_support::temp::TempDir::new("lkg-foreign");
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    let ours = LkgStore::new(dir.path(), &server.base());
    // Another issuer's record, under this issuer's file name.
    LkgStore::new(dir.path(), "https://other-authority.example")
        .save(What::Jwks, &doc(json!(jwks_value(&["k1"]))), NOW)
        .unwrap();
    std::fs::rename(
        LkgStore::new(dir.path(), "https://other-authority.example").path(What::Jwks),
        ours.path(What::Jwks),
    )
    .unwrap();
    server.stop();
    let cache = persisting_cache(&server, dir.path(), NOW + 1);
    cache.load_persisted();
    assert!(!cache.is_ready());
    assert_eq!(cache.lkg_loads(What::Jwks, false), 1);
    assert_eq!(cache.lkg_loads(What::Jwks, true), 0);
    assert_eq!(
        cache.key_for(Some("k1"), JwsAlg::Es256).await.unwrap_err(),
        KeyLookupError::Unavailable(Unavailable::NeverLoaded)
    );
}

fn jwks_value(kids: &[&str]) -> Value {
    let keys: Vec<TestKey> = kids.iter().map(|k| TestKey::es256(Some(k))).collect();
    serde_json::from_str(&jwks(&keys.iter().collect::<Vec<_>>())).unwrap()
}

#[tokio::test]
async fn persisted_documents_that_fail_the_fetch_checks_are_ignored() {
    let dir = stella_test_support::temp::TempDir::new("lkg-invalid");
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    let store = LkgStore::new(dir.path(), &server.base());
    // A JWKS with no usable key; metadata naming another issuer.
    store
        .save(
            What::Jwks,
            &doc(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
            NOW,
        )
        .unwrap();
    store
        .save(
            What::Discovery,
            &doc(json!({"issuer": "https://other.example", "jwks_uri": "https://other.example/j"})),
            NOW,
        )
        .unwrap();
    server.stop();
    let cache = persisting_cache(&server, dir.path(), NOW + 1);
    cache.load_persisted();
    assert!(!cache.is_ready());
    assert!(cache.discovery().is_none());
    assert_eq!(cache.lkg_loads(What::Jwks, false), 1);
    assert_eq!(cache.lkg_loads(What::Discovery, false), 1);
}

#[tokio::test]
async fn persisted_record_fetched_in_the_future_or_corrupt_is_ignored() {
    let dir = stella_test_support::temp::TempDir::new("lkg-future");
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    let store = LkgStore::new(dir.path(), &server.base());
    store
        .save(What::Jwks, &doc(jwks_value(&["k1"])), NOW + 3600)
        .unwrap();
    std::fs::write(store.path(What::Discovery), b"{\"format\":").unwrap();
    server.stop();
    let cache = persisting_cache(&server, dir.path(), NOW);
    cache.load_persisted();
    assert!(!cache.is_ready());
    assert_eq!(cache.lkg_loads(What::Jwks, false), 1);
    assert_eq!(cache.lkg_loads(What::Discovery, false), 1);
}

#[tokio::test]
async fn a_fresh_fetch_replaces_the_loaded_keys_and_rewrites_the_state() {
    let dir = stella_test_support::temp::TempDir::new("lkg-replace");
    let server = authority_server(&jwks(&[&TestKey::es256(Some("old"))]));
    persisting_cache(&server, dir.path(), NOW)
        .refresh()
        .await
        .unwrap();
    server.set(
        JWKS_PATH,
        Reply::json(&jwks(&[&TestKey::es256(Some("new"))])),
    );
    let restarted = persisting_cache(&server, dir.path(), NOW + 50);
    restarted.load_persisted();
    assert_eq!(restarted.key_ids(), ["old"]);
    restarted.refresh().await.unwrap();
    assert_eq!(restarted.key_ids(), ["new"]);
    assert_eq!(restarted.age(), Some(0));
    let (saved, fetched_at) = LkgStore::new(dir.path(), &server.base())
        .load(What::Jwks, NOW + 50)
        .unwrap()
        .unwrap();
    assert_eq!(fetched_at, NOW + 50);
    assert_eq!(KeySet::from_jwks(&saved).unwrap().kids(), ["new"]);
}

#[tokio::test]
async fn a_failed_state_write_is_counted_and_never_fails_the_refresh() {
    let dir = stella_test_support::temp::TempDir::new("lkg-write-fails");
    let server = authority_server(&jwks(&[&TestKey::es256(Some("k1"))]));
    let gone = dir.join("removed");
    std::fs::create_dir(&gone).unwrap();
    let cache = persisting_cache(&server, &gone, NOW);
    std::fs::remove_dir(&gone).unwrap();
    cache.refresh().await.unwrap();
    assert!(cache.is_ready());
    // Discovery and JWKS both failed to persist.
    assert_eq!(cache.lkg_write_failures(), 2);
}

#[tokio::test]
async fn a_token_needing_stale_keys_starts_one_fetch_so_a_returned_authority_serves_at_once() {
    let k1 = TestKey::es256(Some("k1"));
    let s = loaded(&[&k1]).await;
    s.clock.advance(s.cache.max_age() + 1);
    let fetches = s.server.count(JWKS_PATH);
    // The Authority is back (it serves again), but the refresh loop's next
    // retry is far: the first request is refused and starts the fetch.
    let err = s
        .cache
        .key_for(Some("k1"), JwsAlg::Es256)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        KeyLookupError::Unavailable(Unavailable::Stale { .. })
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !s.cache.is_ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_ok());
    assert_eq!(s.server.count(JWKS_PATH), fetches + 1);
    // Down again: of many refused lookups within one cooldown, one fetches.
    s.server.set(JWKS_PATH, Reply::status(500, "{}"));
    s.clock.advance(s.cache.max_age() + 1);
    for _ in 0..5 {
        assert!(s.cache.key_for(Some("k1"), JwsAlg::Es256).await.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.server.count(JWKS_PATH), fetches + 2);
}

#[test]
fn the_unknown_kid_cooldown_allows_one_fetch_per_cooldown() {
    // (last attempt, now, cooldown) -> may fetch
    for (last, now, cooldown, want) in [
        (None, 0, 10, true),
        (Some(100), 100, 10, false),
        (Some(100), 109, 10, false),
        (Some(100), 110, 10, true),
        (Some(100), 99, 10, false), // the clock went back
        (Some(u64::MAX - 1), u64::MAX - 1, 10, false), // saturating: no wrap
        (Some(u64::MAX - 1), u64::MAX, 10, true),
        (Some(100), 100, 0, true),
    ] {
        assert_eq!(
            cooldown_over(last, now, cooldown),
            want,
            "{last:?} {now} {cooldown}"
        );
    }
    let od = OnDemand::default();
    assert!(od.try_claim(50, 10), "first claim");
    assert!(!od.try_claim(50, 10), "second claim in the same second");
    assert!(!od.try_claim(59, 10), "within the cooldown");
    assert!(od.try_claim(60, 10), "the next cooldown");
}
