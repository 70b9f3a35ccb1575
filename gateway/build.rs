//! Stamps the binary with the commit it was built from, for
//! `stella-gateway --version`: `STELLA_GATEWAY_COMMIT` when the build sets it
//! (a container build has no `.git`), else `git rev-parse HEAD`, else
//! `unknown`. Always 12 lowercase hex digits or `unknown`.
//!
//! The script reruns only when that answer can change: the variable, the
//! `HEAD` file, and the branch `HEAD` names (its loose ref and
//! `packed-refs`). Without these lines Cargo would rerun it, and relink the
//! gateway, after any change to any file of the crate.

use std::path::Path;
use std::process::Command;

const ENV: &str = "STELLA_GATEWAY_COMMIT";
const LEN: usize = 12;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={ENV}");
    let from_env = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let commit = match from_env {
        Some(value) => short(&value).unwrap_or_else(|| {
            println!(
                "cargo:warning={ENV} is not a commit id of at least {LEN} hex digits; the version says unknown"
            );
            "unknown".to_owned()
        }),
        None => {
            watch_git();
            git(&["rev-parse", "HEAD"])
                .and_then(|id| short(&id))
                .unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=STELLA_GATEWAY_BUILD_COMMIT={commit}");
}

/// The first 12 digits of a commit id, lowercase; `None` unless `id` is at
/// least that many hex digits and nothing else.
fn short(id: &str) -> Option<String> {
    let id = id.trim();
    (id.len() >= LEN && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| id[..LEN].to_ascii_lowercase())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Files whose change moves `HEAD`: the `HEAD` file (a checkout), the loose
/// ref of the branch it names (a commit) and `packed-refs` (where the ref
/// lives once packed). `git rev-parse --git-path` gives each file's real
/// place, worktrees included, relative to the crate's folder where Cargo
/// runs this script and resolves the paths it prints. Only existing files are
/// named: Cargo reruns a script on every build while a named file is
/// missing. Packing a loose ref deletes it, which reruns the script once,
/// and that run names the new places.
fn watch_git() {
    let mut files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(branch);
    }
    for file in files {
        if let Some(path) = git(&["rev-parse", "--git-path", &file]) {
            if Path::new(&path).is_file() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
