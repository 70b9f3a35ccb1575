//! Gateway configuration: YAML file, environment overrides, checked values.
//!
//! Loading runs in three steps, each reporting every problem it finds as
//! `path.to.key: what is wrong`:
//! 1. parse the YAML into a tree and apply environment overrides
//!    (`Gateway__Auth__Authority__Issuer` sets `gateway.auth.authority.issuer`:
//!    segments joined by `__`, matched case-insensitively with `_` ignored);
//! 2. refuse keys the format does not have, then read the tree into the file
//!    structs of [`file`];
//! 3. convert those into the checked [`resolve::Config`].
//!
//! Secrets are never echoed: not in errors, not in the printed config.

pub mod file;
pub mod reference;
pub mod resolve;
pub mod restart;

pub use resolve::{
    ClaimsConfig, ClientCredentials, Config, IntrospectionConfig, Limits, MissingAuthorization,
    Secret, TraceSampler, Traces,
};

use file::FileConfig;
use serde_yaml::{Mapping, Value};
use std::path::Path;
use stella_envelope::config::{fold_env_name, EnvSource};

pub use stella_core::ConfigError;

/// Prints every configuration error as `path: problem` on stderr.
pub fn report(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

/// Names of `Router__*` variables meant for the services (stella-envelope),
/// folded. A deployment may share one environment file between gateway and
/// services, so the gateway ignores these instead of refusing them.
const SERVICE_ONLY_ROUTER_KEYS: &[&str] = &[
    "enabled",
    "authorizationtrustmode",
    "identityenvelopeclockskewseconds",
    "identityenvelopemaxlifetimeseconds",
    "identityenvelopeaudience",
    "identityenvelopeissuer",
    "identityenvelopeacceptedkeys",
    "identityenvelopejwksurl",
    "identityenvelopejwksrefreshseconds",
    "identityenvelopejwkscooldownseconds",
    "configfile",
];

/// Loads, overrides, checks and resolves the configuration at `path`.
pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::new(
            path.display().to_string(),
            format!("cannot read: {}", e.kind()),
        )]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (file, mut errors) = parse(&text, &path.display().to_string(), env);
    // Keep going past structural errors so one run reports as much as it can.
    if let Some(file) = file {
        match resolve::resolve(&file, base, env) {
            Ok(config) if errors.is_empty() => return Ok(config),
            Ok(_) => {}
            Err(more) => errors.extend(more),
        }
    }
    Err(errors)
}

/// Steps 1 and 2: YAML text plus environment into the file structs. Unknown
/// keys and bad overrides are reported and left out, so the structs can
/// still be read and checked further.
pub fn parse(
    text: &str,
    name: &str,
    env: &dyn EnvSource,
) -> (Option<FileConfig>, Vec<ConfigError>) {
    let mut tree: Value = match stella_core::yaml::parse(text) {
        Ok(v @ Value::Mapping(_)) => v,
        Ok(_) => return (None, vec![ConfigError::new(name, "must be a yaml mapping")]),
        Err(e) => {
            let at =
                e.at.map(|(line, column)| format!(" at line {line} column {column}"))
                    .unwrap_or_default();
            return (
                None,
                vec![ConfigError::new(name, format!("is not valid yaml{at}"))],
            );
        }
    };
    let mut errors = apply_env(&mut tree, env);
    unknown_keys(&mut tree, &schema_tree(), "", &mut errors);
    match serde_path_to_error::deserialize(tree) {
        Ok(file) => (Some(file), errors),
        Err(e) => {
            let path = e.path().to_string();
            let problem = describe_serde_error(&e.into_inner().to_string());
            errors.push(ConfigError::new(path, problem));
            (None, errors)
        }
    }
}

/// serde messages can include the offending value; keep only the type
/// complaint ("invalid type: expected a string").
fn describe_serde_error(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((_, expected)) = rest.split_once(", expected ") {
            return format!("wrong type, expected {expected}");
        }
        return "wrong type".into();
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((_, expected)) = rest.split_once(", expected ") {
            return format!("invalid value, expected {expected}");
        }
    }
    "invalid value".into()
}

/// Applies every `Section__Key__...` variable whose first segment names a
/// top-level section. Values are read as YAML scalars (so `false` is a
/// boolean), except where the file already holds a string, and for secrets.
fn apply_env(tree: &mut Value, env: &dyn EnvSource) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let names = key_names();
    let mut vars = env.entries();
    vars.sort();
    for (name, raw) in vars {
        let segments: Vec<String> = name.split("__").map(fold_env_name).collect();
        if segments.len() < 2
            || !["gateway", "router", "services", "logging", "traces"]
                .contains(&segments[0].as_str())
        {
            continue;
        }
        if segments[0] == "router"
            && segments.len() == 2
            && SERVICE_ONLY_ROUTER_KEYS.contains(&segments[1].as_str())
        {
            continue;
        }
        if let Err(problem) = set_path(tree, &segments, &raw, &names) {
            errors.push(ConfigError::new(name, problem));
        }
    }
    errors
}

fn set_path(
    tree: &mut Value,
    segments: &[String],
    raw: &str,
    names: &[String],
) -> Result<(), String> {
    let mut node = tree;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if let Ok(index) = segment.parse::<usize>() {
            let Value::Sequence(items) = node else {
                return Err("a numeric segment must index a list".into());
            };
            if index > items.len() {
                return Err(format!(
                    "list index {index} skips entries (the list has {})",
                    items.len()
                ));
            }
            if index == items.len() {
                items.push(if last {
                    Value::Null
                } else {
                    Value::Mapping(Mapping::new())
                });
            }
            if last {
                items[index] = env_value(raw, &items[index], false);
                return Ok(());
            }
            node = &mut items[index];
            continue;
        }
        let Value::Mapping(map) = node else {
            return Err("names a key inside a value that is not a mapping".into());
        };
        let existing = map
            .keys()
            .find(|k| k.as_str().map(fold_env_name).as_deref() == Some(segment.as_str()))
            .cloned();
        let key = match existing {
            Some(k) => k,
            None => match names.iter().find(|n| fold_env_name(n) == *segment) {
                Some(n) => {
                    let next = if last {
                        Value::Null
                    } else if segments[i + 1].parse::<usize>().is_ok() {
                        Value::Sequence(Vec::new())
                    } else {
                        Value::Mapping(Mapping::new())
                    };
                    map.insert(Value::String(n.clone()), next);
                    Value::String(n.clone())
                }
                None => return Err("names no configuration key".into()),
            },
        };
        let secret = key.as_str().is_some_and(|k| file::SECRET_KEYS.contains(&k));
        let Some(slot) = map.get_mut(&key) else {
            return Err("names no configuration key".into());
        };
        if last {
            *slot = env_value(raw, slot, secret);
            return Ok(());
        }
        if slot.is_null() {
            *slot = if segments[i + 1].parse::<usize>().is_ok() {
                Value::Sequence(Vec::new())
            } else {
                Value::Mapping(Mapping::new())
            };
        }
        node = slot;
    }
    Ok(())
}

fn env_value(raw: &str, existing: &Value, secret: bool) -> Value {
    if secret || existing.is_string() {
        return Value::String(raw.to_owned());
    }
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Sequence(_))) => v,
        _ => Value::String(raw.to_owned()),
    }
}

/// The shape of the file format: every key, as produced by serializing a
/// configuration with every field filled in.
fn schema_tree() -> Value {
    serde_yaml::to_value(file::schema_sample()).unwrap_or(Value::Null)
}

fn key_names() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    if let Some(k) = k.as_str() {
                        out.push(k.to_owned());
                    }
                    walk(v, out);
                }
            }
            Value::Sequence(s) => s.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&schema_tree(), &mut out);
    out.sort();
    out.dedup();
    out
}

/// Reports and removes every key the format does not have.
fn unknown_keys(tree: &mut Value, schema: &Value, path: &str, errors: &mut Vec<ConfigError>) {
    match (tree, schema) {
        (Value::Mapping(map), Value::Mapping(known)) => {
            let mut unknown = Vec::new();
            for (k, v) in map.iter_mut() {
                let Some(name) = k.as_str() else {
                    errors.push(ConfigError::new(
                        or_root(path),
                        "has a key that is not a string",
                    ));
                    unknown.push(k.clone());
                    continue;
                };
                let child = if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                match known.get(name) {
                    Some(s) => unknown_keys(v, s, &child, errors),
                    None => {
                        errors.push(ConfigError::new(child, "unknown key"));
                        unknown.push(k.clone());
                    }
                }
            }
            for k in unknown {
                map.remove(&k);
            }
        }
        (Value::Sequence(items), Value::Sequence(known)) => {
            if let Some(element) = known.first() {
                for (i, item) in items.iter_mut().enumerate() {
                    unknown_keys(item, element, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "(top level)"
    } else {
        path
    }
}

/// The file structs as YAML with every secret replaced by `<redacted>`.
pub fn redacted_yaml(file: &FileConfig) -> String {
    let mut tree = serde_yaml::to_value(file).unwrap_or(Value::Null);
    redact(&mut tree);
    serde_yaml::to_string(&tree).unwrap_or_default()
}

fn redact(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                // `gateway.revocation.store` is a redis URL too.
                if matches!(k.as_str(), Some("replay_store" | "store")) {
                    // A redis URL may carry a password.
                    if let Some(url) = v.as_str() {
                        *v = Value::String(resolve::redact_redis_url(url));
                    }
                } else if k.as_str().is_some_and(|k| file::SECRET_KEYS.contains(&k)) && !v.is_null()
                {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(redact),
        _ => {}
    }
}
