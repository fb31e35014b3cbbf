//! FlatTensor files (`.ptd`, file identifier `FT01`): named tensor data kept outside a
//! program, as written by the reference's `FlatTensorSerializer`
//! (`executorch.extension.flat_tensor.serialize`, executorch 1.5.1).
//!
//! # Layout
//!
//! ```text
//! 0   u32 root offset (+ inserted block)     4  "FT01"
//! 8   FH01 header: magic, u32 length (40), u64 flatbuffer_offset (48),
//!     u64 flatbuffer_size (bytes of the flatbuffer before the insertion),
//!     u64 segment_base_offset, u64 segment_data_size; zero padding to 48
//! 56  the rest of the flatbuffer (its bytes 8..)
//!     zero padding to segment_base_offset = align_up(48 + flatbuffer_size, segment_alignment)
//!     segments, each at align_up(end of previous, lcm(segment_alignment, its alignment))
//! ```
//!
//! The flatbuffer is written by `flatc --binary` from JSON, so its byte order is flatc's
//! JSON-parser order ([`ptekit_flatbuffers::flatc_order`]), not the object API's.
//!
//! # Entry points
//! - [`FlatTensorFile::parse`]: verified, zero-copy reading (header, [`FlatTensor`],
//!   segment slices, every reference checked).
//! - [`plan`]: the reference's `FlatTensorSerializer.serialize` for a [`DataPayload`],
//!   byte for byte, as a streamable [`PlannedFile`] (pieces borrowing the payload's
//!   buffers; written with [`PlannedFile::write_atomic`] without assembling the file in
//!   memory); [`serialize`] is the same assembled into a `Vec`.
//!   [`pack_flat_tensor`] / [`decode_flat_tensor`] for the flatbuffer alone.
//! - [`plan_exact`] (exact: parse, re-pack, same layout) and [`plan_relayout`] (the
//!   reference's deserialize + serialize with a new [`FlatTensorConfig`]); [`rewrite`],
//!   [`rewrite_file`] and [`relayout`] return them assembled in memory.
//! - [`summary()`](fn@summary) / [`render_summary`] for `ptekit inspect`.

mod codec;
pub mod model;
mod summary;
mod verify;

use std::borrow::Cow;

use ptekit_flatbuffers::{BuildError, Limits};

use crate::align::{align_up, lcm};
use crate::error::{ContainerError, HeaderReason, LayoutReason};
use crate::overlap::{check_no_overlap, Span};
use crate::program::DecodeError;
use crate::write::{len64, Pieces};
pub use crate::write::{Piece, PlannedFile};

pub use codec::{decode_flat_tensor, is_ft_identifier, pack_flat_tensor};
pub use model::*;
pub use summary::{
    render_summary, summary, FlatTensorSummary, NamedTensorSummary, SegmentSummary, SizeBreakdown,
};
pub use verify::{parse_verified, verify};

/// The identifier the reference writes (`file_identifier "FT01"`).
pub const FLAT_TENSOR_FILE_IDENTIFIER: [u8; 4] = *b"FT01";
/// Magic of the header inserted at byte 8.
pub const HEADER_MAGIC: [u8; 4] = *b"FH01";
/// Length of the header the reference writes.
pub const HEADER_LENGTH: u32 = 40;
/// Offset of the header in the file.
pub const HEADER_OFFSET: usize = 8;
/// The header block is padded to a multiple of this (`_FLATBUFFER_ALIGNMENT`).
pub const FLATBUFFER_ALIGNMENT: u64 = 16;
/// The schema version the reference writes (`_FLAT_TENSOR_VERSION`).
pub const FLAT_TENSOR_VERSION: u32 = 0;
/// Default of [`FlatTensorConfig::segment_alignment`].
pub const DEFAULT_SEGMENT_ALIGNMENT: u64 = 128;

/// Errors of the FlatTensor functions. Offsets are absolute file offsets.
#[derive(Debug, thiserror::Error)]
pub enum FlatTensorError {
    /// Shorter than the identifier plus header.
    #[error("file of {len} bytes is too short for a FlatTensor file (need at least {need})")]
    TooShort {
        /// File length.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// Bytes 4..8 are not `FT` plus two letters or digits.
    #[error("not a FlatTensor file: identifier {found:?} at offset 4 (expected \"FT01\")")]
    BadIdentifier {
        /// What was found.
        found: String,
    },
    /// The `FH01` header is malformed or inconsistent with the file.
    #[error("FH01 header {field} (file offset 0x{offset:x}): {reason}")]
    Header {
        /// File offset of the field.
        offset: u64,
        /// Header field name.
        field: &'static str,
        /// What is wrong.
        reason: HeaderReason,
    },
    /// The flatbuffer failed verification.
    #[error("FlatTensor flatbuffer: {0}")]
    Decode(#[from] DecodeError),
    /// Bad serializer input (alignment, buffer index).
    #[error("{field}: {message}")]
    Invalid {
        /// Field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Packing the flatbuffer failed.
    #[error("packing the FlatTensor flatbuffer: {0}")]
    Pack(#[from] BuildError),
    /// I/O, size arithmetic or layout (shared with every container): a segment or a
    /// reference to one that does not fit the file, an I/O error with the path, a write
    /// error with the output offset.
    #[error(transparent)]
    Container(#[from] ContainerError),
}

/// Whether `bytes` carries a FlatTensor identifier (`FT??`) at offset 4.
pub fn is_flat_tensor(bytes: &[u8]) -> bool {
    bytes
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .is_some_and(is_ft_identifier)
}

/// The `FH01` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatTensorHeader {
    /// Header length as stored (40; readers accept more).
    pub length: u32,
    /// Where the flatbuffer "starts" (the reference writes the padded header length, 48).
    pub flatbuffer_offset: u64,
    /// Size of the flatbuffer before the header was inserted.
    pub flatbuffer_size: u64,
    /// File offset of the first segment.
    pub segment_base_offset: u64,
    /// Bytes of segment data.
    pub segment_data_size: u64,
}

impl FlatTensorHeader {
    /// Reads the header at byte 8 (magic and minimum length checked).
    pub fn parse(bytes: &[u8]) -> Result<Self, FlatTensorError> {
        let need = HEADER_OFFSET as u64 + u64::from(HEADER_LENGTH);
        let h = bytes
            .get(HEADER_OFFSET..HEADER_OFFSET + HEADER_LENGTH as usize)
            .ok_or(FlatTensorError::TooShort {
                len: bytes.len() as u64,
                need,
            })?;
        let magic = h.get(0..4).unwrap_or(&[]);
        if magic != HEADER_MAGIC {
            return Err(FlatTensorError::Header {
                offset: HEADER_OFFSET as u64,
                field: "magic",
                reason: HeaderReason::BadMagic {
                    found: String::from_utf8_lossy(magic).into_owned(),
                },
            });
        }
        let u32_at = |o: usize| {
            h.get(o..o + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes)
        };
        let u64_at = |o: usize| {
            h.get(o..o + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let header = FlatTensorHeader {
            length: u32_at(4),
            flatbuffer_offset: u64_at(8),
            flatbuffer_size: u64_at(16),
            segment_base_offset: u64_at(24),
            segment_data_size: u64_at(32),
        };
        if header.length < HEADER_LENGTH {
            return Err(FlatTensorError::Header {
                offset: HEADER_OFFSET as u64 + 4,
                field: "length",
                reason: HeaderReason::LengthTooSmall {
                    length: header.length,
                    min: HEADER_LENGTH,
                },
            });
        }
        Ok(header)
    }

    /// The 40 header bytes (always the proper magic and length, like the reference).
    pub fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        let fields: [&[u8]; 6] = [
            &HEADER_MAGIC,
            &HEADER_LENGTH.to_le_bytes(),
            &self.flatbuffer_offset.to_le_bytes(),
            &self.flatbuffer_size.to_le_bytes(),
            &self.segment_base_offset.to_le_bytes(),
            &self.segment_data_size.to_le_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = out.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        out
    }

    /// End of the flatbuffer region: `flatbuffer_offset + flatbuffer_size`.
    pub fn flatbuffer_end(&self) -> Option<u64> {
        self.flatbuffer_offset.checked_add(self.flatbuffer_size)
    }
}

/// Options of [`FlatTensorFile::parse`].
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Verifier limits for the flatbuffer.
    pub limits: Limits,
}

/// One segment resolved against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo<'a> {
    /// Offset as stored (relative to `segment_base_offset`).
    pub offset: u64,
    /// Size as stored.
    pub size: u64,
    /// Absolute file offset of the data.
    pub file_offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// A parsed `.ptd`: header, decoded [`FlatTensor`], segments borrowing from the input.
#[derive(Debug, Clone)]
pub struct FlatTensorFile<'a> {
    bytes: &'a [u8],
    identifier: [u8; 4],
    header: FlatTensorHeader,
    flat_tensor: FlatTensor,
    segments: Vec<SegmentInfo<'a>>,
}

fn layout_err(offset: u64, field: String, reason: LayoutReason) -> FlatTensorError {
    ContainerError::layout(offset, field, reason).into()
}

impl<'a> FlatTensorFile<'a> {
    /// Parses and verifies a `.ptd`: identifier, header against the file size, the
    /// flatbuffer (verified within `bytes[..flatbuffer_offset + flatbuffer_size]`), every
    /// segment inside the segment area and the file, every `segment_index` in range.
    pub fn parse(bytes: &'a [u8], options: &ReadOptions) -> Result<Self, FlatTensorError> {
        let len = bytes.len() as u64;
        let identifier = bytes
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or(FlatTensorError::TooShort { len, need: 48 })?;
        if !is_ft_identifier(identifier) {
            return Err(FlatTensorError::BadIdentifier {
                found: identifier.escape_ascii().to_string(),
            });
        }
        let header = FlatTensorHeader::parse(bytes)?;
        let fb_end =
            header
                .flatbuffer_end()
                .filter(|e| *e <= len)
                .ok_or(FlatTensorError::Header {
                    offset: 24,
                    field: "flatbuffer_size",
                    reason: HeaderReason::SumPastEnd {
                        first: "flatbuffer_offset",
                        first_value: header.flatbuffer_offset,
                        second: "flatbuffer_size",
                        second_value: header.flatbuffer_size,
                        file_len: len,
                    },
                })?;
        header
            .segment_base_offset
            .checked_add(header.segment_data_size)
            .filter(|e| *e <= len)
            .ok_or(FlatTensorError::Header {
                offset: 40,
                field: "segment_data_size",
                reason: HeaderReason::SumPastEnd {
                    first: "segment_base_offset",
                    first_value: header.segment_base_offset,
                    second: "segment_data_size",
                    second_value: header.segment_data_size,
                    file_len: len,
                },
            })?;
        if header.segment_base_offset < fb_end {
            return Err(FlatTensorError::Header {
                offset: 32,
                field: "segment_base_offset",
                reason: HeaderReason::OverlapsFlatbuffer {
                    base: header.segment_base_offset,
                    flatbuffer_end: fb_end,
                },
            });
        }
        // fb_end <= len, so it fits usize.
        let fb = bytes.get(..fb_end as usize).unwrap_or(&[]);
        let flat_tensor = decode_flat_tensor(fb, &options.limits)?;
        let mut segments = Vec::new();
        for (i, s) in flat_tensor
            .segments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let field = format!("segments[{i}]");
            let end = s.offset.checked_add(s.size);
            if !matches!(end, Some(e) if e <= header.segment_data_size) {
                return Err(layout_err(
                    header.segment_base_offset.saturating_add(s.offset),
                    field,
                    LayoutReason::ExceedsSegmentData {
                        offset: s.offset,
                        size: s.size,
                        data_size: header.segment_data_size,
                    },
                ));
            }
            // offset + size <= segment_data_size and base + data_size <= len.
            let file_offset = header.segment_base_offset.saturating_add(s.offset);
            let data = usize::try_from(file_offset)
                .ok()
                .zip(usize::try_from(s.size).ok())
                .and_then(|(o, n)| bytes.get(o..o.checked_add(n)?))
                .ok_or_else(|| {
                    layout_err(
                        file_offset,
                        format!("segments[{i}]"),
                        LayoutReason::PastEndOfFile,
                    )
                })?;
            segments.push(SegmentInfo {
                offset: s.offset,
                size: s.size,
                file_offset,
                data,
            });
        }
        let spans = segments.iter().enumerate().map(|(index, s)| Span {
            start: s.file_offset,
            end: s.file_offset.saturating_add(s.size),
            index,
        });
        check_no_overlap(spans)?;
        for (i, n) in flat_tensor
            .named_data
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if n.segment_index as usize >= segments.len() {
                return Err(layout_err(
                    header.segment_base_offset,
                    format!("named_data[{i}].segment_index"),
                    LayoutReason::SegmentIndexOutOfRange {
                        index: n.segment_index,
                        count: segments.len(),
                    },
                ));
            }
        }
        Ok(FlatTensorFile {
            bytes,
            identifier,
            header,
            flat_tensor,
            segments,
        })
    }

    /// The input bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The identifier found at offset 4.
    pub fn file_identifier(&self) -> [u8; 4] {
        self.identifier
    }

    /// The `FH01` header.
    pub fn header(&self) -> &FlatTensorHeader {
        &self.header
    }

    /// The decoded flatbuffer.
    pub fn flat_tensor(&self) -> &FlatTensor {
        &self.flat_tensor
    }

    /// The resolved segments, in `FlatTensor.segments` order.
    pub fn segments(&self) -> &[SegmentInfo<'a>] {
        &self.segments
    }

    /// The data of a named entry (its whole segment).
    pub fn named(&self, key: &str) -> Option<(&NamedData, &'a [u8])> {
        let n = self
            .flat_tensor
            .named_data
            .as_deref()?
            .iter()
            .find(|n| n.key.as_deref() == Some(key))?;
        let seg = self.segments.get(n.segment_index as usize)?;
        Some((n, seg.data))
    }

    /// What the reference's `FlatTensorSerializer.deserialize` returns: one buffer per
    /// segment and one entry per named data (alignment 1: the file does not record it).
    pub fn to_payload(&self) -> DataPayload<'a> {
        DataPayload {
            buffers: self
                .segments
                .iter()
                .map(|s| Cow::Borrowed(s.data))
                .collect(),
            named_data: self
                .flat_tensor
                .named_data
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|n| DataEntry {
                    key: n.key.clone().unwrap_or_default(),
                    buffer_index: n.segment_index as usize,
                    alignment: 1,
                    tensor_layout: n.tensor_layout.clone(),
                })
                .collect(),
        }
    }
}

/// The serializer's input (the reference's `DataPayload`): buffers, and named entries
/// pointing at them (several keys may share a buffer).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataPayload<'a> {
    /// The blobs.
    pub buffers: Vec<Cow<'a, [u8]>>,
    /// The named entries, in insertion order (the order of the Python dict).
    pub named_data: Vec<DataEntry>,
}

/// One named entry of a [`DataPayload`] (the reference's `DataEntry` plus its key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataEntry {
    /// The key.
    pub key: String,
    /// Index into [`DataPayload::buffers`].
    pub buffer_index: usize,
    /// Required alignment of the data (0 is treated as 1, like the reference).
    pub alignment: u64,
    /// Tensor layout, if the blob is a tensor.
    pub tensor_layout: Option<TensorLayout>,
}

/// The reference's `FlatTensorConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatTensorConfig {
    /// Alignment of the segment base and of every segment (default 128).
    pub segment_alignment: u64,
}

impl Default for FlatTensorConfig {
    fn default() -> Self {
        FlatTensorConfig {
            segment_alignment: DEFAULT_SEGMENT_ALIGNMENT,
        }
    }
}

fn too_large(what: &str) -> FlatTensorError {
    FlatTensorError::Invalid {
        field: what.to_owned(),
        message: "offset arithmetic overflows".into(),
    }
}

/// Plans a file: the flatbuffer `fb` (without header) with the `FH01` header inserted,
/// zero padding to `segment_base_offset`, then each segment at its offset (relative to
/// `segment_base_offset`, in increasing order) with zero padding between them and up to
/// `segment_base_offset + segment_data_size`.
fn assemble<'a>(
    fb: Vec<u8>,
    segment_base_offset: u64,
    segments: Vec<(u64, Piece<'a>)>,
    segment_data_size: u64,
) -> Result<PlannedFile<'a>, FlatTensorError> {
    let padded_header = align_up(u64::from(HEADER_LENGTH), FLATBUFFER_ALIGNMENT).unwrap_or(48);
    let (Some(root), Some(ident)) = (fb.get(0..4), fb.get(4..8)) else {
        return Err(FlatTensorError::Invalid {
            field: "flatbuffer".into(),
            message: format!("{} bytes is too short to insert a header", fb.len()),
        });
    };
    let root = u32::from_le_bytes(root.try_into().unwrap_or([0; 4]));
    let new_root = u32::try_from(padded_header)
        .ok()
        .and_then(|p| root.checked_add(p))
        .ok_or_else(|| too_large("root offset"))?;
    let fb_len = len64(fb.len());
    let header = FlatTensorHeader {
        length: HEADER_LENGTH,
        flatbuffer_offset: padded_header,
        flatbuffer_size: fb_len,
        segment_base_offset,
        segment_data_size,
    };
    let fb_end = padded_header
        .checked_add(fb_len)
        .ok_or_else(|| too_large("flatbuffer"))?;
    if fb_end > segment_base_offset {
        return Err(FlatTensorError::Invalid {
            field: "segment_base_offset".into(),
            message: format!(
                "{segment_base_offset} is before the end of the re-packed flatbuffer ({fb_end})"
            ),
        });
    }
    let total = segment_base_offset
        .checked_add(segment_data_size)
        .ok_or_else(|| too_large("file size"))?;
    let encoded = header.encode();
    let mut out = Pieces::default();
    let mut head = Vec::with_capacity(8);
    head.extend_from_slice(&new_root.to_le_bytes());
    head.extend_from_slice(ident);
    out.push(Piece::Owned(head))?;
    out.push(Piece::Owned(encoded.to_vec()))?;
    out.push(Piece::Zeros(
        padded_header.saturating_sub(len64(encoded.len())),
    ))?;
    out.push(Piece::Flatbuffer(8..fb.len()))?;
    out.push(Piece::Zeros(segment_base_offset - fb_end))?;
    let mut cursor = segment_base_offset;
    for (i, (offset, data)) in segments.into_iter().enumerate() {
        let at = segment_base_offset
            .checked_add(offset)
            .filter(|a| *a >= cursor)
            .ok_or_else(|| FlatTensorError::Invalid {
                field: format!("segments[{i}]"),
                message: "segments overlap or are not in offset order".into(),
            })?;
        out.push(Piece::Zeros(at - cursor))?;
        cursor = at
            .checked_add(data.len())
            .ok_or_else(|| too_large("segments"))?;
        out.push(data)?;
    }
    if cursor > total {
        return Err(FlatTensorError::Invalid {
            field: "segment_data_size".into(),
            message: "segments extend past segment_data_size".into(),
        });
    }
    out.push(Piece::Zeros(total - cursor))?;
    Ok(PlannedFile::from_pieces(fb, out))
}

/// The piece of a payload buffer: borrowed buffers are referenced, owned ones copied.
fn buffer_piece<'a>(buffer: Option<&Cow<'a, [u8]>>) -> Piece<'a> {
    match buffer {
        Some(Cow::Borrowed(b)) => Piece::Bytes(b),
        Some(Cow::Owned(v)) => Piece::Owned(v.clone()),
        None => Piece::Bytes(&[]),
    }
}

/// Plans the file the reference's `FlatTensorSerializer(config).serialize(payload)`
/// writes, byte for byte: one segment per distinct buffer in first-use order, each at
/// `align_up(end of previous, lcm(segment_alignment, entry alignment))`, the flatbuffer
/// packed in flatc's order, the `FH01` header, the segment base at
/// `align_up(48 + flatbuffer size, segment_alignment)`.
///
/// Nothing is assembled: the returned [`PlannedFile`] references the borrowed buffers of
/// `payload` ([`Piece::Bytes`]; owned buffers are copied into [`Piece::Owned`]) and is
/// streamed with [`PlannedFile::write_atomic`] / [`PlannedFile::write_to`].
pub fn plan<'a>(
    payload: &DataPayload<'a>,
    config: &FlatTensorConfig,
) -> Result<PlannedFile<'a>, FlatTensorError> {
    if config.segment_alignment == 0 {
        return Err(FlatTensorError::Invalid {
            field: "segment_alignment".into(),
            message: "must be positive".into(),
        });
    }
    // _extract_named_data: buffer index -> segment index, in first-use order.
    let mut seg_of_buffer: Vec<Option<u32>> = vec![None; payload.buffers.len()];
    let mut seg_list: Vec<(Piece<'a>, u64)> = Vec::new();
    let mut named = Vec::with_capacity(payload.named_data.len());
    for (i, e) in payload.named_data.iter().enumerate() {
        let slot =
            seg_of_buffer
                .get_mut(e.buffer_index)
                .ok_or_else(|| FlatTensorError::Invalid {
                    field: format!("named_data[{i}].buffer_index"),
                    message: format!(
                        "{} out of range ({} buffers)",
                        e.buffer_index,
                        payload.buffers.len()
                    ),
                })?;
        let seg = match *slot {
            Some(s) => s,
            None => {
                let s = u32::try_from(seg_list.len()).map_err(|_| too_large("segments"))?;
                *slot = Some(s);
                let data = buffer_piece(payload.buffers.get(e.buffer_index));
                seg_list.push((data, if e.alignment == 0 { 1 } else { e.alignment }));
                s
            }
        };
        named.push(NamedData {
            key: Some(e.key.clone()),
            segment_index: seg,
            tensor_layout: e.tensor_layout.clone(),
        });
    }
    let mut segments = Vec::with_capacity(seg_list.len());
    let mut placed = Vec::with_capacity(seg_list.len());
    let mut end = 0u64;
    for (data, alignment) in seg_list {
        let a = lcm(config.segment_alignment, alignment).map_err(|_| too_large("alignment"))?;
        let offset = align_up(end, a).map_err(|_| too_large("segments"))?;
        let size = data.len();
        end = offset
            .checked_add(size)
            .ok_or_else(|| too_large("segments"))?;
        segments.push(DataSegment { offset, size });
        placed.push((offset, data));
    }
    let ft = FlatTensor {
        version: FLAT_TENSOR_VERSION,
        segments: Some(segments),
        named_data: Some(named),
    };
    let fb = pack_flat_tensor(&ft)?;
    let padded_header = align_up(u64::from(HEADER_LENGTH), FLATBUFFER_ALIGNMENT).unwrap_or(48);
    let base = len64(fb.len())
        .checked_add(padded_header)
        .and_then(|x| align_up(x, config.segment_alignment).ok())
        .ok_or_else(|| too_large("segment_base_offset"))?;
    assemble(fb, base, placed, end)
}

/// [`plan`] assembled in memory (for small files and tests; large files should be
/// streamed from the plan).
pub fn serialize(
    payload: &DataPayload<'_>,
    config: &FlatTensorConfig,
) -> Result<Vec<u8>, FlatTensorError> {
    Ok(plan(payload, config)?.to_vec()?)
}

/// Exact rewrite: parses `ptd`, re-packs its flatbuffer from the model and writes the
/// same header values and segment offsets, with zero padding. Byte-identical for every
/// file the reference writes. Assembled in memory; see [`plan_exact`].
pub fn rewrite(ptd: &[u8], options: &ReadOptions) -> Result<Vec<u8>, FlatTensorError> {
    let file = FlatTensorFile::parse(ptd, options)?;
    rewrite_file(&file)
}

/// Plans the exact rewrite of a parsed file (see [`rewrite`]): the re-packed flatbuffer,
/// the file's header values and segment offsets, the segment data borrowed from the
/// file ([`Piece::Bytes`]). Attach the input's [`SourceRef`](crate::write::SourceRef)
/// with [`PlannedFile::with_source`] to have the segments copied file-to-file.
pub fn plan_exact<'a>(file: &FlatTensorFile<'a>) -> Result<PlannedFile<'a>, FlatTensorError> {
    let fb = pack_flat_tensor(file.flat_tensor())?;
    let mut segs: Vec<(u64, &'a [u8])> =
        file.segments().iter().map(|s| (s.offset, s.data)).collect();
    segs.sort_by_key(|(o, d)| (*o, d.len()));
    segs.dedup_by_key(|(o, d)| (*o, d.len()));
    let h = file.header();
    let segs = segs
        .into_iter()
        .map(|(o, d)| (o, Piece::Bytes(d)))
        .collect();
    assemble(fb, h.segment_base_offset, segs, h.segment_data_size)
}

/// [`rewrite`] for an already parsed file ([`plan_exact`] assembled in memory).
pub fn rewrite_file(file: &FlatTensorFile<'_>) -> Result<Vec<u8>, FlatTensorError> {
    Ok(plan_exact(file)?.to_vec()?)
}

/// Plans a parsed file re-serialized the way the reference would after `deserialize`:
/// [`FlatTensorFile::to_payload`] then [`plan`] with `config`. The segment data is
/// borrowed from the file.
pub fn plan_relayout<'a>(
    file: &FlatTensorFile<'a>,
    config: &FlatTensorConfig,
) -> Result<PlannedFile<'a>, FlatTensorError> {
    plan(&file.to_payload(), config)
}

/// [`plan_relayout`] assembled in memory.
pub fn relayout(
    file: &FlatTensorFile<'_>,
    config: &FlatTensorConfig,
) -> Result<Vec<u8>, FlatTensorError> {
    Ok(plan_relayout(file, config)?.to_vec()?)
}
