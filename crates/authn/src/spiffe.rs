//! Workload identity: the SPIFFE ID of a client certificate presented as an
//! X.509-SVID, and the SPIFFE ID syntax that configuration and policies use.
//! Pure functions over certificate bytes and strings.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

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
    #[error("an svid leaf must not be a ca certificate")]
    LeafIsCa,
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
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if is_ca {
        return Err(SpiffeError::LeafIsCa);
    }
    Ok(Some(id))
}

/// Checks a SPIFFE ID string: `spiffe://` (scheme lowercase), a lowercase
/// trust domain, and a non-root path of non-empty segments.
pub fn parse_spiffe_uri(uri: &str) -> Result<String, SpiffeError> {
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
        ] {
            assert_eq!(parse_spiffe_uri(bad), Err(error), "{bad}");
        }
    }
}
