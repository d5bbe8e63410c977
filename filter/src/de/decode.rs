//! Step 2: a [`Node`] tree to a serde-derived type, every error recorded at its path.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use super::{Node, Path};
use crate::error::{ConfigError, ConfigErrors};

/// Decodes a tree into `T`, collecting every error (see the module documentation).
pub fn decode<T: DeserializeOwned>(tree: &Node<'_>) -> Result<T, ConfigErrors> {
    let mut required = Vec::new();
    loop {
        let decoder = Decoder {
            errors: RefCell::new(Vec::new()),
            required,
        };
        let outcome = T::deserialize(At {
            value: tree,
            path: &Path::Root,
            decoder: &decoder,
        });
        let Decoder {
            errors,
            required: learned,
        } = decoder;
        let mut errors = errors.into_inner();
        match outcome {
            Err(Error::Retry(strukt, field)) if !learned.contains(&(strukt, field)) => {
                required = learned;
                required.push((strukt, field));
            }
            Ok(value) if errors.is_empty() => return Ok(value),
            Ok(_) | Err(Error::Recorded | Error::Retry(..)) => return Err(ConfigErrors(errors)),
            Err(Error::Message(reason)) => {
                errors.push(ConfigError::new("$", reason));
                return Err(ConfigErrors(errors));
            }
            Err(Error::Missing(field)) => {
                errors.push(ConfigError::new("$", format!("missing field `{field}`")));
                return Err(ConfigErrors(errors));
            }
        }
    }
}

/// What went wrong while decoding. Only [`Error::Message`] and [`Error::Missing`] come from
/// the derived code; this module's deserializers record errors and pass the others up.
#[derive(Debug)]
enum Error {
    /// An error of the derived code, to be recorded where it surfaces.
    Message(String),
    /// A required field is missing from the object being decoded.
    Missing(&'static str),
    /// Recorded already; the value could not be stood in for, so its parents give up too.
    Recorded,
    /// A struct's required field was learned: decode the document again.
    Retry(&'static str, &'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(reason) => f.write_str(reason),
            Error::Missing(field) => write!(f, "missing field `{field}`"),
            Error::Recorded => f.write_str("invalid value"),
            Error::Retry(strukt, field) => write!(f, "{strukt} requires `{field}`"),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Message(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Error::Missing(field)
    }
}

/// The state of one decoding pass.
struct Decoder {
    errors: RefCell<Vec<ConfigError>>,
    /// The required fields learned so far, as (struct name, field name).
    required: Vec<(&'static str, &'static str)>,
}

impl Decoder {
    fn record(&self, path: &Path<'_>, reason: String) {
        self.errors
            .borrow_mut()
            .push(ConfigError::new(path.to_string(), reason));
    }

    fn required(&self, strukt: &'static str) -> impl Iterator<Item = &'static str> + '_ {
        self.required
            .iter()
            .filter(move |(s, _)| *s == strukt)
            .map(|(_, field)| *field)
    }
}

/// Deserializes the value at `path`, checking its type first.
#[derive(Clone, Copy)]
struct At<'a> {
    value: &'a Node<'a>,
    path: &'a Path<'a>,
    decoder: &'a Decoder,
}

impl<'a> At<'a> {
    /// Records that the value is not what `expected` says; the caller carries on with a
    /// [`Placeholder`].
    fn mismatch(self, expected: &str) -> Placeholder<'a> {
        let found = unexpected(self.value);
        self.decoder.record(
            self.path,
            format!("invalid type: {found}, expected {expected}"),
        );
        Placeholder(self.decoder)
    }

    /// Turns an error of the derived code into a recorded one; passes the others up.
    fn surface(self, error: Error) -> Error {
        match error {
            Error::Message(reason) => {
                self.decoder.record(self.path, reason);
                Error::Recorded
            }
            Error::Missing(field) => {
                self.decoder
                    .record(self.path, format!("missing field `{field}`"));
                Error::Recorded
            }
            other => other,
        }
    }
}

/// What a value is, for an error message: `integer `7``, `string "x"`, `map`…
fn unexpected<'v>(value: &'v Node<'_>) -> Unexpected<'v> {
    match value {
        Node::Null => Unexpected::Other("null"),
        Node::Bool(b) => Unexpected::Bool(*b),
        Node::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, f) => Unexpected::Float(f.unwrap_or(f64::NAN)),
        },
        Node::String(s) => Unexpected::Str(s),
        Node::Array(_) => Unexpected::Seq,
        Node::Object(_) => Unexpected::Map,
    }
}

/// `one of `a`, `b`, `c``, as serde and the old decoder wrote it.
fn one_of(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("one of {}", names.join(", "))
}

impl<'de> de::Deserializer<'de> for At<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Node::String(s) => visitor.visit_str(s),
            Node::Array(items) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
                path: self.path,
                decoder: self.decoder,
            }),
            Node::Object(_) => self.deserialize_map(visitor),
        }
        .map_err(|e| self.surface(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::Bool(b) => visitor.visit_bool(*b).map_err(|e| self.surface(e)),
            _ => self.mismatch("a boolean").deserialize_bool(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::Number(n) => visitor
                .visit_f64(n.as_f64().unwrap_or(f64::NAN))
                .map_err(|e| self.surface(e)),
            _ => self.mismatch("a number").deserialize_f64(visitor),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        const EXPECTED: &str = "a non-negative integer";
        match self.value {
            Node::Number(n) if n.is_u64() => self.deserialize_any(visitor),
            Node::Number(n) if n.is_i64() => {
                let found = unexpected(self.value);
                self.decoder.record(
                    self.path,
                    format!("invalid value: {found}, expected {EXPECTED}"),
                );
                Placeholder(self.decoder).deserialize_u64(visitor)
            }
            _ => self.mismatch(EXPECTED).deserialize_u64(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::String(s) => visitor.visit_str(s).map_err(|e| self.surface(e)),
            _ => self.mismatch("a string").deserialize_str(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::Array(_) => self.deserialize_any(visitor),
            _ => self.mismatch("a sequence").deserialize_seq(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Node::Object(object) => visitor
                .visit_map(Members {
                    members: object.iter(),
                    fields: None,
                    missing: Vec::new().into_iter(),
                    pending: None,
                    at: self,
                })
                .map_err(|e| self.surface(e)),
            _ => self.mismatch("a map").deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Node::Object(object) = self.value else {
            let reason = match self.path {
                Path::Root => "must be a JSON object",
                _ => "must be an object",
            };
            self.decoder.record(self.path, reason.to_owned());
            return Placeholder(self.decoder).deserialize_struct(name, fields, visitor);
        };
        let missing = self
            .decoder
            .required(name)
            .filter(|field| !Node::has(object, field))
            .collect::<Vec<_>>()
            .into_iter();
        let members = Members {
            members: object.iter(),
            fields: Some(fields),
            missing,
            pending: None,
            at: self,
        };
        match visitor.visit_map(members) {
            Err(Error::Missing(field)) => Err(Error::Retry(name, field)),
            result => result.map_err(|e| self.surface(e)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let expected = one_of(variants);
        match self.value {
            Node::String(s) if variants.contains(&s.as_ref()) => visitor
                .visit_enum(s.as_ref().into_deserializer())
                .map_err(|e| self.surface(e)),
            Node::String(s) => {
                self.decoder.record(
                    self.path,
                    format!("unknown variant `{s}`, expected {expected}"),
                );
                Placeholder(self.decoder).deserialize_enum(name, variants, visitor)
            }
            _ => self
                .mismatch(&expected)
                .deserialize_enum(name, variants, visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u128 f32 char bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct identifier ignored_any
    }
}

/// The items of an array, each deserialized at its index.
struct Items<'a> {
    items: std::slice::Iter<'a, Node<'a>>,
    index: usize,
    path: &'a Path<'a>,
    decoder: &'a Decoder,
}

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, self.index);
        self.index += 1;
        seed.deserialize(At {
            value,
            path: &path,
            decoder: self.decoder,
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The members of an object. For a struct, a member that is not one of its `fields` is
/// recorded as unknown and skipped, and the learned required fields it lacks are handed to the
/// derived code last, each reported missing and stood in for.
struct Members<'a> {
    members: std::slice::Iter<'a, (Cow<'a, str>, Node<'a>)>,
    fields: Option<&'static [&'static str]>,
    missing: std::vec::IntoIter<&'static str>,
    pending: Option<Pending<'a>>,
    at: At<'a>,
}

enum Pending<'a> {
    Member(&'a str, &'a Node<'a>),
    Missing,
}

impl<'de> de::MapAccess<'de> for Members<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, value) in self.members.by_ref() {
            match self.fields {
                Some(fields) if !fields.contains(&key.as_ref()) => {
                    let path = Path::Key(self.at.path, key);
                    self.at.decoder.record(
                        &path,
                        format!("unknown field `{key}`, expected {}", one_of(fields)),
                    );
                }
                _ => {
                    self.pending = Some(Pending::Member(key, value));
                    return seed.deserialize(key.as_ref().into_deserializer()).map(Some);
                }
            }
        }
        match self.missing.next() {
            Some(field) => {
                self.at
                    .decoder
                    .record(self.at.path, format!("missing field `{field}`"));
                self.pending = Some(Pending::Missing);
                seed.deserialize(field.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.pending.take() {
            Some(Pending::Member(key, value)) => seed.deserialize(At {
                value,
                path: &Path::Key(self.at.path, key),
                decoder: self.at.decoder,
            }),
            Some(Pending::Missing) | None => seed.deserialize(Placeholder(self.at.decoder)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len() + self.missing.len())
    }
}

/// Stands in for a value already reported as wrong: the simplest value of whatever type is
/// asked for. A struct gets its learned required fields, each a placeholder itself.
#[derive(Clone, Copy)]
struct Placeholder<'a>(&'a Decoder);

impl<'de> de::Deserializer<'de> for Placeholder<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_none()
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<Self>()))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
            &str,
            Self,
        )>()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let fields = self.0.required(name).map(|field| (field, self));
        match visitor.visit_map(de::value::MapDeserializer::new(fields)) {
            Err(Error::Missing(field)) => Err(Error::Retry(name, field)),
            result => result,
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match variants.first() {
            Some(first) => visitor.visit_enum((*first).into_deserializer()),
            None => visitor.visit_unit(),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u128 f32 char bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Placeholder<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}
