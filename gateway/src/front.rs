//! The connection front: what happens to a client connection before and
//! between its requests, where Pingora's HTTP/1 server has no knob.
//!
//! - **Connection limit** per listener (`gateway.limits.max_connections`):
//!   a connection over it gets a 503 problem and is closed.
//! - **Request head deadline** (`request_head_timeout_ms`): a request head
//!   must be complete within it, counted from accept for a connection's
//!   first request and from the first byte for the next ones. Pingora's own
//!   read timeout is per read, so a client trickling a byte at a time holds
//!   a connection forever without it. Answered 408, then closed.
//! - **Request head size** (`max_request_header_bytes`): answered 431,
//!   then closed, as soon as the head grows past it.
//! - **Idle keep-alive** (`idle_timeout_seconds`): Pingora's keep-alive
//!   timeout, set per connection.
//! - **Pingora's own refusals** (an unparsable head, `CONNECT`): Pingora
//!   writes a bare `400`/`405` before any gateway code runs. Writes made
//!   before the gateway has taken the request are therefore replaced with
//!   the gateway's `application/problem+json` refusal and a request id.
//!
//! - **TLS handshake deadline** (`tls_handshake_timeout_ms`) and the
//!   HTTP/2 limits: [`handshake`].
//!
//! The stream wrapper ([`Guarded`]) learns that Pingora has handed the
//! request to the gateway from [`request_accepted`], called by
//! `Proxy::new_ctx` within the connection's task. HTTP/2 connections are
//! passed to Pingora counted, limited, and with their preface due within the
//! handshake deadline ([`handshake::preface_within`]).

/// `AsyncWrite` and `Shutdown` of a stream wrapper, passed to its `inner`
/// stream.
macro_rules! delegate_write_and_shutdown {
    ($wrapper:ty) => {
        #[async_trait]
        impl Shutdown for $wrapper {
            async fn shutdown(&mut self) {
                Shutdown::shutdown(self.inner.as_mut()).await;
            }
        }

        impl AsyncWrite for $wrapper {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

/// The Pingora stream traits a wrapper of a [`Stream`] (field `inner`)
/// answers from the stream it wraps: identity, TLS, timing, proxy and
/// socket digests, peeking. Used by [`Guarded`] and by the TLS handshake's
/// plain-TCP view (`handshake.rs`).
macro_rules! delegate_stream_digests {
    ($wrapper:ty) => {
        impl UniqueID for $wrapper {
            fn id(&self) -> UniqueIDType {
                self.inner.id()
            }
        }

        impl Ssl for $wrapper {
            fn get_ssl(&self) -> Option<&TlsRef> {
                self.inner.get_ssl()
            }

            fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
                self.inner.get_ssl_digest()
            }

            fn selected_alpn_proto(&self) -> Option<ALPN> {
                self.inner.selected_alpn_proto()
            }
        }

        impl GetTimingDigest for $wrapper {
            fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
                self.inner.get_timing_digest()
            }

            fn get_read_pending_time(&self) -> Duration {
                self.inner.get_read_pending_time()
            }

            fn get_write_pending_time(&self) -> Duration {
                self.inner.get_write_pending_time()
            }
        }

        impl GetProxyDigest for $wrapper {
            fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
                self.inner.get_proxy_digest()
            }

            fn set_proxy_digest(&mut self, digest: ProxyDigest) {
                self.inner.set_proxy_digest(digest)
            }
        }

        impl GetSocketDigest for $wrapper {
            fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
                self.inner.get_socket_digest()
            }

            fn set_socket_digest(&mut self, digest: SocketDigest) {
                self.inner.set_socket_digest(digest)
            }
        }

        #[async_trait]
        impl Peek for $wrapper {
            async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
                self.inner.try_peek(buf).await
            }
        }
    };
}

mod handshake;

pub use handshake::h2_settings;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use crate::config::Limits;
use crate::gateway::{Gateway, Shared};
use crate::response::Refusal;

tokio::task_local! {
    static CONNECTION: Arc<Watch>;
}

/// Tells the connection's stream that the gateway has taken the current
/// request (Pingora parsed its head). Called from `new_ctx`; a no-op on
/// connections the front does not wrap (HTTP/2).
pub fn request_accepted() {
    let _ = CONNECTION.try_with(|w| w.accepted.store(true, Ordering::Release));
}

/// The connection a request arrived on, for what lasts across its
/// requests: the cache key of the last token it presented
/// ([`stella_authn::KeyMemo`]). `None` on connections the front does not
/// wrap (HTTP/2).
pub fn connection() -> Option<Connection> {
    CONNECTION.try_with(|w| Connection(w.clone())).ok()
}

/// A handle on the current connection ([`connection`]).
pub struct Connection(Arc<Watch>);

impl Connection {
    /// The connection's memo of its last token's cache key.
    pub fn token_keys(&self) -> &stella_authn::KeyMemo {
        &self.0.token_keys
    }
}

/// Per-listener counters.
struct ListenerMetrics {
    open: IntGauge,
    refused: IntCounter,
    head_timeouts: IntCounter,
    head_too_large: IntCounter,
    tls_handshake_timeouts: IntCounter,
    tls_handshake_failures: IntCounter,
    h2_idle: IntCounter,
    h2_preface_timeouts: IntCounter,
    proxy_protocol: IntCounter,
}

/// One listener's [`ServerApp`]: Pingora's proxy (any HTTP application;
/// the gateway's is `HttpProxy<Proxy>`) behind the guards above.
pub struct Front<A> {
    proxy: Arc<A>,
    gateway: Arc<Gateway>,
    open: AtomicUsize,
    metrics: Arc<ListenerMetrics>,
    /// The TLS listener's handshake, run here under the gateway's deadline.
    tls: Option<pingora::listeners::tls::Acceptor>,
    /// Every connection opens with a PROXY protocol header
    /// (`crate::client_addr::proxy_protocol`).
    proxy_protocol: bool,
    label: &'static str,
}

impl<A> Front<A> {
    /// `listener` labels the metrics (`http` or `tls`).
    pub fn new(proxy: Arc<A>, gateway: Arc<Gateway>, listener: &str) -> Front<A> {
        let shared = gateway.current().shared.clone();
        let m = &shared.metrics;
        let metrics = Arc::new(ListenerMetrics {
            open: m.connections_open.with_label_values(&[listener]),
            refused: m.connections_refused.with_label_values(&[listener]),
            head_timeouts: m
                .connections_closed
                .with_label_values(&[listener, "request_head_timeout"]),
            head_too_large: m
                .connections_closed
                .with_label_values(&[listener, "request_header_too_large"]),
            tls_handshake_timeouts: m
                .connections_closed
                .with_label_values(&[listener, "tls_handshake_timeout"]),
            tls_handshake_failures: m
                .connections_closed
                .with_label_values(&[listener, "tls_handshake_failed"]),
            h2_idle: m
                .connections_closed
                .with_label_values(&[listener, "h2_idle_timeout"]),
            h2_preface_timeouts: m
                .connections_closed
                .with_label_values(&[listener, "h2_preface_timeout"]),
            proxy_protocol: m
                .connections_closed
                .with_label_values(&[listener, "proxy_protocol"]),
        });
        Front {
            proxy,
            gateway,
            open: AtomicUsize::new(0),
            metrics,
            tls: None,
            proxy_protocol: false,
            label: if listener == "tls" { "tls" } else { "http" },
        }
    }

    /// Reads a PROXY protocol header first on every connection, before TLS.
    pub fn with_proxy_protocol(mut self, on: bool) -> Front<A> {
        self.proxy_protocol = on;
        self
    }

    /// Accepts TLS on this listener's plain TCP connections (the listener
    /// is added to Pingora without TLS; see [`handshake`]).
    pub fn with_tls(mut self, settings: pingora::listeners::tls::TlsSettings) -> Front<A> {
        self.tls = Some(settings.build());
        self
    }
}

/// Decrements the open-connection count when the connection ends, however
/// it ends.
struct OpenGuard<'a> {
    open: &'a AtomicUsize,
    gauge: &'a IntGauge,
    shared: &'a crate::gateway::Shared,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
        self.shared.connection_closed();
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Front<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let snap = self.gateway.current();
        let limits = snap.config.limits;
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.open.inc();
        self.gateway.shared.connection_opened();
        let _guard = OpenGuard {
            open: &self.open,
            gauge: &self.metrics.open,
            shared: &self.gateway.shared,
        };
        if self.proxy_protocol {
            // Before TLS: the header precedes the ClientHello.
            let read = crate::client_addr::proxy_protocol::accept(
                &mut *stream,
                limits.request_head_timeout,
            );
            if let Err(e) = read.await {
                self.metrics.proxy_protocol.inc();
                crate::client_addr::proxy_protocol::log_refused(self.label, &*stream, &e);
                Shutdown::shutdown(stream.as_mut()).await;
                return None;
            }
        }
        let mut activity = None;
        if let Some(acceptor) = &self.tls {
            match handshake::accept(acceptor, stream, limits.tls_handshake_timeout).await {
                handshake::Handshake::Done(tls, seen) => {
                    stream = tls;
                    activity = Some(seen);
                }
                handshake::Handshake::TimedOut => {
                    self.metrics.tls_handshake_timeouts.inc();
                    return None;
                }
                handshake::Handshake::Failed => {
                    self.metrics.tls_handshake_failures.inc();
                    return None;
                }
            }
        }
        if open > limits.max_connections {
            self.metrics.refused.inc();
            let reply = rendered(&snap.shared, &Refusal::TooManyConnections);
            // Best effort, bounded: the client may not read at all.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                stream.write_all(&reply).await?;
                stream.flush().await
            })
            .await;
            Shutdown::shutdown(stream.as_mut()).await;
            return None;
        }
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            drop(snap);
            // Pingora waits for the client's preface without a bound.
            let read = Arc::new(AtomicU64::new(0));
            let stream: Stream = Box::new(handshake::Counted::new(stream, read.clone()));
            let serve = self.proxy.process_new(stream, shutdown);
            let Some(reused) =
                handshake::preface_within(serve, &read, limits.tls_handshake_timeout).await
            else {
                self.metrics.h2_preface_timeouts.inc();
                return None;
            };
            if activity.is_some_and(|a| a.closed_idle(limits.h2_idle_timeout))
                && !*shutdown.borrow()
                && !self.gateway.shared.is_draining()
            {
                self.metrics.h2_idle.inc();
            }
            return reused;
        }

        let watch = Arc::new(Watch::default());
        let stream: Stream = Box::new(Guarded::new(
            stream,
            watch.clone(),
            limits,
            snap.shared.clone(),
            self.metrics.clone(),
        ));
        drop(snap);
        // The same loop as Pingora's own HTTP/1 server app, with the
        // keep-alive timeout from the configuration. One task-local scope
        // for the whole connection: a scope per request would move
        // Pingora's (large) request future into it each time.
        let keepalive = limits.idle_timeout.as_secs();
        CONNECTION
            .scope(watch.clone(), async move {
                // Draining (SIGTERM, or SIGQUIT: a handover to a new
                // process): every response closes its connection, so a
                // client never sends on a connection that is about to
                // close; it opens a new one, to whichever process listens.
                let closing = || *shutdown.borrow() || self.gateway.shared.is_draining();
                let mut session = ServerSession::new_http1(stream);
                if closing() {
                    session.set_keepalive(None);
                } else {
                    session.set_keepalive(Some(keepalive));
                }
                let mut result = self.proxy.process_new_http(session, shutdown).await;
                while let Some((stream, settings)) = result.map(|r| r.consume()) {
                    watch.next_request();
                    let mut session = ServerSession::new_http1(stream);
                    if let Some(settings) = settings {
                        settings.apply_to_session(&mut session);
                    }
                    // Pingora sets the keep-alive of a finished HTTP/1.1
                    // exchange to "forever" (or to the client's own
                    // `Keep-Alive: timeout=`); the configured idle timeout
                    // wins.
                    if closing() {
                        session.set_keepalive(None);
                    } else {
                        session.set_keepalive(Some(keepalive));
                    }
                    result = self.proxy.process_new_http(session, shutdown).await;
                }
            })
            .await;
        None
    }

    /// Runs once this listener has stopped accepting. Idle keep-alive
    /// connections are not closed at once: a client may be sending on one
    /// at that moment, which would fail its request. While draining, each
    /// response closes its connection, so connections in use go by
    /// themselves; the idle rest are closed after half the grace period
    /// (or as soon as none is left).
    async fn cleanup(&self) {
        let shared = &self.gateway.shared;
        if shared.is_draining() {
            let linger = self.gateway.current().config.shutdown_grace / 2;
            let started = std::time::Instant::now();
            while shared.connections() > 0 && started.elapsed() < linger {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.proxy.http_cleanup().await;
    }
}

/// What the connection's task tells its stream.
#[derive(Default)]
struct Watch {
    /// Bumped before each request after the first.
    generation: AtomicU32,
    /// The gateway has taken the current request.
    accepted: AtomicBool,
    /// The last token's cache key; its bytes are zeroed when the
    /// connection ends.
    token_keys: stella_authn::KeyMemo,
}

impl Watch {
    fn next_request(&self) {
        self.accepted.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Finds the empty line that ends a request head, across reads. Bare LF
/// line ends count too (Pingora's parser accepts them).
#[derive(Default)]
struct HeadScan {
    /// Bytes of head seen so far.
    bytes: usize,
    /// 0: inside a line; 1: after `\n`; 2: after `\n\r`.
    state: u8,
    complete: bool,
}

impl HeadScan {
    /// Feeds bytes; returns whether the head ended within them. Jumps from
    /// line end to line end (`memchr`): a 1 KiB head with a token costs a
    /// few hundred instructions, not a state change per byte.
    fn feed(&mut self, data: &[u8]) -> bool {
        // A line end at the end of the previous read, continued here.
        let mut start = 0;
        while self.state != 0 && start < data.len() {
            match (self.state, data[start]) {
                (_, b'\n') => return self.ends_at(start + 1),
                (1, b'\r') => self.state = 2,
                _ => self.state = 0,
            }
            start += 1;
        }
        let mut at = start;
        while let Some(offset) = memchr::memchr(b'\n', &data[at..]) {
            let nl = at + offset;
            match (data.get(nl + 1), data.get(nl + 2)) {
                (Some(b'\n'), _) => return self.ends_at(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return self.ends_at(nl + 3),
                (Some(b'\r'), None) => {
                    self.state = 2;
                    break;
                }
                (None, _) => {
                    self.state = 1;
                    break;
                }
                _ => at = nl + 1,
            }
        }
        self.bytes += data.len();
        false
    }

    fn ends_at(&mut self, end: usize) -> bool {
        self.bytes += end;
        self.complete = true;
        true
    }
}

/// A reply the stream writes itself, in place of what Pingora writes.
struct Pending {
    bytes: Vec<u8>,
    written: usize,
}

/// The client stream, guarded (see the module documentation).
pub struct Guarded {
    inner: Stream,
    watch: Arc<Watch>,
    generation: u32,
    limits: Limits,
    shared: Arc<Shared>,
    metrics: Arc<ListenerMetrics>,
    scan: HeadScan,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Our reply replacing Pingora's; every write of this request is
    /// swallowed once it is set.
    reply: Option<Pending>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Guarded {
    fn new(
        inner: Stream,
        watch: Arc<Watch>,
        limits: Limits,
        shared: Arc<Shared>,
        metrics: Arc<ListenerMetrics>,
    ) -> Guarded {
        Guarded {
            inner,
            watch,
            generation: 0,
            limits,
            shared,
            metrics,
            scan: HeadScan::default(),
            // A connection's first head is due within the timeout of accept.
            deadline: Some(Box::pin(tokio::time::sleep(limits.request_head_timeout))),
            reply: None,
        }
    }

    /// Starts over when the connection moved on to its next request.
    fn sync(&mut self) {
        let generation = self.watch.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.scan = HeadScan::default();
            // Idle between requests: Pingora's keep-alive timeout applies
            // until the first byte of the next head arrives.
            self.deadline = None;
            self.reply = None;
        }
    }

    fn accepted(&self) -> bool {
        self.watch.accepted.load(Ordering::Acquire)
    }

    /// Answers `refusal` itself and fails the read, so Pingora closes.
    fn refuse(&mut self, cx: &mut Context<'_>, refusal: Refusal) -> Poll<io::Result<()>> {
        let kind = match refusal {
            Refusal::RequestTimeout => {
                self.metrics.head_timeouts.inc();
                io::ErrorKind::TimedOut
            }
            _ => {
                self.metrics.head_too_large.inc();
                io::ErrorKind::InvalidData
            }
        };
        self.deadline = None;
        self.reply = Some(Pending {
            bytes: rendered(&self.shared, &refusal),
            written: 0,
        });
        // Written now if the socket takes it (it nearly always does);
        // the rest, if any, on Pingora's shutdown of the stream.
        let _ = self.pump(cx);
        Poll::Ready(Err(io::Error::new(kind, refusal.reason())))
    }

    /// Writes what is left of our reply.
    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(reply) = self.reply.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while reply.written < reply.bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &reply.bytes[reply.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => reply.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.sync();
        if this.accepted() || this.scan.complete {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let data = &buf.filled()[before..];
                if data.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let complete = this.scan.feed(data);
                if this.scan.bytes > this.limits.max_request_header_bytes {
                    return this.refuse(cx, Refusal::RequestHeaderFieldsTooLarge);
                }
                if complete {
                    this.deadline = None;
                } else if this.deadline.is_none() {
                    this.deadline = Some(Box::pin(tokio::time::sleep(
                        this.limits.request_head_timeout,
                    )));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return this.refuse(cx, Refusal::RequestTimeout);
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.sync();
        if this.reply.is_none() && !this.accepted() {
            // Pingora answering a request the gateway never saw.
            let refusal = pingora_refusal(buf);
            this.reply = Some(Pending {
                bytes: rendered(&this.shared, &refusal),
                written: 0,
            });
        }
        if this.reply.is_some() {
            return match this.pump(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.sync();
        if this.reply.is_some() || !this.accepted() {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.pump(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.pump(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

/// The gateway's refusal for a response Pingora started to write itself.
fn pingora_refusal(head: &[u8]) -> Refusal {
    match head.get(9..12) {
        Some(b"405") => Refusal::MethodNotAllowed {
            allowed: Vec::new(),
        },
        _ => Refusal::UnparsableRequest,
    }
}

/// A whole HTTP/1.1 response for `refusal`, closing the connection.
fn rendered(shared: &Shared, refusal: &Refusal) -> Vec<u8> {
    let request_id = shared.next_request_id();
    let reply = refusal.reply(&request_id);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nx-request-id: {request_id}\r\n",
        reply.status,
        crate::response::title(reply.status)
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        reply.body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(&reply.body);
    out
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        // Our reply first, within a bound: a client that does not read
        // cannot hold the connection.
        if self.reply.is_some() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                std::future::poll_fn(|cx| self.pump(cx)),
            )
            .await;
        }
        Shutdown::shutdown(self.inner.as_mut()).await;
    }
}

delegate_stream_digests!(Guarded);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_the_first_empty_line_across_reads() {
        let mut scan = HeadScan::default();
        assert!(!scan.feed(b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(scan.feed(b"\n\r\nbody\r\n\r\n"));
        assert_eq!(scan.bytes, "GET / HTTP/1.1\r\nHost: a\r\n\r\n".len());

        let mut lf = HeadScan::default();
        assert!(lf.feed(b"GET / HTTP/1.1\nHost: a\n\nrest"));
        assert_eq!(lf.bytes, "GET / HTTP/1.1\nHost: a\n\n".len());

        // Split inside the terminator, one byte per read.
        let mut bytewise = HeadScan::default();
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let ends: Vec<bool> = head.iter().map(|b| bytewise.feed(&[*b])).collect();
        assert_eq!(ends.iter().position(|e| *e), Some(head.len() - 1));
        assert_eq!(bytewise.bytes, head.len());

        // "\n\r" followed by something else is not an end.
        let mut near = HeadScan::default();
        assert!(!near.feed(b"GET / HTTP/1.1\n\rX: y\r"));
        assert!(near.feed(b"\n\n"));

        // A lone CR between line ends is not an empty line.
        let mut cr = HeadScan::default();
        assert!(!cr.feed(b"GET / HTTP/1.1\r\nX: a\r\nY: \rb\r\n"));
        assert!(!cr.complete);
    }

    #[test]
    fn pingora_statuses_map_to_the_gateway_refusals() {
        assert_eq!(
            pingora_refusal(b"HTTP/1.1 400 Bad Request\r\n").code(),
            "invalid_request"
        );
        assert_eq!(
            pingora_refusal(b"HTTP/1.1 405 Method Not Allowed\r\n").code(),
            "method_not_allowed"
        );
        assert_eq!(pingora_refusal(b"").code(), "invalid_request");
    }

    #[test]
    fn rendered_refusals_are_whole_closing_responses() {
        let shared = Shared::new();
        let bytes = rendered(&shared, &Refusal::RequestTimeout);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.contains("application/problem+json"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "request_timeout");
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
}
