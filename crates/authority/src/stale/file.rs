//! A cache of answers on disk, so a gateway restarted while the Authority
//! is down still serves what it had learned (introspection results,
//! effective claims), within the same max-stale as before the restart.
//!
//! One file per issuer and cache, in the Authority's `state_dir`
//! (`<first 16 bytes of sha256(issuer), hex>-<what>.cache`), written
//! atomically with mode 0600 (`crate::lkg::write_private`). Its first line is
//! `stella-gateway-cache/1 <hex HMAC-SHA256 of the rest>`, the rest a JSON
//! document `{"issuer", "what", "written_at", "entries": [{"key",
//! "fresh_until", "value"}]}`. The MAC key is derived from the gateway's
//! client secret at this Authority, so a file that was cut short, corrupted
//! or written by someone without that secret is ignored as a whole (a
//! forged introspection answer would otherwise let a made-up token in).
//!
//! What goes in is the caller's: keys are hashes where the cache keys by
//! token (never a token), values the Authority's documents, which the
//! caller checks again on load exactly as a fetched answer. At most
//! `max_entries` entries (the freshest first) and [`MAX_FILE_BYTES`].

use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use stella_jose::JsonObject;

/// The record format this gateway writes and accepts.
pub const FORMAT: &str = "stella-gateway-cache/1";

/// Larger files are neither written nor read.
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// One cached answer: its key as the caller spells it, until when it is
/// fresh (unix seconds), and the document it is rebuilt from.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub key: String,
    pub fresh_until: u64,
    pub value: JsonObject,
}

/// Why a file was not used. Fixed facts, never the file's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("has no `{FORMAT}` line")]
    Format,
    #[error(
        "fails its integrity check (corrupt, cut short, or written with another client secret)"
    )]
    Integrity,
    #[error("is not a cache document for this issuer and cache")]
    Document,
}

/// The file of one cache of one issuer.
pub struct StaleFile {
    path: PathBuf,
    issuer: String,
    what: &'static str,
    key: ring::hmac::Key,
    max_entries: usize,
}

impl std::fmt::Debug for StaleFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaleFile")
            .field("path", &self.path)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl StaleFile {
    /// `secret`: the gateway's client secret at this Authority.
    pub fn new(
        dir: &Path,
        issuer: &str,
        what: &'static str,
        secret: &[u8],
        max_entries: usize,
    ) -> StaleFile {
        let digest = ring::digest::digest(&ring::digest::SHA256, issuer.as_bytes());
        let name = format!("{}-{what}.cache", hex(&digest.as_ref()[..16]));
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let label = format!("{FORMAT}\0{issuer}\0{what}");
        let derived = ring::hmac::sign(&root, label.as_bytes());
        StaleFile {
            path: dir.join(name),
            issuer: issuer.to_owned(),
            what,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
            max_entries,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `records` in place of the file: the freshest `max_entries`
    /// that fit in [`MAX_FILE_BYTES`]. Returns how many were written.
    pub fn save(&self, mut records: Vec<Record>, now: u64) -> std::io::Result<usize> {
        let bytes = self.serialize(&mut records, now)?;
        crate::lkg::write_private(&self.path, &bytes)?;
        Ok(records.len())
    }

    /// The file's bytes for `records`, which it trims to what is written.
    fn serialize(&self, records: &mut Vec<Record>, now: u64) -> std::io::Result<Vec<u8>> {
        records.sort_by_key(|r| std::cmp::Reverse(r.fresh_until));
        records.truncate(self.max_entries);
        let mut entries = Vec::with_capacity(records.len());
        let mut size = 0usize;
        for (i, r) in records.iter().enumerate() {
            let entry = json!({"key": r.key, "fresh_until": r.fresh_until, "value": r.value});
            size += entry.to_string().len() + 1;
            if size > MAX_FILE_BYTES - 4096 {
                records.truncate(i);
                break;
            }
            entries.push(entry);
        }
        let body = serde_json::to_vec(&json!({
            "issuer": self.issuer,
            "what": self.what,
            "written_at": now,
            "entries": entries,
        }))
        .map_err(std::io::Error::other)?;
        let tag = ring::hmac::sign(&self.key, &body);
        let mut out = format!("{FORMAT} {}\n", hex(tag.as_ref())).into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The records in the file; `None` when there is none. The caller
    /// checks each value and drops what may no longer serve.
    pub fn load(&self) -> Option<Result<Vec<Record>, Ignored>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(Ignored::Unreadable(e.kind().to_string()))),
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes) {
            return Some(Err(Ignored::Unreadable(e.kind().to_string())));
        }
        if bytes.len() > MAX_FILE_BYTES {
            return Some(Err(Ignored::TooLarge));
        }
        Some(self.parse(&bytes))
    }

    /// Checks the MAC, then the document. Pure.
    fn parse(&self, bytes: &[u8]) -> Result<Vec<Record>, Ignored> {
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(Ignored::Format)?;
        let (head, body) = (&bytes[..newline], &bytes[newline + 1..]);
        let head = std::str::from_utf8(head).map_err(|_| Ignored::Format)?;
        let tag = head
            .strip_prefix(FORMAT)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(unhex)
            .ok_or(Ignored::Format)?;
        ring::hmac::verify(&self.key, body, &tag).map_err(|_| Ignored::Integrity)?;
        let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(body) else {
            return Err(Ignored::Document);
        };
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str())
            || doc.get("what").and_then(Value::as_str) != Some(self.what)
        {
            return Err(Ignored::Document);
        }
        let Some(Value::Array(entries)) = doc.remove("entries") else {
            return Err(Ignored::Document);
        };
        let mut records = Vec::with_capacity(entries.len().min(self.max_entries));
        for entry in entries.into_iter().take(self.max_entries) {
            let Value::Object(mut entry) = entry else {
                return Err(Ignored::Document);
            };
            match (
                entry.remove("key"),
                entry.get("fresh_until").and_then(Value::as_u64),
                entry.remove("value"),
            ) {
                (Some(Value::String(key)), Some(fresh_until), Some(Value::Object(value))) => {
                    records.push(Record {
                        key,
                        fresh_until,
                        value,
                    })
                }
                _ => return Err(Ignored::Document),
            }
        }
        Ok(records)
    }
}

/// A cache's file and when it was last written: written again only when
/// the cache changed since.
#[derive(Debug)]
pub struct Persister {
    file: StaleFile,
    /// The cache's change count at the last write.
    written: std::sync::atomic::AtomicU64,
    /// The last write failed (logged once, until one succeeds).
    failing: std::sync::atomic::AtomicBool,
}

impl Persister {
    pub fn new(file: StaleFile) -> Persister {
        Persister {
            file,
            written: std::sync::atomic::AtomicU64::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn file(&self) -> &StaleFile {
        &self.file
    }

    /// Writes `records()` if `changes` (the cache's count) moved since the
    /// last write; the number written, `None` when nothing was due or the
    /// write failed (logged, without the content).
    pub fn write_if_changed(
        &self,
        changes: u64,
        now: u64,
        records: impl FnOnce() -> Vec<Record>,
    ) -> Option<usize> {
        use std::sync::atomic::Ordering;
        if self.written.swap(changes, Ordering::AcqRel) == changes {
            return None;
        }
        match self.file.save(records(), now) {
            Ok(n) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(file = %self.file.path.display(), "cache file written again");
                }
                Some(n)
            }
            Err(error) => {
                // Try again at the next round.
                self.written
                    .store(changes.wrapping_sub(1), Ordering::Release);
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        file = %self.file.path.display(),
                        %error,
                        "cannot persist the {} cache; a restart during an outage would start without it",
                        self.file.what
                    );
                }
                None
            }
        }
    }

    /// Reads the file at start: the records, or nothing with a warning
    /// naming the file and the reason.
    pub fn read(&self) -> Vec<Record> {
        match self.file.load() {
            None => Vec::new(),
            Some(Ok(records)) => records,
            Some(Err(reason)) => {
                tracing::warn!(
                    file = %self.file.path.display(),
                    %reason,
                    "persisted {} cache ignored",
                    self.file.what
                );
                Vec::new()
            }
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lowercase or uppercase hex; `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://authority.example";
    const NOW: u64 = 1_800_000_000;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stella-stale-file-{label}-{}-{}",
            std::process::id(),
            NOW
        ));
        let _ = std::fs::remove_dir_all(&dir);
        crate::lkg::check_state_dir(&dir).unwrap();
        dir
    }

    fn record(key: &str, fresh_until: u64) -> Record {
        Record {
            key: key.into(),
            fresh_until,
            value: json!({"sub": key}).as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn saved_records_load_back_the_freshest_first_within_the_bound() {
        let dir = temp_dir("roundtrip");
        let file = StaleFile::new(&dir, ISSUER, "claims", b"secret", 2);
        assert!(file.load().is_none(), "no file yet");
        let written = file
            .save(
                vec![
                    record("a", NOW + 1),
                    record("b", NOW + 3),
                    record("c", NOW + 2),
                ],
                NOW,
            )
            .unwrap();
        assert_eq!(written, 2);
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded, vec![record("b", NOW + 3), record("c", NOW + 2)]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_cut_or_foreign_file_is_ignored_as_a_whole() {
        let file = StaleFile::new(Path::new("/s"), ISSUER, "introspection", b"secret", 10);
        let mut records = vec![record("a", NOW + 60)];
        let good = file.serialize(&mut records, NOW).unwrap();
        assert_eq!(file.parse(&good).unwrap().len(), 1);

        // One byte of the body changed.
        let mut tampered = good.clone();
        let at = tampered.len() - 5;
        tampered[at] ^= 0x01;
        assert_eq!(file.parse(&tampered), Err(Ignored::Integrity));
        // Cut short.
        assert_eq!(
            file.parse(&good[..good.len() - 10]),
            Err(Ignored::Integrity)
        );
        assert_eq!(file.parse(&good[..20]), Err(Ignored::Format));
        assert_eq!(file.parse(b""), Err(Ignored::Format));
        // Written with another client secret, for another issuer or cache.
        let other_secret = StaleFile::new(Path::new("/s"), ISSUER, "introspection", b"other", 10);
        assert_eq!(other_secret.parse(&good), Err(Ignored::Integrity));
        let other_issuer = StaleFile::new(
            Path::new("/s"),
            "https://b.example",
            "introspection",
            b"secret",
            10,
        );
        assert_eq!(other_issuer.parse(&good), Err(Ignored::Integrity));
        let other_cache = StaleFile::new(Path::new("/s"), ISSUER, "claims", b"secret", 10);
        assert_eq!(other_cache.parse(&good), Err(Ignored::Integrity));
        assert_ne!(other_issuer.path(), file.path());
        assert_ne!(other_cache.path(), file.path());
    }
}
