//! Restoring a file to the exporter's pre-serialization shape (the reference's
//! `deserialize_pte_binary`).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::program::{
    BackendDelegateDataReference, BackendDelegateInlineData, Buffer, DataLocation,
    SubsegmentOffsets,
};

use super::file::PteFile;
use super::model::{same_bytes, DataEntry, NamedDataStore, PteModel};
use super::{ModelReason, PteError};

/// Python slice semantics `data[start:end]` (clamped; empty when `start >= end`).
fn py_slice(data: &[u8], start: u64, end: u64) -> &[u8] {
    let len = data.len();
    let s = usize::try_from(start).map_or(len, |s| s.min(len));
    let e = usize::try_from(end).map_or(len, |e| e.min(len));
    data.get(s..e.max(s)).unwrap_or(&[])
}

/// The reference's `_restore_constant_segment`: entry `i` spans from `offsets[i]` to
/// `offsets[i + 1]` (so it keeps the padding after it) or to the segment end.
fn split_subsegments<'a>(offsets: &[u64], data: &'a [u8]) -> Vec<Buffer<'a>> {
    let total = crate::write::len64(data.len());
    offsets
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = offsets.get(i + 1).copied().unwrap_or(total);
            Buffer {
                storage: Some(Cow::Borrowed(py_slice(data, start, end))),
            }
        })
        .collect()
}

fn segment<'a>(
    segments: &[&'a [u8]],
    index: u32,
    what: impl FnOnce() -> String,
) -> Result<&'a [u8], PteError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| segments.get(i))
        .copied()
        .ok_or_else(|| {
            PteError::model(
                what(),
                ModelReason::SegmentIndexOutOfRange {
                    index,
                    count: segments.len(),
                },
            )
        })
}

/// Restores a parsed file to the shape the exporter serialized (the reference's
/// `deserialize_pte_binary`), borrowing all data from the file.
///
/// For a file with an extended header (and a non-zero `segment_base_offset`):
/// - every delegate whose data is in a segment gets a new `backend_delegate_data` entry
///   holding the whole segment (one entry per delegate, even when delegates share a
///   segment) and an `INLINE` reference to it;
/// - `constant_segment` with offsets becomes `constant_buffer` (entry `i` runs to the next
///   offset, padding included; the last to the segment end), and `constant_segment`
///   becomes `{segment_index: 0, offsets: []}`;
/// - the mutable data segment becomes [`PteModel::mutable_data`] the same way and
///   `mutable_data_segments` becomes absent (`None`); more than one is an error;
/// - named data becomes a [`NamedDataStore`] (alignment 1, identical blobs shared);
/// - `named_data` and `segments` become empty lists.
///
/// A file without a header is returned unchanged (its `segments`, `constant_segment`
/// etc. stay as stored), with no mutable or named data.
///
/// Where the reference would crash on a missing list (`backend_delegate_data` absent but
/// needed) this creates it; a named-data entry without a key is an error.
pub fn restore<'a>(file: &PteFile<'a>) -> Result<PteModel<'a>, PteError> {
    let mut program = file.program().clone();
    let base = file.header().map_or(0, |h| h.segment_base_offset);
    if base == 0 {
        return Ok(PteModel {
            program,
            mutable_data: None,
            named_data: None,
        });
    }
    let segments: Vec<&'a [u8]> = file.segments().iter().map(|s| s.data).collect();

    // _restore_delegates
    let mut inline = program.backend_delegate_data.take();
    for (p, plan) in program.execution_plan.iter_mut().flatten().enumerate() {
        for (d, del) in plan.delegates.iter_mut().flatten().enumerate() {
            let field = || format!("execution_plan[{p}].delegates[{d}].processed");
            let Some(r) = del.processed else {
                return Err(PteError::model(field(), ModelReason::Missing));
            };
            if r.location == DataLocation::INLINE {
                continue;
            }
            if r.location != DataLocation::SEGMENT {
                return Err(PteError::model(
                    field(),
                    ModelReason::UnknownLocation(r.location.0),
                ));
            }
            let data = segment(&segments, r.index, field)?;
            let list = inline.get_or_insert_with(Vec::new);
            let index = u32::try_from(list.len()).map_err(|_| {
                PteError::model(
                    field(),
                    ModelReason::TooMany("backend_delegate_data entries"),
                )
            })?;
            list.push(BackendDelegateInlineData {
                data: Some(Cow::Borrowed(data)),
            });
            del.processed = Some(BackendDelegateDataReference {
                location: DataLocation::INLINE,
                index,
            });
        }
    }
    program.backend_delegate_data = inline;

    // _restore_constant_segment
    if let Some(cs) = program.constant_segment.as_mut() {
        let offsets = cs.offsets.as_deref().unwrap_or(&[]);
        if !offsets.is_empty() {
            let data = segment(&segments, cs.segment_index, || {
                "constant_segment.segment_index".to_string()
            })?;
            program.constant_buffer = Some(split_subsegments(offsets, data));
            *cs = SubsegmentOffsets {
                segment_index: 0,
                offsets: Some(Vec::new()),
            };
        }
    }

    // Mutable data.
    let mut mutable_data = None;
    if let Some(list) = program.mutable_data_segments.as_deref() {
        if list.len() > 1 {
            return Err(PteError::model(
                "mutable_data_segments",
                ModelReason::TooManyMutableSegments { found: list.len() },
            ));
        }
        if let Some(ms) = list.first() {
            let data = segment(&segments, ms.segment_index, || {
                "mutable_data_segments[0].segment_index".to_string()
            })?;
            mutable_data = Some(split_subsegments(
                ms.offsets.as_deref().unwrap_or(&[]),
                data,
            ));
            program.mutable_data_segments = None;
        }
    }

    // _restore_named_data
    let mut named_data = None;
    if let Some(list) = program.named_data.as_deref().filter(|l| !l.is_empty()) {
        let mut builder = StoreBuilder::default();
        for (k, nd) in list.iter().enumerate() {
            let data = segment(&segments, nd.segment_index, || {
                format!("named_data[{k}].segment_index")
            })?;
            let Some(key) = nd.key.as_deref() else {
                return Err(PteError::model(
                    format!("named_data[{k}].key"),
                    ModelReason::Missing,
                ));
            };
            builder.add(key, data, 1)?;
        }
        named_data = Some(builder.store);
    }

    program.named_data = Some(Vec::new());
    program.segments = Some(Vec::new());
    Ok(PteModel {
        program,
        mutable_data,
        named_data,
    })
}

/// [`NamedDataStore::add_named_data`] with hashed lookups (same semantics as the
/// reference's fingerprint + SHA-256 de-duplication, comparing bytes instead of digests).
#[derive(Default)]
struct StoreBuilder<'a> {
    store: NamedDataStore<'a>,
    keys: HashMap<String, usize>,
    by_fingerprint: HashMap<(usize, &'a [u8]), Vec<usize>>,
}

impl<'a> StoreBuilder<'a> {
    fn add(&mut self, key: &str, data: &'a [u8], alignment: u64) -> Result<(), PteError> {
        if let Some(&idx) = self.keys.get(key) {
            let existing = self.store.buffers.get(idx).map(|b| &b[..]);
            if existing.is_some_and(|e| same_bytes(e, data)) {
                return Ok(());
            }
            return Err(PteError::model(
                format!("named data {}", crate::units::quoted(key)),
                ModelReason::DuplicateKey {
                    existing: existing.map_or(0, <[u8]>::len),
                    new: data.len(),
                },
            ));
        }
        let prefix = data.get(..32).unwrap_or(data);
        let candidates = self.by_fingerprint.entry((data.len(), prefix)).or_default();
        let found = candidates.iter().copied().find(|&c| {
            self.store
                .buffers
                .get(c)
                .is_some_and(|b| same_bytes(b, data))
        });
        let buffer_index = match found {
            Some(i) => i,
            None => {
                let i = self.store.buffers.len();
                self.store.buffers.push(Cow::Borrowed(data));
                candidates.push(i);
                i
            }
        };
        self.keys.insert(key.to_string(), buffer_index);
        self.store.pte_data.push((
            key.to_string(),
            DataEntry {
                buffer_index,
                alignment,
            },
        ));
        Ok(())
    }
}
