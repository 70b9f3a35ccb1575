//! Property-based requests from the gateway's own OpenAPI document
//! (`stella-gateway openapi`) against a private copy of the local stack:
//! schemathesis generates requests for every operation, with a Bearer token
//! that holds every scope, and fails on any 5xx answer. Needs tests/.venv
//! (scripts/install-deps.sh).

use crate::harness::{write_atomic, Outcome};
use crate::Drill;
use std::process::Command;

pub fn run(d: &mut Drill) -> Outcome {
    let schemathesis = d.run.root.join("tests/.venv/bin/schemathesis");
    if !schemathesis.is_file() {
        return d
            .run
            .abort("tests/.venv/bin/schemathesis missing: run scripts/install-deps.sh");
    }
    d.stack_up()?;
    let config = d.run.conf.join("gateway.yaml");
    let openapi = d.command_output(
        Command::new(d.run.binary("stella-gateway"))
            .arg("openapi")
            .arg("--config")
            .arg(&config),
    )?;
    let document = d.run.dir.join("openapi.json");
    write_atomic(&document, &openapi)?;
    d.run.ok(format!(
        "openapi: {} operations",
        openapi.matches("\"operationId\"").count()
    ));

    let examples = if d.run.short { "10" } else { "25" };
    let log = d.run.logs.join("schemathesis.out");
    let out = Command::new(&schemathesis)
        .current_dir(&d.run.root)
        .arg("run")
        .arg(&document)
        .args(["--url", &d.stack.gw(), "--checks", "not_a_server_error"])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", d.stack.bearer_token),
        ])
        .args([
            "--max-examples",
            examples,
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .output();
    let (code, text) = match out {
        Ok(o) => (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (None, format!("cannot run schemathesis: {e}")),
    };
    let _ = std::fs::write(&log, &text);
    let tail: Vec<&str> = text.lines().rev().take(25).collect();
    d.run
        .say(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    d.run.check(
        code == Some(0),
        format!("schemathesis: no 5xx ({examples} examples per operation)"),
        format!("schemathesis exit {code:?} (logs/schemathesis.out)"),
    );
    Ok(())
}
