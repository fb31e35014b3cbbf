//! Peak memory of `ptekit rewrite` on a large `.ptd` (ignored by default; run with
//! `cargo test --release -p ptekit-cli --test cli_large_ptd -- --ignored --nocapture`).
//!
//! A ~256 MiB tensor-data file is generated with `flat_tensor::plan` (weights borrowed
//! from a memory-mapped random file, streamed to disk), then rewritten exactly and
//! re-laid out by the binary under `/usr/bin/time -f %M`. Prints the peak RSS of each
//! run (and of `cp` for scale); asserts only the outputs, and that the peak RSS stays
//! well below the file size (the file is streamed, not assembled in memory).

mod common;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;

use ptekit_format::flat_tensor::{self, DataEntry, DataPayload, FlatTensorConfig};
use ptekit_format::pte::{PteMap, WriteOptions};

const MIB: u64 = 1 << 20;

/// Writes `size` pseudo-random bytes to `path` in 1 MiB chunks (low memory).
fn random_file(path: &Path, size: u64) {
    let mut w = BufWriter::new(File::create(path).expect("create"));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..size / MIB {
        for c in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            c.copy_from_slice(&state.to_le_bytes()[..c.len()]);
        }
        w.write_all(&chunk).expect("write");
    }
    w.flush().expect("flush");
}

/// Whether two files have the same content (compared in 8 MiB chunks).
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).expect("open"), File::open(b).expect("open"));
    if fa.metadata().expect("stat").len() != fb.metadata().expect("stat").len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let n = fa.read(&mut ba).expect("read");
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).expect("read");
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Runs `program args` under `/usr/bin/time -f %M`; returns the peak RSS in bytes.
fn peak_rss_of(program: &Path, args: &[&Path]) -> u64 {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("maxrss_kib=%M")
        .arg(program)
        .args(args)
        .output()
        .expect("run /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed: {stderr}",
        program.display()
    );
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no maxrss in {stderr:?}"))
}

#[test]
#[ignore = "writes ~1 GB of temporary files; run explicitly (release mode) to measure"]
fn rewrite_of_a_256_mib_ptd_streams() {
    if !Path::new("/usr/bin/time").exists() {
        println!("skipped: /usr/bin/time is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("weights.bin");
    let size = 256 * MIB;
    random_file(&data_path, size);
    let data = PteMap::open(&data_path).expect("map weights");

    // 16 tensors of 16 MiB (minus a little, so segments need padding), borrowed from
    // the map and streamed to the file with the map as source.
    let n = 16u64;
    let each = size / n - 100;
    let buffers: Vec<Cow<'_, [u8]>> = (0..n)
        .map(|i| {
            let start = (i * (size / n)) as usize;
            Cow::Borrowed(&data.bytes()[start..start + each as usize])
        })
        .collect();
    let payload = DataPayload {
        buffers,
        named_data: (0..n as usize)
            .map(|i| DataEntry {
                key: format!("layer{i}.weight"),
                buffer_index: i,
                alignment: 64,
                tensor_layout: None,
            })
            .collect(),
    };
    let ptd = dir.path().join("big.ptd");
    flat_tensor::plan(&payload, &FlatTensorConfig::default())
        .expect("plan")
        .with_source(Some(data.source()))
        .write_atomic(&ptd, &WriteOptions { durable: false }, None)
        .expect("write");
    drop(payload);
    drop(data);
    std::fs::remove_file(&data_path).expect("remove weights");
    let len = std::fs::metadata(&ptd).expect("stat").len();
    println!("input: {} ({} MiB)", ptd.display(), len / MIB);

    let ptekit = Path::new(env!("CARGO_BIN_EXE_ptekit"));
    let out = dir.path().join("out.ptd");
    let exact = peak_rss_of(ptekit, &[Path::new("rewrite"), &ptd, &out]);
    assert!(
        same_content(&ptd, &out),
        "exact rewrite differs from the input"
    );
    println!(
        "ptekit rewrite IN OUT: peak RSS {:.1} MiB",
        exact as f64 / MIB as f64
    );

    let relaid = dir.path().join("relaid.ptd");
    let relayout = peak_rss_of(
        ptekit,
        &[
            Path::new("rewrite"),
            &ptd,
            &relaid,
            Path::new("--segment-alignment"),
            Path::new("4096"),
        ],
    );
    let verify = common::run(&["verify", relaid.to_str().expect("utf-8 path")]);
    assert!(verify.status.success(), "{:?}", verify);
    println!(
        "ptekit rewrite IN OUT --segment-alignment 4096: peak RSS {:.1} MiB",
        relayout as f64 / MIB as f64
    );

    let copy = dir.path().join("copy.ptd");
    let cp = peak_rss_of(Path::new("/bin/cp"), &[&ptd, &copy]);
    println!("cp IN OUT: peak RSS {:.1} MiB", cp as f64 / MIB as f64);

    // Streamed, not assembled: far below the 256 MiB file (the map's pages are not
    // touched for segment data, which is copied file-to-file).
    assert!(
        exact < len / 4,
        "exact rewrite peak RSS {} MiB",
        exact / MIB
    );
    assert!(
        relayout < len / 4,
        "relayout peak RSS {} MiB",
        relayout / MIB
    );
}
