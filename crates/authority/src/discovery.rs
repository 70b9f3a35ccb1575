//! OpenID Provider metadata (OIDC Discovery 1.0 sections 4 and 4.3).
//!
//! The document is read from `{issuer}/.well-known/openid-configuration`
//! (a trailing `/` of the issuer is removed before appending), and its
//! `issuer` must equal the configured issuer byte for byte: a document for
//! another issuer could hand us another issuer's keys. With
//! `require_https_metadata`, the issuer and `jwks_uri` must be https.
//!
//! `introspection_endpoint` (RFC 8414) is kept when it is a usable url for
//! the introspection stage; an unusable one is dropped with a warning rather
//! than failing key loading, which does not need it.

use super::http::HttpFetcher;
use super::{AuthorityError, Document};
use hyper::Uri;
use serde_json::Value;
use stella_jose::JsonObject;

const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// The parts of the Authority's metadata the gateway uses, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    issuer: String,
    jwks_uri: String,
    introspection_endpoint: Option<String>,
}

impl Discovery {
    /// Checks a fetched metadata document against the configured issuer.
    pub fn from_document(
        doc: &JsonObject,
        expected_issuer: &str,
        require_https: bool,
    ) -> Result<Discovery, AuthorityError> {
        let issuer = member(doc, "issuer")?;
        if issuer != expected_issuer {
            return Err(AuthorityError::IssuerMismatch);
        }
        check_url("issuer", issuer, require_https)?;
        let jwks_uri = member(doc, "jwks_uri")?;
        check_url("jwks_uri", jwks_uri, require_https)?;
        let introspection_endpoint = match doc.get("introspection_endpoint") {
            None => None,
            Some(Value::String(url)) => {
                match check_url("introspection_endpoint", url, require_https) {
                    Ok(()) => Some(url.clone()),
                    Err(error) => {
                        tracing::warn!(%error, "ignoring the authority's introspection endpoint");
                        None
                    }
                }
            }
            Some(_) => {
                tracing::warn!(
                    "ignoring the authority's introspection endpoint: it is not a string"
                );
                None
            }
        };
        Ok(Discovery {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.to_owned(),
            introspection_endpoint,
        })
    }

    /// Keys published at a configured `jwks_uri`, without a metadata
    /// document (a Shared Signals transmitter's, for one).
    pub(crate) fn fixed(issuer: &str, jwks_uri: &str) -> Discovery {
        Discovery {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.to_owned(),
            introspection_endpoint: None,
        }
    }

    /// The issuer, equal to the configured one.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the signing keys are published.
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// The RFC 7662 endpoint, when published and usable.
    pub fn introspection_endpoint(&self) -> Option<&str> {
        self.introspection_endpoint.as_deref()
    }
}

/// The metadata url for `issuer`: any trailing `/` removed, then the
/// well-known path appended (OIDC Discovery 4).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/'))
}

/// Fetches and checks the metadata of `issuer`.
pub async fn discover(
    fetcher: &HttpFetcher,
    issuer: &str,
    require_https: bool,
) -> Result<Discovery, AuthorityError> {
    discover_document(fetcher, issuer, require_https)
        .await
        .map(|(discovery, _)| discovery)
}

/// Like [`discover`], also handing back the document as fetched (for the
/// last-known-good copy).
pub async fn discover_document(
    fetcher: &HttpFetcher,
    issuer: &str,
    require_https: bool,
) -> Result<(Discovery, JsonObject), AuthorityError> {
    check_url("issuer", issuer, require_https).map_err(|_| AuthorityError::BadIssuer)?;
    let doc = fetcher
        .get_json(&discovery_url(issuer))
        .await
        .map_err(|source| AuthorityError::Fetch {
            document: Document::Discovery,
            source,
        })?;
    let discovery = Discovery::from_document(&doc, issuer, require_https)?;
    Ok((discovery, doc))
}

fn member<'a>(doc: &'a JsonObject, name: &'static str) -> Result<&'a str, AuthorityError> {
    match doc.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(AuthorityError::MissingMember {
            document: Document::Discovery,
            member: name,
        }),
    }
}

/// An absolute http(s) url with a host; https only when required.
pub fn check_url(
    member: &'static str,
    url: &str,
    require_https: bool,
) -> Result<(), AuthorityError> {
    let uri: Uri = url.parse().map_err(|_| AuthorityError::NotAUrl(member))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(AuthorityError::NotAUrl(member));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if !require_https => Ok(()),
        Some("http") => Err(AuthorityError::InsecureMetadata(member)),
        _ => Err(AuthorityError::NotAUrl(member)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, TestServer};
    use crate::FetchError;
    use serde_json::json;
    use std::time::Duration;

    const ISSUER: &str = "https://authority.example";

    fn doc(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn issuer_and_jwks_uri_are_taken_from_a_matching_document() {
        let d = Discovery::from_document(
            &doc(
                json!({"issuer": ISSUER, "jwks_uri": "https://keys.example/jwks",
                "introspection_endpoint": "https://authority.example/introspect",
                "token_endpoint": "https://authority.example/token"}),
            ),
            ISSUER,
            true,
        )
        .unwrap();
        assert_eq!(d.issuer(), ISSUER);
        assert_eq!(d.jwks_uri(), "https://keys.example/jwks");
        assert_eq!(
            d.introspection_endpoint(),
            Some("https://authority.example/introspect")
        );
    }

    #[test]
    fn issuer_must_match_byte_for_byte() {
        for seen in [
            "https://authority.example/",
            "https://AUTHORITY.example",
            "http://authority.example",
            "https://authority.example:443",
            "https://evil.example",
        ] {
            let err = Discovery::from_document(
                &doc(json!({"issuer": seen, "jwks_uri": "https://keys.example/jwks"})),
                ISSUER,
                false,
            )
            .unwrap_err();
            assert_eq!(err, AuthorityError::IssuerMismatch, "{seen}");
            assert_eq!(err.code(), "issuer_mismatch");
            assert!(!err.to_string().contains(seen));
        }
    }

    #[test]
    fn missing_or_non_string_members_are_refused() {
        for (value, member) in [
            (json!({"jwks_uri": "https://k.example/j"}), "issuer"),
            (
                json!({"issuer": ["https://authority.example"], "jwks_uri": "https://k/j"}),
                "issuer",
            ),
            (json!({"issuer": ISSUER}), "jwks_uri"),
            (json!({"issuer": ISSUER, "jwks_uri": 5}), "jwks_uri"),
            (json!({"issuer": ISSUER, "jwks_uri": ""}), "jwks_uri"),
        ] {
            assert_eq!(
                Discovery::from_document(&doc(value), ISSUER, true),
                Err(AuthorityError::MissingMember {
                    document: Document::Discovery,
                    member
                })
            );
        }
    }

    #[test]
    fn http_jwks_uri_is_refused_when_https_metadata_is_required() {
        let d = doc(json!({"issuer": ISSUER, "jwks_uri": "http://keys.example/jwks"}));
        let err = Discovery::from_document(&d, ISSUER, true).unwrap_err();
        assert_eq!(err, AuthorityError::InsecureMetadata("jwks_uri"));
        assert_eq!(err.code(), "insecure_metadata");
        assert!(Discovery::from_document(&d, ISSUER, false).is_ok());
    }

    #[test]
    fn http_issuer_is_refused_when_https_metadata_is_required() {
        let issuer = "http://authority.example";
        let d = doc(json!({"issuer": issuer, "jwks_uri": "https://keys.example/jwks"}));
        assert_eq!(
            Discovery::from_document(&d, issuer, true),
            Err(AuthorityError::InsecureMetadata("issuer"))
        );
    }

    #[test]
    fn relative_or_odd_jwks_uri_is_not_a_url() {
        for uri in ["/jwks", "keys.example/jwks", "file:///jwks", "javascript:x"] {
            assert_eq!(
                Discovery::from_document(
                    &doc(json!({"issuer": ISSUER, "jwks_uri": uri})),
                    ISSUER,
                    false
                ),
                Err(AuthorityError::NotAUrl("jwks_uri")),
                "{uri}"
            );
        }
    }

    #[test]
    fn unusable_introspection_endpoint_is_dropped_not_fatal() {
        for value in [
            json!("http://authority.example/introspect"),
            json!(7),
            json!("/x"),
        ] {
            let d = Discovery::from_document(
                &doc(
                    json!({"issuer": ISSUER, "jwks_uri": "https://k.example/jwks",
                    "introspection_endpoint": value}),
                ),
                ISSUER,
                true,
            )
            .unwrap();
            assert_eq!(d.introspection_endpoint(), None);
        }
    }

    #[test]
    fn discovery_url_drops_a_trailing_slash_and_keeps_the_path() {
        assert_eq!(
            discovery_url("https://a.example"),
            "https://a.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://a.example/"),
            "https://a.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://a.example/realms/x/"),
            "https://a.example/realms/x/.well-known/openid-configuration"
        );
    }

    #[tokio::test]
    async fn discover_fetches_the_well_known_document() {
        let server = TestServer::start();
        let issuer = server.base();
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(&json!({"issuer": issuer, "jwks_uri": server.url("/jwks")}).to_string()),
        );
        let fetcher = HttpFetcher::new(Duration::from_secs(2), true).unwrap();
        let d = discover(&fetcher, &issuer, false).await.unwrap();
        assert_eq!(d.jwks_uri(), server.url("/jwks"));
        assert_eq!(server.count("/.well-known/openid-configuration"), 1);
    }

    #[tokio::test]
    async fn discovery_with_a_mismatched_issuer_is_refused() {
        let server = TestServer::start();
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(
                &json!({"issuer": "http://other.example", "jwks_uri": server.url("/jwks")})
                    .to_string(),
            ),
        );
        let fetcher = HttpFetcher::new(Duration::from_secs(2), true).unwrap();
        assert_eq!(
            discover(&fetcher, &server.base(), false).await,
            Err(AuthorityError::IssuerMismatch)
        );
    }

    #[tokio::test]
    async fn discovery_fetch_failure_names_the_document() {
        let server = TestServer::start();
        let fetcher = HttpFetcher::new(Duration::from_secs(2), true).unwrap();
        let err = discover(&fetcher, &server.base(), false).await.unwrap_err();
        assert_eq!(
            err,
            AuthorityError::Fetch {
                document: Document::Discovery,
                source: FetchError::Status(404)
            }
        );
        assert_eq!(err.document(), Document::Discovery);
    }

    #[tokio::test]
    async fn http_issuer_is_refused_before_any_request_when_https_is_required() {
        let server = TestServer::start();
        let fetcher = HttpFetcher::new(Duration::from_secs(2), false).unwrap();
        assert_eq!(
            discover(&fetcher, &server.base(), true).await,
            Err(AuthorityError::BadIssuer)
        );
        assert_eq!(server.count("/.well-known/openid-configuration"), 0);
    }
}
