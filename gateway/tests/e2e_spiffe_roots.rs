//! SPIFFE X.509-SVIDs are verified against the roots of their own trust
//! domain (docs/design.md §3.3): one domain's CA can never vouch for another
//! domain's workload IDs, and certificates without a SPIFFE ID still use the
//! listener's `client_ca_file`.

mod common;

use common::{curl_https, Echo, TempDir, ENVELOPE_KEY, ENVELOPE_KID, GATEWAY_ID};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use stella_test_support::{free_port, Process};

fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key \
             -out {name}.pem -days 2 -subj /CN={name} -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

fn leaf(dir: &Path, ca: &str, name: &str, extra: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n{extra}"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key \
             -out {name}.csr -subj /CN={name}"
        ),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem \
             -days 2 -extfile {name}.ext"
        ),
    );
}

/// The two CAs and the gateway's server certificate every test needs.
fn pki(dir: &TempDir) -> &Path {
    let d = dir.path();
    ca(d, "stella-ca");
    ca(d, "domain-ca");
    leaf(
        d,
        "stella-ca",
        "server",
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    d
}

/// A gateway whose TLS listener trusts `stella-ca` for plain client
/// certificates and `domain-ca` for SVIDs of the trust domain stella.test.
fn gateway(dir: &TempDir, echo: &Echo, domain_ca: &str) -> (Process, std::net::SocketAddr) {
    let (http, tls, admin) = (free_port(), free_port(), free_port());
    let d = dir.path().display();
    let policies = common::policies_dir();
    let upstream = echo.addr();
    let yaml = format!(
        r#"
gateway:
  id: "{GATEWAY_ID}"
  listeners:
    http: "127.0.0.1:{http}"
    admin: "127.0.0.1:{admin}"
    tls:
      addr: "127.0.0.1:{tls}"
      cert_file: "{d}/server.pem"
      key_file: "{d}/server.key"
      client_certificates: required
      client_ca_file: "{d}/stella-ca.pem"
      spiffe_roots:
        - {{trust_domain: stella.test, ca_file: "{d}/{domain_ca}.pem"}}
  auth:
    authority:
      issuer: "http://127.0.0.1:{unused}"
      require_https_metadata: false
      audiences: [http://gateway.local/api]
  policies_dir: "{policies}"
router:
  identity_envelope_signing_key: "{ENVELOPE_KEY}"
  identity_envelope_signing_key_id: "{ENVELOPE_KID}"
services:
  - {{name: echo, upstreams: ["{upstream}"]}}
  - {{name: echo-hybrid, upstreams: ["{upstream}"]}}
  - {{name: echo-legacy, upstreams: ["{upstream}"]}}
"#,
        unused = free_port(),
        policies = policies.display(),
    );
    let config = dir.join(&format!("gateway-{domain_ca}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stella-gateway"));
    cmd.arg("run").arg("--config").arg(&config);
    let process = Process::start("gateway", cmd, "GATEWAY_READY", Duration::from_secs(30));
    (process, format!("127.0.0.1:{tls}").parse().unwrap())
}

#[test]
fn svids_are_verified_only_against_the_roots_of_their_trust_domain() {
    let dir = TempDir::new("spiffe-roots");
    let d = pki(&dir);
    leaf(d, "stella-ca", "plain", "extendedKeyUsage=clientAuth\n");
    let orders = "subjectAltName=URI:spiffe://stella.test/ns/default/sa/orders\nextendedKeyUsage=serverAuth,clientAuth\n";
    // The same workload ID, once from the domain's CA and once from the
    // listener's general CA.
    leaf(d, "domain-ca", "svid", orders);
    leaf(d, "stella-ca", "svid-wrong-ca", orders);
    let echo = Echo::gateway_enforced();
    let (_gw, tls) = gateway(&dir, &echo, "domain-ca");
    let ca = dir.join("stella-ca.pem");
    let cert = |name: &str| {
        (
            dir.join(&format!("{name}.pem")),
            dir.join(&format!("{name}.key")),
        )
    };

    let (c, k) = cert("svid");
    let ok = curl_https(tls, "/svc/x", &ca, Some((&c, &k)), &[]);
    let body = ok.response.as_ref().map(|r| r.json()).unwrap_or_default();
    assert_eq!(
        ok.response.as_ref().map(|r| r.status),
        Some(200),
        "{} {:?}",
        ok.stderr,
        ok.response.as_ref().map(|r| r.text())
    );
    assert_eq!(body["identity"]["auth_method"], "spiffe");
    assert_eq!(
        body["identity"]["confirmation"]["spiffe_id"],
        "spiffe://stella.test/ns/default/sa/orders"
    );

    // The general CA cannot vouch for a stella.test workload.
    let before = echo.requests();
    let (c, k) = cert("svid-wrong-ca");
    let refused = curl_https(tls, "/svc/x", &ca, Some((&c, &k)), &[]);
    refused.assert_refused_by_gateway("unknown ca");
    assert_eq!(echo.requests(), before);

    // Certificates without a SPIFFE ID still chain to client_ca_file.
    let (c, k) = cert("plain");
    let plain = curl_https(tls, "/public/x", &ca, Some((&c, &k)), &[]);
    assert_eq!(
        plain.response.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        plain.stderr
    );
}

#[test]
fn an_svid_of_an_unconfigured_trust_domain_is_refused_at_the_handshake() {
    let dir = TempDir::new("spiffe-other-domain");
    let d = pki(&dir);
    leaf(
        d,
        "stella-ca",
        "foreign",
        "subjectAltName=URI:spiffe://other.test/ns/default/sa/orders\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    let echo = Echo::gateway_enforced();
    let (_gw, tls) = gateway(&dir, &echo, "domain-ca");
    let (c, k) = (dir.join("foreign.pem"), dir.join("foreign.key"));
    let refused = curl_https(
        tls,
        "/public/x",
        &dir.join("stella-ca.pem"),
        Some((&c, &k)),
        &[],
    );
    refused.assert_refused_by_gateway("unknown ca");
    assert_eq!(echo.requests(), 0);
}
