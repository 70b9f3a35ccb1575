//! `stella-load` run as a real binary against a stub Authority and resource
//! server on loopback. The stub checks what a gateway would: the client's
//! secret, live tokens, and per DPoP proof `htm`, `htu`, `ath`, the bound
//! key, a unique `jti` and a server nonce. Anything wrong it records, and the
//! tests assert none was.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use stella_test_support::dpop_ath;

#[derive(Default)]
struct Stub {
    addr: Option<SocketAddr>,
    /// Token requests per client id.
    token_requests: HashMap<String, u32>,
    /// Live tokens: token -> the `x` of the key it is bound to ("" for Bearer).
    tokens: HashMap<String, String>,
    jtis: HashSet<String>,
    nonce_challenges: u32,
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Stub>>;

fn claims(jws: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        jws.split('.')
            .nth(i)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    (part(0), part(1))
}

async fn discovery(State(s): State<Shared>) -> Json<Value> {
    let addr = s.lock().unwrap().addr.unwrap();
    Json(
        json!({"issuer": format!("http://{addr}"), "token_endpoint": format!("http://{addr}/token")}),
    )
}

async fn token(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut stub = s.lock().unwrap();
    let addr = stub.addr.unwrap();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let Some((client, secret)) = basic.split_once(':') else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    };
    if secret != format!("{client}-secret") || body != "grant_type=client_credentials" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = {
        let count = stub.token_requests.entry(client.to_owned()).or_default();
        *count += 1;
        *count
    };
    let (bound_to, token_type) = match headers.get("dpop").and_then(|v| v.to_str().ok()) {
        Some(proof) => {
            let (header, claims) = claims(proof);
            if claims["htm"] != "POST" || claims["htu"] != format!("http://{addr}/token") {
                stub.problems.push(format!("token request proof: {claims}"));
            }
            (
                header["jwk"]["x"].as_str().unwrap_or("?").to_owned(),
                "DPoP",
            )
        }
        None => (String::new(), "Bearer"),
    };
    let token = format!("{client}-{n}");
    stub.tokens.insert(token.clone(), bound_to);
    Json(json!({"access_token": token, "token_type": token_type, "expires_in": 2})).into_response()
}

fn unauthorized(why: &str) -> Response {
    (StatusCode::UNAUTHORIZED, why.to_owned()).into_response()
}

async fn bearer(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let stub = s.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match stub.tokens.get(token) {
        Some(bound) if bound.is_empty() => "ok".into_response(),
        _ => unauthorized("not a live bearer token"),
    }
}

async fn dpop(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut stub = s.lock().unwrap();
    let addr = stub.addr.unwrap();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("DPoP "))
        .unwrap_or_default()
        .to_owned();
    let proof = headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (header, claims) = claims(proof);
    let mut problem = None;
    match stub.tokens.get(&token) {
        Some(x) if Some(x.as_str()) == header["jwk"]["x"].as_str() => {}
        _ => problem = Some("token not bound to the proof key".to_owned()),
    }
    if claims["htm"] != "GET"
        || claims["htu"] != format!("http://{addr}/dpop")
        || claims["ath"] != dpop_ath(&token)
    {
        problem = Some(format!("proof claims {claims}"));
    }
    if let Some(p) = problem {
        stub.problems.push(p.clone());
        return unauthorized(&p);
    }
    if claims["nonce"] != "n-1" {
        stub.nonce_challenges += 1;
        return (
            StatusCode::UNAUTHORIZED,
            [
                ("www-authenticate", "DPoP error=\"use_dpop_nonce\""),
                ("dpop-nonce", "n-1"),
            ],
            "",
        )
            .into_response();
    }
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    if !stub.jtis.insert(jti.clone()) {
        stub.problems.push(format!("jti {jti} used twice"));
        return unauthorized("replayed");
    }
    "ok".into_response()
}

fn start_stub() -> (SocketAddr, Shared) {
    let shared: Shared = Arc::default();
    let (tx, rx) = mpsc::channel();
    let state = shared.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            state.lock().unwrap().addr = Some(addr);
            let app = Router::new()
                .route("/.well-known/openid-configuration", get(discovery))
                .route("/token", post(token))
                .route("/bearer", get(bearer))
                .route("/dpop", get(dpop))
                .route("/public", get(|| async { "ok" }))
                .route(
                    "/teapot",
                    get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
                )
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        "late"
                    }),
                )
                .with_state(state);
            tx.send(addr).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), shared)
}

/// The binary, with stdin as its command channel.
struct Load {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Finished {
    /// The cells of the table row starting with `name`.
    fn row(&self, name: &str) -> Vec<String> {
        self.stdout
            .lines()
            .find(|l| l.split('|').next().map(str::trim) == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{}", self.stdout))
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    }

    fn number(&self, name: &str, column: usize) -> u64 {
        self.row(name)[column].parse().unwrap()
    }
}

impl Load {
    fn start(args: &[&str]) -> Load {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stella-load"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stella-load");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let mut load = Load {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        };
        load.wait_for("LOAD_READY ");
        load
    }

    fn wait_for(&mut self, prefix: &str) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    self.stdout.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no {prefix:?} line; stdout:\n{}\nstderr:\n{}",
                    self.stdout.join("\n"),
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Sends a command and waits for its acknowledgement.
    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.wait_for("LOAD_ACK ");
        assert!(
            self.stdout.last().unwrap().ends_with(line),
            "ack for another command: {:?}",
            self.stdout.last()
        );
    }

    fn finish(mut self) -> Finished {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        std::thread::sleep(Duration::from_millis(50));
        Finished {
            code: status.code(),
            stdout: self.stdout.join("\n"),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

#[test]
fn every_kind_succeeds_tokens_are_refreshed_and_each_step_gets_a_row() {
    let (addr, stub) = start_stub();
    let issuer = format!("http://{addr}");
    let mut load = Load::start(&[
        "--rate",
        "150",
        "--issuer",
        &issuer,
        "--kind",
        &format!("public GET http://{addr}/public none"),
        "--kind",
        &format!("bearer GET http://{addr}/bearer?page=1 bearer:c1"),
        "--kind",
        &format!("dpop GET http://{addr}/dpop?page=1 dpop:c2 weight=2"),
    ]);
    load.command("step one");
    std::thread::sleep(Duration::from_millis(1600));
    load.command("step two");
    std::thread::sleep(Duration::from_millis(1600));
    let done = load.finish();
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    for step in ["one", "two"] {
        assert!(done.number(step, 1) > 150, "{}", done.stdout);
        assert_eq!(done.number(step, 2), 0);
        assert_eq!(done.number(step, 3), 0);
    }
    assert_eq!(done.number("total", 2), 0);
    // Weights: dpop twice as often as each of the others.
    let (bearer, dpop) = (done.number("bearer", 1), done.number("dpop", 1));
    assert!((2 * bearer).abs_diff(dpop) <= 4, "{}", done.stdout);
    let stub = stub.lock().unwrap();
    assert!(stub.problems.is_empty(), "{:?}", stub.problems);
    // Tokens live 2 s; in 3 s each client got at least one more.
    assert!(stub.token_requests["c1"] >= 2, "{:?}", stub.token_requests);
    assert!(stub.token_requests["c2"] >= 2, "{:?}", stub.token_requests);
    // Each proof used once; the nonce was learned once, not per request.
    assert_eq!(stub.jtis.len() as u64, dpop);
    assert!(stub.nonce_challenges >= 1 && stub.nonce_challenges < 30);
}

#[test]
fn an_unexpected_status_or_a_timeout_fails_the_run_and_is_logged() {
    let (addr, _stub) = start_stub();
    let load = Load::start(&[
        "--rate",
        "30",
        "--timeout",
        "1",
        "--first-step",
        "only",
        "--max-failure-logs",
        "2",
        "--kind",
        &format!("teapot GET http://{addr}/teapot none"),
        "--kind",
        &format!("slow GET http://{addr}/slow none"),
        "--kind",
        &format!("public GET http://{addr}/public none"),
    ]);
    std::thread::sleep(Duration::from_millis(700));
    let done = load.finish();
    assert_eq!(done.code, Some(1), "{}", done.stdout);
    assert!(
        done.stderr
            .contains("step=only kind=teapot result=418 expected=2xx body: short and stout"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("kind=slow result=timeout"),
        "{}",
        done.stderr
    );
    // At most two lines per kind and result, then one note; the teapot's
    // many failures do not hide the timeouts.
    let lines = |needle: &str| done.stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines("kind=teapot result=418 expected"),
        2,
        "{}",
        done.stderr
    );
    assert_eq!(lines("more kind=teapot result=418 failures are counted"), 1);
    assert!(done.number("teapot", 1) > 3);
    assert_eq!(done.number("public", 2), 0);
    assert_eq!(done.number("slow", 1), done.number("slow", 2));
    assert!(done.row("slow")[3].starts_with("timeout:"));
    assert_eq!(
        done.number("only", 2),
        done.number("teapot", 1) + done.number("slow", 1)
    );
}

#[test]
fn expect_changes_what_fails_from_then_on() {
    let (addr, _stub) = start_stub();
    let mut load = Load::start(&[
        "--rate",
        "100",
        "--kind",
        &format!("teapot GET http://{addr}/teapot none expect=418"),
    ]);
    load.command("step before");
    std::thread::sleep(Duration::from_millis(400));
    // The step first: a request sent between the two commands belongs to
    // "after" and is judged by 418, so "before" holds only 418 requests.
    load.command("step after");
    load.command("expect teapot 2xx");
    std::thread::sleep(Duration::from_millis(400));
    let done = load.finish();
    assert_eq!(done.code, Some(1));
    assert_eq!(done.number("before", 2), 0, "{}", done.stdout);
    assert_eq!(done.number("before", 3), done.number("before", 1));
    assert!(done.number("after", 2) > 20, "{}", done.stdout);
}

#[test]
fn a_wrong_command_fails_the_run() {
    let (addr, _stub) = start_stub();
    let mut load = Load::start(&[
        "--rate",
        "20",
        "--kind",
        &format!("public GET http://{addr}/public none"),
    ]);
    load.command("expect nosuchkind 2xx");
    load.command("pause 5");
    let done = load.finish();
    assert_eq!(done.code, Some(1));
    assert!(done.stdout.contains("control errors: 2"), "{}", done.stdout);
    assert!(
        done.stderr.contains("unknown command \"pause 5\""),
        "{}",
        done.stderr
    );
}

#[test]
fn a_client_the_authority_refuses_stops_the_start_with_exit_2() {
    let (addr, _stub) = start_stub();
    let out = Command::new(env!("CARGO_BIN_EXE_stella-load"))
        .args([
            "--rate",
            "10",
            "--issuer",
            &format!("http://{addr}"),
            "--kind",
            &format!("b GET http://{addr}/bearer bearer:c1:wrong"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("token request for c1: status 401"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("LOAD_READY"));
}
