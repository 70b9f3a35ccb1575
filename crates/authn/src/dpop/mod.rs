//! DPoP proofs at a resource (RFC 9449 sections 4.3, 7.1; docs/design.md §3.3).
//!
//! [`check_proof`] is pure: it takes the request facts, the rules and `now`
//! and returns a [`CheckedProof`] or a typed [`DpopError`]. It does no I/O,
//! so the one stateful step, "has this `(jkt, jti)` been seen", is left to
//! the caller, who hands [`CheckedProof::replay_key`] to a
//! [`super::replay::ReplayStore`] with [`DpopRules::replay_ttl`].
//!
//! The request target is the caller's: the gateway's configured public
//! origin plus the normalized path (and query), never a client's `Host` or
//! `X-Forwarded-*`. Responses: [`DpopError::is_binding_mismatch`] errors are
//! 401 `invalid_token`, [`DpopError::wants_nonce`] errors are 401
//! `use_dpop_nonce` with a fresh nonce, everything else 401
//! `invalid_dpop_proof` (the gateway maps [`DpopError`] to its response in one place).

mod htu;

#[cfg(test)]
mod tests;

use super::nonce::{NonceCheck, NonceError};
use ring::digest::{digest, Context, SHA256};
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use stella_core::identity::Binding;
use stella_envelope::encoding::b64url_decode;
use stella_jose::{
    thumbprint_matches, typ_matches, CompactJws, JoseError, JsonObject, JwsAlg, PublicJwk,
    VerifyingKey,
};
use subtle::ConstantTimeEq;

/// Default cap on a proof's length in bytes: room for a PS256 proof with an
/// 8192-bit key (about 3 KiB), far above the ~600 bytes of an ES256 one.
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest `jti` accepted, in bytes (docs/design.md §3.3).
pub const MAX_JTI_LEN: usize = 256;

/// Proof algorithms accepted by default (docs/design.md §3.3).
pub const DEFAULT_PROOF_ALGS: [JwsAlg; 4] =
    [JwsAlg::Es256, JwsAlg::Es384, JwsAlg::EdDsa, JwsAlg::Ps256];

/// Default proof age window and future skew (docs/design.md §3.3).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(5);

/// Bounds on the configurable times: a window longer than this makes the
/// replay store hold entries for too long to be useful.
const MAX_MAX_AGE_SECS: u64 = 3600;
const MAX_FUTURE_SKEW_SECS: u64 = 300;

/// The media type of DPoP proofs.
const DPOP_JWT: &str = "dpop+jwt";

/// What a proof must satisfy, from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopRules {
    algs: Vec<JwsAlg>,
    max_age: u64,
    max_future_skew: u64,
    max_proof_len: usize,
}

/// Why proof rules could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopRulesError {
    #[error("the dpop proof algorithm list is empty")]
    NoAlgs,
    #[error("dpop proof max age must be between 1 and {MAX_MAX_AGE_SECS} seconds")]
    MaxAge,
    #[error("dpop proof future skew must be at most {MAX_FUTURE_SKEW_SECS} seconds")]
    FutureSkew,
    #[error("dpop proof length cap must be between 256 and 65536 bytes")]
    MaxProofLen,
}

impl Default for DpopRules {
    fn default() -> Self {
        DpopRules {
            algs: DEFAULT_PROOF_ALGS.to_vec(),
            max_age: DEFAULT_MAX_AGE.as_secs(),
            max_future_skew: DEFAULT_MAX_FUTURE_SKEW.as_secs(),
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
        }
    }
}

impl DpopRules {
    /// Rules with the given algorithm allowlist (a subset of the algorithms
    /// the JOSE layer knows, which never include `none` or a symmetric one),
    /// proof age window and future skew, in whole seconds.
    pub fn new(
        algs: &[JwsAlg],
        max_age: Duration,
        max_future_skew: Duration,
    ) -> Result<DpopRules, DpopRulesError> {
        if algs.is_empty() {
            return Err(DpopRulesError::NoAlgs);
        }
        let max_age = max_age.as_secs();
        if !(1..=MAX_MAX_AGE_SECS).contains(&max_age) {
            return Err(DpopRulesError::MaxAge);
        }
        let max_future_skew = max_future_skew.as_secs();
        if max_future_skew > MAX_FUTURE_SKEW_SECS {
            return Err(DpopRulesError::FutureSkew);
        }
        let mut list: Vec<JwsAlg> = Vec::with_capacity(algs.len());
        for alg in algs {
            if !list.contains(alg) {
                list.push(*alg);
            }
        }
        Ok(DpopRules {
            algs: list,
            max_age,
            max_future_skew,
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
        })
    }

    /// Changes the proof length cap.
    pub fn with_max_proof_len(mut self, max: usize) -> Result<DpopRules, DpopRulesError> {
        if !(256..=65536).contains(&max) {
            return Err(DpopRulesError::MaxProofLen);
        }
        self.max_proof_len = max;
        Ok(self)
    }

    /// The accepted proof algorithms.
    pub fn algs(&self) -> &[JwsAlg] {
        &self.algs
    }

    /// The `algs` parameter of a DPoP challenge: space-separated names.
    pub fn algs_challenge(&self) -> String {
        let names: Vec<&str> = self.algs.iter().map(|a| a.as_str()).collect();
        names.join(" ")
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age)
    }

    pub fn max_future_skew(&self) -> Duration {
        Duration::from_secs(self.max_future_skew)
    }

    pub fn max_proof_len(&self) -> usize {
        self.max_proof_len
    }

    /// How long a replay entry must live: a proof is acceptable from
    /// `iat - skew` until `iat + max_age`, so at most `max_age + skew`
    /// after it is first seen; one second more covers whole-second clocks.
    pub fn replay_ttl(&self) -> Duration {
        Duration::from_secs(
            self.max_age
                .saturating_add(self.max_future_skew)
                .saturating_add(1),
        )
    }
}

/// The facts of one request that a proof is checked against.
#[derive(Clone, Copy)]
pub struct ProofInput<'a> {
    /// The request method, exactly as received (methods are case-sensitive).
    pub method: &'a str,
    /// The gateway's public origin plus the normalized path (and query):
    /// `https://api.example.com/orders/7?x=1`. Never built from the
    /// client's `Host` or forwarding headers.
    pub target_uri: &'a str,
    /// The `DPoP` header value.
    pub proof: &'a str,
    /// The access token exactly as sent after `DPoP `.
    pub access_token: &'a str,
    /// SHA-256 of `access_token` when the caller has it already (the token
    /// cache key); computed here otherwise. Must be the hash of exactly
    /// `access_token`.
    pub access_token_hash: Option<&'a [u8; 32]>,
    /// The token's binding, from its verified claims.
    pub binding: &'a Binding,
    /// When the route wants server nonces: the check for the proof's
    /// `nonce` claim.
    pub nonce: Option<&'a dyn NonceCheck>,
}

impl fmt::Debug for ProofInput<'_> {
    // Neither the token nor the proof is printed: both are credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofInput")
            .field("method", &self.method)
            .field("target_uri", &self.target_uri)
            .field("binding", &self.binding)
            .field("nonce", &self.nonce.is_some())
            .finish_non_exhaustive()
    }
}

/// A proof that passed every stateless check. Only [`check_proof`] builds
/// one; the caller still has to insert [`Self::replay_key`] once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedProof {
    jkt: String,
    jti: String,
    iat: u64,
    replay_key: [u8; 32],
}

impl CheckedProof {
    /// The proof key's RFC 7638 thumbprint (equal to the token's `cnf.jkt`).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The proof's `jti` as received (at most [`MAX_JTI_LEN`] bytes).
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `iat`.
    pub fn iat(&self) -> u64 {
        self.iat
    }

    /// SHA-256 over `jkt || 0x00 || jti`: the replay store key. Scoped by
    /// key so two clients cannot collide on a `jti`, and independent of the
    /// proof's bytes so a re-signed or re-encoded proof is still a replay.
    pub fn replay_key(&self) -> [u8; 32] {
        self.replay_key
    }
}

/// A proof claim, for error reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProofClaim {
    Jti,
    Htm,
    Htu,
    Iat,
    Ath,
    Nonce,
}

impl ProofClaim {
    pub fn name(self) -> &'static str {
        match self {
            ProofClaim::Jti => "jti",
            ProofClaim::Htm => "htm",
            ProofClaim::Htu => "htu",
            ProofClaim::Iat => "iat",
            ProofClaim::Ath => "ath",
            ProofClaim::Nonce => "nonce",
        }
    }
}

impl fmt::Display for ProofClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a proof, or the token's binding to it, was refused. Messages name
/// fixed facts only, never a value from the proof or token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the access token is not bound to a dpop key")]
    TokenNotDpopBound,
    #[error("dpop proof is longer than the {max} byte limit")]
    ProofTooLong { max: usize },
    #[error("dpop proof is not a well-formed compact jws: {0}")]
    MalformedProof(JoseError),
    #[error("dpop proof typ is missing or not dpop+jwt")]
    TypMismatch,
    #[error("dpop proof alg is not in the configured proof algorithms")]
    AlgNotAllowed,
    #[error("dpop proof header references external key material (jku, x5u or x5c)")]
    ExternalKeyReference,
    #[error("dpop proof header has no jwk")]
    JwkMissing,
    #[error("dpop proof jwk is not a usable public key: {0}")]
    BadJwk(JoseError),
    #[error("dpop proof signature is not valid: {0}")]
    BadSignature(JoseError),
    #[error("dpop proof claim `{0}` is missing")]
    MissingClaim(ProofClaim),
    #[error("dpop proof claim `{0}` has the wrong json type")]
    ClaimType(ProofClaim),
    #[error("dpop proof jti is empty")]
    JtiEmpty,
    #[error("dpop proof jti is longer than {max} bytes")]
    JtiTooLong { max: usize },
    #[error("dpop proof htm does not match the request method")]
    HtmMismatch,
    #[error("dpop proof htu does not match the request target")]
    HtuMismatch,
    #[error("the request target the gateway built is not an http(s) uri")]
    TargetInvalid,
    #[error("dpop proof iat is more than {max_age} seconds old")]
    IatTooOld { max_age: u64 },
    #[error("dpop proof iat is more than {skew} seconds in the future")]
    IatInFuture { skew: u64 },
    #[error("dpop proof ath does not match the access token")]
    AthMismatch,
    #[error("dpop proof has no nonce and the route requires one")]
    NonceMissing,
    #[error("dpop proof nonce is not valid: {0}")]
    NonceInvalid(NonceError),
    #[error("dpop proof key thumbprint does not match the token's cnf.jkt")]
    JktMismatch,
}

impl DpopError {
    /// Every value [`Self::code`] can return, for registering metric labels
    /// (`stella_gateway_dpop_proof_rejected_total{reason}`) up front.
    pub const CODES: [&'static str; 26] = [
        "token_not_dpop_bound",
        "proof_too_long",
        "malformed_proof",
        "bad_typ",
        "alg_not_allowed",
        "external_key_reference",
        "jwk_missing",
        "bad_jwk",
        "bad_signature",
        "missing_jti",
        "missing_htm",
        "missing_htu",
        "missing_iat",
        "missing_ath",
        "claim_wrong_type",
        "jti_empty",
        "jti_too_long",
        "htm_mismatch",
        "htu_mismatch",
        "bad_target",
        "iat_too_old",
        "iat_in_future",
        "ath_mismatch",
        "nonce_missing",
        "nonce_invalid",
        "jkt_mismatch",
    ];

    /// A stable label for metrics and decision logs; one of [`Self::CODES`].
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::TokenNotDpopBound => "token_not_dpop_bound",
            DpopError::ProofTooLong { .. } => "proof_too_long",
            DpopError::MalformedProof(_) => "malformed_proof",
            DpopError::TypMismatch => "bad_typ",
            DpopError::AlgNotAllowed => "alg_not_allowed",
            DpopError::ExternalKeyReference => "external_key_reference",
            DpopError::JwkMissing => "jwk_missing",
            DpopError::BadJwk(_) => "bad_jwk",
            DpopError::BadSignature(_) => "bad_signature",
            DpopError::MissingClaim(claim) => match claim {
                ProofClaim::Jti => "missing_jti",
                ProofClaim::Htm => "missing_htm",
                ProofClaim::Htu => "missing_htu",
                ProofClaim::Iat => "missing_iat",
                ProofClaim::Ath => "missing_ath",
                // Not produced (a missing nonce is `NonceMissing`); mapped
                // to the same label so the set stays closed.
                ProofClaim::Nonce => "nonce_missing",
            },
            DpopError::ClaimType(_) => "claim_wrong_type",
            DpopError::JtiEmpty => "jti_empty",
            DpopError::JtiTooLong { .. } => "jti_too_long",
            DpopError::HtmMismatch => "htm_mismatch",
            DpopError::HtuMismatch => "htu_mismatch",
            DpopError::TargetInvalid => "bad_target",
            DpopError::IatTooOld { .. } => "iat_too_old",
            DpopError::IatInFuture { .. } => "iat_in_future",
            DpopError::AthMismatch => "ath_mismatch",
            DpopError::NonceMissing => "nonce_missing",
            DpopError::NonceInvalid(_) => "nonce_invalid",
            DpopError::JktMismatch => "jkt_mismatch",
        }
    }

    /// The token, not the proof, is at fault: 401 `invalid_token`
    /// (docs/design.md §3.3: a `cnf.jkt` mismatch, or a token that is not
    /// DPoP-bound presented with the DPoP scheme).
    pub fn is_binding_mismatch(&self) -> bool {
        matches!(self, DpopError::JktMismatch | DpopError::TokenNotDpopBound)
    }

    /// The proof lacks a valid server nonce: RFC 9449 section 8 answers 401
    /// with `error="use_dpop_nonce"` and a fresh `DPoP-Nonce` header.
    pub fn wants_nonce(&self) -> bool {
        matches!(self, DpopError::NonceMissing | DpopError::NonceInvalid(_))
    }
}

/// Checks a DPoP proof presented with a DPoP-bound access token at a
/// resource: RFC 9449 section 4.3 (all items; item 11's replay check is the
/// caller's, with [`CheckedProof::replay_key`]) and section 7.1 (`ath`,
/// `cnf.jkt`), under docs/design.md §3.3's rules.
pub fn check_proof(
    input: &ProofInput<'_>,
    rules: &DpopRules,
    now: u64,
) -> Result<CheckedProof, DpopError> {
    // An unbound (or mTLS-bound, or unenforceable) token with the DPoP
    // scheme is refused before any work on the proof.
    let Binding::Jkt(expected_jkt) = input.binding else {
        return Err(DpopError::TokenNotDpopBound);
    };

    let jws = CompactJws::parse(input.proof, rules.max_proof_len).map_err(|e| match e {
        JoseError::TooLong { max } => DpopError::ProofTooLong { max },
        JoseError::UnsupportedAlg => DpopError::AlgNotAllowed,
        other => DpopError::MalformedProof(other),
    })?;
    let header = jws.header();
    if !header.typ().is_some_and(|t| typ_matches(t, DPOP_JWT)) {
        return Err(DpopError::TypMismatch);
    }
    let alg = header.alg();
    if !rules.algs.contains(&alg) {
        return Err(DpopError::AlgNotAllowed);
    }
    // The key is the embedded `jwk` and nothing else: not a URL, not a
    // certificate chain, not a `kid` naming some key elsewhere.
    if header.references_external_key() {
        return Err(DpopError::ExternalKeyReference);
    }
    let jwk = header.jwk().ok_or(DpopError::JwkMissing)?;
    let jwk = PublicJwk::from_json(jwk).map_err(DpopError::BadJwk)?;
    jwk.check_alg(alg).map_err(DpopError::BadJwk)?;
    jws.verify(&VerifyingKey::new(&jwk))
        .map_err(DpopError::BadSignature)?;

    let claims: JsonObject = serde_json::from_slice(jws.payload()).map_err(|_| {
        DpopError::MalformedProof(JoseError::Json {
            part: stella_jose::JwsPart::Payload,
            reason: stella_envelope::encoding::DecodeError::Json,
        })
    })?;

    let jti = string_claim(&claims, ProofClaim::Jti)?;
    if jti.is_empty() {
        return Err(DpopError::JtiEmpty);
    }
    if jti.len() > MAX_JTI_LEN {
        return Err(DpopError::JtiTooLong { max: MAX_JTI_LEN });
    }

    if string_claim(&claims, ProofClaim::Htm)? != input.method {
        return Err(DpopError::HtmMismatch);
    }

    let htu = string_claim(&claims, ProofClaim::Htu)?;
    let target = htu::normalize_htu(input.target_uri).map_err(|_| DpopError::TargetInvalid)?;
    match htu::normalize_htu(htu) {
        Ok(htu) if htu == target => {}
        _ => return Err(DpopError::HtuMismatch),
    }

    let iat = match claims.get(ProofClaim::Iat.name()) {
        None => return Err(DpopError::MissingClaim(ProofClaim::Iat)),
        // Integer seconds only: a string, float or negative number is not
        // a NumericDate this check will interpret.
        Some(Value::Number(n)) => n.as_u64().ok_or(DpopError::ClaimType(ProofClaim::Iat))?,
        Some(_) => return Err(DpopError::ClaimType(ProofClaim::Iat)),
    };
    if iat < now.saturating_sub(rules.max_age) {
        return Err(DpopError::IatTooOld {
            max_age: rules.max_age,
        });
    }
    if iat > now.saturating_add(rules.max_future_skew) {
        return Err(DpopError::IatInFuture {
            skew: rules.max_future_skew,
        });
    }

    // At a resource a token is always presented, so `ath` is required.
    let ath = string_claim(&claims, ProofClaim::Ath)?;
    let computed;
    let token_hash: &[u8] = match input.access_token_hash {
        Some(hash) => hash,
        None => {
            computed = digest(&SHA256, input.access_token.as_bytes());
            computed.as_ref()
        }
    };
    let ath_ok = match b64url_decode(ath) {
        Ok(bytes) if bytes.len() == 32 => bool::from(bytes.ct_eq(token_hash)),
        _ => false,
    };
    if !ath_ok {
        return Err(DpopError::AthMismatch);
    }

    // The binding: RFC 7638 over the received members, against `cnf.jkt`
    // as a strict canonical string.
    if !thumbprint_matches(&jwk, expected_jkt) {
        return Err(DpopError::JktMismatch);
    }

    // Nonces last: a `use_dpop_nonce` answer (with a fresh nonce) goes only
    // to a holder of the bound key.
    if let Some(check) = input.nonce {
        let nonce = match claims.get(ProofClaim::Nonce.name()) {
            None => return Err(DpopError::NonceMissing),
            Some(Value::String(nonce)) => nonce,
            Some(_) => return Err(DpopError::NonceInvalid(NonceError::Malformed)),
        };
        check.check(nonce, now).map_err(DpopError::NonceInvalid)?;
    }

    let jkt = expected_jkt.clone();
    let replay_key = replay_key(&jkt, jti);
    Ok(CheckedProof {
        jti: jti.to_owned(),
        jkt,
        iat,
        replay_key,
    })
}

fn string_claim(claims: &JsonObject, claim: ProofClaim) -> Result<&str, DpopError> {
    match claims.get(claim.name()) {
        None => Err(DpopError::MissingClaim(claim)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DpopError::ClaimType(claim)),
    }
}

/// SHA-256 over `jkt || 0x00 || jti`. The separator cannot occur in a
/// canonical base64url `jkt`, so distinct pairs never share an input.
fn replay_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(jkt.as_bytes());
    ctx.update(&[0x00]);
    ctx.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}
