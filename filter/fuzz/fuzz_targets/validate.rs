//! Fuzz target `validate`: canaryctl and the filter judge every document alike, read as JSON
//! and written as YAML (`canaryctl::document::agrees_with_filter`, which a `cargo test` also
//! runs over this target's corpus).
#![no_main]

use canary_filter::fuzzing::table_form;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) =
        canaryctl::document::agrees_with_filter(data, |a, b| table_form(a) == table_form(b))
    {
        panic!("{disagreement}");
    }
});
