//! Configuration-file loading (`config::parse`, `config::resolve::resolve`):
//! YAML, environment overrides, unknown keys, conversion into typed values.
//!
//! Input: the file text, then optionally a NUL byte and environment
//! variables, one `NAME=VALUE` per line (invalid UTF-8 read lossily).
//! Relative file references resolve in a directory that does not exist.
//! Inputs naming `/dev`, `/proc` or `/sys` are only parsed, not resolved:
//! reading a device file (`/dev/zero`, `/dev/stdin`) would stall the fuzzer
//! on something the operator, not a client, controls.
//!
//! Besides "never panics": every error has a key path and a problem, a
//! parsed file prints (redacted) as YAML that parses again, and a resolved
//! configuration has at least one worker thread.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::Path;
use stella_gateway::config::{parse, redacted_yaml, resolve::resolve};

fuzz_target!(|data: &[u8]| {
    let (text, env_text) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let text = String::from_utf8_lossy(text);
    let env: HashMap<String, String> = String::from_utf8_lossy(env_text)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    let (file, errors) = parse(&text, "fuzz.yaml", &env);
    for e in &errors {
        assert!(!e.path.is_empty() && !e.problem.is_empty(), "{e:?}");
    }
    let Some(file) = file else {
        assert!(!errors.is_empty(), "no file and no error");
        return;
    };
    let shown = redacted_yaml(&file);
    let (again, _) = parse(&shown, "redacted.yaml", &HashMap::new());
    assert!(
        again.is_some(),
        "redacted configuration does not parse:\n{shown}"
    );

    let raw = String::from_utf8_lossy(data);
    if ["/dev", "/proc", "/sys"].iter().any(|p| raw.contains(p)) {
        return;
    }
    match resolve(&file, Path::new("/nonexistent/stella-fuzz"), &env) {
        Ok(config) => assert!(config.threads >= 1),
        Err(errors) => {
            for e in &errors {
                assert!(!e.path.is_empty() && !e.problem.is_empty(), "{e:?}");
            }
        }
    }
});
