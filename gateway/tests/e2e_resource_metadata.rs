//! OAuth 2.0 protected resource metadata (RFC 9728, docs/design.md §3.11):
//! the gateway serves each configured resource's document at
//! `/.well-known/oauth-protected-resource` followed by the resource's path,
//! and the 401 challenges of the resource's services name it in
//! `resource_metadata`; other services' challenges do not.

mod common;

use common::*;
use serde_json::json;

const RESOURCE: &str = "https://api.example.test/echo";
const METADATA_URL: &str = "https://api.example.test/.well-known/oauth-protected-resource/echo";

fn stack(label: &str) -> Stack {
    Stack::start_with(label, |setup| {
        setup.gateway(
            "protected_resources",
            json!([
                {
                    "resource": RESOURCE,
                    "services": ["echo"],
                    "resource_documentation": "https://docs.example.test/echo",
                    "resource_name": "Echo"
                },
                {
                    "resource": "https://api.example.test",
                    "scopes_supported": ["everything.read"]
                }
            ]),
        )
    })
}

#[test]
fn the_metadata_document_says_which_authority_scopes_and_proofs_the_resource_takes() {
    let s = stack("prm-document");
    let r = s
        .gateway
        .get("/.well-known/oauth-protected-resource/echo", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"], json!([s.authority.issuer]));
    let scopes: Vec<&str> = doc["scopes_supported"]
        .as_array()
        .expect("scopes from the echo policies")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(scopes.contains(&"echo.read"), "{doc}");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert!(
        doc["dpop_signing_alg_values_supported"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("ES256"))),
        "{doc}"
    );
    // Some echo routes take plain Bearer tokens.
    assert_eq!(doc["dpop_bound_access_tokens_required"], false);
    assert_eq!(
        doc["resource_documentation"],
        "https://docs.example.test/echo"
    );
    assert_eq!(doc["resource_name"], "Echo");
    assert_eq!(s.gateway.reason_for(&r), "resource_metadata");

    // The resource at the host's root: the bare well-known path.
    let root = s.gateway.get("/.well-known/oauth-protected-resource", &[]);
    assert_eq!(root.status, 200, "{}", root.text());
    assert_eq!(root.json()["resource"], "https://api.example.test");
    assert_eq!(root.json()["scopes_supported"], json!(["everything.read"]));

    // HEAD: the head alone; other methods: 405.
    let head = s
        .gateway
        .send("HEAD", "/.well-known/oauth-protected-resource/echo", &[]);
    assert_eq!(head.status, 200);
    let post = s
        .gateway
        .send("POST", "/.well-known/oauth-protected-resource/echo", &[]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn an_unknown_resource_path_is_404_and_never_reaches_a_service() {
    let s = stack("prm-unknown");
    let calls = s.echo.requests();
    for path in [
        "/.well-known/oauth-protected-resource/nope",
        "/.well-known/oauth-protected-resource/echo/more",
    ] {
        let r = s.gateway.get(path, &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "not_found");
        assert_eq!(s.gateway.reason_for(&r), "not_found");
    }
    assert_eq!(s.echo.requests(), calls);
}

#[test]
fn challenges_carry_resource_metadata_on_the_resources_routes_only() {
    let s = stack("prm-challenge");
    // echo: part of the resource.
    let r = s.gateway.get("/items/1", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    let challenges = r.header_all("www-authenticate");
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    for c in &challenges {
        assert!(
            c.ends_with(&format!(", resource_metadata=\"{METADATA_URL}\"")),
            "{c}"
        );
    }
    assert!(challenges[0].starts_with("Bearer "), "{challenges:?}");
    assert!(challenges[1].starts_with("DPoP "), "{challenges:?}");
    // A bad token: the error challenges name it too.
    let r = s.gateway.get_with_token("/items/1", "not.a.token");
    assert_eq!(r.status, 401);
    for c in r.header_all("www-authenticate") {
        assert!(c.contains("error=\"invalid_token\""), "{c}");
        assert!(
            c.contains(&format!("resource_metadata=\"{METADATA_URL}\"")),
            "{c}"
        );
    }
    // echo-hybrid is in no resource: plain challenges.
    let r = s.gateway.get("/hybrid/1", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    for c in r.header_all("www-authenticate") {
        assert!(!c.contains("resource_metadata"), "{c}");
    }
}

#[test]
fn without_protected_resources_the_well_known_path_is_routed_as_before() {
    let s = Stack::start("prm-none");
    let r = s.gateway.get("/.well-known/oauth-protected-resource", &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(s.gateway.reason_for(&r), "not_found");
    let r = s.gateway.get("/items/1", &[]);
    for c in r.header_all("www-authenticate") {
        assert!(!c.contains("resource_metadata"), "{c}");
    }
}
