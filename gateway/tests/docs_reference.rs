//! The generated references are what the code says: `docs/configuration.md`
//! (`config::reference`) and `docs/troubleshooting.md`
//! (`decision_log::catalogue`). A difference fails with the first lines
//! that differ and the command that writes the pages again.

use std::path::PathBuf;

const UPDATE: &str = "STELLA_GATEWAY_UPDATE_DOCS";

fn page(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name)
}

/// Compares `rendered` with the committed page, or writes it when
/// `STELLA_GATEWAY_UPDATE_DOCS=1`.
fn check(name: &str, rendered: &str) {
    let path = page(name);
    if std::env::var(UPDATE).is_ok_and(|v| v == "1") {
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == rendered {
        return;
    }
    let mut diff = String::new();
    let (old, new): (Vec<&str>, Vec<&str>) =
        (committed.lines().collect(), rendered.lines().collect());
    let first = old
        .iter()
        .zip(&new)
        .position(|(a, b)| a != b)
        .unwrap_or(old.len().min(new.len()));
    for i in first..(first + 12) {
        if let Some(line) = old.get(i) {
            diff.push_str(&format!("- {line}\n"));
        }
        if let Some(line) = new.get(i) {
            diff.push_str(&format!("+ {line}\n"));
        }
    }
    panic!(
        "docs/{name} differs from what the code says, from line {} on (- committed, + generated):\n\
         {diff}\nWrite it again with:\n  \
         {UPDATE}=1 cargo nextest run -p stella-gateway --test docs_reference\n",
        first + 1
    );
}

#[test]
fn the_configuration_reference_is_what_the_code_reads() {
    let rendered = stella_gateway::config::reference::markdown().unwrap_or_else(|errors| {
        panic!("the reference's configuration does not resolve: {errors:?}")
    });
    check("configuration.md", &rendered);
}

#[test]
fn the_troubleshooting_page_is_what_the_code_answers_and_logs() {
    check(
        "troubleshooting.md",
        &stella_gateway::decision_log::catalogue::markdown(),
    );
}
