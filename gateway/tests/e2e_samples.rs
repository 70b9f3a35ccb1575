//! The sample services in Python, Node and Go (`samples/`), each verifying
//! envelopes with its language's SDK (`sdk/`), behind a real gateway with a
//! real Authority, routed by the sample's own policy file
//! (`samples/policies/sample-<language>.yaml`) and signed with a key of its
//! own from `stella-gateway keys generate` (`services[].envelope_kid`).
//!
//! Through the gateway, a Bearer and a DPoP request are served with the
//! identity the service reports, and `stella-gateway smoke` passes on the
//! sample's routes. Straight to the service, envelopes minted here with the
//! service's key are refused with the SPEC's codes (section 5, section 6):
//! none, a forged signature, one replayed to another path or method, an
//! expired one.
//!
//! The samples run from what `samples/prepare.sh` builds (a Python venv,
//! node_modules, a Go binary); a test fails with that command in its message
//! when they are missing or older than their sources.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;
use stella_envelope::{AuthMethod, Identity, Key, KeyId, Signer, Target};

#[derive(Clone, Copy, Debug)]
enum Language {
    Python,
    Node,
    Go,
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
            Language::Go => "go",
        }
    }

    /// The gateway's service name, the envelope audience.
    fn service(self) -> String {
        format!("sample-{}", self.name())
    }

    /// `/<language>/<rest>`: each sample serves under its own prefix.
    fn path(self, rest: &str) -> String {
        format!("/{}/{rest}", self.name())
    }

    fn dir(self) -> PathBuf {
        repo_root().join("samples").join(self.name())
    }

    /// Why what `samples/prepare.sh` builds for this sample is missing or
    /// stale, if it is (the checks prepare.sh itself makes).
    fn unprepared(self) -> Option<String> {
        let dir = self.dir();
        match self {
            Language::Python => {
                let same = |source: &Path, copy: &str| {
                    std::fs::read(source).ok() == std::fs::read(dir.join(".venv").join(copy)).ok()
                };
                let sdk = repo_root().join("sdk/python/pyproject.toml");
                (!same(&dir.join("requirements.txt"), "requirements.installed")
                    || !same(&sdk, "pyproject.installed"))
                .then(|| "samples/python/.venv is missing or out of date".into())
            }
            Language::Node => {
                let installed = modified(&dir.join("node_modules/.package-lock.json"));
                let lock = modified(&dir.join("package-lock.json"));
                (installed.is_none() || installed < lock)
                    .then(|| "samples/node/node_modules is missing or out of date".into())
            }
            Language::Go => {
                let built = modified(&dir.join(".bin/stella-sample-go"));
                let sources = [dir.clone(), repo_root().join("sdk/go/envelope")]
                    .iter()
                    .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
                    .map(|entry| entry.path())
                    .filter(|p| {
                        let name = p.to_string_lossy();
                        (name.ends_with(".go") && !name.ends_with("_test.go"))
                            || name.ends_with("go.mod")
                    })
                    .filter_map(|p| modified(&p))
                    .max();
                (built.is_none() || built < sources)
                    .then(|| "samples/go/.bin/stella-sample-go is missing or out of date".into())
            }
        }
    }

    /// The command that runs the sample, as the local stack runs it.
    fn command(self) -> Command {
        if let Some(problem) = self.unprepared() {
            panic!("{problem}: run samples/prepare.sh first");
        }
        let dir = self.dir();
        let mut cmd = match self {
            Language::Python => {
                let mut cmd = Command::new(dir.join(".venv/bin/python"));
                cmd.arg(dir.join("app.py"));
                cmd
            }
            Language::Node => {
                let mut cmd = Command::new("node");
                cmd.arg(dir.join("server.mjs"));
                cmd
            }
            Language::Go => Command::new(dir.join(".bin/stella-sample-go")),
        };
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// An envelope key as `stella-gateway keys generate` prints it: the
/// gateway's form (secret) and the services' form (public for EdDSA).
struct GeneratedKey {
    kid: String,
    gateway: String,
    service: String,
}

fn generate_key(alg: &str, kid: &str) -> GeneratedKey {
    let out = Command::new(gateway_binary())
        .env_clear()
        .args(["keys", "generate", "--alg", alg, "--kid", kid])
        .output()
        .expect("run stella-gateway keys generate");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    let accepted = value("Router__IdentityEnvelopeAcceptedKeys");
    GeneratedKey {
        kid: kid.to_owned(),
        gateway: value("Router__IdentityEnvelopeSigningKey"),
        service: accepted
            .strip_prefix(&format!("{kid}="))
            .unwrap_or_else(|| panic!("accepted keys of another kid: {accepted}"))
            .to_owned(),
    }
}

/// A sample service process, verifying with `key` in `mode`.
struct Sample {
    process: Process,
    language: Language,
}

impl Sample {
    fn start(language: Language, mode: &str, key: &GeneratedKey) -> Sample {
        let mut cmd = language.command();
        cmd.env("SAMPLE_LISTEN", "127.0.0.1:0")
            .env("Router__AuthorizationTrustMode", mode)
            .env(
                "Router__IdentityEnvelopeAcceptedKeys",
                format!("{}={}", key.kid, key.service),
            )
            .env("Router__IdentityEnvelopeAudience", language.service())
            .env("Router__IdentityEnvelopeIssuer", GATEWAY_ID);
        let process = Process::start(
            &language.service(),
            cmd,
            "SAMPLE_READY",
            std::time::Duration::from_secs(30),
        );
        assert_eq!(process.ready["language"], language.name());
        assert_eq!(process.ready["mode"], mode);
        Sample { process, language }
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.process.addr(), method, path, headers, b"")
    }
}

/// Envelopes for one service, signed here with its key as the gateway
/// would sign them.
struct Minter {
    signer: Signer,
    audience: String,
}

impl Minter {
    fn new(key: &GeneratedKey, audience: &str) -> Minter {
        let kid = KeyId::new(&key.kid).expect("kid");
        let key = Key::parse(kid, &key.gateway).expect("generated key parses");
        Minter {
            signer: Signer::new(key, GATEWAY_ID, 60).expect("signer"),
            audience: audience.to_owned(),
        }
    }

    /// The six headers for `method path`, issued at `issued_at`.
    fn mint(&self, method: &str, path: &str, issued_at: u64) -> Vec<(String, String)> {
        let mut identity = Identity::anonymous();
        identity.auth_method = AuthMethod::Bearer;
        identity.subject = Some("minted-subject".into());
        identity.tenant = Some("acme".into());
        identity.client_id = Some("minted-client".into());
        identity.scopes = vec!["echo.read".into()];
        let target = Target {
            audience: &self.audience,
            method,
            path,
            request_id: "minted-1",
        };
        let headers = self
            .signer
            .sign(&identity, &target, issued_at)
            .expect("sign");
        headers
            .pairs()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// A refusal by the service's SDK: problem+json with the SPEC's `error`
/// and `envelope_error`, and nothing of the envelope echoed.
#[track_caller]
fn assert_refused(r: &Response, error: &str, envelope_error: Option<&str>) {
    assert_problem(r, 401, error);
    assert_eq!(
        r.json()["envelope_error"],
        json!(envelope_error),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("minted-subject"), "{}", r.text());
}

/// A 200 from the sample with the identity it reports.
#[track_caller]
fn served(r: &Response, language: Language) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["language"], language.name(), "{body}");
    assert_eq!(body["mode"], "GatewayEnforced", "{body}");
    body
}

/// The identity a sample reports for a request with `token`: the token's
/// subject, client, tenant and scopes, the service's key and the gateway.
#[track_caller]
fn assert_identity_of(body: &Value, token: &str, language: Language, kid: &str) {
    let claims = jwt_claims(token);
    let id = &body["identity"];
    assert_eq!(id["subject"], claims["sub"], "{body}");
    assert_eq!(id["client_id"], claims["client_id"], "{body}");
    assert_eq!(id["tenant"], claims["tenant"], "{body}");
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap_or("").split(' ').collect();
    assert_eq!(id["scopes"], json!(scopes), "{body}");
    assert_eq!(id["roles"], json!([]), "{body}");
    assert_eq!(id["kid"], kid, "{body}");
    assert_eq!(id["issuer"], GATEWAY_ID, "{body}");
    assert_eq!(id["audience"], language.service(), "{body}");
}

/// Copies the sample's policy file into a folder of its own, the gateway's
/// `policies_dir` (the shipped policies' services get no routes).
fn sample_policies(dir: &TempDir, language: Language) -> PathBuf {
    let out = dir.join("policies");
    std::fs::create_dir_all(&out).expect("create policies folder");
    let file = format!("{}.yaml", language.service());
    std::fs::copy(
        repo_root().join("samples/policies").join(&file),
        out.join(&file),
    )
    .expect("copy the sample's policy file");
    out
}

/// `stella-gateway smoke` over the sample's routes with a DPoP profile of
/// the test Authority: its output and exit code.
fn smoke(gw: &Gateway, authority: &Authority, dir: &TempDir) -> (Option<i32>, String) {
    std::fs::write(dir.join("svc-dpop.secret"), DPOP.secret).expect("write secret");
    let profiles = dir.join("profiles.yaml");
    let yaml = json!({"profiles": {"default": {
        "issuer": authority.issuer,
        "client_id": DPOP.id,
        "secret_file": "svc-dpop.secret",
        "mode": "dpop",
        "key_file": "smoke.jwk",
    }}});
    std::fs::write(&profiles, serde_yaml::to_string(&yaml).expect("yaml")).expect("write");
    let out = Command::new(gateway_binary())
        .env_clear()
        .arg("smoke")
        .arg("--config")
        .arg(&gw.config)
        .arg("--profiles")
        .arg(&profiles)
        .args(["--profile", "default"])
        .output()
        .expect("run stella-gateway smoke");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The whole story for one sample, GatewayEnforced, signed with a key of
/// `alg` that is its own.
fn sample_behind_the_gateway(language: Language, alg: &str) {
    let dir = TempDir::new(&format!("sample-{}", language.name()));
    let service = language.service();
    let key = generate_key(alg, &format!("k-{service}"));
    let (authority, sample) = std::thread::scope(|s| {
        let sample = s.spawn(|| Sample::start(language, "GatewayEnforced", &key));
        let authority = Authority::start();
        (authority, sample.join().expect("sample started"))
    });
    let gw = GatewaySetup::new(&authority.issuer)
        .add_service(&service, sample.process.addr(), "GatewayEnforced")
        .service_setting(&service, "envelope_kid", json!(key.kid))
        .router(
            "identity_envelope_keys",
            json!([{"kid": key.kid, "key": key.gateway}]),
        )
        .policies(&sample_policies(&dir, language))
        .public_origin("http://127.0.0.1:{http}")
        .start(&dir);
    let dpop_key = DpopKey::generate();
    let dpop_key_file = dir.join("dpop-key.json");
    dpop_key.write_private_jwk(&dpop_key_file);
    let (bearer, dpop) = std::thread::scope(|s| {
        let dpop = s.spawn(|| authority.dpop_token(DPOP, &dpop_key_file));
        (authority.token(BEARER), dpop.join().expect("dpop token"))
    });

    // Bearer through the gateway: the identity of the token, vouched for
    // by this request's envelope (its request id is the gateway's).
    let r = gw.get_with_token(&language.path("whoami"), &bearer);
    let body = served(&r, language);
    assert_identity_of(&body, &bearer, language, &key.kid);
    assert_eq!(body["identity"]["auth_method"], "bearer", "{body}");
    assert_eq!(body["identity"]["cnf"]["jkt"], Value::Null, "{body}");
    assert_eq!(
        body["identity"]["request_id"].as_str(),
        r.header("x-request-id"),
        "{body}"
    );
    let r = gw.get_with_token(&language.path("orders/42"), &bearer);
    let body = served(&r, language);
    assert_eq!(body["order"], "42", "{body}");
    assert_eq!(body["method"], "GET", "{body}");
    assert_identity_of(&body, &bearer, language, &key.kid);

    // DPoP through the gateway, on the route that requires it: the method
    // and the key the token is bound to reach the service.
    let path = language.path("orders/7");
    let proof = dpop_key.proof(
        "POST",
        &format!("{}{path}", gw.origin()),
        Some(&dpop),
        None,
        now(),
        &unique_jti("sample"),
    );
    let auth = format!("DPoP {dpop}");
    let r = gw.send("POST", &path, &[("Authorization", &auth), ("DPoP", &proof)]);
    let body = served(&r, language);
    assert_eq!(body["order"], "7", "{body}");
    assert_eq!(body["method"], "POST", "{body}");
    assert_identity_of(&body, &dpop, language, &key.kid);
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    assert_eq!(
        body["identity"]["cnf"]["jkt"],
        dpop_key.thumbprint(),
        "{body}"
    );

    // The smoke table of the sample's routes: each without credentials
    // (401) and with the DPoP profile (2xx).
    let (code, table) = smoke(&gw, &authority, &dir);
    assert_eq!(code, Some(0), "{table}");
    assert!(table.contains("PASS 6 rows: ok=6 failed=0"), "{table}");
    for route in ["whoami", "orders-read", "orders-write"] {
        assert!(table.contains(&format!("{service}-{route}")), "{table}");
    }

    // Straight to the service, around the gateway.
    assert_eq!(sample.send("GET", "/health", &[]).status, 200);
    let r = sample.send("GET", &language.path("whoami"), &[]);
    assert_refused(&r, "envelope_required", None);

    let minter = Minter::new(&key, &service);
    let order = language.path("orders/1");
    let minted = minter.mint("GET", &order, now());
    // Signed with the service's key for this very request: served.
    let r = sample.send("GET", &order, &borrowed(&minted));
    let body = served(&r, language);
    assert_eq!(body["identity"]["subject"], "minted-subject", "{body}");

    // The signature altered in its first character (every bit of which
    // counts, so the encoding stays canonical).
    let mut forged = minted.clone();
    let (_, signature) = forged
        .iter_mut()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-stellaops-identity-envelope-signature"))
        .expect("a signature header");
    let first = if signature.starts_with('A') { "B" } else { "A" };
    signature.replace_range(..1, first);
    let r = sample.send("GET", &order, &borrowed(&forged));
    assert_refused(&r, "envelope_invalid", Some("bad_signature"));

    // The envelope of GET /orders/1 replayed to another order, and as POST.
    let r = sample.send("GET", &language.path("orders/2"), &borrowed(&minted));
    assert_refused(&r, "envelope_invalid", Some("request_mismatch"));
    let r = sample.send("POST", &order, &borrowed(&minted));
    assert_refused(&r, "envelope_invalid", Some("request_mismatch"));

    // Issued ten minutes ago for a minute: past its expiry and the 30 s skew.
    let expired = minter.mint("GET", &order, now() - 600);
    let r = sample.send("GET", &order, &borrowed(&expired));
    assert_refused(&r, "envelope_invalid", Some("expired"));
}

#[test]
fn python_sample_with_an_eddsa_key_serves_the_gateways_identity_and_refuses_bad_envelopes() {
    sample_behind_the_gateway(Language::Python, "EdDSA");
}

#[test]
fn node_sample_with_an_hs256_key_serves_the_gateways_identity_and_refuses_bad_envelopes() {
    sample_behind_the_gateway(Language::Node, "HS256");
}

#[test]
fn go_sample_with_an_eddsa_key_serves_the_gateways_identity_and_refuses_bad_envelopes() {
    sample_behind_the_gateway(Language::Go, "EdDSA");
}

/// Hybrid, as the local stack runs the Node sample: a valid envelope is
/// trusted, a request without one is left to the service's own
/// authentication (which the samples do not have: 401 of their own), and
/// an invalid one is refused by the SDK.
#[test]
fn in_hybrid_mode_each_sample_trusts_a_valid_envelope_and_leaves_one_without_to_its_own_auth() {
    let languages = [Language::Python, Language::Node, Language::Go];
    let key = generate_key("HS256", "k-hybrid");
    let samples: Vec<Sample> = std::thread::scope(|s| {
        let key = &key;
        let started: Vec<_> = languages
            .iter()
            .map(|&l| s.spawn(move || Sample::start(l, "Hybrid", key)))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("sample started"))
            .collect()
    });
    for sample in &samples {
        let language = sample.language;
        let whoami = language.path("whoami");
        let r = sample.send("GET", &whoami, &[]);
        assert_problem(&r, 401, "service_auth_required");

        let minted = Minter::new(&key, &language.service()).mint("GET", &whoami, now());
        let r = sample.send("GET", &whoami, &borrowed(&minted));
        assert_eq!(r.status, 200, "{language:?}: {}", r.text());
        assert_eq!(r.json()["mode"], "Hybrid", "{}", r.text());
        assert_eq!(r.json()["identity"]["subject"], "minted-subject");

        let r = sample.send("GET", &language.path("orders/1"), &borrowed(&minted));
        assert_refused(&r, "envelope_invalid", Some("request_mismatch"));
    }
}
