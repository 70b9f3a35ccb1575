//! What the documentation names exists: every `stella-gateway ...` command
//! line in README.md, docs/ and runbooks/ parses with the real command line
//! parser; every configuration key and environment variable it names is
//! one the configuration loader reads; every `stella_gateway_*` metric is
//! in docs/metrics.md (which scripts/check-metrics.sh holds to the code).
//!
//! Command lines are read from shell code blocks and from inline code.
//! Placeholders are filled in: `<anything>` and `...` become a value,
//! `[--flag VALUE]` is taken with its flag, `a|b|c` as `a`. A command named
//! in prose without its required arguments (`stella-gateway reload`) only
//! has to exist.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// README.md, docs/*.md and runbooks/*.md, with their text.
fn documents() -> Vec<(String, String)> {
    let root = workspace();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "runbooks"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// A piece of a document: a code block's line or an inline code span.
struct Piece {
    line: usize,
    text: String,
    /// From a shell code block (a command to run), not prose.
    shell: bool,
}

/// The lines of shell code blocks (continuations joined) and the inline
/// code spans of everything else.
fn pieces(text: &str) -> (Vec<Piece>, Vec<Piece>) {
    let mut blocks = Vec::new();
    let mut spans = Vec::new();
    let mut fence: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    let mut prose = String::new();
    let mut prose_lines: Vec<usize> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_owned()),
            };
            continue;
        }
        match &fence {
            Some(lang) => {
                if !matches!(lang.as_str(), "" | "sh" | "bash" | "shell" | "console") {
                    continue;
                }
                let (start, mut joined) = pending.take().unwrap_or((number, String::new()));
                match line.trim_end().strip_suffix('\\') {
                    Some(head) => {
                        joined.push_str(head);
                        joined.push(' ');
                        pending = Some((start, joined));
                    }
                    None => {
                        joined.push_str(line);
                        blocks.push(Piece {
                            line: start,
                            text: joined,
                            shell: true,
                        });
                    }
                }
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
                prose_lines.push(number);
            }
        }
    }
    // Inline code spans of the prose, which may run over a line break.
    let mut line = 0;
    let mut chars = prose.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\n' {
            line += 1;
            continue;
        }
        if c != '`' {
            continue;
        }
        let start_line = line;
        let mut span = String::new();
        let mut closed = false;
        for (_, c) in chars.by_ref() {
            match c {
                '`' => {
                    closed = true;
                    break;
                }
                '\n' => {
                    line += 1;
                    span.push(' ');
                }
                c => span.push(c),
            }
        }
        if closed {
            spans.push(Piece {
                line: prose_lines.get(start_line).copied().unwrap_or(at),
                text: span,
                shell: false,
            });
        }
    }
    (blocks, spans)
}

/// Shell words of a command line, placeholders filled in; stops at a
/// comment, a pipe, a redirection, `;`, `&&` or the `)` closing `$(`.
fn words(text: &str) -> Vec<String> {
    let mut text = text.to_owned();
    // `<policies dir>`, `<admin>`: one value.
    while let (Some(a), Some(b)) = (text.find('<'), text.find('>')) {
        if b < a {
            break;
        }
        text.replace_range(a..=b, "x");
    }
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    let finish = |word: &mut String, started: &mut bool, out: &mut Vec<String>| {
        if *started {
            let mut w = std::mem::take(word);
            if w == "..." {
                w = "x".into();
            }
            // `HS256|EdDSA|ES256`: one of them.
            if let Some((first, _)) = w.split_once('|') {
                w = first.to_owned();
            }
            out.push(w);
        }
        *started = false;
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    started = true;
                }
                ' ' | '\t' => finish(&mut word, &mut started, &mut out),
                '#' if !started => break,
                '|' if !started && chars.peek().is_none_or(|n| *n == ' ') => break,
                '>' | ';' | ')' => break,
                '&' if !started => break,
                // `[--flag VALUE]`: taken with the flag.
                '[' if !started => {}
                ']' if chars.peek().is_none_or(|n| *n == ' ') => {}
                c => {
                    word.push(c);
                    started = true;
                }
            },
        }
    }
    finish(&mut word, &mut started, &mut out);
    out
}

/// A shell line without its comment.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return &line[..at],
            None => {}
        }
        previous = c;
    }
    line
}

/// Every command line starting with `stella-gateway` in `text`.
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("stella-gateway") {
        let before = text[..at].chars().last();
        // A word of its own (not `deploy/stella-gateway`, `stella-gateway-...`).
        if before.is_some_and(|c| !matches!(c, ' ' | '(' | '`' | '\t')) {
            continue;
        }
        let rest = &text[at..];
        if rest["stella-gateway".len()..]
            .chars()
            .next()
            .is_some_and(|c| c != ' ')
        {
            continue;
        }
        let w = words(rest);
        // Our command line: a subcommand or a top-level flag follows, not a
        // resource name in someone else's command (`kubectl ... stella-gateway
        // --type merge`) or version output (`stella-gateway 0.1.0`).
        let ours = w.get(1).is_some_and(|next| {
            next.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                || matches!(next.as_str(), "--version" | "-V" | "--help" | "-h")
        });
        if ours {
            out.push(w);
        }
    }
    out
}

#[test]
fn every_command_line_in_the_documentation_parses() {
    use clap::error::ErrorKind;
    let mut failures = Vec::new();
    let mut parsed = 0;
    for (name, text) in documents() {
        let (blocks, spans) = pieces(&text);
        for piece in blocks.iter().chain(&spans) {
            let text = if piece.shell {
                strip_comment(&piece.text)
            } else {
                &piece.text
            };
            for command in commands(text) {
                parsed += 1;
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                let error = match stella_gateway::cli::parse(&args) {
                    Ok(()) => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                        ) =>
                    {
                        continue
                    }
                    Err(e) => e,
                };
                // Named in prose without its arguments: it only has to exist.
                let missing = matches!(
                    error.kind(),
                    ErrorKind::MissingRequiredArgument
                        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                        | ErrorKind::MissingSubcommand
                );
                if !piece.shell && missing {
                    let mut with_help = args.clone();
                    with_help.push("--help");
                    if stella_gateway::cli::parse(&with_help)
                        .is_err_and(|e| e.kind() == ErrorKind::DisplayHelp)
                    {
                        continue;
                    }
                }
                let first = error.to_string();
                let first = first.lines().next().unwrap_or_default().to_owned();
                failures.push(format!(
                    "{name}:{}: `{}`: {first}",
                    piece.line,
                    command.join(" ")
                ));
            }
        }
    }
    assert!(parsed > 40, "only {parsed} command lines found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `gateway.auth.dpop.replay_store`, `services[0].name`: a key path as the
/// docs write one (a file name such as `gateway.rs` is not).
fn key_path(span: &str) -> Option<String> {
    // `gateway.listeners.public_jwks: true`: the key.
    let span = span.split(": ").next().unwrap_or_default();
    let span = span.trim_end_matches('.');
    let (first, _) = span.split_once(['.', '['])?;
    if !["gateway", "router", "services", "logging", "traces"].contains(&first) {
        return None;
    }
    if !span
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '[' | ']'))
    {
        return None;
    }
    let last = span.rsplit('.').next().unwrap_or_default();
    if [
        "rs", "md", "yaml", "yml", "json", "sh", "toml", "pem", "py", "mjs",
    ]
    .contains(&last)
    {
        return None;
    }
    // `[0]`, `[12]`: `[]`.
    let mut out = String::new();
    let mut in_index = false;
    for c in span.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    Some(out)
}

#[test]
fn every_configuration_key_the_documentation_names_exists() {
    let paths: BTreeSet<String> = stella_gateway::config::reference::all_paths()
        .into_iter()
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, text) in documents() {
        let (_, spans) = pieces(&text);
        for span in &spans {
            if let Some(path) = key_path(&span.text) {
                checked += 1;
                // `roles[1]`: an entry of a list of strings.
                let entry = path.strip_suffix("[]").is_some_and(|p| paths.contains(p));
                if !paths.contains(&path) && !entry {
                    failures.push(format!("{name}:{}: `{}`", span.line, span.text));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} keys found");
    assert!(
        failures.is_empty(),
        "no such configuration key (docs/configuration.md lists them):\n{}",
        failures.join("\n")
    );
}

/// Environment variable names with a configuration prefix in `text`.
fn env_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in [
        "Gateway__",
        "Services__",
        "Logging__",
        "Traces__",
        "Router__",
    ] {
        let lower = text.to_ascii_lowercase();
        for (at, _) in lower.match_indices(&prefix.to_ascii_lowercase()) {
            if text[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let next = text[at + name.len()..].chars().next();
            // `Gateway__Auth__Authority__*`, `Router__...`: a family, not a name.
            if name.ends_with('_') || matches!(next, Some('*' | '…')) {
                continue;
            }
            out.push(name);
        }
    }
    out
}

#[test]
fn every_environment_variable_the_documentation_names_is_read() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, text) in documents() {
        let (blocks, spans) = pieces(&text);
        for piece in blocks.iter().chain(&spans) {
            for var in env_names(&piece.text) {
                checked += 1;
                let env: HashMap<String, String> = [(var.clone(), "1".to_owned())].into();
                let (_, errors) = stella_gateway::config::parse("{}", "docs.yaml", &env);
                if let Some(e) = errors.iter().find(|e| e.path == var) {
                    failures.push(format!("{name}:{}: {var}: {}", piece.line, e.problem));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} variables found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `stella_gateway_*` name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    text.match_indices("stella_gateway_")
        .filter(|(at, _)| {
            !text[..*at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| n.len() > "stella_gateway_".len())
        .collect()
}

#[test]
fn every_metric_the_documentation_names_is_in_the_metric_list() {
    let listed: BTreeSet<String> =
        metric_names(&std::fs::read_to_string(workspace().join("docs/metrics.md")).unwrap())
            .into_iter()
            .collect();
    let mut failures = Vec::new();
    for (name, text) in documents() {
        for (i, line) in text.lines().enumerate() {
            for metric in metric_names(line) {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric.strip_suffix(s))
                    .unwrap_or(&metric);
                if !listed.contains(&metric) && !listed.contains(base) {
                    failures.push(format!("{name}:{}: {metric}", i + 1));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "not in docs/metrics.md:\n{}",
        failures.join("\n")
    );
}

#[test]
fn command_lines_are_read_as_a_shell_would_and_placeholders_filled_in() {
    let cases: &[(&str, &[&[&str]])] = &[
        (
            "stella-gateway keys generate --alg HS256|EdDSA --kid ID",
            &[&[
                "stella-gateway",
                "keys",
                "generate",
                "--alg",
                "HS256",
                "--kid",
                "ID",
            ]],
        ),
        (
            "stella-gateway token [--profile NAME] [--print]",
            &[&["stella-gateway", "token", "--profile", "NAME", "--print"]],
        ),
        (
            "stella-gateway policy test <policies dir>",
            &[&["stella-gateway", "policy", "test", "x"]],
        ),
        (
            "stella-gateway explain --caller-json '{\"scopes\":[\"a\"]}' | jq .",
            &[&[
                "stella-gateway",
                "explain",
                "--caller-json",
                "{\"scopes\":[\"a\"]}",
            ]],
        ),
        (
            "TOKEN=$(stella-gateway token --print) && curl",
            &[&["stella-gateway", "token", "--print"]],
        ),
        (
            "stella-gateway openapi --config F > openapi.json",
            &[&["stella-gateway", "openapi", "--config", "F"]],
        ),
        // Not our command line: a Kubernetes object, version output, a path.
        ("kubectl patch hpa stella-gateway --type merge", &[]),
        ("stella-gateway 0.1.0 (commit 9579c15543ba)", &[]),
        ("kubectl exec deploy/stella-gateway -- curl", &[]),
    ];
    for (line, expected) in cases {
        let got = commands(strip_comment(line));
        let expected: Vec<Vec<String>> = expected
            .iter()
            .map(|c| c.iter().map(|w| w.to_string()).collect())
            .collect();
        assert_eq!(got, expected, "{line}");
    }
    assert_eq!(
        strip_comment("stella-gateway check # a '#' comment"),
        "stella-gateway check "
    );
    assert!(stella_gateway::cli::parse(&["stella-gateway", "chek", "--config", "f"]).is_err());
}

#[test]
fn key_paths_are_told_from_file_names_and_values() {
    for (span, path) in [
        (
            "gateway.listeners.public_jwks: true",
            Some("gateway.listeners.public_jwks"),
        ),
        ("services[0].envelope_kid", Some("services[].envelope_kid")),
        (
            "gateway.auth.authorities[1].issuer",
            Some("gateway.auth.authorities[].issuer"),
        ),
        ("gateway.rs", None),
        (
            "router.identity_envelope_keys",
            Some("router.identity_envelope_keys"),
        ),
        ("Router__Enabled", None),
        ("gateway", None),
    ] {
        assert_eq!(key_path(span).as_deref(), path, "{span}");
    }
}
