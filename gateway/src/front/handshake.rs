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
//! header-list limit are the proxy's options ([`h2_settings`]). To count
//! connections closed for idleness, the raw socket of a TLS connection
//! records when it last read data and whether the client closed it
//! ([`RawTcp`]); an h2 connection that ended without the client closing it,
//! and with nothing read for the idle timeout, was closed for idleness.

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

impl AsyncWrite for RawTcp {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for RawTcp {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await;
    }
}

delegate_stream_digests!(RawTcp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_when_the_client_neither_closed_nor_spoke_for_the_timeout() {
        let a = Activity::new();
        assert!(a.closed_idle(Duration::ZERO));
        assert!(!a.closed_idle(Duration::from_secs(60)));
        a.peer_closed.store(true, Ordering::Relaxed);
        assert!(!a.closed_idle(Duration::ZERO), "the client closed it");
    }
}
