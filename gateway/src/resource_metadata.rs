//! OAuth 2.0 protected resource metadata (RFC 9728, docs/design.md §3.11):
//! the documents of `gateway.protected_resources`, built once per snapshot,
//! served on the public listeners at `/.well-known/oauth-protected-resource`
//! followed by each resource's path, and the `resource_metadata` url the
//! 401 challenges of each resource's services carry.
//!
//! What the gateway knows fills the defaults: the Authorities' issuers
//! (`authorization_servers`), the scopes its policies name for the
//! resource's services (`scopes_supported`), the DPoP proof algorithms it
//! accepts, and whether every route of the resource requires DPoP
//! (`dpop_bound_access_tokens_required`). Bearer tokens are accepted in the
//! `Authorization` header only (`bearer_methods_supported: ["header"]`).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use stella_policy::{Policies, Requirements, SenderConstraint};

use crate::config::resolve::{ProtectedResource, WELL_KNOWN};
use crate::response::Refusal;

/// The documents' media type (RFC 9728 section 3.2).
pub const CONTENT_TYPE: &str = "application/json";
/// Clients may cache a document for five minutes, as the key set.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// Every protected resource of one snapshot.
#[derive(Debug, Default)]
pub struct ResourceMetadata {
    /// (path, document), one per resource.
    documents: Vec<(String, Bytes)>,
    /// By service index (`Snapshot::service_index`): the metadata url its
    /// challenges name.
    challenges: Vec<Option<String>>,
}

/// What the snapshot knows that the documents say.
pub struct Known<'a> {
    /// Every configured Authority's issuer, in order.
    pub issuers: Vec<&'a str>,
    /// The services, in the order of their indexes.
    pub services: Vec<&'a str>,
    pub policies: &'a Policies,
    /// The DPoP proof algorithms accepted (space-separated).
    pub dpop_algs: &'a str,
}

impl ResourceMetadata {
    pub fn build(resources: &[ProtectedResource], known: &Known<'_>) -> ResourceMetadata {
        let mut challenges = vec![None; known.services.len()];
        let mut documents = Vec::with_capacity(resources.len());
        for resource in resources {
            for name in &resource.services {
                if let Some(i) = known.services.iter().position(|s| s == name) {
                    challenges[i] = Some(resource.metadata_url.clone());
                }
            }
            let body = document(resource, known).to_string();
            documents.push((resource.path.clone(), Bytes::from(body)));
        }
        ResourceMetadata {
            documents,
            challenges,
        }
    }

    /// The `resource_metadata` url for refusals on a route of `service`.
    pub fn challenge(&self, service: Option<usize>) -> Option<&str> {
        self.challenges.get(service?)?.as_deref()
    }

    /// `None`: not a metadata request (always, when no resource is
    /// configured: one length check). `Some(None)`: a path under the
    /// well-known prefix that names no resource (404).
    pub fn lookup(&self, path: &str) -> Option<Option<Bytes>> {
        if self.documents.is_empty() {
            return None;
        }
        let rest = path.strip_prefix(WELL_KNOWN)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        Some(
            self.documents
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, body)| body.clone()),
        )
    }
}

/// The metadata document of one resource (RFC 9728 section 2).
fn document(resource: &ProtectedResource, known: &Known<'_>) -> Value {
    let mut doc = Map::new();
    doc.insert("resource".into(), json!(resource.resource));
    let servers: Vec<&str> = match &resource.authorization_servers {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => known.issuers.clone(),
    };
    doc.insert("authorization_servers".into(), json!(servers));
    let routes: Vec<&Requirements> = known
        .policies
        .routes()
        .iter()
        .map(|r| r.value())
        .filter(|t| resource.services.contains(&t.service))
        .filter_map(|t| t.policy.as_ref())
        .collect();
    let scopes: Vec<String> = match &resource.scopes_supported {
        Some(list) => list.clone(),
        None => routes
            .iter()
            .filter_map(|r| match r {
                Requirements::Caller(c) => Some(c.scopes_all.iter().chain(&c.scopes_any)),
                Requirements::Anonymous => None,
            })
            .flatten()
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect(),
    };
    if !scopes.is_empty() {
        doc.insert("scopes_supported".into(), json!(scopes));
    }
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    let algs: Vec<&str> = known.dpop_algs.split_whitespace().collect();
    doc.insert("dpop_signing_alg_values_supported".into(), json!(algs));
    // Every route that needs a caller requires DPoP, and there is one.
    let callers: Vec<_> = routes
        .iter()
        .filter_map(|r| match r {
            Requirements::Caller(c) => Some(c),
            Requirements::Anonymous => None,
        })
        .collect();
    let dpop_required = !callers.is_empty()
        && callers
            .iter()
            .all(|c| c.sender_constraint == SenderConstraint::Dpop);
    doc.insert(
        "dpop_bound_access_tokens_required".into(),
        json!(dpop_required),
    );
    if let Some(url) = &resource.resource_documentation {
        doc.insert("resource_documentation".into(), json!(url));
    }
    if let Some(name) = &resource.resource_name {
        doc.insert("resource_name".into(), json!(name));
    }
    Value::Object(doc)
}

/// Answers a metadata request: 200 with the document (`GET`, `HEAD`),
/// else the refusal for the caller to write (405, or 404 for an unknown
/// resource).
pub async fn serve(
    session: &mut Session,
    found: Option<Bytes>,
    request_id: &str,
) -> pingora::Result<Result<(), Refusal>> {
    let method = &session.req_header().method;
    if method != http::Method::GET && method != http::Method::HEAD {
        return Ok(Err(Refusal::MethodNotAllowed {
            allowed: vec!["GET".into(), "HEAD".into()],
        }));
    }
    let Some(body) = found else {
        return Ok(Err(Refusal::NoRoute));
    };
    let head_only = method == http::Method::HEAD;
    let mut head = ResponseHeader::build(200, Some(4))?;
    head.insert_header("content-type", CONTENT_TYPE)?;
    head.insert_header("cache-control", CACHE_CONTROL)?;
    head.insert_header("content-length", body.len().to_string())?;
    head.insert_header("x-request-id", request_id)?;
    session
        .write_response_header(Box::new(head), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Policies {
        let dir =
            std::env::temp_dir().join(format!("stella-resource-metadata-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("orders.yaml"),
            "service: orders\nroutes:\n  - id: orders-read\n    path: /orders/**\n    methods: [GET]\n    policy: {scopes_any: [orders.read], sender_constraint: dpop}\n  - id: orders-write\n    path: /orders/**\n    methods: [POST]\n    policy: {scopes_all: [orders.write], sender_constraint: dpop}\n  - id: orders-health\n    path: /orders-health\n    policy: {anonymous: true}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("echo.yaml"),
            "service: echo\nroutes:\n  - id: echo-read\n    path: /items/**\n    policy: {scopes_any: [echo.read]}\n",
        )
        .unwrap();
        let names = vec!["orders".to_owned(), "echo".to_owned()];
        let p = Policies::load_dir(&dir, Some(&names)).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        p
    }

    fn resource(resource: &str, path: &str, services: &[&str]) -> ProtectedResource {
        ProtectedResource {
            resource: resource.into(),
            path: path.into(),
            metadata_url: format!("https://api.example.com{path}"),
            services: services.iter().map(|s| s.to_string()).collect(),
            authorization_servers: None,
            scopes_supported: None,
            resource_documentation: None,
            resource_name: None,
        }
    }

    #[test]
    fn documents_are_filled_from_the_authorities_policies_and_dpop_rules() {
        let policies = policies();
        let known = Known {
            issuers: vec!["https://idp.example.com", "https://idp2.example.com"],
            services: vec!["orders", "echo"],
            policies: &policies,
            dpop_algs: "ES256 EdDSA",
        };
        let mut docs = resource(
            "https://api.example.com/docs",
            "/.well-known/oauth-protected-resource/docs",
            &[],
        );
        docs.resource_documentation = Some("https://example.com/docs".into());
        let meta = ResourceMetadata::build(
            &[
                resource(
                    "https://api.example.com/orders",
                    "/.well-known/oauth-protected-resource/orders",
                    &["orders"],
                ),
                resource(
                    "https://api.example.com/items",
                    "/.well-known/oauth-protected-resource/items",
                    &["echo"],
                ),
                docs,
            ],
            &known,
        );
        let doc = |path: &str| -> Value {
            serde_json::from_slice(&meta.lookup(path).unwrap().unwrap()).unwrap()
        };
        let orders = doc("/.well-known/oauth-protected-resource/orders");
        assert_eq!(orders["resource"], "https://api.example.com/orders");
        assert_eq!(
            orders["authorization_servers"],
            json!(["https://idp.example.com", "https://idp2.example.com"])
        );
        assert_eq!(
            orders["scopes_supported"],
            json!(["orders.read", "orders.write"])
        );
        assert_eq!(orders["bearer_methods_supported"], json!(["header"]));
        assert_eq!(
            orders["dpop_signing_alg_values_supported"],
            json!(["ES256", "EdDSA"])
        );
        assert_eq!(orders["dpop_bound_access_tokens_required"], true);
        let items = doc("/.well-known/oauth-protected-resource/items");
        assert_eq!(items["dpop_bound_access_tokens_required"], false);
        let only_docs = doc("/.well-known/oauth-protected-resource/docs");
        assert_eq!(
            only_docs["resource_documentation"],
            "https://example.com/docs"
        );
        assert!(only_docs.get("scopes_supported").is_none());
        assert_eq!(only_docs["dpop_bound_access_tokens_required"], false);

        assert_eq!(
            meta.challenge(Some(0)),
            Some("https://api.example.com/.well-known/oauth-protected-resource/orders")
        );
        assert_eq!(meta.challenge(None), None);
        assert_eq!(
            meta.lookup("/.well-known/oauth-protected-resource/nope"),
            Some(None)
        );
        assert_eq!(
            meta.lookup("/.well-known/oauth-protected-resource"),
            Some(None)
        );
        assert_eq!(meta.lookup("/.well-known/oauth-protected-resourcex"), None);
        assert_eq!(meta.lookup("/orders/1"), None);
        assert_eq!(ResourceMetadata::default().lookup(WELL_KNOWN), None);
    }
}
