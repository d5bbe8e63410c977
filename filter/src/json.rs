//! A strict JSON parser (RFC 8259) for the plugin configuration.
//!
//! The configuration is read with this parser rather than serde_json: it is a small part of
//! the module where serde_json and the derived decoders were about a fifth of it, and it parses a
//! thousand routes in half the time. Strict means: the input is UTF-8, strings hold no
//! control characters and no lone surrogates, numbers follow the JSON grammar (no leading zeros,
//! no `+`, no trailing `.`), there are no trailing commas or trailing characters, objects have
//! no duplicate keys, and nesting is at most [`MAX_DEPTH`] deep.
//!
//! Numbers are kept as their text: nothing is converted until the decoder knows the type it
//! wants, so an integer such as `maxAge` stays exact and nothing formats a float.
//!
//! [`parse_document`] reads a document into a [`Document`]: every array's items and every
//! object's members sit in two flat lists, so a document of any size takes a handful of
//! allocations, not one per array and object. [`parse`] gives the same document as a tree of
//! [`Value`]s.

use std::borrow::Cow;
use std::collections::HashMap;

/// Arrays and objects nest at most this deep: what serde_json accepts too.
pub const MAX_DEPTH: usize = 127;

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

/// A value in a [`Document`]; an array or object is a span of the document's items or members.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Node<'a> {
    #[default]
    Null,
    Bool(bool),
    /// A number exactly as written, valid by the JSON grammar.
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Span),
    /// Members in document order; no two have the same key.
    Object(Span),
}

/// Where an array's items or an object's members are in their [`Document`] list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: usize,
    len: usize,
}

/// A JSON document read into flat lists. Strings and keys borrow from the input unless they
/// hold escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    root: Node<'a>,
    /// The items of every array, each array's together and in order.
    items: Vec<Node<'a>>,
    /// The members of every object, likewise.
    members: Vec<(Cow<'a, str>, Node<'a>)>,
}

impl<'a> Document<'a> {
    pub fn root(&self) -> &Node<'a> {
        &self.root
    }

    /// The items of an array of this document.
    pub fn items(&self, array: Span) -> &[Node<'a>] {
        self.items
            .get(array.start..array.start + array.len)
            .unwrap_or_default()
    }

    /// The members of an object of this document.
    pub fn members(&self, object: Span) -> &[(Cow<'a, str>, Node<'a>)] {
        self.members
            .get(object.start..object.start + object.len)
            .unwrap_or_default()
    }

    /// Moves `nodes` to the end of the items, as one array.
    fn push_array(&mut self, nodes: impl Iterator<Item = Node<'a>>) -> Node<'a> {
        let start = self.items.len();
        self.items.extend(nodes);
        Node::Array(Span {
            start,
            len: self.items.len() - start,
        })
    }

    /// Moves `members` to the end of the members, as one object.
    fn push_object(&mut self, members: impl Iterator<Item = (Cow<'a, str>, Node<'a>)>) -> Node<'a> {
        let start = self.members.len();
        self.members.extend(members);
        Node::Object(Span {
            start,
            len: self.members.len() - start,
        })
    }

    /// The document as a tree.
    pub fn into_value(mut self) -> Value<'a> {
        let root = std::mem::replace(&mut self.root, Node::Null);
        self.take(root)
    }

    fn take(&mut self, node: Node<'a>) -> Value<'a> {
        match node {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Number(n) => Value::Number(n),
            Node::String(s) => Value::String(s),
            Node::Array(span) => {
                let mut items = Vec::with_capacity(span.len);
                for i in span.start..span.start + span.len {
                    let item = self
                        .items
                        .get_mut(i)
                        .map(|n| std::mem::replace(n, Node::Null));
                    items.push(self.take(item.unwrap_or(Node::Null)));
                }
                Value::Array(items)
            }
            Node::Object(span) => {
                let mut members = Vec::with_capacity(span.len);
                for i in span.start..span.start + span.len {
                    let (key, value) = self
                        .members
                        .get_mut(i)
                        .map(|(k, v)| (std::mem::take(k), std::mem::replace(v, Node::Null)))
                        .unwrap_or_default();
                    members.push((key, self.take(value)));
                }
                Value::Object(members)
            }
        }
    }
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

/// Parses one JSON document, with nothing but whitespace around it, as a tree.
pub fn parse(input: &[u8]) -> Result<Value<'_>, Error> {
    parse_document(input).map(Document::into_value)
}

/// Parses one JSON document, with nothing but whitespace around it.
pub fn parse_document(input: &[u8]) -> Result<Document<'_>, Error> {
    let text = std::str::from_utf8(input)
        .map_err(|e| Error::at(input, e.valid_up_to(), "invalid UTF-8"))?;
    let mut parser = Parser {
        text,
        bytes: input,
        pos: 0,
        items: Vec::new(),
        members: Vec::new(),
        document: Document {
            root: Node::Null,
            items: Vec::new(),
            members: Vec::new(),
        },
    };
    parser.skip_whitespace();
    let root = parser.value(0).map_err(|e| *e)?;
    parser.skip_whitespace();
    if parser.pos < input.len() {
        return Err(*parser.error("trailing characters"));
    }
    let mut document = parser.document;
    document.root = root;
    Ok(document)
}

/// Errors are boxed while parsing: the results passed up for every value stay small.
type Parsed<T> = Result<T, Box<Error>>;

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The items of the arrays being read, innermost last: each array moves its own off the
    /// top to the document's items when it ends.
    items: Vec<Node<'a>>,
    /// The same for the members of objects.
    members: Vec<(Cow<'a, str>, Node<'a>)>,
    document: Document<'a>,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: impl Into<String>) -> Box<Error> {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, offset: usize, reason: impl Into<String>) -> Box<Error> {
        Box::new(Error::at(self.bytes, offset, reason))
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Moves past the bytes for which `skip` holds.
    #[inline(always)]
    fn skip_while(&mut self, skip: impl Fn(u8) -> bool) {
        let mut pos = self.pos;
        while let Some(b) = self.bytes.get(pos) {
            if !skip(*b) {
                break;
            }
            pos += 1;
        }
        self.pos = pos;
    }

    fn skip_whitespace(&mut self) {
        self.skip_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    }

    /// The text from `start` to the current position; both are at ASCII bytes.
    fn slice(&self, start: usize) -> Parsed<&'a str> {
        self.text
            .get(start..self.pos)
            .ok_or_else(|| self.error("invalid UTF-8"))
    }

    /// A value starting at the current position (no whitespace before it). `depth` counts the
    /// arrays and objects around it.
    fn value(&mut self, depth: usize) -> Parsed<Node<'a>> {
        match self.peek() {
            None => Err(self.error("unexpected end of input, expected a value")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Node::String),
            Some(b't') => self.literal("true", Node::Bool(true)),
            Some(b'f') => self.literal("false", Node::Bool(false)),
            Some(b'n') => self.literal("null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn enter(&self, depth: usize) -> Parsed<()> {
        if depth > MAX_DEPTH {
            Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn literal(&mut self, word: &str, value: Node<'a>) -> Parsed<Node<'a>> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn array(&mut self, depth: usize) -> Parsed<Node<'a>> {
        self.enter(depth)?;
        self.pos += 1;
        let first = self.items.len();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(self.document.push_array(std::iter::empty()));
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
                    let items = self.items.drain(first..);
                    return Ok(self.document.push_array(items));
                }
                Some(_) => return Err(self.error("expected `,` or `]`")),
                None => return Err(self.error("unexpected end of input, expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Parsed<Node<'a>> {
        self.enter(depth)?;
        self.pos += 1;
        let first = self.members.len();
        // Where each key after the first LINEAR_KEY_CHECK starts, to report a duplicate.
        let mut later_keys = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(self.document.push_object(std::iter::empty()));
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
                    return Err(self.error_at(key_start, format!("duplicate key {key:?}")));
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
        if !later_keys.is_empty() {
            let members = self.members.get(first..).unwrap_or_default();
            self.check_duplicates(members, &later_keys)?;
        }
        let members = self.members.drain(first..);
        Ok(self.document.push_object(members))
    }

    /// Duplicate keys in a large object: the first repeated key in document order.
    fn check_duplicates(
        &self,
        members: &[(Cow<'a, str>, Node<'a>)],
        later_keys: &[usize],
    ) -> Parsed<()> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(members.len());
        for (i, (key, _)) in members.iter().enumerate() {
            if seen.insert(key.as_ref(), i).is_some() {
                let offset = i
                    .checked_sub(LINEAR_KEY_CHECK)
                    .and_then(|j| later_keys.get(j))
                    .copied()
                    .unwrap_or(self.pos);
                return Err(self.error_at(offset, format!("duplicate key {key:?}")));
            }
        }
        Ok(())
    }

    /// A string starting at its opening quote. Without escapes it borrows the input.
    fn string(&mut self) -> Parsed<Cow<'a, str>> {
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
    fn escape(&mut self) -> Parsed<char> {
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
    fn unicode_escape(&mut self, start: usize) -> Parsed<char> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error_at(start, "lone leading surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error_at(start, "lone leading surrogate in a \\u escape"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => {
                return Err(self.error_at(start, "lone trailing surrogate in a \\u escape"))
            }
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error_at(start, "invalid \\u escape"))
    }

    fn hex4(&mut self) -> Parsed<u32> {
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
    fn number(&mut self) -> Parsed<Node<'a>> {
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
        Ok(Node::Number(Cow::Borrowed(self.slice(start)?)))
    }

    fn digits(&mut self) {
        self.skip_while(|b| b.is_ascii_digit());
    }

    fn required_digits(&mut self) -> Parsed<()> {
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
#[inline(always)]
fn is_plain(b: u8) -> bool {
    b != b'"' && b != b'\\' && b >= 0x20
}

/// A serde_json document as a [`Document`] borrowing its strings, for configurations read by
/// other means (YAML, the Kubernetes API). Numbers become their serde_json text.
#[cfg(feature = "serde")]
pub fn from_serde(value: &serde_json::Value) -> Result<Document<'_>, String> {
    let mut document = Document {
        root: Node::Null,
        items: Vec::new(),
        members: Vec::new(),
    };
    document.root = from_serde_at(value, 0, &mut document)?;
    Ok(document)
}

#[cfg(feature = "serde")]
fn from_serde_at<'a>(
    value: &'a serde_json::Value,
    depth: usize,
    document: &mut Document<'a>,
) -> Result<Node<'a>, String> {
    use serde_json::Value as Serde;
    let nested = |depth: usize| {
        if depth > MAX_DEPTH {
            Err(format!("nested deeper than {MAX_DEPTH} levels"))
        } else {
            Ok(depth)
        }
    };
    Ok(match value {
        Serde::Null => Node::Null,
        Serde::Bool(b) => Node::Bool(*b),
        Serde::Number(n) => Node::Number(Cow::Owned(n.to_string())),
        Serde::String(s) => Node::String(Cow::Borrowed(s)),
        Serde::Array(items) => {
            let depth = nested(depth + 1)?;
            let items = items
                .iter()
                .map(|item| from_serde_at(item, depth, document))
                .collect::<Result<Vec<_>, _>>()?;
            document.push_array(items.into_iter())
        }
        Serde::Object(members) => {
            let depth = nested(depth + 1)?;
            let members = members
                .iter()
                .map(|(k, v)| {
                    Ok((
                        Cow::Borrowed(k.as_str()),
                        from_serde_at(v, depth, document)?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            document.push_object(members.into_iter())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Value<'_> {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &[u8]) -> String {
        match parse(text) {
            Ok(value) => panic!("{text:?} parsed as {value:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn string(s: &str) -> Value<'_> {
        Value::String(Cow::Borrowed(s))
    }

    fn number(s: &str) -> Value<'_> {
        Value::Number(Cow::Borrowed(s))
    }

    #[test]
    fn scalars_and_whitespace() {
        assert_eq!(ok("null"), Value::Null);
        assert_eq!(ok(" \t\r\ntrue\n"), Value::Bool(true));
        assert_eq!(ok("false"), Value::Bool(false));
        assert_eq!(ok(r#""x""#), string("x"));
        assert_eq!(
            ok("[ 1 , {\"a\" :\n[] } ]"),
            Value::Array(vec![
                number("1"),
                Value::Object(vec![(Cow::Borrowed("a"), Value::Array(vec![]))])
            ])
        );
        assert_eq!(
            err(b""),
            "unexpected end of input, expected a value at line 1 column 1"
        );
        assert_eq!(
            err(b"  \n "),
            "unexpected end of input, expected a value at line 2 column 2"
        );
        assert!(
            err(b"\x0c1").starts_with("expected a value"),
            "form feed is not whitespace"
        );
        assert!(
            err(b"\xc2\xa01").starts_with("expected a value"),
            "nor is U+00A0"
        );
        assert!(err(b"nul").starts_with("expected a value"));
        assert!(err(b"True").starts_with("expected a value"));
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            ok(r#""a\"\\\/\b\f\n\r\tz""#),
            Value::String(Cow::Owned("a\"\\/\u{8}\u{c}\n\r\tz".to_owned()))
        );
        assert_eq!(ok(r#""\u00e9\u20AC""#), string("é€"));
        assert_eq!(ok("\"é€ 😀\""), string("é€ 😀"), "UTF-8 as it is");
        assert!(matches!(ok(r#""plain""#), Value::String(Cow::Borrowed(_))));
        assert_eq!(ok(r#""\ud83d\ude00""#), string("😀"), "a surrogate pair");
        assert_eq!(ok(r#""\uD83D\uDE00x""#), string("😀x"));
        assert_eq!(ok(r#""\u0000""#), string("\0"));
        for (text, reason) in [
            (r#""\ud83d""#, "lone leading surrogate"),
            (r#""\ud83dx""#, "lone leading surrogate"),
            (r#""\ud83d\u0041""#, "lone leading surrogate"),
            (r#""\ud83d\ud83d""#, "lone leading surrogate"),
            (r#""\ude00""#, "lone trailing surrogate"),
            (r#""\u12""#, "invalid \\u escape"),
            (r#""\u12g4""#, "invalid \\u escape"),
            (r#""\x""#, "invalid escape"),
            (r#""\'""#, "invalid escape"),
            ("\"a\nb\"", "control character"),
            ("\"a\tb\"", "control character"),
            ("\"\\n\u{1f}\"", "control character"),
            (r#""abc"#, "unexpected end of input in a string"),
            (r#""abc\"#, "unexpected end of input in a string"),
        ] {
            let e = err(text.as_bytes());
            assert!(e.starts_with(reason), "{text}: {e}");
        }
        assert_eq!(
            ok("\"\u{7f}\""),
            string("\u{7f}"),
            "DEL is not a control character in JSON"
        );
    }

    #[test]
    fn invalid_utf8_is_rejected_where_it_is() {
        assert_eq!(err(b"\"ab\xff\""), "invalid UTF-8 at line 1 column 4");
        assert_eq!(err(b"[\"\xc3\"]"), "invalid UTF-8 at line 1 column 3");
        assert_eq!(
            err(b"\"\xed\xa0\x80\""),
            "invalid UTF-8 at line 1 column 2",
            "an encoded surrogate"
        );
        assert_eq!(
            err(b"\"\xc0\xaf\""),
            "invalid UTF-8 at line 1 column 2",
            "overlong"
        );
        assert_eq!(err(b"{}\n\"\xe2\x82\""), "invalid UTF-8 at line 2 column 2");
        assert_eq!(
            err("\"é\"x".as_bytes()),
            "trailing characters at line 1 column 4",
            "columns count characters"
        );
    }

    #[test]
    fn numbers_follow_the_grammar_and_keep_their_text() {
        for text in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "0.5",
            "-0.0",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1.25e-3",
            "123456789012345678901234567890",
            "1e400",
            "-1e-400",
            "18446744073709551616",
        ] {
            assert_eq!(ok(text), number(text));
        }
        for text in [
            "01",
            "-01",
            "00",
            "-",
            "--1",
            "+1",
            ".5",
            "1.",
            "1.e5",
            "1e",
            "1e+",
            "-e1",
            "0x10",
            "1.5.2",
            "Infinity",
            "NaN",
            "-Infinity",
            "1 2",
        ] {
            assert!(
                parse(text.as_bytes()).is_err(),
                "{text} is not a JSON number"
            );
        }
        assert_eq!(
            err(b"012"),
            "invalid number: leading zero at line 1 column 2"
        );
        assert_eq!(
            err(b"[-]"),
            "invalid number: expected a digit at line 1 column 3"
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(err(b"[1,]"), "trailing comma at line 1 column 4");
        assert_eq!(err(b"{\"a\":1,}"), "trailing comma at line 1 column 8");
        assert_eq!(err(b"[1 2]"), "expected `,` or `]` at line 1 column 4");
        assert_eq!(err(b"{\"a\" 1}"), "expected `:` at line 1 column 6");
        assert_eq!(
            err(b"{a:1}"),
            "expected a key (a string) at line 1 column 2"
        );
        assert_eq!(
            err(b"{\"a\":1 \"b\":2}"),
            "expected `,` or `}` at line 1 column 8"
        );
        assert_eq!(err(b"[,1]"), "expected a value at line 1 column 2");
        assert_eq!(err(b"{} {}"), "trailing characters at line 1 column 4");
        assert_eq!(err(b"1 x"), "trailing characters at line 1 column 3");
        assert_eq!(
            err(b"[1"),
            "unexpected end of input, expected `,` or `]` at line 1 column 3"
        );
        assert_eq!(
            err(b"{\"a\":"),
            "unexpected end of input, expected a value at line 1 column 6"
        );
        assert_eq!(
            err(b"{\"a\""),
            "unexpected end of input, expected `:` at line 1 column 5"
        );
        assert_eq!(
            err(b"{"),
            "unexpected end of input, expected a key at line 1 column 2"
        );
        assert_eq!(err(b"]"), "expected a value at line 1 column 1");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert_eq!(
            err(br#"{"a":1,"b":2,"a":3}"#),
            "duplicate key \"a\" at line 1 column 14"
        );
        assert_eq!(
            err(br#"{"a":1,"\u0061":2}"#),
            "duplicate key \"a\" at line 1 column 8",
            "keys are compared after unescaping"
        );
        assert!(
            parse(br#"{"a":{"a":1},"b":[{"a":2}]}"#).is_ok(),
            "only within one object"
        );
        // Past the linear scan: the first repeated key in document order is reported.
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        members.push("\"k33\":0".to_owned());
        members.push("\"k3\":0".to_owned());
        let text = format!("{{{}}}", members.join(","));
        let column = text.find("\"k33\":0").unwrap() + 1;
        assert_eq!(
            err(text.as_bytes()),
            format!("duplicate key \"k33\" at line 1 column {column}")
        );
        members.truncate(40);
        let text = format!("{{{}}}", members.join(","));
        assert!(parse(text.as_bytes()).is_ok(), "40 distinct keys");
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        for depth in [1, 126, 127, 128, 200, 100_000] {
            let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            for text in [arrays, objects] {
                let ours = parse(text.as_bytes());
                let theirs = serde_json::from_str::<serde_json::Value>(&text);
                assert_eq!(ours.is_ok(), theirs.is_ok(), "depth {depth}: {ours:?}");
                assert_eq!(ours.is_ok(), depth <= MAX_DEPTH);
                if let Err(e) = ours {
                    assert!(e.reason.starts_with("nested deeper than 127 levels"), "{e}");
                }
            }
        }
    }

    /// Our tree as a serde_json `Value`, numbers read by serde_json from their text.
    fn to_serde(value: &Value<'_>) -> serde_json::Value {
        match value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::from_str(n).unwrap(),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(to_serde).collect()),
            Value::Object(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_string(), to_serde(v)))
                    .collect(),
            ),
        }
    }

    /// JSON text with varied whitespace, escapes and number forms; object keys are distinct
    /// (serde_json keeps the last of duplicate keys, where this parser rejects them).
    fn document() -> impl Strategy<Value = String> {
        let ws = prop::sample::select(vec!["", " ", "\n", "\t", "\r\n", "  "]);
        let number = (
            any::<bool>(),
            prop::sample::select(vec![
                "0",
                "7",
                "42",
                "100",
                "18446744073709551615",
                "12345678901234567890123",
            ]),
            prop::option::of("[0-9]{1,6}"),
            prop::option::of((
                prop::sample::select(vec!["e", "E"]),
                prop::sample::select(vec!["", "+", "-"]),
                0u32..280,
            )),
        )
            .prop_map(|(neg, int, frac, exp)| {
                let mut s = String::new();
                if neg {
                    s.push('-');
                }
                s.push_str(int);
                if let Some(f) = frac {
                    s.push('.');
                    s.push_str(&f);
                }
                if let Some((e, sign, n)) = exp {
                    s.push_str(e);
                    s.push_str(sign);
                    s.push_str(&n.to_string());
                }
                s
            });
        let piece = prop_oneof![
            "[a-zA-Z0-9 é€😀/]{0,4}",
            prop::sample::select(vec![
                "\\\"",
                "\\\\",
                "\\/",
                "\\b",
                "\\f",
                "\\n",
                "\\r",
                "\\t",
                "\\u0041",
                "\\u00e9",
                "\\ud83d\\ude00",
                "\\u0000",
                "\\uFFFF",
            ])
            .prop_map(str::to_owned),
        ];
        let string = prop::collection::vec(piece, 0..4).prop_map(|p| format!("\"{}\"", p.concat()));
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            number,
            string.clone(),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                (
                    prop::collection::vec((inner.clone(), ws.clone()), 0..6),
                    ws.clone()
                )
                    .prop_map(|(items, ws)| {
                        let items: Vec<String> = items
                            .into_iter()
                            .map(|(v, w)| format!("{w}{v}{w}"))
                            .collect();
                        format!("[{ws}{}]", items.join(","))
                    }),
                (
                    prop::collection::btree_map("[a-z]{0,3}", (inner, ws.clone()), 0..6),
                    ws.clone()
                )
                    .prop_map(|(members, ws)| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(k, (v, w))| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                            .collect();
                        format!("{{{ws}{}}}", members.join(","))
                    }),
            ]
        })
    }

    proptest! {
        /// On documents serde_json accepts, the same tree; where it rejects, so do we.
        #[test]
        fn agrees_with_serde_json(text in document(), cut in any::<prop::sample::Index>(),
                                  byte in any::<u8>(), edit in 0..3u8) {
            let ours = parse(text.as_bytes());
            let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(to_serde(&ours.unwrap()), theirs);

            // The same document broken in one place.
            let mut bytes = text.into_bytes();
            let at = cut.index(bytes.len() + 1);
            match edit {
                0 => bytes.truncate(at),
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
            let ours = parse(&bytes);
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(theirs) => match ours {
                    Ok(ours) => prop_assert_eq!(to_serde(&ours), theirs),
                    Err(e) => prop_assert!(e.reason.starts_with("duplicate key"), "{}", e),
                },
                Err(theirs) => {
                    let out_of_range = theirs.to_string().starts_with("number out of range");
                    prop_assert!(ours.is_err() || out_of_range, "serde_json: {}", theirs);
                }
            }
        }
    }
}
