//! Certificates made with the `openssl` CLI for the TLS listener, client
//! certificates and SPIFFE X.509-SVIDs.

use crate::gateway::TlsSetup;
use crate::temp::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Certificates made with the `openssl` CLI: a CA, a server certificate for
/// 127.0.0.1 / localhost, client certificates from that CA (one plain, one
/// a SPIFFE X.509-SVID), and a second CA with its own client certificate.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub spiffe_cert: PathBuf,
    pub spiffe_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

pub const SPIFFE_ID: &str = "spiffe://stella.test/ns/default/sa/orders";

/// Runs `openssl` with `args` split on whitespace (no argument here has a
/// space in it).
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(&args)
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -new {P256} -keyout {name}.key -out {name}.pem -days 2 -subj /CN={cn} \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

fn make_leaf(dir: &Path, ca: &str, name: &str, cn: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
    openssl(
        dir,
        &format!("req -new {P256} -keyout {name}.key -out {name}.csr -subj /CN={cn}"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ),
    );
}

impl Pki {
    pub fn generate(dir: &TempDir) -> Pki {
        let d = dir.path();
        const LEAF: &str = "basicConstraints=critical,CA:FALSE\n\
                            keyUsage=critical,digitalSignature\n\
                            subjectKeyIdentifier=hash\n\
                            authorityKeyIdentifier=keyid\n";
        make_ca(d, "ca", "stella-e2e-ca");
        make_ca(d, "other-ca", "another-ca");
        make_leaf(
            d,
            "ca",
            "server",
            "localhost",
            &format!(
                "{LEAF}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            ),
        );
        make_leaf(
            d,
            "ca",
            "client",
            "client",
            &format!("{LEAF}extendedKeyUsage=clientAuth\n"),
        );
        make_leaf(
            d,
            "ca",
            "spiffe",
            "orders",
            // X.509-SVID §4.4: serverAuth and clientAuth, as SPIRE issues.
            &format!(
                "{LEAF}extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:{SPIFFE_ID}\n"
            ),
        );
        make_leaf(
            d,
            "other-ca",
            "other-client",
            "other",
            &format!("{LEAF}extendedKeyUsage=clientAuth\n"),
        );
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            spiffe_cert: dir.join("spiffe.pem"),
            spiffe_key: dir.join("spiffe.key"),
            other_ca: dir.join("other-ca.pem"),
            other_client_cert: dir.join("other-client.pem"),
            other_client_key: dir.join("other-client.key"),
        }
    }

    /// The gateway's TLS listener with this server certificate.
    pub fn listener(&self, client_certificates: &'static str) -> TlsSetup {
        TlsSetup {
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            client_certificates,
            client_ca_file: (client_certificates != "none").then(|| self.ca.clone()),
        }
    }
}

impl Pki {
    /// Another client certificate from this PKI's CA (`ca.pem`), with
    /// `uri_san` as its one URI SAN when given. Returns (certificate, key).
    /// Another server certificate for 127.0.0.1 and localhost from the same
    /// CA (a new serial): for certificate rotation.
    pub fn issue_server(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().expect("pki folder");
        let ext = "basicConstraints=critical,CA:FALSE\n\
                   keyUsage=critical,digitalSignature\n\
                   subjectKeyIdentifier=hash\n\
                   authorityKeyIdentifier=keyid\n\
                   extendedKeyUsage=serverAuth\n\
                   subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        make_leaf(dir, "ca", name, "localhost", ext);
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }

    pub fn issue_client(&self, name: &str, uri_san: Option<&str>) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().expect("pki folder");
        let mut ext = "basicConstraints=critical,CA:FALSE\n\
                       keyUsage=critical,digitalSignature\n\
                       subjectKeyIdentifier=hash\n\
                       authorityKeyIdentifier=keyid\n\
                       "
        .to_owned();
        match uri_san {
            // An X.509-SVID (§4.4): serverAuth and clientAuth.
            Some(uri) if uri.starts_with("spiffe://") => ext.push_str(&format!(
                "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:{uri}\n"
            )),
            Some(uri) => ext.push_str(&format!(
                "extendedKeyUsage=clientAuth\nsubjectAltName=URI:{uri}\n"
            )),
            None => ext.push_str("extendedKeyUsage=clientAuth\n"),
        }
        make_leaf(dir, "ca", name, name, &ext);
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl verify -CAfile ca [-purpose p] cert`: Ok, or what it said.
    fn verify(ca: &Path, cert: &Path, purpose: &str) -> Result<(), String> {
        let out = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca)
            .arg(cert)
            .output()
            .expect("run openssl");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr))
        }
    }

    fn text(cert: &Path) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(cert)
            .output()
            .expect("run openssl");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_generated_chains_verify_with_their_own_ca_only() {
        let dir = TempDir::new("pki-unit");
        let pki = Pki::generate(&dir);
        verify(&pki.ca, &pki.server_cert, "sslserver").unwrap();
        verify(&pki.ca, &pki.client_cert, "sslclient").unwrap();
        verify(&pki.ca, &pki.spiffe_cert, "sslclient").unwrap();
        verify(&pki.other_ca, &pki.other_client_cert, "sslclient").unwrap();
        assert!(verify(&pki.ca, &pki.other_client_cert, "sslclient").is_err());
        assert!(verify(&pki.other_ca, &pki.client_cert, "sslclient").is_err());
        assert!(
            verify(&pki.ca, &pki.client_cert, "sslserver").is_err(),
            "a client certificate is not a server certificate"
        );

        let server = text(&pki.server_cert);
        assert!(server.contains("IP Address:127.0.0.1") && server.contains("DNS:localhost"));
        assert!(text(&pki.spiffe_cert).contains(&format!("URI:{SPIFFE_ID}")));

        let (rotated, _) = pki.issue_server("server-2");
        verify(&pki.ca, &rotated, "sslserver").unwrap();
        let (svid, _) = pki.issue_client("orders-2", Some("spiffe://stella.test/x"));
        verify(&pki.ca, &svid, "sslclient").unwrap();
        assert!(text(&svid).contains("URI:spiffe://stella.test/x"));
    }
}
