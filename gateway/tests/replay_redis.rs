//! The shared DPoP replay store against a real `redis-server` on loopback
//! (DESIGN 3.3, 3.9): `SET NX PX` makes insertion atomic across gateway
//! nodes, entries expire after their TTL, and an outage fails closed.
//!
//! Each test starts its own server on a free port (redis-server cannot bind
//! port 0 and report it, so a port is picked by binding 127.0.0.1:0 and
//! releasing it, with a retry if another process takes it first) and waits
//! until it answers PING.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stella_gateway::authn::dpop::{check_proof, DpopRules, ProofInput};
use stella_gateway::authn::replay::{
    Fresh, RedisReplayStore, ReplayStore, ReplayStoreError, Unavailable, DEFAULT_KEY_PREFIX,
};
use stella_gateway::identity::Binding;
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
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&reply).trim_end().to_owned())
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
    let v: Value =
        serde_json::from_str(include_str!("../src/authn/dpop/testdata/rfc-vectors.json")).unwrap();
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
