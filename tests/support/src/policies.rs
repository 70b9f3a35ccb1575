//! The shipped policies (the ones under test) and copies with extra routes.

use crate::repo_root;
use crate::temp::TempDir;
use std::path::PathBuf;

/// The shipped policies: the ones under test.
pub fn policies_dir() -> PathBuf {
    repo_root().join("policies")
}

/// A copy of the shipped policies in `dir/policies` with `extra` (YAML list
/// items, indented as in `echo.yaml`) appended to the routes of `echo`.
pub fn policies_with_echo_routes(dir: &TempDir, extra: &str) -> PathBuf {
    let out = dir.join("policies");
    std::fs::create_dir_all(&out).expect("create policies copy");
    for entry in std::fs::read_dir(policies_dir()).expect("read policies") {
        let path = entry.expect("policies entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path.file_name().expect("file name");
        let mut text = std::fs::read_to_string(&path).expect("read policy file");
        if name == "echo.yaml" {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(extra);
        }
        std::fs::write(out.join(name), text).expect("write policy file");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_routes_are_appended_to_echo_only() {
        let dir = TempDir::new("policies-unit");
        let extra = "  - id: unit-extra\n";
        let copy = policies_with_echo_routes(&dir, extra);
        let shipped = std::fs::read_to_string(policies_dir().join("echo.yaml")).unwrap();
        let echo = std::fs::read_to_string(copy.join("echo.yaml")).unwrap();
        assert!(
            echo.starts_with(shipped.trim_end()) && echo.ends_with(extra),
            "{echo}"
        );
        let names = |d: &std::path::Path| {
            let mut n: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().ends_with(".yaml"))
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&copy), names(&policies_dir()));
        for name in names(&copy) {
            if name != "echo.yaml" {
                assert_eq!(
                    std::fs::read(copy.join(&name)).unwrap(),
                    std::fs::read(policies_dir().join(&name)).unwrap()
                );
            }
        }
    }
}
