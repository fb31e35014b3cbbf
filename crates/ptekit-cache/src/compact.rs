//! Compaction: the live entries and region memos of a cache file rewritten
//! into a new file that holds only them, renamed over the old one.
//!
//! The new file is as small as the format allows: the header's 64 KiB unit,
//! an index region with a slot for every record it keeps and some spare ones
//! (filling its last 64 KiB unit, so the spare slots cost no bytes; more
//! records later go to index extents), then the packed bytes placed by the
//! same rule as a commit ([`crate::format::DATA_ALIGN`], large packs on a
//! page), and nothing after the last entry.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use crate::error::CacheError;
use crate::format::{Entry, Header, Record, RegionMemo, Summary, SLOT_SIZE};
use crate::store::{
    place_entry, random_id, read_full_at, remove_stale_temps, replace_with, write_fresh, CacheFile,
    FileOptions,
};

/// Free index slots a compacted file has at least, beyond its records.
pub const SPARE_SLOTS: u64 = 64;

/// What a compaction did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompactReport {
    /// Accounting before (`file_bytes`: the size of the old file).
    pub before: Summary,
    /// Accounting after (`file_bytes`: the size of the new file; header and
    /// index in `index_region_bytes`).
    pub after: Summary,
    /// Live entries copied.
    pub kept: u64,
    /// Live entries dropped because their bytes failed verification.
    pub dropped_corrupt: u64,
    /// Milliseconds spent.
    pub elapsed_ms: f64,
}

/// The header of a compacted file that keeps `records` records and the
/// environment `env`: at least [`SPARE_SLOTS`] free slots, as many more as fit
/// before the data region starts.
pub fn compacted_header(records: u64, env: [u8; 32]) -> Header {
    let want = u32::try_from(records.saturating_add(SPARE_SLOTS)).unwrap_or(u32::MAX);
    let probe = Header::new(want, [0; 16], env);
    let fits = (probe.data_offset - probe.index_offset) / SLOT_SIZE as u64;
    Header::new(
        u32::try_from(fits).unwrap_or(want).max(want),
        random_id(),
        env,
    )
}

/// Rewrites the live entries of the cache at `path` into a new file and
/// renames it over the old one. Runs under the writer lock of the old file, so
/// no commit can be lost; processes that still map the old file keep using it.
pub fn compact(path: &Path, opts: &FileOptions) -> Result<CompactReport, CacheError> {
    let start = Instant::now();
    let open_opts = FileOptions {
        create: false,
        read_only: false,
        ..opts.clone()
    };
    // Lock the file that is at `path` (it may be replaced while we wait).
    let mut cf = loop {
        let mut cf = CacheFile::open(path, &open_opts)?;
        if !cf.writable() {
            return Err(CacheError::io(
                "compact",
                path,
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            ));
        }
        if !cf.lock()? {
            return Err(CacheError::LockTimeout {
                path: path.to_path_buf(),
                waited_ms: opts.lock_timeout.as_millis() as u64,
            });
        }
        if cf.is_current() {
            break cf;
        }
    };
    cf.refresh()?;
    let before = cf.summary();
    let live: Vec<Entry> = cf.index().live().map(|(_, e)| e.clone()).collect();
    let mut memos: Vec<RegionMemo> = cf.index().memos().collect();
    memos.sort_unstable_by_key(|m| m.region);
    // The compacted file keeps the environment of the entries it copies.
    let header = compacted_header(
        (live.len() + memos.len()) as u64,
        cf.index().header.env_digest,
    );
    remove_stale_temps(path);
    let (out, tmp) =
        write_fresh(path, &header, "compact").map_err(|e| CacheError::io("create", path, e))?;
    let res = copy_live(&cf, path, &out, &header, &live, &memos).and_then(|(kept, end)| {
        out.set_len(end)
            .map_err(|e| CacheError::io("truncate", path, e))?;
        out.sync_all()
            .map_err(|e| CacheError::io("fsync", path, e))?;
        replace_with(path, &out, tmp.clone()).map_err(|e| CacheError::io("rename", path, e))?;
        Ok(kept)
    });
    if res.is_err() {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
    }
    let kept = res?;
    drop(cf);
    let after = CacheFile::open(
        path,
        &FileOptions {
            read_only: true,
            ..open_opts
        },
    )?
    .summary();
    Ok(CompactReport {
        before,
        after,
        kept,
        dropped_corrupt: live.len() as u64 - kept,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// Copies the entries whose bytes still match their digest and writes their
/// records, then the memos' (every record is on a slot of `header`'s region).
/// Returns the entries kept and the end of the last one (the file's length).
fn copy_live(
    cf: &CacheFile,
    path: &Path,
    out: &std::fs::File,
    header: &Header,
    live: &[Entry],
    memos: &[RegionMemo],
) -> Result<(u64, u64), CacheError> {
    let overflow = || CacheError::Invalid(format!("{}: offset overflow", path.display()));
    let mut cursor = header.data_offset;
    let mut end = header.data_offset;
    let mut slot = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    let put_record = |rec: &Record, slot: &mut u32| -> Result<(), CacheError> {
        out.write_all_at(&rec.encode(), header.slot_offset(*slot))
            .map_err(|err| CacheError::io("write", path, err))?;
        *slot += 1;
        Ok(())
    };
    for e in live {
        let (at, next) = place_entry(cursor, e.data_len).ok_or_else(overflow)?;
        // Copied with pread, not through the mapping: a file truncated
        // meanwhile gives a short read here instead of SIGBUS.
        let mut h = blake3::Hasher::new();
        let mut done = 0u64;
        let mut ok = true;
        while done < e.data_len {
            let n = (e.data_len - done).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            let got = read_full_at(&cf.file, chunk, e.data_offset + done)
                .map_err(|err| CacheError::io("read", path, err))?;
            if got != n {
                ok = false;
                break;
            }
            h.update(chunk);
            out.write_all_at(chunk, at + done)
                .map_err(|err| CacheError::io("write", path, err))?;
            done += n as u64;
        }
        // A dropped entry's bytes are overwritten by the next one or cut off
        // by the final length.
        if !ok || h.finalize().as_bytes()[..16] != e.data_digest {
            continue;
        }
        let mut ne = e.clone();
        ne.data_offset = at;
        put_record(&Record::Entry(ne), &mut slot)?;
        cursor = next;
        end = at.checked_add(e.data_len).ok_or_else(overflow)?;
    }
    let kept = u64::from(slot);
    for m in memos {
        let rec = Record::Memo {
            region: m.region,
            content: m.content,
            len: m.len,
            pid: std::process::id(),
        };
        put_record(&rec, &mut slot)?;
    }
    Ok((kept, end))
}
