//! A verified token's claims read through its Authority's [`ClaimMapping`]:
//! the header `typ` it must carry, and where its client id, scopes, tenant
//! and roles are, so that policies and the envelope see one vocabulary
//! whichever provider issued the token (docs/authorities.md).
//!
//! Pure functions over the claims object. The types stay strict: a mapped
//! claim of the wrong JSON type is an error, never absent, and so is a
//! member on a path that is not an object (`realm_access: "x"` for
//! `realm_access.roles`). A path that runs into a missing member is absent.
//! Errors name the path as configured, never a value.
//!
//! The strict RFC 9068 default is [`strict`]: `scope`, `roles`, `tenant`
//! and `client_id` at the top level, which is what the verifier has always
//! read.

use super::{ClaimProblem, TokenError};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use stella_authority::settings::{ClaimMapping, ClaimPath, ScopeFormat, Segment, TokenProfile};
use stella_core::identity::Names;
use stella_jose::{typ_matches, JsonObject};

static STRICT: LazyLock<ClaimMapping> = LazyLock::new(|| TokenProfile::Rfc9068.mapping());

/// The RFC 9068 mapping: the claim names of tokens without a profile.
pub fn strict() -> &'static ClaimMapping {
    &STRICT
}

/// Refuses a header `typ` the mapping does not accept.
pub fn check_typ(typ: Option<&str>, mapping: &ClaimMapping) -> Result<(), TokenError> {
    match typ {
        None if mapping.require_typ => Err(TokenError::MissingTyp),
        None => Ok(()),
        Some(typ)
            if mapping
                .typ
                .iter()
                .any(|accepted| typ_matches(typ, accepted)) =>
        {
            Ok(())
        }
        Some(_) => Err(TokenError::WrongTyp),
    }
}

/// The value at `path`, if every member on the way is present. `client_id`
/// stands in for a `{client_id}` segment (none: the path is absent).
pub fn lookup<'a>(
    claims: &'a JsonObject,
    path: &ClaimPath,
    client_id: Option<&str>,
) -> Result<Option<&'a Value>, TokenError> {
    let mut object = claims;
    let mut segments = path.segments().iter().peekable();
    while let Some(segment) = segments.next() {
        let name = match segment {
            Segment::Name(name) => name.as_str(),
            Segment::ClientId => match client_id {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        let Some(value) = object.get(name) else {
            return Ok(None);
        };
        if segments.peek().is_none() {
            return Ok(Some(value));
        }
        match value {
            Value::Object(inner) => object = inner,
            _ => return Err(wrong_type(path)),
        }
    }
    Ok(None)
}

/// The client id: the string at the first of the mapping's paths that is
/// present.
pub fn client_id(
    claims: &JsonObject,
    mapping: &ClaimMapping,
) -> Result<Option<Box<str>>, TokenError> {
    first_string(claims, &mapping.client_id, None)
}

/// The tenant: the string at the first of the mapping's paths that is
/// present.
pub fn tenant(
    claims: &JsonObject,
    mapping: &ClaimMapping,
    client_id: Option<&str>,
) -> Result<Option<Box<str>>, TokenError> {
    first_string(claims, &mapping.tenant, client_id)
}

/// The scopes of every path, in order; a scope an earlier path gave is not
/// repeated (within one claim they stay as written).
pub fn scopes(
    claims: &JsonObject,
    mapping: &ClaimMapping,
    client_id: Option<&str>,
) -> Result<Names, TokenError> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for path in &mapping.scope {
        let before = out.len();
        match (lookup(claims, path, client_id)?, mapping.scope_format) {
            (None, _) => {}
            (Some(Value::String(text)), ScopeFormat::String) => {
                for scope in text.split(' ').filter(|s| !s.is_empty()) {
                    push_new(&mut out, before, scope);
                }
            }
            (Some(Value::Array(items)), ScopeFormat::Array) => {
                for item in items {
                    match item {
                        Value::String(scope) => push_new(&mut out, before, scope),
                        _ => return Err(wrong_type(path)),
                    }
                }
            }
            (Some(_), _) => return Err(wrong_type(path)),
        }
    }
    Ok(out.into_boxed_slice())
}

/// The roles of every path (each an array of strings), in order; a role an
/// earlier path gave is not repeated.
pub fn roles(
    claims: &JsonObject,
    mapping: &ClaimMapping,
    client_id: Option<&str>,
) -> Result<Names, TokenError> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for path in &mapping.roles {
        let before = out.len();
        match lookup(claims, path, client_id)? {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(role) => push_new(&mut out, before, role),
                        _ => return Err(wrong_type(path)),
                    }
                }
            }
            Some(_) => return Err(wrong_type(path)),
        }
    }
    Ok(out.into_boxed_slice())
}

/// Every required value is there, a string, and exactly the one expected.
pub fn check_required_values(
    claims: &JsonObject,
    mapping: &ClaimMapping,
    client_id: Option<&str>,
) -> Result<(), TokenError> {
    for required in &mapping.required_values {
        match lookup(claims, &required.claim, client_id)? {
            Some(Value::String(value)) if *value == required.value => {}
            Some(Value::String(_)) => {
                return Err(claim_error(&required.claim, ClaimProblem::UnexpectedValue))
            }
            None => return Err(claim_error(&required.claim, ClaimProblem::Missing)),
            Some(_) => return Err(wrong_type(&required.claim)),
        }
    }
    Ok(())
}

/// The mapping's client id paths, for an error saying none was present.
pub fn client_id_names(mapping: &ClaimMapping) -> String {
    let names: Vec<String> = mapping.client_id.iter().map(|p| p.to_string()).collect();
    names.join(" or ")
}

/// Adds `value` unless a path before this one (entries before `before`)
/// gave it already.
fn push_new(out: &mut Vec<Arc<str>>, before: usize, value: &str) {
    if !out[..before].iter().any(|v| **v == *value) {
        out.push(Arc::from(value));
    }
}

fn first_string(
    claims: &JsonObject,
    paths: &[ClaimPath],
    client_id: Option<&str>,
) -> Result<Option<Box<str>>, TokenError> {
    for path in paths {
        match lookup(claims, path, client_id)? {
            None => continue,
            Some(Value::String(s)) => return Ok(Some(s.as_str().into())),
            Some(_) => return Err(wrong_type(path)),
        }
    }
    Ok(None)
}

fn wrong_type(path: &ClaimPath) -> TokenError {
    claim_error(path, ClaimProblem::WrongType)
}

fn claim_error(path: &ClaimPath, problem: ClaimProblem) -> TokenError {
    TokenError::Claim {
        claim: Cow::Owned(path.to_string()),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn path(text: &str) -> ClaimPath {
        ClaimPath::parse(text).unwrap()
    }

    fn list(names: &Names) -> Vec<&str> {
        names.iter().map(|n| &**n).collect()
    }

    fn wrong(claim: &str) -> TokenError {
        TokenError::Claim {
            claim: Cow::Owned(claim.to_owned()),
            problem: ClaimProblem::WrongType,
        }
    }

    /// One token of each provider's documented shape, as the profile reads
    /// it: (profile, claims, client id, scopes, roles, tenant).
    #[test]
    fn each_profile_reads_its_providers_token() {
        type Row = (
            TokenProfile,
            Value,
            &'static str,
            &'static [&'static str],
            &'static [&'static str],
            Option<&'static str>,
        );
        let rows: [Row; 6] = [
            (
                TokenProfile::Rfc9068,
                json!({"client_id": "app", "scope": "a b", "roles": ["r"], "tenant": "acme"}),
                "app",
                &["a", "b"],
                &["r"],
                Some("acme"),
            ),
            (
                TokenProfile::Keycloak,
                json!({
                    "typ": "Bearer", "azp": "app", "scope": "profile email a",
                    "realm_access": {"roles": ["offline_access", "r"]},
                    "resource_access": {"app": {"roles": ["c"]}, "account": {"roles": ["view-profile"]}},
                }),
                "app",
                &["profile", "email", "a"],
                &["offline_access", "r"],
                None,
            ),
            (
                TokenProfile::Entra,
                json!({
                    "azp": "6e74172b", "scp": "a b", "roles": ["r"],
                    "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "ver": "2.0",
                }),
                "6e74172b",
                &["a", "b"],
                &["r"],
                Some("72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ),
            (
                TokenProfile::Auth0,
                json!({
                    "azp": "app", "scope": "openid a", "permissions": ["read:x"],
                    "org_id": "org_123", "https://example.com/roles": ["admin"],
                }),
                "app",
                &["openid", "a"],
                &["read:x"],
                Some("org_123"),
            ),
            (
                TokenProfile::Okta,
                json!({"cid": "0oa1", "uid": "00u1", "scp": ["a", "b"], "groups": ["Everyone"]}),
                "0oa1",
                &["a", "b"],
                &["Everyone"],
                None,
            ),
            (
                TokenProfile::Cognito,
                json!({
                    "client_id": "7abc", "token_use": "access",
                    "scope": "aws.cognito.signin.user.admin a", "cognito:groups": ["r"],
                }),
                "7abc",
                &["aws.cognito.signin.user.admin", "a"],
                &["r"],
                None,
            ),
        ];
        for (profile, claims, client, scope_list, role_list, tenant_value) in rows {
            let m = profile.mapping();
            let claims = object(claims);
            let id = client_id(&claims, &m).unwrap();
            assert_eq!(id.as_deref(), Some(client), "{profile}");
            let id = id.as_deref();
            assert_eq!(
                list(&scopes(&claims, &m, id).unwrap()),
                scope_list,
                "{profile}"
            );
            assert_eq!(
                list(&roles(&claims, &m, id).unwrap()),
                role_list,
                "{profile}"
            );
            assert_eq!(
                tenant(&claims, &m, id).unwrap().as_deref(),
                tenant_value,
                "{profile}"
            );
            assert_eq!(check_required_values(&claims, &m, id), Ok(()), "{profile}");
        }
    }

    #[test]
    fn paths_reach_nested_namespaced_and_client_specific_members() {
        let claims = object(json!({
            "realm_access": {"roles": ["realm-role"]},
            "resource_access": {"app": {"roles": ["app-role"]}, "other": {"roles": ["no"]}},
            "cognito:groups": ["group"],
            "https://example.com/roles": ["namespaced"],
            "https://example.com/": {"roles": ["nested"]},
        }));
        for (text, client, expected) in [
            ("realm_access.roles", None, vec!["realm-role"]),
            (
                "resource_access.{client_id}.roles",
                Some("app"),
                vec!["app-role"],
            ),
            // No client id to substitute: absent, not an error.
            ("resource_access.{client_id}.roles", None, vec![]),
            ("resource_access.{client_id}.roles", Some("unknown"), vec![]),
            ("cognito:groups", None, vec!["group"]),
            ("\"https://example.com/roles\"", None, vec!["namespaced"]),
            ("\"https://example.com/\".roles", None, vec!["nested"]),
            ("missing.roles", None, vec![]),
        ] {
            let mapping = ClaimMapping {
                roles: vec![path(text)],
                ..strict().clone()
            };
            let got = roles(&claims, &mapping, client).unwrap();
            assert_eq!(list(&got), expected, "{text} {client:?}");
        }
    }

    #[test]
    fn several_paths_are_merged_in_order_without_repeats_across_paths() {
        let claims = object(json!({
            "realm_access": {"roles": ["a", "b"]},
            "resource_access": {"app": {"roles": ["b", "c"]}},
            "scp": "x y", "scope": "y z",
        }));
        let mapping = ClaimMapping {
            roles: vec![
                path("realm_access.roles"),
                path("resource_access.{client_id}.roles"),
            ],
            scope: vec![path("scp"), path("scope")],
            ..strict().clone()
        };
        assert_eq!(
            list(&roles(&claims, &mapping, Some("app")).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            list(&scopes(&claims, &mapping, None).unwrap()),
            ["x", "y", "z"]
        );
        // Within one claim values stay as written, as the strict default
        // always kept them.
        let claims = object(json!({"scope": "a a", "roles": ["r", "r"]}));
        assert_eq!(list(&scopes(&claims, strict(), None).unwrap()), ["a", "a"]);
        assert_eq!(list(&roles(&claims, strict(), None).unwrap()), ["r", "r"]);
    }

    #[test]
    fn the_first_client_id_and_tenant_path_present_wins() {
        let entra = TokenProfile::Entra.mapping();
        for (claims, expected) in [
            (json!({"azp": "v2", "appid": "v1"}), Some("v2")),
            (json!({"appid": "v1"}), Some("v1")),
            (json!({}), None),
        ] {
            let got = client_id(&object(claims.clone()), &entra).unwrap();
            assert_eq!(got.as_deref(), expected, "{claims}");
        }
        let mapping = ClaimMapping {
            tenant: vec![path("org_id"), path("tenant")],
            ..strict().clone()
        };
        let claims = object(json!({"tenant": "t", "org_id": "o"}));
        assert_eq!(
            tenant(&claims, &mapping, None).unwrap().as_deref(),
            Some("o")
        );
        assert_eq!(client_id_names(&entra), "azp or appid");
    }

    #[test]
    fn mapped_claims_of_the_wrong_type_are_errors_naming_the_path() {
        let keycloak = TokenProfile::Keycloak.mapping();
        let okta = TokenProfile::Okta.mapping();
        let entra = TokenProfile::Entra.mapping();
        let cases: [(&ClaimMapping, Value, TokenError); 9] = [
            (
                &keycloak,
                json!({"realm_access": "r"}),
                wrong("realm_access.roles"),
            ),
            (
                &keycloak,
                json!({"realm_access": null}),
                wrong("realm_access.roles"),
            ),
            (
                &keycloak,
                json!({"realm_access": {"roles": "r"}}),
                wrong("realm_access.roles"),
            ),
            (
                &keycloak,
                json!({"realm_access": {"roles": [1]}}),
                wrong("realm_access.roles"),
            ),
            (&keycloak, json!({"scope": ["a"]}), wrong("scope")),
            // Okta's scp is an array: a string is the wrong type.
            (&okta, json!({"scp": "a b"}), wrong("scp")),
            (&okta, json!({"scp": ["a", 2]}), wrong("scp")),
            (&entra, json!({"tid": 7}), wrong("tid")),
            (&entra, json!({"azp": ["x"]}), wrong("azp")),
        ];
        for (mapping, claims, expected) in cases {
            let claims = object(claims);
            let got = client_id(&claims, mapping)
                .and_then(|id| {
                    let id = id.as_deref();
                    scopes(&claims, mapping, id)?;
                    roles(&claims, mapping, id)?;
                    tenant(&claims, mapping, id)
                })
                .unwrap_err();
            assert_eq!(got, expected, "{claims:?}");
            assert_eq!(got.code(), "malformed_claim");
        }
    }

    #[test]
    fn required_values_must_be_present_strings_with_the_value() {
        let cognito = TokenProfile::Cognito.mapping();
        for (claims, result) in [
            (json!({"token_use": "access"}), Ok(())),
            (
                json!({"token_use": "id"}),
                Err((
                    "token_use",
                    ClaimProblem::UnexpectedValue,
                    "unexpected_claim_value",
                )),
            ),
            (
                json!({}),
                Err(("token_use", ClaimProblem::Missing, "missing_claim")),
            ),
            (
                json!({"token_use": ["access"]}),
                Err(("token_use", ClaimProblem::WrongType, "malformed_claim")),
            ),
        ] {
            let got = check_required_values(&object(claims.clone()), &cognito, None);
            match result {
                Ok(()) => assert_eq!(got, Ok(()), "{claims}"),
                Err((claim, problem, code)) => {
                    let err = got.unwrap_err();
                    assert_eq!(
                        err,
                        TokenError::Claim {
                            claim: Cow::Owned(claim.into()),
                            problem
                        },
                        "{claims}"
                    );
                    assert_eq!(err.code(), code);
                }
            }
        }
    }

    #[test]
    fn typ_is_checked_against_the_accepted_values() {
        let (keycloak, entra, okta) = (
            TokenProfile::Keycloak.mapping(),
            TokenProfile::Entra.mapping(),
            TokenProfile::Okta.mapping(),
        );
        for (typ, mapping, accepted) in [
            (Some("at+jwt"), strict(), Ok(())),
            (Some("application/AT+JWT"), strict(), Ok(())),
            (Some("JWT"), strict(), Err(TokenError::WrongTyp)),
            (None, strict(), Err(TokenError::MissingTyp)),
            (Some("JWT"), &keycloak, Ok(())),
            (Some("jwt"), &keycloak, Ok(())),
            (None, &keycloak, Ok(())),
            (Some("id_token+jwt"), &keycloak, Err(TokenError::WrongTyp)),
            (Some("JWT"), &entra, Ok(())),
            (None, &entra, Err(TokenError::MissingTyp)),
            (Some("at+jwt"), &entra, Err(TokenError::WrongTyp)),
            (None, &okta, Ok(())),
            (Some("at+jwt"), &okta, Ok(())),
            (Some("JWT"), &okta, Err(TokenError::WrongTyp)),
        ] {
            assert_eq!(
                check_typ(typ, mapping),
                accepted,
                "{typ:?} {}",
                mapping.profile
            );
        }
    }
}
