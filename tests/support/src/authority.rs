//! The test Authority (`node tests/authority/server.mjs`, node-oidc-provider)
//! and its clients: it binds port 0 and reports the address in its
//! `AUTHORITY_READY` line. Tokens come from `token.mjs`, DPoP proofs by an
//! independent implementation from `proof.mjs`.

use crate::http::request;
use crate::process::{wait_until, Process};
use crate::temp::TempDir;
use crate::{repo_root, START_TIMEOUT};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

fn authority_dir() -> PathBuf {
    let dir = repo_root().join("tests/authority");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the test Authority is not installed: run `npm ci` in {}",
        dir.display()
    );
    dir
}

/// An OAuth client registered in the test Authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
}

/// The gateway's own client at the test Authority (introspection, claims).
pub const GATEWAY_CLIENT: Client = Client {
    id: "gateway",
    secret: "gateway-secret",
};

/// The resource indicator whose access tokens the test Authority makes
/// opaque (introspection only).
pub const OPAQUE_AUDIENCE: &str = "http://gateway.local/opaque";

/// scopes echo.read echo.write admin, tenant acme.
pub const BEARER: Client = Client {
    id: "svc-bearer",
    secret: "svc-bearer-secret",
};
/// scope echo.read, tenant globex.
pub const READONLY: Client = Client {
    id: "svc-readonly",
    secret: "svc-readonly-secret",
};
/// Certificate-bound tokens (needs `--cert-pem`).
pub const MTLS: Client = Client {
    id: "svc-mtls",
    secret: "svc-mtls-secret",
};
/// DPoP-bound tokens (needs a proof: [`Authority::dpop_token`]); scopes
/// echo.read echo.write admin, tenant acme.
pub const DPOP: Client = Client {
    id: "svc-dpop",
    secret: "svc-dpop-secret",
};

/// What to ask the token endpoint for besides the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub cert_pem: Option<PathBuf>,
}

impl TokenRequest {
    pub fn scope(scope: &str) -> TokenRequest {
        TokenRequest {
            scope: Some(scope.into()),
            ..TokenRequest::default()
        }
    }

    pub fn resource(resource: &str) -> TokenRequest {
        TokenRequest {
            resource: Some(resource.into()),
            ..TokenRequest::default()
        }
    }

    /// A certificate-bound token for the certificate in `pem`.
    pub fn bound_to(pem: &Path) -> TokenRequest {
        TokenRequest {
            cert_pem: Some(pem.to_path_buf()),
            ..TokenRequest::default()
        }
    }
}

#[derive(Default)]
pub struct AuthorityOptions {
    /// `AUTHORITY_KEYS_FILE`: share keys with another instance (written
    /// first if it does not exist). By default each Authority has its own.
    pub keys_file: Option<PathBuf>,
    /// `AUTHORITY_AT_TTL`, seconds.
    pub access_token_ttl: Option<u64>,
    /// A fixed port (to bring an Authority up where a gateway expects it).
    pub port: Option<u16>,
    /// `AUTHORITY_CLIENTS_FILE`: extra clients (JSON array of client
    /// metadata; see tests/authority/README.md). None by default.
    pub clients_file: Option<PathBuf>,
    /// `AUTHORITY_CLAIMS_FILE`: what the claims endpoint answers, read on
    /// every request (a JSON object keyed by subject or client_id).
    pub claims_file: Option<PathBuf>,
    /// `AUTHORITY_DPOP_NONCE=1`: DPoP token requests need the Authority's
    /// nonce (a first 400 `use_dpop_nonce`).
    pub dpop_nonce: bool,
    /// `AUTHORITY_TEST_MINT=1`: the test-only minting endpoint, and with it
    /// tokens shaped as other providers issue them, each under its own
    /// issuer ([`Authority::shaped_token`], [`Authority::shape_issuer`]).
    pub test_mint: bool,
    /// `AUTHORITY_SLOW_MS`: the claims and introspection endpoints answer
    /// this many milliseconds late (to hold a request pending).
    pub slow_ms: Option<u64>,
    /// `AUTHORITY_TLS_CERT_FILE`, `AUTHORITY_TLS_KEY_FILE`: serve https
    /// (issuer `https://127.0.0.1:PORT`). Tokens are then fetched trusting
    /// [`AuthorityTls::ca`]; the helpers that call it over plain http
    /// (`jwks`, `counts`, `revoke`, shaped tokens) are not for it.
    pub tls: Option<AuthorityTls>,
    /// `AUTHORITY_MTLS_PORT` (ephemeral), `AUTHORITY_MTLS_CERT_FILE`,
    /// `AUTHORITY_MTLS_KEY_FILE`: a second, https listener asking for a
    /// client certificate, named in discovery's `mtls_endpoint_aliases`;
    /// tokens issued there are bound to the certificate presented on TLS
    /// (its `ca` is not used by the Authority). Its origin is
    /// [`Authority::mtls`].
    pub mtls_listener: Option<AuthorityTls>,
}

/// The Authority's https certificate, its key, and the CA it chains to.
#[derive(Clone, Debug)]
pub struct AuthorityTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What a token shaped as another provider's carries
/// ([`Authority::shaped_token`]); the shape puts each where that provider
/// does (tests/authority/README.md).
#[derive(Clone, Debug, Default)]
pub struct Shaped {
    /// A registered client without sender constraints; `svc-bearer` if
    /// `None`.
    pub client: Option<&'static str>,
    /// Space-separated, held by the client; `echo.read` if `None`.
    pub scope: Option<String>,
    /// The audience (ignored by shapes without one, such as Cognito's).
    pub resource: Option<String>,
    /// The provider's roles or groups claim.
    pub roles: Vec<String>,
    /// Keycloak's client roles of the token's client; Auth0's namespaced
    /// `https://stella.example/roles`.
    pub client_roles: Vec<String>,
    /// Where the provider names a tenant the caller chose (Auth0's
    /// `org_id`).
    pub tenant: Option<String>,
}

/// The test Authority (`node tests/authority/server.mjs`).
pub struct Authority {
    process: Process,
    pub issuer: String,
    pub port: u16,
    /// Its private JWKS (`AUTHORITY_KEYS_FILE`).
    pub keys_file: PathBuf,
    /// The origin of its mTLS listener (`https://127.0.0.1:PORT`), when
    /// [`AuthorityOptions::mtls_listener`] asked for one.
    pub mtls: Option<String>,
    /// The CA of its https certificate, when it serves https.
    ca: Option<PathBuf>,
    tokens: Mutex<HashMap<(Client, TokenRequest), String>>,
    _dir: TempDir,
}

/// Writes a private JWKS in the Authority's format (an ES256 and an RS256
/// key, kid = RFC 7638 thumbprint) to `path`. The keys are made by the
/// `openssl` CLI and only converted by node: node 20's own RSA key
/// generation (`generateKeyPairSync`, which server.mjs uses when it has no
/// keys file) can deadlock in a GC callback (main thread blocked in
/// `KeyGenJob<RsaKeyGenTraits>::~KeyGenJob` on a mutex), which showed up as
/// an Authority that never printed its ready line, about once in 50 starts.
pub(crate) fn write_authority_keys(path: &Path) {
    let dir = path.parent().expect("keys file has a folder");
    let ec = dir.join("authority-ec.pem");
    let rsa = dir.join("authority-rsa.pem");
    let genpkey = |out: &Path, args: &[&str]| {
        let status = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(out)
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (is it installed?)");
        assert!(status.success(), "openssl genpkey {args:?} failed");
    };
    genpkey(
        &ec,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    genpkey(
        &rsa,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let script = r#"
        const c = require('node:crypto');
        const fs = require('node:fs');
        const [ecPem, rsaPem, out] = process.argv.slice(1);
        const thumbprint = (j) => c.createHash('sha256').update(JSON.stringify(
            j.kty === 'RSA' ? { e: j.e, kty: j.kty, n: j.n } : { crv: j.crv, kty: j.kty, x: j.x, y: j.y },
        )).digest('base64url');
        const jwk = (file) => c.createPrivateKey(fs.readFileSync(file)).export({ format: 'jwk' });
        const ec = jwk(ecPem);
        const rsa = jwk(rsaPem);
        const keys = [
            { ...ec, use: 'sig', alg: 'ES256', kid: thumbprint(ec) },
            { ...rsa, use: 'sig', alg: 'RS256', kid: thumbprint(rsa) },
        ];
        fs.writeFileSync(out, JSON.stringify({ keys }), { mode: 0o600 });
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&ec)
        .arg(&rsa)
        .arg(path)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "converting the authority keys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Authority {
    pub fn start() -> Authority {
        Authority::start_with(AuthorityOptions::default())
    }

    pub fn start_with(options: AuthorityOptions) -> Authority {
        let own_dir = TempDir::new("authority");
        let keys_file = options
            .keys_file
            .clone()
            .unwrap_or_else(|| own_dir.join("authority-keys.json"));
        if !keys_file.exists() {
            write_authority_keys(&keys_file);
        }
        let mut cmd = Command::new("node");
        cmd.current_dir(authority_dir())
            .arg("server.mjs")
            .env("AUTHORITY_PORT", options.port.unwrap_or(0).to_string());
        for name in [
            "AUTHORITY_AT_TTL",
            "AUTHORITY_CLIENTS_FILE",
            "AUTHORITY_DEFAULT_RESOURCE",
            "AUTHORITY_CLAIMS_FILE",
            "AUTHORITY_OPAQUE_RESOURCE",
            "AUTHORITY_DPOP_NONCE",
            "AUTHORITY_TEST_MINT",
            "AUTHORITY_SLOW_MS",
            "AUTHORITY_TLS_CERT_FILE",
            "AUTHORITY_TLS_KEY_FILE",
            "AUTHORITY_MTLS_PORT",
            "AUTHORITY_MTLS_CERT_FILE",
            "AUTHORITY_MTLS_KEY_FILE",
        ] {
            cmd.env_remove(name);
        }
        cmd.env("AUTHORITY_KEYS_FILE", &keys_file);
        if let Some(ms) = options.slow_ms {
            cmd.env("AUTHORITY_SLOW_MS", ms.to_string());
        }
        if let Some(clients) = &options.clients_file {
            cmd.env("AUTHORITY_CLIENTS_FILE", clients);
        }
        if let Some(claims) = &options.claims_file {
            cmd.env("AUTHORITY_CLAIMS_FILE", claims);
        }
        if options.dpop_nonce {
            cmd.env("AUTHORITY_DPOP_NONCE", "1");
        }
        if options.test_mint {
            cmd.env("AUTHORITY_TEST_MINT", "1");
        }
        if let Some(ttl) = options.access_token_ttl {
            cmd.env("AUTHORITY_AT_TTL", ttl.to_string());
        }
        if let Some(tls) = &options.tls {
            cmd.env("AUTHORITY_TLS_CERT_FILE", &tls.cert)
                .env("AUTHORITY_TLS_KEY_FILE", &tls.key);
        }
        if let Some(tls) = &options.mtls_listener {
            cmd.env("AUTHORITY_MTLS_PORT", "0")
                .env("AUTHORITY_MTLS_CERT_FILE", &tls.cert)
                .env("AUTHORITY_MTLS_KEY_FILE", &tls.key);
        }
        let process = Process::start("authority", cmd, "AUTHORITY_READY", START_TIMEOUT);
        let issuer = process.ready["issuer"]
            .as_str()
            .expect("ready line has issuer")
            .to_owned();
        let port = process.ready["port"].as_u64().expect("ready line has port") as u16;
        let mtls = process.ready["mtls"].as_str().map(str::to_owned);
        Authority {
            process,
            issuer,
            port,
            keys_file,
            mtls,
            ca: options.tls.map(|t| t.ca),
            tokens: Mutex::new(HashMap::new()),
            _dir: own_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A token with all of the client's scopes for the gateway's audience,
    /// fetched once per Authority and client.
    pub fn token(&self, client: Client) -> String {
        self.token_with(client, TokenRequest::default())
    }

    /// A token for `request`, cached per (client, request).
    pub fn token_with(&self, client: Client, request: TokenRequest) -> String {
        let key = (client, request);
        if let Some(t) = self.tokens.lock().unwrap().get(&key) {
            return t.clone();
        }
        let token = self.fresh_token(client, &key.1);
        self.tokens.lock().unwrap().insert(key, token.clone());
        token
    }

    /// Fetches the tokens of several clients at once (node starts slowly;
    /// in parallel the wait is paid once), filling the cache.
    pub fn prefetch(&self, clients: &[Client]) {
        let requests: Vec<(Client, TokenRequest)> = clients
            .iter()
            .map(|c| (*c, TokenRequest::default()))
            .collect();
        self.prefetch_with(&requests);
    }

    /// [`prefetch`](Self::prefetch) for tokens with particular requests.
    pub fn prefetch_with(&self, requests: &[(Client, TokenRequest)]) {
        std::thread::scope(|s| {
            for (client, request) in requests {
                s.spawn(move || self.token_with(*client, request.clone()));
            }
        });
    }

    /// A new token every call, through `token.mjs`.
    pub fn fresh_token(&self, client: Client, request: &TokenRequest) -> String {
        let mut cmd = Command::new("node");
        cmd.current_dir(authority_dir())
            .arg("token.mjs")
            .args(["--issuer", &self.issuer]);
        if let Some(ca) = &self.ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        cmd.args(["--client", client.id, "--secret", client.secret]);
        if let Some(scope) = &request.scope {
            cmd.args(["--scope", scope]);
        }
        if let Some(resource) = &request.resource {
            cmd.args(["--resource", resource]);
        }
        if let Some(pem) = &request.cert_pem {
            cmd.arg("--cert-pem").arg(pem);
        }
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .expect("run node token.mjs");
        assert!(
            out.status.success(),
            "token.mjs for {} failed: {}",
            client.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).expect("token is utf-8");
        token.trim().to_owned()
    }

    /// The issuer of tokens shaped as `shape` (`keycloak`, `entra`,
    /// `auth0`, `okta`, `cognito`, `cognito-id`): this Authority's URL with
    /// that provider's path form, and a discovery document there naming this
    /// Authority's JWKS. Needs [`AuthorityOptions::test_mint`].
    pub fn shape_issuer(&self, shape: &str) -> String {
        let r = request(self.addr(), "GET", "/__test/shapes", &[], b"");
        assert_eq!(r.status, 200, "shapes (is test_mint on?): {}", r.text());
        r.json()[shape]["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("no shape {shape}: {}", r.text()))
            .to_owned()
    }

    /// One access token as `shape`'s provider issues it (header `typ`,
    /// claim names and nesting, issuer form), signed with this Authority's
    /// RS256 key. Needs [`AuthorityOptions::test_mint`].
    pub fn shaped_token(&self, shape: &str, what: &Shaped) -> String {
        let mut query = vec![
            ("shape", shape.to_owned()),
            ("client", what.client.unwrap_or("svc-bearer").to_owned()),
            (
                "scope",
                what.scope.clone().unwrap_or_else(|| "echo.read".into()),
            ),
            ("roles", what.roles.join(" ")),
            ("client_roles", what.client_roles.join(" ")),
        ];
        if let Some(resource) = &what.resource {
            query.push(("resource", resource.clone()));
        }
        if let Some(tenant) = &what.tenant {
            query.push(("tenant", tenant.clone()));
        }
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let r = request(
            self.addr(),
            "POST",
            &format!("/__test/mint?{}", query.join("&")),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "mint {shape}: {}", r.text());
        r.text().trim().to_owned()
    }

    /// The Authority's published JWKS.
    pub fn jwks(&self) -> Value {
        let r = request(self.addr(), "GET", "/jwks", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Revokes `token` (RFC 7009) as `client`, the client it was issued to.
    pub fn revoke(&self, client: Client, token: &str) {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", client.id, client.secret));
        let body = format!("token={token}&token_type_hint=access_token");
        let r = request(
            self.addr(),
            "POST",
            "/token/revocation",
            &[
                ("authorization", &format!("Basic {basic}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "revocation: {}", r.text());
    }

    /// How often the Authority served its JWKS, answered introspection and
    /// claims requests (its test-only counters).
    pub fn counts(&self) -> Value {
        request(self.addr(), "GET", "/__test/jwks-count", &[], b"").json()
    }

    /// Stops the Authority abruptly and waits until its port refuses.
    pub fn kill(&mut self) {
        self.process.kill();
        let addr = self.addr();
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            }),
            "authority port still accepts after kill"
        );
    }
}

impl Authority {
    /// A new DPoP-bound token for `client` (normally [`DPOP`]): `token.mjs
    /// --dpop-key-file key_file` signs the token request's proof with the
    /// private JWK in that file ([`DpopKey::write_private_jwk`]), so the
    /// token's `cnf.jkt` is that key's thumbprint.
    pub fn dpop_token(&self, client: Client, key_file: &Path) -> String {
        self.dpop_token_for(client, key_file, None)
    }

    /// [`dpop_token`](Self::dpop_token) for a resource indicator (e.g.
    /// [`OPAQUE_AUDIENCE`] for an opaque DPoP-bound token).
    pub fn dpop_token_for(
        &self,
        client: Client,
        key_file: &Path,
        resource: Option<&str>,
    ) -> String {
        let mut cmd = Command::new("node");
        cmd.current_dir(authority_dir())
            .arg("token.mjs")
            .args(["--issuer", &self.issuer]);
        if let Some(ca) = &self.ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        cmd.args(["--client", client.id, "--secret", client.secret])
            .arg("--dpop-key-file")
            .arg(key_file);
        if let Some(resource) = resource {
            cmd.args(["--resource", resource]);
        }
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .expect("run node token.mjs");
        assert!(
            out.status.success(),
            "token.mjs --dpop-key-file for {} failed: {}",
            client.id,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("token is utf-8")
            .trim()
            .to_owned()
    }
}

/// A DPoP proof made by the npm `dpop` library (`tests/authority/proof.mjs`),
/// an implementation independent of [`DpopKey`], with the private JWK in
/// `key_file`.
pub fn npm_dpop_proof(
    key_file: &Path,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let mut cmd = Command::new("node");
    cmd.current_dir(authority_dir())
        .arg("proof.mjs")
        .arg("--key-file")
        .arg(key_file)
        .args(["--method", method, "--url", url]);
    if let Some(token) = token {
        cmd.args(["--token", token]);
    }
    if let Some(nonce) = nonce {
        cmd.args(["--nonce", nonce]);
    }
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .expect("run node proof.mjs");
    assert!(
        out.status.success(),
        "proof.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("proof is utf-8")
        .trim()
        .to_owned()
}

/// Percent-encodes everything but unreserved characters (RFC 3986 2.3).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
