//! Exact rewrites (re-pack the parsed program, keep the layout) and relayouts.

use std::collections::HashMap;

use crate::program::{pack_program, PackOptions};

use super::file::PteFile;
use super::header::HEADER_OFFSET;
use super::plan::{plan, program_pieces, Piece, PlannedPte, SerializeOptions};
use super::restore::restore;
use super::PteError;
use crate::align::align_up;
use crate::error::LayoutReason;
use crate::write::{len64, offset_within, Pieces, PlannedFile};

/// Largest alignment considered when inferring (`program::pack::MAX_ALIGNMENT`).
const MAX_ALIGNMENT_LOG2: u32 = 30;

/// How one of the two pack alignments is constrained by the file.
#[derive(Debug, Clone, Copy)]
enum Constraint {
    /// No aligned vector of this kind: the value does not change the flatbuffer.
    Free,
    /// Largest power of two dividing every data position (and the flatbuffer size).
    UpTo(u32),
}

/// Largest `k <= MAX_ALIGNMENT_LOG2` with `2^k` dividing every value.
fn common_pow2(values: impl Iterator<Item = u64>) -> u32 {
    values
        .map(|v| {
            if v == 0 {
                MAX_ALIGNMENT_LOG2
            } else {
                v.trailing_zeros()
            }
        })
        .fold(MAX_ALIGNMENT_LOG2, u32::min)
}

/// The inputs of the inference: the file's program bytes, split into the inserted block
/// and the flatbuffer it was inserted into.
struct Original<'a> {
    bytes: &'a [u8],
    block: u64,
    has_header: bool,
}

impl Original<'_> {
    /// Position of a vector's data inside the original flatbuffer.
    fn fb_position(&self, data: &[u8]) -> Option<u64> {
        let p = len64(offset_within(self.bytes, data)?);
        if !self.has_header {
            return Some(p);
        }
        if p >= HEADER_OFFSET.checked_add(self.block)? {
            p.checked_sub(self.block)
        } else {
            None
        }
    }

    /// Length of the original flatbuffer (known only with a header).
    fn fb_len(&self) -> Option<u64> {
        if self.has_header {
            len64(self.bytes.len()).checked_sub(self.block)
        } else {
            None
        }
    }

    /// `None` when `packed` is the original flatbuffer, else the first differing file
    /// offset.
    fn first_difference(&self, packed: &[u8]) -> Option<u64> {
        let block = usize::try_from(self.block).unwrap_or(usize::MAX);
        let mut expected_root = self.bytes.get(0..4).map(|r| {
            let r = u32::from_le_bytes(r.try_into().unwrap_or([0; 4]));
            u64::from(r).wrapping_sub(self.block).to_le_bytes()
        });
        let file_at = |fb_pos: usize| -> u64 {
            let p = len64(fb_pos);
            if fb_pos >= 8 && self.has_header {
                p.saturating_add(self.block)
            } else {
                p
            }
        };
        let original_len = if self.has_header {
            self.bytes.len().saturating_sub(block)
        } else {
            self.bytes.len()
        };
        for (i, &b) in packed.iter().enumerate() {
            let want = if i < 4 {
                expected_root.as_mut().and_then(|r| r.get(i).copied())
            } else if i < 8 || !self.has_header {
                self.bytes.get(i).copied()
            } else {
                i.checked_add(block)
                    .and_then(|j| self.bytes.get(j).copied())
            };
            if want != Some(b) {
                return Some(file_at(i));
            }
        }
        // With a header the flatbuffer must end exactly at program_size; without one the
        // rest of the file is trailing bytes.
        if self.has_header && packed.len() != original_len {
            return Some(file_at(packed.len()));
        }
        None
    }
}

/// Finds pack alignments that reproduce the file's program bytes; returns them with the
/// packed flatbuffer.
fn reproduce(file: &PteFile<'_>) -> Result<(PackOptions, Vec<u8>), PteError> {
    let program = file.program();
    let orig = Original {
        bytes: file.program_bytes(),
        block: file.inserted_block_len(),
        has_header: file.header().is_some(),
    };
    let header_len = file.header().map(|h| u64::from(h.length));

    let constraint = |positions: Vec<Option<u64>>| -> Constraint {
        if positions.is_empty() {
            return Constraint::Free;
        }
        let known = positions.iter().flatten().copied().chain(orig.fb_len());
        Constraint::UpTo(common_pow2(known))
    };
    let tensor = constraint(
        program
            .constant_buffer
            .iter()
            .flatten()
            .filter_map(|b| b.storage.as_deref())
            .map(|s| orig.fb_position(s))
            .collect(),
    );
    let delegate = constraint(
        program
            .backend_delegate_data
            .iter()
            .flatten()
            .filter_map(|d| d.data.as_deref())
            .map(|s| orig.fb_position(s))
            .collect(),
    );

    let allowed = |c: Constraint| -> Vec<u32> {
        match c {
            Constraint::Free => (0..=MAX_ALIGNMENT_LOG2).collect(),
            Constraint::UpTo(k) => (0..=k).collect(),
        }
    };
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for t in allowed(tensor) {
        for d in allowed(delegate) {
            let (t, d) = (1usize << t, 1usize << d);
            if let Some(hlen) = header_len {
                let block = align_up(hlen, len64(t.max(d)))?;
                if block != orig.block {
                    continue;
                }
            }
            pairs.push((t, d));
        }
    }
    // Preference: the defaults (16), then larger values first (tensor before delegate).
    pairs.sort_by_key(|&(t, d)| {
        (
            u8::from(t != 16) + u8::from(d != 16),
            std::cmp::Reverse(t),
            std::cmp::Reverse(d),
        )
    });

    // A free alignment does not change the packed bytes: pack once per constrained key.
    let key = |t: usize, d: usize| {
        (
            matches!(tensor, Constraint::UpTo(_)).then_some(t),
            matches!(delegate, Constraint::UpTo(_)).then_some(d),
        )
    };
    let mut tried: HashMap<(Option<usize>, Option<usize>), Option<u64>> = HashMap::new();
    let mut first_failure: Option<(PackOptions, u64, usize)> = None;
    for &(t, d) in &pairs {
        let k = key(t, d);
        if tried.contains_key(&k) {
            continue;
        }
        let options = PackOptions {
            tensor_alignment: t,
            delegate_alignment: d,
        };
        let packed = pack_program(program, &options)?;
        match orig.first_difference(&packed) {
            None => return Ok((options, packed)),
            Some(at) => {
                tried.insert(k, Some(at));
                if first_failure.is_none() {
                    first_failure = Some((options, at, packed.len()));
                }
            }
        }
    }
    let detail = match first_failure {
        Some((o, _, len)) => {
            let file = match orig.fb_len() {
                Some(n) => format!(
                    "the file's flatbuffer is {n} bytes after an inserted block of {}",
                    orig.block
                ),
                None => format!(
                    "the file's flatbuffer (no extended header) is {} bytes",
                    orig.bytes.len()
                ),
            };
            format!(
                "tried {} alignment combination(s) consistent with the file; preferred tensor \
                 {} / delegate {} packs to {len} bytes, {file}",
                tried.len(),
                o.tensor_alignment,
                o.delegate_alignment,
            )
        }
        None => format!(
            "no power-of-two alignments give an inserted block of {} bytes",
            orig.block
        ),
    };
    Err(PteError::NotReproducible {
        offset: first_failure.map_or(HEADER_OFFSET, |f| f.1),
        detail,
    })
}

/// Infers the pack alignments (tensor, delegate) the file was written with, confirmed by
/// re-packing.
///
/// Rule: a `[ubyte] (force_align: N)` vector's data starts at a multiple of `N` in the
/// original flatbuffer (the file minus the inserted block; the block is itself a multiple
/// of the largest alignment, so positions in the file are aligned too), and the
/// flatbuffer's size is a multiple of its largest alignment. So the tensor alignment is a
/// power of two dividing the flatbuffer size and the data position of every inline
/// `Buffer.storage` (empty ones too: an empty vector's length prefix is aligned the same
/// way); the delegate alignment likewise for `BackendDelegateInlineData.data`.
/// With a header, `align_up(header length, max(tensor, delegate))` must equal the
/// inserted block length. Candidate pairs are tried preferring the default 16, then
/// larger values; the first whose packing reproduces the program bytes exactly wins. An
/// alignment with no vector of its kind does not change the flatbuffer, only the block
/// length, and is resolved by that alone (so the answer for it is one of several
/// equivalent ones).
pub fn infer_pack_options(file: &PteFile<'_>) -> Result<PackOptions, PteError> {
    reproduce(file).map(|(options, _)| options)
}

/// Re-packs the parsed program and re-emits the file's layout exactly: the same header
/// (length 24 or 32, same fields), the same inserted block length, zero padding up to
/// `segment_base_offset`, every segment at its offset (zero padding between segments and
/// up to `segment_base_offset + segment_data_size`), and any trailing bytes after the
/// segment area as they are. A file without a header is the re-packed flatbuffer plus
/// any trailing bytes.
///
/// The pack alignments are inferred ([`infer_pack_options`]); when no candidate
/// reproduces the program bytes exactly the result is [`PteError::NotReproducible`]
/// (e.g. a file written by another flatbuffers version). Padding that was not zero in
/// the input comes out as zeros, so only such a file does not round-trip byte for byte.
pub fn plan_exact<'a>(file: &PteFile<'a>) -> Result<PlannedPte<'a>, PteError> {
    let (pack_options, flatbuffer) = reproduce(file)?;
    let bytes = file.bytes();
    let slice = |from: u64, to: u64| -> Result<&'a [u8], PteError> {
        usize::try_from(from)
            .ok()
            .zip(usize::try_from(to).ok())
            .and_then(|(f, t)| bytes.get(f..t))
            .ok_or_else(|| {
                PteError::layout(from, "file", LayoutReason::RangeOutsideFile { from, to })
            })
    };
    let file_len = len64(bytes.len());
    let (mut out, cursor) = match file.header() {
        None => {
            let out = program_pieces(&flatbuffer, None)?;
            (out, len64(flatbuffer.len()))
        }
        Some(h) => {
            let mut out: Pieces<'a> =
                program_pieces(&flatbuffer, Some((h, file.inserted_block_len())))?;
            out.push(Piece::Zeros(
                h.segment_base_offset.saturating_sub(h.program_size),
            ))?;
            let mut cursor = h.segment_base_offset;
            let mut ranges: Vec<(u64, u64)> = file
                .segments()
                .iter()
                .filter_map(|s| {
                    s.file_offset
                        .filter(|_| s.size > 0)
                        .map(|o| (o, o.saturating_add(s.size)))
                })
                .collect();
            ranges.sort_unstable();
            for (start, end) in ranges {
                if end <= cursor {
                    continue;
                }
                let from = start.max(cursor);
                out.push(Piece::Zeros(from - cursor))?;
                out.push(Piece::Bytes(slice(from, end)?))?;
                cursor = end;
            }
            let area_end = file.segment_area_end();
            out.push(Piece::Zeros(area_end.saturating_sub(cursor)))?;
            (out, cursor.max(area_end))
        }
    };
    if cursor < file_len {
        out.push(Piece::Bytes(slice(cursor, file_len)?))?;
    }
    Ok(PlannedPte {
        file: PlannedFile::from_pieces(flatbuffer, out).with_source(file.source()),
        header: file.header().copied(),
        pack_options,
    })
}

/// Restores the file ([`restore`]) and plans it with new options ([`plan`]): the
/// reference's `serialize_pte_binary(deserialize_pte_binary(file), **options)`, except
/// that delegate segments stay segments.
///
/// If any delegate's data is in a segment, `extract_delegate_segments` is forced on:
/// restoring moves every delegate blob inline, and re-serializing with the reference's
/// default (`false`) would silently move all of them into the flatbuffer — a different
/// file structure (blobs no longer mappable, the 2 GiB flatbuffer limit within reach)
/// than the one being re-laid out. With it on, such a file re-serializes to itself under
/// the options it was written with. A file whose delegate blobs are inline keeps
/// `options.extract_delegate_segments`.
///
/// This also upgrades legacy layouts: inline `constant_buffer` (no header) and 24-byte
/// headers come out with a constant segment and a 32-byte header, as from the reference.
pub fn relayout<'a>(
    file: &PteFile<'a>,
    options: &SerializeOptions,
) -> Result<PlannedPte<'a>, PteError> {
    let model = restore(file)?;
    let mut options = *options;
    if file.has_segment_delegates() {
        options.extract_delegate_segments = true;
    }
    Ok(plan(&model, &options)?.with_source(file.source()))
}

/// How [`plan_rewrite`] lays out its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteLayout {
    /// Byte for byte the input's layout ([`plan_exact`]).
    Exact,
    /// The input's program bytes are not what the reference's packer makes of the program
    /// (another FlatBuffers builder, other padding): the canonical layout, what the
    /// reference writes for this program ([`relayout`] with the default options).
    Canonical {
        /// Why the exact rewrite was not possible (the first differing byte).
        reason: String,
    },
}

/// `ptekit rewrite` without layout options: [`plan_exact`] when the file re-packs to its
/// own bytes, else the canonical layout ([`RewriteLayout::Canonical`], the reason kept).
/// Either way the output holds the same program, constants, delegate data and named data.
pub fn plan_rewrite<'a>(file: &PteFile<'a>) -> Result<(PlannedPte<'a>, RewriteLayout), PteError> {
    match plan_exact(file) {
        Ok(plan) => Ok((plan, RewriteLayout::Exact)),
        Err(not @ PteError::NotReproducible { .. }) => {
            let plan = relayout(file, &SerializeOptions::default())?;
            Ok((
                plan,
                RewriteLayout::Canonical {
                    reason: not.to_string(),
                },
            ))
        }
        Err(e) => Err(e),
    }
}

/// The pack alignments to keep when re-laying out a file: those that reproduce its
/// program bytes ([`infer_pack_options`]), or the reference's defaults when none do
/// (a file another builder wrote).
pub fn pack_options_to_keep(file: &PteFile<'_>) -> Result<PackOptions, PteError> {
    match infer_pack_options(file) {
        Err(PteError::NotReproducible { .. }) => Ok(PackOptions::default()),
        other => other,
    }
}
