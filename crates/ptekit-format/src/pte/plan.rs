//! Serializing a [`PteModel`] exactly like the reference's `serialize_pte_binary`, as a
//! streamable plan.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::program::{
    max_alignment, pack_program, BackendDelegateDataReference, BackendDelegateInlineData, Buffer,
    DataLocation, DataSegment, NamedData, PackOptions, Program, SubsegmentOffsets,
};

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::header::ExtendedHeader;
use super::model::{NamedDataStore, PteModel};
use super::{ModelReason, PteError};
use crate::align::{add, align_up, lcm, padding_required};
pub use crate::write::Piece;
use crate::write::{len64, Pieces, PlannedFile, Progress, SourceRef, WriteOptions};

/// The reference's default `segment_alignment`.
pub const DEFAULT_SEGMENT_ALIGNMENT: u64 = 128;

/// The reference's default tensor and delegate alignment (`exir.tensor.ALIGNMENT` and the
/// schema's `force_align`).
const DEFAULT_ALIGNMENT: usize = 16;

/// Options of [`plan`], named and defaulted like the keyword arguments of the reference's
/// `serialize_pte_binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerializeOptions {
    /// Move every non-empty inline delegate blob into a segment (identical blobs share
    /// one). Default `false` (the reference's default; `to_executorch` passes `true`).
    pub extract_delegate_segments: bool,
    /// Alignment of the segment base offset and of every segment (combined with a named
    /// blob's own alignment through their lcm). Default 128. Any positive value.
    pub segment_alignment: u64,
    /// Padding of constant-segment entries and `force_align` of inline `Buffer.storage`
    /// (power of two); `None` = 16.
    pub constant_tensor_alignment: Option<usize>,
    /// `force_align` of inline delegate data (power of two); `None` = 16.
    pub delegate_alignment: Option<usize>,
}

impl Default for SerializeOptions {
    fn default() -> Self {
        Self {
            extract_delegate_segments: false,
            segment_alignment: DEFAULT_SEGMENT_ALIGNMENT,
            constant_tensor_alignment: None,
            delegate_alignment: None,
        }
    }
}

impl SerializeOptions {
    /// The packing alignments these options select.
    pub fn pack_options(&self) -> PackOptions {
        PackOptions {
            tensor_alignment: self.constant_tensor_alignment.unwrap_or(DEFAULT_ALIGNMENT),
            delegate_alignment: self.delegate_alignment.unwrap_or(DEFAULT_ALIGNMENT),
        }
    }
}

/// A planned `.pte` file: the packed program and the ordered pieces of the output (a
/// [`PlannedFile`] plus the `.pte` specifics). The segment data is never copied into one
/// buffer; [`PlannedPte::write_atomic`] streams the pieces.
#[derive(Debug, Clone)]
pub struct PlannedPte<'a> {
    pub(crate) file: PlannedFile<'a>,
    pub(crate) header: Option<ExtendedHeader>,
    pub(crate) pack_options: PackOptions,
}

impl<'a> PlannedPte<'a> {
    /// Total output size in bytes.
    pub fn len(&self) -> u64 {
        self.file.len()
    }

    /// Whether the output is empty (never, for a valid plan).
    pub fn is_empty(&self) -> bool {
        self.file.is_empty()
    }

    /// The pieces, in output order.
    pub fn pieces(&self) -> &[Piece<'a>] {
        self.file.pieces()
    }

    /// The packed program flatbuffer, without the extended header.
    pub fn flatbuffer(&self) -> &[u8] {
        self.file.flatbuffer()
    }

    /// The extended header written, if any.
    pub fn header(&self) -> Option<&ExtendedHeader> {
        self.header.as_ref()
    }

    /// The alignments the program was packed with.
    pub fn pack_options(&self) -> PackOptions {
        self.pack_options
    }

    /// The file that [`Piece::Bytes`] pieces may borrow from (copied through its file
    /// descriptor when writing to a file).
    pub fn source(&self) -> Option<SourceRef<'a>> {
        self.file.source()
    }

    /// Sets the file the borrowed pieces come from (see [`SourceRef`]).
    pub fn with_source(mut self, source: Option<SourceRef<'a>>) -> Self {
        self.file = self.file.with_source(source);
        self
    }

    /// The container-independent plan (pieces, flatbuffer, source).
    pub fn as_file(&self) -> &PlannedFile<'a> {
        &self.file
    }

    /// Converts into the container-independent plan.
    pub fn into_file(self) -> PlannedFile<'a> {
        self.file
    }
}

impl PlannedPte<'_> {
    /// Writes the whole file to `out` from memory (borrowed pieces are read through
    /// their slices). Returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: &mut W) -> Result<u64, PteError> {
        Ok(self.file.write_to(out)?)
    }

    /// [`PlannedPte::write_to`] with a progress callback `(done, total)`.
    pub fn write_to_with_progress<W: Write>(
        &self,
        out: &mut W,
        progress: Progress<'_>,
    ) -> Result<u64, PteError> {
        Ok(self.file.write_to_with_progress(out, progress)?)
    }

    /// The whole file in memory (for tests and small files).
    pub fn to_vec(&self) -> Result<Vec<u8>, PteError> {
        Ok(self.file.to_vec()?)
    }

    /// Writes the whole file to `file` at its current position. Pieces borrowed from
    /// [`PlannedPte::source`] are copied from the source's file descriptor
    /// (`copy_file_range`), everything else from memory.
    pub fn write_to_file(&self, file: &mut File, progress: Progress<'_>) -> Result<u64, PteError> {
        Ok(self.file.write_to_file(file, progress)?)
    }

    /// Writes the file to `path` atomically (see
    /// [`PlannedFile::write_atomic`](crate::write::PlannedFile::write_atomic)): a
    /// temporary file in the same folder, the streamed pieces, `fsync` (if
    /// `options.durable`), permissions, rename, folder `fsync`. On any error before the
    /// rename the temporary file is removed and the destination is untouched; the same
    /// holds if the progress callback panics.
    pub fn write_atomic(
        &self,
        path: impl AsRef<Path>,
        options: &WriteOptions,
        progress: Progress<'_>,
    ) -> Result<u64, PteError> {
        Ok(self.file.write_atomic(path, options, progress)?)
    }
}

impl<'a> From<PlannedPte<'a>> for PlannedFile<'a> {
    fn from(p: PlannedPte<'a>) -> Self {
        p.file
    }
}

// The `Cow` is needed: a borrowed blob keeps its `'a` lifetime (no copy).
#[allow(clippy::ptr_arg)]
fn push_cow<'a>(pieces: &mut Pieces<'a>, data: &Cow<'a, [u8]>) -> Result<(), PteError> {
    match data {
        Cow::Borrowed(b) => pieces.push(Piece::Bytes(b))?,
        Cow::Owned(v) => pieces.push(Piece::Owned(v.clone()))?,
    }
    Ok(())
}

/// (length, first 32 bytes) of a delegate blob -> [(blob index, segment index)].
type FingerprintMap = HashMap<(usize, Vec<u8>), Vec<(usize, u32)>>;

/// One segment to be written, with its own alignment.
struct SegmentPlan<'a> {
    data: Pieces<'a>,
    alignment: u64,
}

fn empty() -> Cow<'static, [u8]> {
    Cow::Borrowed(&[])
}

/// The pieces of the program part: the flatbuffer with `header` inserted after byte 8 and
/// padded with zeros to `block_len` bytes (or the bare flatbuffer without a header).
pub(crate) fn program_pieces<'a>(
    flatbuffer: &[u8],
    header: Option<(&ExtendedHeader, u64)>,
) -> Result<Pieces<'a>, PteError> {
    let mut out = Pieces::default();
    let Some((header, block_len)) = header else {
        out.push(Piece::Flatbuffer(0..flatbuffer.len()))?;
        return Ok(out);
    };
    let (Some(root), Some(ident)) = (flatbuffer.get(0..4), flatbuffer.get(4..8)) else {
        return Err(PteError::model(
            "flatbuffer",
            ModelReason::FlatbufferTooShort {
                len: flatbuffer.len(),
            },
        ));
    };
    let id: [u8; 4] = ident.try_into().unwrap_or([0; 4]);
    if !crate::program::decode::is_et_identifier(id) {
        return Err(PteError::model(
            "flatbuffer",
            ModelReason::BadIdentifier(id),
        ));
    }
    let root = u32::from_le_bytes(root.try_into().unwrap_or([0; 4]));
    let new_root = u64::from(root)
        .checked_add(block_len)
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| PteError::overflow("root offset after inserting the extended header"))?;
    let encoded = header.encode();
    let pad = block_len.checked_sub(len64(encoded.len())).ok_or_else(|| {
        PteError::model(
            "extended header",
            ModelReason::BlockShorterThanHeader { block_len },
        )
    })?;
    let mut head = Vec::with_capacity(8);
    head.extend_from_slice(&new_root.to_le_bytes());
    head.extend_from_slice(ident);
    out.push(Piece::Owned(head))?;
    out.push(Piece::Owned(encoded))?;
    out.push(Piece::Zeros(pad))?;
    out.push(Piece::Flatbuffer(8..flatbuffer.len()))?;
    Ok(out)
}

/// Plans the file the reference's `serialize_pte_binary(model, **options)` writes, byte
/// for byte.
///
/// Steps (all reproduced from the reference, including its quirks):
/// 1. Constants: a non-empty `constant_buffer` becomes one segment (entries padded to the
///    tensor alignment, except the last), `constant_segment = {index, offsets}` and
///    `constant_buffer = []` — even when all entries are empty (a zero-size segment).
/// 2. Mutable data, when present and non-empty in total: one segment without padding and
///    `mutable_data_segments = [{index, offsets}]`.
/// 3. With `extract_delegate_segments`, every non-empty inline blob moves to a segment
///    (identical blobs share one); empty blobs stay inline and are renumbered in visiting
///    order (an entry referenced twice is kept twice).
/// 4. Named data: one segment per distinct buffer, in key order of first use, with that
///    key's alignment; `named_data = [{key, segment_index}]`.
/// 5. Each new segment is appended to `Program.segments` at `align_up(previous entry's
///    end, lcm(segment_alignment, alignment))` — the previous entry may be one the program
///    already had — while the data is padded by the same rule relative to the data
///    written so far.
/// 6. When the segment data is empty the program is written without a header; otherwise
///    a 32-byte header padded to `align_up(32, max(tensor, delegate alignment))`, zeros up
///    to `segment_base_offset = align_up(program_size, segment_alignment)`, then the data.
///
/// Borrowed model data is referenced by the pieces; owned data is copied into them.
/// Errors: `segment_alignment` zero, alignments not powers of two, the reference's
/// `ValueError`s (non-inline delegate data, delegate index out of range, unvisited
/// `backend_delegate_data` entries, program already having named data), and the 2 GiB
/// flatbuffer limit.
pub fn plan<'a>(
    model: &PteModel<'a>,
    options: &SerializeOptions,
) -> Result<PlannedPte<'a>, PteError> {
    let segment_alignment = options.segment_alignment;
    if segment_alignment == 0 {
        return Err(PteError::BadOption {
            option: "segment_alignment",
            message: "must be positive".into(),
        });
    }
    let pack = options.pack_options();
    pack.validate()?;
    let src = &model.program;
    let mut program = src.clone();
    let mut segments = NewSegments::default();
    constant_segment(
        src,
        &mut program,
        &mut segments,
        len64(pack.tensor_alignment),
    )?;
    if let Some(list) = &model.mutable_data {
        mutable_data_segment(list, &mut program, &mut segments)?;
    }
    if options.extract_delegate_segments {
        extract_delegate_segments(src, &mut program, &mut segments)?;
    }
    if let Some(store) = &model.named_data {
        named_data_segments(store, &mut program, &mut segments)?;
    }
    let segment_data = lay_out_segments(&mut program, segments, segment_alignment)?;
    assemble(&program, pack, segment_data, segment_alignment)
}

/// The segments the planner adds, in order, each with its own alignment.
#[derive(Default)]
struct NewSegments<'a> {
    list: Vec<SegmentPlan<'a>>,
}

impl<'a> NewSegments<'a> {
    /// The index the next segment will get.
    fn next_index(&self) -> Result<u32, PteError> {
        u32::try_from(self.list.len())
            .map_err(|_| PteError::model("segments", ModelReason::TooMany("segments")))
    }

    /// Appends a segment; returns its index.
    fn push(&mut self, data: Pieces<'a>, alignment: u64) -> Result<u32, PteError> {
        let index = self.next_index()?;
        self.list.push(SegmentPlan { data, alignment });
        Ok(index)
    }
}

/// Step 1: a non-empty `constant_buffer` becomes one segment (entries padded to the
/// tensor alignment, except the last).
fn constant_segment<'a>(
    src: &Program<'a>,
    program: &mut Program<'a>,
    segments: &mut NewSegments<'a>,
    tensor_alignment: u64,
) -> Result<(), PteError> {
    let Some(list) = src.constant_buffer.as_deref().filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let mut data = Pieces::default();
    let mut offsets = Vec::with_capacity(list.len());
    let mut current: u64 = 0;
    let last = list.len().saturating_sub(1);
    for (i, buffer) in list.iter().enumerate() {
        let storage = buffer.storage.as_ref();
        let len = len64(storage.map_or(0, |s| s.len()));
        let pad = padding_required(len, tensor_alignment)?;
        push_cow(&mut data, storage.unwrap_or(&empty()))?;
        if i < last {
            data.push(Piece::Zeros(pad))?;
        }
        offsets.push(current);
        current = add(current, len, || "constant segment size".into())?;
        current = add(current, pad, || "constant segment size".into())?;
    }
    program.constant_segment = Some(SubsegmentOffsets {
        segment_index: segments.push(data, 1)?,
        offsets: Some(offsets),
    });
    program.constant_buffer = Some(Vec::new());
    Ok(())
}

/// Step 2: mutable data, when non-empty in total, becomes one segment without padding.
fn mutable_data_segment<'a>(
    list: &[Buffer<'a>],
    program: &mut Program<'a>,
    segments: &mut NewSegments<'a>,
) -> Result<(), PteError> {
    let mut data = Pieces::default();
    let mut offsets = Vec::with_capacity(list.len());
    let mut current: u64 = 0;
    for buffer in list {
        let storage = buffer.storage.as_ref();
        push_cow(&mut data, storage.unwrap_or(&empty()))?;
        offsets.push(current);
        current = add(current, len64(storage.map_or(0, |s| s.len())), || {
            "mutable data segment size".into()
        })?;
    }
    if data.len > 0 {
        program.mutable_data_segments = Some(vec![SubsegmentOffsets {
            segment_index: segments.push(data, 1)?,
            offsets: Some(offsets),
        }]);
    }
    Ok(())
}

/// Step 3: every non-empty inline delegate blob moves to a segment (identical blobs share
/// one); empty blobs stay inline, renumbered in visiting order.
fn extract_delegate_segments<'a>(
    src: &Program<'a>,
    program: &mut Program<'a>,
    segments: &mut NewSegments<'a>,
) -> Result<(), PteError> {
    let inline_src = src.backend_delegate_data.as_deref().unwrap_or(&[]);
    let mut seen = vec![false; inline_src.len()];
    let mut remaining = Vec::new();
    let mut by_fingerprint: FingerprintMap = HashMap::new();
    for (p, plan) in program.execution_plan.iter_mut().flatten().enumerate() {
        for (d, del) in plan.delegates.iter_mut().flatten().enumerate() {
            let field = || format!("execution_plan[{p}].delegates[{d}].processed");
            let (idx, inline) = inline_delegate(del.processed, inline_src, field)?;
            if let Some(s) = seen.get_mut(idx) {
                *s = true;
            }
            let location = match inline.data.as_ref().filter(|d| !d.is_empty()) {
                Some(blob) => {
                    let index =
                        delegate_segment(blob, idx, inline_src, &mut by_fingerprint, segments)?;
                    BackendDelegateDataReference {
                        location: DataLocation::SEGMENT,
                        index,
                    }
                }
                None => {
                    let index = u32::try_from(remaining.len()).map_err(|_| {
                        PteError::model(field(), ModelReason::TooMany("inline entries"))
                    })?;
                    remaining.push(inline.clone());
                    BackendDelegateDataReference {
                        location: DataLocation::INLINE,
                        index,
                    }
                }
            };
            del.processed = Some(location);
        }
    }
    let unvisited: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| i)
        .collect();
    if !unvisited.is_empty() {
        return Err(PteError::model(
            "backend_delegate_data",
            ModelReason::UnhandledDelegateData {
                remaining: unvisited,
            },
        ));
    }
    if program.backend_delegate_data.is_some() {
        program.backend_delegate_data = Some(remaining);
    }
    Ok(())
}

/// The inline blob a delegate's `processed` reference names (the reference's checks:
/// present, inline, in range).
fn inline_delegate<'m, 'a>(
    processed: Option<BackendDelegateDataReference>,
    inline_src: &'m [BackendDelegateInlineData<'a>],
    field: impl Fn() -> String,
) -> Result<(usize, &'m BackendDelegateInlineData<'a>), PteError> {
    let Some(r) = processed else {
        return Err(PteError::model(field(), ModelReason::Missing));
    };
    if r.location != DataLocation::INLINE {
        return Err(PteError::model(field(), ModelReason::NotInline(r.location)));
    }
    let idx = usize::try_from(r.index).unwrap_or(usize::MAX);
    match inline_src.get(idx) {
        Some(inline) => Ok((idx, inline)),
        None => Err(PteError::model(
            field(),
            ModelReason::DelegateIndexOutOfRange {
                index: r.index,
                len: inline_src.len(),
            },
        )),
    }
}

/// The segment holding `blob` (inline entry `idx`): an earlier segment with identical
/// bytes, or a new one. (The `Cow` keeps a borrowed blob's `'a` lifetime: no copy.)
#[allow(clippy::ptr_arg)]
fn delegate_segment<'a>(
    blob: &Cow<'a, [u8]>,
    idx: usize,
    inline_src: &[BackendDelegateInlineData<'a>],
    by_fingerprint: &mut FingerprintMap,
    segments: &mut NewSegments<'a>,
) -> Result<u32, PteError> {
    let key = (blob.len(), blob.get(..32).unwrap_or(blob).to_vec());
    let bucket = by_fingerprint.entry(key).or_default();
    let existing = bucket.iter().find(|(j, _)| {
        inline_src
            .get(*j)
            .and_then(|e| e.data.as_deref())
            .is_some_and(|e| e == &blob[..])
    });
    if let Some(&(_, s)) = existing {
        return Ok(s);
    }
    let mut data = Pieces::default();
    push_cow(&mut data, blob)?;
    let s = segments.push(data, 1)?;
    bucket.push((idx, s));
    Ok(s)
}

/// Step 4: one segment per distinct named buffer, in key order of first use, with that
/// key's alignment; `named_data = [{key, segment_index}]`.
fn named_data_segments<'a>(
    store: &NamedDataStore<'a>,
    program: &mut Program<'a>,
    segments: &mut NewSegments<'a>,
) -> Result<(), PteError> {
    if program.named_data.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(PteError::model(
            "named_data",
            ModelReason::AlreadyHasNamedData,
        ));
    }
    let mut segment_of_buffer: HashMap<usize, u32> = HashMap::new();
    let mut named = Vec::with_capacity(store.pte_data.len());
    for (key, entry) in &store.pte_data {
        let segment_index = match segment_of_buffer.get(&entry.buffer_index) {
            Some(&s) => s,
            None => {
                let Some(buffer) = store.buffers.get(entry.buffer_index) else {
                    return Err(PteError::model(
                        format!("named data {}", crate::units::quoted(key)),
                        ModelReason::BufferIndexOutOfRange {
                            index: entry.buffer_index,
                            count: store.buffers.len(),
                        },
                    ));
                };
                let mut data = Pieces::default();
                push_cow(&mut data, buffer)?;
                // AlignedData(alignment or 1)
                let s = segments.push(data, entry.alignment.max(1))?;
                segment_of_buffer.insert(entry.buffer_index, s);
                s
            }
        };
        named.push(NamedData {
            key: Some(key.clone()),
            segment_index,
        });
    }
    program.named_data = Some(named);
    Ok(())
}

/// Step 5: each new segment is appended to `Program.segments` at `align_up(previous
/// entry's end, lcm(segment_alignment, alignment))`, and its data padded by the same rule
/// relative to the data written so far. Returns the segment data.
fn lay_out_segments<'a>(
    program: &mut Program<'a>,
    segments: NewSegments<'a>,
    segment_alignment: u64,
) -> Result<Pieces<'a>, PteError> {
    let mut segment_data = Pieces::default();
    for (i, seg) in segments.list.into_iter().enumerate() {
        let list = program.segments.get_or_insert_with(Vec::new);
        let prev_end = match list.last() {
            Some(s) => add(s.offset, s.size, || {
                format!("end of segments[{}]", list.len().saturating_sub(1))
            })?,
            None => 0,
        };
        let alignment = lcm(segment_alignment, seg.alignment)?;
        let offset = align_up(prev_end, alignment)?;
        list.push(DataSegment {
            offset,
            size: seg.data.len,
        });
        let pad = padding_required(segment_data.len, alignment)?;
        segment_data.push(Piece::Zeros(pad))?;
        segment_data
            .extend(seg.data)
            .map_err(|_| PteError::overflow(format!("segment data size at new segment {i}")))?;
    }
    Ok(segment_data)
}

/// Step 6: packs the program and assembles the file: without segment data the bare
/// flatbuffer; otherwise the 32-byte header padded to `align_up(32, max alignment)`, zeros
/// up to `segment_base_offset = align_up(program_size, segment_alignment)`, the data.
fn assemble<'a>(
    program: &Program<'a>,
    pack: PackOptions,
    segment_data: Pieces<'a>,
    segment_alignment: u64,
) -> Result<PlannedPte<'a>, PteError> {
    let flatbuffer = pack_program(program, &pack)?;
    if segment_data.len == 0 {
        let out = program_pieces(&flatbuffer, None)?;
        return Ok(PlannedPte {
            file: PlannedFile::from_pieces(flatbuffer, out),
            header: None,
            pack_options: pack,
        });
    }
    let block_len = align_up(32, len64(max_alignment(&pack)))?;
    let program_size = add(block_len, len64(flatbuffer.len()), || "program size".into())?;
    let segment_base_offset = align_up(program_size, segment_alignment)?;
    let header = ExtendedHeader::new(program_size, segment_base_offset, segment_data.len);
    let mut out = program_pieces(&flatbuffer, Some((&header, block_len)))?;
    out.push(Piece::Zeros(
        segment_base_offset.saturating_sub(program_size),
    ))?;
    out.extend(segment_data)?;
    Ok(PlannedPte {
        file: PlannedFile::from_pieces(flatbuffer, out),
        header: Some(header),
        pack_options: pack,
    })
}
