//! The one YAML reader of the project's files (the gateway's configuration,
//! policy files, policy tests, smoke profiles): text to a tree, an empty
//! document read as an empty mapping, and an error that names only the
//! position (the parser's own message can quote the file, which may hold a
//! secret).

pub use serde_yaml::{Mapping, Value};

/// Where the text stopped being YAML (1-based), when the parser knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub at: Option<(usize, usize)>,
}

/// Parses YAML text into a tree; an empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    match serde_yaml::from_str(text) {
        Ok(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Ok(v) => Ok(v),
        Err(e) => Err(YamlError {
            at: e.location().map(|l| (l.line(), l.column())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_is_an_empty_mapping_and_errors_name_only_the_position() {
        assert_eq!(parse("").unwrap(), Value::Mapping(Mapping::new()));
        assert_eq!(parse("a: 1").unwrap()["a"], Value::from(1));
        let err = parse("key: [secret-value\n").unwrap_err();
        let (line, _) = err.at.expect("a position");
        assert!(line >= 1);
        assert!(!format!("{err:?}").contains("secret-value"));
    }
}
