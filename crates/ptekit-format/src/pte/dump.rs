//! `ptekit dump` / `ptekit build`: a whole `.pte` file as JSON text, and back.
//!
//! The document is the program in the shape of the reference's `_program_to_json`
//! ([`crate::program::json`]: the same keys and values, so it compares equal to the
//! reference's JSON once parsed) plus one key the reference does not have,
//! `ptekit_container`, with what the file holds outside the program flatbuffer:
//!
//! ```text
//! "ptekit_container": {
//!   "tensor_alignment": 16,       // force_align of inline constant buffers (inferred)
//!   "delegate_alignment": 16,     // force_align of inline delegate data (inferred)
//!   "extended_header": {"length": 32, "segment_base_offset": 768,
//!                       "segment_data_size": 4352} | null,
//!   "segment_data": ["<hex>" | ELIDED, ...],   // one per entry of "segments"
//!   "trailing_bytes": "<hex>" | ELIDED         // after the segment area ("" if none)
//! }
//! ```
//!
//! Byte arrays longer than [`ELIDE_ABOVE`] bytes (in the program and in the container)
//! are written as an elision marker `{"ptekit_elided": {"size": N, "offset": O}}` (`N`
//! bytes at offset `O` of the dumped file) unless [`DumpOptions::with_data`] is set.
//!
//! [`build`] reads such a document back. With every byte present (a `--with-data` dump,
//! or markers resolved against the dumped file through [`DataFrom`]) an unedited dump
//! builds the original file byte for byte: the program is packed with the recorded
//! alignments, the header keeps its length, `segment_base_offset` and
//! `segment_data_size`, and segments land at their offsets with zero padding between them
//! (padding that was not zero comes out as zeros, as in [`super::plan_exact`]). After an
//! edit the layout adapts: `program_size` is always recomputed; a program grown past the
//! recorded `segment_base_offset` moves the segment area to the next multiple of the
//! largest power of two (at most 64 KiB) dividing the recorded offset; a
//! `segment_data_size` smaller than the segments grows to cover them. A document without
//! `ptekit_container` (the reference's own JSON) builds with the reference's defaults
//! (alignments 16, a 32-byte header, segments aligned to 128) when its segments are empty.

use std::borrow::Cow;
use std::io::{self, Write};

use serde_json::{Map, Value};

use super::file::PteFile;
use super::header::ExtendedHeader;
use super::plan::{program_pieces, Piece, PlannedPte, DEFAULT_SEGMENT_ALIGNMENT};
use super::PteError;
use crate::align::align_up;
use crate::json_text::J;
use crate::program::json::{
    elided, program_fields, read_program_fields, Reader, Seg, PROGRAM_KEYS,
};
use crate::program::{
    max_alignment, pack_program, DataFrom, JsonError, JsonReason, PackOptions, Program,
};
use crate::write::{len64, offset_within, Pieces, PlannedFile};

/// Byte arrays up to this length are always written out; longer ones only with
/// [`DumpOptions::with_data`].
pub const ELIDE_ABOVE: usize = 64;

/// The key of the container section.
pub const CONTAINER_KEY: &str = "ptekit_container";

/// Options of [`write_dump`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// Write every byte (byte lists in the program, hex strings for segments) instead of
    /// eliding arrays longer than [`ELIDE_ABOVE`].
    pub with_data: bool,
}

/// Writes `file` as a JSON document (see the module docs), indented, with a final newline.
///
/// The pack alignments are inferred from the file ([`super::infer_pack_options`]); for a
/// file whose program bytes no packing reproduces, the defaults (16) are written.
pub fn write_dump<'f, W: Write>(
    file: &'f PteFile<'_>,
    options: &DumpOptions,
    out: &mut W,
) -> io::Result<()> {
    let whole = file.bytes();
    let keep = |b: &[u8]| options.with_data || b.len() <= ELIDE_ABOVE;
    let bytes = |b: &'f [u8]| -> J<'f> {
        if keep(b) {
            J::Bytes(b)
        } else {
            elided(b.len(), offset_within(whole, b))
        }
    };
    let hex = |b: &'f [u8]| -> J<'f> {
        if keep(b) {
            J::Hex(b)
        } else {
            elided(b.len(), offset_within(whole, b))
        }
    };
    let program = file.program();
    let pack = super::infer_pack_options(file).unwrap_or_default();
    let trailing_from = match file.header() {
        Some(_) => Some(file.segment_area_end()),
        // Without a header the file is the flatbuffer and whatever follows it.
        None => pack_program(program, &pack).ok().map(|fb| len64(fb.len())),
    };
    let trailing = trailing_from
        .and_then(|t| usize::try_from(t).ok())
        .and_then(|t| whole.get(t..))
        .unwrap_or(&[]);
    let container = J::Obj(vec![
        ("tensor_alignment", J::Uint(len64(pack.tensor_alignment))),
        (
            "delegate_alignment",
            J::Uint(len64(pack.delegate_alignment)),
        ),
        (
            "extended_header",
            J::opt(file.header(), |h| {
                J::Obj(vec![
                    ("length", J::Uint(h.length.into())),
                    ("segment_base_offset", J::Uint(h.segment_base_offset)),
                    ("segment_data_size", J::opt(h.segment_data_size, J::Uint)),
                ])
            }),
        ),
        (
            "segment_data",
            J::Arr(file.segments().iter().map(|s| hex(s.data)).collect()),
        ),
        ("trailing_bytes", hex(trailing)),
    ]);
    let mut fields = program_fields(program, &bytes);
    fields.push((CONTAINER_KEY, container));
    J::Obj(fields).write(out)?;
    out.write_all(b"\n")
}

/// An error of [`build`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The document does not describe a program (names the JSON path).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The program cannot be packed or laid out.
    #[error(transparent)]
    Pte(#[from] PteError),
}

impl From<crate::error::ContainerError> for BuildError {
    fn from(e: crate::error::ContainerError) -> Self {
        BuildError::Pte(e.into())
    }
}

impl From<crate::program::PackError> for BuildError {
    fn from(e: crate::program::PackError) -> Self {
        BuildError::Pte(e.into())
    }
}

/// What [`build`] made of a document.
#[derive(Debug)]
pub struct Built<'d> {
    /// The program read from the document (check it with
    /// [`validate`](crate::program::validate())).
    pub program: Program<'d>,
    /// The planned file.
    pub planned: PlannedPte<'d>,
}

/// The container section, read.
struct Container<'d> {
    pack: PackOptions,
    header: Option<(u32, u64, Option<u64>)>,
    segment_data: Vec<Cow<'d, [u8]>>,
    trailing: Cow<'d, [u8]>,
}

fn power_of_two(r: &Reader<'_>, v: &Value) -> Result<usize, JsonError> {
    let n: usize = r.int(v, "usize")?;
    if n.is_power_of_two() {
        Ok(n)
    } else {
        Err(r.err(JsonReason::Layout("an alignment must be a power of two")))
    }
}

fn read_container<'d>(r: &mut Reader<'d>, v: &Value) -> Result<Container<'d>, JsonError> {
    let obj = r.object(
        v,
        &[
            "tensor_alignment",
            "delegate_alignment",
            "extended_header",
            "segment_data",
            "trailing_bytes",
        ],
    )?;
    let tensor_alignment = r.field(obj, "tensor_alignment", |r, v| power_of_two(r, v))?;
    let delegate_alignment = r.field(obj, "delegate_alignment", |r, v| power_of_two(r, v))?;
    let header = r.field(obj, "extended_header", |r, v| {
        r.opt(v, |r, v| {
            let h = r.object(v, &["length", "segment_base_offset", "segment_data_size"])?;
            let length = r.field(h, "length", |r, v| {
                let n: u32 = r.int(v, "u32")?;
                if n == ExtendedHeader::LENGTH || n == ExtendedHeader::LEGACY_LENGTH {
                    Ok(n)
                } else {
                    Err(r.err(JsonReason::Layout("the header length is 24 or 32")))
                }
            })?;
            let base = r.field(h, "segment_base_offset", |r, v| r.int::<u64>(v, "u64"))?;
            let size = r.field(h, "segment_data_size", |r, v| {
                let size = r.opt(v, |r, v| r.int::<u64>(v, "u64"))?;
                match (length, size) {
                    (ExtendedHeader::LENGTH, None) => Err(r.err(JsonReason::Layout(
                        "a 32-byte header has a segment_data_size",
                    ))),
                    (ExtendedHeader::LEGACY_LENGTH, Some(_)) => Err(r.err(JsonReason::Layout(
                        "a 24-byte header has no segment_data_size (null)",
                    ))),
                    _ => Ok(size),
                }
            })?;
            Ok((length, base, size))
        })
    })?;
    let segment_data = r
        .field(obj, "segment_data", |r, v| r.list(v, Reader::hex))?
        .unwrap_or_default();
    let trailing = r.field(obj, "trailing_bytes", Reader::hex)?;
    Ok(Container {
        pack: PackOptions {
            tensor_alignment,
            delegate_alignment,
        },
        header,
        segment_data,
        trailing,
    })
}

/// The largest power of two dividing `n`, at most 64 KiB (64 KiB for 0).
fn alignment_of(n: u64) -> u64 {
    1u64 << n.trailing_zeros().min(16)
}

/// Reads a document written by [`write_dump`] (possibly edited) and plans the `.pte`
/// file it describes (see the module docs for the layout rules). Elision markers are
/// resolved against `data` (the dumped file's bytes); without it they are an error
/// naming their path.
pub fn build<'d>(value: &Value, data: DataFrom<'d>) -> Result<Built<'d>, BuildError> {
    let mut r = Reader::new(data);
    let mut keys: Vec<&'static str> = PROGRAM_KEYS.to_vec();
    keys.push(CONTAINER_KEY);
    let obj: &Map<String, Value> = r.object(value, &keys)?;
    let program: Program<'d> = read_program_fields(&mut r, obj)?;
    let segments = program.segments.as_deref().unwrap_or(&[]);
    let mut container = match obj.get(CONTAINER_KEY) {
        Some(_) => r.field(obj, CONTAINER_KEY, read_container)?,
        None if segments.iter().all(|s| s.size == 0) => Container {
            pack: PackOptions::default(),
            header: Some((ExtendedHeader::LENGTH, 0, Some(0))),
            segment_data: segments.iter().map(|_| Cow::Borrowed(&[][..])).collect(),
            trailing: Cow::Borrowed(&[]),
        },
        None => {
            let missing = [Seg::Key(Cow::Borrowed(CONTAINER_KEY))];
            return Err(r.err_at(&missing, JsonReason::Missing).into());
        }
    };
    let at_container = |r: &mut Reader<'d>, seg: &[Seg], reason: JsonReason| -> BuildError {
        let mut path = vec![Seg::Key(Cow::Borrowed(CONTAINER_KEY))];
        path.extend_from_slice(seg);
        r.err_at(&path, reason).into()
    };
    if container.segment_data.len() != segments.len() {
        return Err(at_container(
            &mut r,
            &[Seg::Key(Cow::Borrowed("segment_data"))],
            JsonReason::SegmentCount {
                data: container.segment_data.len(),
                segments: segments.len(),
            },
        ));
    }
    for (i, (s, d)) in segments.iter().zip(&container.segment_data).enumerate() {
        if len64(d.len()) != s.size {
            return Err(at_container(
                &mut r,
                &[Seg::Key(Cow::Borrowed("segment_data")), Seg::Index(i)],
                JsonReason::SegmentSize {
                    index: i,
                    data: len64(d.len()),
                    size: s.size,
                },
            ));
        }
    }

    let flatbuffer = pack_program(&program, &container.pack)?;
    let mut out = Pieces::default();
    let header = match container.header {
        None => {
            if let Some(i) = segments.iter().position(|s| s.size > 0) {
                return Err(at_container(
                    &mut r,
                    &[Seg::Key(Cow::Borrowed("extended_header"))],
                    JsonReason::Layout(if i == 0 {
                        "segment data needs an extended header"
                    } else {
                        "segment data needs an extended header (a segment after the first is not empty)"
                    }),
                ));
            }
            out.extend(program_pieces(&flatbuffer, None)?)?;
            None
        }
        Some((length, recorded_base, recorded_size)) => {
            let block = align_up(u64::from(length), len64(max_alignment(&container.pack)))?;
            let program_size = block
                .checked_add(len64(flatbuffer.len()))
                .ok_or_else(|| PteError::overflow("program size"))?;
            let base = if recorded_base >= program_size {
                recorded_base
            } else if recorded_base == 0 {
                align_up(program_size, DEFAULT_SEGMENT_ALIGNMENT)?
            } else {
                align_up(program_size, alignment_of(recorded_base))?
            };
            // Segments in offset order, checked for overlaps.
            let mut order: Vec<usize> = (0..segments.len()).collect();
            order.sort_by_key(|&i| (segments[i].offset, segments[i].size));
            let mut used_end = 0u64;
            let mut last: Option<usize> = None;
            for &i in &order {
                let s = segments[i];
                let end = s
                    .offset
                    .checked_add(s.size)
                    .ok_or_else(|| PteError::overflow("segment end"))?;
                if let Some(prev) = last.filter(|_| s.size > 0 && s.offset < used_end) {
                    return Err(at_container(
                        &mut r,
                        &[Seg::Key(Cow::Borrowed("segment_data")), Seg::Index(i)],
                        JsonReason::SegmentOverlap { other: prev },
                    ));
                }
                if s.size > 0 {
                    used_end = end;
                    last = Some(i);
                }
            }
            let segments_end = segments
                .iter()
                .map(|s| s.offset.saturating_add(s.size))
                .max()
                .unwrap_or(0);
            let data_size = recorded_size.map(|s| s.max(segments_end));
            let h = ExtendedHeader {
                length,
                program_size,
                segment_base_offset: base,
                segment_data_size: data_size,
            };
            out.extend(program_pieces(&flatbuffer, Some((&h, block)))?)?;
            out.push(Piece::Zeros(base - program_size))?;
            let mut cursor = 0u64;
            for &i in &order {
                let s = segments[i];
                if s.size == 0 {
                    continue;
                }
                out.push(Piece::Zeros(s.offset - cursor))?;
                out.push(match std::mem::take(&mut container.segment_data[i]) {
                    Cow::Borrowed(b) => Piece::Bytes(b),
                    Cow::Owned(v) => Piece::Owned(v),
                })?;
                cursor = s.offset + s.size;
            }
            out.push(Piece::Zeros(
                data_size.unwrap_or(cursor).saturating_sub(cursor),
            ))?;
            Some(h)
        }
    };
    out.push(match container.trailing {
        Cow::Borrowed(b) => Piece::Bytes(b),
        Cow::Owned(v) => Piece::Owned(v),
    })?;
    let planned = PlannedPte {
        file: PlannedFile::from_pieces(flatbuffer, out),
        header,
        pack_options: container.pack,
    };
    Ok(Built { program, planned })
}
