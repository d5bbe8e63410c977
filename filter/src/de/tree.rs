//! Step 1: JSON bytes to a [`Node`] tree, refusing a duplicate key at its path.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};
use serde_json::{Map, Number, Value};

use super::Path;
use crate::error::ConfigError;

/// A JSON value, its strings borrowed from the input where they can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in document order; no two have the same key.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Node<'_> {
    /// The same document as a [`serde_json::Value`].
    pub fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Number(n) => Value::Number(n),
            Node::String(s) => Value::String(s.into_owned()),
            Node::Array(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Node::Object(members) => Value::Object(
                members
                    .into_iter()
                    .map(|(key, value)| (key.into_owned(), value.into_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    pub(super) fn has(members: &[(Cow<'_, str>, Node<'_>)], key: &str) -> bool {
        members.iter().any(|(k, _)| k == key)
    }
}

/// Objects with more members than this are checked for duplicate keys with a hash set.
const LINEAR_KEY_CHECK: usize = 16;

/// Reads JSON bytes into a tree, refusing a duplicate key. A syntax error is reported at `$`,
/// a duplicate key at its path.
pub fn read(bytes: &[u8]) -> Result<Node<'_>, ConfigError> {
    let duplicate = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let tree = ReadSeed {
        path: &Path::Root,
        duplicate: &duplicate,
    }
    .deserialize(&mut reader)
    .and_then(|tree| reader.end().map(|()| tree));
    tree.map_err(|error| {
        duplicate
            .into_inner()
            .unwrap_or_else(|| ConfigError::new("$", format!("invalid JSON: {error}")))
    })
}

/// Builds a [`Node`], refusing a duplicate key and saying where.
struct ReadSeed<'a> {
    path: &'a Path<'a>,
    duplicate: &'a RefCell<Option<ConfigError>>,
}

impl<'de> DeserializeSeed<'de> for ReadSeed<'_> {
    type Value = Node<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReadSeed<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Node<'de>, E> {
        // serde_json refuses a number out of range before it gets here.
        Number::from_f64(n)
            .map(Node::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or_default());
        loop {
            let seed = ReadSeed {
                path: &Path::Index(self.path, items.len()),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Node::Array(items)),
            }
        }
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        // Filled only once the object is too large for a linear search.
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let duplicate = if members.len() < LINEAR_KEY_CHECK {
                Node::has(&members, &key)
            } else {
                if seen.is_empty() {
                    seen.extend(members.iter().map(|(k, _)| k.clone()));
                }
                !seen.insert(key.clone())
            };
            let path = Path::Key(self.path, &key);
            if duplicate {
                let reason = format!("duplicate key `{key}`");
                *self.duplicate.borrow_mut() = Some(ConfigError::new(path.to_string(), reason));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(ReadSeed {
                path: &path,
                duplicate: self.duplicate,
            })?;
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

/// An object key, borrowed from the input unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}
