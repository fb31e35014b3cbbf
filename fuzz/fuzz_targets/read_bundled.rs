//! Arbitrary bytes through the whole `.bpte` read path: decode, summary, the embedded
//! program parsed in place, exact rewrite. Any panic, hang or out-of-bounds read is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{self, BundledFile};
use ptekit_format::pte::ReadOptions;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = BundledFile::parse(data, &Limits::default()) else {
        return;
    };
    let _ = bundled::render_summary(&bundled::summary(&file));
    let _ = file.program_file(&ReadOptions::default());
    if let Ok(out) = bundled::pack_bundled(file.bundled()) {
        // What we wrote must decode, and re-pack to the same bytes (bytes, not model
        // equality: a NaN test value is not equal to itself).
        let again = bundled::decode_bundled(&out, &Limits::default()).expect("re-decode");
        let out2 = bundled::pack_bundled(&again).expect("re-pack");
        assert!(out == out2, "pack(decode(pack(x))) != pack(x)");
    }
});
