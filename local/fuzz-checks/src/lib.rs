//! What each fuzz target asserts, as plain functions of the input bytes.
//!
//! The libFuzzer targets in `fuzz/` (`make fuzz`) call these, and so does this crate's corpus test
//! (`tests/corpus.rs`, run by `make test` on stable), which feeds every committed file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the same function: a crash
//! the fuzzer found and that was fixed stays fixed.
//!
//! Each function returns normally when the input passes, and panics (through `assert!`) when a
//! property fails: that panic is what the fuzzer reports as a crash. Properties are stated next
//! to each check; "no panic" is only the floor.

pub mod basic_auth;
pub mod batch;
pub mod cfn;
pub mod sigv4;

/// What a fuzz target runs on one input: it returns, or panics with the property that failed.
pub type Check = fn(&[u8]);

/// The fuzz targets, by the name of their folder under `fuzz/corpus/`, and their check.
pub const TARGETS: &[(&str, Check)] = &[
    ("sigv4", sigv4::check),
    ("basic_auth", basic_auth::check),
    ("cfn_template", cfn::check),
    ("batch_events", batch::check),
];
