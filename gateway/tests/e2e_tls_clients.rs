//! TLS and HTTP/2 clients get the protection HTTP/1 clients have
//! (gateway/src/front/handshake.rs): a TLS handshake that stalls is closed
//! at `gateway.limits.tls_handshake_timeout_ms`, an idle HTTP/2 connection
//! at `h2_idle_timeout_seconds`, and streams over `h2_max_concurrent_streams`
//! or `h2_max_header_list_bytes` are refused as HTTP/2 says, each counted in
//! `stella_gateway_connections_closed_total` where it closes a connection.
//! The h2 client is the `h2` crate over `tokio-rustls`.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls_stack(label: &str, pki_dir: &TempDir, limits: serde_json::Value) -> (Stack, Pki) {
    let pki = Pki::generate(pki_dir);
    let listener = pki.listener("none");
    let stack = Stack::start_with(label, |s| s.tls(listener).gateway("limits", limits));
    (stack, pki)
}

/// Whether the peer closed `stream` within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A TLS connection to the gateway offering only `h2`.
async fn tls_h2(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

fn get(path: &str) -> ::http::Request<()> {
    ::http::Request::get(format!("https://localhost{path}"))
        .body(())
        .unwrap()
}

#[test]
fn a_stalled_tls_handshake_is_closed_at_the_deadline_and_counted() {
    let pki_dir = TempDir::new("tls-stall-pki");
    let (stack, pki) = tls_stack(
        "tls-stall",
        &pki_dir,
        json!({"tls_handshake_timeout_ms": 1000}),
    );
    let tls = stack.gateway.tls.expect("tls listener");
    // 30 clients open TCP and send nothing; 30 send the first bytes of a
    // ClientHello and stall.
    let mut silent: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(tls).unwrap()).collect();
    let mut partial: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(tls).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    // A client that completes its handshake is served meanwhile.
    let c = curl_https_version(tls, "/public/x", &pki.ca, None, &[], "--http2");
    assert_eq!(c.status_line, "HTTP/2 200", "{c:?}");
    for s in silent.iter_mut().chain(partial.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "a stalled handshake was still open after {:?}",
            started.elapsed()
        );
    }
    // Pingora's own bound is 60 s: closed near the configured second.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        started.elapsed()
    );
    let closed = stack.gateway.wait_for_metric(
        "stella_gateway_connections_closed_total",
        &[("listener", "tls"), ("reason", "tls_handshake_timeout")],
        60.0,
    );
    assert_eq!(closed, 60.0);
    assert_eq!(
        stack.echo.requests(),
        1,
        "only the complete client reached it"
    );
    let open = stack
        .gateway
        .metrics()
        .value("stella_gateway_connections_open", &[("listener", "tls")])
        .unwrap_or(0.0);
    assert_eq!(open, 0.0, "no stalled connection left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_is_closed_after_the_idle_timeout_and_counted() {
    let pki_dir = TempDir::new("h2-idle-pki");
    let (stack, pki) = tokio::task::block_in_place(|| {
        tls_stack("h2-idle", &pki_dir, json!({"h2_idle_timeout_seconds": 1}))
    });
    let tls = tls_h2(stack.gateway.tls.unwrap(), &pki.ca).await;
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    let (response, _) = client.send_request(get("/public/x"), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let answered = Instant::now();
    // Nothing more is sent: the gateway closes the connection.
    let ended = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the idle connection was not closed within 5 s");
    let idle_for = answered.elapsed();
    assert!(
        idle_for >= Duration::from_millis(900),
        "closed before the idle timeout: {idle_for:?} ({ended:?})"
    );
    // A request on it now fails; a new connection works.
    assert!(client.send_request(get("/public/x"), true).is_err());
    let tls = tls_h2(stack.gateway.tls.unwrap(), &pki.ca).await;
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let (response, _) = client.send_request(get("/public/x"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);

    let closed = tokio::task::block_in_place(|| {
        stack.gateway.wait_for_metric(
            "stella_gateway_connections_closed_total",
            &[("listener", "tls"), ("reason", "h2_idle_timeout")],
            1.0,
        )
    });
    assert_eq!(closed, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_over_the_header_list_limit_gets_431_and_the_connection_serves_on() {
    let pki_dir = TempDir::new("h2-headers-pki");
    let (stack, pki) = tokio::task::block_in_place(|| {
        tls_stack(
            "h2-headers",
            &pki_dir,
            json!({"h2_max_header_list_bytes": 4096}),
        )
    });
    let tls = tls_h2(stack.gateway.tls.unwrap(), &pki.ca).await;
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut big = get("/public/big");
    big.headers_mut()
        .insert("x-big", "a".repeat(8_000).parse().unwrap());
    let (response, _) = client.send_request(big, true).unwrap();
    match response.await {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert_eq!(e.reason(), Some(h2::Reason::REFUSED_STREAM), "{e}"),
    }
    // The stream was refused; the connection still serves.
    let mut client = client.ready().await.unwrap();
    let (response, _) = client.send_request(get("/public/x"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(
        stack.echo.requests(),
        1,
        "the oversized request never arrived"
    );
}

/// One raw HTTP/2 frame: 24-bit length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_over_the_concurrency_limit_are_refused() {
    let pki_dir = TempDir::new("h2-streams-pki");
    let (stack, pki) = tokio::task::block_in_place(|| {
        tls_stack(
            "h2-streams",
            &pki_dir,
            json!({"h2_max_concurrent_streams": 2}),
        )
    });
    // The h2 crate keeps to the advertised limit, so this client speaks
    // raw frames: three requests whose bodies never come (HEADERS without
    // END_STREAM keep a stream open), against a limit of two.
    let mut tls = tls_h2(stack.gateway.tls.unwrap(), &pki.ca).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // HPACK: :method POST (static 3), :scheme https (7), :path /public/x
    // and :authority localhost as literals without indexing.
    let mut block = vec![0x83, 0x87, 0x04, 9];
    block.extend_from_slice(b"/public/x");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    for stream in [1u32, 3, 5] {
        out.extend(frame(0x1, 0x4, stream, &block));
    }
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();

    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed; frames seen: {seen:?}");
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = ((buf[0] as usize) << 16) | ((buf[1] as usize) << 8) | buf[2] as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let kind = buf[3];
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload: Vec<u8> = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                seen.push((kind, stream));
                // SETTINGS without ACK: acknowledge, as a client must.
                if kind == 0x4 && len > 0 {
                    tls.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap();
                }
                if kind == 0x3 {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    return (stream, code, seen.clone());
                }
                assert_ne!(kind, 0x7, "GOAWAY: the connection was failed: {seen:?}");
            }
        }
    })
    .await
    .expect("no RST_STREAM within 5 s");
    let (stream, code, seen) = refused;
    assert_eq!(stream, 5, "the third stream is refused: {seen:?}");
    assert_eq!(code, 0x7, "REFUSED_STREAM");
    // The advertised limit is the configured one.
    let settings = seen.iter().filter(|(k, _)| *k == 0x4).count();
    assert!(settings >= 1, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_sends_no_preface_after_the_handshake_is_closed_at_the_deadline() {
    let pki_dir = TempDir::new("h2-preface-pki");
    let (stack, pki) = tokio::task::block_in_place(|| {
        tls_stack(
            "h2-preface",
            &pki_dir,
            json!({"tls_handshake_timeout_ms": 1000, "h2_idle_timeout_seconds": 60}),
        )
    });
    let addr = stack.gateway.tls.unwrap();
    // Handshakes done with h2 agreed; then nothing, or part of the preface.
    let mut silent = tls_h2(addr, &pki.ca).await;
    let mut partial = tls_h2(addr, &pki.ca).await;
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    partial.flush().await.unwrap();
    let started = Instant::now();
    // A client that speaks is served meanwhile, and past the deadline.
    let tls = tls_h2(addr, &pki.ca).await;
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    for stalled in [&mut silent, &mut partial] {
        let mut buf = [0u8; 1024];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stalled.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a connection without a preface was open after {:?}",
            started.elapsed()
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "closed after {waited:?}, the deadline is 1 s"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (response, _) = client.send_request(get("/public/x"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let closed = tokio::task::block_in_place(|| {
        stack.gateway.wait_for_metric(
            "stella_gateway_connections_closed_total",
            &[("listener", "tls"), ("reason", "h2_preface_timeout")],
            2.0,
        )
    });
    assert_eq!(closed, 2.0);
    assert_eq!(
        stack.echo.requests(),
        1,
        "only the speaking client got through"
    );
}
