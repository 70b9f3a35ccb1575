//! The end of a benchmark run, however it comes: at the last line, on an
//! error, or on SIGINT, SIGTERM or SIGHUP. Every process the benchmark
//! started is a direct child of this one (the Authority, HAProxy, the
//! gateway, wrk, valgrind, token.mjs), so the end stops exactly those, by
//! pid from `/proc` (never by name): SIGTERM to each, then SIGKILL to what is
//! still running after the grace time (a Pingora server may drain for a
//! while). Then the scratch folders are removed and the process exits.

use super::procfs;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the started processes get to exit on SIGTERM.
const GRACE: Duration = Duration::from_secs(5);

/// Held by whoever ends the process: a second caller (the main thread
/// failing because a signal stopped its children) waits for the first.
static ENDING: Mutex<()> = Mutex::new(());
static SIGNALLED: AtomicBool = AtomicBool::new(false);
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether a signal is ending the run (errors that follow from it are not
/// worth printing).
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// A folder removed at the end (kept when `STELLA_E2E_KEEP` is set, as
/// test-support's temp folders are).
pub fn remove_at_end(path: PathBuf) {
    if let Ok(mut list) = SCRATCH.lock() {
        list.push(path);
    }
}

/// Stops every process this one started, removes the scratch folders and
/// exits with `code`.
pub fn finish(code: i32) -> ! {
    let _ending = ENDING.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::io::stdout().flush();
    stop_children(GRACE);
    if std::env::var_os("STELLA_E2E_KEEP").is_none() {
        let list = SCRATCH.lock().map(|l| l.clone()).unwrap_or_default();
        for path in list {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    std::process::exit(code)
}

/// From now on SIGINT, SIGTERM and SIGHUP end the run through [`finish`]
/// (exit 130). The handlers are in place when this returns.
pub fn finish_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        eprintln!("bench: cannot watch for signals; Ctrl-C leaves the started processes running");
        return;
    };
    let streams = runtime.block_on(async {
        Some((
            signal(SignalKind::interrupt()).ok()?,
            signal(SignalKind::terminate()).ok()?,
            signal(SignalKind::hangup()).ok()?,
        ))
    });
    let Some((mut int, mut term, mut hup)) = streams else {
        eprintln!("bench: cannot watch for signals; Ctrl-C leaves the started processes running");
        return;
    };
    std::thread::spawn(move || {
        let name = runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            }
        });
        SIGNALLED.store(true, Ordering::SeqCst);
        eprintln!("\nbench: {name}: stopping the processes it started");
        finish(130);
    });
}

/// SIGTERM to every live child of this process, SIGKILL to those still
/// running after `grace`.
pub fn stop_children(grace: Duration) {
    let me = std::process::id();
    let children = procfs::children_of(me);
    for pid in &children {
        signal(*pid, "TERM");
    }
    let started = Instant::now();
    let running = |pid: &u32| procfs::is_running_child(*pid, me);
    while children.iter().any(running) && started.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in children.iter().filter(|p| running(p)) {
        signal(*pid, "KILL");
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status();
}
