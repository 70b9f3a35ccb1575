//! The configuration file watcher: a change to the configuration file, a
//! file it references or the policies folder reloads (debounced).

use crate::gateway::{Gateway, Snapshot, Trigger};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The files whose change triggers a reload: the configuration file, every
/// file it references, and the policies folder.
fn watched(config_path: &Path, snapshot: &Snapshot) -> Vec<PathBuf> {
    let mut paths = vec![config_path.to_path_buf()];
    paths.extend(snapshot.config.sources.iter().cloned());
    if let Some(dir) = &snapshot.config.policies_dir {
        paths.push(dir.clone());
    }
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect()
}

/// Whether an event on `path` concerns one of `watched` (a watched file, or
/// anything inside a watched folder). Event paths are a watched folder
/// (resolved) and a name, so only a name that is itself a link needs
/// resolving: another file in the folder (a busy log) costs one `lstat`,
/// not a `readlink` per path component.
fn concerns(path: &Path, watched: &[PathBuf]) -> bool {
    let inside = |path: &Path| {
        watched
            .iter()
            .any(|w| path == w || path.parent() == Some(w.as_path()) || path.starts_with(w))
    };
    if inside(path) {
        return true;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(path).is_ok_and(|target| inside(&target))
        }
        _ => false,
    }
}

/// Reloads when a watched file changes. Watches the parent folders (editors
/// and volume mounts replace files by rename), filters by path, and waits
/// for the changes to settle before reloading.
pub struct ConfigWatcher {
    pub gateway: Arc<Gateway>,
}

/// Changes closer together than this are one change.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A file that keeps changing is reloaded at least this often.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);
/// Events on other files in the watched folders (a busy log) rebuild the
/// list of watched files at most this often; a reload rebuilds it at once.
const REBUILD_AT_MOST: Duration = Duration::from_secs(1);

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if !matches!(event.kind, notify::EventKind::Access(_)) {
                        for path in event.paths {
                            let _ = tx.send(path);
                        }
                    }
                }
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the configuration files; SIGHUP and POST /reload still work");
                return;
            }
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut files: Vec<PathBuf> = Vec::new();
        // When the list of watched files was last built (None: build it).
        let mut built: Option<tokio::time::Instant> = None;
        let mut generation = self.gateway.reload.subscribe();
        loop {
            // Watch what the current snapshot reads.
            if built.is_none_or(|at| at.elapsed() >= REBUILD_AT_MOST) {
                let snapshot = self.gateway.current();
                files = watched(&self.gateway.config_path, &snapshot);
                let mut want: Vec<PathBuf> = files
                    .iter()
                    .flat_map(|f| {
                        let parent = f.parent().map(Path::to_path_buf);
                        [Some(f.clone()).filter(|f| f.is_dir()), parent]
                    })
                    .flatten()
                    .collect();
                want.sort();
                want.dedup();
                for dir in dirs.iter().filter(|d| !want.contains(d)) {
                    let _ = watcher.unwatch(dir);
                }
                for dir in want.iter().filter(|d| !dirs.contains(d)) {
                    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder");
                    }
                }
                dirs = want;
                built = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = generation.changed() => {
                    built = None;
                    continue;
                }
                Some(path) = rx.recv() => {
                    if !concerns(&path, &files) {
                        continue;
                    }
                    // Settle: wait until DEBOUNCE passes without another
                    // change to a watched file (other files in the same
                    // folders, such as a busy log, do not count), and never
                    // longer than SETTLE_AT_MOST.
                    let started = tokio::time::Instant::now();
                    let mut quiet_since = started;
                    while started.elapsed() < SETTLE_AT_MOST {
                        let left = DEBOUNCE.saturating_sub(quiet_since.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        match tokio::time::timeout(left, rx.recv()).await {
                            Ok(Some(path)) if concerns(&path, &files) => {
                                quiet_since = tokio::time::Instant::now();
                            }
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                    self.gateway.reload(Trigger::FileChange).await;
                    built = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_inside_watched_folders_and_on_watched_files_concern_us() {
        let dir = std::env::temp_dir();
        let watched = vec![dir.join("gateway.yaml"), dir.join("policies")];
        assert!(concerns(&dir.join("gateway.yaml"), &watched));
        assert!(concerns(&dir.join("policies").join("a.yaml"), &watched));
        assert!(!concerns(&dir.join("other.yaml"), &watched));
    }

    #[test]
    fn a_link_concerns_us_by_its_target_and_another_file_only_by_its_path() {
        let root = std::env::temp_dir().join(format!("stella-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (real, links) = (root.join("..2026_12_07"), root.join("mounted"));
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&links).unwrap();
        let config = real.join("gateway.yaml");
        std::fs::write(&config, "gateway: {}\n").unwrap();
        std::fs::write(real.join("other.yaml"), "").unwrap();
        std::fs::write(links.join("gateway.err"), "").unwrap();
        std::os::unix::fs::symlink(&config, links.join("gateway.yaml")).unwrap();
        std::os::unix::fs::symlink(real.join("other.yaml"), links.join("other.yaml")).unwrap();
        let watched = vec![std::fs::canonicalize(&config).unwrap()];
        // A link to a watched file, in a folder watched for another file.
        assert!(concerns(&links.join("gateway.yaml"), &watched));
        // A link elsewhere, a plain file, a file gone: none of ours.
        assert!(!concerns(&links.join("other.yaml"), &watched));
        assert!(!concerns(&links.join("gateway.err"), &watched));
        assert!(!concerns(&links.join("gone.yaml"), &watched));
        // The watched file itself, also once deleted (its event comes after).
        assert!(concerns(&watched[0], &watched));
        std::fs::remove_file(&config).unwrap();
        assert!(concerns(&watched[0], &watched));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
