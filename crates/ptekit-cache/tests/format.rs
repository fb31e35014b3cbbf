//! The file format without XNNPACK: record round trips, the index reader
//! under random corruption and truncation (proptest; no nightly fuzzing
//! here), the XPWC v2 reader, and `check::verify_file` on both formats (the
//! `ptekit cache` exit codes are tested in the CLI crate, `cli_cache.rs`).

use std::os::unix::fs::FileExt;
use std::path::Path;

use proptest::prelude::*;

use ptekit_cache::check::verify_file;
use ptekit_cache::format::{parse_image, Entry, KeySource, Record, SlotState, SLOT_SIZE};
use ptekit_cache::store::data_digest;
use ptekit_cache::xpwc;
use ptekit_cache::{CacheFile, FileOptions};

fn entry(i: u64, off: u64, data: &[u8]) -> Entry {
    Entry {
        data_offset: off,
        data_len: data.len() as u64,
        seed: 100 + i as u32,
        fingerprint_id: 7,
        kernel_len: 1000 + i,
        bias_len: if i % 2 == 0 { Some(40) } else { None },
        key_digest: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        data_digest: data_digest(data),
        kernel_key: if i % 3 == 0 {
            KeySource::Caller
        } else {
            KeySource::Hashed
        },
        name: format!("model/layer{i}.weight"),
        pid: 42,
        last_use: 1_700_000_000 + i,
    }
}

/// Writes `n` entries through the store API (lock, reserve, write, commit).
fn make_cache(path: &Path, n: u64) -> Vec<Entry> {
    let opts = FileOptions {
        slot_count: 64,
        durable: false,
        ..FileOptions::default()
    };
    let mut cf = CacheFile::open(path, &opts).expect("create");
    assert!(cf.lock().expect("lock"));
    let raw = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    let mut out = Vec::new();
    for i in 0..n {
        let data: Vec<u8> = (0..(300 + i * 517))
            .map(|b| (b as u8).wrapping_mul(i as u8 + 3))
            .collect();
        let off = cf.reserve(data.len() as u64).expect("reserve");
        raw.write_all_at(&data, off).expect("write data");
        let e = entry(i, off, &data);
        cf.commit(e.clone()).expect("commit");
        out.push(e);
    }
    cf.unlock();
    out
}

#[test]
fn records_round_trip() {
    let e = entry(3, 1 << 20, b"abc");
    for r in [
        Record::Entry(e.clone()),
        Record::Reserve {
            data_offset: 1 << 20,
            data_len: 128,
            pid: 9,
        },
        Record::Drop { slot: 5, pid: 9 },
    ] {
        let b = r.encode();
        assert_eq!(Record::decode(&b, 0).expect("decode"), Some(r));
    }
    assert_eq!(Record::decode(&[0u8; SLOT_SIZE], 0).expect("zero"), None);
    let mut b = Record::Entry(e).encode();
    b[20] ^= 1;
    assert!(Record::decode(&b, 0).is_err());
}

#[test]
fn store_writes_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    let entries = make_cache(&p, 5);
    let bytes = std::fs::read(&p).expect("read");
    let idx = parse_image(&bytes).expect("parse");
    let live: Vec<Entry> = idx.live().map(|(_, e)| e.clone()).collect();
    assert_eq!(live, entries);
    let s = idx.summary();
    assert_eq!(s.live_entries, 5);
    assert_eq!(s.dead_bytes, 0);
    assert_eq!(s.orphan_reservations, 0);
    assert!(verify_file(&p).is_ok());
    // An orphan reservation (a writer that died before committing) is dead.
    let mut cf = CacheFile::open(&p, &FileOptions::default()).expect("open");
    assert!(cf.lock().expect("lock"));
    cf.reserve(5000).expect("reserve");
    drop(cf);
    let s = parse_image(&std::fs::read(&p).expect("read"))
        .expect("parse")
        .summary();
    assert_eq!(s.orphan_reservations, 1);
    assert_eq!(s.dead_bytes, 5120);
    let opts = FileOptions {
        lock_timeout: std::time::Duration::from_secs(5),
        ..FileOptions::default()
    };
    ptekit_cache::compact(&p, &opts).expect("compact");
    let s = parse_image(&std::fs::read(&p).expect("read"))
        .expect("parse")
        .summary();
    assert_eq!(
        (s.live_entries, s.dead_bytes, s.orphan_reservations),
        (5, 0, 0)
    );
}

fn base_image() -> (Vec<u8>, Vec<Entry>, u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    let entries = make_cache(&p, 6);
    let bytes = std::fs::read(&p).expect("read");
    let idx = parse_image(&bytes).expect("parse");
    let (start, end) = (
        idx.header.index_offset,
        idx.header.slot_offset(idx.next_slot()),
    );
    (bytes, entries, start, end)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Random byte changes in the header and index: the reader never panics,
    /// and whatever it accepts is exactly an entry that was committed.
    #[test]
    fn index_reader_rejects_corruption(flips in proptest::collection::vec((0u64..1_000_000, any::<u8>()), 1..8)) {
        let (mut bytes, entries, start, end) = base_image();
        for (pos, v) in flips {
            // Aim at the header (first 64 bytes) and the written slots.
            let span = 64 + (end - start);
            let p = pos % span;
            let at = if p < 64 { p } else { start + p - 64 };
            let at = at as usize;
            bytes[at] ^= v | 1;
        }
        if let Ok(idx) = parse_image(&bytes) {
            for (_, e) in idx.live() {
                // The last-use time is advisory and outside the checksum.
                let committed = entries
                    .iter()
                    .any(|c| Entry { last_use: e.last_use, ..c.clone() } == *e);
                prop_assert!(committed, "accepted a record never committed: {e:?}");
                prop_assert!(e.data_offset + e.data_len <= bytes.len() as u64);
            }
        }
    }

    /// Truncation anywhere: never panics; accepted entries lie inside the file.
    #[test]
    fn index_reader_handles_truncation(cut in 0usize..400_000) {
        let (bytes, _, _, _) = base_image();
        let cut = cut.min(bytes.len());
        if let Ok(idx) = parse_image(&bytes[..cut]) {
            for (_, e) in idx.live() {
                prop_assert!(e.data_offset + e.data_len <= cut as u64);
            }
            for s in &idx.slots {
                if let SlotState::Live(e) = s {
                    prop_assert!(e.data_offset >= idx.header.data_offset);
                }
            }
        }
    }

    /// Arbitrary bytes never panic either reader.
    #[test]
    fn readers_survive_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_image(&bytes);
        let _ = xpwc::parse(&bytes);
    }

    /// XPWC: corrupt index or footer is rejected or yields in-bounds entries.
    #[test]
    fn xpwc_reader_rejects_corruption(flips in proptest::collection::vec((0usize..10_000, any::<u8>()), 1..6)) {
        let mut img = xpwc_sample(1);
        let tail_start = img.len() - 200;
        for (pos, v) in flips {
            let at = tail_start + pos % 200;
            img[at] ^= v | 1;
        }
        if let Ok(f) = xpwc::parse(&img) {
            for e in &f.entries {
                prop_assert!(e.offset + e.size <= f.index_start);
            }
        }
    }
}

fn xpwc_sample(orphans: usize) -> Vec<u8> {
    xpwc::build(
        &[
            ("fc0.weightfc0.bias".into(), vec![1u8; 5000], 0xABCD),
            ("fc1.weightfc1.bias".into(), vec![2u8; 9000], 0xABCD),
            ("conv.weight".into(), vec![3u8; 100], 0x1234),
        ],
        orphans,
    )
}

#[test]
fn xpwc_files_are_read_and_their_dead_bytes_reported() {
    let img = xpwc_sample(3);
    let f = xpwc::parse(&img).expect("parse");
    assert_eq!(f.entries.len(), 3);
    assert_eq!(f.entries[1].name, "fc1.weightfc1.bias");
    assert_eq!(f.entries[1].size, 9000);
    assert_eq!(f.entries[2].seed, 0x1234);
    assert_eq!(f.live_bytes, 14100);
    // 3 orphan pages + page rounding of each entry.
    assert_eq!(f.dead_bytes, f.index_start - 14100);
    assert_eq!(
        f.page_padding_bytes,
        (8192 - 5000) + (12288 - 9000) + (4096 - 100)
    );
    assert_eq!(f.dead_bytes - f.page_padding_bytes, 3 * 4096);

    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ref.xpwc");
    std::fs::write(&p, &img).expect("write");
    assert!(verify_file(&p).is_ok());

    // A short index: the footer claims one more entry than is there.
    let mut short = img.clone();
    let n = short.len();
    let count = u32::from_le_bytes(short[n - 12..n - 8].try_into().expect("4 bytes"));
    short[n - 12..n - 8].copy_from_slice(&(count + 1).to_le_bytes());
    let err = xpwc::parse(&short).expect_err("short index");
    assert!(err.to_string().contains("short or torn"), "{err}");
    std::fs::write(&p, &short).expect("write");
    assert!(verify_file(&p).is_err());

    // Trailing bytes between the index and the footer (a torn rewrite).
    let mut t2 = img[..n - 20].to_vec();
    t2.extend_from_slice(&[0u8; 3]);
    t2.extend_from_slice(&img[n - 20..]);
    assert!(xpwc::parse(&t2).is_err());

    // Version 1, bad magic, entry past the index.
    let mut v1 = img.clone();
    v1[n - 4..].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(
        xpwc::parse(&v1),
        Err(ptekit_cache::FormatError::Version { found: 1 })
    ));
    let mut oob = img.clone();
    let first_off_at = f.index_start as usize + 4 + "fc0.weightfc0.bias".len();
    oob[first_off_at..first_off_at + 8].copy_from_slice(&(f.index_start + 1).to_le_bytes());
    assert!(xpwc::parse(&oob).is_err());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("write");
    assert!(verify_file(&empty).is_err());
}

#[test]
fn forged_reserve_record_fails_verify_and_never_grows_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("forged.pwc");
    make_cache(&p, 3);
    let before = std::fs::metadata(&p).expect("stat").len();
    // A valid, checksummed reserve record claiming 4 KiB at 32 GiB.
    let idx = parse_image(&std::fs::read(&p).expect("read")).expect("parse");
    let slot = idx.slots.len() as u32;
    let rec = Record::Reserve {
        data_offset: 32 << 30,
        data_len: 4096,
        pid: 1,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    f.write_all_at(&rec.encode(), idx.header.slot_offset(slot))
        .expect("write record");
    drop(f);
    let reasons = verify_file(&p).expect_err("verify must reject the record");
    assert!(
        reasons.iter().any(|r| r.contains("reservation")),
        "{reasons:?}"
    );
    // The next writer allocates after the real data, not at 32 GiB.
    let mut cf = CacheFile::open(&p, &FileOptions::default()).expect("open");
    assert!(cf.lock().expect("lock"));
    let off = cf.reserve(1000).expect("reserve");
    assert!(off < before + (1 << 20), "reserved at {off}");
    let data = vec![7u8; 3000];
    let e = entry(9, 0, &data);
    let done = cf.commit_batch(&[(&data, e)], &[]).expect("commit");
    assert!(done[0].1 && done[0].0.data_offset < before + (64 << 20));
    cf.unlock();
    drop(cf);
    let after = std::fs::metadata(&p).expect("stat").len();
    assert!(after < before + (64 << 20), "file grew to {after}");
}

#[test]
fn stale_temp_files_of_dead_owners_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    make_cache(&p, 2);
    // A process that has exited: its pid is free.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("wait");
    let mine = std::process::id();
    let stale = dir.path().join(format!("c.pwc.compact.{dead}.tmp"));
    let stale_new = dir.path().join(format!("c.pwc.new.{dead}.tmp"));
    let live = dir.path().join(format!("c.pwc.compact.{mine}.tmp"));
    let other = dir.path().join(format!("d.pwc.compact.{dead}.tmp"));
    let unrelated = dir.path().join(format!("c.pwc.backup.{dead}.tmp"));
    for f in [&stale, &stale_new, &live, &other, &unrelated] {
        std::fs::write(f, b"x").expect("write");
    }
    ptekit_cache::compact(&p, &FileOptions::default()).expect("compact");
    assert!(
        !stale.exists() && !stale_new.exists(),
        "dead owners' temp files stay"
    );
    assert!(live.exists(), "a live owner's temp file was removed");
    assert!(
        other.exists() && unrelated.exists(),
        "foreign files were removed"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(verify_file(&p).is_ok());
}
