//! What a cache file is and whether it is valid, without printing: the `ptekit cache`
//! subcommands (in the CLI crate) and the tests build on these.

use std::path::Path;

use crate::error::{CacheError, FormatError};
use crate::format::{DeadReason, SlotState, MAGIC};
use crate::store::{self, CacheFile, FileOptions};
use crate::xpwc;

/// The kind of a cache file, told by its magic bytes.
pub enum FileKind {
    /// ptekit's own `PTKWC` file.
    Ptekit,
    /// The reference runtime's `XPWC` v2 file.
    Xpwc,
    /// Neither.
    Unknown,
}

/// Reads the magic bytes of `path` (head for `PTKWC`, footer for `XPWC`).
pub fn file_kind(path: &Path) -> Result<FileKind, CacheError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(|e| CacheError::io("open", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| CacheError::io("stat", path, e))?
        .len();
    let mut head = [0u8; 8];
    let n = store::read_full_at(&f, &mut head, 0).map_err(|e| CacheError::io("read", path, e))?;
    if n == 8 && head == MAGIC {
        return Ok(FileKind::Ptekit);
    }
    if len >= xpwc::FOOTER_LEN {
        let mut m = [0u8; 4];
        if f.read_exact_at(&mut m, len - 8).is_ok() && u32::from_le_bytes(m) == xpwc::XPWC_MAGIC {
            return Ok(FileKind::Xpwc);
        }
    }
    Ok(FileKind::Unknown)
}

/// The most index bytes [`read_xpwc`] reads (an entry is its name plus 24 bytes).
const MAX_XPWC_INDEX_BYTES: u64 = 256 << 20;

/// Reads and parses an `XPWC` file with `pread` (its footer, then its index; the packed
/// data is not read). The file is not mapped: one that another process truncates
/// meanwhile gives an error, never `SIGBUS`.
pub fn read_xpwc(path: &Path) -> Result<Result<xpwc::XpwcFile, FormatError>, CacheError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| CacheError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| CacheError::io("stat", path, e))?
        .len();
    let mut footer = [0u8; xpwc::FOOTER_LEN as usize];
    let base = match len.checked_sub(xpwc::FOOTER_LEN) {
        Some(at) if file.read_exact_at(&mut footer, at).is_ok() => xpwc::tail_start(&footer, len),
        // Too short, or shrunk meanwhile: the parser explains what is missing.
        _ => len,
    };
    if len - base > MAX_XPWC_INDEX_BYTES {
        return Ok(Err(FormatError::Field {
            field: "footer.index_start",
            offset: len.saturating_sub(xpwc::FOOTER_LEN),
            reason: format!(
                "an index of {} bytes (more than {MAX_XPWC_INDEX_BYTES}) is not read",
                len - base
            ),
        }));
    }
    let mut tail = vec![0u8; usize::try_from(len - base).unwrap_or(0)];
    let got =
        store::read_full_at(&file, &mut tail, base).map_err(|e| CacheError::io("read", path, e))?;
    tail.truncate(got);
    Ok(xpwc::parse_tail(&tail, base, len))
}

/// Opens a `PTKWC` file read-only, without creating it, and reads its header and index
/// (with `pread`). A file that another process cut meanwhile is an error
/// ([`CacheFile::check_not_shrunk`]), not an index read partly from the cut file.
pub fn open_read_only(path: &Path) -> Result<CacheFile, CacheError> {
    let cf = CacheFile::open(
        path,
        &FileOptions {
            read_only: true,
            create: false,
            max_file_bytes: 0,
            ..FileOptions::default()
        },
    )?;
    cf.check_not_shrunk()?;
    Ok(cf)
}

/// Checks a file; `Ok(summary)` or `Err(reasons)`.
pub fn verify_file(path: &Path) -> Result<serde_json::Value, Vec<String>> {
    match file_kind(path) {
        Err(e) => Err(vec![e.to_string()]),
        Ok(FileKind::Unknown) => Err(vec![
            "neither a ptekit cache file nor an XPWC v2 file".into()
        ]),
        Ok(FileKind::Xpwc) => match read_xpwc(path) {
            Err(e) => Err(vec![e.to_string()]),
            Ok(Err(e)) => Err(vec![e.to_string()]),
            Ok(Ok(x)) => Ok(
                serde_json::json!({"format": "XPWC", "entries": x.entries.len(),
                "live_bytes": x.live_bytes, "dead_bytes": x.dead_bytes, "file_bytes": x.file_bytes}),
            ),
        },
        Ok(FileKind::Ptekit) => {
            let cf = open_read_only(path).map_err(|e| vec![e.to_string()])?;
            let mut reasons = Vec::new();
            for (i, st) in cf.index().slots.iter().enumerate() {
                match st {
                    SlotState::Torn(e) => reasons.push(format!("slot {i}: {e}")),
                    SlotState::Live(e) if !cf.verify_entry(e) => {
                        reasons.push(format!(
                            "slot {i}: packed bytes at {}+{} do not match their digest",
                            e.data_offset, e.data_len
                        ));
                    }
                    SlotState::Dead(
                        e,
                        r @ (DeadReason::OutOfBounds | DeadReason::Overlap { .. }),
                    ) => reasons.push(format!(
                        "slot {i}: entry at {}+{} invalid: {r}",
                        e.data_offset, e.data_len
                    )),
                    SlotState::Link {
                        offset,
                        slots,
                        valid: false,
                    } => reasons.push(format!(
                        "slot {i}: index extent at {offset} ({slots} slots) lies outside the data region or overlaps other data; not followed"
                    )),
                    SlotState::Reserve {
                        data_offset,
                        data_len,
                        ..
                    } => {
                        // A reservation claims a range inside the data region
                        // of the file (writers allocate before recording it).
                        let header = &cf.index().header;
                        let end = data_offset.checked_add(*data_len);
                        let file_len = cf.index().summary().file_bytes;
                        if *data_offset < header.data_offset
                            || *data_len == 0
                            || end.is_none_or(|e| e > file_len)
                        {
                            reasons.push(format!(
                                "slot {i}: reservation at {data_offset}+{data_len} lies outside the data region {}..{file_len}",
                                header.data_offset
                            ));
                        }
                    }
                    _ => {}
                }
            }
            // Digests that failed because the file was cut meanwhile: say so.
            if let Err(e) = cf.check_not_shrunk() {
                reasons.push(e.to_string());
            }
            if reasons.is_empty() {
                Ok(serde_json::json!({"format": "PTKWC", "summary": cf.summary()}))
            } else {
                Err(reasons)
            }
        }
    }
}
