//! In-process read timing of a bundled program:
//! `cargo bench -p ptekit-format --bench bundled -- FILE.bpte`.
//!
//! Prints one JSON line with the best and median times of (a) `decode_bundled` (verified
//! decode of the whole `.bpte` into the model, test data and program borrowed) and
//! (b) the same plus parsing the embedded program in place (`program_file`: header,
//! verified decode of the whole program, segment checks) and (c) `pack_bundled`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{decode_bundled, pack_bundled, BundledFile};
use ptekit_format::pte::ReadOptions;

fn stats<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench -p ptekit-format --bench bundled -- FILE.bpte");
        std::process::exit(2);
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let limits = Limits::default();
    let options = ReadOptions::default();
    let (decode_best, decode_median) = stats(500, || {
        decode_bundled(&bytes, &limits)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .version
    });
    let (full_best, full_median) = stats(500, || {
        let file = BundledFile::parse(&bytes, &limits).unwrap_or_else(|e| panic!("{path}: {e}"));
        let program = file
            .program_file(&options)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        program.program().version
    });
    let bp = decode_bundled(&bytes, &limits).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (pack_best, pack_median) = stats(200, || pack_bundled(&bp).map(|b| b.len()).unwrap_or(0));
    println!(
        "{{\"file\": {path:?}, \"decode_s\": {}, \"decode_median_s\": {}, \
         \"decode_with_program_s\": {}, \"decode_with_program_median_s\": {}, \
         \"pack_s\": {}, \"pack_median_s\": {}}}",
        decode_best.as_secs_f64(),
        decode_median.as_secs_f64(),
        full_best.as_secs_f64(),
        full_median.as_secs_f64(),
        pack_best.as_secs_f64(),
        pack_median.as_secs_f64()
    );
}
