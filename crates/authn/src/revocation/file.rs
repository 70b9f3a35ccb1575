//! The revocation list on disk, for a single node that restarts:
//! `{"format": "stella-gateway-revocations/1", "entries": [...]}`, written
//! atomically with mode 0600 (`stella_authority::lkg::write_private`: the
//! values are stored in full, because they are compared exactly) and read
//! at start. Expired entries are dropped when it is read.

use super::Entry;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The format this gateway writes and reads.
pub const FORMAT: &str = "stella-gateway-revocations/1";

/// Larger files are not read (100,000 entries of ordinary size fit).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why the file was not read. Fixed facts, never the file's content.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("is not a revocation list ({FORMAT})")]
    Format,
}

#[derive(Serialize, Deserialize)]
struct Document {
    format: String,
    entries: Vec<Entry>,
}

/// The file one gateway keeps its list in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries in the file; none when there is no file. The caller
    /// leaves out the expired ones ([`super::Denylist::replace_all`]).
    pub fn load(&self) -> Result<Vec<Entry>, StateFileError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateFileError::Unreadable(e.kind().to_string())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StateFileError::Unreadable(e.kind().to_string()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(StateFileError::TooLarge);
        }
        parse(&bytes)
    }

    /// Writes `entries` in place of the file's, atomically (mode 0600).
    pub fn save(&self, entries: &[Entry]) -> std::io::Result<()> {
        let bytes = serialize(entries)?;
        stella_authority::lkg::write_private(&self.path, &bytes)
    }
}

/// The file's content for `entries`.
pub fn serialize(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(&Document {
        format: FORMAT.to_owned(),
        entries: entries.to_vec(),
    })
    .map_err(std::io::Error::other)
}

/// The entries of a file's content. Pure.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, StateFileError> {
    match serde_json::from_slice::<Document>(bytes) {
        Ok(document) if document.format == FORMAT => Ok(document.entries),
        _ => Err(StateFileError::Format),
    }
}
