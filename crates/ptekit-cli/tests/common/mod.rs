//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference corpus (`$PTEKIT_CORPUS`, else `../shared/corpus` beside the repo).
pub fn corpus() -> PathBuf {
    std::env::var_os("PTEKIT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus"))
}

/// Every `.pte` of the corpus and of the project's fixtures, sorted.
pub fn program_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [corpus(), root().join("tests/fixtures")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pte") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the corpus and fixtures, found {} .pte files (corpus at {})",
        files.len(),
        corpus().display()
    );
    files
}

/// Runs the `ptekit` binary.
pub fn ptekit(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptekit"))
        .args(args)
        .output()
        .expect("run ptekit")
}

/// Shorthand for string arguments.
pub fn run(args: &[&str]) -> Output {
    let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    ptekit(&os)
}
