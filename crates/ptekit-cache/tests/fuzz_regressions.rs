//! Replays a sample of the `read_cache_index` fuzz corpus (`fuzz/`, `scripts/fuzz.sh
//! read_cache_index`) through the index readers: ptekit's own (`parse_image`) and the
//! reference runtime's XPWC v2 trailer. Inputs that ever crashed the target go here too.

use std::path::Path;

use ptekit_cache::{format, xpwc};

#[test]
fn cache_index_regressions_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("regression folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for path in files {
        let data = std::fs::read(&path).expect("read input");
        let r = std::panic::catch_unwind(|| {
            if let Ok(index) = format::parse_image(&data) {
                let s = index.summary();
                // A summary never claims more live bytes than the image holds.
                assert!(s.live_bytes <= data.len() as u64, "{s:?}");
                let _ = index.live().count();
            }
            let _ = xpwc::parse(&data);
        });
        assert!(r.is_ok(), "{} panicked", path.display());
    }
}

/// Replays the `cache_records` fuzz target's seeds and every input that ever
/// broke it (`tests/fuzz_regressions_records`).
#[test]
fn sealed_index_regressions_keep_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions_records");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("regression folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 7, "inputs in {}", dir.display());
    for path in files {
        let data = std::fs::read(&path).expect("read input");
        let r = std::panic::catch_unwind(|| ptekit_cache::fuzzing::check_sealed_index(&data));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{}: {e}", path.display()),
            Err(_) => panic!("{} panicked", path.display()),
        }
    }
}
