//! Reading the configuration JSON: bytes to a tree ([`Node`]), then to the serde-derived
//! configuration types, every error at its JSON path.
//!
//! Two steps, because the filter reports every error of a configuration, not just the first:
//!
//! 1. [`read`] parses the bytes with serde_json into a tree, refusing a duplicate key (which
//!    serde_json alone would let overwrite the first) at its path. The tree borrows its strings
//!    from the bytes unless they hold escapes, and keeps an object's members in a list, in
//!    document order: reading it costs little more than serde_json's own parse. Nothing else about JSON is
//!    checked here: serde_json is strict RFC 8259 (UTF-8, no lone surrogates, no trailing
//!    commas or characters, nesting at most 128 deep).
//! 2. [`decode`] hands the tree to a type's derived `Deserialize` through a deserializer that
//!    checks each value's type before the derived code sees it. A value of the wrong type, an
//!    unknown field or an unknown enum variant is recorded at its path and replaced with a
//!    placeholder, so that decoding carries on and finds the next error; the placeholder never
//!    leaves this module, since any recorded error fails the whole document.
//!
//! A missing required field is the one error the derived code raises itself, after the whole
//! object is read, and it cannot be recovered in place. The first time one is met, the
//! struct and field are learned and decoding starts again; from then on a missing field of
//! that struct is reported like any other error and stood in for. A document is therefore
//! decoded at most once per required field of the types, and once when it is valid.

use std::fmt;

use crate::error::{json_path, PathStep};

mod decode;
mod tree;

pub use decode::decode;
pub use tree::{read, Node};

/// Where a value is in the document, as a chain of steps up to the root.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut steps = Vec::new();
        let mut at = self;
        loop {
            match at {
                Path::Root => break,
                Path::Key(parent, key) => {
                    steps.push(PathStep::Key(key));
                    at = parent;
                }
                Path::Index(parent, i) => {
                    steps.push(PathStep::Index(*i));
                    at = parent;
                }
            }
        }
        f.write_str(&json_path(steps.into_iter().rev()))
    }
}
