//! Access tokens as real Authorities issue them, end to end
//! (docs/authorities.md). The test Authority mints tokens exactly as
//! Keycloak, Entra ID, Auth0, Okta and Cognito shape theirs (header `typ` or
//! none, claim names and nesting, issuer form such as Entra's
//! `.../{tid}/v2.0` or Auth0's trailing slash), each under its own issuer
//! path with a discovery document there, signed with its real keys. With the
//! matching `token_profile` the gateway accepts them, its policies decide
//! on the mapped roles and tenant, and the service finds roles, scopes,
//! tenant and client id in the envelope; the strict default refuses every
//! one of them at its header and never calls the service.

mod common;

use common::*;
use serde_json::{json, Value};

const ENTRA_TENANT: &str = "0b3c5e7a-4d2f-4c1b-9e8a-6f5d4c3b2a19";

/// A route that needs a role, and one that needs Entra's tenant.
fn extra_routes() -> String {
    format!(
        "  - id: echo-audit\n    path: /audit/**\n    policy:\n      roles_any: [auditor]\n\
         \x20 - id: echo-tenant-entra\n    path: /tenant/entra/**\n    policy:\n      \
         tenants: [\"{ENTRA_TENANT}\"]\n"
    )
}

/// The test Authority (with its shapes), the echo service and a temp dir.
fn start(label: &str) -> (TempDir, Authority, Echo) {
    let dir = TempDir::new(label);
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let authority = Authority::start_with(AuthorityOptions {
            test_mint: true,
            ..AuthorityOptions::default()
        });
        (authority, echo.join().expect("echo started"))
    });
    (dir, authority, echo)
}

/// A gateway whose one Authority is `issuer`, with `audience`, and
/// `profile` as its token profile (`None`: the strict default).
fn gateway(
    dir: &TempDir,
    echo: &Echo,
    issuer: &str,
    audience: &str,
    profile: Option<&str>,
) -> Gateway {
    let mut setup = GatewaySetup::new(issuer)
        .authority("audiences", json!([audience]))
        .service("echo", echo.addr())
        .policies(&policies_with_echo_routes(dir, &extra_routes()));
    if let Some(profile) = profile {
        setup = setup.authority("token_profile", json!(profile));
    }
    let gw = setup.start(dir);
    assert!(gw.keys_loaded_at_start(), "{}", gw.process.ready);
    gw
}

/// What the service must find in the envelope.
struct Identity {
    subject: &'static str,
    scopes: Value,
    roles: Value,
    tenant: Value,
}

#[track_caller]
fn assert_identity(r: &Response, expected: &Identity) {
    let body = assert_reached_via_envelope(r);
    let id = &body["identity"];
    assert_eq!(id["subject"], expected.subject, "{body}");
    assert_eq!(id["client_id"], "svc-bearer", "{body}");
    assert_eq!(id["scopes"], expected.scopes, "{body}");
    assert_eq!(id["roles"], expected.roles, "{body}");
    assert_eq!(id["tenant"], expected.tenant, "{body}");
    assert_eq!(id["auth_method"], "bearer", "{body}");
}

/// The gateway answers `token` with 401 `invalid_token` for `reason`, and
/// the service is not called.
#[track_caller]
fn assert_refused(gw: &Gateway, echo: &Echo, token: &str, reason: &str) {
    let upstream = echo.requests();
    let r = gw.get_with_token("/items/1", token);
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), reason);
    assert_eq!(echo.requests(), upstream, "the service was called");
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The mapped role decides `roles_any`: the token with `auditor` reaches
/// `/audit/`, the one without is refused 403 `access_denied` (reason
/// `role`).
#[track_caller]
fn assert_role_decides(gw: &Gateway, with_role: &str, without_role: &str) {
    assert_reached_via_envelope(&gw.get_with_token("/audit/1", with_role));
    let r = gw.get_with_token("/audit/2", without_role);
    assert_problem(&r, 403, "access_denied");
    assert_eq!(gw.reason_for(&r), "role");
}

#[test]
fn keycloak_tokens_are_accepted_with_the_keycloak_profile_and_refused_by_the_strict_default() {
    let (dir, authority, echo) = start("profile-keycloak");
    let issuer = authority.shape_issuer("keycloak");
    assert!(issuer.ends_with("/realms/stella"), "{issuer}");
    let gw = gateway(&dir, &echo, &issuer, "stella-api", Some("keycloak"));
    let shaped = |realm_roles: &[&str]| {
        authority.shaped_token(
            "keycloak",
            &Shaped {
                resource: Some("stella-api".into()),
                roles: roles(realm_roles),
                client_roles: roles(&["app-admin"]),
                ..Shaped::default()
            },
        )
    };
    let token = shaped(&["auditor"]);

    // Realm roles (Keycloak's defaults first); the client's own roles
    // under resource_access are not taken by the preset.
    assert_identity(
        &gw.get_with_token("/items/1", &token),
        &Identity {
            subject: "8f5e2c1a-3b4d-4e6f-9a0b-1c2d3e4f5a6b",
            scopes: json!(["profile", "email", "echo.read"]),
            roles: json!([
                "default-roles-stella",
                "offline_access",
                "uma_authorization",
                "auditor"
            ]),
            tenant: Value::Null,
        },
    );
    assert_role_decides(&gw, &token, &shaped(&[]));

    let strict = gateway(&dir, &echo, &issuer, "stella-api", None);
    assert_refused(&strict, &echo, &token, "wrong_typ");
}

#[test]
fn entra_tokens_are_accepted_with_the_entra_profile_and_refused_by_the_strict_default() {
    let (dir, authority, echo) = start("profile-entra");
    // The v2.0 issuer form: {origin}/{tenant id}/v2.0; the audience is the
    // API's application id.
    let issuer = authority.shape_issuer("entra");
    assert!(
        issuer.ends_with(&format!("/{ENTRA_TENANT}/v2.0")),
        "{issuer}"
    );
    let app_id = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
    let gw = gateway(&dir, &echo, &issuer, app_id, Some("entra"));
    let shaped = |app_roles: &[&str]| {
        authority.shaped_token(
            "entra",
            &Shaped {
                resource: Some(app_id.into()),
                scope: Some("echo.read echo.write".into()),
                roles: roles(app_roles),
                ..Shaped::default()
            },
        )
    };
    let token = shaped(&["auditor"]);

    assert_identity(
        &gw.get_with_token("/items/1", &token),
        &Identity {
            subject: "Xw2yS5t8bQ3kR7mN1pL4vJ6hG9fD0cA2zE5uI8oY3wT",
            scopes: json!(["echo.read", "echo.write"]),
            roles: json!(["auditor"]),
            tenant: json!(ENTRA_TENANT),
        },
    );
    assert_role_decides(&gw, &token, &shaped(&[]));
    // tid is the tenant policies see.
    assert_reached_via_envelope(&gw.get_with_token("/tenant/entra/1", &token));
    let r = gw.get_with_token("/tenant/acme/1", &token);
    assert_problem(&r, 403, "access_denied");
    assert_eq!(gw.reason_for(&r), "tenant");

    let strict = gateway(&dir, &echo, &issuer, app_id, None);
    assert_refused(&strict, &echo, &token, "wrong_typ");
}

#[test]
fn auth0_tokens_are_accepted_with_the_auth0_profile_and_refused_by_the_strict_default() {
    let (dir, authority, echo) = start("profile-auth0");
    // Auth0's issuer ends with a slash.
    let issuer = authority.shape_issuer("auth0");
    assert!(issuer.ends_with("/auth0/"), "{issuer}");
    let api = "https://api.stella.example";
    let gw = gateway(&dir, &echo, &issuer, api, Some("auth0"));
    let shaped = |permissions: &[&str]| {
        authority.shaped_token(
            "auth0",
            &Shaped {
                resource: Some(api.into()),
                roles: roles(permissions),
                tenant: Some("acme".into()),
                ..Shaped::default()
            },
        )
    };
    let token = shaped(&["auditor"]);

    assert_identity(
        &gw.get_with_token("/items/1", &token),
        &Identity {
            subject: "auth0|5f7c8ec7c33c6c004bbafe82",
            scopes: json!(["openid", "profile", "echo.read"]),
            roles: json!(["auditor"]),
            tenant: json!("acme"),
        },
    );
    assert_role_decides(&gw, &token, &shaped(&[]));
    // The organization is the tenant the shipped `tenants: [acme]` route
    // asks for.
    assert_reached_via_envelope(&gw.get_with_token("/tenant/acme/1", &token));

    let strict = gateway(&dir, &echo, &issuer, api, None);
    assert_refused(&strict, &echo, &token, "wrong_typ");
}

#[test]
fn okta_tokens_are_accepted_with_the_okta_profile_and_refused_by_the_strict_default() {
    let (dir, authority, echo) = start("profile-okta");
    let issuer = authority.shape_issuer("okta");
    assert!(issuer.ends_with("/oauth2/default"), "{issuer}");
    let gw = gateway(&dir, &echo, &issuer, "api://default", Some("okta"));
    let shaped = |groups: &[&str]| {
        authority.shaped_token(
            "okta",
            &Shaped {
                resource: Some("api://default".into()),
                scope: Some("echo.read echo.write".into()),
                roles: roles(groups),
                ..Shaped::default()
            },
        )
    };
    let token = shaped(&["auditor", "Everyone"]);

    // scp is an array, the client is cid, groups are the roles.
    assert_identity(
        &gw.get_with_token("/items/1", &token),
        &Identity {
            subject: "alice@stella.example",
            scopes: json!(["echo.read", "echo.write"]),
            roles: json!(["auditor", "Everyone"]),
            tenant: Value::Null,
        },
    );
    assert_role_decides(&gw, &token, &shaped(&["Everyone"]));

    // No typ in Okta's header at all.
    let strict = gateway(&dir, &echo, &issuer, "api://default", None);
    assert_refused(&strict, &echo, &token, "missing_typ");
}

#[test]
fn cognito_access_tokens_of_a_configured_app_client_are_accepted_and_id_tokens_are_not() {
    let (dir, authority, echo) = start("profile-cognito");
    let issuer = authority.shape_issuer("cognito");
    assert!(issuer.ends_with("/us-east-1_St3llaP0l"), "{issuer}");
    // No aud in a Cognito access token: the audiences are the app clients
    // whose tokens are accepted (their client_id).
    let gw = gateway(&dir, &echo, &issuer, "svc-bearer", Some("cognito"));
    let shaped = |shape: &str, client: &'static str, groups: &[&str]| {
        authority.shaped_token(
            shape,
            &Shaped {
                client: Some(client),
                roles: roles(groups),
                ..Shaped::default()
            },
        )
    };
    let token = shaped("cognito", "svc-bearer", &["auditor"]);

    assert_identity(
        &gw.get_with_token("/items/1", &token),
        &Identity {
            subject: "5a1b7c3d-9e2f-4a6b-8c0d-e1f2a3b4c5d6",
            scopes: json!(["echo.read"]),
            roles: json!(["auditor"]),
            tenant: Value::Null,
        },
    );
    assert_role_decides(&gw, &token, &shaped("cognito", "svc-bearer", &[]));

    // Another app client of the same pool: not one of the audiences.
    let other = shaped("cognito", "svc-readonly", &["auditor"]);
    assert_refused(&gw, &echo, &other, "wrong_audience");
    // The ID token of the same sign-in names the app client in aud, but it
    // is no access token: no client_id (and token_use id).
    let id_token = shaped("cognito-id", "svc-bearer", &["auditor"]);
    assert_refused(&gw, &echo, &id_token, "missing_claim");

    let strict = gateway(&dir, &echo, &issuer, "svc-bearer", None);
    assert_refused(&strict, &echo, &token, "missing_typ");
}

#[test]
fn explicit_token_claims_replace_the_profiles_paths_for_each_authority() {
    let (dir, authority, echo) = start("profile-override");
    let keycloak = authority.shape_issuer("keycloak");
    let auth0 = authority.shape_issuer("auth0");
    // Two Authorities, each with its profile and its own changes: the
    // token's iss selects which mapping reads it.
    let gw = GatewaySetup::new(&keycloak)
        .authority("audiences", json!(["stella-api"]))
        .authority("token_profile", json!("keycloak"))
        .authority(
            "token_claims",
            json!({"roles": ["realm_access.roles", "resource_access.{client_id}.roles"]}),
        )
        .auth(
            "authorities",
            json!([{
                "issuer": auth0,
                "require_https_metadata": false,
                "audiences": ["https://api.stella.example"],
                "token_profile": "auth0",
                // A claim name with dots and slashes, quoted.
                "token_claims": {"roles": ["\"https://stella.example/roles\""]},
            }]),
        )
        .service("echo", echo.addr())
        .policies(&policies_with_echo_routes(&dir, &extra_routes()))
        .start(&dir);
    assert!(gw.keys_loaded_at_start(), "{}", gw.process.ready);

    // Keycloak: auditor is a role of the caller's own client only.
    let token = authority.shaped_token(
        "keycloak",
        &Shaped {
            resource: Some("stella-api".into()),
            client_roles: roles(&["auditor"]),
            ..Shaped::default()
        },
    );
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/1", &token));
    assert_eq!(
        body["identity"]["roles"],
        json!([
            "default-roles-stella",
            "offline_access",
            "uma_authorization",
            "auditor"
        ]),
        "{body}"
    );

    // Auth0: roles from the namespaced custom claim, permissions no more.
    let token = authority.shaped_token(
        "auth0",
        &Shaped {
            resource: Some("https://api.stella.example".into()),
            roles: roles(&["read:items"]),
            client_roles: roles(&["auditor"]),
            ..Shaped::default()
        },
    );
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/1", &token));
    assert_eq!(body["identity"]["roles"], json!(["auditor"]), "{body}");
    assert_eq!(body["identity"]["tenant"], Value::Null, "{body}");
}
