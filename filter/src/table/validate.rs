//! The checks of single values (names, hosts, seals, weights) and the collection of errors
//! at their JSON paths.

use std::collections::HashMap;

use super::{MAX_SEAL_LEN, MIN_HEX_SEAL_LEN, MIN_SEAL_LEN};
use crate::assign::{Weight, MAX_NAME_LEN};
use crate::cookie;
use crate::error::{json_path, ConfigError, ConfigErrors, PathStep};

/// Checks a seal: [`MIN_SEAL_LEN`] to [`MAX_SEAL_LEN`] characters of the base64url alphabet
/// (`A-Z a-z 0-9 - _`), at least [`MIN_HEX_SEAL_LEN`] when they are all hexadecimal digits.
/// The reason never quotes the seal, which is a secret.
pub fn check_seal(seal: &str) -> Result<(), String> {
    const ALPHABET: &str = "characters of A-Z, a-z, 0-9, '-' and '_'";
    if !seal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "must be {MIN_SEAL_LEN} to {MAX_SEAL_LEN} {ALPHABET} (the seal is not shown)"
        ));
    }
    let len = seal.len();
    let hex = seal.bytes().all(|b| b.is_ascii_hexdigit());
    let min = if hex { MIN_HEX_SEAL_LEN } else { MIN_SEAL_LEN };
    if len < min {
        let what = if hex {
            "hexadecimal digits"
        } else {
            "base64url characters"
        };
        return Err(format!(
            "is too short: {len} {what} carry fewer than 128 bits; at least {min} are needed \
             (`canaryctl seal` makes one)"
        ));
    }
    if len > MAX_SEAL_LEN {
        return Err(format!(
            "is too long: {len} characters; at most {MAX_SEAL_LEN}"
        ));
    }
    Ok(())
}

/// A percentage with at most three decimals, as thousandths of a percent.
pub fn parse_weight(weight: f64) -> Result<Weight, String> {
    if !(0.0..=100.0).contains(&weight) {
        return Err(format!(
            "must be between 0 and 100, not {}",
            decimal(weight)
        ));
    }
    let thousandths = (weight * 1000.0).round();
    if (weight * 1000.0 - thousandths).abs() > 1e-6 {
        return Err(format!(
            "{} has more than 3 decimals (the resolution is 0.001 %)",
            decimal(weight)
        ));
    }
    // In range by the check above: 0 ..= 100_000.
    Ok(Weight(thousandths as u32))
}

/// Thousandths of a percent as a percentage: `110`, `99.5`.
pub(super) fn percent(thousandths: u64) -> String {
    let (whole, fraction) = (thousandths / 1000, thousandths % 1000);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:03}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A number as the shortest decimal that reads back as the same `f64`: `130`, `33.3335`, and
/// `1e300` or `5e-324` for values too large or too small to write out.
pub fn decimal(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude >= 1e16 || (magnitude != 0.0 && magnitude < 1e-7) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// The items whose name appeared earlier in the list, each with the index of the latest earlier
/// one, in order. Short lists (a route's variants and rules) are scanned, which allocates
/// nothing when there is no duplicate; long ones (the routes) go through a hash map.
pub(super) fn duplicates<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if items.len() <= 16 {
        for (i, item) in items.iter().enumerate() {
            let earlier = items.get(..i).unwrap_or_default();
            if let Some(first) = earlier.iter().rposition(|e| name(e) == name(item)) {
                found.push((i, first));
            }
        }
    } else {
        let mut seen = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(first) = seen.insert(name(item), i) {
                found.push((i, first));
            }
        }
    }
    found
}

/// Route, variant and rule names: `[a-z0-9-]{1,63}`; they appear in metric names.
pub(super) fn check_name(errors: &mut Errors, at: &At<'_>, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        errors.push(
            at,
            format!("{name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9 and '-'"),
        );
    }
}

/// A request header name, lowercased as Envoy presents it.
pub(super) fn header_name(errors: &mut Errors, at: &At<'_>, mut name: String) -> String {
    if name.is_empty() || !name.bytes().all(cookie::is_token_byte) {
        errors.push(at, format!("{name:?} is not a valid HTTP header name"));
    }
    name.make_ascii_lowercase();
    name
}

pub(super) fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host == "*" {
        return Ok(());
    }
    if name.is_empty() {
        return Err(format!("{host:?} is not a host name"));
    }
    if name.contains('*') {
        return Err(format!(
            "{host:?}: a wildcard is allowed only as a leading '*.' or as '*' alone"
        ));
    }
    if name.contains(':') && !name.starts_with('[') {
        return Err(format!(
            "{host:?}: hosts are matched without the port; leave out ':port'"
        ));
    }
    if name
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b == b'/' || !b.is_ascii())
    {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where in the configuration compilation is: a chain of steps on the stack, from the key at the
/// top level down. It costs nothing to build; the path is written out
/// (`routes[3].variants[0].weight`) only when an error is recorded.
#[derive(Clone, Copy)]
pub(super) struct At<'p> {
    parent: Option<&'p At<'p>>,
    step: PathStep<'static>,
}

impl<'p> At<'p> {
    pub(super) fn root(key: &'static str) -> At<'static> {
        At {
            parent: None,
            step: PathStep::Key(key),
        }
    }

    pub(super) fn key(&'p self, key: &'static str) -> At<'p> {
        At {
            parent: Some(self),
            step: PathStep::Key(key),
        }
    }

    pub(super) fn index(&'p self, index: usize) -> At<'p> {
        At {
            parent: Some(self),
            step: PathStep::Index(index),
        }
    }

    fn path(&self) -> String {
        let mut steps = Vec::new();
        let mut at = Some(self);
        while let Some(a) = at {
            steps.push(a.step);
            at = a.parent;
        }
        json_path(steps.into_iter().rev())
    }
}

/// Errors collected in document order.
#[derive(Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, at: &At<'_>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(at.path(), reason));
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_in_messages_read_as_written() {
        for (x, text) in [
            (130.0, "130"),
            (-1.0, "-1"),
            (0.0, "0"),
            (100.5, "100.5"),
            (33.3335, "33.3335"),
            (89.9995, "89.9995"),
            (0.0001, "0.0001"),
            (1e-7, "0.0000001"),
            (123456789012345.0, "123456789012345"),
            (1e300, "1e300"),
            (-1.5e-300, "-1.5e-300"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(decimal(x), text);
        }
        assert_eq!(
            parse_weight(130.0),
            Err("must be between 0 and 100, not 130".to_owned())
        );
        assert_eq!(
            parse_weight(33.3335),
            Err("33.3335 has more than 3 decimals (the resolution is 0.001 %)".to_owned())
        );
        assert_eq!(
            [
                percent(110_000),
                percent(99_500),
                percent(100_001),
                percent(0)
            ],
            ["110", "99.5", "100.001", "0"]
        );
    }

    proptest! {
        /// The same number (to 15 digits in exponent form, for extreme values); for numbers
        /// written with a few decimals, what `{}` writes.
        #[test]
        fn decimal_reads_back(bits in any::<u64>(), whole in -1_000_000i64..1_000_000, decimals in 0u32..5) {
            let x = f64::from_bits(bits);
            let read: f64 = decimal(x).parse().unwrap_or(f64::NAN);
            if x == 0.0 || (1e-7..1e15).contains(&x.abs()) {
                prop_assert_eq!(read, x);
            } else if x.is_finite() {
                prop_assert!(((read - x) / x).abs() < 1e-14, "{} for {:e}", decimal(x), x);
            }
            let typed = format!("{whole}.{:0width$}", bits % 10u64.pow(decimals), width = decimals as usize);
            let x: f64 = typed.parse().unwrap();
            prop_assert_eq!(decimal(x), format!("{x}"));
        }
    }
}
