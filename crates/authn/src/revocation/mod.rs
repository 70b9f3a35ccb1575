//! Emergency revocation (docs/design.md §3.3): a denylist of identities that
//! the authentication pipeline checks on every request, after the token was
//! verified (from the verified-token cache or not, JWS or introspection)
//! and before the policy. A hit refuses the request (401 `invalid_token`,
//! reason `revoked`), whatever any cache says about the token.
//!
//! An entry names one identifier of a caller ([`Kind`]: a token's `jti`,
//! `sub` per issuer, `client_id`, `sid` (each of these three for one
//! issuer or for any), `tenant`; a DPoP key's thumbprint
//! `jkt`; a client certificate's `x5t#S256`; a SPIFFE ID) and lives until
//! its `expires_at`. Values are kept as given, because they are compared
//! exactly, and are never logged or shown: logs and listings carry the
//! value's SHA-256 ([`Record::value_sha256`]).
//!
//! [`Denylist`] is the live list: one atomic mask of the kinds that have
//! entries, and of whether the list is to be distrusted (zero when the
//! list is empty and in date: a request then pays one atomic load and
//! nothing else), and an immutable index swapped whole on every change, so
//! a lookup takes no lock and allocates nothing. A node whose copy of a
//! shared list is too old, under `when_stale: refuse`, raises the
//! distrust bit ([`Denylist::set_distrusted`]): every caller that
//! presents a credential is then refused until the copy is current again
//! (docs/design.md §3.3). Changes are
//! rare (an operator's command, a store's update) and rebuild the index.
//! [`StateFile`] persists the list for a restart; [`RevocationStore`]
//! shares it between nodes through Redis; [`ssf`] turns Shared Signals
//! events (CAEP, RISC) pushed by a transmitter into entries.

mod file;
mod redis;
pub mod ssf;

pub use file::{StateFile, StateFileError, FORMAT};
pub use redis::{Loaded, RevocationStore, DEFAULT_CHANNEL, DEFAULT_KEY};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Entries one list holds at most: a change beyond it is refused.
pub const MAX_ENTRIES: usize = 100_000;
/// The longest an entry may live, in seconds (366 days).
pub const MAX_LIFETIME_SECONDS: u64 = 366 * 86_400;
/// Longest value, in bytes (a SPIFFE ID may be 2048 bytes long).
pub const MAX_VALUE_BYTES: usize = 2048;
/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 256;
/// Longest operator name, in characters.
pub const MAX_OPERATOR_CHARS: usize = 64;
/// Hex digits of the value's SHA-256 that listings and logs show.
pub const HASH_PREFIX_LEN: usize = 12;
/// Shortest hash prefix that selects an entry to remove.
pub const MIN_SELECTOR_HEX: usize = 8;

/// What an entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// An access token's `jti` (one token).
    #[serde(rename = "jti")]
    Jti,
    /// A token's `sub`, for one issuer (a user, or a client's subject).
    #[serde(rename = "sub")]
    Sub,
    /// A token's `client_id` (every token of a client).
    #[serde(rename = "client_id")]
    ClientId,
    /// The thumbprint of a DPoP key (`cnf.jkt`).
    #[serde(rename = "jkt")]
    Jkt,
    /// The thumbprint of a client certificate (`cnf.x5t#S256`, or the
    /// certificate on the connection).
    #[serde(rename = "x5t#S256")]
    X5tS256,
    /// A SPIFFE ID, from a client certificate.
    #[serde(rename = "spiffe_id")]
    SpiffeId,
    /// A token's tenant.
    #[serde(rename = "tenant")]
    Tenant,
    /// A token's `sid` (a login session), where the Authority sets one.
    #[serde(rename = "sid")]
    Sid,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Jti,
        Kind::Sub,
        Kind::ClientId,
        Kind::Jkt,
        Kind::X5tS256,
        Kind::SpiffeId,
        Kind::Tenant,
        Kind::Sid,
    ];

    /// The name in the API, the state file, logs and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Sub => "sub",
            Kind::ClientId => "client_id",
            Kind::Jkt => "jkt",
            Kind::X5tS256 => "x5t#S256",
            Kind::SpiffeId => "spiffe_id",
            Kind::Tenant => "tenant",
            Kind::Sid => "sid",
        }
    }

    /// A kind by name; `x5t_s256` also names `x5t#S256` (a `#` does not
    /// survive a URL path or a shell unquoted).
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "x5t_s256" => Some(Kind::X5tS256),
            _ => Kind::ALL.into_iter().find(|k| k.as_str() == text),
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One revoked identifier, as an operator gave it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: Kind,
    /// The issuer whose identifier this is: always for `sub`; for `jti`,
    /// `client_id` and `sid` when given (else any issuer's); never for the
    /// others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The identifier itself, compared byte for byte. Never logged.
    pub value: String,
    pub reason: String,
    /// Who made the entry.
    pub operator: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the entry refuses nothing from then on.
    pub expires_at: u64,
}

/// The value stays out of `Debug` output: its hash prefix stands in.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field(
                "value_sha256",
                &&value_sha256(&self.value)[..HASH_PREFIX_LEN],
            )
            .field("reason", &self.reason)
            .field("operator", &self.operator)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why an entry or a change is refused. Messages never quote the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error("value is empty")]
    EmptyValue,
    #[error("value is longer than {MAX_VALUE_BYTES} bytes")]
    ValueTooLong,
    #[error("{0} contains a control character")]
    ControlCharacter(&'static str),
    #[error("a thumbprint is 43 characters of base64url (a SHA-256, RFC 7638 or RFC 8705)")]
    Thumbprint,
    #[error("a SPIFFE ID starts with spiffe://")]
    SpiffeId,
    #[error("issuer is required for kind sub (subjects are per issuer)")]
    IssuerRequired,
    #[error("issuer is only for kinds sub, jti, client_id and sid")]
    IssuerNotAllowed,
    #[error("reason is required")]
    EmptyReason,
    #[error("reason is longer than {MAX_REASON_CHARS} characters")]
    ReasonTooLong,
    #[error("operator must be 1 to {MAX_OPERATOR_CHARS} letters, digits or . _ @ -")]
    Operator,
    #[error("expiry must be in the future")]
    Expired,
    #[error("expiry is more than {MAX_LIFETIME_SECONDS} seconds away")]
    TooLong,
    #[error("the list holds {MAX_ENTRIES} entries already")]
    Full,
    #[error("the hash prefix matches several values; give more of it or the value")]
    Ambiguous,
}

impl Entry {
    /// Checks an entry made at `now`.
    pub fn check(&self, now: u64) -> Result<(), RevocationError> {
        if self.value.is_empty() {
            return Err(RevocationError::EmptyValue);
        }
        if self.value.len() > MAX_VALUE_BYTES {
            return Err(RevocationError::ValueTooLong);
        }
        if self.value.chars().any(char::is_control) {
            return Err(RevocationError::ControlCharacter("value"));
        }
        let thumbprint = |v: &str| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match self.kind {
            // Compared as canonical base64url only (docs/design.md §3.3):
            // any other form could never match.
            Kind::Jkt | Kind::X5tS256 if !thumbprint(&self.value) => {
                return Err(RevocationError::Thumbprint)
            }
            Kind::SpiffeId if !self.value.starts_with("spiffe://") => {
                return Err(RevocationError::SpiffeId)
            }
            _ => {}
        }
        // A subject is only unique within its issuer: `sub` always names
        // one. A token's `jti`, `client_id` and `sid` are the issuer's
        // too, and may name one to leave another Authority's clients of
        // the same name alone; without one they match every issuer.
        match (self.kind, &self.issuer) {
            (Kind::Sub, None) => return Err(RevocationError::IssuerRequired),
            (Kind::Sub | Kind::Jti | Kind::ClientId | Kind::Sid, Some(issuer))
                if issuer.is_empty() =>
            {
                return Err(RevocationError::IssuerRequired)
            }
            (Kind::Sub | Kind::Jti | Kind::ClientId | Kind::Sid, Some(issuer))
                if issuer.chars().any(char::is_control) =>
            {
                return Err(RevocationError::ControlCharacter("issuer"))
            }
            (Kind::Sub | Kind::Jti | Kind::ClientId | Kind::Sid, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(RevocationError::IssuerNotAllowed),
        }
        if self.reason.trim().is_empty() {
            return Err(RevocationError::EmptyReason);
        }
        if self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(RevocationError::ReasonTooLong);
        }
        if self.reason.chars().any(char::is_control) {
            return Err(RevocationError::ControlCharacter("reason"));
        }
        if !valid_operator(&self.operator) {
            return Err(RevocationError::Operator);
        }
        if self.expires_at <= now {
            return Err(RevocationError::Expired);
        }
        if self.expires_at - now > MAX_LIFETIME_SECONDS {
            return Err(RevocationError::TooLong);
        }
        Ok(())
    }

    fn key(&self) -> Key {
        (self.kind, self.issuer.clone(), self.value.clone())
    }
}

/// An operator's name: letters, digits and `. _ @ -`, up to
/// [`MAX_OPERATOR_CHARS`].
pub fn valid_operator(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_OPERATOR_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

/// The SHA-256 of a value, in lowercase hex: what logs, listings and the
/// audit trail carry instead of the value.
pub fn value_sha256(value: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
    }
    out
}

/// An entry in the live list, with what it has refused so far.
pub struct Record {
    entry: Entry,
    sha256: String,
    hits: AtomicU64,
}

impl Record {
    fn new(entry: Entry) -> Record {
        Record {
            sha256: value_sha256(&entry.value),
            entry,
            hits: AtomicU64::new(0),
        }
    }

    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    pub fn kind(&self) -> Kind {
        self.entry.kind
    }

    /// The value's SHA-256, hex.
    pub fn value_sha256(&self) -> &str {
        &self.sha256
    }

    /// The first [`HASH_PREFIX_LEN`] hex digits of the value's SHA-256.
    pub fn hash_prefix(&self) -> &str {
        &self.sha256[..HASH_PREFIX_LEN]
    }

    /// Requests this entry refused in this process.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn live(&self, now: u64) -> bool {
        now < self.entry.expires_at
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("entry", &self.entry)
            .field("hits", &self.hits())
            .finish()
    }
}

/// The identifiers of one authenticated caller, read per kind, and only
/// for the kinds the list has entries of.
pub trait Identifiers {
    /// The issuer of the caller's token (`sub` entries are per issuer).
    fn issuer(&self) -> Option<&str>;
    /// The caller's identifiers of `kind`: at most two (a certificate
    /// thumbprint or SPIFFE ID can come from the token's binding and from
    /// the connection's certificate).
    fn values(&self, kind: Kind) -> [Option<&str>; 2];
}

/// (kind, issuer, value): what makes an entry unique.
type Key = (Kind, Option<String>, String);

/// The entries of one kind, by value (several per value only for the
/// kinds with an issuer: one per issuer, and one for any issuer).
type ByValue = HashMap<Box<str>, Box<[Arc<Record>]>>;

/// The lookup structure: one [`ByValue`] per kind.
struct Index {
    by_kind: [ByValue; 8],
}

impl Index {
    fn build(entries: &BTreeMap<Key, Arc<Record>>) -> (Index, u16) {
        let mut by_kind: [HashMap<Box<str>, Vec<Arc<Record>>>; 8] =
            std::array::from_fn(|_| HashMap::new());
        let mut mask = 0u16;
        for record in entries.values() {
            let kind = record.kind();
            mask |= kind.bit();
            by_kind[kind.index()]
                .entry(record.entry.value.as_str().into())
                .or_default()
                .push(record.clone());
        }
        let by_kind = by_kind.map(|map| {
            map.into_iter()
                .map(|(value, records)| (value, records.into_boxed_slice()))
                .collect()
        });
        (Index { by_kind }, mask)
    }
}

/// What [`Denylist::upsert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Added,
    /// An entry for the same identifier was replaced (new reason, expiry).
    Replaced,
}

/// The bit of [`Denylist::mask`] that says the list is distrusted: above
/// the kinds' bits ([`Kind::bit`]).
const DISTRUSTED: u16 = 1 << 8;
/// The kinds' bits of [`Denylist::mask`].
const KINDS: u16 = DISTRUSTED - 1;

/// The live denylist. Shared by every snapshot of the configuration: a
/// reload never changes it.
pub struct Denylist {
    /// One bit per kind that has entries ([`Kind::bit`]), and
    /// [`DISTRUSTED`]; zero: nothing to check.
    mask: AtomicU16,
    index: ArcSwap<Index>,
    /// The entries, by identifier; writers take this lock, readers never.
    entries: Mutex<BTreeMap<Key, Arc<Record>>>,
    /// Counts changes, so a writer of the state file or the shared store
    /// can tell whether it has the latest.
    version: AtomicU64,
}

impl Default for Denylist {
    fn default() -> Denylist {
        Denylist::new()
    }
}

impl std::fmt::Debug for Denylist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denylist")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Denylist {
    pub fn new() -> Denylist {
        Denylist {
            mask: AtomicU16::new(0),
            index: ArcSwap::from_pointee(Index::build(&BTreeMap::new()).0),
            entries: Mutex::new(BTreeMap::new()),
            version: AtomicU64::new(0),
        }
    }

    /// No entry at all, and not distrusted: the request path skips the
    /// check. One atomic load.
    #[inline]
    pub fn is_quiet(&self) -> bool {
        self.mask.load(Ordering::Acquire) == 0
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.mask.load(Ordering::Acquire) & KINDS == 0
    }

    /// Whether the list is distrusted: every caller with a credential is
    /// to be refused ([`Denylist::set_distrusted`]).
    #[inline]
    pub fn is_distrusted(&self) -> bool {
        self.mask.load(Ordering::Acquire) & DISTRUSTED != 0
    }

    /// Marks the list as distrusted (a copy of a shared list older than its
    /// bound, under `when_stale: refuse`) or trusted again; returns whether
    /// that changed anything. Entries are kept and checked as before.
    pub fn set_distrusted(&self, distrusted: bool) -> bool {
        let before = if distrusted {
            self.mask.fetch_or(DISTRUSTED, Ordering::AcqRel)
        } else {
            self.mask.fetch_and(!DISTRUSTED, Ordering::AcqRel)
        };
        (before & DISTRUSTED != 0) != distrusted
    }

    /// The live entry that refuses a caller with these identifiers at
    /// `now`, if any. Takes no lock and allocates nothing; counts the hit
    /// on the entry.
    pub fn check(&self, ids: &dyn Identifiers, now: u64) -> Option<Arc<Record>> {
        let mask = self.mask.load(Ordering::Acquire) & KINDS;
        if mask == 0 {
            return None;
        }
        let index = self.index.load();
        for kind in Kind::ALL {
            if mask & kind.bit() == 0 {
                continue;
            }
            let map = &index.by_kind[kind.index()];
            for value in ids.values(kind).into_iter().flatten() {
                let Some(records) = map.get(value) else {
                    continue;
                };
                let hit = records.iter().find(|r| {
                    r.live(now)
                        && match &r.entry.issuer {
                            Some(issuer) => ids.issuer() == Some(issuer.as_str()),
                            None => true,
                        }
                });
                if let Some(record) = hit {
                    record.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(record.clone());
                }
            }
        }
        None
    }

    /// Adds an entry, or replaces the one for the same identifier; returns
    /// which, and the entry as the list holds it.
    pub fn upsert(
        &self,
        entry: Entry,
        now: u64,
    ) -> Result<(Upserted, Arc<Record>), RevocationError> {
        entry.check(now)?;
        let mut entries = self.lock();
        let key = entry.key();
        if !entries.contains_key(&key) && entries.len() >= MAX_ENTRIES {
            return Err(RevocationError::Full);
        }
        let record = Arc::new(Record::new(entry));
        let outcome = match entries.insert(key, record.clone()) {
            Some(_) => Upserted::Replaced,
            None => Upserted::Added,
        };
        self.publish(&entries);
        Ok((outcome, record))
    }

    /// Removes the entries of `kind` that `selector` names: the value
    /// itself, else its SHA-256 or a prefix of it of at least
    /// [`MIN_SELECTOR_HEX`] hex digits, that matches one value. `issuer`
    /// narrows `sub` entries to one issuer. Returns what was removed
    /// (nothing: no entry matched).
    pub fn remove(
        &self,
        kind: Kind,
        selector: &str,
        issuer: Option<&str>,
    ) -> Result<Vec<Arc<Record>>, RevocationError> {
        let mut entries = self.lock();
        let of_kind = |r: &Arc<Record>| {
            r.kind() == kind && issuer.is_none_or(|i| r.entry.issuer.as_deref() == Some(i))
        };
        let mut chosen: Vec<Key> = entries
            .iter()
            .filter(|(_, r)| of_kind(r) && r.entry.value == selector)
            .map(|(k, _)| k.clone())
            .collect();
        if chosen.is_empty() && is_hash_selector(selector) {
            let matching: Vec<(&Key, &Arc<Record>)> = entries
                .iter()
                .filter(|(_, r)| of_kind(r) && r.sha256.starts_with(selector))
                .collect();
            let first = matching.first().map(|(_, r)| r.sha256.clone());
            if matching
                .iter()
                .any(|(_, r)| Some(&r.sha256) != first.as_ref())
            {
                return Err(RevocationError::Ambiguous);
            }
            chosen = matching.into_iter().map(|(k, _)| k.clone()).collect();
        }
        let removed: Vec<Arc<Record>> = chosen
            .iter()
            .filter_map(|key| entries.remove(key))
            .collect();
        if !removed.is_empty() {
            self.publish(&entries);
        }
        Ok(removed)
    }

    /// Replaces the whole list (a state file read at start, the shared
    /// store read in full). Expired and invalid entries are left out and
    /// returned apart; entries that did not change keep their hit counts.
    pub fn replace_all(&self, fresh: Vec<Entry>, now: u64) -> Replaced {
        let mut entries = self.lock();
        let mut next = BTreeMap::new();
        let mut skipped = Replaced::default();
        for entry in fresh {
            if entry.expires_at <= now {
                skipped.expired += 1;
                continue;
            }
            // Made before this clock's now: only the expiry is judged
            // against it.
            if entry.check(entry.created_at.min(now)).is_err() {
                skipped.invalid += 1;
                continue;
            }
            if next.len() >= MAX_ENTRIES {
                skipped.invalid += 1;
                continue;
            }
            let key = entry.key();
            let record = match entries.get(&key) {
                Some(old) if old.entry == entry => old.clone(),
                _ => Arc::new(Record::new(entry)),
            };
            next.insert(key, record);
        }
        let same = next.len() == entries.len()
            && next
                .iter()
                .zip(entries.iter())
                .all(|((_, a), (_, b))| Arc::ptr_eq(a, b));
        skipped.changed = !same;
        if !same {
            *entries = next;
            self.publish(&entries);
        }
        skipped.kept = entries.len();
        skipped
    }

    /// Drops the entries that expired by `now`; returns them.
    pub fn sweep(&self, now: u64) -> Vec<Arc<Record>> {
        let mut entries = self.lock();
        let expired: Vec<Key> = entries
            .iter()
            .filter(|(_, r)| !r.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        let removed: Vec<Arc<Record>> = expired
            .iter()
            .filter_map(|key| entries.remove(key))
            .collect();
        if !removed.is_empty() {
            self.publish(&entries);
        }
        removed
    }

    /// Every entry, ordered by kind, issuer and value.
    pub fn records(&self) -> Vec<Arc<Record>> {
        self.lock().values().cloned().collect()
    }

    /// Every entry, as data (for the state file and the shared store).
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().values().map(|r| r.entry.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Counts changes since the list was made.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Arc<Record>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `entries` what requests see: the index first, then the mask,
    /// so a request that sees a kind's bit finds its entries. The kinds'
    /// bits change by two read-modify-writes (the new bits set, then the
    /// old ones cleared) so that a concurrent [`Denylist::set_distrusted`]
    /// is never undone; in between, a request may look up a kind that has
    /// no entry left, which finds nothing.
    fn publish(&self, entries: &BTreeMap<Key, Arc<Record>>) {
        let (index, mask) = Index::build(entries);
        self.index.store(Arc::new(index));
        self.mask.fetch_or(mask, Ordering::AcqRel);
        self.mask.fetch_and(mask | DISTRUSTED, Ordering::AcqRel);
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// What [`Denylist::replace_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Entries in the list afterwards.
    pub kept: usize,
    /// Entries left out because they had expired.
    pub expired: usize,
    /// Entries left out because they were not valid (or beyond
    /// [`MAX_ENTRIES`]).
    pub invalid: usize,
    /// Whether the list changed.
    pub changed: bool,
}

/// Whether `selector` can be a hash (prefix): lowercase hex, at least
/// [`MIN_SELECTOR_HEX`] and at most 64 digits.
fn is_hash_selector(selector: &str) -> bool {
    (MIN_SELECTOR_HEX..=64).contains(&selector.len())
        && selector
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests;
