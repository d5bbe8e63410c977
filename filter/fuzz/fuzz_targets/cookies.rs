//! Fuzz target `cookies`: the body is [`canary_filter::fuzzing::cookies`], which the corpus replay
//! test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canary_filter::fuzzing::cookies(data));
