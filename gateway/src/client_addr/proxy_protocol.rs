//! The PROXY protocol (HAProxy's, versions 1 and 2) on a listener with
//! `proxy_protocol: true`: every connection must open with a valid header,
//! within the request-head deadline, or it is closed without an answer.
//! The header's source address becomes the connection's peer address (its
//! socket digest, what `Session::client_addr` reads), so everything after
//! it sees the client and not the load balancer. A v2 `LOCAL` header (the
//! load balancer's own health check) and a v1 `UNKNOWN` one keep the
//! socket's peer.
//!
//! The header is read byte-exact, never past its end, so what follows (the
//! TLS ClientHello, or the HTTP request) is untouched; the bytes are then
//! parsed by the `ppp` crate. The connection front calls [`accept`] on the
//! raw TCP stream, before the TLS listener's handshake (the header comes
//! before the ClientHello) and before the plain listener's request head.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use pingora::protocols::{GetSocketDigest, SocketDigest, UniqueID};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (section 2.2 of the protocol).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// The largest v2 header: 16 bytes and a 16-bit length.
const V2_MAX: usize = 16 + u16::MAX as usize;

/// What a valid header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client's address, as the proxy saw it.
    Client(SocketAddr),
    /// No client address: a v2 `LOCAL` command (a health check by the
    /// proxy itself), a v1 `UNKNOWN` or a v2 header without an IP family.
    /// The socket's peer stays.
    Local,
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("the connection did not start with a proxy protocol header")]
    Missing,
    #[error("the proxy protocol header is malformed")]
    Malformed,
    #[error("the proxy protocol header did not arrive in time")]
    Timeout,
    #[error("the connection closed before its proxy protocol header ended")]
    Closed,
}

/// Reads and parses the header at the start of `stream`, byte-exact.
pub async fn read_header<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
) -> Result<Source, ProxyHeaderError> {
    // The shortest v1 header (`PROXY UNKNOWN\r\n`) is 15 bytes, a v2 one
    // 16: 12 bytes tell them apart without reading past either.
    let mut head = vec![0u8; 12];
    read_exact(stream, &mut head).await?;
    if head == V2_SIGNATURE {
        head.resize(16, 0);
        read_exact(stream, &mut head[12..]).await?;
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        head.resize(16 + len, 0);
        read_exact(stream, &mut head[16..]).await?;
    } else if head.starts_with(b"PROXY ") {
        // To the line end, a byte at a time (the listener's read buffer
        // makes these cheap), so nothing after it is consumed.
        while !head.ends_with(b"\r\n") {
            if head.len() >= V1_MAX {
                return Err(ProxyHeaderError::Malformed);
            }
            let mut byte = [0u8; 1];
            read_exact(stream, &mut byte).await?;
            head.push(byte[0]);
        }
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    debug_assert!(head.len() <= V2_MAX);
    parse(&head)
}

async fn read_exact<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), ProxyHeaderError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ProxyHeaderError::Closed),
        Err(_) => Err(ProxyHeaderError::Closed),
    }
}

/// Parses one whole header (and nothing after it).
pub fn parse(bytes: &[u8]) -> Result<Source, ProxyHeaderError> {
    use ppp::{v1, v2, HeaderResult};
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(header)) if header.header.len() == bytes.len() => {
            Ok(match header.addresses {
                v1::Addresses::Tcp4(a) => {
                    Source::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                v1::Addresses::Tcp6(a) => {
                    Source::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                v1::Addresses::Unknown => Source::Local,
            })
        }
        HeaderResult::V2(Ok(header)) if header.len() == bytes.len() => {
            if header.command == v2::Command::Local {
                return Ok(Source::Local);
            }
            Ok(match header.addresses {
                v2::Addresses::IPv4(a) => {
                    Source::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                v2::Addresses::IPv6(a) => {
                    Source::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Source::Local,
            })
        }
        _ => Err(ProxyHeaderError::Malformed),
    }
}

/// Reads the header within `deadline` and makes its source the stream's
/// peer address. `Err`: close the connection.
pub async fn accept<S>(stream: &mut S, deadline: Duration) -> Result<Source, ProxyHeaderError>
where
    S: AsyncRead + Unpin + GetSocketDigest + UniqueID + ?Sized,
{
    let source = match tokio::time::timeout(deadline, read_header(stream)).await {
        Ok(result) => result?,
        Err(_) => return Err(ProxyHeaderError::Timeout),
    };
    if let Source::Client(addr) = source {
        set_peer(stream, addr);
    }
    Ok(source)
}

/// A fresh socket digest for the same socket whose peer is `addr`.
#[cfg(unix)]
fn set_peer<S: GetSocketDigest + UniqueID + ?Sized>(stream: &mut S, addr: SocketAddr) {
    let digest = SocketDigest::from_raw_fd(stream.id());
    let _ = digest
        .peer_addr
        .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(addr)));
    stream.set_socket_digest(digest);
}

/// One debug line per refused connection (a scanner would otherwise fill
/// the log); the metric counts them all.
pub fn log_refused<S: GetSocketDigest + ?Sized>(listener: &str, stream: &S, e: &ProxyHeaderError) {
    let peer = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().map(ToString::to_string))
        .unwrap_or_default();
    tracing::debug!(listener, peer, error = %e, "connection closed: proxy protocol");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        let len = (addresses.len() + tlvs.len()) as u16;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    async fn read(bytes: &[u8]) -> (Result<Source, ProxyHeaderError>, Vec<u8>) {
        let mut stream = bytes;
        let result = read_header(&mut stream).await;
        (result, stream.to_vec())
    }

    #[tokio::test]
    async fn v1_headers_give_the_client_and_leave_the_request_unread() {
        let (source, rest) =
            read(b"PROXY TCP4 198.51.100.4 10.0.0.1 5555 8080\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(
            source,
            Ok(Source::Client("198.51.100.4:5555".parse().unwrap()))
        );
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (source, _) = read(b"PROXY TCP6 2001:db8::5 2001:db8::1 443 8443\r\n").await;
        assert_eq!(
            source,
            Ok(Source::Client("[2001:db8::5]:443".parse().unwrap()))
        );
        let (source, rest) = read(b"PROXY UNKNOWN\r\nG").await;
        assert_eq!(source, Ok(Source::Local));
        assert_eq!(rest, b"G");
    }

    #[tokio::test]
    async fn v2_headers_give_the_client_and_local_keeps_the_peer() {
        let mut addresses = vec![198, 51, 100, 4, 10, 0, 0, 1];
        addresses.extend_from_slice(&5555u16.to_be_bytes());
        addresses.extend_from_slice(&8080u16.to_be_bytes());
        // A NOOP TLV after the addresses, as some balancers add.
        let mut bytes = v2(1, 0x11, &addresses, &[0x04, 0x00, 0x01, 0x2a]);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (source, rest) = read(&bytes).await;
        assert_eq!(
            source,
            Ok(Source::Client("198.51.100.4:5555".parse().unwrap()))
        );
        assert_eq!(rest, b"\x16\x03\x01", "the ClientHello is left for TLS");
        let (source, _) = read(&v2(0, 0x00, &[], &[])).await;
        assert_eq!(source, Ok(Source::Local));
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.0,
            Err(ProxyHeaderError::Missing)
        );
        assert_eq!(
            read(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00")
                .await
                .0,
            Err(ProxyHeaderError::Missing)
        );
        assert_eq!(
            read(b"PROXY TCP4 not an address\r\n").await.0,
            Err(ProxyHeaderError::Malformed)
        );
        assert_eq!(
            read(b"PROXY TCP4 198.51.100.4 10.0.0.1 5555 8080").await.0,
            Err(ProxyHeaderError::Closed)
        );
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(
            read(long.as_bytes()).await.0,
            Err(ProxyHeaderError::Malformed)
        );
        // v2 with a bad version, with a length past the end, with IPv4
        // addresses too short for their family.
        let mut bad_version = v2(1, 0x11, &[0; 12], &[]);
        bad_version[12] = 0x31;
        assert_eq!(read(&bad_version).await.0, Err(ProxyHeaderError::Malformed));
        let mut truncated = v2(1, 0x11, &[0; 12], &[]);
        truncated.truncate(20);
        assert_eq!(read(&truncated).await.0, Err(ProxyHeaderError::Closed));
        assert_eq!(
            read(&v2(1, 0x11, &[0; 4], &[])).await.0,
            Err(ProxyHeaderError::Malformed)
        );
    }
}
