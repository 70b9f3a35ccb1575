//! The shared DPoP replay store against a real `redis-server` on loopback
//! (docs/design.md §3.3, §3.9): `SET NX PX` makes insertion atomic across
//! gateway nodes, entries expire after their TTL, and an outage fails closed.
//!
//! TLS (`rediss://`, with a client certificate where the server asks for
//! one), a password fixed on the server while the gateway runs, a master
//! found through Sentinel across a failover, and a restart with idle
//! connections are each run against the real server too.
//!
//! Each test starts its own server on a free port (redis-server cannot bind
//! port 0 and report it, so a port is picked by binding 127.0.0.1:0 and
//! releasing it, with a retry if another process takes it first) and waits
//! until it answers PING.

mod common;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stella_authn::dpop::{check_proof, DpopRules, ProofInput};
use stella_authn::replay::{
    Fresh, RedisReplayStore, RedisTls, ReplayStore, ReplayStoreError, Unavailable,
    DEFAULT_KEY_PREFIX,
};
use stella_core::identity::Binding;
use stella_test_support::{free_port, wait_until};

const TTL: Duration = Duration::from_secs(60);

/// A redis-server child process, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Redis {
        for _ in 0..5 {
            if let Some(redis) = Redis::try_start(free_port(), extra) {
                return redis;
            }
        }
        panic!("redis-server did not start (is it installed? apt-get install -y redis-server)");
    }

    fn try_start(port: u16, extra: &[&str]) -> Option<Redis> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server: {e}"));
        let mut redis = Redis { child, port };
        let up = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(_)) = redis.child.try_wait() {
                return true; // exited: stop waiting, reported below
            }
            raw_command(port, "PING").is_some()
        });
        let exited = matches!(redis.child.try_wait(), Ok(Some(_)));
        (up && !exited).then_some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: an abrupt outage.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one inline command and returns the first reply line, if any.
fn raw_command(port: u16, command: &str) -> Option<String> {
    reply_lines(port, &[command], 1).and_then(|mut lines| lines.pop())
}

/// Sends inline commands on one connection and returns the first `n`
/// reply lines.
fn reply_lines(port: u16, commands: &[&str], n: usize) -> Option<Vec<String>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    for command in commands {
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    }
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while lines.len() < n {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
        if line.ends_with(b"\r\n") {
            lines.push(String::from_utf8_lossy(&line).trim_end().to_owned());
            line.clear();
        }
    }
    Some(lines)
}

fn key(n: u8) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[0] = n;
    key[31] = 0xee;
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_insert_is_inserted_and_second_is_replayed() {
    let redis = Redis::start();
    let store = RedisReplayStore::new(&redis.url()).unwrap();
    assert_eq!(store.ping().await, Ok(()));
    assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Inserted));
    assert_eq!(store.insert_once(key(1), TTL).await, Ok(Fresh::Replayed));
    assert_eq!(store.insert_once(key(2), TTL).await, Ok(Fresh::Inserted));
    let stats = store.stats().snapshot();
    assert_eq!((stats.inserted, stats.replayed), (2, 1));
    assert_eq!(stats.latency_count, 3);
    assert!(stats.errors.iter().all(|(_, n)| *n == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_is_the_prefixed_hex_hash_with_a_millisecond_ttl() {
    let redis = Redis::start();
    let store = RedisReplayStore::new(&redis.url()).unwrap();
    assert_eq!(
        store.insert_once(key(3), Duration::from_secs(66)).await,
        Ok(Fresh::Inserted)
    );
    let name = format!("{DEFAULT_KEY_PREFIX}{}", hex(&key(3)));
    let pttl: i64 = raw_command(redis.port, &format!("PTTL {name}"))
        .and_then(|r| r.strip_prefix(':').and_then(|n| n.parse().ok()))
        .unwrap();
    assert!((60_000..=66_000).contains(&pttl), "{pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_expires_after_a_short_ttl() {
    let redis = Redis::start();
    let store = RedisReplayStore::new(&redis.url()).unwrap();
    let ttl = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(store.insert_once(key(4), ttl).await, Ok(Fresh::Inserted));
    assert_eq!(store.insert_once(key(4), ttl).await, Ok(Fresh::Replayed));
    // Poll (a replay attempt does not extend the TTL: NX never writes).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.insert_once(key(4), ttl).await {
            Ok(Fresh::Inserted) => break,
            Ok(Fresh::Replayed) => {
                assert!(Instant::now() < deadline, "key never expired");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Never before its TTL.
    assert!(started.elapsed() >= ttl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_inserts_across_two_nodes_yield_exactly_one_inserted() {
    let redis = Redis::start();
    // Two stores: what two gateway processes sharing one Redis have.
    let nodes = [
        Arc::new(RedisReplayStore::new(&redis.url()).unwrap()),
        Arc::new(RedisReplayStore::new(&redis.url()).unwrap()),
    ];
    for node in &nodes {
        node.ping().await.unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let node = nodes[i % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                node.insert_once(key(5), TTL).await
            })
        })
        .collect();
    let mut inserted = 0;
    let mut replayed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Fresh::Inserted) => inserted += 1,
            Ok(Fresh::Replayed) => replayed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((inserted, replayed), (1, 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_proof_is_rejected_on_second_node() {
    let v: Value = serde_json::from_str(include_str!(
        "../../crates/authn/src/dpop/testdata/rfc-vectors.json"
    ))
    .unwrap();
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap().to_owned();
    let base = "/rfc9449/resource_request_proof";
    let now = v
        .pointer(&format!("{base}/now"))
        .and_then(Value::as_u64)
        .unwrap();
    let (proof, token, url) = (
        text(&format!("{base}/proof")),
        text("/rfc9449/access_token"),
        text(&format!("{base}/url")),
    );
    let binding = Binding::Jkt(text(&format!("{base}/cnf_jkt")));
    let input = ProofInput {
        method: "GET",
        target_uri: &url,
        proof: &proof,
        access_token: &token,
        access_token_hash: None,
        binding: &binding,
        nonce: None,
    };
    let rules = DpopRules::default();

    let redis = Redis::start();
    let node_a = RedisReplayStore::new(&redis.url()).unwrap();
    let node_b = RedisReplayStore::new(&redis.url()).unwrap();
    let on_a = check_proof(&input, &rules, now).unwrap();
    assert_eq!(
        node_a
            .insert_once(on_a.replay_key(), rules.replay_ttl())
            .await,
        Ok(Fresh::Inserted)
    );
    // The same proof sent to the other node a second later.
    let on_b = check_proof(&input, &rules, now + 1).unwrap();
    assert_eq!(
        node_b
            .insert_once(on_b.replay_key(), rules.replay_ttl())
            .await,
        Ok(Fresh::Replayed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_is_unavailable_not_inserted_and_recovery_reconnects() {
    let mut redis = Redis::start();
    let port = redis.port;
    let store = RedisReplayStore::new(&redis.url())
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    // A pooled connection exists before the outage.
    assert_eq!(store.insert_once(key(6), TTL).await, Ok(Fresh::Inserted));

    redis.kill();
    for n in 7..10 {
        match store.insert_once(key(n), TTL).await {
            Err(ReplayStoreError::Unavailable(_)) => {}
            other => panic!("insert during outage gave {other:?}"),
        }
    }
    assert!(matches!(
        store.ping().await,
        Err(ReplayStoreError::Unavailable(_))
    ));
    let stats = store.stats().snapshot();
    assert_eq!(stats.inserted, 1);
    assert!(stats.errors.iter().map(|(_, n)| n).sum::<u64>() >= 4);

    // Back on the same port (empty: a restart without persistence).
    let _restarted = Redis::try_start(port, &[]).expect("redis restarts on its port");
    assert_eq!(store.insert_once(key(7), TTL).await, Ok(Fresh::Inserted));
    assert_eq!(store.insert_once(key(7), TTL).await, Ok(Fresh::Replayed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_redis_takes_the_right_password_only() {
    let redis = Redis::start_with(&["--requirepass", "s3cret@pw"]);
    let url = |userinfo: &str| format!("redis://{userinfo}@127.0.0.1:{}", redis.port);

    let right = RedisReplayStore::new(&url(":s3cret%40pw")).unwrap();
    assert_eq!(right.insert_once(key(1), TTL).await, Ok(Fresh::Inserted));
    assert_eq!(right.insert_once(key(1), TTL).await, Ok(Fresh::Replayed));
    // Redis 6+ ACL form with the default user.
    let with_user = RedisReplayStore::new(&url("default:s3cret%40pw")).unwrap();
    assert_eq!(
        with_user.insert_once(key(1), TTL).await,
        Ok(Fresh::Replayed)
    );

    let wrong = RedisReplayStore::new(&url(":wrong")).unwrap();
    assert_eq!(
        wrong.insert_once(key(2), TTL).await,
        Err(ReplayStoreError::Unavailable(Unavailable::Auth))
    );
    let none = RedisReplayStore::new(&format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    assert_eq!(
        none.insert_once(key(2), TTL).await,
        Err(ReplayStoreError::Unavailable(Unavailable::Auth))
    );
    // Neither refused attempt stored the key.
    assert_eq!(right.insert_once(key(2), TTL).await, Ok(Fresh::Inserted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_in_the_url_is_selected() {
    let redis = Redis::start();
    let db3 = RedisReplayStore::new(&format!("{}/3", redis.url())).unwrap();
    let db0 = RedisReplayStore::new(&redis.url()).unwrap();
    assert_eq!(db3.insert_once(key(8), TTL).await, Ok(Fresh::Inserted));
    assert_eq!(db0.insert_once(key(8), TTL).await, Ok(Fresh::Inserted));
    assert_eq!(db3.insert_once(key(8), TTL).await, Ok(Fresh::Replayed));
    let name = format!("{DEFAULT_KEY_PREFIX}{}", hex(&key(8)));
    assert_eq!(
        raw_command(redis.port, &format!("EXISTS {name}")).as_deref(),
        Some(":1")
    );

    // A database the server does not have is an outage, not a pass.
    let missing = RedisReplayStore::new(&format!("{}/999", redis.url())).unwrap();
    assert_eq!(
        missing.insert_once(key(9), TTL).await,
        Err(ReplayStoreError::Unavailable(Unavailable::ServerError))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_connections_are_idle_costs_no_failed_insert() {
    let mut redis = Redis::start();
    let port = redis.port;
    let store = Arc::new(RedisReplayStore::new(&redis.url()).unwrap());
    // Several operations at once, as under load.
    let tasks: Vec<_> = (0..16u8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_once(key(100 + n), TTL).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(Fresh::Inserted));
    }
    // The server restarts while the store is idle: its connections are
    // closed under it.
    redis.kill();
    let _restarted = Redis::try_start(port, &[]).expect("redis restarts on its port");
    for n in 0..4 {
        assert_eq!(
            store.insert_once(key(120 + n), TTL).await,
            Ok(Fresh::Inserted),
            "insert {n} after the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_set_right_on_the_server_later_is_picked_up_by_the_same_store() {
    let redis = Redis::start_with(&["--requirepass", "old-pw"]);
    let store =
        RedisReplayStore::new(&format!("redis://:new-pw@127.0.0.1:{}", redis.port)).unwrap();
    assert_eq!(
        store.insert_once(key(30), TTL).await,
        Err(ReplayStoreError::Unavailable(Unavailable::Auth))
    );
    // The operator gives the server the password the gateway has.
    let replies = reply_lines(
        redis.port,
        &["AUTH old-pw", "CONFIG SET requirepass new-pw"],
        2,
    );
    assert_eq!(replies, Some(vec!["+OK".to_owned(), "+OK".to_owned()]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.insert_once(key(30), TTL).await {
            Ok(Fresh::Inserted) => break,
            Err(ReplayStoreError::Unavailable(Unavailable::Auth)) => {
                assert!(Instant::now() < deadline, "the new password is never used");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.insert_once(key(30), TTL).await, Ok(Fresh::Replayed));
}

/// The test PKI's files as the configuration hands them to the store.
fn tls_files(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> RedisTls {
    RedisTls {
        ca_pem: Some(std::fs::read(ca).unwrap()),
        client_cert_pem: client.map(|(cert, _)| std::fs::read(cert).unwrap()),
        client_key_pem: client.map(|(_, key)| zeroize::Zeroizing::new(std::fs::read(key).unwrap())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_is_used_only_with_a_trusted_certificate() {
    let dir = common::TempDir::new("redis-tls");
    let pki = common::Pki::generate(&dir);
    let redis = common::RedisServer::start_tls(&pki, false, &["--requirepass", "pw"]);
    let tls_port = redis.tls_port.unwrap();

    let store =
        RedisReplayStore::with_tls(&redis.tls_url(":pw"), &tls_files(&pki.ca, None)).unwrap();
    assert_eq!(store.ping().await, Ok(()));
    assert_eq!(store.insert_once(key(40), TTL).await, Ok(Fresh::Inserted));
    assert_eq!(store.insert_once(key(40), TTL).await, Ok(Fresh::Replayed));
    // The entry is on the server (read over its plain port).
    let name = format!("{DEFAULT_KEY_PREFIX}{}", hex(&key(40)));
    assert_eq!(
        reply_lines(redis.port, &["AUTH pw", &format!("EXISTS {name}")], 2),
        Some(vec!["+OK".to_owned(), ":1".to_owned()])
    );

    // Another CA, the platform roots, or plain text to the TLS port:
    // unavailable, and nothing stored.
    let refused = [
        RedisReplayStore::with_tls(&redis.tls_url(":pw"), &tls_files(&pki.other_ca, None)).unwrap(),
        RedisReplayStore::new(&redis.tls_url(":pw")).unwrap(),
        RedisReplayStore::new(&format!("redis://:pw@127.0.0.1:{tls_port}")).unwrap(),
    ];
    for store in refused {
        match store.insert_once(key(41), TTL).await {
            Err(ReplayStoreError::Unavailable(_)) => {}
            other => panic!("{store:?} gave {other:?}"),
        }
    }
    let name = format!("{DEFAULT_KEY_PREFIX}{}", hex(&key(41)));
    assert_eq!(
        reply_lines(redis.port, &["AUTH pw", &format!("EXISTS {name}")], 2),
        Some(vec!["+OK".to_owned(), ":0".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_that_requires_a_client_certificate_takes_the_configured_one() {
    let dir = common::TempDir::new("redis-mtls");
    let pki = common::Pki::generate(&dir);
    let redis = common::RedisServer::start_tls(&pki, true, &[]);
    let with_cert = RedisReplayStore::with_tls(
        &redis.tls_url(""),
        &tls_files(&pki.ca, Some((&pki.client_cert, &pki.client_key))),
    )
    .unwrap();
    assert_eq!(
        with_cert.insert_once(key(42), TTL).await,
        Ok(Fresh::Inserted)
    );

    let without =
        RedisReplayStore::with_tls(&redis.tls_url(""), &tls_files(&pki.ca, None)).unwrap();
    match without.insert_once(key(43), TTL).await {
        Err(ReplayStoreError::Unavailable(_)) => {}
        other => panic!("without a client certificate: {other:?}"),
    }
    let from_other_ca = RedisReplayStore::with_tls(
        &redis.tls_url(""),
        &tls_files(
            &pki.ca,
            Some((&pki.other_client_cert, &pki.other_client_key)),
        ),
    )
    .unwrap();
    match from_other_ca.insert_once(key(43), TTL).await {
        Err(ReplayStoreError::Unavailable(_)) => {}
        other => panic!("with a client certificate of another CA: {other:?}"),
    }
    assert_eq!(
        with_cert.insert_once(key(43), TTL).await,
        Ok(Fresh::Inserted)
    );
}

/// A `redis-server --sentinel` watching one master, killed when dropped.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: common::TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let dir = common::TempDir::new("sentinel");
        for _ in 0..5 {
            let port = free_port();
            // Sentinel rewrites its file: it must be writable.
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor stella 127.0.0.1 {master_port} 1\n\
                     sentinel down-after-milliseconds stella 1000\n\
                     sentinel failover-timeout stella 5000\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("run redis-server --sentinel");
            let up = wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_))) || raw_command(port, "PING").is_some()
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Sentinel {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis sentinel did not start");
    }

    /// The port of the master the sentinel names now.
    fn master_port(&self) -> Option<u16> {
        let lines = reply_lines(self.port, &["SENTINEL GET-MASTER-ADDR-BY-NAME stella"], 5)?;
        lines.get(4)?.parse().ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_url_finds_the_master_and_follows_a_failover() {
    let master = Redis::start();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinel = Sentinel::start(master.port);
    let store = RedisReplayStore::new(&format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/stella",
        free_port(), // a sentinel that is down: the next one is asked
        sentinel.port
    ))
    .unwrap()
    .with_timeout(Duration::from_secs(2));
    assert_eq!(store.insert_once(key(50), TTL).await, Ok(Fresh::Inserted));
    let name = format!("{DEFAULT_KEY_PREFIX}{}", hex(&key(50)));
    assert_eq!(
        raw_command(master.port, &format!("EXISTS {name}")).as_deref(),
        Some(":1")
    );

    // The replica has the entry, then becomes the master.
    assert!(wait_until(Duration::from_secs(20), || {
        raw_command(replica.port, &format!("EXISTS {name}")).as_deref() == Some(":1")
    }));
    assert!(
        wait_until(Duration::from_secs(30), || {
            raw_command(sentinel.port, "SENTINEL FAILOVER stella").as_deref() == Some("+OK")
        }),
        "sentinel never started a failover"
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            sentinel.master_port() == Some(replica.port)
        }),
        "the replica never became the master"
    );

    // The store moves to the new master: a replayed key stays replayed,
    // and new keys land there. Errors are allowed only while it moves.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u32;
    loop {
        n += 1;
        let mut fresh = key(51);
        fresh[1..5].copy_from_slice(&n.to_be_bytes());
        match store.insert_once(fresh, TTL).await {
            Ok(Fresh::Inserted) => {
                let name = format!("{DEFAULT_KEY_PREFIX}{}", hex(&fresh));
                // Written to the new master, not the demoted one.
                if raw_command(replica.port, &format!("EXISTS {name}")).as_deref() == Some(":1") {
                    break;
                }
            }
            Ok(Fresh::Replayed) => panic!("a fresh key was reported as replayed"),
            Err(ReplayStoreError::Unavailable(_)) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the store never used the new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.insert_once(key(50), TTL).await, Ok(Fresh::Replayed));
}

/// Latency figures for docs/dependencies.md (Redis section), not a check: run with
/// `cargo nextest run --workspace --all-targets --run-ignored only -E
/// 'test(insert_latency_figures)' --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, printed; not a pass/fail check"]
async fn insert_latency_figures() {
    let redis = Redis::start();
    let store = Arc::new(RedisReplayStore::new(&redis.url()).unwrap());
    store.ping().await.unwrap();
    let fresh = |n: u32| {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    };
    // One at a time.
    let mut one = Vec::new();
    for n in 0..5_000u32 {
        let started = Instant::now();
        assert_eq!(store.insert_once(fresh(n), TTL).await, Ok(Fresh::Inserted));
        one.push(started.elapsed());
    }
    // 32 at a time, as under load.
    let started = Instant::now();
    let tasks: Vec<_> = (0..32u32)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut took = Vec::new();
                for i in 0..500u32 {
                    let n = 1_000_000 + t * 1_000 + i;
                    let began = Instant::now();
                    assert_eq!(store.insert_once(fresh(n), TTL).await, Ok(Fresh::Inserted));
                    took.push(began.elapsed());
                }
                took
            })
        })
        .collect();
    let mut many = Vec::new();
    for task in tasks {
        many.extend(task.await.unwrap());
    }
    let wall = started.elapsed();
    let report = |name: &str, mut v: Vec<Duration>| {
        v.sort();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        println!(
            "{name}: n={} p50={:?} p99={:?} max={:?}",
            v.len(),
            at(0.5),
            at(0.99),
            v[v.len() - 1]
        );
    };
    report("sequential", one);
    report("32 concurrent", many);
    println!(
        "32 concurrent throughput: {:.0} inserts/s",
        16_000.0 / wall.as_secs_f64()
    );
}
