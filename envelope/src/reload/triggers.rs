//! What makes a service reload its envelope configuration: SIGHUP, and a
//! change of the file `Router__ConfigFile` names. Both call
//! [`ServiceConfigHandle::reload`] on a blocking thread; its log lines say
//! what happened.
//!
//! The file's directory is watched, not only the file: editors, `kubectl`
//! and many deployment tools replace a file by writing a new one and
//! renaming it over the old, which a watch on the old file never sees. The
//! file itself is watched too (and the new file after each change), for a
//! file bind-mounted alone, whose changes made through another mount reach
//! only the file's own watch. Events are debounced: a burst of them (a
//! rename is several) is one reload once the directory has been quiet for
//! the debounce interval.

use super::ServiceConfigHandle;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which triggers to install.
#[derive(Clone, Debug)]
pub struct TriggerOptions {
    /// Reload on SIGHUP. Once installed, SIGHUP no longer ends the process.
    pub sighup: bool,
    /// Reload when the file `Router__ConfigFile` names changes.
    pub watch_file: bool,
    /// How long the file must stay quiet before a change is reloaded.
    pub debounce: Duration,
}

impl Default for TriggerOptions {
    fn default() -> TriggerOptions {
        TriggerOptions {
            sighup: true,
            watch_file: true,
            debounce: Duration::from_millis(200),
        }
    }
}

/// The running triggers. Dropping this leaves them running for the life of
/// the runtime; [`ReloadTriggers::abort`] stops them.
#[derive(Debug)]
pub struct ReloadTriggers {
    tasks: Vec<JoinHandle<()>>,
    watched_file: Option<PathBuf>,
}

impl ReloadTriggers {
    /// The file whose changes reload the configuration, if one is watched.
    pub fn watched_file(&self) -> Option<&Path> {
        self.watched_file.as_deref()
    }

    /// Stops the triggers. The SIGHUP handler stays installed (tokio never
    /// removes one), so a later SIGHUP is ignored rather than fatal.
    pub fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Installs the default triggers: SIGHUP, and changes of the file the
/// handle was loaded from (when `Router__ConfigFile` names one), debounced
/// by 200 ms. Must be called inside a tokio runtime. When it returns, the
/// SIGHUP handler is installed (a SIGHUP reloads and never ends the
/// process) and the file is watched.
pub fn spawn_reload_triggers(handle: Arc<ServiceConfigHandle>) -> io::Result<ReloadTriggers> {
    spawn_reload_triggers_with(handle, TriggerOptions::default())
}

/// [`spawn_reload_triggers`] with chosen triggers.
pub fn spawn_reload_triggers_with(
    handle: Arc<ServiceConfigHandle>,
    options: TriggerOptions,
) -> io::Result<ReloadTriggers> {
    let mut tasks = Vec::new();
    let mut watched_file = None;
    if options.sighup {
        let mut hangups = signal(SignalKind::hangup())?;
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                reload(&handle, "SIGHUP").await;
            }
        }));
    }
    if options.watch_file {
        if let Some(file) = handle.config_file().map(Path::to_path_buf) {
            tasks.push(watch_file(handle, file.clone(), options.debounce)?);
            watched_file = Some(file);
        }
    }
    Ok(ReloadTriggers {
        tasks,
        watched_file,
    })
}

async fn reload(handle: &Arc<ServiceConfigHandle>, trigger: &'static str) {
    tracing::info!(trigger, "reloading envelope configuration");
    let handle = handle.clone();
    // The outcome is logged by `reload` itself; a join error means the
    // blocking pool is shutting down with the runtime.
    let _ = tokio::task::spawn_blocking(move || handle.reload()).await;
}

fn watch_file(
    handle: Arc<ServiceConfigHandle>,
    file: PathBuf,
    debounce: Duration,
) -> io::Result<JoinHandle<()>> {
    let name = file
        .file_name()
        .map(OsString::from)
        .ok_or_else(|| io::Error::other(format!("{} names no file", file.display())))?;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Capacity 1: a pending reload already covers any later event.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) if concerns(&event, &name) => {
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("envelope configuration file watch: {e}"),
        })
        .map_err(|e| io::Error::other(format!("cannot watch {}: {e}", dir.display())))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| io::Error::other(format!("cannot watch {}: {e}", dir.display())))?;
    // Best effort: the directory watch alone sees every change made in it.
    let _ = watcher.watch(&file, RecursiveMode::NonRecursive);
    Ok(tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Quiet for `debounce`, or at most ten of them under a steady
            // stream of events.
            let started = Instant::now();
            while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {
                if started.elapsed() >= debounce * 10 {
                    break;
                }
            }
            // A file replaced by rename is a new inode: watch it too. (The
            // old inode's watch went with it; watching the same inode again
            // changes nothing.)
            let _ = watcher.watch(&file, RecursiveMode::NonRecursive);
            reload(&handle, "file change").await;
        }
    }))
}

/// Whether `event` may have changed the file called `name`. Reads are not
/// changes (the reload's own read would otherwise trigger the next reload),
/// nor are metadata changes. `..data` is the symlink a Kubernetes volume
/// swaps to publish new files.
fn concerns(event: &Event, name: &OsString) -> bool {
    let kind = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    };
    // No path: a rescan after lost events, which may have been ours.
    kind && (event.paths.is_empty()
        || event
            .paths
            .iter()
            .filter_map(|p| p.file_name())
            .any(|n| n == name || n == "..data"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_to_the_watched_name_concern_the_reload() {
        let name = OsString::from("envelope.env");
        let cases = [
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "/etc/s/envelope.env",
                true,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/etc/s/envelope.env",
                true,
            ),
            (
                EventKind::Create(CreateKind::File),
                "/etc/s/envelope.env",
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/etc/s/envelope.env",
                true,
            ),
            (
                EventKind::Remove(RemoveKind::File),
                "/etc/s/envelope.env",
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/etc/s/..data",
                true,
            ),
            // The reload's own read of the file.
            (
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/etc/s/envelope.env",
                false,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/etc/s/envelope.env",
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                "/etc/s/envelope.env",
                false,
            ),
            // Other files in the same directory.
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "/etc/s/other.env",
                false,
            ),
            (
                EventKind::Create(CreateKind::File),
                "/etc/s/envelope.env.swp",
                false,
            ),
        ];
        for (kind, path, want) in cases {
            assert_eq!(concerns(&event(kind, path), &name), want, "{kind:?} {path}");
        }
        assert!(concerns(&Event::new(EventKind::Other), &name));
    }
}
