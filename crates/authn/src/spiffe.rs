//! Workload identity: the SPIFFE ID of a client certificate presented as an
//! X.509-SVID, and the SPIFFE ID syntax that configuration and policies use.
//! Pure functions over certificate bytes and strings.
//!
//! The rules, by paragraph of the SPIFFE specifications
//! (github.com/spiffe/spiffe, standards/):
//! - X509-SVID.md §2: exactly one URI SAN, the SPIFFE ID;
//! - SPIFFE-ID.md §2.1-2.3: `spiffe` scheme, a trust domain of lowercase
//!   letters, digits, `.`, `-`, `_` (no port, no userinfo), a path of
//!   non-empty segments of letters, digits, `.`, `-`, `_` (not `.` or
//!   `..`), no query or fragment; §2.3: at most 2048 bytes, the trust
//!   domain at most 255;
//! - X509-SVID.md §4.1: a leaf's basic constraints do not make it a CA;
//! - §4.3: key usage present and critical, `digitalSignature` set,
//!   `keyCertSign` and `cRLSign` not set;
//! - §4.4: extended key usage, when present, lists both `serverAuth` and
//!   `clientAuth`;
//! - §5: the chain to the trust domain's roots is verified by the TLS
//!   listener (gateway/src/tls.rs), with these leaf rules first.

use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// Why a certificate carrying a SPIFFE URI is not a valid X.509-SVID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    #[error("certificate cannot be parsed")]
    Unparsable,
    #[error("an svid has exactly one uri san")]
    SeveralUris,
    #[error("spiffe trust domain must be lowercase letters, digits, '.', '-' or '_'")]
    BadTrustDomain,
    #[error(
        "spiffe id path must be non-empty, not the root, without dot segments, query or fragment"
    )]
    BadPath,
    #[error("spiffe id is longer than 2048 bytes")]
    TooLong,
    #[error("an svid leaf must not be a ca certificate")]
    LeafIsCa,
    #[error("an svid must have a critical key usage with digitalSignature, without keyCertSign or cRLSign")]
    KeyUsage,
    #[error("an svid's extended key usage, when present, must list serverAuth and clientAuth")]
    ExtendedKeyUsage,
}

/// The SPIFFE ID of a leaf certificate (SPIFFE X.509-SVID rules): `Ok(None)`
/// when the certificate has no `spiffe://` URI at all.
pub fn spiffe_id(der: &[u8]) -> Result<Option<String>, SpiffeError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| SpiffeError::Unparsable)?;
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return Err(SpiffeError::Unparsable),
    };
    if !uris
        .iter()
        .any(|u| u.to_ascii_lowercase().starts_with("spiffe://"))
    {
        return Ok(None);
    }
    if uris.len() != 1 {
        return Err(SpiffeError::SeveralUris);
    }
    let id = parse_spiffe_uri(uris[0])?;
    // §4.1.
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => return Err(SpiffeError::LeafIsCa),
        Ok(_) => {}
        Err(_) => return Err(SpiffeError::Unparsable),
    }
    // §4.3: present, critical, digitalSignature, no keyCertSign or cRLSign.
    let key_usage = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => Some((e.critical, ku)),
            _ => None,
        });
    match key_usage {
        Some((true, ku)) if ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign() => {}
        _ => return Err(SpiffeError::KeyUsage),
    }
    // §4.4.
    match cert.extended_key_usage() {
        Ok(None) => {}
        Ok(Some(eku)) if eku.value.server_auth && eku.value.client_auth => {}
        Ok(Some(_)) => return Err(SpiffeError::ExtendedKeyUsage),
        Err(_) => return Err(SpiffeError::Unparsable),
    }
    Ok(Some(id))
}

/// Checks a SPIFFE ID string: `spiffe://` (scheme lowercase), a lowercase
/// trust domain, and a non-root path of non-empty segments.
pub fn parse_spiffe_uri(uri: &str) -> Result<String, SpiffeError> {
    if uri.len() > 2048 {
        return Err(SpiffeError::TooLong);
    }
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or(SpiffeError::BadTrustDomain)?;
    let (domain, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if !domain_ok {
        return Err(SpiffeError::BadTrustDomain);
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let path_ok = !segments.is_empty()
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    if !path_ok {
        return Err(SpiffeError::BadPath);
    }
    Ok(uri.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_uris_follow_the_svid_rules() {
        assert_eq!(
            parse_spiffe_uri("spiffe://stella.test/ns/default/sa/orders").as_deref(),
            Ok("spiffe://stella.test/ns/default/sa/orders")
        );
        for (bad, error) in [
            ("spiffe://Stella.test/ns/a", SpiffeError::BadTrustDomain),
            ("spiffe:///ns/a", SpiffeError::BadTrustDomain),
            ("spiffe://stella.test", SpiffeError::BadPath),
            ("spiffe://stella.test/", SpiffeError::BadPath),
            ("spiffe://stella.test/ns//a", SpiffeError::BadPath),
            ("spiffe://stella.test/ns/../a", SpiffeError::BadPath),
            ("spiffe://stella.test/ns/a?x=1", SpiffeError::BadPath),
            (
                "spiffe://user@stella.test/ns/a",
                SpiffeError::BadTrustDomain,
            ),
            (
                "spiffe://stella.test:8443/ns/a",
                SpiffeError::BadTrustDomain,
            ),
            ("spiffe://stella.test/ns/a#f", SpiffeError::BadPath),
            ("spiffe://stella.test/ns/%41", SpiffeError::BadPath),
            ("SPIFFE://stella.test/ns/a", SpiffeError::BadTrustDomain),
            (
                &*format!("spiffe://{}.test/a", "d".repeat(251)),
                SpiffeError::BadTrustDomain,
            ),
            (
                &*format!("spiffe://stella.test/{}", "p".repeat(2030)),
                SpiffeError::TooLong,
            ),
        ] {
            assert_eq!(parse_spiffe_uri(bad), Err(error), "{bad}");
        }
    }
}
