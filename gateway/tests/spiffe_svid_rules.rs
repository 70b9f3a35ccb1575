//! The X.509-SVID rules a client certificate with a SPIFFE ID must follow
//! before the TLS listener verifies its chain (crates/authn/src/spiffe.rs),
//! one certificate per rule, made by openssl, each with the paragraph of
//! the SPIFFE specifications it comes from (github.com/spiffe/spiffe,
//! standards/X509-SVID.md and SPIFFE-ID.md).

mod common;

use common::TempDir;
use std::path::Path;
use std::process::Command;
use stella_authn::spiffe::{spiffe_id, SpiffeError};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate signed by the test CA with these extensions; its DER.
fn certificate(dir: &Path, name: &str, extensions: &str) -> Vec<u8> {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]
        .into_iter()
        .chain([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ])
        .collect::<Vec<_>>(),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-outform",
            "DER",
            "-out",
            &format!("{name}.der"),
        ],
    );
    std::fs::read(dir.join(format!("{name}.der"))).unwrap()
}

const ID: &str = "spiffe://stella.test/ns/default/sa/orders";

/// A case: its name, the certificate's extensions, what `spiffe_id` says.
type Case = (
    &'static str,
    String,
    Result<Option<&'static str>, SpiffeError>,
);

#[test]
fn each_x509_svid_rule_refuses_the_certificate_that_breaks_it() {
    let tmp = TempDir::new("svid-rules");
    let dir = tmp.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let base = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n";
    let both = "extendedKeyUsage=serverAuth,clientAuth\n";
    let san = format!("subjectAltName=URI:{ID}\n");
    let cases: Vec<Case> = vec![
        // A valid SVID, as SPIRE issues it.
        ("valid", format!("{base}{both}{san}"), Ok(Some(ID))),
        // §4.4: the extended key usage SHOULD be present; absent is allowed.
        ("no-eku", format!("{base}{san}"), Ok(Some(ID))),
        // §2: any number of other SAN types beside the one URI.
        ("with-dns", format!("{base}{both}subjectAltName=URI:{ID},DNS:orders.svc\n"), Ok(Some(ID))),
        // Not an SVID at all: no spiffe URI, then the listener's client CA decides.
        ("plain", format!("{base}extendedKeyUsage=clientAuth\nsubjectAltName=DNS:client\n"), Ok(None)),
        // §2: exactly one URI SAN.
        (
            "two-uris",
            format!("{base}{both}subjectAltName=URI:{ID},URI:https://orders.example\n"),
            Err(SpiffeError::SeveralUris),
        ),
        // §4.4: when present, both serverAuth and clientAuth.
        ("eku-client-only", format!("{base}extendedKeyUsage=clientAuth\n{san}"), Err(SpiffeError::ExtendedKeyUsage)),
        // §4.3: key usage must be present ...
        (
            "no-key-usage",
            format!("basicConstraints=critical,CA:FALSE\n{both}{san}"),
            Err(SpiffeError::KeyUsage),
        ),
        // ... critical ...
        (
            "key-usage-not-critical",
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\n{both}{san}"),
            Err(SpiffeError::KeyUsage),
        ),
        // ... with digitalSignature ...
        (
            "no-digital-signature",
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyAgreement\n{both}{san}"),
            Err(SpiffeError::KeyUsage),
        ),
        // ... and without keyCertSign or cRLSign.
        (
            "key-cert-sign",
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\n{both}{san}"),
            Err(SpiffeError::KeyUsage),
        ),
        (
            "crl-sign",
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,cRLSign\n{both}{san}"),
            Err(SpiffeError::KeyUsage),
        ),
        // §4.1: a leaf is not a CA.
        (
            "leaf-is-ca",
            format!("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n{both}{san}"),
            Err(SpiffeError::LeafIsCa),
        ),
        // SPIFFE-ID.md §2.1: lowercase trust domain.
        (
            "uppercase-domain",
            format!("{base}{both}subjectAltName=URI:spiffe://Stella.test/ns/a\n"),
            Err(SpiffeError::BadTrustDomain),
        ),
        // SPIFFE-ID.md §2.2: no query in the path.
        (
            "query",
            format!("{base}{both}subjectAltName=URI:spiffe://stella.test/ns/a?x=1\n"),
            Err(SpiffeError::BadPath),
        ),
        // SPIFFE-ID.md §2.2: not the root.
        (
            "root-path",
            format!("{base}{both}subjectAltName=URI:spiffe://stella.test\n"),
            Err(SpiffeError::BadPath),
        ),
    ];
    for (name, extensions, want) in cases {
        let der = certificate(dir, name, &extensions);
        let got = spiffe_id(&der);
        assert_eq!(
            got.as_ref().map(|o| o.as_deref()),
            want.as_ref().map(|o| *o),
            "{name}"
        );
    }
}
