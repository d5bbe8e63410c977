//! A strict JSON parser (RFC 8259) for the plugin configuration.
//!
//! The configuration is read with this parser rather than serde_json: it is a small part of
//! the module where serde_json and the derived decoders were a third of it, and it parses a
//! thousand routes in a fraction of the time. Strict means: the input is UTF-8, strings hold no
//! control characters and no lone surrogates, numbers follow the JSON grammar (no leading zeros,
//! no `+`, no trailing `.`), there are no trailing commas or trailing characters, objects have
//! no duplicate keys, and nesting is at most [`MAX_DEPTH`] deep.
//!
//! Numbers are kept as their text: nothing is converted until the decoder knows the type it
//! wants, so an integer such as `maxAge` stays exact and nothing formats a float.

use std::borrow::Cow;
use std::collections::HashMap;

/// Arrays and objects nest at most this deep (the same limit as serde_json's).
pub const MAX_DEPTH: usize = 128;

/// Objects with more members than this are checked for duplicate keys with a hash map.
const LINEAR_KEY_CHECK: usize = 16;

/// A JSON document. Strings and keys borrow from the input unless they hold escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A number exactly as written, valid by the JSON grammar.
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in document order; no two have the same key.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// Why a document is not JSON, and where: line and column (in characters) are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at line {line} column {column}")]
pub struct Error {
    pub reason: String,
    pub line: usize,
    pub column: usize,
}

impl Error {
    /// The error at byte `offset` of `input`, of which the bytes before `offset` are UTF-8.
    fn at(input: &[u8], offset: usize, reason: impl Into<String>) -> Self {
        let before = input.get(..offset).unwrap_or(input);
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let in_line = before.get(line_start..).unwrap_or_default();
        // Characters, not bytes: count the bytes that start a UTF-8 sequence.
        let column = 1 + in_line.iter().filter(|b| (**b & 0xc0) != 0x80).count();
        Self {
            reason: reason.into(),
            line,
            column,
        }
    }
}

/// Parses one JSON document, with nothing but whitespace around it.
pub fn parse(input: &[u8]) -> Result<Value<'_>, Error> {
    let text = std::str::from_utf8(input)
        .map_err(|e| Error::at(input, e.valid_up_to(), "invalid UTF-8"))?;
    let mut parser = Parser {
        text,
        bytes: input,
        pos: 0,
        items: Vec::new(),
        members: Vec::new(),
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos < input.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The items of the arrays being read, innermost last: each array takes its own off the
    /// top when it ends, so it is allocated once, at its final size.
    items: Vec<Value<'a>>,
    /// The same for the members of objects.
    members: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::at(self.bytes, self.pos, reason)
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Moves past the bytes for which `skip` holds.
    #[inline(always)]
    fn skip_while(&mut self, skip: impl Fn(u8) -> bool) {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().position(|b| !skip(*b)).unwrap_or(rest.len());
    }

    fn skip_whitespace(&mut self) {
        self.skip_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    }

    /// The text from `start` to the current position; both are at ASCII bytes.
    fn slice(&self, start: usize) -> Result<&'a str, Error> {
        self.text
            .get(start..self.pos)
            .ok_or_else(|| self.error("invalid UTF-8"))
    }

    /// A value starting at the current position (no whitespace before it). `depth` counts the
    /// arrays and objects around it.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        match self.peek() {
            None => Err(self.error("unexpected end of input, expected a value")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, Error> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.enter(depth)?;
        self.pos += 1;
        let first = self.items.len();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(Vec::new()));
        }
        loop {
            let item = self.value(depth)?;
            self.items.push(item);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        return Err(self.error("trailing comma"));
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(self.items.split_off(first)));
                }
                Some(_) => return Err(self.error("expected `,` or `]`")),
                None => return Err(self.error("unexpected end of input, expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.enter(depth)?;
        self.pos += 1;
        let first = self.members.len();
        // Where each key after the first LINEAR_KEY_CHECK starts, to report a duplicate.
        let mut later_keys = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Vec::new()));
        }
        loop {
            match self.peek() {
                Some(b'"') => {}
                Some(b'}') => return Err(self.error("trailing comma")),
                Some(_) => return Err(self.error("expected a key (a string)")),
                None => return Err(self.error("unexpected end of input, expected a key")),
            }
            let key_start = self.pos;
            let key = self.string()?;
            let earlier = self.members.get(first..).unwrap_or_default();
            if earlier.len() < LINEAR_KEY_CHECK {
                if earlier.iter().any(|(k, _)| *k == key) {
                    return Err(Error::at(
                        self.bytes,
                        key_start,
                        format!("duplicate key {key:?}"),
                    ));
                }
            } else {
                later_keys.push(key_start);
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.pos += 1,
                Some(_) => return Err(self.error("expected `:`")),
                None => return Err(self.error("unexpected end of input, expected `:`")),
            }
            self.skip_whitespace();
            let value = self.value(depth)?;
            self.members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return Err(self.error("expected `,` or `}`")),
                None => return Err(self.error("unexpected end of input, expected `,` or `}`")),
            }
        }
        let members = self.members.split_off(first);
        if !later_keys.is_empty() {
            self.check_duplicates(&members, &later_keys)?;
        }
        Ok(Value::Object(members))
    }

    /// Duplicate keys in a large object: the first repeated key in document order.
    fn check_duplicates(
        &self,
        members: &[(Cow<'a, str>, Value<'a>)],
        later_keys: &[usize],
    ) -> Result<(), Error> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(members.len());
        for (i, (key, _)) in members.iter().enumerate() {
            if seen.insert(key.as_ref(), i).is_some() {
                let offset = i
                    .checked_sub(LINEAR_KEY_CHECK)
                    .and_then(|j| later_keys.get(j))
                    .copied()
                    .unwrap_or(self.pos);
                return Err(Error::at(
                    self.bytes,
                    offset,
                    format!("duplicate key {key:?}"),
                ));
            }
        }
        Ok(())
    }

    /// A string starting at its opening quote. Without escapes it borrows the input.
    fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        self.pos += 1;
        let start = self.pos;
        self.skip_while(is_plain);
        match self.peek() {
            Some(b'"') => {
                let s = self.slice(start)?;
                self.pos += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.error("control character in a string")),
            None => return Err(self.error("unexpected end of input in a string")),
        }
        let mut owned = String::from(self.slice(start)?);
        loop {
            let run = self.pos;
            self.skip_while(is_plain);
            owned.push_str(self.slice(run)?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => owned.push(self.escape()?),
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unexpected end of input in a string")),
            }
        }
    }

    /// The character an escape stands for, the position at its backslash.
    fn escape(&mut self) -> Result<char, Error> {
        let start = self.pos;
        self.pos += 1;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode_escape(start);
            }
            Some(_) => return Err(self.error("invalid escape")),
            None => return Err(self.error("unexpected end of input in a string")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// `\uXXXX`, after the `u`; a surrogate pair is two of them.
    fn unicode_escape(&mut self, start: usize) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(Error::at(
                        self.bytes,
                        start,
                        "lone leading surrogate in a \\u escape",
                    ));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(Error::at(
                        self.bytes,
                        start,
                        "lone leading surrogate in a \\u escape",
                    ));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => {
                return Err(Error::at(
                    self.bytes,
                    start,
                    "lone trailing surrogate in a \\u escape",
                ))
            }
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| Error::at(self.bytes, start, "invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.error("invalid \\u escape: expected 4 hex digits"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, kept as text.
    fn number(&mut self) -> Result<Value<'a>, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number: leading zero"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number: expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok(Value::Number(Cow::Borrowed(self.slice(start)?)))
    }

    fn digits(&mut self) {
        self.skip_while(|b| b.is_ascii_digit());
    }

    fn required_digits(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(self.error("invalid number: expected a digit")),
        }
    }
}

/// A byte that stands for itself in a string: not a quote, a backslash or a control character.
fn is_plain(b: u8) -> bool {
    b != b'"' && b != b'\\' && b >= 0x20
}

/// A serde_json document as a [`Value`] borrowing its strings, for configurations read by
/// other means (YAML, the Kubernetes API). Numbers become their serde_json text.
#[cfg(feature = "serde")]
pub fn from_serde(value: &serde_json::Value) -> Result<Value<'_>, String> {
    from_serde_at(value, 0)
}

#[cfg(feature = "serde")]
fn from_serde_at(value: &serde_json::Value, depth: usize) -> Result<Value<'_>, String> {
    use serde_json::Value as Serde;
    let nested = |depth: usize| {
        if depth > MAX_DEPTH {
            Err(format!("nested deeper than {MAX_DEPTH} levels"))
        } else {
            Ok(depth)
        }
    };
    Ok(match value {
        Serde::Null => Value::Null,
        Serde::Bool(b) => Value::Bool(*b),
        Serde::Number(n) => Value::Number(Cow::Owned(n.to_string())),
        Serde::String(s) => Value::String(Cow::Borrowed(s)),
        Serde::Array(items) => {
            let depth = nested(depth + 1)?;
            Value::Array(
                items
                    .iter()
                    .map(|item| from_serde_at(item, depth))
                    .collect::<Result<_, _>>()?,
            )
        }
        Serde::Object(members) => {
            let depth = nested(depth + 1)?;
            Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Ok((Cow::Borrowed(k.as_str()), from_serde_at(v, depth)?)))
                    .collect::<Result<_, String>>()?,
            )
        }
    })
}
