//! `stella-gateway openapi`: an OpenAPI 3.1 document of every route the
//! gateway serves, each operation annotated with what the gateway requires
//! of its caller (`x-stellaops-gateway-auth`), with security schemes for
//! Bearer, DPoP and mutual TLS.
//!
//! Paths come from the route patterns: `{name}` stays, `*` becomes
//! `{segN}` and `**` `{restN}` (a template cannot say "several segments";
//! the parameter's description and the annotation's `pattern` do). A
//! route without `methods` gets the usual five (get, post, put, patch,
//! delete). When a service publishes its own OpenAPI document
//! (`services[].openapi`), its operations are listed instead, each
//! annotated with the route the gateway would match for it; operations no
//! route serves are left out (the gateway answers them 404), and routes no
//! operation covers are listed from their pattern.

use crate::config::resolve::{OpenApiSource, Service};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use stella_policy::{Policies, Requirements, RouteTarget, SenderConstraint};
use stella_routing::{normalize_path, Lookup, Route};

const ANY_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const OPERATION_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The service documents a configuration names, by service; an error names
/// the service and what went wrong (never the document's content).
pub async fn load_service_documents(
    services: &[Service],
    only: Option<&str>,
) -> Result<BTreeMap<String, Value>, String> {
    let mut docs = BTreeMap::new();
    for service in services {
        if only.is_some_and(|o| o != service.name) {
            continue;
        }
        let Some(source) = &service.openapi else {
            continue;
        };
        let doc = match source {
            OpenApiSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "service {}: openapi file {} cannot be read: {}",
                        service.name,
                        path.display(),
                        e.kind()
                    )
                })?;
                serde_yaml::from_str::<Value>(&text).map_err(|_| {
                    format!(
                        "service {}: openapi file {} is not YAML or JSON",
                        service.name,
                        path.display()
                    )
                })?
            }
            OpenApiSource::Url(url) => {
                let fetcher =
                    stella_authority::HttpFetcher::new(std::time::Duration::from_secs(10), true)
                        .map_err(|e| format!("service {}: {e}", service.name))?;
                Value::Object(fetcher.get_json(url).await.map_err(|e| {
                    format!(
                        "service {}: openapi document could not be fetched: {e}",
                        service.name
                    )
                })?)
            }
        };
        if !doc.get("paths").is_some_and(Value::is_object) {
            return Err(format!(
                "service {}: its openapi document has no `paths` object",
                service.name
            ));
        }
        docs.insert(service.name.clone(), doc);
    }
    Ok(docs)
}

/// The document for `policies` and `services` (only `only`'s routes when
/// given), with the services' own documents merged.
pub fn document(
    policies: &Policies,
    services: &[Service],
    only: Option<&str>,
    service_docs: &BTreeMap<String, Value>,
    gateway_id: &str,
) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut covered: Vec<String> = Vec::new();
    // Operations the services publish, annotated with their route.
    for (name, doc) in service_docs {
        let service = services.iter().find(|s| &s.name == name);
        let Some(Value::Object(ops_by_path)) = doc.get("paths") else {
            continue;
        };
        for (path, item) in ops_by_path {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                if !OPERATION_METHODS.contains(&method.as_str()) {
                    continue;
                }
                let Some(route) = route_for(policies, method, path) else {
                    continue;
                };
                let target = route.value();
                if &target.service != name {
                    continue;
                }
                covered.push(route.id().to_owned());
                let mut op = op.as_object().cloned().unwrap_or_default();
                annotate(&mut op, route, service);
                let entry = paths.entry(path.clone()).or_default();
                if let Some(params) = item.get("parameters") {
                    entry.insert("parameters".into(), params.clone());
                }
                entry.insert(method.clone(), Value::Object(op));
            }
        }
    }
    // Every other route, from its pattern.
    for route in policies.routes().iter() {
        let target = route.value();
        if only.is_some_and(|o| o != target.service) || covered.iter().any(|c| c == route.id()) {
            continue;
        }
        let service = services.iter().find(|s| s.name == target.service);
        let (path, params) = route.pattern().openapi_template();
        let methods: Vec<String> = match route.methods() {
            Some(list) => list
                .iter()
                .map(|m| m.as_str().to_ascii_lowercase())
                .collect(),
            None => ANY_METHODS.iter().map(|m| m.to_string()).collect(),
        };
        let entry = paths.entry(path).or_default();
        for method in methods {
            if entry.contains_key(&method) {
                continue;
            }
            let mut op = Map::new();
            op.insert(
                "operationId".into(),
                json!(format!("{}-{method}", route.id())),
            );
            op.insert(
                "summary".into(),
                json!(format!(
                    "route {} of service {}",
                    route.id(),
                    target.service
                )),
            );
            op.insert(
                "parameters".into(),
                Value::Array(
                    params
                        .iter()
                        .map(|(name, many)| {
                            json!({
                                "name": name,
                                "in": "path",
                                "required": true,
                                "schema": {"type": "string"},
                                "description": if *many {
                                    "one or more path segments (the pattern's `**`)"
                                } else {
                                    "one path segment"
                                },
                            })
                        })
                        .collect(),
                ),
            );
            op.insert(
                "responses".into(),
                json!({"default": {"description": "the service's response"}}),
            );
            annotate(&mut op, route, service);
            entry.insert(method, Value::Object(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Stella Gateway {gateway_id}"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Routes served by the gateway; `x-stellaops-gateway-auth` on each operation says what the gateway requires of the caller before the service sees the request.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or opaque access token"},
                "dpop": {"type": "http", "scheme": "DPoP", "description": "A DPoP-bound access token (RFC 9449) with a DPoP proof header"},
                "mutualTLS": {"type": "mutualTLS", "description": "A client certificate: a certificate-bound token (RFC 8705) or a SPIFFE workload"},
            },
            "responses": {
                "Problem": {
                    "description": "Refused by the gateway (RFC 9457 problem details)",
                    "content": {"application/problem+json": {"schema": {"type": "object"}}},
                },
            },
        },
    })
}

/// The route the gateway would match for an operation of a service
/// document (its path template with every `{param}` as a sample segment).
fn route_for<'a>(
    policies: &'a Policies,
    method: &str,
    path: &str,
) -> Option<&'a Route<RouteTarget>> {
    let sample: String = path
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "sample"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let normalized = normalize_path(sample.as_bytes()).ok()?;
    match policies
        .routes()
        .lookup(None, &method.to_ascii_uppercase(), &normalized)
    {
        Lookup::Matched(route) => Some(route),
        _ => None,
    }
}

/// Adds `x-stellaops-gateway-auth`, `security`, the gateway's refusals and
/// the tag of the service to an operation.
fn annotate(op: &mut Map<String, Value>, route: &Route<RouteTarget>, service: Option<&Service>) {
    let target = route.value();
    let mut auth = Map::new();
    auth.insert("route".into(), json!(route.id()));
    auth.insert("service".into(), json!(target.service));
    auth.insert(
        "trust_mode".into(),
        json!(service.and_then(|s| s.trust_mode).map(|m| m.to_string())),
    );
    auth.insert("pattern".into(), json!(route.pattern().as_str()));
    let security: Value = match &target.policy {
        None => {
            auth.insert(
                "policy".into(),
                json!("none: Router__OnMissingAuthorization decides"),
            );
            json!([{"bearer": []}, {"dpop": []}, {}])
        }
        Some(Requirements::Anonymous) => {
            auth.insert("anonymous".into(), json!(true));
            json!([{}])
        }
        Some(Requirements::Caller(r)) => {
            auth.insert("anonymous".into(), json!(false));
            let mut put = |k: &str, v: &Vec<String>| {
                if !v.is_empty() {
                    auth.insert(k.into(), json!(v));
                }
            };
            put("scopes_all", &r.scopes_all);
            put("scopes_any", &r.scopes_any);
            put("audiences_any", &r.audiences_any);
            put("tenants", &r.tenants);
            put("roles_any", &r.roles_any);
            put("spiffe_ids", &r.spiffe_ids);
            if !r.claims.is_empty() {
                auth.insert("claims".into(), json!(r.claims));
            }
            auth.insert(
                "sender_constraint".into(),
                json!(r.sender_constraint.as_str()),
            );
            if r.allow_bypass {
                auth.insert("allow_bypass".into(), json!(true));
            }
            if r.dpop_nonce {
                auth.insert("dpop_nonce".into(), json!(true));
            }
            let scopes: Vec<&String> = r.scopes_all.iter().chain(&r.scopes_any).collect();
            let mut alternatives = Vec::new();
            match r.sender_constraint {
                SenderConstraint::None => {
                    alternatives.push(json!({"bearer": scopes}));
                    alternatives.push(json!({"dpop": scopes}));
                    alternatives.push(json!({"bearer": scopes, "mutualTLS": []}));
                }
                SenderConstraint::Dpop => alternatives.push(json!({"dpop": scopes})),
                SenderConstraint::Mtls => {
                    alternatives.push(json!({"bearer": scopes, "mutualTLS": []}))
                }
                SenderConstraint::AnyBound => {
                    alternatives.push(json!({"dpop": scopes}));
                    alternatives.push(json!({"bearer": scopes, "mutualTLS": []}));
                }
            }
            if !r.spiffe_ids.is_empty() && !r.needs_token() {
                alternatives.push(json!({"mutualTLS": []}));
            }
            Value::Array(alternatives)
        }
    };
    if let Some(binding) = &target.identity_binding {
        auth.insert("identity_binding".into(), json!(binding.to_string()));
    }
    if let Some(shadow) = &target.shadow {
        auth.insert("shadow".into(), json!(shadow.to_string()));
    }
    op.insert("security".into(), security);
    op.insert("x-stellaops-gateway-auth".into(), Value::Object(auth));
    op.insert("tags".into(), json!([target.service]));
    let responses = op.entry("responses").or_insert_with(|| json!({}));
    if let Value::Object(responses) = responses {
        for code in refusals(target) {
            responses
                .entry(code.to_string())
                .or_insert_with(|| json!({"$ref": "#/components/responses/Problem"}));
        }
    }
}

/// The refusal statuses the gateway can answer on a route.
fn refusals(target: &RouteTarget) -> Vec<u16> {
    match &target.policy {
        Some(Requirements::Anonymous) => vec![400, 404, 502, 503, 504],
        _ => vec![400, 401, 403, 404, 502, 503, 504],
    }
}
