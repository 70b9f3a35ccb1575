//! The rules of an OpenID Shared Signals Framework 1.0 receiver with push
//! delivery (RFC 8935): a Security Event Token (RFC 8417) is checked and
//! its events turned into revocation-list entries ([`super::Entry`]).
//! Pure: the shell finds the transmitter's key, spends the SET's `jti` in
//! the replay store and applies the entries.
//!
//! Checks, in order (each failure is one [`SetError`], whose `err` is the
//! RFC 8935 §2.3 code the receiver answers with 400):
//! 1. a compact JWS of at most [`MAX_SET_BYTES`], `typ` `secevent+jwt`
//!    (SSF 1.0 §4.1.1: explicit typing), an accepted `alg`;
//! 2. `iss` names a configured transmitter (`invalid_issuer`);
//! 3. the signature, with a key of that transmitter's JWKS chosen by `kid`
//!    (`invalid_key`);
//! 4. `aud` holds the transmitter's configured audience
//!    (`invalid_audience`);
//! 5. `iat` is not in the future (beyond the leeway) nor older than the
//!    receiver's `max_age`; `jti` is present; `events` is an object with
//!    at least one event (`invalid_request`).
//!
//! Events: CAEP 1.0 `session-revoked` and `credential-change` and RISC
//! `account-disabled` become entries; every other event type is accepted
//! and ignored (RFC 8417 §2.2 leaves unknown events to the receiver; SSF
//! 1.0 verification events among them). A `credential-change` whose
//! `change_type` is `create` revokes nothing: a new credential does not
//! make the tokens issued before it suspect.
//!
//! Subjects (RFC 9493; SSF 1.0 §3): the SET's `sub_id`, else the event's
//! `subject`.
//! - `iss_sub`: `sub` of that issuer, when it is a configured Authority;
//! - `opaque`, `email`: `sub` of the Authority the transmitter's settings
//!   name for that format (`opaque_subjects_of`, `email_subjects_of`);
//!   without the setting, ignored;
//! - `aliases`: each identifier, as above;
//! - `complex`: its `session` member (`opaque`, its `id` a `sid`) and its
//!   `user` member (as above). `session-revoked` revokes the session when
//!   the subject names one, else the user; the other events revoke the
//!   user, else the session;
//! - any other format: ignored.

use super::{Entry, Kind, RevocationError};
use serde_json::{Map, Value};
use stella_jose::{typ_matches, CompactJws, JoseError, JsonObject, JwsAlg, VerifyingKey};

/// The media type of a pushed SET (RFC 8935 §2).
pub const MEDIA_TYPE: &str = "application/secevent+jwt";
/// Largest SET read, in bytes.
pub const MAX_SET_BYTES: usize = 64 * 1024;
/// Most events one SET may carry.
pub const MAX_EVENTS: usize = 16;
/// Most identifiers an `aliases` subject may carry.
pub const MAX_ALIASES: usize = 16;

/// CAEP 1.0 §3.1.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP 1.0 §3.3.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC 1.0 §2.3.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

/// The event types the receiver acts on, as a fixed label (metrics, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    SessionRevoked,
    CredentialChange,
    AccountDisabled,
    /// Any other event type: accepted, ignored.
    Other,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::SessionRevoked,
        EventKind::CredentialChange,
        EventKind::AccountDisabled,
        EventKind::Other,
    ];

    fn of(event_type: &str) -> EventKind {
        match event_type {
            SESSION_REVOKED => EventKind::SessionRevoked,
            CREDENTIAL_CHANGE => EventKind::CredentialChange,
            ACCOUNT_DISABLED => EventKind::AccountDisabled,
            _ => EventKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionRevoked => "session_revoked",
            EventKind::CredentialChange => "credential_change",
            EventKind::AccountDisabled => "account_disabled",
            EventKind::Other => "other",
        }
    }

    /// The reason an entry made for this event carries.
    fn reason(self) -> &'static str {
        match self {
            EventKind::SessionRevoked => "ssf: caep session-revoked",
            EventKind::CredentialChange => "ssf: caep credential-change",
            EventKind::AccountDisabled => "ssf: risc account-disabled",
            EventKind::Other => "ssf",
        }
    }
}

/// Why a SET is refused. [`SetError::err`] is the RFC 8935 §2.3 code;
/// messages never quote the SET.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the SET's issuer is not a configured transmitter")]
    InvalidIssuer,
    #[error("{0}")]
    InvalidKey(String),
    #[error("the SET's aud does not hold this receiver's audience")]
    InvalidAudience,
}

impl SetError {
    /// The `err` member of the 400 answer (RFC 8935 §2.3, IANA "Security
    /// Event Token Error Codes").
    pub fn err(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidKey(_) => "invalid_key",
            SetError::InvalidAudience => "invalid_audience",
        }
    }

    fn request(text: impl Into<String>) -> SetError {
        SetError::InvalidRequest(text.into())
    }
}

/// The checked settings of one transmitter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmitter {
    /// The SETs' `iss`, compared byte for byte.
    pub issuer: String,
    /// What the SETs' `aud` must hold.
    pub audience: String,
    /// The operator name the audit lines of its changes carry.
    pub operator: String,
    /// How long an entry made for one of its events lives, in seconds.
    pub revoke_for: u64,
    /// The Authority whose `sub` an `opaque` subject is; `None`: ignored.
    pub opaque_subjects_of: Option<String>,
    /// The Authority whose `sub` an `email` subject is; `None`: ignored.
    pub email_subjects_of: Option<String>,
}

/// How old a SET may be, and how far ahead of this clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Seconds a SET's `iat` may lie in the past; also how long its `jti`
    /// is remembered.
    pub max_age: u64,
    /// Seconds a SET's `iat` may lie in the future.
    pub leeway: u64,
}

/// A parsed SET whose signature is not checked yet.
#[derive(Debug)]
pub struct Unverified {
    jws: CompactJws,
    claims: JsonObject,
    issuer: String,
}

/// Parses a pushed SET: a compact JWS with `typ` `secevent+jwt` and a
/// string `iss`.
pub fn parse(body: &[u8]) -> Result<Unverified, SetError> {
    if body.len() > MAX_SET_BYTES {
        return Err(SetError::request(format!(
            "the SET is longer than {MAX_SET_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| SetError::request("the body is not a compact JWS"))?
        .trim();
    let jws = CompactJws::parse(text, MAX_SET_BYTES).map_err(|e| match e {
        JoseError::UnsupportedAlg | JoseError::UnsupportedHeader(_) => {
            SetError::InvalidKey(format!("the SET's header is refused: {e}"))
        }
        _ => SetError::request(format!("the body is not a compact JWS: {e}")),
    })?;
    match jws.header().typ() {
        Some(typ) if typ_matches(typ, "secevent+jwt") => {}
        _ => {
            return Err(SetError::request(
                "the SET's typ must be secevent+jwt (SSF 1.0 §4.1.1)",
            ))
        }
    }
    let claims: JsonObject = serde_json::from_slice(jws.payload())
        .map_err(|_| SetError::request("the SET's payload is not a json object"))?;
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) if !iss.is_empty() => iss.clone(),
        _ => return Err(SetError::request("the SET has no iss")),
    };
    Ok(Unverified {
        jws,
        claims,
        issuer,
    })
}

impl Unverified {
    /// The SET's `iss`: the transmitter whose keys verify it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn kid(&self) -> Option<&str> {
        self.jws.header().kid()
    }

    pub fn alg(&self) -> JwsAlg {
        self.jws.header().alg()
    }

    /// Checks the signature with `key` (the transmitter's, by `kid`), then
    /// the claims against `transmitter` and `window` at `now`.
    pub fn verify(
        self,
        key: &VerifyingKey,
        transmitter: &Transmitter,
        window: Window,
        now: u64,
    ) -> Result<Set, SetError> {
        if self.issuer != transmitter.issuer {
            return Err(SetError::InvalidIssuer);
        }
        self.jws
            .verify(key)
            .map_err(|_| SetError::InvalidKey("the SET's signature does not verify".into()))?;
        let claims = self.claims;
        let audience = transmitter.audience.as_str();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(SetError::InvalidAudience);
        }
        let iat = match claims.get("iat").and_then(Value::as_u64) {
            Some(iat) => iat,
            None => return Err(SetError::request("the SET has no iat (a number)")),
        };
        if iat > now.saturating_add(window.leeway) {
            return Err(SetError::request("the SET's iat is in the future"));
        }
        if now.saturating_sub(iat) > window.max_age {
            return Err(SetError::request(format!(
                "the SET is older than {} seconds",
                window.max_age
            )));
        }
        let jti = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= 256 => jti.clone(),
            _ => {
                return Err(SetError::request(
                    "the SET has no jti (a string of at most 256 bytes)",
                ))
            }
        };
        let events = match claims.get("events") {
            Some(Value::Object(events)) if !events.is_empty() => events,
            _ => {
                return Err(SetError::request(
                    "the SET has no events (an object with one event at least)",
                ))
            }
        };
        if events.len() > MAX_EVENTS {
            return Err(SetError::request(format!(
                "the SET carries more than {MAX_EVENTS} events"
            )));
        }
        let sub_id = claims.get("sub_id").cloned();
        let mut parsed = Vec::with_capacity(events.len());
        for (event_type, payload) in events {
            let Value::Object(payload) = payload else {
                return Err(SetError::request("an event's payload is not an object"));
            };
            parsed.push(Event {
                kind: EventKind::of(event_type),
                subject: sub_id.clone().or_else(|| payload.get("subject").cloned()),
                payload: payload.clone(),
            });
        }
        Ok(Set {
            issuer: self.issuer,
            jti,
            iat,
            events: parsed,
        })
    }
}

/// A SET whose signature and claims were checked.
#[derive(Debug)]
pub struct Set {
    issuer: String,
    jti: String,
    iat: u64,
    events: Vec<Event>,
}

#[derive(Debug)]
struct Event {
    kind: EventKind,
    subject: Option<Value>,
    payload: Map<String, Value>,
}

/// Why an event revokes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// An event type the receiver does not act on.
    EventType,
    /// `credential-change` with `change_type: create`.
    CredentialCreated,
    /// No subject the receiver can map: none, a format without a mapping,
    /// or an `iss_sub` of an issuer that is not a configured Authority.
    Subject,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::EventType => "event_type",
            Ignored::CredentialCreated => "credential_created",
            Ignored::Subject => "subject_not_mapped",
        }
    }
}

/// What one event of a SET comes to.
#[derive(Debug)]
pub struct Outcome {
    pub kind: EventKind,
    /// The entries to add (empty when ignored).
    pub entries: Vec<Entry>,
    pub ignored: Option<Ignored>,
}

/// What a subject names, before it becomes an entry.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Sub { issuer: String, value: String },
    Sid(String),
}

impl Set {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jti(&self) -> &str {
        &self.jti
    }

    pub fn iat(&self) -> u64 {
        self.iat
    }

    /// The key the SET's `jti` takes in the replay store: SHA-256 over a
    /// label, the issuer and the `jti` (never a DPoP proof's key).
    pub fn replay_key(&self) -> [u8; 32] {
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        d.update(b"stella ssf set\0");
        d.update(self.issuer.as_bytes());
        d.update(b"\0");
        d.update(self.jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(d.finish().as_ref());
        key
    }

    /// The entries each event comes to at `now`. `authority` tells whether
    /// an issuer is a configured Authority. A subject whose value cannot
    /// be an entry (empty, too long, a control character) refuses the SET.
    pub fn outcomes(
        &self,
        transmitter: &Transmitter,
        authority: &dyn Fn(&str) -> bool,
        now: u64,
    ) -> Result<Vec<Outcome>, SetError> {
        let mut out = Vec::with_capacity(self.events.len());
        for event in &self.events {
            let ignored = |why| Outcome {
                kind: event.kind,
                entries: Vec::new(),
                ignored: Some(why),
            };
            if event.kind == EventKind::Other {
                out.push(ignored(Ignored::EventType));
                continue;
            }
            if event.kind == EventKind::CredentialChange
                && event.payload.get("change_type").and_then(Value::as_str) == Some("create")
            {
                out.push(ignored(Ignored::CredentialCreated));
                continue;
            }
            let targets = match &event.subject {
                Some(subject) => targets(
                    subject,
                    transmitter,
                    authority,
                    event.kind == EventKind::SessionRevoked,
                ),
                None => Vec::new(),
            };
            if targets.is_empty() {
                out.push(ignored(Ignored::Subject));
                continue;
            }
            let mut entries = Vec::with_capacity(targets.len());
            for target in targets {
                let (kind, issuer, value) = match target {
                    Target::Sub { issuer, value } => (Kind::Sub, Some(issuer), value),
                    Target::Sid(value) => (Kind::Sid, None, value),
                };
                let entry = Entry {
                    kind,
                    issuer,
                    value,
                    reason: event.kind.reason().into(),
                    operator: transmitter.operator.clone(),
                    created_at: now,
                    expires_at: now.saturating_add(transmitter.revoke_for),
                };
                entry.check(now).map_err(|e| match e {
                    RevocationError::EmptyValue
                    | RevocationError::ValueTooLong
                    | RevocationError::ControlCharacter(_) => {
                        SetError::request(format!("the event's subject is unusable: {e}"))
                    }
                    other => SetError::request(format!("the event makes no entry: {other}")),
                })?;
                entries.push(entry);
            }
            out.push(Outcome {
                kind: event.kind,
                entries,
                ignored: None,
            });
        }
        Ok(out)
    }
}

/// What `subject` names: a session, a user, or both of a complex subject
/// (ordered by what the event revokes first; only the first kind found is
/// kept).
fn targets(
    subject: &Value,
    transmitter: &Transmitter,
    authority: &dyn Fn(&str) -> bool,
    session_first: bool,
) -> Vec<Target> {
    let Value::Object(subject) = subject else {
        return Vec::new();
    };
    if subject.get("format").and_then(Value::as_str) != Some("complex") {
        return simple(subject, transmitter, authority);
    }
    let session = || match subject.get("session") {
        Some(Value::Object(s)) if format_of(s) == Some("opaque") => match s.get("id") {
            Some(Value::String(id)) => vec![Target::Sid(id.clone())],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let user = || match subject.get("user") {
        Some(Value::Object(u)) => simple(u, transmitter, authority),
        _ => Vec::new(),
    };
    let (first, second) = if session_first {
        (session(), user())
    } else {
        (user(), session())
    };
    if first.is_empty() {
        second
    } else {
        first
    }
}

fn format_of(subject: &Map<String, Value>) -> Option<&str> {
    subject.get("format").and_then(Value::as_str)
}

/// A simple subject (or `aliases` of them) as `sub` targets.
fn simple(
    subject: &Map<String, Value>,
    transmitter: &Transmitter,
    authority: &dyn Fn(&str) -> bool,
) -> Vec<Target> {
    let string = |name: &str| subject.get(name).and_then(Value::as_str);
    let sub_of = |issuer: Option<&String>, value: Option<&str>| match (issuer, value) {
        (Some(issuer), Some(value)) => vec![Target::Sub {
            issuer: issuer.clone(),
            value: value.to_owned(),
        }],
        _ => Vec::new(),
    };
    match format_of(subject) {
        Some("iss_sub") => match (string("iss"), string("sub")) {
            (Some(iss), Some(sub)) if authority(iss) => vec![Target::Sub {
                issuer: iss.to_owned(),
                value: sub.to_owned(),
            }],
            _ => Vec::new(),
        },
        Some("opaque") => sub_of(transmitter.opaque_subjects_of.as_ref(), string("id")),
        Some("email") => sub_of(transmitter.email_subjects_of.as_ref(), string("email")),
        Some("aliases") => {
            let Some(Value::Array(ids)) = subject.get("identifiers") else {
                return Vec::new();
            };
            let mut out: Vec<Target> = Vec::new();
            for id in ids.iter().take(MAX_ALIASES) {
                if let Value::Object(id) = id {
                    // Aliases do not nest (RFC 9493 §3.2.8).
                    if format_of(id) == Some("aliases") {
                        continue;
                    }
                    for target in simple(id, transmitter, authority) {
                        if !out.contains(&target) {
                            out.push(target);
                        }
                    }
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stella_jose::testing::TestKey;
    use stella_jose::PublicJwk;

    const NOW: u64 = 1_800_000_000;
    const TX: &str = "https://authority.example";
    const AUD: &str = "https://gateway.example/ssf";
    const WINDOW: Window = Window {
        max_age: 300,
        leeway: 60,
    };

    fn transmitter() -> Transmitter {
        Transmitter {
            issuer: TX.into(),
            audience: AUD.into(),
            operator: "ssf@authority.example".into(),
            revoke_for: 3600,
            opaque_subjects_of: Some(TX.into()),
            email_subjects_of: None,
        }
    }

    fn key_of(key: &TestKey) -> VerifyingKey {
        VerifyingKey::new(&PublicJwk::from_json(key.jwk().as_object().unwrap()).unwrap())
    }

    fn set(key: &TestKey, claims: Value) -> String {
        let mut header = json!({"alg": key.alg(), "typ": "secevent+jwt"});
        header["kid"] = json!(key.kid());
        key.token_with_header(&header, &claims)
    }

    fn claims(event: &str, payload: Value) -> Value {
        json!({"iss": TX, "aud": AUD, "iat": NOW - 5, "jti": "set-1",
            "events": {event: payload}})
    }

    fn checked(key: &TestKey, claims: Value) -> Result<Set, SetError> {
        parse(set(key, claims).as_bytes())?.verify(&key_of(key), &transmitter(), WINDOW, NOW)
    }

    fn entries(claims: Value) -> Vec<Outcome> {
        let key = TestKey::es256(Some("k1"));
        checked(&key, claims)
            .unwrap()
            .outcomes(&transmitter(), &|iss| iss == TX, NOW)
            .unwrap()
    }

    #[test]
    fn each_subject_format_maps_to_its_entry_or_is_ignored() {
        let iss_sub = json!({"format": "iss_sub", "iss": TX, "sub": "alice"});
        let other_iss = json!({"format": "iss_sub", "iss": "https://other", "sub": "alice"});
        let opaque = json!({"format": "opaque", "id": "u-42"});
        let email = json!({"format": "email", "email": "a@example.com"});
        let phone = json!({"format": "phone_number", "phone_number": "+1206"});
        let aliases =
            json!({"format": "aliases", "identifiers": [email, iss_sub, opaque, iss_sub]});
        let complex = json!({"format": "complex", "user": iss_sub,
            "session": {"format": "opaque", "id": "sid-9"}});
        let sub = |v: &str| vec![(Kind::Sub, Some(TX.to_owned()), v.to_owned())];
        for (event, subject, want) in [
            (SESSION_REVOKED, &iss_sub, sub("alice")),
            (SESSION_REVOKED, &other_iss, vec![]),
            (ACCOUNT_DISABLED, &opaque, sub("u-42")),
            (ACCOUNT_DISABLED, &email, vec![]),
            (ACCOUNT_DISABLED, &phone, vec![]),
            (
                ACCOUNT_DISABLED,
                &aliases,
                vec![
                    (Kind::Sub, Some(TX.to_owned()), "alice".to_owned()),
                    (Kind::Sub, Some(TX.to_owned()), "u-42".to_owned()),
                ],
            ),
            (
                SESSION_REVOKED,
                &complex,
                vec![(Kind::Sid, None, "sid-9".to_owned())],
            ),
            (ACCOUNT_DISABLED, &complex, sub("alice")),
        ] {
            let outcomes = entries(json!({"iss": TX, "aud": [AUD, "x"], "iat": NOW, "jti": "j",
                "sub_id": subject, "events": {event: {}}}));
            let got: Vec<_> = outcomes[0]
                .entries
                .iter()
                .map(|e| (e.kind, e.issuer.clone(), e.value.clone()))
                .collect();
            assert_eq!(got, want, "{event} {subject}");
            assert_eq!(outcomes[0].ignored.is_some(), want.is_empty());
        }
    }

    #[test]
    fn entries_carry_the_transmitter_as_operator_and_its_duration() {
        let outcomes = entries(claims(
            CREDENTIAL_CHANGE,
            json!({"subject": {"format": "iss_sub", "iss": TX, "sub": "bob"},
                "credential_type": "password", "change_type": "update"}),
        ));
        let entry = &outcomes[0].entries[0];
        assert_eq!(entry.operator, "ssf@authority.example");
        assert_eq!(entry.reason, "ssf: caep credential-change");
        assert_eq!((entry.created_at, entry.expires_at), (NOW, NOW + 3600));
        assert_eq!(outcomes[0].kind, EventKind::CredentialChange);
    }

    #[test]
    fn unknown_events_and_created_credentials_are_accepted_and_ignored() {
        let subject = json!({"format": "iss_sub", "iss": TX, "sub": "bob"});
        let outcomes = entries(json!({"iss": TX, "aud": AUD, "iat": NOW, "jti": "j",
        "sub_id": subject, "events": {
            "https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "x"},
            CREDENTIAL_CHANGE: {"change_type": "create", "credential_type": "fido2-roaming"},
        }}));
        let ignored: Vec<_> = outcomes.iter().map(|o| (o.kind, o.ignored)).collect();
        assert!(ignored.contains(&(EventKind::Other, Some(Ignored::EventType))));
        assert!(ignored.contains(&(
            EventKind::CredentialChange,
            Some(Ignored::CredentialCreated)
        )));
        assert!(outcomes.iter().all(|o| o.entries.is_empty()));
    }

    #[test]
    fn bad_sets_are_refused_with_their_rfc_8935_code() {
        let key = TestKey::es256(Some("k1"));
        let other = TestKey::es256(Some("k1"));
        let good = || claims(SESSION_REVOKED, json!({}));
        let with = |name: &str, value: Value| {
            let mut c = good();
            if value.is_null() {
                c.as_object_mut().unwrap().remove(name);
            } else {
                c[name] = value;
            }
            c
        };
        let verify_with = |signer: &TestKey, c: Value| {
            parse(set(signer, c).as_bytes())
                .and_then(|u| u.verify(&key_of(&key), &transmitter(), WINDOW, NOW))
                .map(|_| ())
                .map_err(|e| e.err())
        };
        assert_eq!(verify_with(&key, good()), Ok(()));
        for (signer, c, err) in [
            (&other, good(), "invalid_key"),
            (
                &key,
                with("aud", json!("https://elsewhere")),
                "invalid_audience",
            ),
            (&key, with("aud", Value::Null), "invalid_audience"),
            (&key, with("iss", json!("https://evil")), "invalid_issuer"),
            (&key, with("iat", Value::Null), "invalid_request"),
            (&key, with("iat", json!(NOW + 61)), "invalid_request"),
            (&key, with("iat", json!(NOW - 301)), "invalid_request"),
            (&key, with("jti", Value::Null), "invalid_request"),
            (&key, with("jti", json!("")), "invalid_request"),
            (&key, with("events", json!({})), "invalid_request"),
            (&key, with("events", Value::Null), "invalid_request"),
            (
                &key,
                with("events", json!({SESSION_REVOKED: "x"})),
                "invalid_request",
            ),
        ] {
            assert_eq!(verify_with(signer, c.clone()), Err(err), "{c}");
        }
        // Not a JWS, wrong typ, no iss.
        for body in [
            &b"not a jwt"[..],
            b"",
            key.token(&good()).as_bytes(),
            set(&key, with("iss", Value::Null)).as_bytes(),
        ] {
            assert_eq!(
                parse(body).map(|_| ()).map_err(|e| e.err()),
                Err("invalid_request")
            );
        }
        let long = vec![b'a'; MAX_SET_BYTES + 1];
        assert_eq!(parse(&long).unwrap_err().err(), "invalid_request");
    }

    #[test]
    fn an_unusable_subject_value_refuses_the_set() {
        let key = TestKey::es256(Some("k1"));
        let c = claims(
            SESSION_REVOKED,
            json!({"subject": {"format": "iss_sub", "iss": TX, "sub": "a\u{7}b"}}),
        );
        let err = checked(&key, c)
            .unwrap()
            .outcomes(&transmitter(), &|_| true, NOW)
            .unwrap_err();
        assert_eq!(err.err(), "invalid_request");
    }

    #[test]
    fn the_replay_key_depends_on_issuer_and_jti() {
        let key = TestKey::es256(Some("k1"));
        let a = checked(&key, claims(SESSION_REVOKED, json!({}))).unwrap();
        let b = checked(&key, claims(SESSION_REVOKED, json!({}))).unwrap();
        let mut c = claims(SESSION_REVOKED, json!({}));
        c["jti"] = json!("set-2");
        let c = checked(&key, c).unwrap();
        assert_eq!(a.replay_key(), b.replay_key());
        assert_ne!(a.replay_key(), c.replay_key());
        assert_eq!((a.jti(), a.iat(), a.issuer()), ("set-1", NOW - 5, TX));
    }
}
