//! The CEL validation rules of a CRD schema (`x-kubernetes-validations`), evaluated as the
//! Kubernetes API server does with the `cel` crate: each rule of a schema node runs with `self`
//! bound to the value at that node (objects as maps, arrays as lists, integers as ints), and a
//! rule that is false gives a cause with its `message`, or `failed rule: RULE` without one.
//!
//! Besides the CEL standard library (which has `duration()`), Kubernetes' URL library is
//! registered, as far as the Istio CRDs use it: `isURL(string)`, `url(string)` and
//! `URL.getScheme()`. Each rule is compiled once (per thread), when first evaluated.
//!
//! Differences from the API server, none of which the vendored CRDs rely on:
//!
//! - transition rules (those that refer to `oldSelf`) are never evaluated: the stand-in
//!   validates an update as it validates a create, without the old object;
//! - of a rule, only `rule` and `message` are read (`messageExpression`, `reason` and
//!   `fieldPath` are not);
//! - rules are not type-checked against the schema when a CRD is loaded: a rule that does not
//!   parse, or that fails when evaluated (an unknown function, a type mismatch), gives a cause
//!   naming the rule and the error where it is evaluated, so it refuses the object instead of
//!   passing it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::{Key, Opaque};
use cel::{Context, Env, ExecutionError, Program, Value as CelValue};
use serde_json::Value;

thread_local! {
    /// The standard environment, built once per thread.
    static ENV: Arc<Env> = Arc::new(Env::stdlib());
    /// Every rule compiled so far, by its source.
    static PROGRAMS: RefCell<HashMap<String, Rc<Result<Program, String>>>> =
        RefCell::new(HashMap::new());
}

/// Evaluates the rules on `schema` with `self` bound to `value`, which is at `field` (as the
/// causes name it), and pushes a `(field, message)` cause for each rule that is false or
/// cannot be evaluated.
pub fn check_rules(schema: &Value, value: &Value, field: &str, errors: &mut Vec<(String, String)>) {
    let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    let type_name = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let this = to_cel(schema, value);
    for rule in rules {
        let failure = match rule.get("rule").and_then(Value::as_str) {
            Some(source) => match evaluate(source.trim(), &this) {
                Ok(true) => None,
                Ok(false) => Some(match rule.get("message").and_then(Value::as_str) {
                    Some(message) => message.to_owned(),
                    None => format!("failed rule: {}", source.trim()),
                }),
                Err(error) => Some(error),
            },
            None => Some(format!("a validation rule without `rule`: {rule}")),
        };
        if let Some(message) = failure {
            errors.push((
                field.to_owned(),
                format!("Invalid value: \"{type_name}\": {message}"),
            ));
        }
    }
}

/// Whether the rule `source` holds for `this` (a transition rule holds: it is not evaluated),
/// or why it cannot be told, naming the rule.
fn evaluate(source: &str, this: &CelValue) -> Result<bool, String> {
    let program = compiled(source);
    let program = match program.as_ref() {
        Ok(program) => program,
        Err(e) => return Err(format!("compilation failed for rule: {source}: {e}")),
    };
    if program.references().has_variable("oldSelf") {
        return Ok(true);
    }
    let mut context = Context::with_env(ENV.with(Arc::clone));
    if let Err(e) = add_url_library(&mut context) {
        return Err(format!(
            "cannot declare the URL library for rule: {source}: {e}"
        ));
    }
    context.add_variable_from_value("self", this.clone());
    match program.execute(&context) {
        Ok(CelValue::Bool(holds)) => Ok(holds),
        Ok(other) => Err(format!(
            "rule must evaluate to a bool, not {other:?}: {source}"
        )),
        // As the API server puts a runtime error.
        Err(e) => Err(format!("{e} evaluating rule: {source}")),
    }
}

/// The program of the rule `source`, compiled on first use.
fn compiled(source: &str) -> Rc<Result<Program, String>> {
    PROGRAMS.with(|programs| {
        programs
            .borrow_mut()
            .entry(source.to_owned())
            .or_insert_with(|| Rc::new(Program::compile(source).map_err(|e| e.to_string())))
            .clone()
    })
}

/// The CEL value of `value`, typed by `schema` as the API server types it: an integer is an
/// `int` (a `double` where the schema says `number`), an object a map with string keys.
fn to_cel(schema: &Value, value: &Value) -> CelValue {
    const NO_SCHEMA: &Value = &Value::Null;
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            let number = schema.get("type").and_then(Value::as_str) == Some("number");
            match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if !number => CelValue::Int(i),
                (None, Some(u)) if !number => CelValue::UInt(u),
                _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            }
        }
        Value::String(s) => CelValue::from(s.as_str()),
        Value::Array(items) => {
            let sub = schema.get("items").unwrap_or(NO_SCHEMA);
            CelValue::List(Arc::new(items.iter().map(|i| to_cel(sub, i)).collect()))
        }
        Value::Object(fields) => {
            let properties = schema.get("properties");
            let additional = schema.get("additionalProperties");
            let map: HashMap<Key, CelValue> = fields
                .iter()
                .map(|(key, field)| {
                    let sub = properties
                        .and_then(|p| p.get(key))
                        .or(additional)
                        .unwrap_or(NO_SCHEMA);
                    (Key::from(key.as_str()), to_cel(sub, field))
                })
                .collect();
            CelValue::from(map)
        }
    }
}

/// A URL as Kubernetes' `url()` makes it; `getScheme()` is all the CRDs ask of it.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

fn add_url_library(context: &mut Context) -> Result<(), cel::DeclarationError> {
    context.add_function("isURL", |s: Arc<String>| parse_request_uri(&s).is_ok())?;
    context.add_function(
        "url",
        |s: Arc<String>| -> Result<Arc<dyn Opaque>, ExecutionError> {
            match parse_request_uri(&s) {
                Ok(url) => Ok(Arc::new(url)),
                Err(e) => Err(ExecutionError::function_error(
                    "url",
                    format!("URL parse error during conversion from string: {e}"),
                )),
            }
        },
    )?;
    context.add_function(
        "getScheme",
        |This(url): This<Arc<dyn Opaque>>| -> Result<CelValue, ExecutionError> {
            match url.downcast_ref::<Url>() {
                Some(url) => Ok(CelValue::from(url.scheme.as_str())),
                None => Err(ExecutionError::function_error(
                    "getScheme",
                    "the receiver is not a URL",
                )),
            }
        },
    )?;
    Ok(())
}

/// Parses `s` as Go's `url.ParseRequestURI` does, which is what `isURL` and `url` accept: an
/// absolute URI (`scheme:...`) or an absolute path (`/...`, or `*`), without control
/// characters. An absolute path is accepted when its percent-escapes are well formed, and has
/// no scheme. An absolute URI is left to the `url` crate, which parses as WHATWG says: it
/// agrees with Go on URIs of the forms the CRDs see (`scheme://host/path`, `scheme:opaque`),
/// is stricter about the host of the schemes it knows (`http`, `https`, `file`, ...) and lets
/// a malformed escape in a path through.
fn parse_request_uri(s: &str) -> Result<Url, String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_owned());
    }
    if s.is_empty() {
        return Err("empty url".to_owned());
    }
    if s == "*" || s.starts_with('/') {
        let path = s.split('?').next().unwrap_or_default();
        return match bad_escape(path) {
            None => Ok(Url {
                scheme: String::new(),
            }),
            Some(escape) => Err(format!("invalid URL escape {escape:?}")),
        };
    }
    match url::Url::parse(s) {
        Ok(url) => Ok(Url {
            scheme: url.scheme().to_owned(),
        }),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            Err(format!("parse {s:?}: invalid URI for request"))
        }
        Err(e) => Err(format!("parse {s:?}: {e}")),
    }
}

/// The first `%` escape of `s` that is not `%` and two hex digits, if any.
fn bad_escape(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .find(|(i, _)| {
            !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
        .map(|(i, _)| s.get(i..(i + 3).min(s.len())).unwrap_or("%"))
}
