//! Replays inputs found by the fuzzers (`fuzz/`, run with `scripts/fuzz.sh`) through the
//! same read paths as the fuzz targets, so what they once exercised stays covered:
//! `tests/fuzz_regressions/<target>/` holds a sample of each target's corpus (inputs the
//! fuzzer kept because they reached new code: truncated, bit-flipped and re-spliced real
//! files), and every input that ever crashed a target (none so far) goes there too.
//!
//! Each input must give a clean error or a file whose own re-serialization reads back
//! the same; nothing may panic.

use std::path::{Path, PathBuf};

use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{self, BundledFile};
use ptekit_format::flat_tensor::{self, FlatTensorConfig, FlatTensorFile};
use ptekit_format::program::validate;
use ptekit_format::pte::{plan_exact, restore, PteFile, ReadOptions};
use ptekit_format::xnnpack;

/// The properties of the `write_pte`, `read_npz` and `python_readers` targets, the same
/// file the fuzz targets include.
#[path = "../../../fuzz/checks.rs"]
mod checks;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

/// Returns whether the input parsed.
fn read_pte(data: &[u8]) -> bool {
    let Ok(file) = PteFile::parse(data, &ReadOptions::default()) else {
        return false;
    };
    let _ = validate(file.program());
    if let Ok(plan) = plan_exact(&file) {
        if plan.len()
            <= (data.len() as u64)
                .saturating_mul(4)
                .saturating_add(1 << 16)
        {
            let bytes = plan.to_vec().expect("an exact plan writes");
            // What we write must read back.
            PteFile::parse(&bytes, &ReadOptions::default()).expect("re-parse of our output");
        }
    }
    let _ = restore(&file);
    true
}

fn read_bundled(data: &[u8]) -> bool {
    let Ok(file) = BundledFile::parse(data, &Limits::default()) else {
        return false;
    };
    let _ = bundled::render_summary(&bundled::summary(&file));
    let _ = file.program_file(&ReadOptions::default());
    if let Ok(out) = bundled::pack_bundled(file.bundled()) {
        let again = bundled::decode_bundled(&out, &Limits::default()).expect("re-decode");
        assert!(bundled::pack_bundled(&again).expect("re-pack") == out);
    }
    true
}

fn read_ptd(data: &[u8]) -> bool {
    let Ok(file) = FlatTensorFile::parse(data, &flat_tensor::ReadOptions::default()) else {
        return false;
    };
    let _ = flat_tensor::render_summary(&flat_tensor::summary(&file));
    if let Ok(out) = flat_tensor::rewrite_file(&file) {
        let again = FlatTensorFile::parse(&out, &flat_tensor::ReadOptions::default())
            .expect("re-parse of our output");
        assert_eq!(again.flat_tensor(), file.flat_tensor());
    }
    let _ = flat_tensor::relayout(&file, &FlatTensorConfig::default());
    true
}

/// The `read_xnnpack` target: payload decode, checks, summary, JSON; the writer's
/// output decodes again and re-encodes to the same bytes.
fn read_xnnpack(data: &[u8]) -> bool {
    let Ok(p) = xnnpack::decode_payload(data, &Limits::default()) else {
        return false;
    };
    let _ = xnnpack::validate(
        &p.graph,
        &xnnpack::ConstantSources {
            constant_data: p.constant_data,
            named: Some(&|k: &str| (k.len() % 2 == 0).then_some(64)),
        },
    );
    let _ = xnnpack::render_summary(&xnnpack::summary(&p, None), "");
    let _ = xnnpack::payload_json(&p).to_string();
    if let Ok(out) = xnnpack::reencode_payload(&p) {
        let again = xnnpack::decode_payload(&out, &Limits::default()).expect("re-decode");
        assert!(xnnpack::reencode_payload(&again).expect("re-encode") == out);
    }
    true
}

fn replay(target: &str, f: fn(&[u8]) -> bool) {
    let files = inputs(target);
    let mut parsed = 0;
    for path in &files {
        let data = std::fs::read(path).expect("read regression input");
        let ok = std::panic::catch_unwind(|| f(&data))
            .unwrap_or_else(|_| panic!("{target}: {} panicked", path.display()));
        parsed += usize::from(ok);
    }
    println!("{target}: {} inputs, {parsed} parsed", files.len());
}

#[test]
fn read_pte_regressions() {
    replay("read_pte", read_pte);
}

#[test]
fn read_bundled_regressions() {
    replay("read_bundled", read_bundled);
}

#[test]
fn read_ptd_regressions() {
    replay("read_ptd", read_ptd);
}

#[test]
fn read_xnnpack_regressions() {
    replay("read_xnnpack", read_xnnpack);
}

#[test]
fn write_pte_regressions() {
    replay("write_pte", checks::write_pte);
}

#[test]
fn read_npz_regressions() {
    replay("read_npz", checks::read_npz);
}

#[test]
fn python_readers_regressions() {
    replay("python_readers", checks::python_readers);
}
