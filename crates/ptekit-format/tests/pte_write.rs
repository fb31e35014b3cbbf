//! Streaming and atomic writes: correct bytes, no temporary files left behind, the
//! destination never partial, copies from the source file descriptor.

#[path = "pte_support.rs"]
mod support;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ptekit_format::error::ContainerError;
use ptekit_format::pte::{
    plan_exact, relayout, PteError, PteFile, PteMap, ReadOptions, SerializeOptions, SourceRef,
    WriteOptions,
};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn write_atomic_from_a_map_reproduces_every_corpus_file() {
    let dir = tempfile::tempdir().unwrap();
    for path in support::corpus_ptes() {
        let map = PteMap::open(&path).unwrap();
        let file = map.parse(&ReadOptions::default()).unwrap();
        assert!(file.source().is_some());
        let planned = plan_exact(&file).unwrap();
        let dest = dir.path().join(path.file_name().unwrap());
        let mut calls = Vec::new();
        let mut progress = |done: u64, total: u64| calls.push((done, total));
        let n = planned
            .write_atomic(&dest, &WriteOptions::default(), Some(&mut progress))
            .unwrap();
        assert_eq!(n, planned.len());
        assert!(
            fs::read(&dest).unwrap() == map.bytes(),
            "{}",
            path.display()
        );
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(calls.last().copied(), Some((n, n)));
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    // Only the destinations, no temporary files.
    assert_eq!(names(dir.path()).len(), support::corpus_ptes().len());
    assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
}

#[test]
fn relayout_through_the_source_descriptor_matches_in_memory_planning() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SerializeOptions {
        segment_alignment: 4096,
        constant_tensor_alignment: Some(64),
        ..SerializeOptions::default()
    };
    for name in ["mlp.pte", "transformer_xnnpack.pte", "kv_init.pte"] {
        let map = PteMap::open(support::corpus_dir().join(name)).unwrap();
        let file = map.parse(&ReadOptions::default()).unwrap();
        let planned = relayout(&file, &opts).unwrap();
        let dest = dir.path().join(name);
        planned
            .write_atomic(&dest, &WriteOptions { durable: false }, None)
            .unwrap();
        let expected = planned.to_vec().unwrap();
        assert!(fs::read(&dest).unwrap() == expected, "{name}");
        let reparsed = fs::read(&dest).unwrap();
        let f2 = PteFile::parse(&reparsed, &ReadOptions::default()).unwrap();
        assert_eq!(f2.header().unwrap().segment_base_offset % 4096, 0);
    }
}

#[test]
fn overwrite_keeps_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.pte");
    fs::write(&dest, b"old").unwrap();
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o600)).unwrap();
    let bytes = support::corpus_file("mlp.pte");
    let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
    plan_exact(&file)
        .unwrap()
        .write_atomic(&dest, &WriteOptions::default(), None)
        .unwrap();
    assert!(fs::read(&dest).unwrap() == bytes);
    assert_eq!(
        fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(names(dir.path()), vec!["out.pte".to_string()]);
}

#[test]
fn a_source_failing_mid_stream_leaves_the_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = support::corpus_file("transformer_xnnpack.pte");
    // The "source file" is shorter than the bytes it claims to back: copying a segment
    // from it hits end of file half way through the output.
    let short_path = dir.path().join("short.bin");
    fs::write(&short_path, &bytes[..bytes.len() / 2]).unwrap();
    let short = fs::File::open(&short_path).unwrap();
    let file = PteFile::parse(&bytes, &ReadOptions::default())
        .unwrap()
        .with_source(SourceRef::new(&short, &bytes));
    let planned = plan_exact(&file).unwrap();
    let dest = dir.path().join("model.pte");
    fs::write(&dest, b"previous content").unwrap();
    let mut last = 0;
    let mut progress = |done: u64, _| last = done;
    let err = planned
        .write_atomic(&dest, &WriteOptions::default(), Some(&mut progress))
        .unwrap_err();
    assert!(
        matches!(err, PteError::Container(ContainerError::Write { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("source file ended"), "{err}");
    assert!(last > 0 && last < planned.len());
    assert_eq!(fs::read(&dest).unwrap(), b"previous content");
    assert_eq!(
        names(dir.path()),
        vec!["model.pte".to_string(), "short.bin".to_string()]
    );
}

#[test]
fn a_panicking_progress_callback_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = support::corpus_file("transformer.pte");
    let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
    let planned = plan_exact(&file).unwrap();
    let dest = dir.path().join("model.pte");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut progress = |done: u64, _total: u64| {
            if done > 1000 {
                panic!("interrupted");
            }
        };
        let _ = planned.write_atomic(&dest, &WriteOptions::default(), Some(&mut progress));
    }));
    assert!(result.is_err());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_failing_rename_or_folder_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = support::corpus_file("mlp.pte");
    let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
    let planned = plan_exact(&file).unwrap();
    // Destination is a non-empty directory: everything is written, the rename fails.
    let dest = dir.path().join("taken");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("inside"), b"x").unwrap();
    let err = planned
        .write_atomic(&dest, &WriteOptions::default(), None)
        .unwrap_err();
    assert!(
        matches!(err, PteError::Container(ContainerError::Io { op, .. }) if op.contains("rename")),
        "{err}"
    );
    assert_eq!(names(dir.path()), vec!["taken".to_string()]);
    assert_eq!(names(&dest), vec!["inside".to_string()]);
    // Missing folder.
    let err = planned
        .write_atomic(
            dir.path().join("missing/out.pte"),
            &WriteOptions::default(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, PteError::Container(ContainerError::Io { .. })),
        "{err}"
    );
    assert_eq!(names(dir.path()), vec!["taken".to_string()]);
}

/// A writer that fails after `limit` bytes.
struct Failing {
    written: usize,
    limit: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.limit {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.limit - self.written);
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_to_reports_the_failing_offset() {
    let bytes = support::corpus_file("mlp_xnnpack.pte");
    let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
    let planned = plan_exact(&file).unwrap();
    for limit in [0, 7, 100, 1448, 1500, 4000, bytes.len() - 1] {
        let mut w = Failing { written: 0, limit };
        match planned.write_to(&mut w) {
            Err(PteError::Container(ContainerError::Write { offset, .. })) => {
                assert!(offset <= limit as u64);
            }
            other => panic!("limit {limit}: {other:?}"),
        }
    }
    let mut w = Failing {
        written: 0,
        limit: bytes.len(),
    };
    assert_eq!(planned.write_to(&mut w).unwrap(), bytes.len() as u64);
}
