//! The cache file without a fixed size: the index continues in linked
//! extents, a size cap withdraws the least recently used entries, file-region
//! memos survive reopening and compaction, the tail past the last record is
//! trimmed. All through the commit path the runtime uses
//! (`CacheFile::commit_batch`); every file is re-read by a fresh reader, by
//! `parse_image` and by `check::verify_file`.

use std::os::unix::fs::FileExt;
use std::path::Path;

use ptekit_cache::check::verify_file;
use ptekit_cache::format::{
    parse_image, Entry, KeySource, RegionMemo, SlotState, LAST_USE_AT, SLOT_SIZE,
};
use ptekit_cache::store::{self, data_digest};
use ptekit_cache::{CacheFile, FileOptions};

fn opts(slots: u32, cap: u64) -> FileOptions {
    FileOptions {
        slot_count: slots,
        durable: false,
        max_live_bytes: cap,
        ..FileOptions::default()
    }
}

fn packed(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b as u64 * 31 + i * 7) as u8).collect()
}

fn entry(i: u64, data: &[u8]) -> Entry {
    Entry {
        data_offset: 0,
        data_len: data.len() as u64,
        seed: 9,
        fingerprint_id: 3,
        kernel_len: 4096,
        bias_len: None,
        key_digest: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        data_digest: data_digest(data),
        kernel_key: KeySource::Hashed,
        name: String::new(),
        pid: 1,
        last_use: 0,
    }
}

/// Commits entries `ids` in one batch (one runtime's packs).
fn commit(path: &Path, o: &FileOptions, ids: &[u64], len: usize) -> Vec<Entry> {
    let mut cf = CacheFile::open(path, o).expect("open");
    assert!(cf.lock().expect("lock"));
    let data: Vec<Vec<u8>> = ids.iter().map(|&i| packed(i, len)).collect();
    let items: Vec<(&[u8], Entry)> = ids
        .iter()
        .zip(&data)
        .map(|(&i, d)| (d.as_slice(), entry(i, d)))
        .collect();
    let out = cf.commit_batch(&items, &[]).expect("commit");
    cf.unlock();
    out.into_iter().map(|(e, _)| e).collect()
}

/// A fresh read-only reader of the file.
fn reader(path: &Path) -> CacheFile {
    let o = FileOptions {
        read_only: true,
        create: false,
        ..FileOptions::default()
    };
    CacheFile::open(path, &o).expect("open read-only")
}

fn live_keys(path: &Path) -> Vec<[u8; 32]> {
    let cf = reader(path);
    cf.index().live().map(|(_, e)| e.key_digest).collect()
}

#[test]
fn the_index_grows_past_its_first_region() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grow.pwc");
    let o = opts(4, 0);
    // 4 slots in the header's region; 50 entries in batches of 7.
    let mut all = Vec::new();
    for b in 0..8u64 {
        let ids: Vec<u64> = (b * 7..(b * 7 + 7).min(50)).collect();
        all.extend(commit(&path, &o, &ids, 300 + b as usize));
    }
    assert_eq!(all.len(), 50);
    let cf = reader(&path);
    let s = cf.summary();
    assert_eq!(s.live_entries, 50, "{s:?}");
    assert!(s.index_extents >= 1 && s.slot_count > 4, "{s:?}");
    assert_eq!(s.torn_slots, 0);
    // Every entry's bytes are where its record says.
    for e in &all {
        assert!(cf.verify_entry(e), "{e:?}");
    }
    let image = std::fs::read(&path).expect("read");
    let idx = parse_image(&image).expect("parse");
    assert_eq!(idx.live().count(), 50);
    assert_eq!(idx.extents.len() as u64, s.index_extents + 1);
    verify_file(&path).expect("verify");
    // Compaction folds the extents back into one region.
    let r = store::compact(&path, &o).expect("compact");
    assert_eq!(
        (r.kept, r.after.live_entries, r.after.index_extents),
        (50, 50, 0)
    );
    verify_file(&path).expect("verify after compaction");
}

#[test]
fn the_size_cap_withdraws_the_least_recently_used_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cap.pwc");
    let len = 1000usize;
    // Room for three entries of 1000 bytes.
    let o = opts(64, 3000);
    commit(&path, &o, &[1, 2, 3], len);
    assert_eq!(live_keys(&path).len(), 3);
    // Entry 1 was used recently, entries 2 and 3 long ago (last-use times
    // are advisory bytes outside the record checksum).
    let cf = CacheFile::open(&path, &o).expect("open");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open rw");
    for (slot, e) in cf.index().live() {
        let at = cf.index().slot_offset(slot).expect("slot") + LAST_USE_AT as u64;
        let t: u64 = if e.key_digest == entry(1, &[]).key_digest {
            2_000_000_000
        } else {
            1 + u64::from(slot)
        };
        f.write_all_at(&t.to_le_bytes(), at)
            .expect("write last use");
    }
    drop(cf);
    // Two new entries: the two least recently used go.
    commit(&path, &o, &[4, 5], len);
    let keys = live_keys(&path);
    let want: Vec<[u8; 32]> = [1, 4, 5]
        .iter()
        .map(|&i| entry(i, &[]).key_digest)
        .collect();
    assert_eq!(keys.len(), 3, "live: {keys:?}");
    for k in &want {
        assert!(keys.contains(k));
    }
    let cf = reader(&path);
    let dropped = cf
        .index()
        .slots
        .iter()
        .filter(|s| matches!(s, SlotState::Drop { .. }))
        .count();
    assert_eq!(dropped, 2);
    assert!(cf.summary().live_bytes <= 3000);
    drop(cf);
    verify_file(&path).expect("verify");
    // A batch larger than the cap by itself is refused, nothing withdrawn.
    let mut cf = CacheFile::open(&path, &o).expect("open");
    assert!(cf.lock().expect("lock"));
    let big = packed(9, 4000);
    let err = cf
        .commit_batch(&[(big.as_slice(), entry(9, &big))], &[])
        .expect_err("over cap");
    assert!(err.to_string().contains("size cap"), "{err}");
    cf.unlock();
    assert_eq!(live_keys(&path).len(), 3);
    // Compaction reclaims the withdrawn bytes.
    let r = store::compact(&path, &o).expect("compact");
    assert_eq!(
        (r.after.dead_bytes, r.after.live_bytes, r.kept),
        (0, 3000, 3)
    );
    assert!(r.before.dead_bytes >= 2000);
}

#[test]
fn region_memos_survive_reopening_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("memo.pwc");
    let o = opts(8, 0);
    let memo = |i: u8| RegionMemo {
        region: [i; 32],
        content: [i.wrapping_add(100); 32],
        len: 4096 + u64::from(i),
    };
    let mut cf = CacheFile::open(&path, &o).expect("open");
    assert!(cf.lock().expect("lock"));
    let d = packed(1, 500);
    // More memos than the header's region holds, and one twice.
    let memos: Vec<RegionMemo> = (0..20).map(memo).chain([memo(3)]).collect();
    cf.commit_batch(&[(d.as_slice(), entry(1, &d))], &memos)
        .expect("commit");
    cf.unlock();
    drop(cf);
    let check = |p: &Path| {
        let cf = reader(p);
        assert_eq!(cf.summary().memos, 20);
        for i in 0..20u8 {
            let m = memo(i);
            assert_eq!(cf.index().memo(&m.region), Some((m.content, m.len)));
        }
        assert_eq!(cf.index().memo(&[200; 32]), None);
    };
    check(&path);
    store::compact(&path, &o).expect("compact");
    check(&path);
    verify_file(&path).expect("verify");
}

#[test]
fn bytes_past_the_last_record_are_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tail.pwc");
    let o = opts(16, 0);
    commit(&path, &o, &[1], 700);
    let end = std::fs::metadata(&path).expect("stat").len();
    // A writer killed after writing packed bytes, before their record.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.write_all_at(&vec![0xAB; 5000], end + 128)
        .expect("garbage");
    drop(f);
    let cf = reader(&path);
    assert!(cf.summary().free_tail_bytes >= 5000);
    drop(cf);
    let e = commit(&path, &o, &[2], 700);
    let cf = reader(&path);
    let s = cf.summary();
    assert_eq!(s.free_tail_bytes, 0, "{s:?}");
    assert_eq!(s.file_bytes, e[0].data_offset + e[0].data_len);
    assert_eq!(s.live_entries, 2);
    verify_file(&path).expect("verify");
    // The records were written where slot numbers say.
    assert_eq!(
        cf.index().slot_offset(1),
        Some(cf.index().header.index_offset + SLOT_SIZE as u64)
    );
}

/// A file the runtime creates (default options) starts with one 64 KiB unit of index
/// after the header's (was 8,192 slots: data at 2,162,688): data at 131,072. Its 256
/// slots take 200 entries without an extent; more continue in linked extents.
#[test]
fn a_new_file_starts_small_and_grows_by_extents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.pwc");
    let o = FileOptions {
        durable: false,
        ..FileOptions::default()
    };
    drop(CacheFile::open(&path, &o).expect("create"));
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 131_072);
    let s = reader(&path).summary();
    assert_eq!(
        (s.slot_count, s.index_region_bytes, s.index_extents),
        (256, 131_072, 0),
        "{s:?}"
    );
    let first: Vec<u64> = (0..200).collect();
    let all = commit(&path, &o, &first, 100);
    assert_eq!(all.first().map(|e| e.data_offset), Some(131_072));
    let s = reader(&path).summary();
    assert_eq!((s.live_entries, s.index_extents), (200, 0), "{s:?}");
    let more: Vec<u64> = (200..300).collect();
    commit(&path, &o, &more, 100);
    let s = reader(&path).summary();
    assert_eq!(s.live_entries, 300, "{s:?}");
    assert!(s.index_extents == 1 && s.slot_count > 300, "{s:?}");
    verify_file(&path).expect("verify");
}

/// An index that is nearly full is no reason to compact (the next commit continues it
/// in an extent): `maintain` at runtime deletion leaves a file of 240 live entries in
/// its 256 slots alone. Before, it rewrote the whole file whenever 90% of the slots
/// were used, which a small new file reaches after a few models, and a compacted file
/// with more than ~1,150 records right after its compaction.
#[test]
fn a_nearly_full_index_is_not_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("full.pwc");
    let copts = ptekit_cache::CacheOptions::default();
    let o = FileOptions {
        durable: false,
        ..copts.file.clone()
    };
    let ids: Vec<u64> = (0..240).collect();
    commit(&path, &o, &ids, 100);
    let s = reader(&path).summary();
    assert_eq!(
        (s.slots_used, s.slot_count, s.dead_bytes),
        (240, 256, 0),
        "{s:?}"
    );
    let id = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).expect("stat").ino()
    };
    let before = id(&path);
    let c = ptekit_cache::WeightsCache::new(Some(&path), copts);
    assert!(!c.maintain(), "{:?}", c.stats());
    assert_eq!(c.stats().compactions, 0);
    assert_eq!(id(&path), before, "the file was replaced");
}
