//! A JWKS parsed into the keys token verification can use (pure), the
//! choice of a key for a token, and why a lookup found none.

use crate::{AuthorityError, Document};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use stella_jose::{JsonObject, JwsAlg, PublicJwk, VerifyingKey};

/// A parsed JWKS: the usable verification keys.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyingKey>>>,
    unnamed: Vec<Arc<VerifyingKey>>,
    usable: usize,
    skipped: usize,
}

/// The result of looking a token's key up in one [`KeySet`].
#[derive(Clone, Debug)]
pub enum Selection {
    Found(Arc<VerifyingKey>),
    /// The token names a `kid` the set does not have.
    UnknownKid,
    /// The token names no `kid` and the set has more than one key.
    MissingKid,
}

impl KeySet {
    /// Parses a JWKS document (RFC 7517 section 5). Unusable keys are
    /// skipped and counted; a document without a `keys` array, or with no
    /// usable key, is an error.
    pub fn from_jwks(doc: &JsonObject) -> Result<KeySet, AuthorityError> {
        let Some(Value::Array(keys)) = doc.get("keys") else {
            return Err(AuthorityError::MissingMember {
                document: Document::Jwks,
                member: "keys",
            });
        };
        let mut set = KeySet::default();
        for key in keys {
            match usable_key(key) {
                Some((kid, key)) => {
                    set.usable += 1;
                    match kid {
                        Some(kid) => set.by_kid.entry(kid).or_default().push(key),
                        None => set.unnamed.push(key),
                    }
                }
                None => set.skipped += 1,
            }
        }
        if set.usable == 0 {
            return Err(AuthorityError::NoUsableKeys {
                skipped: set.skipped,
            });
        }
        Ok(set)
    }

    /// Usable keys in the set.
    pub fn len(&self) -> usize {
        self.usable
    }

    pub fn is_empty(&self) -> bool {
        self.usable == 0
    }

    /// Keys of the document that were not usable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The key ids in the set, sorted (for the admin listener).
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.by_kid.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Picks the key for a token with header `kid` and `alg`.
    pub fn select(&self, kid: Option<&str>, alg: JwsAlg) -> Selection {
        let candidates: &[Arc<VerifyingKey>] = match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(keys) => keys,
                None => return Selection::UnknownKid,
            },
            None if self.usable == 1 => match (self.unnamed.first(), self.by_kid.values().next()) {
                (Some(key), _) => std::slice::from_ref(key),
                (None, Some(keys)) => keys,
                (None, None) => return Selection::MissingKid,
            },
            None => return Selection::MissingKid,
        };
        // Prefer the key that allows `alg`; otherwise hand back the first so
        // verification reports the precise mismatch instead of "unknown kid".
        match candidates
            .iter()
            .find(|k| k.allows(alg))
            .or_else(|| candidates.first())
        {
            Some(key) => Selection::Found(key.clone()),
            None => Selection::UnknownKid,
        }
    }
}

/// One JWKS entry as a usable key with its kid, or `None` to skip it.
fn usable_key(entry: &Value) -> Option<(Option<String>, Arc<VerifyingKey>)> {
    let Value::Object(object) = entry else {
        return None;
    };
    let jwk = PublicJwk::from_json(object).ok()?;
    if jwk.key_use().is_some_and(|u| u != "sig") {
        return None;
    }
    let key = VerifyingKey::new(&jwk);
    if !JwsAlg::ALL.iter().any(|alg| key.allows(*alg)) {
        return None;
    }
    Some((jwk.kid().map(str::to_owned), Arc::new(key)))
}

/// Why no key could be handed out for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    /// The keys could not be used or checked: 503 with `Retry-After`.
    #[error("authority signing keys unavailable: {0}")]
    Unavailable(Unavailable),
    /// The Authority does not publish the token's `kid`: 401.
    #[error("no authority key has the token's kid")]
    UnknownKid,
    /// The token has no `kid` and the key set is not a single key: 401.
    #[error("token has no kid and the authority publishes more than one key")]
    MissingKid,
}

/// Why the keys are unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No JWKS has been loaded since start.
    NeverLoaded,
    /// The last successful fetch is `age` seconds old, past `max_age`.
    Stale { age: u64, max_age: u64 },
    /// The kid is unknown and the refetch meant to find it failed.
    RefetchFailed,
    /// The kid is unknown and a JWKS fetch in flight did not finish within
    /// the wait budget.
    Busy,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NeverLoaded => f.write_str("no jwks loaded yet"),
            Unavailable::Stale { age, max_age } => write!(
                f,
                "last successful jwks fetch was {age} s ago, more than the {max_age} s allowed"
            ),
            Unavailable::RefetchFailed => f.write_str("jwks refetch for an unknown kid failed"),
            Unavailable::Busy => {
                f.write_str("a jwks fetch in flight did not finish within the wait budget")
            }
        }
    }
}

impl KeyLookupError {
    /// A stable label for metrics and logs; one of a fixed set.
    pub fn code(&self) -> &'static str {
        match self {
            KeyLookupError::Unavailable(_) => "keys_unavailable",
            KeyLookupError::UnknownKid => "unknown_kid",
            KeyLookupError::MissingKid => "missing_kid",
        }
    }

    /// True for the 503 case.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KeyLookupError::Unavailable(_))
    }
}
