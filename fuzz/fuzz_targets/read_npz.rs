//! Arbitrary bytes through `checks::read_npz` (see `fuzz/checks.rs`): any panic, hang or
//! runaway allocation is a bug.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = checks::read_npz(data);
});
