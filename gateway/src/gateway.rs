//! The state one gateway process shares across requests: checked
//! configuration, compiled policies, upstream pools, the Authority's keys,
//! the verified-token cache, the envelope signer and the metrics.

use crate::config::resolve::ReplayStoreConfig;
use crate::config::{Config, ConfigError};
use crate::response::Refusal;
use crate::signing::EnvelopeSigner;
use crate::telemetry::Metrics;
use crate::tls::ClientCert;
use crate::upstream::UpstreamPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stella_authn::dpop::{check_proof, DpopRules, ProofInput};
use stella_authn::issuers::{looks_like_jws, Issuers};
use stella_authn::nonce::{NonceCheck, NonceIssuer};
use stella_authn::presented::Presented;
use stella_authn::replay::{Admission, Fresh, MemoryReplayStore, RedisReplayStore, ReplayStore};
use stella_authn::{verify_and_cache, TokenCache, TokenError, TokenKey};
use stella_core::identity::{Binding, Caller, TokenClaims};
use stella_core::{Clock, SystemClock};
use stella_envelope::{AuthMethod, Confirmation, Identity};
use stella_jose::JwsAlg;
use stella_policy::Policies;
use stella_policy::RouteTarget;
use stella_routing::NormalizedPath;
use subtle::ConstantTimeEq;

/// A caller established by [`Snapshot::authenticate`], and the identity an
/// envelope carries for it. The fields are private to this module, so no
/// other code can make one: the policy's `authorize` takes it, and the
/// envelope signer takes what `authorize` returns.
#[derive(Debug)]
pub struct Authenticated {
    caller: Caller,
    identity: Identity,
    /// A DPoP proof not yet recorded in the replay store.
    proof: Option<UnspentProof>,
}

impl Authenticated {
    /// The DPoP proof to record once the policy allows the request
    /// ([`Snapshot::spend_proof`]).
    pub fn take_proof(&mut self) -> Option<UnspentProof> {
        self.proof.take()
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The identity the envelope carries for this caller.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A caller as if authenticated, for tests of the later stages.
    #[cfg(test)]
    pub(crate) fn for_tests(caller: Caller) -> Authenticated {
        let identity = envelope_identity(&caller, None);
        Authenticated {
            caller,
            identity,
            proof: None,
        }
    }
}

impl stella_policy::AuthenticatedCaller for Authenticated {
    fn caller(&self) -> &Caller {
        &self.caller
    }

    fn certificate_spiffe_id(&self) -> Option<&str> {
        self.identity.confirmation.spiffe_id.as_deref()
    }
}

/// The identity the envelope carries for `caller`: its claims, how it
/// authenticated and what its credential is bound to.
fn envelope_identity(caller: &Caller, client_cert: Option<&ClientCert>) -> Identity {
    let mut identity = Identity::anonymous();
    identity.auth_method = caller.auth_method();
    match caller {
        Caller::Anonymous => {}
        Caller::Token { claims, .. } => {
            identity.subject = claims.subject().map(str::to_owned);
            identity.tenant = claims.tenant().map(str::to_owned);
            identity.client_id = claims.client_id().map(str::to_owned);
            identity.scopes = claims.scopes().iter().map(|s| s.to_string()).collect();
            identity.roles = claims.roles().iter().map(|s| s.to_string()).collect();
            identity.confirmation = match claims.binding() {
                Binding::Jkt(jkt) => Confirmation {
                    jkt: Some(jkt.clone()),
                    ..Confirmation::default()
                },
                Binding::X5tS256(x5t) => Confirmation {
                    x5t_s256: Some(x5t.clone()),
                    spiffe_id: client_cert.and_then(|c| c.spiffe.clone().ok().flatten()),
                    ..Confirmation::default()
                },
                Binding::Unbound | Binding::Unenforceable => Confirmation::default(),
            };
        }
        Caller::Spiffe { spiffe_id } => {
            identity.subject = Some(spiffe_id.clone());
            identity.confirmation = Confirmation {
                x5t_s256: client_cert.map(|c| c.thumbprint.clone()),
                spiffe_id: Some(spiffe_id.clone()),
                ..Confirmation::default()
            };
        }
    }
    identity
}

/// State that outlives every configuration: metrics, the clock and the
/// request id generator. Snapshots share it.
pub struct Shared {
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    request_prefix: String,
    request_counter: AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    draining: std::sync::atomic::AtomicBool,
    /// Set once SIGHUP is handled (before that, SIGHUP would end the
    /// process); readiness is announced only after it.
    pub signals_installed: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            metrics: Metrics::new(),
            clock: Arc::new(SystemClock),
            request_prefix: crate::forward::random_hex(4),
            request_counter: AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            signals_installed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A request's context was made (`Ctx` calls [`Shared::leave`] when it
    /// is dropped).
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests whose context exists (received, not yet logged).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Set on SIGTERM/SIGINT: `/readyz` answers 503 from then on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A request id unique to this process: a random prefix per process and
    /// a counter (no system call per request).
    pub fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.request_prefix)
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Everything derived from one configuration, immutable once built. A
/// request holds the snapshot it started with until it ends, so nothing it
/// indexes (a service slot, a route) can move under it; a reload builds a
/// new snapshot and swaps the pointer (see `reload`).
///
/// Long-lived parts are shared with the previous snapshot when their
/// configuration is unchanged, and rebuilt (flushed) only when it changed:
/// the JWKS cache and the verified-token cache (Authority settings), the
/// replay store (its settings) and each service's upstream pool (the
/// service's settings).
pub struct Snapshot {
    pub config: Arc<Config>,
    pub policies: Policies,
    pub upstreams: Vec<Arc<UpstreamPool>>,
    by_name: HashMap<String, usize>,
    pub signer: Arc<EnvelopeSigner>,
    /// Every configured Authority (a token's `iss` selects one).
    pub issuers: Issuers,
    pub tokens: Arc<TokenCache>,
    pub dpop_rules: DpopRules,
    /// The proof algorithms for DPoP challenges, as configured.
    pub dpop_algs: String,
    pub replay: Arc<dyn ReplayStore>,
    /// Server nonces, when a nonce secret is configured.
    pub nonces: Option<NonceIssuer>,
    pub shared: Arc<Shared>,
    /// Short hash of the effective configuration and of every file it
    /// reads, shown on the admin port.
    pub config_version: String,
}

impl Snapshot {
    /// Builds the state from a checked configuration; loads the policies.
    /// No network traffic: the Authority's keys and upstream names are
    /// fetched later. Parts of `previous` whose settings are unchanged are
    /// kept (with their cached contents).
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        shared: Arc<Shared>,
    ) -> Result<Snapshot, Vec<ConfigError>> {
        let names: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
        let policies = match &config.policies_dir {
            Some(dir) => Policies::load_dir(dir, Some(&names))?,
            None => Policies::from_files(&[], Some(&names))?,
        };
        let issuers = Issuers::build(
            &config.authorities,
            previous.map(|p| &p.issuers),
            &shared.clock,
        )?;
        // Cached verdicts hold only while every Authority is the same.
        let tokens = match previous.filter(|p| {
            p.issuers.same_as(&issuers)
                && p.config.token_cache_max_entries == config.token_cache_max_entries
        }) {
            Some(p) => p.tokens.clone(),
            None => Arc::new(TokenCache::new(config.token_cache_max_entries)),
        };
        let upstreams: Vec<Arc<UpstreamPool>> = config
            .services
            .iter()
            .map(|s| {
                previous
                    .and_then(|p| p.upstreams.iter().find(|u| u.service == *s))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(UpstreamPool::new(s)))
            })
            .collect();
        let by_name = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let kept_replay = previous
            .filter(|p| p.config.dpop.replay_store == config.dpop.replay_store)
            .map(|p| p.replay.clone());
        let (dpop_rules, replay, nonces) = dpop_parts(&config, &policies, kept_replay)?;
        let config_version = config_version(&config);
        Ok(Snapshot {
            signer: config.signer.clone(),
            tokens,
            dpop_algs: dpop_rules.algs_challenge(),
            dpop_rules,
            replay,
            nonces,
            config: Arc::new(config),
            policies,
            upstreams,
            by_name,
            issuers,
            shared,
            config_version,
        })
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The caller behind a request's credential, with the identity an
    /// envelope will carry for it. The only way to get an [`Authenticated`].
    pub async fn authenticate(
        &self,
        credential: Presented<'_>,
        request: &RequestFacts<'_>,
    ) -> Result<Authenticated, Refusal> {
        let (caller, proof) = self.caller(credential, request).await?;
        let identity = envelope_identity(&caller, request.client_cert);
        Ok(Authenticated {
            caller,
            identity,
            proof,
        })
    }

    /// The caller behind a request's credential. Bindings are checked every
    /// time, also for tokens found in the cache. A DPoP caller comes with
    /// its [`UnspentProof`]: the proof passed every stateless check, and is
    /// recorded in the replay store only once the route's policy allows the
    /// request ([`Snapshot::spend_proof`]), so refused requests never take
    /// replay entries.
    async fn caller(
        &self,
        credential: Presented<'_>,
        request: &RequestFacts<'_>,
    ) -> Result<(Caller, Option<UnspentProof>), Refusal> {
        match credential {
            Presented::None => Ok((
                match request.client_cert.map(|c| &c.spiffe) {
                    Some(Ok(Some(id))) => Caller::Spiffe {
                        spiffe_id: id.clone(),
                    },
                    _ => Caller::Anonymous,
                },
                None,
            )),
            Presented::Bearer(token) => {
                let claims = self.verify_token(token).await?;
                let method = match claims.binding() {
                    Binding::Unbound => AuthMethod::Bearer,
                    // DESIGN.md 3.3: a DPoP-bound token presented as Bearer.
                    Binding::Jkt(_) => self.unproven(Refusal::InvalidToken {
                        code: "dpop_bound_token_as_bearer",
                    })?,
                    Binding::X5tS256(expected) => {
                        let mismatch = match request.client_cert {
                            Some(cert)
                                if bool::from(
                                    cert.thumbprint.as_bytes().ct_eq(expected.as_bytes()),
                                ) =>
                            {
                                None
                            }
                            Some(_) => Some("thumbprint-mismatch"),
                            None if request.tls => Some("missing-certificate"),
                            None => Some("context-missing"),
                        };
                        match mismatch {
                            None => AuthMethod::Mtls,
                            Some(reason) => {
                                self.shared
                                    .metrics
                                    .mtls_mismatch
                                    .with_label_values(&[reason])
                                    .inc();
                                self.unproven(Refusal::InvalidToken {
                                    code: match reason {
                                        "thumbprint-mismatch" => "certificate_mismatch",
                                        _ => "certificate_missing",
                                    },
                                })?
                            }
                        }
                    }
                    Binding::Unenforceable => {
                        return Err(Refusal::InvalidToken {
                            code: "unenforceable_cnf",
                        })
                    }
                };
                Ok((Caller::Token { claims, method }, None))
            }
            Presented::BearerWithDpopHeader(token) => {
                let claims = self.verify_token(token).await?;
                Err(match claims.binding() {
                    Binding::Jkt(_) => Refusal::InvalidToken {
                        code: "dpop_bound_token_as_bearer",
                    },
                    _ => Refusal::MultipleCredentials,
                })
            }
            Presented::Dpop { token, proof } => {
                self.shared.metrics.dpop_requests.inc();
                let (claims, token_key) = self.verify_token_keyed(token).await?;
                let Some(origin) = &self.config.public_origin else {
                    return Err(Refusal::InvalidDpopProof {
                        code: "dpop_not_configured",
                    });
                };
                // htu is checked against the configured origin, never the
                // client's Host or forwarding headers.
                let target = match request.query {
                    Some(q) => format!("{origin}{}?{q}", request.path.as_str()),
                    None => format!("{origin}{}", request.path.as_str()),
                };
                let nonce: Option<&dyn NonceCheck> =
                    if request.route.requires_dpop_nonce(claims.tenant()) {
                        // `dpop_parts` refuses a configuration that requires
                        // nonces without a secret.
                        self.nonces.as_ref().map(|n| n as &dyn NonceCheck)
                    } else {
                        None
                    };
                let now = self.shared.clock.now();
                let input = ProofInput {
                    method: request.method,
                    target_uri: &target,
                    proof,
                    access_token: token,
                    access_token_hash: Some(token_key.as_bytes()),
                    binding: claims.binding(),
                    nonce,
                };
                let checked = match check_proof(&input, &self.dpop_rules, now) {
                    Ok(checked) => checked,
                    Err(e) => {
                        self.shared
                            .metrics
                            .dpop_proof_rejected
                            .with_label_values(&[e.code()])
                            .inc();
                        if let (true, Some(issuer)) = (e.wants_nonce(), &self.nonces) {
                            self.shared.metrics.dpop_nonce_miss.inc();
                            return Err(Refusal::UseDpopNonce {
                                nonce: issuer.issue(now),
                            });
                        }
                        return Err(Refusal::from(&e));
                    }
                };
                let Binding::Jkt(jkt) = claims.binding() else {
                    // check_proof accepts only jkt-bound tokens.
                    return Err(Refusal::InvalidToken {
                        code: "unenforceable_cnf",
                    });
                };
                let unspent = UnspentProof {
                    key: checked.replay_key(),
                    owner: jkt.clone(),
                };
                Ok((
                    Caller::Token {
                        claims,
                        method: AuthMethod::Dpop,
                    },
                    Some(unspent),
                ))
            }
        }
    }

    /// Records a DPoP proof as used. Called once the policy allowed the
    /// request: a proof seen before is refused as a replay, a proof key
    /// holding its share of the store gets 429, a store that cannot answer
    /// 503.
    pub async fn spend_proof(&self, proof: UnspentProof) -> Result<(), Refusal> {
        let started = std::time::Instant::now();
        let fresh = self
            .replay
            .insert_once_for(proof.key, &proof.owner, self.dpop_rules.replay_ttl())
            .await;
        self.shared
            .metrics
            .replay_store_seconds
            .observe(started.elapsed().as_secs_f64());
        match fresh {
            Ok(Admission::Checked(Fresh::Inserted)) => Ok(()),
            Ok(Admission::Checked(Fresh::Replayed)) => {
                self.shared
                    .metrics
                    .dpop_proof_rejected
                    .with_label_values(&["replayed"])
                    .inc();
                Err(Refusal::InvalidDpopProof { code: "replayed" })
            }
            Ok(Admission::ShareExceeded) => {
                self.shared.metrics.replay_share_refusals.inc();
                Err(Refusal::ReplayShareExceeded)
            }
            Err(e) => {
                self.shared.metrics.replay_store_errors.inc();
                tracing::warn!(error = %e, "dpop replay store unavailable; refusing with 503");
                Err(Refusal::ReplayStoreUnavailable)
            }
        }
    }

    /// A fresh server nonce for a successful DPoP response on a route that
    /// requires nonces.
    pub fn fresh_nonce(&self) -> Option<String> {
        self.nonces
            .as_ref()
            .map(|n| n.issue(self.shared.clock.now()))
    }

    async fn verify_token(&self, token: &str) -> Result<Arc<TokenClaims>, Refusal> {
        Ok(self.verify_token_keyed(token).await?.0)
    }

    /// [`Snapshot::verify_token`], with the token's SHA-256.
    ///
    /// A JWS is verified with the keys of the Authority its `iss` names
    /// (verdicts cached by the token's hash), an opaque token by the
    /// introspecting Authority; then the Authority's claims are merged in
    /// (effective claims) and the tenant's issuer binding is checked.
    async fn verify_token_keyed(
        &self,
        token: &str,
    ) -> Result<(Arc<TokenClaims>, TokenKey), Refusal> {
        self.effective_claims(token).await.map_err(token_refusal)
    }

    async fn effective_claims(
        &self,
        token: &str,
    ) -> Result<(Arc<TokenClaims>, TokenKey), TokenError> {
        let first = self.issuers.first();
        let max_len = first.rules.max_token_len();
        if token.len() > max_len {
            return Err(TokenError::Jose(stella_jose::JoseError::TooLong {
                max: max_len,
            }));
        }
        let now = self.shared.clock.now();
        let key = TokenKey::of(token);
        let cached = self.tokens.get(&key, now);
        crate::otel::note(|| {
            opentelemetry::KeyValue::new(
                "stella.auth.cache",
                if cached.is_some() { "hit" } else { "miss" },
            )
        });
        let (claims, issuer) = match cached {
            Some(claims) => {
                let issuer = match self.issuers.list() {
                    [only] => only,
                    _ => self
                        .issuers
                        .by_issuer(claims.issuer())
                        .ok_or(TokenError::UnknownIssuer)?,
                };
                (claims, issuer)
            }
            None => match self.issuers.for_opaque() {
                Some(issuer) if !looks_like_jws(token) => {
                    let introspection =
                        issuer
                            .introspection
                            .as_ref()
                            .ok_or(TokenError::Unavailable {
                                what: "introspection",
                            })?;
                    (introspection.check(token, &key).await?, issuer)
                }
                _ => {
                    let issuer = self.issuers.for_jws(token)?;
                    let claims = verify_and_cache(
                        token,
                        key,
                        &issuer.rules,
                        &issuer.jwks,
                        &self.tokens,
                        now,
                    )
                    .await?;
                    (claims, issuer)
                }
            },
        };
        let claims = match &issuer.claims {
            Some(source) => source.effective(claims).await?,
            None => claims,
        };
        self.issuers.check_tenant(&claims)?;
        Ok((claims, key))
    }

    /// A bound token whose constraint was not proven: refused, unless the
    /// emergency bypass is on (the policy then admits it only where a route
    /// or tenant allows bypass).
    fn unproven(&self, refusal: Refusal) -> Result<AuthMethod, Refusal> {
        if self.config.allow_temporary_bypass {
            Ok(AuthMethod::Bypass)
        } else {
            Err(refusal)
        }
    }
}

/// The version of a configuration: a short SHA-256 over the effective
/// settings (secrets redacted), the secrets' own digest, and the contents of
/// every file it reads (policies, keys, TLS material). Any change that can
/// change behaviour changes it; anything else (comments, order of keys in
/// the file) does not.
pub fn config_version(config: &Config) -> String {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    d.update(crate::config::redacted_yaml(&config.effective).as_bytes());
    d.update(&config.secret_digest);
    let mut files: Vec<std::path::PathBuf> = config.sources.clone();
    if let Some(dir) = &config.policies_dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    for file in files {
        d.update(file.to_string_lossy().as_bytes());
        d.update(&[0]);
        match std::fs::read(&file) {
            Ok(bytes) => d.update(&bytes),
            Err(_) => d.update(b"<unreadable>"),
        }
        d.update(&[0]);
    }
    d.finish().as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A DPoP proof that passed every stateless check but is not yet recorded
/// in the replay store; [`Snapshot::spend_proof`] records it.
#[must_use = "a checked proof must be spent before the request is forwarded"]
pub struct UnspentProof {
    key: [u8; 32],
    /// The proof key's thumbprint: whose share of the store it takes.
    owner: String,
}

impl std::fmt::Debug for UnspentProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnspentProof")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What the authentication stage needs to know about the request besides
/// its credential.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a NormalizedPath,
    pub query: Option<&'a str>,
    /// The request arrived over TLS.
    pub tls: bool,
    pub client_cert: Option<&'a ClientCert>,
    pub route: &'a RouteTarget,
}

/// What DPoP checking needs: proof rules, the replay store, the nonce issuer.
type DpopParts = (DpopRules, Arc<dyn ReplayStore>, Option<NonceIssuer>);

/// DPoP proof rules, the replay store and the nonce issuer from the
/// configuration; refuses policies that need nonces without a secret.
fn dpop_parts(
    config: &Config,
    policies: &Policies,
    kept_replay: Option<Arc<dyn ReplayStore>>,
) -> Result<DpopParts, Vec<ConfigError>> {
    let d = &config.dpop;
    let mut errors = Vec::new();
    let algs: Vec<JwsAlg> = d
        .algorithms
        .iter()
        .filter_map(|a| JwsAlg::from_header(a).ok())
        .collect();
    let rules = DpopRules::new(&algs, d.proof_max_age, d.proof_future_skew)
        .map_err(|e| errors.push(ConfigError::new("gateway.auth.dpop", e.to_string())))
        .ok();
    let replay: Option<Arc<dyn ReplayStore>> = match &d.replay_store {
        _ if kept_replay.is_some() => kept_replay,
        ReplayStoreConfig::Memory {
            max_entries,
            max_share_percent,
        } => Some(Arc::new(
            MemoryReplayStore::new(usize::try_from(*max_entries).unwrap_or(usize::MAX))
                .with_max_share_percent(*max_share_percent),
        )),
        ReplayStoreConfig::Redis { url, tls, timeout } => {
            match RedisReplayStore::with_tls(url.as_str(), tls) {
                Ok(store) => Some(Arc::new(store.with_timeout(*timeout))),
                Err(e) => {
                    errors.push(ConfigError::new(
                        "gateway.auth.dpop.replay_store",
                        e.to_string(),
                    ));
                    None
                }
            }
        }
    };
    let nonces = match &d.nonce_secret {
        Some(secret) => NonceIssuer::new(secret, d.nonce_step)
            .map_err(|e| {
                errors.push(ConfigError::new(
                    "gateway.auth.dpop.nonce_secret",
                    e.to_string(),
                ))
            })
            .ok(),
        None => None,
    };
    let wants_nonces = policies.routes().iter().any(|route| {
        let target = route.value();
        target.requires_dpop_nonce(None)
            || target
                .tenant_rules
                .iter()
                .any(|(_, rules)| rules.iter().any(|r| r.dpop_nonce))
    });
    if wants_nonces && d.nonce_secret.is_none() {
        errors.push(ConfigError::new(
            "gateway.auth.dpop.nonce_secret",
            "is required: a policy sets dpop_nonce (set nonce_secret or nonce_secret_file, the same on every node)",
        ));
    }
    match (rules, replay, errors.is_empty()) {
        (Some(rules), Some(replay), true) => Ok((rules, replay, nonces)),
        _ => Err(errors),
    }
}

fn token_refusal(e: TokenError) -> Refusal {
    if e.is_unavailable() {
        Refusal::AuthorityUnavailable
    } else {
        Refusal::InvalidToken { code: e.code() }
    }
}

/// The running gateway: the current snapshot behind an atomic pointer, and
/// what outlives every snapshot. Requests take the current snapshot once
/// ([`Gateway::current`]) and keep it; `reload` swaps it.
pub struct Gateway {
    pub shared: Arc<Shared>,
    current: arc_swap::ArcSwap<Snapshot>,
    /// The configuration file `run` was started with; reloads read it again.
    pub config_path: std::path::PathBuf,
    /// The TLS listener's live material, when there is a TLS listener.
    pub tls: Option<Arc<crate::tls::LiveTls>>,
    pub(crate) reload: crate::reload::ReloadState,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        config_path: std::path::PathBuf,
        tls: Option<Arc<crate::tls::LiveTls>>,
    ) -> Gateway {
        Gateway {
            shared: snapshot.shared.clone(),
            reload: crate::reload::ReloadState::new(&snapshot),
            current: arc_swap::ArcSwap::from_pointee(snapshot),
            config_path,
            tls,
        }
    }

    /// The snapshot a new request runs with.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub(crate) fn swap(&self, snapshot: Arc<Snapshot>) {
        self.current.store(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(extra_audience: &str, upstream: &str) -> Config {
        let text = format!(
            "gateway:\n  listeners: {{http: \"127.0.0.1:8080\"}}\n  auth:\n    authority:\n      \
             issuer: https://authority.example\n      audiences: [api{extra_audience}]\n\
             router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n\
             services:\n  - {{name: orders, upstreams: [\"{upstream}\"]}}\n  - {{name: billing, upstreams: [\"127.0.0.1:9\"]}}\n"
        );
        let (file, errors) = crate::config::parse(&text, "test.yaml", &HashMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        crate::config::resolve::resolve(&file.unwrap(), std::path::Path::new("."), &HashMap::new())
            .unwrap()
    }

    #[test]
    fn a_reload_keeps_caches_and_pools_whose_settings_did_not_change() {
        let shared = Arc::new(Shared::new());
        let first = Snapshot::build(config("", "127.0.0.1:1"), None, shared.clone()).unwrap();
        // Same Authority, one service's upstreams changed.
        let second =
            Snapshot::build(config("", "127.0.0.1:2"), Some(&first), shared.clone()).unwrap();
        assert!(
            Arc::ptr_eq(&first.issuers.first().jwks, &second.issuers.first().jwks),
            "jwks cache flushed"
        );
        assert!(
            Arc::ptr_eq(&first.tokens, &second.tokens),
            "token cache flushed"
        );
        assert!(
            Arc::ptr_eq(&first.replay, &second.replay),
            "replay store replaced"
        );
        assert!(
            !Arc::ptr_eq(&first.upstreams[0], &second.upstreams[0]),
            "changed pool kept"
        );
        assert!(
            Arc::ptr_eq(&first.upstreams[1], &second.upstreams[1]),
            "unchanged pool rebuilt"
        );
        assert_ne!(first.config_version, second.config_version);

        // Other token rules: verdicts cached under the old rules go.
        let third =
            Snapshot::build(config(", other", "127.0.0.1:2"), Some(&second), shared).unwrap();
        assert!(
            !Arc::ptr_eq(&second.tokens, &third.tokens),
            "token cache kept across new rules"
        );
        assert!(!Arc::ptr_eq(
            &second.issuers.first().jwks,
            &third.issuers.first().jwks
        ));
        assert!(Arc::ptr_eq(&second.upstreams[0], &third.upstreams[0]));
    }

    #[test]
    fn the_same_configuration_has_the_same_version() {
        assert_eq!(
            config_version(&config("", "127.0.0.1:1")),
            config_version(&config("", "127.0.0.1:1"))
        );
        assert_ne!(
            config_version(&config("", "127.0.0.1:1")),
            config_version(&config("", "127.0.0.1:3"))
        );
    }
}
