//! The TLS listener's handshake, under the gateway's deadline, and what
//! HTTP/2 connections are told.
//!
//! Pingora accepts TLS itself with a fixed 60 s bound before any
//! application code runs, so a client that opens TCP and stalls the
//! handshake holds a connection (and a task) for a minute. The TLS listener
//! is therefore handed to Pingora as plain TCP, and the front runs the same
//! handshake (Pingora's [`Acceptor`], with the listener's certificate
//! resolver, client-certificate verifier and callbacks) within
//! `gateway.limits.tls_handshake_timeout_ms`.
//!
//! HTTP/2 is Pingora's: the idle timeout, the concurrent-stream limit and the
//! header-list limit are the proxy's options ([`h2_settings`]). Pingora
//! waits for the client's connection preface without a bound, so the
//! preface must arrive within the handshake deadline too ([`Counted`],
//! [`preface_within`]). To count
//! connections closed for idleness, the raw socket of a TLS connection
//! records when it last read data and whether the client closed it
//! ([`RawTcp`]); an h2 connection that ended without the client closing it,
//! and with nothing read for the idle timeout, was closed for idleness.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v2::server::default_h2_options;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::Limits;

/// Sets Pingora's HTTP/2 server options from the limits: idle timeout,
/// concurrent streams, header list size. Read once, when the proxy is built
/// (the keys are restart-only).
pub fn h2_settings<SV>(proxy: &mut pingora::proxy::HttpProxy<SV>, limits: &Limits) {
    let mut server = proxy.server_options.take().unwrap_or_default();
    server.h2_idle_timeout = Some(limits.h2_idle_timeout);
    proxy.server_options = Some(server);
    let mut h2 = default_h2_options();
    h2.max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_bytes);
    proxy.h2_options = Some(h2);
}

/// The HTTP/2 client connection preface (RFC 9113 section 3.4), in bytes.
pub const H2_PREFACE_LEN: u64 = 24;

/// Serves an HTTP/2 connection (`serve`), closing it (by dropping `serve`,
/// `None`) when fewer than [`H2_PREFACE_LEN`] bytes came from the client
/// within `deadline` after the TLS handshake: a client that agreed on h2 and
/// then sent nothing, or part of the preface, holds no task past it.
pub async fn preface_within<F: Future>(
    serve: F,
    read: &AtomicU64,
    deadline: Duration,
) -> Option<F::Output> {
    let serve = std::pin::pin!(serve);
    let mut serve = serve;
    tokio::select! {
        out = serve.as_mut() => return Some(out),
        () = tokio::time::sleep(deadline) => {}
    }
    if read.load(Ordering::Relaxed) < H2_PREFACE_LEN {
        return None;
    }
    Some(serve.await)
}

/// A TLS stream on which HTTP/2 was agreed, counting the bytes the client
/// sent after the handshake (for [`preface_within`]).
#[derive(Debug)]
pub struct Counted {
    inner: Stream,
    read: Arc<AtomicU64>,
}

impl Counted {
    pub fn new(inner: Stream, read: Arc<AtomicU64>) -> Counted {
        Counted { inner, read }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before) as u64;
        if got > 0 {
            self.read.fetch_add(got, Ordering::Relaxed);
        }
        polled
    }
}

delegate_write_and_shutdown!(Counted);

delegate_stream_digests!(Counted);

/// How a TLS handshake ended.
pub enum Handshake {
    Done(Stream, Arc<Activity>),
    TimedOut,
    Failed,
}

/// Runs the handshake on `stream` within `deadline`.
pub async fn accept(acceptor: &Acceptor, stream: Stream, deadline: Duration) -> Handshake {
    let activity = Arc::new(Activity::new());
    let raw = RawTcp {
        inner: stream,
        activity: activity.clone(),
    };
    match tokio::time::timeout(deadline, acceptor.tls_handshake(raw)).await {
        Ok(Ok(tls)) => Handshake::Done(Box::new(tls), activity),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "tls handshake failed");
            Handshake::Failed
        }
        Err(_) => Handshake::TimedOut,
    }
}

/// What the client did on a TLS connection's socket.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last read that brought data.
    last_read_ms: AtomicU64,
    /// The client closed (end of stream) or the socket failed.
    peer_closed: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            peer_closed: AtomicBool::new(false),
        }
    }

    fn read_data(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether a connection that has ended was closed by the gateway after
    /// nothing came from the client for `idle`.
    pub fn closed_idle(&self, idle: Duration) -> bool {
        if self.peer_closed.load(Ordering::Relaxed) {
            return false;
        }
        let quiet = (self.opened.elapsed().as_millis() as u64)
            .saturating_sub(self.last_read_ms.load(Ordering::Relaxed));
        quiet >= idle.as_millis() as u64
    }
}

/// The TCP stream under TLS, recording [`Activity`]. Pingora's handshake
/// takes any `IO`, which a boxed stream is not; this is that `IO`.
#[derive(Debug)]
pub struct RawTcp {
    inner: Stream,
    activity: Arc<Activity>,
}

impl AsyncRead for RawTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.activity.read_data(),
            Poll::Ready(_) => self.activity.peer_closed.store(true, Ordering::Relaxed),
            Poll::Pending => {}
        }
        polled
    }
}

delegate_write_and_shutdown!(RawTcp);

delegate_stream_digests!(RawTcp);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_h2_connection_is_dropped_when_its_preface_did_not_arrive_in_time() {
        let read = AtomicU64::new(0);
        let deadline = Duration::from_secs(1);
        // Nothing read: the connection's future is dropped at the deadline.
        let pending = std::future::pending::<()>();
        assert!(preface_within(pending, &read, deadline).await.is_none());
        // Part of the preface is not enough.
        read.store(H2_PREFACE_LEN - 1, Ordering::Relaxed);
        let pending = std::future::pending::<()>();
        assert!(preface_within(pending, &read, deadline).await.is_none());
        // The preface came: served to the end, past the deadline.
        read.store(H2_PREFACE_LEN, Ordering::Relaxed);
        let serve = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            7
        };
        assert_eq!(preface_within(serve, &read, deadline).await, Some(7));
        // A connection that ends before the deadline ends as it does.
        read.store(0, Ordering::Relaxed);
        assert_eq!(preface_within(async { 3 }, &read, deadline).await, Some(3));
    }

    #[test]
    fn a_connection_is_idle_only_when_the_client_neither_closed_nor_spoke_for_the_timeout() {
        let a = Activity::new();
        assert!(a.closed_idle(Duration::ZERO));
        assert!(!a.closed_idle(Duration::from_secs(60)));
        a.peer_closed.store(true, Ordering::Relaxed);
        assert!(!a.closed_idle(Duration::ZERO), "the client closed it");
    }
}
