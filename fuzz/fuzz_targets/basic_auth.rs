//! `make fuzz` target: see `fuzz_checks::basic_auth` for the input and the properties asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::basic_auth::check(data));
