//! Structure-aware cache-index target (`ptekit_cache::fuzzing`): checksums are
//! recomputed after mutation so the record parser is reached; the index
//! invariants must hold for every input. Seeds: `fuzz/seeds/cache_records`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ptekit_cache::fuzzing::check_sealed_index(data) {
        panic!("{e}");
    }
});
