//! OpenTelemetry traces end to end: the real gateway exports OTLP/HTTP to a
//! real receiver (tests/otlp/receiver.py, decoding with PyPI's
//! `opentelemetry-proto`, installed into tests/.venv by
//! scripts/install-deps.sh), which writes one JSON line per span.
//!
//! A request with a known `traceparent` yields a server span in that trace
//! whose parent is the client's span, with children for authentication
//! (token cache hit or miss), the replay store (DPoP) and the upstream
//! call; the service receives a `traceparent` continuing from the
//! gateway's upstream span. No token, proof or secret is in any span. With
//! traces off nothing is exported and `traceparent` is continued as before.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// OTLP span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
const KIND_SERVER: i64 = 2;
const KIND_CLIENT: i64 = 3;

/// The OTLP/HTTP receiver and the file it writes spans to.
struct Receiver {
    process: Process,
    spans: PathBuf,
    _dir: TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_with(&[])
    }

    /// A receiver with `OTLP_RECEIVER_FAIL` and the like (tests/otlp/receiver.py).
    fn start_with(env: &[(&str, &str)]) -> Receiver {
        let dir = TempDir::new("otlp-receiver");
        let spans = dir.join("spans.jsonl");
        let python = repo_root().join("tests/.venv/bin/python");
        assert!(
            python.exists(),
            "{} missing: run scripts/install-deps.sh",
            python.display()
        );
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("tests/otlp/receiver.py"))
            .arg(&spans)
            .envs(env.iter().copied());
        let process = Process::start("otlp receiver", cmd, "OTLP_READY", Duration::from_secs(30));
        Receiver {
            process,
            spans,
            _dir: dir,
        }
    }

    /// `http://host:port`: the OTLP/HTTP base url.
    fn endpoint(&self) -> String {
        format!("http://{}", self.process.addr())
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a span as json"))
            .collect()
    }

    /// Every POST the receiver answered: status, body_sha256, headers.
    fn requests(&self) -> Vec<Value> {
        let path = format!("{}.requests", self.spans.display());
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a request as json"))
            .collect()
    }

    /// The spans of `trace_id` once its server span and every child named in
    /// `children` arrived.
    fn wait_for_trace(&self, trace_id: &str, children: &[&str]) -> Vec<Value> {
        let mut found = Vec::new();
        let complete = wait_until(Duration::from_secs(30), || {
            found = self
                .spans()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect();
            let has = |name: &str| found.iter().any(|s| s["name"] == name);
            found.iter().any(|s| s["kind"] == KIND_SERVER) && children.iter().all(|c| has(c))
        });
        assert!(complete, "trace {trace_id} incomplete: {found:#?}");
        found
    }
}

/// Traces on through the environment: the `traces` block (as `TRACES__*`
/// overrides) or the standard `OTEL_*` variables. A short batch delay so
/// spans leave within a test's patience.
fn traced(setup: GatewaySetup, receiver: &Receiver) -> GatewaySetup {
    setup
        .env("TRACES__ENABLED", "true")
        .env("TRACES__ENDPOINT", &receiver.endpoint())
        .env("TRACES__SERVICE_NAME", "gateway-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
}

fn the<'a>(spans: &'a [Value], what: &str, pick: impl Fn(&Value) -> bool) -> &'a Value {
    let matching: Vec<&Value> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(matching.len(), 1, "exactly one {what} span: {spans:#?}");
    matching[0]
}

/// The server span (child of the client's span) and its child `name`.
fn server_and_child<'a>(spans: &'a [Value], parent: &str, name: &str) -> (&'a Value, &'a Value) {
    let server = the(spans, "server", |s| s["kind"] == KIND_SERVER);
    assert_eq!(server["parent_span_id"], parent, "{server}");
    let child = the(spans, name, |s| s["name"] == name);
    assert_eq!(child["parent_span_id"], server["span_id"], "{child}");
    (server, child)
}

/// The service's `traceparent`: this trace, continued from a span the
/// gateway exported (its upstream span).
#[track_caller]
fn assert_upstream_continues(body: &Value, spans: &[Value], trace_id: &str) {
    let sent = received_values(body, "traceparent");
    assert_eq!(sent.len(), 1, "{body}");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{}", sent[0]);
    assert_eq!(parts[1], trace_id, "same trace");
    let upstream = the(spans, "upstream", |s| s["name"] == "upstream");
    assert_eq!(upstream["kind"], KIND_CLIENT, "{upstream}");
    assert_eq!(
        parts[2], upstream["span_id"],
        "the upstream span is the parent"
    );
    assert_eq!(parts[3], "01", "sampled");
}

#[track_caller]
fn assert_no_secret(spans: &[Value], secrets: &[&str]) {
    let text = serde_json::to_string(spans).unwrap();
    let envelope_secret = ENVELOPE_KEY.trim_start_matches("hs256:");
    for secret in secrets.iter().chain([&envelope_secret]) {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "a secret is in the spans: {text}");
    }
    // Not even the signature part of a JWS, nor any Bearer/DPoP scheme value.
    for secret in secrets {
        if let Some(signature) = secret.rsplit('.').next().filter(|s| s.len() > 16) {
            assert!(!text.contains(signature), "{text}");
        }
    }
}

#[test]
fn a_bearer_request_continues_the_clients_trace_with_authentication_and_upstream_spans() {
    let receiver = Receiver::start();
    let stack = Stack::start_with("otlp-bearer", |s| traced(s, &receiver));
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    let auth = format!("Bearer {token}");
    let incoming = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let r = gw.get(
        "/items/1",
        &[
            ("Authorization", &auth),
            ("traceparent", &incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    let body = assert_reached_via_envelope(&r);
    assert_eq!(
        received_values(&body, "tracestate"),
        ["congo=t61rcWkgMzE"],
        "the client's tracestate is passed on with the span's traceparent"
    );

    let spans = receiver.wait_for_trace(TRACE_ID, &["authenticate", "upstream"]);
    let (server, authn) = server_and_child(&spans, CLIENT_SPAN, "authenticate");
    let attributes = &server["attributes"];
    assert_eq!(server["service"], "gateway-under-test", "{server}");
    assert_eq!(attributes["stella.decision"], "allow", "{server}");
    assert_eq!(attributes["stella.auth_method"], "bearer", "{server}");
    assert_eq!(attributes["stella.service"], "echo", "{server}");
    assert_eq!(attributes["http.response.status_code"], 200, "{server}");
    assert_eq!(attributes["http.request.method"], "GET", "{server}");
    let route = attributes["stella.route"].as_str().expect("a route id");
    assert_eq!(server["name"], format!("GET {route}"), "{server}");
    assert_eq!(authn["attributes"]["stella.auth.cache"], "miss", "{authn}");
    assert_eq!(
        authn["attributes"]["stella.auth_method"], "bearer",
        "{authn}"
    );
    assert_eq!(attributes["http.route"], route, "{server}");
    let (_, upstream) = server_and_child(&spans, CLIENT_SPAN, "upstream");
    assert_eq!(upstream["attributes"]["http.response.status_code"], 200);
    // Set when the span starts: the service and the address called.
    let echo = stack.echo.addr();
    assert_eq!(
        upstream["attributes"]["stella.service"], "echo",
        "{upstream}"
    );
    assert_eq!(
        upstream["attributes"]["server.address"],
        echo.ip().to_string(),
        "{upstream}"
    );
    assert_eq!(
        upstream["attributes"]["server.port"],
        echo.port(),
        "{upstream}"
    );
    assert_upstream_continues(&body, &spans, TRACE_ID);
    assert!(
        !spans.iter().any(|s| s["name"] == "replay_store"),
        "no replay store for Bearer: {spans:#?}"
    );

    // The same token again, in another trace: a cache hit.
    let second_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = gw.get(
        "/items/2",
        &[
            ("Authorization", &auth),
            (
                "traceparent",
                &format!("00-{second_trace}-b7ad6b7169203331-01"),
            ),
        ],
    );
    let body = assert_reached_via_envelope(&r);
    let spans2 = receiver.wait_for_trace(second_trace, &["authenticate", "upstream"]);
    let (_, authn) = server_and_child(&spans2, "b7ad6b7169203331", "authenticate");
    assert_eq!(authn["attributes"]["stella.auth.cache"], "hit", "{authn}");
    assert_upstream_continues(&body, &spans2, second_trace);

    // A refusal is traced too, with its reason.
    let refused_trace = "11111111111111111111111111111111";
    let r = gw.get(
        "/items/3",
        &[
            ("Authorization", "Bearer not-a-token"),
            (
                "traceparent",
                &format!("00-{refused_trace}-2222222222222222-01"),
            ),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let spans3 = receiver.wait_for_trace(refused_trace, &["authenticate"]);
    let server = the(&spans3, "server", |s| s["kind"] == KIND_SERVER);
    assert_eq!(server["attributes"]["stella.decision"], "deny", "{server}");
    assert_eq!(server["attributes"]["http.response.status_code"], 401);
    assert!(
        !spans3.iter().any(|s| s["name"] == "upstream"),
        "{spans3:#?}"
    );

    let all = receiver.spans();
    assert_no_secret(&all, &[&token, "not-a-token"]);
}

#[test]
fn a_dpop_request_has_a_replay_store_span_and_neither_token_nor_proof_is_exported() {
    let receiver = Receiver::start();
    // The standard variables this time, besides `traces.enabled`.
    let stack = Stack::start_with("otlp-dpop", |s| {
        s.public_origin("http://127.0.0.1:{http}")
            .env("TRACES__ENABLED", "true")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
            .env("OTEL_SERVICE_NAME", "gateway-from-env")
            .env("OTEL_TRACES_SAMPLER", "parentbased_always_on")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
    });
    let gw = &stack.gateway;
    let key = DpopKey::generate();
    let key_file = stack.dir.join("dpop-key.json");
    key.write_private_jwk(&key_file);
    let token = stack.authority.dpop_token(DPOP, &key_file);
    let path = "/dpop/orders/1";
    let proof = key.proof(
        "GET",
        &format!("{}{path}", gw.origin()),
        Some(&token),
        None,
        now(),
        &unique_jti("otel"),
    );
    let auth = format!("DPoP {token}");
    let incoming = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let r = gw.send(
        "GET",
        path,
        &[
            ("Authorization", &auth),
            ("DPoP", &proof),
            ("traceparent", &incoming),
        ],
    );
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");

    let spans = receiver.wait_for_trace(TRACE_ID, &["authenticate", "replay_store", "upstream"]);
    let (server, authn) = server_and_child(&spans, CLIENT_SPAN, "authenticate");
    assert_eq!(server["service"], "gateway-from-env", "{server}");
    assert_eq!(
        server["attributes"]["stella.auth_method"], "dpop",
        "{server}"
    );
    assert_eq!(authn["attributes"]["stella.auth.cache"], "miss", "{authn}");
    let (_, replay) = server_and_child(&spans, CLIENT_SPAN, "replay_store");
    assert_eq!(
        replay["attributes"]["stella.replay.result"], "fresh",
        "{replay}"
    );
    server_and_child(&spans, CLIENT_SPAN, "upstream");
    assert_upstream_continues(&body, &spans, TRACE_ID);

    // The same proof again: refused as a replay, and the span says so.
    let replay_trace = "33333333333333333333333333333333";
    let r = gw.send(
        "GET",
        path,
        &[
            ("Authorization", &auth),
            ("DPoP", &proof),
            (
                "traceparent",
                &format!("00-{replay_trace}-4444444444444444-01"),
            ),
        ],
    );
    assert_invalid_dpop_proof(&r);
    let spans2 = receiver.wait_for_trace(replay_trace, &["replay_store"]);
    let replay = the(&spans2, "replay_store", |s| s["name"] == "replay_store");
    assert_eq!(
        replay["attributes"]["stella.replay.result"], "replayed",
        "{replay}"
    );

    assert_no_secret(&receiver.spans(), &[&token, &proof]);
}

#[test]
fn an_opaque_token_is_introspected_in_a_child_of_the_authentication_span() {
    let receiver = Receiver::start();
    let dir = TempDir::new("otlp-introspection");
    let authority = Authority::start();
    let echo = Echo::gateway_enforced();
    let gw = traced(GatewaySetup::new(&authority.issuer), &receiver)
        .authority("audiences", json!([API_AUDIENCE, OPAQUE_AUDIENCE]))
        .authority("client_id", json!(GATEWAY_CLIENT.id))
        .authority("client_secret", json!(GATEWAY_CLIENT.secret))
        .authority("introspection", json!({"cache_seconds": 30}))
        .service("echo", echo.addr())
        .start(&dir);
    let token = authority.fresh_token(BEARER, &TokenRequest::resource(OPAQUE_AUDIENCE));
    assert!(!token.contains('.'), "not an opaque token: {token}");
    let incoming = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let r = gw.get(
        "/items/1",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("traceparent", &incoming),
        ],
    );
    let body = assert_reached_via_envelope(&r);
    let spans = receiver.wait_for_trace(TRACE_ID, &["authenticate", "introspection", "upstream"]);
    let (_, authn) = server_and_child(&spans, CLIENT_SPAN, "authenticate");
    assert_eq!(authn["attributes"]["stella.auth.cache"], "miss", "{authn}");
    let introspection = the(&spans, "introspection", |s| s["name"] == "introspection");
    assert_eq!(
        introspection["parent_span_id"], authn["span_id"],
        "{introspection}"
    );
    assert_upstream_continues(&body, &spans, TRACE_ID);
    assert_no_secret(&receiver.spans(), &[&token, GATEWAY_CLIENT.secret]);
}

#[test]
fn with_traces_off_nothing_is_exported_and_traceparent_is_continued_as_before() {
    let receiver = Receiver::start();
    // The collector is named, but traces are not turned on.
    let stack = Stack::start_with("otlp-off", |s| {
        s.env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
    });
    let incoming = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let token = stack.authority.token(BEARER);
    let r = stack.gateway.get(
        "/items/1",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("traceparent", &incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    let body = assert_reached_via_envelope(&r);
    let sent = received_values(&body, "traceparent");
    assert_eq!(sent.len(), 1, "{body}");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{}", sent[0]);
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], TRACE_ID, "same trace");
    assert_ne!(parts[2], CLIENT_SPAN, "a new span");
    assert_eq!(parts[3], "01");
    assert_eq!(
        received_values(&body, "tracestate"),
        vec!["congo=t61rcWkgMzE"]
    );
    // A traced gateway exports within about 100 ms; this one never does.
    std::thread::sleep(Duration::from_secs(2));
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
}

#[test]
fn a_busy_collector_gets_the_same_batch_again_with_the_configured_headers() {
    // The first two exports answered 503 (with `Retry-After: 0`), as a
    // collector under load does: the exporter retries the same body.
    let receiver = Receiver::start_with(&[("OTLP_RECEIVER_FAIL", "2:503:0")]);
    let stack = Stack::start_with("otlp-retry", |s| {
        traced(s, &receiver).env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Basic%20c3BhbnM6c2VjcmV0,x-tenant=team-a",
        )
    });
    let incoming = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let r = stack
        .gateway
        .get("/public/x", &[("traceparent", &incoming)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = receiver.wait_for_trace(TRACE_ID, &["upstream"]);
    assert!(!spans.is_empty());

    let requests = receiver.requests();
    let statuses: Vec<&Value> = requests.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [503, 503, 200], "{requests:#?}");
    assert!(
        requests
            .iter()
            .all(|r| r["body_sha256"] == requests[0]["body_sha256"]),
        "the same batch each time: {requests:#?}"
    );
    for r in &requests {
        let headers = &r["headers"];
        assert_eq!(headers["authorization"], "Basic c3BhbnM6c2VjcmV0", "{r}");
        assert_eq!(headers["x-tenant"], "team-a", "{r}");
        assert_eq!(headers["content-type"], "application/x-protobuf", "{r}");
        let agent = headers["user-agent"].as_str().unwrap_or_default();
        assert!(agent.starts_with("stella-gateway/"), "{r}");
    }
    let log = stack.gateway.process.stderr_lines().join("\n");
    assert!(
        !log.contains("c3BhbnM6c2VjcmV0"),
        "a header value was logged: {log}"
    );
}

#[test]
fn a_refused_export_is_not_retried_and_the_next_batch_is_sent() {
    // 400: the collector cannot take this body; retrying cannot help.
    let receiver = Receiver::start_with(&[("OTLP_RECEIVER_FAIL", "1:400")]);
    let stack = Stack::start_with("otlp-refused", |s| traced(s, &receiver));
    let first = "33333333333333333333333333333333";
    let r = stack.gateway.get(
        "/public/x",
        &[("traceparent", &format!("00-{first}-{CLIENT_SPAN}-01"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(30), || !receiver.requests().is_empty()),
        "no export"
    );
    let r = stack.gateway.get(
        "/public/y",
        &[("traceparent", &format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    receiver.wait_for_trace(TRACE_ID, &["upstream"]);

    let requests = receiver.requests();
    let statuses: Vec<&Value> = requests.iter().map(|r| &r["status"]).collect();
    assert_eq!(
        statuses,
        [400, 200],
        "one attempt for the refused batch: {requests:#?}"
    );
    assert_ne!(requests[0]["body_sha256"], requests[1]["body_sha256"]);
    assert!(
        !receiver.spans().iter().any(|s| s["trace_id"] == first),
        "the refused batch is dropped, not sent again"
    );
    let log = stack.gateway.process.stderr_lines().join("\n");
    assert!(
        log.contains("HTTP 400 after 1 attempts"),
        "the failure is logged: {log}"
    );
}
