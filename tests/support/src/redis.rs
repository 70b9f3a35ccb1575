//! A real `redis-server` for the shared DPoP replay store. It cannot report
//! a port it chose (`--port 0` turns its TCP listener off), so its port is
//! picked free and a start that loses the race is retried.

use crate::process::{free_port, wait_until};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A `redis-server` on a free loopback port, without persistence, killed
/// when dropped.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`; a start that loses
    /// the race for its port is retried with another.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            if let Some(redis) = RedisServer::try_start(free_port()) {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// Starts an empty server again on the same port (after
    /// [`kill`](Self::kill)): the store is back, its entries are gone.
    pub fn restart(&mut self) {
        self.kill();
        let fresh = RedisServer::try_start(self.port)
            .unwrap_or_else(|| panic!("redis-server did not restart on port {}", self.port));
        *self = fresh;
    }

    fn try_start(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run redis-server (is it installed?)");
        let mut redis = RedisServer { child, port };
        let up = wait_until(Duration::from_secs(10), || {
            matches!(redis.child.try_wait(), Ok(Some(_))) || redis.ping()
        });
        (up && matches!(redis.child.try_wait(), Ok(None))).then_some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the server answers `PING` with `+PONG`.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
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
