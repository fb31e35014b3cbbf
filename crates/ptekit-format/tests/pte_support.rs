//! Shared helpers of the integration tests: the corpus and the reference runner.
//!
//! Included by the other test files with `#[path = "pte_support.rs"] mod support;`; as a
//! test target of its own it only checks that the corpus is present.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The reference corpus folder: `PTEKIT_CORPUS`, else `shared/corpus` beside the
/// repository (where CI and the developers' machines have it).
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("PTEKIT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"))
}

/// Every file of the corpus with extension `ext`, sorted by name.
pub fn corpus_files(ext: &str) -> Vec<PathBuf> {
    let dir = corpus_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus folder {} unreadable: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Every `.pte` of the corpus, sorted by name.
pub fn corpus_ptes() -> Vec<PathBuf> {
    let v = corpus_files("pte");
    assert!(v.len() >= 10, "corpus has only {} .pte files", v.len());
    v
}

/// Every `.ptd` of the corpus (at least one), sorted by name.
pub fn corpus_ptds() -> Vec<PathBuf> {
    let v = corpus_files("ptd");
    assert!(!v.is_empty(), "expected a .ptd in the corpus");
    v
}

/// The corpus file `name`.
pub fn corpus_file(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).expect("corpus file readable")
}

/// The reference interpreter: `PTEKIT_PYTHON`, else `~/.cache/ptekit/venv-et151/bin/python`
/// if it exists. `None` means "skip" (the caller prints `skipped:`), unless
/// `PTEKIT_REQUIRE_REFERENCE=1`, in which case this panics.
pub fn reference_python(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PTEKIT_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            let p = Path::new(&home).join(".cache/ptekit/venv-et151/bin/python");
            p.exists().then_some(p)
        });
    if found.is_none() {
        if std::env::var("PTEKIT_REQUIRE_REFERENCE").as_deref() == Ok("1") {
            panic!(
                "{test}: the reference is required (PTEKIT_REQUIRE_REFERENCE=1) but no interpreter \
                 was found: set PTEKIT_PYTHON or run scripts/setup-reference.sh"
            );
        }
        println!("skipped: {test}: no reference interpreter (set PTEKIT_PYTHON)");
    }
    found
}

/// Runs `script` with the reference interpreter, passing `args`; panics with its output
/// on failure.
pub fn run_python(python: &Path, script: &str, args: &[&Path]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script_path = dir.path().join("script.py");
    std::fs::write(&script_path, script).expect("write script");
    let out = Command::new(python)
        .arg(&script_path)
        .args(args)
        .output()
        .expect("run reference interpreter");
    assert!(
        out.status.success(),
        "reference script failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Index of the first differing byte, for messages.
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b.iter())
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// Asserts that `out` (made from the file at `path`) is `expected` byte for byte, naming
/// the first difference.
pub fn assert_same_bytes(path: &Path, out: &[u8], expected: &[u8]) {
    assert!(
        out == expected,
        "{}: differs at {:?} (len {} vs {})",
        path.display(),
        first_diff(out, expected),
        out.len(),
        expected.len()
    );
}

#[test]
fn corpus_is_present() {
    assert!(corpus_ptes().iter().any(|p| p.ends_with("mlp.pte")));
}

/// Deterministic xorshift, to corrupt files reproducibly without extra dependencies.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// xorshift64*: the generator of the randomized reference tests (one seed, the same cases,
/// so a failure reproduces).
pub struct XorShiftStar(pub u64);

impl XorShiftStar {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index below `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True `pct` times in 100.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Shuffles `v` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Lowercase hex of `b` (how the reference scripts print bytes).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The reference's deserialize view of a `.ptd` (buffers in hex, named data with their
/// layouts), from our reading.
pub fn ptd_view(file: &ptekit_format::flat_tensor::FlatTensorFile<'_>) -> serde_json::Value {
    let payload = file.to_payload();
    serde_json::json!({
        "buffers": payload.buffers.iter().map(|b| hex(b)).collect::<Vec<_>>(),
        "named_data": payload.named_data.iter().map(|e| serde_json::json!({
            "key": e.key,
            "buffer_index": e.buffer_index,
            "tensor_layout": e.tensor_layout.as_ref().map(|l| serde_json::json!({
                "scalar_type": l.scalar_type.0,
                "sizes": l.sizes.clone().unwrap_or_default(),
                "dim_order": l.dim_order.clone().unwrap_or_default(),
            })),
        })).collect::<Vec<_>>(),
    })
}
