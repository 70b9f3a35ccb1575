//! A TLS service for the gateway's HTTPS upstreams: HAProxy terminating
//! TLS (OpenSSL, so not the gateway's own rustls on both ends) in front of
//! a plain backend such as the sample service, optionally requiring a
//! client certificate. It tells the backend what the handshake negotiated,
//! in request headers the sample service echoes back:
//! `x-upstream-tls-alpn`, `x-upstream-tls-sni`, and
//! `x-upstream-tls-client-cn` (the client certificate's common name).
//!
//! HAProxy cannot bind port 0 and report the port, so the port is picked
//! free and a start that loses the race for it is retried.

use crate::process::{free_port, wait_until};
use crate::temp::TempDir;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `haproxy` terminating TLS for one backend, killed when dropped.
pub struct TlsTerminator {
    child: std::process::Child,
    pub addr: SocketAddr,
    config: PathBuf,
}

impl TlsTerminator {
    /// TLS on a free loopback port with `cert` and `key`, forwarding to
    /// `backend`; with `client_ca`, a client certificate from that CA is
    /// required (`verify required`). ALPN offers `h2` and `http/1.1`.
    pub fn start(
        dir: &TempDir,
        backend: SocketAddr,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> TlsTerminator {
        // HAProxy wants the certificate and its key in one file.
        let n = free_port();
        let crt = dir.join(&format!("haproxy-{n}.pem"));
        let mut pem = std::fs::read(cert).expect("read server certificate");
        pem.extend(std::fs::read(key).expect("read server key"));
        std::fs::write(&crt, pem).expect("write haproxy certificate");
        let verify = match client_ca {
            Some(ca) => format!(" verify required ca-file {}", ca.display()),
            None => String::new(),
        };
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join(&format!("haproxy-{port}.cfg"));
            std::fs::write(
                &config,
                format!(
                    "global\n  maxconn 256\n\
                     defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
                     frontend tls\n  bind 127.0.0.1:{port} ssl crt {crt} alpn h2,http/1.1{verify}\n\
                     \x20 http-request set-header x-upstream-tls-alpn %[ssl_fc_alpn]\n\
                     \x20 http-request set-header x-upstream-tls-sni %[ssl_fc_sni]\n\
                     \x20 http-request set-header x-upstream-tls-client-cn %[ssl_c_s_dn(cn)]\n\
                     \x20 default_backend app\n\
                     backend app\n  server app {backend}\n",
                    crt = crt.display(),
                ),
            )
            .expect("write haproxy config");
            if let Some(t) = TlsTerminator::try_start(port, config) {
                return t;
            }
        }
        panic!("haproxy did not start");
    }

    fn try_start(port: u16, config: PathBuf) -> Option<TlsTerminator> {
        let child = spawn(&config);
        let mut t = TlsTerminator {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config,
        };
        let up = wait_until(Duration::from_secs(10), || {
            matches!(t.child.try_wait(), Ok(Some(_))) || t.accepts()
        });
        (up && matches!(t.child.try_wait(), Ok(None))).then_some(t)
    }

    fn accepts(&self) -> bool {
        std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
    }

    /// SIGKILL; returns once the port refuses connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert!(
            wait_until(Duration::from_secs(10), || !self.accepts()),
            "haproxy port still accepts after kill"
        );
    }

    /// Starts it again on the same port, with the same configuration.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.addr.port();
        let again = TlsTerminator::try_start(port, self.config.clone())
            .unwrap_or_else(|| panic!("haproxy did not restart on port {port}"));
        *self = again;
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`LoadBalancer`] passes the client on to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientPassing {
    /// TCP mode, a PROXY protocol v2 header first (`send-proxy-v2`).
    ProxyV2,
    /// TCP mode, a PROXY protocol v1 line first (`send-proxy`).
    ProxyV1,
    /// HTTP mode, `option forwardfor`: an `X-Forwarded-For` line with
    /// the client's address is added to each request.
    ForwardFor,
}

/// `haproxy` as a load balancer in front of a gateway listener, killed
/// when dropped. It connects to the gateway from `source` (a loopback
/// address such as `127.0.0.3`), so the gateway can tell it apart from
/// clients that connect directly (from `127.0.0.1`).
pub struct LoadBalancer {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl LoadBalancer {
    pub fn start(
        dir: &TempDir,
        gateway: SocketAddr,
        passing: ClientPassing,
        source: &str,
    ) -> LoadBalancer {
        let (mode, frontend, server) = match passing {
            ClientPassing::ProxyV2 => ("tcp", "", " send-proxy-v2"),
            ClientPassing::ProxyV1 => ("tcp", "", " send-proxy"),
            ClientPassing::ForwardFor => ("http", "  option forwardfor\n", ""),
        };
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join(&format!("haproxy-lb-{port}.cfg"));
            std::fs::write(
                &config,
                format!(
                    "global\n  maxconn 256\n\
                     defaults\n  mode {mode}\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
                     frontend lb\n  bind 127.0.0.1:{port}\n{frontend}  default_backend gateway\n\
                     backend gateway\n  server gw {gateway} source {source}{server}\n"
                ),
            )
            .expect("write haproxy config");
            let child = spawn(&config);
            let mut lb = LoadBalancer {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            let up = wait_until(Duration::from_secs(10), || {
                matches!(lb.child.try_wait(), Ok(Some(_)))
                    || std::net::TcpStream::connect_timeout(&lb.addr, Duration::from_millis(200))
                        .is_ok()
            });
            if up && matches!(lb.child.try_wait(), Ok(None)) {
                return lb;
            }
        }
        panic!("haproxy did not start");
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in the foreground with `config`, its own log on the test's
/// stderr.
fn spawn(config: &std::path::Path) -> std::process::Child {
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run haproxy (is it installed? apt-get install -y haproxy)")
}
