//! `ptekit cache inspect|verify|stats|compact`: exit codes on ptekit's own cache files
//! and on the reference runtime's XPWC v2 files (built by the cache crate's writers).

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::run;
use ptekit_cache::format::{Entry, KeySource};
use ptekit_cache::store::data_digest;
use ptekit_cache::{xpwc, CacheFile, FileOptions};

fn code(args: &[&str]) -> i32 {
    run(args).status.code().expect("exit code")
}

/// Commits two entries through the store API, then leaves an orphan reservation (a
/// writer that died before committing).
fn make_cache(path: &Path) {
    let opts = FileOptions {
        slot_count: 16,
        durable: false,
        ..FileOptions::default()
    };
    let mut cf = CacheFile::open(path, &opts).expect("create");
    assert!(cf.lock().expect("lock"));
    let raw = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    for i in 0..2u8 {
        let data = vec![i + 1; 700];
        let off = cf.reserve(data.len() as u64).expect("reserve");
        raw.write_all_at(&data, off).expect("write data");
        cf.commit(Entry {
            data_offset: off,
            data_len: data.len() as u64,
            seed: 7,
            fingerprint_id: 1,
            kernel_len: 1000,
            bias_len: None,
            key_digest: [i; 32],
            data_digest: data_digest(&data),
            kernel_key: KeySource::Hashed,
            name: format!("layer{i}.weight"),
            pid: 1,
        })
        .expect("commit");
    }
    cf.unlock();
}

#[test]
fn cache_commands_on_ptekit_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    make_cache(&p);
    let f = p.to_str().expect("utf-8 path");
    assert_eq!(code(&["cache", "verify", "--json", f]), 0);
    assert_eq!(code(&["cache", "inspect", "--json", f]), 0);
    assert_eq!(code(&["cache", "inspect", f]), 0);
    assert_eq!(code(&["cache", "stats", f]), 0);
    let mut cf = CacheFile::open(&p, &FileOptions::default()).expect("open");
    assert!(cf.lock().expect("lock"));
    cf.reserve(5000).expect("reserve");
    drop(cf);
    assert_eq!(code(&["cache", "compact", "--lock-timeout", "5", f]), 0);
    assert_eq!(code(&["cache", "verify", f]), 0);
}

#[test]
fn cache_commands_on_xpwc_files() {
    let img = xpwc::build(
        &[
            ("fc0.weightfc0.bias".into(), vec![1u8; 5000], 0xABCD),
            ("conv.weight".into(), vec![3u8; 100], 0x1234),
        ],
        2,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ref.xpwc");
    std::fs::write(&p, &img).expect("write");
    let f = p.to_str().expect("utf-8 path");
    assert_eq!(code(&["cache", "inspect", f]), 0);
    assert_eq!(code(&["cache", "verify", f]), 0);
    assert_eq!(code(&["cache", "stats", "--json", f]), 0);
    // XPWC files are read-only here.
    assert_eq!(code(&["cache", "compact", "--lock-timeout", "1", f]), 1);

    // A short index: the footer claims one more entry than is there.
    let mut short = img.clone();
    let n = short.len();
    let count = u32::from_le_bytes(short[n - 12..n - 8].try_into().expect("4 bytes"));
    short[n - 12..n - 8].copy_from_slice(&(count + 1).to_le_bytes());
    std::fs::write(&p, &short).expect("write");
    assert_eq!(code(&["cache", "verify", f]), 1);

    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("write");
    assert_eq!(
        code(&["cache", "verify", empty.to_str().expect("utf-8")]),
        1
    );
    // An unreadable input is exit 2.
    let missing = dir.path().join("missing");
    assert_eq!(
        code(&["cache", "stats", missing.to_str().expect("utf-8")]),
        2
    );
}

/// The cache commands on a pipe whose reader has gone: a quiet exit (141), never the
/// `println!` panic (exit 101).
#[test]
fn cache_commands_on_closed_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    make_cache(&p);
    let x = dir.path().join("ref.xpwc");
    std::fs::write(&x, xpwc::build(&[("w".into(), vec![1u8; 300], 1)], 0)).expect("write");
    for file in [&p, &x] {
        for args in [
            &["cache", "inspect", "--json"][..],
            &["cache", "inspect"],
            &["cache", "stats"],
            &["cache", "verify", "--json"],
        ] {
            let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
            all.push(file.as_os_str());
            common::assert_quiet_on_closed_stdout(&all);
        }
    }
}
