//! Arbitrary bytes as a packed-weight cache file: ptekit's own index (`parse_image`) and
//! the reference runtime's `XPWC` v2 trailer. Must never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptekit_cache::{format, xpwc};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = format::parse_image(data) {
        let _ = index.summary();
        let _ = index.live().count();
    }
    let _ = xpwc::parse(data);
});
