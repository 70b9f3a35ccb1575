//! The configuration file format: serde structs that describe the YAML and
//! nothing else. Every struct refuses unknown keys. Conversion into checked
//! internal values happens in `config::resolve`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The gateway itself: listeners, Authorities, DPoP, limits.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// The identity envelope the gateway signs, and what a route without a
    /// policy allows (the `Router__*` names services use too).
    #[serde(default)]
    pub router: RouterSection,
    /// The services behind the gateway; policies route to them by name.
    #[serde(default)]
    pub services: Vec<ServiceSection>,
    /// Log format and filter.
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub traces: TracesSection,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// The gateway's id: the envelope's `iss` and the transaction token's
    /// `req_wl`. Visible ASCII.
    pub id: Option<String>,
    /// Scheme, host and port clients use to reach the gateway. DPoP `htu`
    /// is checked against this, never against the client's `Host`. Without
    /// it DPoP requests are refused (`dpop_not_configured`).
    pub public_origin: Option<String>,
    /// The addresses the gateway listens on.
    #[serde(default)]
    pub listeners: ListenersSection,
    /// Authentication: Authorities, the token cache, DPoP, the bypass.
    #[serde(default)]
    pub auth: AuthSection,
    /// Folder of route policy files, relative to this file.
    pub policies_dir: Option<String>,
    /// Proxy worker threads (default: one per core).
    pub threads: Option<u64>,
    /// Let idle workers steal tasks from busy ones (default false: each
    /// client connection stays on the worker that accepted it; upstream
    /// connections are pooled for all workers either way).
    pub work_stealing: Option<bool>,
    /// On SIGTERM or SIGINT: stop accepting, let requests in flight finish
    /// for at most this long, then exit (default 10).
    pub shutdown_grace_seconds: Option<u64>,
    /// Reload when the configuration file or a file it references changes
    /// (default true). SIGHUP and `POST /reload` always work.
    pub watch_config: Option<bool>,
    /// How upstream host names are resolved.
    #[serde(default)]
    pub upstreams: UpstreamsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Who may change the gateway through the admin listener. Not printed
    /// when unset, nor is `revocation`: the printed configuration stays as
    /// it was for deployments without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSection>,
    /// Emergency revocation: where the list of revoked identities is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationSection>,
    /// OAuth 2.0 protected resources (RFC 9728): each one's metadata
    /// document is served on the public listeners at
    /// `/.well-known/oauth-protected-resource` followed by the resource's
    /// path, and the 401 challenges of its services' routes name it in
    /// `resource_metadata`. Not printed when unset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_resources: Vec<ProtectedResourceSection>,
}

/// `gateway.protected_resources[]`: one protected resource's metadata
/// (RFC 9728 section 2), served by the gateway (gateway/src/resource_metadata.rs).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedResourceSection {
    /// The resource identifier, an https url without query or fragment,
    /// such as `https://api.example.com/orders` (required): the document's
    /// `resource`, and where its metadata url comes from (RFC 9728 section
    /// 3.1). Unique.
    pub resource: Option<String>,
    /// Services (`services[].name`) whose routes are this resource: their
    /// 401 challenges, Bearer and DPoP, carry
    /// `resource_metadata="<metadata url>"`. A service belongs to one
    /// resource at most. Default: none (the document alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Issuer urls of the Authorities that issue tokens for it. Default:
    /// every configured Authority's issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_servers: Option<Vec<String>>,
    /// Scope values of the resource. Default: every scope the policies of
    /// its services name (`scopes_all`, `scopes_any`); left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// An http(s) url of the resource's documentation for developers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// A human-readable name of the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

/// The admin listener's operator credential (gateway/src/admin/).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// A file of operator bearer tokens, one a line, each optionally after
    /// the operator's name and a space (`alice <token>`); at least 32
    /// characters each. When set, every admin request that changes state
    /// (`POST /reload`, the revocation calls) and `GET /revocations` need
    /// `Authorization: Bearer <token>`. Unset: they need nothing (a warning
    /// at start).
    pub operator_token_file: Option<String>,
}

/// Emergency revocation (docs/design.md §3.3).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSection {
    /// The file the list is kept in, so it survives a restart (written
    /// atomically, mode 0600). Default: `revocations.json` in the
    /// Authority's `state_dir`, when it has one; else the list is kept in
    /// memory only.
    pub state_file: Option<String>,
    /// Where the nodes of a deployment share the list: a Redis URL (the
    /// forms of `gateway.auth.dpop.replay_store`; TLS with the platform
    /// roots), or `none`. Default: the DPoP replay store's Redis, when it
    /// is one (with its TLS files and timeout); else `none`.
    pub store: Option<String>,
    /// The whole shared list is read again this often (default 30), besides
    /// on every change notice and on every reconnection.
    pub store_refresh_seconds: Option<u64>,
    /// What a node does once its copy of the shared list is older than
    /// `stale_after_seconds` (it could not read the store, or lost its
    /// change subscription, for that long): `keep_last_copy` (the default:
    /// it checks requests against the list it has; revocations made
    /// meanwhile on other nodes do not reach it) or `refuse` (every request
    /// that presents a credential gets 503 until the store answers again;
    /// anonymous requests are still served). `refuse` needs a shared store.
    pub when_stale: Option<String>,
    /// How old a node's copy of the shared list may get before it counts
    /// as stale, in seconds (default 60): `stella_gateway_revocation_stale`
    /// turns 1, and with `when_stale: refuse` credentials are refused. The
    /// age counts from the last full read of the store that worked, once
    /// the change subscription is lost or a read fails.
    pub stale_after_seconds: Option<u64>,
    /// An OpenID Shared Signals (SSF 1.0) receiver on the admin listener:
    /// transmitters push Security Event Tokens (RFC 8935) whose CAEP
    /// `session-revoked`, `credential-change` and RISC `account-disabled`
    /// events become entries of the list. Unset: no receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssf: Option<SsfSection>,
}

/// The Shared Signals receiver (docs/design.md §3.3,
/// runbooks/emergency-revocation.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SsfSection {
    /// The path on the admin listener that takes pushed SETs; default
    /// `/ssf/push`. It needs no operator token: each SET is signed by its
    /// transmitter.
    pub path: Option<String>,
    /// How old a SET's `iat` may be, in seconds (default 600); its `jti`
    /// is remembered as long, and a SET seen again is refused.
    pub max_age_seconds: Option<u64>,
    /// The transmitters whose SETs are taken, at least one.
    #[serde(default)]
    pub transmitters: Vec<SsfTransmitterSection>,
}

/// One Shared Signals transmitter.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SsfTransmitterSection {
    /// The transmitter's issuer: the SETs' `iss`, compared byte for byte
    /// (required).
    pub issuer: Option<String>,
    /// Where the transmitter publishes its signing keys (its SSF
    /// metadata's `jwks_uri`); or `jwks_file`.
    pub jwks_uri: Option<String>,
    /// A file holding the transmitter's signing keys as a JWKS, relative
    /// to this file; or `jwks_uri`.
    pub jwks_file: Option<String>,
    /// What the SETs' `aud` must hold: the audience the gateway registered
    /// with the transmitter (required).
    pub audience: Option<String>,
    /// The operator name the audit lines of this transmitter's revocations
    /// carry (letters, digits and `. _ @ -`, at most 64). Default
    /// `ssf@<issuer host>`.
    pub name: Option<String>,
    /// How long an entry made for one of its events lives, in seconds
    /// (default 3600; at least the access tokens' lifetime, so the tokens
    /// issued before the event expire under it).
    pub revoke_for_seconds: Option<u64>,
    /// The issuer of the Authority whose `sub` an `opaque` subject
    /// identifier is. Unset: `opaque` subjects are ignored.
    pub opaque_subjects_of: Option<String>,
    /// The issuer of the Authority whose `sub` an `email` subject
    /// identifier is (an Authority whose subjects are email addresses).
    /// Unset: `email` subjects are ignored.
    pub email_subjects_of: Option<String>,
    /// `jwks_uri` must be https (default true); `false` for local tests.
    pub require_https: Option<bool>,
}

/// What one client connection may hold; new values apply to new
/// connections.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// A request head must be complete within this time, from accept for
    /// a connection's first request, from its first byte for the next ones
    /// (default 10000); else 408 and the connection is closed.
    pub request_head_timeout_ms: Option<u64>,
    /// Idle keep-alive connections are closed after this (default 60).
    pub idle_timeout_seconds: Option<u64>,
    /// Largest request head, request line included (default 65536); 431.
    pub max_request_header_bytes: Option<u64>,
    /// Most header fields in a request (default 100, at most 256:
    /// Pingora's parser refuses more with 400); 431.
    pub max_request_headers: Option<u64>,
    /// Open connections per listener (default 10000); over it, 503.
    pub max_connections: Option<u64>,
    /// A TLS handshake must be complete within this time from accept
    /// (default 10000); else the connection is closed (Pingora's own bound
    /// is 60 s). On an HTTP/2 connection the client's connection preface
    /// must then arrive within the same time after the handshake (Pingora
    /// waits for it without a bound).
    pub tls_handshake_timeout_ms: Option<u64>,
    /// HTTP/2 connections with no request in flight are closed after this
    /// (default 60).
    pub h2_idle_timeout_seconds: Option<u64>,
    /// Requests in flight at once on one HTTP/2 connection (default 100);
    /// a stream over it is refused (`REFUSED_STREAM`).
    pub h2_max_concurrent_streams: Option<u64>,
    /// Largest decoded header list of an HTTP/2 request (default 65536);
    /// over it, 431 and the stream is reset.
    pub h2_max_header_list_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamsSection {
    /// How often upstream host names are resolved again (default 30).
    pub resolve_interval_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenersSection {
    /// Plain HTTP listener address, e.g. `127.0.0.1:8080`. At least one of
    /// `http` and `tls` is required.
    pub http: Option<String>,
    /// The TLS listener, optionally asking for client certificates.
    pub tls: Option<TlsSection>,
    /// Admin listener address: health, readiness, metrics, `/config`,
    /// `POST /reload`. It has no authentication: keep it off the public
    /// network.
    pub admin: Option<String>,
    /// Also answer `GET /.well-known/stella/keys.json` (the public envelope
    /// and transaction-token keys as a JWKS) on the http and tls listeners,
    /// before routing (default false; the admin listener always does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_jwks: Option<bool>,
    /// CIDR blocks (or single addresses, IPv4 and IPv6) of the load
    /// balancers in front of the http listener: only a peer in them has its
    /// `Forwarded`, `X-Forwarded-For` and `X-Forwarded-Proto` believed (the
    /// right-most address that is not a trusted proxy is the client).
    /// Everyone else's are ignored and replaced. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_trusted_proxies: Vec<String>,
    /// Every connection to the http listener starts with a PROXY protocol
    /// header (v1 or v2), whose source address is the client; a connection
    /// without a valid one within `request_head_timeout_ms` is closed.
    /// Default false. Only a load balancer should reach such a listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_proxy_protocol: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The TLS listener's address, e.g. `0.0.0.0:8443` (required).
    pub addr: Option<String>,
    /// PEM certificate chain the listener presents, leaf first (required).
    /// A reload reads it again, so a renewed certificate is a reload.
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file` (required).
    pub key_file: Option<String>,
    /// Client certificates: `none`, `optional` or `required`.
    pub client_certificates: Option<String>,
    /// PEM bundle of CAs client certificates must chain to.
    pub client_ca_file: Option<String>,
    /// Roots per SPIFFE trust domain: an X.509-SVID is verified only
    /// against the roots of its own trust domain (then `client_ca_file`
    /// covers the certificates without a SPIFFE ID).
    #[serde(default)]
    pub spiffe_roots: Vec<SpiffeRootsSection>,
    /// Offer HTTP/2 (ALPN `h2`) besides HTTP/1.1.
    pub http2: Option<bool>,
    /// CIDR blocks (or single addresses) of the load balancers in front of
    /// the TLS listener, as `gateway.listeners.http_trusted_proxies` for
    /// the http one. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Every connection starts with a PROXY protocol header (v1 or v2),
    /// before the TLS ClientHello; see
    /// `gateway.listeners.http_proxy_protocol`. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeRootsSection {
    /// A lowercase SPIFFE trust domain such as `example.org`, listed once.
    pub trust_domain: Option<String>,
    /// PEM bundle of that trust domain's roots (required).
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The Authority (the single-issuer case; `Gateway__Auth__Authority__*`).
    #[serde(default)]
    pub authority: AuthoritySection,
    /// Further Authorities: a token's `iss` selects exactly one of all.
    #[serde(default)]
    pub authorities: Vec<AuthoritySection>,
    /// Verified tokens kept in the token cache; 0 turns the cache off.
    pub token_cache_max_entries: Option<u64>,
    /// DPoP (RFC 9449): proof rules, the replay store, server nonces.
    #[serde(default)]
    pub dpop: DpopSection,
    /// Emergency switch: let tokens whose sender constraint cannot be
    /// proven pass on routes that allow bypass. Off by default; logged loudly.
    pub allow_temporary_bypass: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DpopSection {
    /// Oldest accepted proof `iat`, seconds before now (default 60).
    pub proof_max_age_seconds: Option<u64>,
    /// Newest accepted proof `iat`, seconds after now (default 5).
    pub proof_future_skew_seconds: Option<u64>,
    /// Proof algorithms (default ES256, ES384, EdDSA, PS256).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// `memory` (default, one node) or a Redis URL shared by all nodes:
    /// `redis://`, `rediss://` (TLS), `redis+sentinel://` or
    /// `rediss+sentinel://` (master found through Sentinel).
    pub replay_store: Option<String>,
    /// PEM CA bundle trusted for a `rediss://` replay store (default: the
    /// platform trust store).
    pub replay_store_ca_file: Option<String>,
    /// PEM client certificate chain for a `rediss://` replay store that
    /// asks for one; set it and `replay_store_client_key_file`, or neither.
    pub replay_store_client_cert_file: Option<String>,
    /// PEM private key of `replay_store_client_cert_file`.
    pub replay_store_client_key_file: Option<String>,
    /// A file holding the replay store's Redis password (relative to this
    /// file; a trailing newline is ignored), for a `replay_store` URL
    /// without one: `redis://redis:6379` for `requirepass`, or
    /// `redis://user@redis:6379` for an ACL user. Keeps the password out of
    /// the URL and the environment. A new password needs a restart, as a
    /// new URL does. Not printed when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_store_password_file: Option<String>,
    /// Deadline of one replay store operation, connecting included (default
    /// 500 ms); past it the request gets 503.
    pub replay_store_timeout_ms: Option<u64>,
    /// Live entries the memory store holds before refusing with 503
    /// (default: sized from `gateway.threads` and the proof window, see
    /// `docs/replay-store.md`).
    pub replay_max_entries: Option<u64>,
    /// The share of `replay_max_entries`, in percent, one proof key (`jkt`)
    /// may hold; beyond it that key's requests get 429 (default 10; 100
    /// turns the limit off).
    pub replay_max_share_percent: Option<u64>,
    /// Secret for stateless server nonces, shared by all nodes (32+ bytes);
    /// required when a route or tenant sets `dpop_nonce: true`. Set it or
    /// `nonce_secret_file`, not both.
    pub nonce_secret: Option<String>,
    /// A file holding the nonce secret, relative to this file.
    pub nonce_secret_file: Option<String>,
    /// Lifetime step of a server nonce (default 60 s; one previous step is
    /// still accepted).
    pub nonce_step_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySection {
    /// The issuer, exactly as its tokens' `iss` says (required); discovery
    /// is `<issuer>/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    /// Refuse plain http for the issuer and every endpoint; turn off only
    /// for local development.
    pub require_https_metadata: Option<bool>,
    /// Accepted `aud` values; at least one is required.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted access-token algorithms, from ES256, ES384, EdDSA, PS256 and
    /// RS256.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Clock skew allowed when checking `exp`, `nbf` and `iat`.
    pub leeway_seconds: Option<u64>,
    /// Claims required besides iss, exp, aud, sub (RFC 9068 asks for
    /// `client_id` and `jti`; an issuer that omits them can relax this).
    pub required_claims: Option<Vec<String>>,
    /// Keys are fresh for this long after the last successful JWKS fetch,
    /// then fetched again.
    pub jwks_refresh_seconds: Option<u64>,
    /// At most one JWKS fetch for an unknown `kid` per this long, shared by
    /// every request.
    pub jwks_cooldown_seconds: Option<u64>,
    /// While refreshes fail, keys keep serving this long past their fresh
    /// time; then tokens get 503.
    pub jwks_max_stale_seconds: Option<u64>,
    /// Deadline of one request to the Authority (discovery, JWKS,
    /// introspection, claims).
    pub http_timeout_ms: Option<u64>,
    /// PEM bundle of the CAs the Authority's https certificate must chain
    /// to, for discovery, JWKS, introspection and claims (default: the
    /// platform's roots). Only these are trusted then: for an Authority
    /// whose endpoints are on public certificates too, append the platform
    /// bundle. Relative to this file; a change to it reloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Folder for the last-known-good discovery and JWKS (absent: none).
    pub state_dir: Option<String>,
    /// Tenants bound to this issuer: a token for one of them from any
    /// other issuer is refused.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The gateway's client at this Authority (introspection and claims
    /// requests, `client_secret_basic`); its secret is one of
    /// `client_secret`, `client_secret_file` and `client_secret_env`.
    pub client_id: Option<String>,
    /// The client secret itself (prefer `client_secret_file` or
    /// `client_secret_env`).
    pub client_secret: Option<String>,
    /// A file holding the client secret, relative to this file.
    pub client_secret_file: Option<String>,
    /// The name of an environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Opaque access tokens, checked by token introspection (RFC 7662).
    pub introspection: Option<IntrospectionSection>,
    /// Claims the Authority supplies for a subject and client, merged into
    /// the token's own (effective claims).
    pub claims: Option<ClaimsSection>,
    /// The shape of this Authority's access tokens, by provider: `rfc9068`
    /// (what the gateway expects without it), `keycloak`, `entra`, `auth0`,
    /// `okta` or `cognito` (docs/authorities.md). Not printed when unset, nor
    /// is `token_claims`: the printed configuration stays as it was for
    /// deployments without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_profile: Option<String>,
    /// Where the access tokens carry scopes, roles, tenant and client id,
    /// and what they must carry; each key set here replaces the profile's
    /// (`rfc9068` without a profile). `check` prints the mapping in effect.
    /// Claim paths are dotted member names (`realm_access.roles`); a
    /// segment in double quotes is one member name as written
    /// (`"https://example.com/roles"`); `{client_id}` is the token's client
    /// id as mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_claims: Option<TokenClaimsSection>,
}

/// `token_claims` of an Authority. Claim paths are dotted member names
/// (`realm_access.roles`); a segment in double quotes is one member name as
/// written (`"https://example.com/roles"`); `{client_id}` is the token's
/// client id as mapped.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClaimsSection {
    /// Header `typ` values accepted (case-insensitive, with or without
    /// `application/`).
    pub typ: Option<Vec<String>>,
    /// Refuse a token whose header has no `typ`.
    pub require_typ: Option<bool>,
    /// Claim paths holding scopes, merged in order.
    pub scope: Option<Vec<String>>,
    /// `string` (space-separated) or `array`.
    pub scope_format: Option<String>,
    /// Claim paths holding roles (arrays of strings), merged in order.
    pub roles: Option<Vec<String>>,
    /// Claim paths of the tenant; the first one present counts.
    pub tenant: Option<Vec<String>>,
    /// Claim paths of the client id; the first one present counts, and one
    /// must be.
    pub client_id: Option<Vec<String>>,
    /// Refuse a token without `jti`.
    pub require_jti: Option<bool>,
    /// `false`: a token without `aud` is accepted when its client id is one
    /// of `audiences` (Cognito access tokens carry no `aud`).
    pub require_aud: Option<bool>,
    /// Claims that must hold exactly this string (`token_use: access`).
    pub required_values: Option<Vec<RequiredValueSection>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredValueSection {
    /// A claim path.
    pub claim: Option<String>,
    /// The string the claim must hold.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSection {
    /// The endpoint (default: `introspection_endpoint` from discovery).
    pub endpoint: Option<String>,
    /// Longest time an active result is reused (default 60; never past the
    /// token's `exp`).
    pub cache_seconds: Option<u64>,
    /// How long an `active: false` answer is remembered (default 10).
    pub inactive_cache_seconds: Option<u64>,
    /// How long past its cache time an active result still serves while
    /// the endpoint cannot be reached (default 0).
    pub max_stale_seconds: Option<u64>,
    /// Active results written to the Authority's `state_dir` (when it has
    /// one), so a gateway restarted during an outage still serves them up to
    /// `max_stale_seconds` (default 10000, the most recent first; 0: never
    /// written). Keyed by the token's BLAKE3 hash, never the token.
    pub persist_max_entries: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsSection {
    /// The claims endpoint (POST `sub` and `client_id` as a form).
    pub endpoint: Option<String>,
    /// How long fetched claims are used (default 300; never past the
    /// token's `exp`).
    pub cache_seconds: Option<u64>,
    /// Refresh this long before the cached claims expire, in the
    /// background (default 60).
    pub refresh_ahead_seconds: Option<u64>,
    /// How long past their cache time claims still serve while the
    /// endpoint cannot be reached (default 300); then 503.
    pub max_stale_seconds: Option<u64>,
    /// Claims written to the Authority's `state_dir` (when it has one), so
    /// a gateway restarted during an outage still serves them up to
    /// `max_stale_seconds` (default 10000, the most recent first; 0: never
    /// written).
    pub persist_max_entries: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSection {
    /// What a route without a `policy` block allows: `Deny` (403),
    /// `RequireAuthenticated` (any authenticated caller) or `AllowAnonymous`.
    pub on_missing_authorization: Option<String>,
    /// The envelope signing key itself (prefer the `_file` form or the
    /// `Router__IdentityEnvelopeSigningKey` environment variable).
    pub identity_envelope_signing_key: Option<String>,
    /// A file holding the envelope signing key, relative to this file; set
    /// it or `identity_envelope_signing_key`, not both.
    pub identity_envelope_signing_key_file: Option<String>,
    /// The kid of that one signing key.
    pub identity_envelope_signing_key_id: Option<String>,
    /// How long a signed envelope is valid (`exp` - `iat`).
    pub identity_envelope_lifetime_seconds: Option<u64>,
    /// The envelope keyring: every key the gateway holds, by kid. Rotation
    /// adds a key here, switches `identity_envelope_active_kid`, and later
    /// removes the old key; each step is a reload.
    #[serde(default)]
    pub identity_envelope_keys: Vec<EnvelopeKeySection>,
    /// The kid the gateway signs with (default: the only key, or the key of
    /// `identity_envelope_signing_key`).
    pub identity_envelope_active_kid: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeKeySection {
    /// The key id, unique in the keyring (required).
    pub kid: Option<String>,
    /// The key itself, as `keys generate` prints it (prefer `key_file` or
    /// `key_env`).
    pub key: Option<String>,
    /// A file holding the key, relative to this file.
    pub key_file: Option<String>,
    /// The name of an environment variable holding the key.
    pub key_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The name policies route to: 1 to 64 characters from `a-z 0-9 - _ .`,
    /// unique (required).
    pub name: Option<String>,
    /// `host:port` addresses, used round robin; names are resolved off the
    /// request path (at least one).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Deadline to connect to an upstream address.
    pub connect_timeout_ms: Option<u64>,
    /// Deadline for each read of the upstream's answer.
    pub read_timeout_ms: Option<u64>,
    /// Forward `Authorization` and `DPoP` (for `ServiceEnforced` services
    /// that validate tokens themselves).
    pub forward_credentials: Option<bool>,
    /// The trust mode the service runs in (documentation and OpenAPI).
    pub trust_mode: Option<String>,
    /// Passive health: an address is taken out of rotation after this many
    /// consecutive connect failures (default 2).
    pub eject_after_failures: Option<u64>,
    /// How long an ejected address stays out of rotation before it is
    /// tried again (default 10).
    pub eject_seconds: Option<u64>,
    /// Optional active health check of every address.
    pub health_check: Option<HealthCheckSection>,
    /// The service's own OpenAPI document (a file, relative to this file,
    /// or an http(s) url), merged into `stella-gateway openapi`.
    pub openapi: Option<String>,
    /// The kid of the envelope key (in `router.identity_envelope_keys`)
    /// that signs this service's envelopes and transaction tokens (an
    /// ES256 key: transaction tokens only); default: the active key. With a
    /// key per service, a service holding its HS256 key can mint envelopes
    /// for itself only. Not printed when unset (the printed configuration
    /// stays as it was for deployments without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope_kid: Option<String>,
    /// How the identity is forwarded: `envelope` (default: the six
    /// `X-StellaOps-Identity-Envelope*` headers), `txn-token` (one
    /// `Txn-Token` header, a JWT; needs an EdDSA key) or `both`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_format: Option<String>,
    /// HTTPS to the service, optionally with the gateway's own client
    /// certificate (mutual TLS). Not printed when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServiceTlsSection>,
}

/// `services[].tls`: how the gateway speaks TLS to a service
/// (gateway/src/upstream/tls.rs). Files are relative to this file; a change
/// to any of them reloads, and new connections use the new material.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTlsSection {
    /// Default true: the section turns TLS on; `false` keeps plain HTTP.
    pub enabled: Option<bool>,
    /// PEM bundle of the CAs the service's certificate must chain to
    /// (default: the platform's roots).
    pub ca_file: Option<String>,
    /// The name sent as SNI and that the service's certificate must hold, a
    /// DNS name or an IP address (default: each upstream's host).
    pub server_name: Option<String>,
    /// PEM certificate chain the gateway presents to a service that asks
    /// for one (mutual TLS, such as a SPIFFE mesh); set with `client_key`.
    pub client_certificate: Option<String>,
    /// PEM private key of `client_certificate`. Its content is a secret:
    /// never printed or logged.
    pub client_key: Option<String>,
    /// Offer HTTP/2 in ALPN, then HTTP/1.1 (default false: HTTP/1.1 only).
    pub http2: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Path requested with GET; any 2xx or 3xx is healthy (required).
    pub path: Option<String>,
    /// Time between two checks of one address.
    pub interval_ms: Option<u64>,
    /// Deadline of one check.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// `text` or `json`.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `stella_gateway=debug`.
    pub level: Option<String>,
}

/// OpenTelemetry traces exported over OTLP/HTTP, off by default. The
/// standard `OTEL_*` variables override these when set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracesSection {
    /// Off unless `true`.
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP base url; `/v1/traces` is appended.
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: Option<String>,
    /// An `OTEL_TRACES_SAMPLER` name, such as `parentbased_always_on`.
    pub sampler: Option<String>,
    /// The ratio of the `traceidratio` samplers, 0 to 1.
    pub sampler_arg: Option<f64>,
    /// Finished spans waiting for export; more are dropped.
    pub max_queue_size: Option<u64>,
    /// Deadline of one export to the collector, its retries included.
    pub export_timeout_ms: Option<u64>,
}

/// Keys whose values are secrets: never printed, never logged.
pub const SECRET_KEYS: &[&str] = &[
    "identity_envelope_signing_key",
    "nonce_secret",
    "key",
    "client_secret",
];

/// A configuration with every field filled in. Serialized, it is the shape
/// of the format: the loader refuses any key it does not contain, and
/// environment overrides may only create keys it names.
pub fn schema_sample() -> FileConfig {
    let s = || Some(String::new());
    let mut sample = FileConfig {
        gateway: GatewaySection {
            id: s(),
            public_origin: s(),
            listeners: ListenersSection {
                http: s(),
                tls: Some(TlsSection {
                    addr: s(),
                    cert_file: s(),
                    key_file: s(),
                    client_certificates: s(),
                    client_ca_file: s(),
                    spiffe_roots: vec![SpiffeRootsSection {
                        trust_domain: s(),
                        ca_file: s(),
                    }],
                    http2: Some(true),
                    trusted_proxies: vec![String::new()],
                    proxy_protocol: Some(false),
                }),
                admin: s(),
                public_jwks: Some(false),
                http_trusted_proxies: vec![String::new()],
                http_proxy_protocol: Some(false),
            },
            auth: AuthSection {
                authority: AuthoritySection {
                    issuer: s(),
                    require_https_metadata: Some(true),
                    audiences: vec![String::new()],
                    algorithms: vec![String::new()],
                    leeway_seconds: Some(0),
                    required_claims: Some(vec![String::new()]),
                    jwks_refresh_seconds: Some(0),
                    jwks_cooldown_seconds: Some(0),
                    jwks_max_stale_seconds: Some(0),
                    http_timeout_ms: Some(0),
                    ca_file: s(),
                    state_dir: s(),
                    tenants: vec![String::new()],
                    client_id: s(),
                    client_secret: s(),
                    client_secret_file: s(),
                    client_secret_env: s(),
                    introspection: Some(IntrospectionSection {
                        endpoint: s(),
                        cache_seconds: Some(0),
                        inactive_cache_seconds: Some(0),
                        max_stale_seconds: Some(0),
                        persist_max_entries: Some(0),
                    }),
                    claims: Some(ClaimsSection {
                        endpoint: s(),
                        cache_seconds: Some(0),
                        refresh_ahead_seconds: Some(0),
                        max_stale_seconds: Some(0),
                        persist_max_entries: Some(0),
                    }),
                    token_profile: s(),
                    token_claims: Some(TokenClaimsSection {
                        typ: Some(vec![String::new()]),
                        require_typ: Some(true),
                        scope: Some(vec![String::new()]),
                        scope_format: s(),
                        roles: Some(vec![String::new()]),
                        tenant: Some(vec![String::new()]),
                        client_id: Some(vec![String::new()]),
                        require_jti: Some(true),
                        require_aud: Some(true),
                        required_values: Some(vec![RequiredValueSection {
                            claim: s(),
                            value: s(),
                        }]),
                    }),
                },
                authorities: Vec::new(),
                token_cache_max_entries: Some(0),
                dpop: DpopSection {
                    proof_max_age_seconds: Some(0),
                    proof_future_skew_seconds: Some(0),
                    algorithms: vec![String::new()],
                    replay_store: s(),
                    replay_store_ca_file: s(),
                    replay_store_client_cert_file: s(),
                    replay_store_client_key_file: s(),
                    replay_store_password_file: s(),
                    replay_store_timeout_ms: Some(0),
                    replay_max_entries: Some(0),
                    replay_max_share_percent: Some(0),
                    nonce_secret: s(),
                    nonce_secret_file: s(),
                    nonce_step_seconds: Some(0),
                },
                allow_temporary_bypass: Some(false),
            },
            policies_dir: s(),
            threads: Some(0),
            work_stealing: Some(true),
            shutdown_grace_seconds: Some(0),
            watch_config: Some(true),
            upstreams: UpstreamsSection {
                resolve_interval_seconds: Some(0),
            },
            limits: LimitsSection {
                request_head_timeout_ms: Some(0),
                idle_timeout_seconds: Some(0),
                max_request_header_bytes: Some(0),
                max_request_headers: Some(0),
                max_connections: Some(0),
                tls_handshake_timeout_ms: Some(0),
                h2_idle_timeout_seconds: Some(0),
                h2_max_concurrent_streams: Some(0),
                h2_max_header_list_bytes: Some(0),
            },
            admin: Some(AdminSection {
                operator_token_file: s(),
            }),
            revocation: Some(RevocationSection {
                state_file: s(),
                store: s(),
                store_refresh_seconds: Some(0),
                when_stale: s(),
                stale_after_seconds: Some(0),
                ssf: Some(SsfSection {
                    path: s(),
                    max_age_seconds: Some(0),
                    transmitters: vec![SsfTransmitterSection {
                        issuer: s(),
                        jwks_uri: s(),
                        jwks_file: s(),
                        audience: s(),
                        name: s(),
                        revoke_for_seconds: Some(0),
                        opaque_subjects_of: s(),
                        email_subjects_of: s(),
                        require_https: Some(true),
                    }],
                }),
            }),
            protected_resources: vec![ProtectedResourceSection {
                resource: s(),
                services: vec![String::new()],
                authorization_servers: Some(vec![String::new()]),
                scopes_supported: Some(vec![String::new()]),
                resource_documentation: s(),
                resource_name: s(),
            }],
        },
        router: RouterSection {
            on_missing_authorization: s(),
            identity_envelope_signing_key: s(),
            identity_envelope_signing_key_file: s(),
            identity_envelope_signing_key_id: s(),
            identity_envelope_lifetime_seconds: Some(0),
            identity_envelope_keys: vec![EnvelopeKeySection {
                kid: s(),
                key: s(),
                key_file: s(),
                key_env: s(),
            }],
            identity_envelope_active_kid: s(),
        },
        services: vec![ServiceSection {
            name: s(),
            upstreams: vec![String::new()],
            connect_timeout_ms: Some(0),
            read_timeout_ms: Some(0),
            forward_credentials: Some(true),
            trust_mode: s(),
            eject_after_failures: Some(0),
            eject_seconds: Some(0),
            health_check: Some(HealthCheckSection {
                path: s(),
                interval_ms: Some(0),
                timeout_ms: Some(0),
            }),
            openapi: s(),
            envelope_kid: s(),
            identity_format: s(),
            tls: Some(ServiceTlsSection {
                enabled: Some(true),
                ca_file: s(),
                server_name: s(),
                client_certificate: s(),
                client_key: s(),
                http2: Some(false),
            }),
        }],
        logging: LoggingSection {
            format: s(),
            level: s(),
        },
        traces: TracesSection {
            enabled: Some(false),
            endpoint: s(),
            service_name: s(),
            sampler: s(),
            sampler_arg: Some(0.0),
            max_queue_size: Some(0),
            export_timeout_ms: Some(0),
        },
    };
    sample.gateway.auth.authorities = vec![sample.gateway.auth.authority.clone()];
    sample
}
