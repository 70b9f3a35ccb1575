//! The end-to-end harness of the workspace: real processes on loopback,
//! nothing mocked. The test Authority (`tests/authority`, node), the sample
//! service `stella-echo-service` in each trust mode, `redis-server`, and the
//! gateway binary, started from a configuration written into a temp dir;
//! a plain HTTP/1.1 client, curl for HTTPS, certificates made by openssl,
//! JWS and DPoP proofs made here, and a Prometheus text parser.
//!
//! Ground rules (STYLE.md, Tests): no fixed ports, no fixed sleeps
//! (readiness lines and polling), assertions on what a user sees.
//!
//! Ports: a process that can bind port 0 does, and the harness reads the
//! address back from its ready line: the Authority (`AUTHORITY_READY`) and
//! the sample service (`ECHO_READY`). Two cannot, so their ports are picked
//! free with [`free_ports`] and a failed start is retried with fresh ones:
//! `redis-server` (`--port 0` turns its TCP listener off) and the gateway
//! (see [`gateway`](crate::gateway) for why, and for the one lost race a
//! retry does not catch).
//!
//! Process lifetime: `cargo nextest` runs every test in its own process, so
//! each test starts the processes it needs (the Authority costs about a
//! second of one core; everything else is fast) and they die with the test
//! ([`Process`] kills on drop). Nothing is shared between tests: every test
//! has its own temp dir, ports, Authority and keys.
//!
//! Binaries: `CARGO_BIN_EXE_*` is set only when compiling the package that
//! owns the binary, so the harness finds `stella-gateway` and
//! `stella-echo-service` in the target folder of the running test
//! executable (see [`gateway_binary`] and [`echo_binary`]).
//!
//! One module per concern: [`process`] (children with a ready line, ports,
//! polling), [`http`] (HTTP/1.1 client, response parsing, curl),
//! [`temp`], [`pki`], [`authority`], [`echo`], [`gateway`], [`redis`],
//! [`haproxy`] (a TLS service in front of a plain one),
//! [`metrics`], [`jose`] (JWS helpers and signing keys), [`dpop`] (DPoP
//! keys and proofs), [`policies`] and [`assert`]. Everything is re-exported
//! here, so `use stella_test_support::*` gives every name.

pub mod assert;
pub mod authority;
pub mod dpop;
pub mod echo;
pub mod gateway;
pub mod haproxy;
pub mod http;
pub mod jose;
pub mod metrics;
pub mod pki;
pub mod policies;
pub mod process;
pub mod redis;
pub mod temp;

pub use assert::*;
pub use authority::*;
pub use dpop::*;
pub use echo::*;
pub use gateway::*;
pub use haproxy::*;
pub use http::*;
pub use jose::*;
pub use metrics::*;
pub use pki::*;
pub use policies::*;
pub use process::*;
pub use redis::*;
pub use temp::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The gateway's id: the envelope issuer the services expect.
pub const GATEWAY_ID: &str = "stella-gateway-e2e";
/// The audience access tokens are issued for (the Authority's default).
pub const API_AUDIENCE: &str = "http://gateway.local/api";
/// The HS256 envelope key shared by the gateway and the services.
pub const ENVELOPE_KEY: &str =
    "hs256:c3RlbGxhLWUyZS10ZXN0LWVudmVsb3BlLWtleS1ub3QtZm9yLXByb2R1Y3Rpb24";
pub const ENVELOPE_KID: &str = "e2e-1";
/// The six headers of the identity envelope, lowercase.
pub const ENVELOPE_HEADERS: [&str; 6] = [
    "x-stellaops-identity-envelope",
    "x-stellaops-identity-envelope-signature",
    "x-stellaops-identity-envelope-alg",
    "x-stellaops-identity-envelope-kid",
    "x-stellaops-identity-envelope-iat",
    "x-stellaops-identity-envelope-exp",
];

/// How long a process may take to print its ready line.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support sits two folders below the workspace root")
        .to_path_buf()
}

/// Seconds since the epoch.
pub use stella_core::unix_now as now;

/// The `stella-gateway` path cargo or nextest hands the running test, if
/// any (set at run time by nextest, and by newer cargo).
pub(crate) fn gateway_binary_from_env() -> Option<PathBuf> {
    [
        "NEXTEST_BIN_EXE_stella-gateway",
        "CARGO_BIN_EXE_stella-gateway",
    ]
    .into_iter()
    .find_map(std::env::var_os)
    .map(PathBuf::from)
}

/// `target/<profile>`: where the workspace's binaries are, the folder of
/// the gateway binary the test runs, else the parent of the `deps/` folder
/// that holds the running test executable.
pub fn binary_dir() -> PathBuf {
    if let Some(folder) = gateway_binary_from_env().and_then(|p| p.parent().map(Path::to_path_buf))
    {
        return folder;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let folder = exe.parent().expect("test executable has a folder");
    if folder.ends_with("deps") {
        folder.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        folder.to_path_buf()
    }
}
