//! The configuration reference, `docs/configuration.md`, made from the code
//! that reads the file, so the page cannot say what the code does not do:
//!
//! - keys, their order and types: the serialized [`file::schema_sample`],
//!   the shape the loader accepts (every other key is refused);
//! - descriptions: the doc comments of the fields in `file.rs`, read from
//!   the source as compiled (`include_str!`);
//! - defaults: what [`resolve`](super::resolve::resolve) writes into the
//!   effective configuration (what `check` prints) for a configuration that
//!   sets only what is required, with every optional section present; the
//!   few defaults `check` does not print, or that depend on the machine,
//!   are in [`STATED_DEFAULTS`], and a test resolves each one against
//!   leaving the key out;
//! - ranges: asked from `resolve` itself: each number is set far out of
//!   range and the range its error names is taken; a test checks that both
//!   ends are accepted and one past them refused;
//! - reload or restart: [`restart::RESTART_ONLY`], the table a reload
//!   checks;
//! - environment variables: the path in the form `apply_env` reads; a test
//!   applies every one of them.
//!
//! `gateway/tests/docs_reference.rs` compares the page with [`markdown`].

use super::file;
use super::restart::{self, Applied};
use super::ConfigError;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The file format's source: its doc comments are the descriptions.
const FILE_RS: &str = include_str!("file.rs");

/// One segment of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    /// An entry of a list: `[]` in paths, its index in errors and in
    /// environment variables.
    Entry,
}

/// What a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A mapping of further keys.
    Section,
    /// A list of sections.
    Sections,
    Text,
    Texts,
    Integer,
    Number,
    Boolean,
}

impl Kind {
    fn of(value: &Value) -> Kind {
        match value {
            Value::Mapping(_) => Kind::Section,
            Value::Sequence(items) if items.first().is_some_and(Value::is_mapping) => {
                Kind::Sections
            }
            Value::Sequence(_) => Kind::Texts,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(n) if n.is_f64() => Kind::Number,
            Value::Number(_) => Kind::Integer,
            _ => Kind::Text,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Section => "section",
            Kind::Sections => "list of sections",
            Kind::Text => "string",
            Kind::Texts => "list of strings",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
        }
    }
}

/// One key of the file format.
#[derive(Clone, Debug)]
pub struct Key {
    pub segments: Vec<Segment>,
    pub kind: Kind,
    /// From the doc comments of its field and of its section's struct.
    pub description: String,
    /// A list whose entries have the keys of another section
    /// (`gateway.auth.authorities`, like `gateway.auth.authority`): that
    /// section's path. Its keys are not listed again.
    pub entries_like: Option<String>,
}

impl Key {
    /// `services[].health_check.path`.
    pub fn path(&self) -> String {
        path_of(&self.segments, "[]")
    }

    /// `services[0].health_check.path`, as errors name it.
    pub fn first_path(&self) -> String {
        path_of(&self.segments, "[0]")
    }

    /// `Services__0__HealthCheck__Path`.
    pub fn env(&self) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k
                    .split('_')
                    .map(|word| {
                        let mut chars = word.chars();
                        match chars.next() {
                            Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
                            None => String::new(),
                        }
                    })
                    .collect::<String>(),
                Segment::Entry => "0".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("__")
    }

    fn name(&self) -> &str {
        match self.segments.last() {
            Some(Segment::Key(k)) => k,
            _ => "",
        }
    }

    pub fn is_secret(&self) -> bool {
        file::SECRET_KEYS.contains(&self.name())
    }
}

fn path_of(segments: &[Segment], entry: &str) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Entry => out.push_str(entry),
        }
    }
    out
}

/// The shape of the format: [`file::schema_sample`] serialized.
fn schema() -> Value {
    serde_yaml::to_value(file::schema_sample()).unwrap_or(Value::Null)
}

/// Every key of the format, sections included, in file order. Lists whose
/// entries repeat a section listed before are not descended into.
pub fn keys() -> Vec<Key> {
    let docs = Docs::parse(FILE_RS);
    let mut out = Vec::new();
    let mut seen: Vec<(Value, String)> = Vec::new();
    walk(
        &schema(),
        Some("FileConfig"),
        &mut Vec::new(),
        &docs,
        &mut seen,
        &mut out,
    );
    out
}

fn walk(
    node: &Value,
    owner: Option<&str>,
    segments: &mut Vec<Segment>,
    docs: &Docs,
    seen: &mut Vec<(Value, String)>,
    out: &mut Vec<Key>,
) {
    let Value::Mapping(map) = node else {
        return;
    };
    for (name, value) in map {
        let Some(name) = name.as_str() else { continue };
        let field = owner.and_then(|o| docs.field(o, name));
        let inner = field.and_then(|f| docs.struct_in(&f.ty));
        // The field's doc comment, else its struct's.
        let description = field
            .map(|f| f.doc.clone())
            .filter(|d| !d.is_empty())
            .or_else(|| inner.map(|s| docs.structs[s].doc.clone()))
            .unwrap_or_default();
        segments.push(Segment::Key(name.to_owned()));
        let kind = Kind::of(value);
        let mut key = Key {
            segments: segments.clone(),
            kind,
            description,
            entries_like: None,
        };
        match (kind, value) {
            (Kind::Section, _) => {
                seen.push((value.clone(), key.path()));
                out.push(key);
                walk(value, inner, segments, docs, seen, out);
            }
            (Kind::Sections, Value::Sequence(items)) => {
                let element = &items[0];
                key.entries_like = seen
                    .iter()
                    .find(|(shape, _)| shape == element)
                    .map(|(_, path)| path.clone());
                let descend = key.entries_like.is_none();
                out.push(key);
                if descend {
                    segments.push(Segment::Entry);
                    walk(element, inner, segments, docs, seen, out);
                    segments.pop();
                }
            }
            _ => out.push(key),
        }
        segments.pop();
    }
}

/// Every key path the format has (`services[].name`), lists of repeated
/// sections included (`gateway.auth.authorities[].issuer`).
pub fn all_paths() -> Vec<String> {
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        match node {
            Value::Mapping(map) => {
                for (k, v) in map {
                    let Some(k) = k.as_str() else { continue };
                    let child = if path.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(child.clone());
                    walk(v, &child, out);
                }
            }
            Value::Sequence(items) => {
                if let Some(element @ Value::Mapping(_)) = items.first() {
                    walk(element, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&schema(), "", &mut out);
    out
}

/// The doc comments of `file.rs`, by struct and field.
struct Docs {
    structs: BTreeMap<String, StructDoc>,
}

struct StructDoc {
    doc: String,
    fields: Vec<FieldDoc>,
}

struct FieldDoc {
    name: String,
    doc: String,
    ty: String,
}

impl Docs {
    /// Reads `pub struct` items and their `pub` fields with the `///` lines
    /// above them; rustfmt keeps the file in that shape.
    fn parse(source: &str) -> Docs {
        let mut structs = BTreeMap::new();
        let mut doc: Vec<&str> = Vec::new();
        let mut current: Option<String> = None;
        for line in source.lines() {
            let line = line.trim();
            if let Some(text) = line.strip_prefix("///") {
                doc.push(text.trim());
                continue;
            }
            if line.starts_with("#[") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("pub struct ") {
                let name = rest
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                structs.insert(
                    name.clone(),
                    StructDoc {
                        doc: join(&doc),
                        fields: Vec::new(),
                    },
                );
                current = Some(name);
            } else if line == "}" {
                current = None;
            } else if let (Some(owner), Some(rest)) = (&current, line.strip_prefix("pub ")) {
                if let Some((name, ty)) = rest.split_once(": ") {
                    if let Some(s) = structs.get_mut(owner) {
                        s.fields.push(FieldDoc {
                            name: name.to_owned(),
                            doc: join(&doc),
                            ty: ty.trim_end_matches(',').to_owned(),
                        });
                    }
                }
            }
            doc.clear();
        }
        Docs { structs }
    }

    fn field(&self, owner: &str, name: &str) -> Option<&FieldDoc> {
        self.structs
            .get(owner)?
            .fields
            .iter()
            .find(|f| f.name == name)
    }

    /// The struct a field's type holds (`Option<Vec<RequiredValueSection>>`).
    fn struct_in(&self, ty: &str) -> Option<&str> {
        ty.split(|c: char| !c.is_alphanumeric() && c != '_')
            .find_map(|word| self.structs.get_key_value(word).map(|(k, _)| k.as_str()))
    }
}

fn join(lines: &[&str]) -> String {
    lines
        .iter()
        .filter(|l| !l.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A default the effective configuration does not show as it is.
#[derive(Clone, Copy, Debug)]
pub enum Stated {
    /// A value, as YAML: a test checks that setting it resolves to the same
    /// configuration as leaving the key out.
    Value(&'static str),
    /// Words, for a default that depends on the machine or on other keys.
    Words(&'static str),
}

/// Defaults `check` does not print (to keep the printed configuration, and
/// so the configuration version, of existing deployments as it was), or
/// prints as this machine's value. An entry for a section covers its keys.
pub const STATED_DEFAULTS: &[(&str, Stated)] = &[
    ("gateway.threads", Stated::Words("one per core")),
    ("gateway.listeners.public_jwks", Stated::Value("false")),
    (
        "gateway.listeners.tls.client_certificates",
        Stated::Value("none"),
    ),
    ("gateway.listeners.tls.http2", Stated::Value("true")),
    (
        "gateway.auth.authority.required_claims",
        Stated::Words(
            "`[client_id, jti]`; with `token_profile` or `token_claims`, only what the profile requires",
        ),
    ),
    (
        "gateway.auth.authority.introspection.endpoint",
        Stated::Words("`introspection_endpoint` of the Authority's discovery document"),
    ),
    (
        "gateway.auth.authority.token_profile",
        Stated::Words("none: the strict RFC 9068 rules (`rfc9068`)"),
    ),
    (
        "gateway.auth.authority.token_claims",
        Stated::Words("the token profile's (`check` prints the mapping in effect)"),
    ),
    (
        "gateway.auth.dpop.replay_store_timeout_ms",
        Stated::Value("500"),
    ),
    (
        "gateway.auth.dpop.replay_max_entries",
        Stated::Words(
            "sized from `gateway.threads` and the proof window ([replay-store.md](replay-store.md))",
        ),
    ),
    (
        "router.identity_envelope_active_kid",
        Stated::Words(
            "the only key of `identity_envelope_keys`, or the key of `identity_envelope_signing_key`",
        ),
    ),
    (
        "gateway.revocation.state_file",
        Stated::Words(
            "`revocations.json` in the Authority's `state_dir` when it has one; else the list is kept in memory only",
        ),
    ),
    (
        "gateway.revocation.store_refresh_seconds",
        Stated::Value("30"),
    ),
    (
        "gateway.revocation.when_stale",
        Stated::Value("keep_last_copy"),
    ),
    (
        "gateway.revocation.stale_after_seconds",
        Stated::Value("60"),
    ),
    ("gateway.revocation.ssf.path", Stated::Value("/ssf/push")),
    ("gateway.revocation.ssf.max_age_seconds", Stated::Value("600")),
    (
        "gateway.revocation.ssf.transmitters[].name",
        Stated::Words("`ssf@<host of the issuer>`"),
    ),
    (
        "gateway.revocation.ssf.transmitters[].revoke_for_seconds",
        Stated::Words("3600"),
    ),
    (
        "gateway.revocation.ssf.transmitters[].require_https",
        Stated::Words("true"),
    ),
    ("services[].identity_format", Stated::Value("envelope")),
    (
        "services[].envelope_kid",
        Stated::Words("the active key (`router.identity_envelope_active_kid`)"),
    ),
    ("services[].health_check.interval_ms", Stated::Value("5000")),
    ("services[].health_check.timeout_ms", Stated::Value("1000")),
    ("services[].tls.enabled", Stated::Value("true")),
    (
        "services[].tls.ca_file",
        Stated::Words("the platform's trusted roots"),
    ),
    (
        "services[].tls.server_name",
        Stated::Words("each upstream's host"),
    ),
    ("services[].tls.http2", Stated::Value("false")),
    (
        "traces.endpoint",
        Stated::Words("the exporter's, `http://localhost:4318`"),
    ),
    ("traces.sampler_arg", Stated::Value("1.0")),
];

/// The stated default of `path`, or of the nearest section above it.
pub fn stated_default(path: &str) -> Option<Stated> {
    let mut at = path;
    loop {
        if let Some((_, stated)) = STATED_DEFAULTS.iter().find(|(p, _)| *p == at) {
            return Some(*stated);
        }
        at = &at[..at.rfind('.')?];
    }
}

/// A configuration that sets only what resolving requires, with every
/// optional section present, so that the effective configuration holds the
/// defaults of their keys too.
pub const MINIMAL: &str = r#"
gateway:
  listeners:
    http: "127.0.0.1:8080"
  auth:
    authority:
      issuer: https://authority.example
      audiences: [api]
      client_id: gateway
      client_secret: a-client-secret
      introspection: {}
      claims:
        endpoint: https://authority.example/claims
router:
  identity_envelope_signing_key: an-envelope-key-of-at-least-thirty-two-bytes
services:
  - name: example
    upstreams: ["127.0.0.1:9000"]
    health_check:
      path: /healthz
"#;

/// [`MINIMAL`] with a Redis replay store, so its settings are checked too
/// (nothing is connected to).
pub fn minimal_with_redis() -> String {
    MINIMAL.replace(
        "  auth:\n",
        "  auth:\n    dpop:\n      replay_store: redis://127.0.0.1:6379\n",
    )
}

/// Resolves a configuration tree as `check` would, without the
/// environment and with relative paths from `base`.
pub fn resolve_tree(tree: &Value, base: &Path) -> Result<super::Config, Vec<ConfigError>> {
    let text = serde_yaml::to_string(tree).unwrap_or_default();
    let env: HashMap<String, String> = HashMap::new();
    match super::parse(&text, "reference.yaml", &env) {
        (Some(file), errors) if errors.is_empty() => super::resolve::resolve(&file, base, &env),
        (_, errors) => Err(errors),
    }
}

/// Parses `text` into a YAML tree.
pub fn tree(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or(Value::Null)
}

/// The value at `segments` (list entries: the first), if any.
pub fn lookup<'a>(tree: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    let mut node = tree;
    for s in segments {
        node = match s {
            Segment::Key(k) => node.as_mapping()?.get(k.as_str())?,
            Segment::Entry => node.as_sequence()?.first()?,
        };
    }
    (!node.is_null()).then_some(node)
}

/// Sets the value at `segments` (list entries: the first), making the
/// sections and entries on the way.
pub fn set(tree: &mut Value, segments: &[Segment], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        *tree = value;
        return;
    };
    let next = match first {
        Segment::Key(k) => {
            if !tree.is_mapping() {
                *tree = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = tree else { return };
            map.entry(Value::String(k.clone())).or_insert(Value::Null)
        }
        Segment::Entry => {
            if !tree.is_sequence() {
                *tree = Value::Sequence(Vec::new());
            }
            let Value::Sequence(items) = tree else { return };
            if items.is_empty() {
                items.push(Value::Null);
            }
            &mut items[0]
        }
    };
    set(next, rest, value);
}

/// Removes the value at `segments` (list entries: the first).
pub fn remove(tree: &mut Value, segments: &[Segment]) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut node = tree;
    for s in parents {
        let next = match s {
            Segment::Key(k) => node.as_mapping_mut().and_then(|m| m.get_mut(k.as_str())),
            Segment::Entry => node.as_sequence_mut().and_then(|s| s.first_mut()),
        };
        let Some(next) = next else { return };
        node = next;
    }
    if let (Segment::Key(k), Some(map)) = (last, node.as_mapping_mut()) {
        map.remove(k.as_str());
    }
}

/// What a key's default is.
#[derive(Clone, Debug, PartialEq)]
pub enum DefaultValue {
    /// A value, as YAML.
    Value(Value),
    Words(&'static str),
    None,
}

/// The default of every key: [`stated_default`], else the effective
/// configuration of [`MINIMAL`] where `MINIMAL` does not set the key.
pub fn defaults(keys: &[Key]) -> Result<Vec<DefaultValue>, Vec<ConfigError>> {
    let minimal = tree(MINIMAL);
    let config = resolve_tree(&minimal, Path::new("."))?;
    let effective = serde_yaml::to_value(&config.effective).unwrap_or(Value::Null);
    Ok(keys
        .iter()
        .map(|key| {
            if let Some(stated) = stated_default(&key.path()) {
                return match stated {
                    Stated::Value(text) => DefaultValue::Value(tree(text)),
                    Stated::Words(words) => DefaultValue::Words(words),
                };
            }
            if matches!(key.kind, Kind::Section | Kind::Sections)
                || lookup(&minimal, &key.segments).is_some()
            {
                return DefaultValue::None;
            }
            lookup(&effective, &key.segments)
                .map_or(DefaultValue::None, |v| DefaultValue::Value(v.clone()))
        })
        .collect())
}

/// The smallest and largest value `check` accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

/// The range of a number key, from the error `resolve` gives for a value
/// far outside any range; `None` when it accepts that value.
pub fn range(key: &Key, base: &Value) -> Option<Range> {
    let huge = match key.kind {
        Kind::Integer => Value::Number(u64::MAX.into()),
        Kind::Number => Value::Number(1e300.into()),
        _ => return None,
    };
    let mut tree = base.clone();
    set(&mut tree, &key.segments, huge);
    range_error(&tree, &key.first_path())
}

/// The range named by the `must be between A and B` error at `path`.
pub fn range_error(tree: &Value, path: &str) -> Option<Range> {
    let errors = resolve_tree(tree, Path::new(".")).err()?;
    errors.iter().find_map(|e| {
        let rest = e.problem.strip_prefix("must be between ")?;
        let (min, max) = rest.split_once(" and ")?;
        (e.path == path).then_some(Range {
            min: min.parse().ok()?,
            max: max.parse().ok()?,
        })
    })
}

/// `docs/configuration.md`.
pub fn markdown() -> Result<String, Vec<ConfigError>> {
    let keys = keys();
    let defaults = defaults(&keys)?;
    let probe = tree(&minimal_with_redis());
    let mut out = String::from(INTRO);
    for (key, default) in keys.iter().zip(&defaults) {
        let path = key.path();
        let level = if key.segments.len() == 1 { "##" } else { "###" };
        out.push_str(&format!("\n{level} `{path}`\n\n"));
        out.push_str("| type | default | range | applied by | environment variable |\n");
        out.push_str("|---|---|---|---|---|\n");
        let range = match (key.kind, range(key, &probe)) {
            (Kind::Integer, Some(r)) => format!("{} to {}", r.min, r.max),
            (Kind::Number, Some(r)) => format!("{:?} to {:?}", r.min, r.max),
            (Kind::Integer | Kind::Number, None) => "any".to_owned(),
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            type_text(key),
            default_text(default, key.kind),
            range,
            match restart::applied_by(&path) {
                Applied::Reload => "reload",
                Applied::Restart => "restart",
                Applied::RestartToAddOrRemove => "reload; adding or removing it: restart",
            },
            env_text(key),
        ));
        out.push('\n');
        out.push_str(&key.description);
        if let Some(like) = &key.entries_like {
            out.push_str(&format!(
                " Each entry has the keys of [`{like}`](#{}), and the same defaults and ranges.",
                like.replace(['.', '[', ']'], "")
            ));
        }
        out.push('\n');
    }
    Ok(out)
}

fn type_text(key: &Key) -> String {
    let mut text = key.kind.name().to_owned();
    let name = key.name();
    let unit = [
        ("_seconds", "seconds"),
        ("_ms", "milliseconds"),
        ("_bytes", "bytes"),
        ("_percent", "percent"),
        ("_file", "a file path"),
        ("_dir", "a folder path"),
    ]
    .iter()
    .find(|(suffix, _)| name.ends_with(suffix))
    .map(|(_, unit)| *unit);
    if let Some(unit) = unit {
        text.push_str(", ");
        text.push_str(unit);
    }
    if key.is_secret() {
        text.push_str(", secret");
    }
    text
}

fn default_text(default: &DefaultValue, kind: Kind) -> String {
    match (default, kind) {
        (_, Kind::Section | Kind::Sections) => "—".to_owned(),
        (DefaultValue::Value(value), _) => format!("`{}`", inline_yaml(value)),
        (DefaultValue::Words(words), _) => (*words).to_owned(),
        (DefaultValue::None, _) => "unset".to_owned(),
    }
}

/// A value on one line, as YAML flow style writes it.
fn inline_yaml(value: &Value) -> String {
    match value {
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(inline_yaml).collect::<Vec<_>>().join(", ")
        ),
        Value::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap_or_default()),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn env_text(key: &Key) -> String {
    let env = key.env();
    match key.kind {
        Kind::Section => format!("`{env}__…`"),
        Kind::Sections => format!("`{env}__0__…`"),
        Kind::Texts => format!("`{env}` (a list: `[a, b]`), or `{env}__0`"),
        _ => format!("`{env}`"),
    }
}

const INTRO: &str = "# Configuration reference

<!-- Generated from the code by gateway/src/config/reference.rs: do not edit.
     `cargo nextest run -p stella-gateway --test docs_reference` fails when
     this page and the code differ; run it with STELLA_GATEWAY_UPDATE_DOCS=1
     to write the page again. -->

Every key of the gateway's configuration file ([design.md §3.2](design.md#32-configuration)),
in the order of the file format. Unknown keys are errors; `stella-gateway
check --config FILE` validates a file and prints it resolved, defaults
filled in and secrets redacted. For each key:

- **type**: `string`, `integer`, `number`, `boolean`, a list, or a section
  (a mapping of further keys). Units come from the name: `_seconds`,
  `_ms` (milliseconds), `_bytes`, `_percent`. Paths (`_file`, `_dir`) are
  relative to the configuration file's folder. A *secret* is never printed,
  logged or shown on `/config`.
- **default**: what the gateway uses when the key is absent, as `check`
  prints it; *unset* when there is none, and the description says what the
  absence means.
- **range**: the smallest and largest value accepted; any other is refused
  as `path: must be between A and B` (exit 2, or a rejected reload).
- **applied by**: *reload* (SIGHUP, a change to the file or a file it
  names, `POST /reload`, `stella-gateway reload --admin URL`), or *restart*:
  a reload that changes the key is refused with `cannot change while the
  gateway runs; restart to apply it`, and the running configuration stays.
- **environment variable**: the variable that overrides the key.

## Environment variables

Every key can be set by an environment variable named by its path, segments
joined by `__`. Names are matched case-insensitively with `_` ignored, so
`Gateway__Auth__Authority__RequireHttpsMetadata`,
`GATEWAY__AUTH__AUTHORITY__REQUIRE_HTTPS_METADATA` and
`gateway__auth__authority__requirehttpsmetadata` are one variable; the
names below are one spelling of each.

- A list entry is named by its index from 0: `Services__0__Name` is the
  first service's name. An index may be one past the last entry the file
  has, which adds an entry, but may not skip entries.
- A list of strings takes a YAML list (`[api, web]`), or one entry at a
  time (`Gateway__Auth__Authority__Audiences__0=api`).
- Values are read as YAML scalars (`true`, `30`), except for a key the file
  already sets to a string, and for secrets: those are taken as written. So
  a string key the file does not set cannot take a value that reads as a
  number or a boolean through the environment.
- A `Gateway__`, `Services__`, `Logging__` or `Traces__` variable that names
  no key is an error. The gateway ignores the `Router__*` variables meant
  for services (`Router__Enabled`, `Router__AuthorizationTrustMode`,
  `Router__IdentityEnvelopeAcceptedKeys`, `Router__IdentityEnvelopeJwksUrl`,
  ..., [envelope/SPEC.md](../envelope/SPEC.md) section 7), so one
  environment file can serve both.
- The standard `OTEL_*` variables override `traces` when they are set
  (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
  `OTEL_TRACES_SAMPLER`, `OTEL_SDK_DISABLED=true`, ...).
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::FileConfig;

    #[test]
    fn every_key_has_a_description() {
        let missing: Vec<String> = keys()
            .iter()
            .filter(|k| k.description.trim().is_empty())
            .map(Key::path)
            .collect();
        assert!(
            missing.is_empty(),
            "write a doc comment on these fields in gateway/src/config/file.rs: {missing:?}"
        );
    }

    #[test]
    fn stated_defaults_name_keys_of_the_format() {
        let paths = all_paths();
        for (path, _) in STATED_DEFAULTS {
            assert!(paths.contains(&path.to_string()), "{path}");
        }
    }

    #[test]
    fn the_restart_only_table_names_keys_of_the_format() {
        let paths = all_paths();
        for r in restart::RESTART_ONLY {
            assert!(paths.contains(&r.path.to_owned()), "{}", r.path);
        }
    }

    #[test]
    fn the_minimal_configurations_resolve() {
        resolve_tree(&tree(MINIMAL), Path::new(".")).unwrap();
        resolve_tree(&tree(&minimal_with_redis()), Path::new(".")).unwrap();
    }

    /// `resolve` as a comparable value: everything but the effective
    /// configuration, which shows what was written.
    fn resolved(tree: &Value, base: &Path) -> Result<String, Vec<ConfigError>> {
        let mut config = resolve_tree(tree, base)?;
        config.effective = FileConfig::default();
        Ok(format!("{config:?}"))
    }

    /// A configuration with a TLS listener whose files exist, so its keys
    /// are checked too.
    fn with_tls(dir: &Path) -> Value {
        for name in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.join(name), "not read by resolve").unwrap();
        }
        let mut t = tree(&minimal_with_redis());
        set(
            &mut t,
            &[
                Segment::Key("gateway".into()),
                Segment::Key("listeners".into()),
                Segment::Key("tls".into()),
            ],
            tree("{addr: \"127.0.0.1:8443\", cert_file: cert.pem, key_file: key.pem}"),
        );
        set(
            &mut t,
            &[
                Segment::Key("services".into()),
                Segment::Entry,
                Segment::Key("tls".into()),
            ],
            tree("{}"),
        );
        t
    }

    fn temp_dir(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stella-reference-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_default_resolves_as_leaving_the_key_out() {
        let keys = keys();
        let defaults = defaults(&keys).unwrap();
        let dir = temp_dir("defaults");
        let bases = [tree(MINIMAL), with_tls(&dir)];
        for base in &bases {
            resolved(base, &dir).unwrap();
        }
        let mut checked = 0;
        for (key, default) in keys.iter().zip(&defaults) {
            let DefaultValue::Value(value) = default else {
                continue;
            };
            let parent = &key.segments[..key.segments.len() - 1];
            for base in bases.iter().filter(|b| lookup(b, parent).is_some()) {
                let mut without = base.clone();
                remove(&mut without, &key.segments);
                let mut with = without.clone();
                set(&mut with, &key.segments, value.clone());
                // A key of a section this base leaves out.
                let (Ok(a), Ok(b)) = (resolved(&without, &dir), resolved(&with, &dir)) else {
                    continue;
                };
                assert_eq!(
                    a,
                    b,
                    "{}: {} is not what leaving it out gives",
                    key.path(),
                    inline_yaml(value)
                );
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} defaults checked");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_range_holds_at_both_ends_and_not_beyond() {
        let base = tree(&minimal_with_redis());
        let mut ranged = 0;
        for key in keys() {
            let Some(r) = range(&key, &base) else {
                assert!(
                    !matches!(key.kind, Kind::Integer | Kind::Number),
                    "{}: no range found",
                    key.path()
                );
                continue;
            };
            ranged += 1;
            let at = |v: f64| {
                let mut t = base.clone();
                let value = if key.kind == Kind::Integer {
                    Value::Number((v as u64).into())
                } else {
                    Value::Number(v.into())
                };
                set(&mut t, &key.segments, value);
                range_error(&t, &key.first_path())
            };
            assert_eq!(at(r.min), None, "{} at {}", key.path(), r.min);
            assert_eq!(at(r.max), None, "{} at {}", key.path(), r.max);
            let step = if key.kind == Kind::Integer { 1.0 } else { 0.5 };
            assert_eq!(at(r.max + step), Some(r), "{} past {}", key.path(), r.max);
            if r.min >= step {
                assert_eq!(at(r.min - step), Some(r), "{} below {}", key.path(), r.min);
            }
        }
        assert!(ranged > 30, "only {ranged} ranges");
    }

    #[test]
    fn every_environment_variable_sets_its_key() {
        for key in keys() {
            if matches!(key.kind, Kind::Section | Kind::Sections) {
                continue;
            }
            let (raw, expected) = match key.kind {
                Kind::Integer => ("7", tree("7")),
                Kind::Number => ("0.5", tree("0.5")),
                Kind::Boolean => ("true", tree("true")),
                Kind::Texts => ("[a, b]", tree("[a, b]")),
                _ => ("x", tree("x")),
            };
            let mut names = vec![(key.env(), raw, expected)];
            if key.kind == Kind::Texts {
                names.push((format!("{}__0", key.env()), "a", tree("[a]")));
            }
            for (name, raw, expected) in names {
                let env: HashMap<String, String> = [(name.clone(), raw.to_owned())].into();
                let (file, errors) = crate::config::parse("{}", "env.yaml", &env);
                assert!(errors.is_empty(), "{name}: {errors:?}");
                let set = serde_yaml::to_value(file.unwrap()).unwrap();
                assert_eq!(
                    lookup(&set, &key.segments),
                    Some(&expected),
                    "{name} does not set {}",
                    key.path()
                );
            }
        }
    }

    #[test]
    fn a_default_a_description_names_is_the_default() {
        let keys = keys();
        let defaults = defaults(&keys).unwrap();
        for (key, default) in keys.iter().zip(&defaults) {
            let Some(at) = key.description.find("(default ") else {
                continue;
            };
            let said: String = key.description[at + 9..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            if let DefaultValue::Value(
                value @ (Value::Bool(_) | Value::Number(_) | Value::String(_)),
            ) = default
            {
                assert_eq!(said, inline_yaml(value), "{}", key.path());
            }
        }
    }

    #[test]
    fn service_side_router_variables_are_ignored_and_others_refused() {
        for name in [
            "Router__Enabled",
            "Router__AuthorizationTrustMode",
            "Router__IdentityEnvelopeJwksUrl",
            "Router__IdentityEnvelopeJwksRefreshSeconds",
            "Router__IdentityEnvelopeJwksCooldownSeconds",
        ] {
            let env: HashMap<String, String> = [(name.to_owned(), "1".to_owned())].into();
            let (_, errors) = crate::config::parse("{}", "env.yaml", &env);
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
        let env: HashMap<String, String> =
            [("Gateway__Nonsense".to_owned(), "1".to_owned())].into();
        let (_, errors) = crate::config::parse("{}", "env.yaml", &env);
        assert_eq!(errors.len(), 1);
    }
}
