//! Structural-schema validation as the Kubernetes API server does it for a custom resource:
//! unknown fields are pruned (the server's default, `fieldValidation=Warn`), then types,
//! `required`, `enum`, `pattern`, lengths, bounds, item counts and the `oneOf` / `anyOf` /
//! `not` of `required` sets are checked, and the CEL rules (`x-kubernetes-validations`) of
//! every node whose value is present and of the right type are evaluated (see [`cel`]).
//! `format` is not checked.

#[path = "cel.rs"]
mod cel;

use regex::Regex;
use serde_json::{Map, Value};

/// Prunes `value` to what `schema` knows, then returns every violation as
/// `(field path, message)`, like the causes of a 422 Invalid Status.
pub fn validate(schema: &Value, value: &mut Value) -> Vec<(String, String)> {
    prune(schema, value, true);
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    errors
}

fn prune(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(fields) => {
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            fields.retain(|key, _| {
                (root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
                    || preserve
                    || additional.is_some()
                    || properties.is_some_and(|p| p.contains_key(key))
            });
            for (key, field) in fields.iter_mut() {
                if root && key == "metadata" {
                    // The server keeps an object's metadata whatever the CRD's schema says of
                    // it (Envoy Gateway's says only `type: object`).
                    continue;
                }
                if let Some(sub) = properties.and_then(|p| p.get(key)) {
                    prune(sub, field, false);
                } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                    prune(sub, field, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    prune(sub, item, false);
                }
            }
        }
        _ => {}
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<(String, String)>) {
    if value.is_null() {
        if !schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            errors.push((
                display(path),
                "Invalid value: \"null\": must not be null".to_owned(),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if int_or_string {
        if value.is_i64() || value.is_u64() || value.is_string() {
            cel::check_rules(schema, value, &display(path), errors);
        } else {
            errors.push((
                display(path),
                format!(
                    "Invalid value: \"{}\": must be an integer or a string",
                    kind(value)
                ),
            ));
        }
        return;
    }
    let mut error = |message: String| errors.push((display(path), message));
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let ok = match want {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            error(format!(
                "Invalid value: \"{}\": {path} in body must be of type {want}: \"{}\"",
                kind(value),
                kind(value),
                path = display(path)
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            error(format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ));
        }
    }
    match value {
        Value::String(s) => check_string(schema, s, &mut error),
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if n < min {
                    error(format!(
                        "Invalid value: {n}: should be greater than or equal to {min}"
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if n > max {
                    error(format!(
                        "Invalid value: {n}: should be less than or equal to {max}"
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    error(format!(
                        "Too many: {}: must have at most {max} items",
                        items.len()
                    ));
                }
            }
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => check_object(schema, fields, path, errors),
        _ => {}
    }
    cel::check_rules(schema, value, &display(path), errors);
}

fn check_string(schema: &Value, s: &str, error: &mut impl FnMut(String)) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if len < min {
            error(format!(
                "Invalid value: \"{s}\": should be at least {min} chars long"
            ));
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            error(format!("Too long: may not be more than {max} bytes"));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => error(format!("Invalid value: \"{s}\": should match '{pattern}'")),
            Err(e) => error(format!("schema pattern {pattern:?} does not compile: {e}")),
        }
    }
}

fn check_object(
    schema: &Value,
    fields: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<(String, String)>,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                errors.push((display(&join(path, name)), "Required value".to_owned()));
            }
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if fields.len() as u64 > max {
            errors.push((
                display(path),
                format!("Too many: must have at most {max} items"),
            ));
        }
    }
    if let Some(one_of) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = one_of.iter().filter(|s| satisfies(s, fields)).count();
        if matching != 1 {
            errors.push((
                display(path),
                format!("Invalid value: must validate one and only one schema (oneOf); {matching} matched"),
            ));
        }
    }
    if let Some(any_of) = schema.get("anyOf").and_then(Value::as_array) {
        if !any_of.iter().any(|s| satisfies(s, fields)) {
            errors.push((
                display(path),
                "Invalid value: must validate at least one schema (anyOf)".to_owned(),
            ));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, field) in fields {
        if let Some(sub) = properties.and_then(|p| p.get(key)) {
            check(sub, field, &join(path, key), errors);
        } else if let Some(sub) = additional {
            check(sub, field, &join(path, key), errors);
        }
    }
}

/// Whether `fields` satisfies a value-independent combinator schema (`required`, `not`,
/// `anyOf`, `oneOf` of those), as the Istio CRDs use them to express "one of".
fn satisfies(schema: &Value, fields: &Map<String, Value>) -> bool {
    let required_ok = schema
        .get("required")
        .and_then(Value::as_array)
        .is_none_or(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .all(|n| fields.contains_key(n))
        });
    let not_ok = schema.get("not").is_none_or(|s| !satisfies(s, fields));
    let any_ok = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .is_none_or(|all| all.iter().any(|s| satisfies(s, fields)));
    let one_ok = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .is_none_or(|all| all.iter().filter(|s| satisfies(s, fields)).count() == 1);
    required_ok && not_ok && any_ok && one_ok
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn display(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
