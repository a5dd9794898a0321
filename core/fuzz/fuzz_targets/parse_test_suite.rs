//! Arbitrary bytes (read as UTF-8, lossily) into `parse_test_suite`: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let _ = eol_core::parse_test_suite("fuzz.test.eol", &src);
});
