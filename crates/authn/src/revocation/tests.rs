use super::*;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://authority.example";

/// A caller's identifiers, as a table.
#[derive(Default)]
struct Ids {
    issuer: Option<&'static str>,
    values: Vec<(Kind, String)>,
}

impl Ids {
    fn of(kind: Kind, value: &str) -> Ids {
        Ids {
            issuer: Some(ISSUER),
            values: vec![(kind, value.to_owned())],
        }
    }
}

impl Identifiers for Ids {
    fn issuer(&self) -> Option<&str> {
        self.issuer
    }

    fn values(&self, kind: Kind) -> [Option<&str>; 2] {
        let mut found = self
            .values
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_str());
        [found.next(), found.next()]
    }
}

/// A value of the right shape for `kind`, made from `seed`.
fn value(kind: Kind, seed: &str) -> String {
    match kind {
        Kind::Jkt | Kind::X5tS256 => format!("{seed:_<43}"),
        Kind::SpiffeId => format!("spiffe://example.org/{seed}"),
        _ => seed.to_owned(),
    }
}

fn entry(kind: Kind, value: &str) -> Entry {
    Entry {
        kind,
        issuer: (kind == Kind::Sub).then(|| ISSUER.to_owned()),
        value: value.to_owned(),
        reason: "incident 42".into(),
        operator: "alice".into(),
        created_at: NOW,
        expires_at: NOW + 3600,
    }
}

fn hit_kind(list: &Denylist, ids: &Ids, now: u64) -> Option<Kind> {
    list.check(ids, now).map(|r| r.kind())
}

#[test]
fn an_empty_list_refuses_nobody_and_says_so_with_one_flag() {
    let list = Denylist::new();
    assert!(list.is_empty());
    assert_eq!(hit_kind(&list, &Ids::of(Kind::Jti, "t1"), NOW), None);
    list.upsert(entry(Kind::Jti, "t1"), NOW).unwrap();
    assert!(!list.is_empty());
    list.remove(Kind::Jti, "t1", None).unwrap();
    assert!(
        list.is_empty(),
        "the flag comes back once the last entry goes"
    );
}

#[test]
fn a_distrusted_list_stays_distrusted_through_changes_and_its_entries_still_refuse() {
    let list = Denylist::new();
    assert!(list.is_quiet());
    assert!(list.set_distrusted(true));
    assert!(!list.set_distrusted(true), "no change the second time");
    assert!(!list.is_quiet() && list.is_distrusted() && list.is_empty());
    list.upsert(entry(Kind::Jti, "t1"), NOW).unwrap();
    assert!(list.is_distrusted(), "a change keeps the flag");
    assert_eq!(
        hit_kind(&list, &Ids::of(Kind::Jti, "t1"), NOW),
        Some(Kind::Jti)
    );
    list.replace_all(Vec::new(), NOW);
    assert!(list.is_distrusted() && list.is_empty());
    assert!(list.set_distrusted(false));
    assert!(list.is_quiet());
}

#[test]
fn each_kind_refuses_exactly_the_callers_with_that_identifier() {
    for kind in Kind::ALL {
        let list = Denylist::new();
        let revoked = value(kind, "revoked-value");
        list.upsert(entry(kind, &revoked), NOW).unwrap();
        assert_eq!(
            hit_kind(&list, &Ids::of(kind, &revoked), NOW),
            Some(kind),
            "{kind}"
        );
        assert_eq!(
            hit_kind(&list, &Ids::of(kind, &value(kind, "another-value")), NOW),
            None,
            "{kind}: another value"
        );
        assert_eq!(
            hit_kind(&list, &Ids::of(kind, &value(kind, "Revoked-value")), NOW),
            None,
            "{kind}: values compare exactly"
        );
        // The same string as another kind's identifier is not this entry.
        for other in Kind::ALL.into_iter().filter(|k| *k != kind) {
            assert_eq!(
                hit_kind(&list, &Ids::of(other, &revoked), NOW),
                None,
                "{kind} entry, {other} identifier"
            );
        }
    }
}

#[test]
fn a_second_identifier_of_the_same_kind_is_checked_too() {
    let list = Denylist::new();
    list.upsert(entry(Kind::X5tS256, &value(Kind::X5tS256, "cert-b")), NOW)
        .unwrap();
    let ids = Ids {
        issuer: None,
        values: vec![
            (Kind::X5tS256, value(Kind::X5tS256, "cert-a")),
            (Kind::X5tS256, value(Kind::X5tS256, "cert-b")),
        ],
    };
    assert_eq!(hit_kind(&list, &ids, NOW), Some(Kind::X5tS256));
}

#[test]
fn a_subject_is_revoked_for_its_issuer_only() {
    let list = Denylist::new();
    list.upsert(entry(Kind::Sub, "alice"), NOW).unwrap();
    let mut ids = Ids::of(Kind::Sub, "alice");
    assert_eq!(hit_kind(&list, &ids, NOW), Some(Kind::Sub));
    ids.issuer = Some("https://other.example");
    assert_eq!(hit_kind(&list, &ids, NOW), None);
    ids.issuer = None;
    assert_eq!(hit_kind(&list, &ids, NOW), None);

    // The same subject at two issuers: two entries.
    let mut other = entry(Kind::Sub, "alice");
    other.issuer = Some("https://other.example".into());
    assert_eq!(list.upsert(other, NOW).unwrap().0, Upserted::Added);
    ids.issuer = Some("https://other.example");
    assert_eq!(hit_kind(&list, &ids, NOW), Some(Kind::Sub));
    assert_eq!(list.len(), 2);
}

#[test]
fn a_jti_client_id_or_sid_can_be_revoked_for_one_issuer_or_for_any() {
    for kind in [Kind::Jti, Kind::ClientId, Kind::Sid] {
        let list = Denylist::new();
        let mut scoped = entry(kind, "web");
        scoped.issuer = Some(ISSUER.into());
        list.upsert(scoped, NOW).unwrap();
        let mut ids = Ids::of(kind, "web");
        assert_eq!(hit_kind(&list, &ids, NOW), Some(kind), "{kind}");
        ids.issuer = Some("https://other.example");
        assert_eq!(hit_kind(&list, &ids, NOW), None, "{kind}: another issuer's");
        // One for any issuer beside it: a second entry, which refuses both.
        list.upsert(entry(kind, "web"), NOW).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(hit_kind(&list, &ids, NOW), Some(kind), "{kind}");
        // Removing the scoped one leaves the one for any issuer.
        assert_eq!(list.remove(kind, "web", Some(ISSUER)).unwrap().len(), 1);
        assert_eq!(list.entries()[0].issuer, None);
    }
    for kind in [Kind::Jkt, Kind::X5tS256, Kind::SpiffeId, Kind::Tenant] {
        let mut e = entry(kind, &value(kind, "k"));
        e.issuer = Some(ISSUER.into());
        assert_eq!(
            e.check(NOW),
            Err(RevocationError::IssuerNotAllowed),
            "{kind}"
        );
    }
}

#[test]
fn an_entry_refuses_until_its_expiry_and_is_swept_after() {
    let list = Denylist::new();
    list.upsert(entry(Kind::ClientId, "svc"), NOW).unwrap();
    let ids = Ids::of(Kind::ClientId, "svc");
    assert!(list.check(&ids, NOW + 3599).is_some());
    assert!(
        list.check(&ids, NOW + 3600).is_none(),
        "expired at expires_at"
    );
    assert!(list.sweep(NOW + 3599).is_empty());
    let swept = list.sweep(NOW + 3600);
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].kind(), Kind::ClientId);
    assert!(list.is_empty());
}

#[test]
fn hits_are_counted_per_entry() {
    let list = Denylist::new();
    let key1 = value(Kind::Jkt, "key-1");
    list.upsert(entry(Kind::Jkt, &key1), NOW).unwrap();
    list.upsert(entry(Kind::Jkt, &value(Kind::Jkt, "key-2")), NOW)
        .unwrap();
    for _ in 0..3 {
        list.check(&Ids::of(Kind::Jkt, &key1), NOW).unwrap();
    }
    let hits: Vec<u64> = list.records().iter().map(|r| r.hits()).collect();
    assert_eq!(hits, [3, 0]);
}

#[test]
fn a_second_revocation_of_one_identifier_replaces_the_first() {
    let list = Denylist::new();
    assert_eq!(
        list.upsert(entry(Kind::Jti, "t"), NOW).unwrap().0,
        Upserted::Added
    );
    let mut longer = entry(Kind::Jti, "t");
    longer.expires_at = NOW + 7200;
    longer.reason = "still compromised".into();
    assert_eq!(list.upsert(longer, NOW).unwrap().0, Upserted::Replaced);
    assert_eq!(list.len(), 1);
    assert_eq!(list.entries()[0].expires_at, NOW + 7200);
    assert!(list.check(&Ids::of(Kind::Jti, "t"), NOW + 5000).is_some());
}

#[test]
fn entries_are_removed_by_value_by_hash_or_by_an_unambiguous_hash_prefix() {
    let list = Denylist::new();
    let hash = value_sha256("client-a");
    for selector in [
        "client-a".to_owned(),
        hash.clone(),
        hash[..HASH_PREFIX_LEN].to_owned(),
        hash[..MIN_SELECTOR_HEX].to_owned(),
    ] {
        list.upsert(entry(Kind::ClientId, "client-a"), NOW).unwrap();
        let removed = list.remove(Kind::ClientId, &selector, None).unwrap();
        assert_eq!(removed.len(), 1, "{selector}");
        assert!(list.is_empty());
    }
    list.upsert(entry(Kind::ClientId, "client-a"), NOW).unwrap();
    // Too short a prefix, another kind, another value: nothing.
    assert!(list
        .remove(Kind::ClientId, &hash[..MIN_SELECTOR_HEX - 1], None)
        .unwrap()
        .is_empty());
    assert!(list.remove(Kind::Jti, &hash, None).unwrap().is_empty());
    assert!(list
        .remove(Kind::ClientId, "client-b", None)
        .unwrap()
        .is_empty());
    assert_eq!(list.len(), 1);
}

#[test]
fn a_hash_prefix_shared_by_two_values_removes_nothing() {
    // Two values whose hashes share their first MIN_SELECTOR_HEX digits
    // (a birthday search over 2^32 prefixes: some 80,000 hashes).
    let mut seen: HashMap<String, String> = HashMap::new();
    let (a, b) = (0u64..)
        .find_map(|i| {
            let value = format!("value-{i}");
            let prefix = value_sha256(&value)[..MIN_SELECTOR_HEX].to_owned();
            seen.insert(prefix, value.clone())
                .map(|other| (other, value))
        })
        .expect("a collision");
    let list = Denylist::new();
    list.upsert(entry(Kind::Tenant, &a), NOW).unwrap();
    list.upsert(entry(Kind::Tenant, &b), NOW).unwrap();
    let (ha, hb) = (value_sha256(&a), value_sha256(&b));
    assert_eq!(
        list.remove(Kind::Tenant, &ha[..MIN_SELECTOR_HEX], None)
            .unwrap_err(),
        RevocationError::Ambiguous
    );
    assert_eq!(list.len(), 2);
    // Enough digits to tell them apart: one goes.
    let common = ha
        .bytes()
        .zip(hb.bytes())
        .take_while(|(x, y)| x == y)
        .count();
    let removed = list.remove(Kind::Tenant, &ha[..=common], None).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(list.entries()[0].value, b);
}

#[test]
fn removing_a_subject_can_be_narrowed_to_one_issuer() {
    let list = Denylist::new();
    list.upsert(entry(Kind::Sub, "bob"), NOW).unwrap();
    let mut other = entry(Kind::Sub, "bob");
    other.issuer = Some("https://other.example".into());
    list.upsert(other, NOW).unwrap();
    let removed = list
        .remove(Kind::Sub, "bob", Some("https://other.example"))
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(list.entries()[0].issuer.as_deref(), Some(ISSUER));
    assert_eq!(list.remove(Kind::Sub, "bob", None).unwrap().len(), 1);
    assert!(list.is_empty());
}

#[test]
fn invalid_entries_are_refused_without_quoting_the_value() {
    type Change = Box<dyn Fn(&mut Entry)>;
    let cases: Vec<(Change, RevocationError)> = vec![
        (Box::new(|e| e.value.clear()), RevocationError::EmptyValue),
        (
            Box::new(|e| e.value = "x".repeat(MAX_VALUE_BYTES + 1)),
            RevocationError::ValueTooLong,
        ),
        (
            Box::new(|e| e.value = "a\nb".into()),
            RevocationError::ControlCharacter("value"),
        ),
        (
            Box::new(|e| {
                e.kind = Kind::Tenant;
                e.issuer = Some(ISSUER.into());
            }),
            RevocationError::IssuerNotAllowed,
        ),
        (
            Box::new(|e| e.issuer = Some(String::new())),
            RevocationError::IssuerRequired,
        ),
        (
            Box::new(|e| e.reason = " ".into()),
            RevocationError::EmptyReason,
        ),
        (
            Box::new(|e| e.reason = "r".repeat(MAX_REASON_CHARS + 1)),
            RevocationError::ReasonTooLong,
        ),
        (
            Box::new(|e| e.reason = "line\nbreak".into()),
            RevocationError::ControlCharacter("reason"),
        ),
        (
            Box::new(|e| e.operator = "al ice".into()),
            RevocationError::Operator,
        ),
        (Box::new(|e| e.operator.clear()), RevocationError::Operator),
        (Box::new(|e| e.expires_at = NOW), RevocationError::Expired),
        (
            Box::new(|e| e.expires_at = NOW + MAX_LIFETIME_SECONDS + 1),
            RevocationError::TooLong,
        ),
    ];
    for (change, want) in cases {
        let mut e = entry(Kind::Jti, "secret-jti-marker");
        change(&mut e);
        let err = Denylist::new().upsert(e, NOW).unwrap_err();
        assert_eq!(err, want);
        assert!(!err.to_string().contains("secret-jti-marker"));
    }
    assert_eq!(
        entry(Kind::Jkt, "not-a-thumbprint").check(NOW),
        Err(RevocationError::Thumbprint)
    );
    assert_eq!(
        entry(Kind::X5tS256, &format!("{:=<43}", "padded")).check(NOW),
        Err(RevocationError::Thumbprint)
    );
    assert_eq!(
        entry(Kind::SpiffeId, "example.org/workload").check(NOW),
        Err(RevocationError::SpiffeId)
    );
    let mut sub = entry(Kind::Sub, "carol");
    sub.issuer = None;
    assert_eq!(sub.check(NOW), Err(RevocationError::IssuerRequired));
    sub.issuer = Some(String::new());
    assert_eq!(sub.check(NOW), Err(RevocationError::IssuerRequired));
}

#[test]
fn debug_output_shows_a_hash_never_the_value() {
    let list = Denylist::new();
    let marker = value(Kind::Jkt, "value-marker-9f");
    list.upsert(entry(Kind::Jkt, &marker), NOW).unwrap();
    let record = list.records().pop().unwrap();
    let text = format!("{record:?} {:?} {list:?}", record.entry());
    assert!(!text.contains("value-marker-9f"), "{text}");
    assert!(text.contains(record.hash_prefix()), "{text}");
    assert_eq!(record.value_sha256(), value_sha256(&marker));
    assert_eq!(record.hash_prefix().len(), HASH_PREFIX_LEN);
}

#[test]
fn replacing_the_whole_list_drops_expired_and_invalid_entries_and_keeps_hit_counts() {
    let list = Denylist::new();
    list.upsert(entry(Kind::Jti, "kept"), NOW).unwrap();
    list.check(&Ids::of(Kind::Jti, "kept"), NOW).unwrap();
    let mut expired = entry(Kind::Jti, "old");
    expired.expires_at = NOW - 1;
    expired.created_at = NOW - 100;
    let mut invalid = entry(Kind::Jti, "bad");
    invalid.operator = "no spaces allowed".into();
    let outcome = list.replace_all(
        vec![
            entry(Kind::Jti, "kept"),
            expired,
            invalid,
            entry(Kind::Tenant, "globex"),
        ],
        NOW,
    );
    assert_eq!(
        outcome,
        Replaced {
            kept: 2,
            expired: 1,
            invalid: 1,
            changed: true
        }
    );
    let hits: Vec<(Kind, u64)> = list
        .records()
        .iter()
        .map(|r| (r.kind(), r.hits()))
        .collect();
    assert_eq!(hits, [(Kind::Jti, 1), (Kind::Tenant, 0)]);
    let version = list.version();
    let again = list.replace_all(list.entries(), NOW);
    assert!(!again.changed);
    assert_eq!(list.version(), version, "an identical list changes nothing");
}

#[test]
fn an_entry_made_by_another_clock_is_judged_by_its_expiry_only() {
    // A replica whose clock is behind reads an entry created "in the
    // future": still valid, as long as it has not expired here.
    let list = Denylist::new();
    let mut ahead = entry(Kind::Jti, "t");
    ahead.created_at = NOW + 30;
    ahead.expires_at = NOW + 60;
    assert_eq!(list.replace_all(vec![ahead], NOW).kept, 1);
}

#[test]
fn kinds_have_one_name_everywhere() {
    for kind in Kind::ALL {
        assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::json!(kind.as_str())
        );
    }
    assert_eq!(Kind::parse("x5t_s256"), Some(Kind::X5tS256));
    assert_eq!(Kind::parse("JTI"), None);
    assert_eq!(Kind::parse("x5t"), None);
}

#[test]
fn the_state_file_round_trips_with_mode_0600_and_refuses_other_documents() {
    let dir = std::env::temp_dir().join(format!(
        "stella-revocation-test-{}-{}",
        std::process::id(),
        NOW
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = StateFile::new(&dir.join("revocations.json"));
    assert_eq!(file.load(), Ok(Vec::new()), "no file: no entries");
    let entries = vec![
        entry(Kind::Sub, "dave"),
        entry(Kind::X5tS256, &value(Kind::X5tS256, "thumb")),
    ];
    file.save(&entries).unwrap();
    assert_eq!(file.load().unwrap(), entries);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(file.path(), br#"{"format":"other/1","entries":[]}"#).unwrap();
    assert_eq!(file.load(), Err(StateFileError::Format));
    std::fs::write(file.path(), b"not json").unwrap();
    assert_eq!(file.load(), Err(StateFileError::Format));
    std::fs::remove_dir_all(&dir).unwrap();
}
