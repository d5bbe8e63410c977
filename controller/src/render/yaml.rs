//! A small YAML writer for the rendered resources.
//!
//! It quotes every string that any YAML reader could take for something else. `kubectl` reads
//! YAML 1.1, where `yes`, `on`, `off` or `y` are booleans: a label value `on` written plain
//! would reach the API server as `true` and be rejected. So a string is written plain only when
//! it is a conservative identifier (a letter first, then letters, digits, `_ . / -`) that no
//! YAML version resolves to a boolean or null; otherwise single-quoted, or double-quoted with
//! escapes when it holds characters that need them. Keys keep the order of the
//! `serde_json::Map`; sequences under a key are not indented, as `kubectl` prints them.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One YAML document, ending with a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// Writes `map` at `indent`; when `inline`, its first key goes where the cursor already is
/// (after a sequence's `- `).
fn mapping(out: &mut String, map: &Map<String, Value>, indent: usize, inline: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                out.push(' ');
                mapping(out, inner, indent + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                sequence(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Words YAML 1.1 or 1.2 resolves to a boolean or null (compared lowercase).
const RESERVED: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn string(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_owned();
    }
    if !s.chars().any(needs_escape) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Characters a single-quoted YAML scalar cannot hold as they are: C0 and C1 controls, DEL,
/// the byte order mark.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{feff}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_a_yaml_1_1_reader_would_misread_are_quoted() {
        let cases = [
            ("yes", "'yes'"),
            ("On", "'On'"),
            ("y", "'y'"),
            ("NULL", "'NULL'"),
            ("1.0", "'1.0'"),
            ("012", "'012'"),
            ("", "''"),
            ("~", "'~'"),
            ("a: b", "'a: b'"),
            ("it's", "'it''s'"),
            ("oci://r/x:1", "'oci://r/x:1'"),
            ("a\nb", "\"a\\nb\""),
            ("\u{85}", "\"\\u0085\""),
            ("x-canary-variant", "x-canary-variant"),
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            ("yesterday", "yesterday"),
        ];
        for (input, want) in cases {
            assert_eq!(string(input), want, "{input:?}");
        }
    }

    #[test]
    fn reads_back_as_written() {
        let value = json!({
            "a": { "b": [1, 2.5, true, null, "on", { "c": "d", "e": [] }], "f": {} },
            "@type": "type.googleapis.com/x",
            "g": [[ "h" ], { "i": { "j": "k l" } }],
            "json": "{\"k\":\"v\"}",
        });
        let text = document(&value);
        let back: Value = serde_yaml::from_str(&text)
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(back, value, "{text}");
    }

    #[test]
    fn layout() {
        let value = json!({ "spec": { "hosts": ["a", "b"], "http": [{ "name": "web", "route": [{ "x": 1 }] }] } });
        assert_eq!(
            document(&value),
            "spec:\n  hosts:\n  - a\n  - b\n  http:\n  - name: web\n    route:\n    - x: 1\n"
        );
    }
}
