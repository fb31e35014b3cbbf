//! Arbitrary bytes through the whole `.ptd` read path: parse, summary, exact rewrite,
//! relayout. Any panic, hang or out-of-bounds read is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptekit_format::flat_tensor::{self, FlatTensorConfig, FlatTensorFile, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = FlatTensorFile::parse(data, &ReadOptions::default()) else {
        return;
    };
    let _ = flat_tensor::render_summary(&flat_tensor::summary(&file));
    if let Ok(out) = flat_tensor::rewrite_file(&file) {
        let again = FlatTensorFile::parse(&out, &ReadOptions::default()).expect("re-parse");
        assert_eq!(again.flat_tensor(), file.flat_tensor());
    }
    // Keep memory bounded: only relayout small payloads.
    if file.segments().iter().map(|s| s.size).sum::<u64>() < (1 << 20) {
        let _ = flat_tensor::relayout(&file, &FlatTensorConfig::default());
    }
});
