//! Replays every input the fuzzers ever found a problem with (files under
//! `tests/fuzz_regressions/<target>/`) through the same read path as the fuzz target, so a
//! fixed bug stays fixed. The inputs are committed as the fuzzer wrote them.

use std::path::Path;

use ptekit_format::program::validate;
use ptekit_format::pte::{plan_exact, restore, PteFile, ReadOptions};

fn read_pte_path(data: &[u8]) {
    let Ok(file) = PteFile::parse(data, &ReadOptions::default()) else {
        return;
    };
    let _ = validate(file.program());
    if let Ok(plan) = plan_exact(&file) {
        if plan.len()
            <= (data.len() as u64)
                .saturating_mul(4)
                .saturating_add(1 << 16)
        {
            let _ = plan.to_vec();
        }
    }
    let _ = restore(&file);
}

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn read_pte_regressions_do_not_panic() {
    for path in inputs("read_pte") {
        let data = std::fs::read(&path).expect("read regression input");
        read_pte_path(&data);
    }
}
