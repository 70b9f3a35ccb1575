//! A real `redis-server` for the shared DPoP replay store. It cannot report
//! a port it chose (`--port 0` turns its TCP listener off), so its port is
//! picked free and a start that loses the race is retried.

use crate::pki::Pki;
use crate::process::{free_port, free_ports, wait_until};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A `redis-server` on a free loopback port, without persistence, killed
/// when dropped. A TLS one also listens in plain text on `port`, which the
/// harness uses only to see that it is up.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    /// The TLS port, for a server started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    /// Arguments beyond the port, kept for a restart.
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`; a start that loses
    /// the race for its port is retried with another.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// As [`start`](Self::start), with more `redis-server` arguments
    /// (`--requirepass`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        for _ in 0..5 {
            if let Some(redis) = RedisServer::try_start(free_port(), None, &extra) {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// A server that speaks TLS on `tls_port` with `pki`'s server
    /// certificate; `client_certificates` makes it require one from `pki`'s
    /// CA (`tls-auth-clients yes`).
    pub fn start_tls(pki: &Pki, client_certificates: bool, extra: &[&str]) -> RedisServer {
        let path = |p: &PathBuf| p.display().to_string();
        let mut args: Vec<String> = vec![
            "--tls-cert-file".into(),
            path(&pki.server_cert),
            "--tls-key-file".into(),
            path(&pki.server_key),
            "--tls-ca-cert-file".into(),
            path(&pki.ca),
            "--tls-auth-clients".into(),
            if client_certificates { "yes" } else { "no" }.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        for _ in 0..5 {
            let ports = free_ports(2);
            if let Some(redis) = RedisServer::try_start(ports[0], Some(ports[1]), &args) {
                return redis;
            }
        }
        panic!("redis-server with tls did not start (built without tls support?)");
    }

    /// Starts an empty server again on the same port (after
    /// [`kill`](Self::kill)): the store is back, its entries are gone.
    pub fn restart(&mut self) {
        self.kill();
        let extra = std::mem::take(&mut self.extra);
        let fresh = RedisServer::try_start(self.port, self.tls_port, &extra)
            .unwrap_or_else(|| panic!("redis-server did not restart on port {}", self.port));
        *self = fresh;
    }

    fn try_start(port: u16, tls_port: Option<u16>, extra: &[String]) -> Option<RedisServer> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir());
        if let Some(tls_port) = tls_port {
            command.args(["--tls-port", &tls_port.to_string()]);
        }
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run redis-server (is it installed?)");
        let mut redis = RedisServer {
            child,
            port,
            tls_port,
            extra: extra.to_vec(),
        };
        // A password makes PING answer -NOAUTH: up all the same.
        let up = wait_until(Duration::from_secs(10), || {
            matches!(redis.child.try_wait(), Ok(Some(_))) || redis.answers()
        });
        (up && matches!(redis.child.try_wait(), Ok(None))).then_some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://[userinfo@]127.0.0.1:<tls port>`.
    pub fn tls_url(&self, userinfo: &str) -> String {
        let port = self.tls_port.expect("a server started with start_tls");
        match userinfo {
            "" => format!("rediss://127.0.0.1:{port}"),
            _ => format!("rediss://{userinfo}@127.0.0.1:{port}"),
        }
    }

    /// Whether the server answers `PING` with `+PONG`.
    pub fn ping(&self) -> bool {
        self.first_reply_line().as_deref() == Some(b"+PONG".as_slice())
    }

    /// Whether the server answers `PING` at all (`+PONG`, or `-NOAUTH`
    /// behind a password).
    fn answers(&self) -> bool {
        self.first_reply_line()
            .is_some_and(|line| line.starts_with(b"+PONG") || line.starts_with(b"-NOAUTH"))
    }

    /// How many clients are connected, not counting the one asking
    /// (`INFO clients`); `None` when the server does not answer.
    pub fn connected_clients(&self) -> Option<usize> {
        use std::io::{BufRead, BufReader, Read, Write};
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        s.write_all(b"INFO clients\r\n").ok()?;
        let mut reader = BufReader::new(s);
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let len: usize = header.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).ok()?;
        let body = String::from_utf8(body).ok()?;
        let n: usize = body
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))?
            .trim()
            .parse()
            .ok()?;
        n.checked_sub(1)
    }

    fn first_reply_line(&self) -> Option<Vec<u8>> {
        use std::io::{Read, Write};
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        s.write_all(b"PING\r\n").ok()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") && line.len() < 256 {
            s.read_exact(&mut byte).ok()?;
            line.push(byte[0]);
        }
        line.truncate(line.len().saturating_sub(2));
        Some(line)
    }

    /// SIGKILL (an abrupt outage); returns once the port refuses.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            }),
            "redis port still accepts after kill"
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
