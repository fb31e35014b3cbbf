//! In-process decode timing: `cargo bench -p ptekit-format --bench decode -- FILE.pte`.
//!
//! Prints one JSON line: the best time of many runs of parsing the file (header,
//! verified decode of the whole program into the owned model, segment checks), of the
//! semantic validation, and of re-packing the program (`pack_program`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ptekit_format::program::validate;
use ptekit_format::pte::{plan_exact, PteFile, ReadOptions};

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed());
    }
    best
}

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench -p ptekit-format --bench decode -- FILE.pte");
        std::process::exit(2);
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let options = ReadOptions::default();
    let decode = best(200, || {
        PteFile::parse(&bytes, &options)
            .map(|f| f.program().version)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    });
    let file = PteFile::parse(&bytes, &options).unwrap_or_else(|e| panic!("{path}: {e}"));
    let validate_t = best(200, || validate(file.program()).len());
    let pack = best(100, || plan_exact(&file).map(|p| p.len()).unwrap_or(0));
    println!(
        "{{\"file\": {path:?}, \"decode_s\": {}, \"validate_s\": {}, \"repack_s\": {}}}",
        decode.as_secs_f64(),
        validate_t.as_secs_f64(),
        pack.as_secs_f64()
    );
}
