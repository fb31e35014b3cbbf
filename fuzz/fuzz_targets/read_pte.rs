//! Arbitrary bytes through the whole `.pte` read path. Any panic, hang or
//! out-of-bounds read is a bug; errors are the expected outcome for most inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptekit_format::program::validate;
use ptekit_format::pte::{plan_exact, restore, PteFile, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = PteFile::parse(data, &ReadOptions::default()) else {
        return;
    };
    let _ = validate(file.program());
    if let Ok(plan) = plan_exact(&file) {
        // Keep memory bounded: only materialize plans no larger than the input allows.
        if plan.len() <= (data.len() as u64).saturating_mul(4).saturating_add(1 << 16) {
            let _ = plan.to_vec();
        }
    }
    let _ = restore(&file);
});
