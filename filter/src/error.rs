//! Configuration errors: each names the JSON path of what is wrong and why.

use std::fmt;

/// One thing wrong with a configuration, at one JSON path
/// (`routes[0].variants[1].weight`; `$` is the document itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// One step of a JSON path: an object key or an array index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// Writes steps as a JSON path, `routes[3].variants[0].weight`; `$` when there are none.
pub(crate) fn json_path<'a>(steps: impl IntoIterator<Item = PathStep<'a>>) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            PathStep::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            PathStep::Index(i) => {
                path.push('[');
                path.push_str(&i.to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        path.push('$');
    }
    path
}

/// Every error found in a configuration, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
