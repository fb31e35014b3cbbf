//! The structure-aware cache-index check shared by the `cache_records` fuzz
//! target and its regression test: a header and index slots whose checksums
//! are recomputed before parsing (so that mutations reach the header checks
//! and the record parser), applied against a file length from the input.
//!
//! Input: `file_len u64 | flags u8 | header (128 bytes) | slots (256 bytes each)`.
//! flags bit 0: keep the header checksum as given; bit 1: keep slot checksums.

use crate::format::{Header, Index, Record, HEADER_LEN, SLOT_SIZE};

/// Parses `data` as described above and checks the index invariants: the
/// allocation mark never passes the file end (a forged record must not make a
/// writer extend the file), live entries lie inside the data region and the
/// file, the live bytes fit in the file. `Err` names the broken invariant.
pub fn check_sealed_index(data: &[u8]) -> Result<(), String> {
    let Some((len_bytes, rest)) = data.split_first_chunk::<8>() else {
        return Ok(());
    };
    let Some((&flags, rest)) = rest.split_first() else {
        return Ok(());
    };
    let file_len = u64::from_le_bytes(*len_bytes) % (1 << 40);
    let mut hb = [0u8; HEADER_LEN];
    let n = rest.len().min(HEADER_LEN);
    hb[..n].copy_from_slice(&rest[..n]);
    if flags & 1 == 0 {
        Header::seal(&mut hb);
    }
    let Ok(header) = Header::decode(&hb, file_len) else {
        return Ok(());
    };
    let mut index = Index::new(header.clone(), file_len);
    let slots = rest.get(HEADER_LEN..).unwrap_or(&[]);
    for (i, chunk) in slots.chunks(SLOT_SIZE).enumerate() {
        let Ok(i) = u32::try_from(i) else { break };
        if i >= header.slot_count {
            break;
        }
        let mut slot = [0u8; SLOT_SIZE];
        slot[..chunk.len()].copy_from_slice(chunk);
        if flags & 2 == 0 {
            Record::seal(&mut slot);
        }
        let r = Record::decode(&slot, header.slot_offset(i));
        if matches!(r, Ok(None)) {
            break;
        }
        index.apply(r);
    }
    let s = index.summary();
    if index.alloc_end > file_len.max(header.data_offset) {
        return Err(format!(
            "allocation mark {} past the file end {file_len}",
            index.alloc_end
        ));
    }
    for (slot, e) in index.live() {
        let end = e.data_offset.checked_add(e.data_len);
        if e.data_offset < header.data_offset || end.is_none_or(|x| x > file_len) {
            return Err(format!("live entry in slot {slot} outside the file: {e:?}"));
        }
    }
    if s.live_bytes > file_len {
        return Err(format!(
            "{} live bytes in a file of {file_len}",
            s.live_bytes
        ));
    }
    Ok(())
}
