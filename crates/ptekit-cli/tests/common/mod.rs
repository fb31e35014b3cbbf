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

/// The `ptekit` binary under test: this build's, or `$PTEKIT_TEST_BIN` (to run the tests
/// against another build, e.g. to see a test fail on the code before a fix).
pub fn bin() -> PathBuf {
    std::env::var_os("PTEKIT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ptekit")))
}

/// Runs the `ptekit` binary.
pub fn ptekit(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin()).args(args).output().expect("run ptekit")
}

/// Shorthand for string arguments.
pub fn run(args: &[&str]) -> Output {
    let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    ptekit(&os)
}

/// Runs `ptekit` expecting success; its standard output.
pub fn stdout_of(args: &[&str]) -> Vec<u8> {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `ptekit` with standard output a pipe whose reader has already gone (like
/// `ptekit ... | head -c 0` when `head` wins the race): the pipe's read end belonged to
/// a `true` process that has exited before `ptekit` starts.
pub fn run_with_closed_stdout(args: &[&std::ffi::OsStr]) -> Output {
    use std::process::Stdio;
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn true");
    let mut write_end = reader.stdin.take().expect("pipe");
    assert!(reader.wait().expect("wait for true").success());
    // A child that another test thread is starting may hold a copy of the read end until
    // it runs its program; once a write fails, no copy is left and none can appear.
    loop {
        match std::io::Write::write(&mut write_end, b"x") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => panic!("probe the pipe: {e}"),
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("run ptekit")
}

/// Runs `args` 20 times with a closed standard output: every run exits quietly with
/// status 141 (see `ptekit`'s `output` module), never the `println!` panic (101).
pub fn assert_quiet_on_closed_stdout(args: &[&std::ffi::OsStr]) {
    for _ in 0..20 {
        let out = run_with_closed_stdout(args);
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args:?}: status {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: wrote to stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An entry record of [`make_cache`]'s kind (seed 7, fingerprint 1): `data` at `off`
/// under `name`, key digest all `key`.
pub fn cache_entry(name: &str, key: u8, off: u64, data: &[u8]) -> ptekit_cache::format::Entry {
    use ptekit_cache::format::{Entry, KeySource};
    Entry {
        data_offset: off,
        data_len: data.len() as u64,
        seed: 7,
        fingerprint_id: 1,
        kernel_len: 1000,
        bias_len: None,
        key_digest: [key; 32],
        data_digest: ptekit_cache::store::data_digest(data),
        kernel_key: KeySource::Hashed,
        name: name.into(),
        pid: 1,
        last_use: 0,
    }
}

/// Reserves room for `data` in the locked cache `cf` (the file at `path`), writes it
/// there and commits it as [`cache_entry`] `name`, `key`; the entry's slot.
pub fn add_entry(
    cf: &mut ptekit_cache::CacheFile,
    path: &Path,
    name: &str,
    key: u8,
    data: &[u8],
) -> u32 {
    use std::os::unix::fs::FileExt;
    let off = cf.reserve(data.len() as u64).expect("reserve");
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .write_all_at(data, off)
        .expect("write data");
    cf.commit(cache_entry(name, key, off, data))
        .expect("commit")
}

/// Commits two entries through the store API, then leaves an orphan reservation (a
/// writer that died before committing).
pub fn make_cache(path: &Path) {
    use ptekit_cache::{CacheFile, FileOptions};
    let opts = FileOptions {
        slot_count: 16,
        durable: false,
        ..FileOptions::default()
    };
    let mut cf = CacheFile::open(path, &opts).expect("create");
    assert!(cf.lock().expect("lock"));
    for i in 0..2u8 {
        add_entry(
            &mut cf,
            path,
            &format!("layer{i}.weight"),
            i,
            &vec![i + 1; 700],
        );
    }
    cf.unlock();
}
