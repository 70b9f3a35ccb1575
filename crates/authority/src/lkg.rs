//! The Authority's last-known-good documents, persisted on disk.
//!
//! Each successful discovery and JWKS fetch is written to the configured
//! state folder, so a gateway restarted while the Authority is down serves
//! with what it had; staleness keeps counting from the fetch, not from the
//! restart. A record is
//! `{"format", "issuer", "what", "fetched_at", "document"}`, one file per
//! issuer and document, named after a hash of the issuer so that several
//! issuers never share a file.
//!
//! Only public material is written (metadata and public keys). A record
//! is trusted only if its format, issuer (byte for byte) and kind match and
//! its fetch time is not in the future; the caller then checks the
//! document exactly as a fetched one. Anything else is ignored with a
//! reason from a fixed set, never with the file's content.

use serde_json::{json, Value};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use stella_jose::JsonObject;

/// The record format this gateway writes and accepts.
pub const FORMAT: &str = "stella-gateway-lkg/1";

/// How far in the future a record's `fetched_at` may be (clock skew
/// between the writing and the reading process) before it is ignored.
pub const FUTURE_SKEW_SECONDS: u64 = 60;

/// Larger files are not read: the fetch itself is capped at 1 MiB.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Which document a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum What {
    Discovery,
    Jwks,
}

impl What {
    /// The record's `what` member and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            What::Discovery => "discovery",
            What::Jwks => "jwks",
        }
    }
}

/// Why a persisted record was not used. Messages are fixed facts, never
/// the file's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("is not a json object")]
    NotJson,
    #[error("has an unknown `format` (expected {FORMAT})")]
    Format,
    #[error("was written for another issuer")]
    ForeignIssuer,
    #[error("holds another kind of document (`what`)")]
    WrongKind,
    #[error("has no valid `fetched_at`")]
    FetchedAt,
    #[error("was fetched in the future ({seconds} s ahead of this clock)")]
    Future { seconds: u64 },
    #[error("has no `document` object")]
    NoDocument,
    #[error("document fails the checks of a fetched one: {0}")]
    Invalid(String),
}

/// The state folder of one issuer.
#[derive(Clone, Debug)]
pub struct LkgStore {
    dir: PathBuf,
    issuer: String,
}

impl LkgStore {
    pub fn new(dir: &Path, issuer: &str) -> LkgStore {
        LkgStore {
            dir: dir.to_owned(),
            issuer: issuer.to_owned(),
        }
    }

    /// `<dir>/<first 16 bytes of sha256(issuer), hex>-<what>.json`.
    pub fn path(&self, what: What) -> PathBuf {
        self.dir.join(file_name(&self.issuer, what))
    }

    /// Writes the record atomically: a temporary file in the same folder
    /// (mode 0600), fsync, rename over the old one, fsync of the folder.
    pub fn save(&self, what: What, document: &JsonObject, fetched_at: u64) -> std::io::Result<()> {
        let record = json!({
            "format": FORMAT,
            "issuer": self.issuer,
            "what": what.as_str(),
            "fetched_at": fetched_at,
            "document": document,
        });
        let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        write_private(&self.path(what), &bytes)
    }

    /// Reads the record for `what` and checks its envelope; `None` when
    /// there is no file. The caller validates the document itself.
    pub fn load(&self, what: What, now: u64) -> Option<Result<(JsonObject, u64), Ignored>> {
        let path = self.path(what);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(Ignored::Unreadable(e.kind().to_string()))),
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
            return Some(Err(Ignored::Unreadable(e.kind().to_string())));
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Some(Err(Ignored::TooLarge));
        }
        Some(parse_record(&bytes, &self.issuer, what, now))
    }
}

/// Checks a record's envelope: format, issuer, kind, fetch time. Pure.
pub fn parse_record(
    bytes: &[u8],
    issuer: &str,
    what: What,
    now: u64,
) -> Result<(JsonObject, u64), Ignored> {
    let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Ignored::NotJson);
    };
    if record.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(Ignored::Format);
    }
    if record.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(Ignored::ForeignIssuer);
    }
    if record.get("what").and_then(Value::as_str) != Some(what.as_str()) {
        return Err(Ignored::WrongKind);
    }
    let fetched_at = record
        .get("fetched_at")
        .and_then(Value::as_u64)
        .ok_or(Ignored::FetchedAt)?;
    if fetched_at > now.saturating_add(FUTURE_SKEW_SECONDS) {
        return Err(Ignored::Future {
            seconds: fetched_at - now,
        });
    }
    match record.remove("document") {
        Some(Value::Object(document)) => Ok((document, fetched_at)),
        _ => Err(Ignored::NoDocument),
    }
}

fn file_name(issuer: &str, what: What) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, issuer.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}-{}.json", what.as_str())
}

/// Writes `bytes` to `target` atomically, readable by this user only: a
/// temporary file in the same folder (mode 0600), fsync, rename over the
/// old one, fsync of the folder. A reader sees the old file or the new one,
/// never a part. The state files of the gateway (these records, the
/// revocation list) are all written this way.
pub fn write_private(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = open_private(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the folder is synced; a failure here
    // leaves a complete file either way.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// What `check` may say about a state folder without touching the disk
/// beyond looking: an existing path must be a folder; a missing one needs an
/// existing ancestor that is a folder (it is created, with
/// [`check_state_dir`], when the gateway starts).
pub fn inspect_state_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return if dir.is_dir() {
            Ok(())
        } else {
            Err(format!("{} is not a folder", dir.display()))
        };
    }
    match dir.ancestors().skip(1).find(|a| a.exists()) {
        Some(ancestor) if !ancestor.is_dir() => Err(format!(
            "folder {} cannot be created: {} is not a folder",
            dir.display(),
            ancestor.display()
        )),
        _ => Ok(()),
    }
}

/// Makes `dir` ready to hold the state when the gateway starts (or a reload
/// names a new one): created if absent (mode 0700), a folder, writable. The
/// error is a sentence for the operator.
pub fn check_state_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| format!("folder {} cannot be created: {}", dir.display(), e.kind()))?;
    }
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let written = open_private(&probe).and_then(|mut f| f.write_all(b"probe"));
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| format!("folder {} is not writable: {}", dir.display(), e.kind()))
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://authority.example";
    const NOW: u64 = 1_800_000_000;

    fn temp_dir(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stella-lkg-{label}-{}-{}", std::process::id(), NOW));
        let _ = std::fs::remove_dir_all(&dir);
        check_state_dir(&dir).unwrap();
        dir
    }

    fn jwks() -> JsonObject {
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})
        .as_object()
        .cloned()
        .unwrap()
    }

    fn record(change: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut r = json!({"format": FORMAT, "issuer": ISSUER, "what": "jwks",
            "fetched_at": NOW - 100, "document": jwks()});
        change(&mut r);
        serde_json::to_vec(&r).unwrap()
    }

    #[test]
    fn saved_record_loads_back_with_its_fetch_time() {
        let dir = temp_dir("roundtrip");
        let store = LkgStore::new(&dir, ISSUER);
        store.save(What::Jwks, &jwks(), NOW - 500).unwrap();
        let (doc, fetched_at) = store.load(What::Jwks, NOW).unwrap().unwrap();
        assert_eq!(doc, jwks());
        assert_eq!(fetched_at, NOW - 500);
        // Another kind of document is another file.
        assert!(store.load(What::Discovery, NOW).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path(What::Jwks))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_leaves_only_the_record_behind() {
        let dir = temp_dir("atomic");
        let store = LkgStore::new(&dir, ISSUER);
        store.save(What::Jwks, &jwks(), NOW - 2).unwrap();
        store.save(What::Jwks, &jwks(), NOW - 1).unwrap();
        store.save(What::Discovery, &jwks(), NOW).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
        assert_eq!(store.load(What::Jwks, NOW).unwrap().unwrap().1, NOW - 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issuers_never_share_a_file() {
        let a = LkgStore::new(Path::new("/s"), ISSUER);
        let b = LkgStore::new(Path::new("/s"), "https://authority.example/");
        assert_ne!(a.path(What::Jwks), b.path(What::Jwks));
        assert_ne!(a.path(What::Jwks), a.path(What::Discovery));
    }

    #[test]
    fn records_that_do_not_match_are_ignored_with_their_reason() {
        let cases: Vec<(Vec<u8>, Ignored)> = vec![
            (b"{\"format\": \"stella-gat".to_vec(), Ignored::NotJson),
            (b"[1, 2]".to_vec(), Ignored::NotJson),
            (
                record(|r| r["format"] = json!("stella-gateway-lkg/2")),
                Ignored::Format,
            ),
            (
                record(|r| r["issuer"] = json!("https://other.example")),
                Ignored::ForeignIssuer,
            ),
            (
                record(|r| r["issuer"] = json!("https://authority.example/")),
                Ignored::ForeignIssuer,
            ),
            (
                record(|r| r["what"] = json!("discovery")),
                Ignored::WrongKind,
            ),
            (record(|r| r["fetched_at"] = json!(-5)), Ignored::FetchedAt),
            (
                record(|r| r["fetched_at"] = json!(NOW + 3600)),
                Ignored::Future { seconds: 3600 },
            ),
            (record(|r| r["document"] = json!("x")), Ignored::NoDocument),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse_record(&bytes, ISSUER, What::Jwks, NOW).unwrap_err(),
                expected
            );
        }
        // Small skew between processes is tolerated.
        let skewed = record(|r| r["fetched_at"] = json!(NOW + 30));
        assert!(parse_record(&skewed, ISSUER, What::Jwks, NOW).is_ok());
    }

    #[test]
    fn ignore_reasons_never_carry_the_file_content() {
        let bytes = record(|r| r["issuer"] = json!("https://secret-issuer.example"));
        let err = parse_record(&bytes, ISSUER, What::Jwks, NOW).unwrap_err();
        assert!(!err.to_string().contains("secret-issuer"), "{err}");
    }

    #[test]
    fn state_dir_that_is_a_file_is_refused() {
        let dir = temp_dir("not-a-folder");
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = check_state_dir(&file).unwrap_err();
        assert!(err.contains("is not a folder"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
