//! What every drill shares: its run folder, its options, the verdict
//! (assertions that fail go on counting; an abort ends the drill), polling
//! with a deadline, and atomic file writes.

use std::cell::Cell;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The command-line options every drill takes.
#[derive(Debug, Clone)]
pub struct Options {
    /// CI length: a few seconds per step.
    pub short: bool,
    /// Requests per second from the load generator.
    pub rate: u32,
    /// Seconds of load per step (default: the drill's full or short length).
    pub step_seconds: Option<u64>,
    /// How many times a drill that measures one operation repeats it
    /// (revocation: revoke, measure, remove, per identity), for
    /// percentiles over the runs.
    pub runs: u32,
}

/// A failure the drill cannot go on after (the stack is stopped, the load
/// ended and its tables printed, and the drill fails).
#[derive(Debug)]
pub struct Abort(pub String);

/// The result of a drill's body.
pub type Outcome = Result<(), Abort>;

/// The files and verdict of one drill run. Configuration, service settings
/// and logs are separate folders, as in a deployment: the gateway and the
/// services watch the folders of their configuration files, and logs
/// written there would wake them for nothing.
pub struct Run {
    pub name: String,
    /// The workspace root.
    pub root: PathBuf,
    /// `tests/.run/drills/<name>`.
    pub dir: PathBuf,
    /// The gateway's configuration, policies and key files.
    pub conf: PathBuf,
    /// The services' `Router__` files.
    pub services: PathBuf,
    pub logs: PathBuf,
    /// Where the workspace's binaries are: the folder of this program.
    pub bin: PathBuf,
    pub short: bool,
    pub rate: u32,
    pub step: Duration,
    /// [`Options::runs`].
    pub runs: u32,
    failures: Cell<u32>,
    started: Instant,
}

impl Run {
    /// Creates the run folder afresh (the previous run's is removed).
    /// `full` and `short` are the drill's step lengths in seconds.
    pub fn new(name: &str, options: &Options, full: u64, short: u64) -> Result<Run, Abort> {
        let root = stella_test_support::repo_root();
        let dir = root.join("tests/.run/drills").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let conf = dir.join("config");
        let services = dir.join("services");
        let logs = dir.join("logs");
        for folder in [
            conf.join("policies"),
            conf.join("keys"),
            services.clone(),
            logs.clone(),
        ] {
            std::fs::create_dir_all(&folder)
                .map_err(|e| Abort(format!("cannot create {}: {e}", folder.display())))?;
        }
        private(&dir);
        let bin = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or_else(|| Abort("cannot find the folder of stella-drill".into()))?;
        let gateway = bin.join("stella-gateway");
        if !gateway.is_file() {
            return Err(Abort(format!(
                "no {}: build the workspace first (cargo build --workspace --all-targets)",
                gateway.display()
            )));
        }
        let step = options
            .step_seconds
            .unwrap_or(if options.short { short } else { full });
        let run = Run {
            name: name.to_owned(),
            root,
            dir,
            conf,
            services,
            logs,
            bin,
            short: options.short,
            rate: options.rate,
            step: Duration::from_secs(step),
            runs: options.runs.max(1),
            failures: Cell::new(0),
            started: Instant::now(),
        };
        run.say(format!(
            "drill {name}: {} req/s, {step}s per step, files in {}",
            run.rate,
            run.relative(&run.dir)
        ));
        Ok(run)
    }

    pub fn say(&self, text: impl Display) {
        println!("{text}");
    }

    pub fn ok(&self, text: impl Display) {
        println!("  ok: {text}");
    }

    /// Records a failed assertion the drill goes on after (it fails at the
    /// end).
    pub fn fail(&self, text: impl Display) {
        eprintln!("  FAILED: {text}");
        self.failures.set(self.failures.get() + 1);
    }

    /// `ok` when `passed`, else `fail`.
    pub fn check(&self, passed: bool, ok: impl Display, failed: impl Display) {
        if passed {
            self.ok(ok)
        } else {
            self.fail(failed)
        }
    }

    /// A failure the drill cannot go on after, returned for `?` (the drill
    /// then stops its stack and fails).
    pub fn abort<T>(&self, text: impl Display) -> Result<T, Abort> {
        Err(Abort(text.to_string()))
    }

    pub fn failures(&self) -> u32 {
        self.failures.get()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A path for messages: relative to the workspace root.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// A binary of the workspace (`stella-gateway`, `stella-load`, ...).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Runs `check` every 50 ms until it holds; the milliseconds it took,
    /// or `None` after `limit`.
    pub fn wait_for(&self, limit: Duration, mut check: impl FnMut() -> bool) -> Option<u64> {
        let start = Instant::now();
        loop {
            if check() {
                return Some(start.elapsed().as_millis() as u64);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs a command to its end; its stdout, or an abort with its status and
/// output.
pub fn command_output(command: &mut std::process::Command) -> Result<String, Abort> {
    let out = command
        .output()
        .map_err(|e| Abort(format!("cannot run {command:?}: {e}")))?;
    if !out.status.success() {
        return Err(Abort(format!(
            "{command:?}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a file atomically (a temporary file renamed over it, mode 0600),
/// the way configuration management does.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), Abort> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| {
            set_mode(&tmp, 0o600);
            std::fs::rename(&tmp, path)
        })
        .map_err(|e| Abort(format!("cannot write {}: {e}", path.display())))
}

fn private(dir: &Path) {
    set_mode(dir, 0o700);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
