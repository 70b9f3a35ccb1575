//! `stella-gateway openapi`: the document of every route, checked by a real
//! OpenAPI 3.1 validator (PyPI `openapi-spec-validator`, installed into
//! tests/.venv by scripts/install-deps.sh), with the gateway's requirements
//! on every operation and a service's own document merged.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn openapi(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stella-gateway"))
        .arg("openapi")
        .args(args)
        .output()
        .expect("run stella-gateway openapi");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the validator on the document; panics with its output if invalid.
fn assert_valid(doc: &str, dir: &Path) {
    let file = dir.join("openapi.json");
    std::fs::write(&file, doc).unwrap();
    let python = repo("tests/.venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-deps.sh",
        python.display()
    );
    let out = Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi_spec_validator");
    assert!(
        out.status.success(),
        "invalid OpenAPI document: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stella-openapi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn op<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "no {method} {path} in {}", doc["paths"]);
    op
}

#[test]
fn every_route_is_an_annotated_operation_of_a_valid_document() {
    let (code, text, err) = openapi(&["--config", repo("config/local.yaml").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_valid(&text, &temp_dir("local"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["dpop"]["scheme"], "DPoP");
    assert_eq!(schemes["mutualTLS"]["type"], "mutualTLS");

    let admin = op(&doc, "/admin/{rest1}", "get");
    let auth = &admin["x-stellaops-gateway-auth"];
    assert_eq!(auth["route"], "echo-admin");
    assert_eq!(auth["service"], "echo");
    assert_eq!(auth["trust_mode"], "GatewayEnforced");
    assert_eq!(auth["scopes_all"], json!(["admin"]));
    assert_eq!(auth["anonymous"], false);
    assert!(admin["security"]
        .as_array()
        .unwrap()
        .contains(&json!({"bearer": ["admin"]})));
    assert!(admin["responses"]["401"].is_object());

    let dpop = op(&doc, "/dpop/{rest1}", "post");
    assert_eq!(
        dpop["x-stellaops-gateway-auth"]["sender_constraint"],
        "dpop"
    );
    assert_eq!(dpop["security"], json!([{"dpop": []}]));

    let public = op(&doc, "/public/{rest1}", "get");
    assert_eq!(public["x-stellaops-gateway-auth"]["anonymous"], true);
    assert_eq!(public["security"], json!([{}]));
    assert!(public["responses"]["401"].is_null());

    // Only one service's routes.
    let (code, text, err) = openapi(&[
        "--config",
        repo("config/local.yaml").to_str().unwrap(),
        "--service",
        "echo-hybrid",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert_eq!(
                op["x-stellaops-gateway-auth"]["service"], "echo-hybrid",
                "{method} {path}"
            );
        }
    }
    let (code, _, err) = openapi(&[
        "--config",
        repo("config/local.yaml").to_str().unwrap(),
        "--service",
        "nope",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no service named"), "{err}");
}

#[test]
fn a_services_own_document_is_merged_under_the_gateways_routes() {
    let dir = temp_dir("merge");
    std::fs::write(
        dir.join("echo-openapi.yaml"),
        r#"openapi: 3.1.0
info: {title: echo, version: "1"}
paths:
  /items/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: getItem
      responses: {"200": {description: the item}}
    delete:
      operationId: deleteItem
      responses: {"204": {description: gone}}
  /not-routed/{x}:
    get:
      operationId: hidden
      parameters: [{name: x, in: path, required: true, schema: {type: string}}]
      responses: {"200": {description: never reached through the gateway}}
"#,
    )
    .unwrap();
    let config = format!(
        r#"gateway:
  listeners: {{http: "127.0.0.1:8080"}}
  auth:
    authority: {{issuer: "https://authority.example", audiences: [api]}}
  policies_dir: {policies}
router:
  identity_envelope_signing_key: "a-secret-value-that-is-at-least-32-bytes"
services:
  - {{name: echo, upstreams: ["echo:8080"], trust_mode: GatewayEnforced, openapi: echo-openapi.yaml}}
  - {{name: echo-hybrid, upstreams: ["hybrid:8080"], trust_mode: Hybrid}}
  - {{name: echo-legacy, upstreams: ["legacy:8080"], trust_mode: ServiceEnforced}}
"#,
        policies = repo("policies").display()
    );
    std::fs::write(dir.join("gateway.yaml"), config).unwrap();
    let (code, text, err) = openapi(&["--config", dir.join("gateway.yaml").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_valid(&text, &dir);
    let doc: Value = serde_json::from_str(&text).unwrap();
    // The service's operations, with the route the gateway matches for each.
    let get = op(&doc, "/items/{id}", "get");
    assert_eq!(get["operationId"], "getItem");
    assert_eq!(get["x-stellaops-gateway-auth"]["route"], "echo-items-read");
    assert_eq!(
        get["x-stellaops-gateway-auth"]["scopes_any"],
        json!(["echo.read", "echo.write"])
    );
    assert!(get["responses"]["200"].is_object());
    let delete = op(&doc, "/items/{id}", "delete");
    assert_eq!(
        delete["x-stellaops-gateway-auth"]["route"],
        "echo-items-write"
    );
    // Not served by any route: left out.
    assert!(
        doc["paths"]["/not-routed/{x}"].is_null(),
        "{}",
        doc["paths"]
    );
    // Routes no operation covers are still listed from their pattern.
    op(&doc, "/admin/{rest1}", "get");

    // A document that cannot be read: exit 2, the service named.
    std::fs::write(dir.join("echo-openapi.yaml"), "paths: [").unwrap();
    let (code, _, err) = openapi(&["--config", dir.join("gateway.yaml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("service echo"), "{err}");
}
