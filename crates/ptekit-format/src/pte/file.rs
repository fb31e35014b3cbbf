//! Verified, zero-copy reading of a whole `.pte` file.

use ptekit_flatbuffers::Limits;

use crate::flat_tensor::FlatTensorFile;
use crate::program::{
    decode_program, locate, validate, DataLocation, Issue, IssueKind, KernelTypes, Program,
    TensorDataLocation,
};

use super::header::{read_u32_at, ExtendedHeader, HEADER_OFFSET};
use super::PteError;
use crate::error::{ContainerError, HeaderReason, LayoutReason};
use crate::overlap::{check_no_overlap, Span};
use crate::write::{len64, SourceRef};

/// Options of [`PteFile::parse`].
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Limits for verifying the program flatbuffer.
    pub limits: Limits,
    /// Accept segments whose byte ranges overlap (the reference never writes such files;
    /// by default they are an error).
    pub allow_overlapping_segments: bool,
}

/// One entry of `Program.segments`, resolved against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo<'a> {
    /// `offset` as stored (relative to `segment_base_offset`).
    pub offset: u64,
    /// `size` as stored.
    pub size: u64,
    /// Absolute file offset of the data (`None` for an empty segment in a file without an
    /// extended header, whose position is undefined).
    pub file_offset: Option<u64>,
    /// The segment's bytes.
    pub data: &'a [u8],
}

/// A parsed `.pte` file: the extended header, the decoded program and the resolved
/// segments, all borrowing from the input bytes.
///
/// Everything a later step relies on is checked by [`PteFile::parse`]: the header against
/// the file size, every segment inside the file (and inside `segment_data_size`), no
/// overlapping segments (unless allowed), and every reference into the segments
/// (`constant_segment`, `mutable_data_segments`, `named_data`, delegate data) in range.
#[derive(Debug, Clone)]
pub struct PteFile<'a> {
    bytes: &'a [u8],
    header: Option<ExtendedHeader>,
    inserted_block_len: u64,
    program_size: u64,
    identifier: [u8; 4],
    program: Program<'a>,
    segments: Vec<SegmentInfo<'a>>,
    source: Option<SourceRef<'a>>,
}

impl<'a> PteFile<'a> {
    /// Parses and verifies a whole `.pte` file.
    ///
    /// Without an extended header the whole input is the program flatbuffer (like the
    /// reference's `deserialize_pte_binary`); it may then have only empty segments.
    pub fn parse(bytes: &'a [u8], options: &ReadOptions) -> Result<Self, PteError> {
        let file_len = len64(bytes.len());
        let Some(identifier) = bytes.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
            return Err(PteError::TooShort { len: file_len });
        };
        let header = ExtendedHeader::parse(bytes)?;
        let program_size = header.map_or(file_len, |h| h.program_size);
        let program_bytes = usize::try_from(program_size)
            .ok()
            .and_then(|n| bytes.get(..n))
            .ok_or(PteError::Header {
                offset: 16,
                field: "program_size",
                reason: HeaderReason::PastEndOfFile {
                    value: program_size,
                    file_len,
                },
            })?;
        let program =
            decode_program(program_bytes, &options.limits).map_err(|source| PteError::Decode {
                start: 0,
                end: program_size,
                source,
            })?;
        let inserted_block_len = match &header {
            Some(h) => detect_inserted_block(program_bytes, h),
            None => 0,
        };
        let segments = resolve_segments(bytes, header.as_ref(), &program, options)
            .map_err(|e| locate_error(program_bytes, e))?;
        check_references(&program, &segments).map_err(|e| locate_error(program_bytes, e))?;
        Ok(Self {
            bytes,
            header,
            inserted_block_len,
            program_size,
            identifier,
            program,
            segments,
            source: None,
        })
    }

    /// The whole input.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The extended header, if the file has one.
    pub fn header(&self) -> Option<&ExtendedHeader> {
        self.header.as_ref()
    }

    /// Length of the block inserted after byte 8: the header plus its zero padding to
    /// `align_up(header length, max_alignment)` (0 without a header).
    ///
    /// Inferred from the bytes: the largest candidate length — the header length itself
    /// or a power of two at least as large — such that every byte between the header and
    /// the candidate end is zero and the root table lies after it. The flatbuffer the
    /// block was inserted into starts with at most `minalign - 1` zero bytes followed by a
    /// vtable or table (never starting with zero), so a longer run of zeros cannot belong
    /// to it. [`super::plan_exact`] confirms the value by re-packing.
    pub fn inserted_block_len(&self) -> u64 {
        self.inserted_block_len
    }

    /// Size of the program flatbuffer including the inserted block (`program_size` of the
    /// header, or the file size without header).
    pub fn program_size(&self) -> u64 {
        self.program_size
    }

    /// The program flatbuffer bytes as stored (with the inserted block).
    pub fn program_bytes(&self) -> &'a [u8] {
        let n = usize::try_from(self.program_size).unwrap_or(usize::MAX);
        self.bytes.get(..n).unwrap_or(self.bytes)
    }

    /// The file identifier (bytes 4..8, e.g. `ET12`).
    pub fn file_identifier(&self) -> [u8; 4] {
        self.identifier
    }

    /// The decoded program.
    pub fn program(&self) -> &Program<'a> {
        &self.program
    }

    /// Takes the decoded program.
    pub fn into_program(self) -> Program<'a> {
        self.program
    }

    /// `Program.segments`, resolved (parallel to the program's list).
    pub fn segments(&self) -> &[SegmentInfo<'a>] {
        &self.segments
    }

    /// The bytes of `Program.segments[index]`.
    pub fn segment_data(&self, index: usize) -> Option<&'a [u8]> {
        self.segments.get(index).map(|s| s.data)
    }

    /// Whether any delegate's processed data lives in a segment.
    pub fn has_segment_delegates(&self) -> bool {
        self.program
            .execution_plan
            .iter()
            .flatten()
            .flat_map(|p| p.delegates.iter().flatten())
            .any(|d| {
                d.processed
                    .is_some_and(|r| r.location == DataLocation::SEGMENT)
            })
    }

    /// End of the segment area: the larger of `segment_base_offset + segment_data_size`
    /// and the end of the last segment (the program size without a header). Bytes after
    /// it are trailing bytes that [`super::plan_exact`] keeps as they are.
    pub fn segment_area_end(&self) -> u64 {
        let mut end = self.program_size;
        if let Some(h) = &self.header {
            end = end.max(h.segment_base_offset);
            if let Some(e) = h.segment_data_end() {
                end = end.max(e);
            }
        }
        for s in &self.segments {
            if let Some(fo) = s.file_offset {
                end = end.max(fo.saturating_add(s.size));
            }
        }
        end
    }

    /// The file the bytes were mapped from, if known (set by [`super::PteMap::parse`]);
    /// writers copy pieces that borrow from it through its file descriptor.
    pub fn source(&self) -> Option<SourceRef<'a>> {
        self.source
    }

    /// Records the file `bytes` were mapped from (see [`PteFile::source`]).
    pub fn with_source(mut self, source: SourceRef<'a>) -> Self {
        self.source = Some(source);
        self
    }

    /// The semantic problems of the program ([`validate`](fn@crate::program::validate)),
    /// each with the file offset of the table or field it is about.
    pub fn validate(&self) -> Vec<Issue> {
        let program_bytes = self.program_bytes();
        let mut issues = validate(&self.program);
        for issue in &mut issues {
            issue.offset = Some(locate(program_bytes, &issue.path).unwrap_or(0));
        }
        issues
    }

    /// Everything `ptekit verify` checks of a program besides its delegate payloads:
    /// [`PteFile::parse`] did the header, flatbuffer, segments and references; this adds
    /// [`PteFile::validate`] and fails with the first issue (and how many more there are).
    pub fn verify(&self) -> Result<(), PteError> {
        let mut issues = self.validate();
        // The reader takes any `ET` + two alphanumerics (a newer schema may still be
        // read); the runtime loads only its own identifier (program.cpp, InvalidProgram).
        let id = self.file_identifier();
        if id != crate::program::pack::PROGRAM_FILE_IDENTIFIER {
            issues.insert(
                0,
                Issue {
                    kind: IssueKind::Unsupported,
                    path: "file_identifier".into(),
                    message: format!(
                        "{:?}, but the runtime loads only {:?}",
                        String::from_utf8_lossy(&id),
                        String::from_utf8_lossy(&crate::program::pack::PROGRAM_FILE_IDENTIFIER)
                    ),
                    offset: Some(4),
                },
            );
        }
        first_issue(issues)
    }

    /// Checks the program's external tensors against the `.ptd` that holds their data,
    /// as the runtime does when it loads a method with that data: every external
    /// tensor's fully qualified name is a key of the `.ptd`, whose entry has a tensor
    /// layout with the tensor's dtype, sizes and dim order. Issues carry the file offset
    /// of the program's tensor.
    pub fn verify_external(&self, ptd: &FlatTensorFile<'_>) -> Result<(), PteError> {
        let named = ptd.flat_tensor().named_data.as_deref().unwrap_or_default();
        let mut issues = Vec::new();
        for (p, plan) in self.program.execution_plan.iter().flatten().enumerate() {
            for (v, value) in plan.values.iter().flatten().enumerate() {
                let Some(KernelTypes::Tensor(t)) = &value.val else {
                    continue;
                };
                let Some(x) = &t.extra_tensor_info else {
                    continue;
                };
                if x.location != TensorDataLocation::EXTERNAL {
                    continue;
                }
                let path = format!("execution_plan[{p}].values[{v}].val.Tensor");
                let Some(fqn) = x.fully_qualified_name.as_deref() else {
                    continue; // validate reports it
                };
                let mut issue = |field: &str, kind, message: String| {
                    issues.push(Issue {
                        kind,
                        path: format!("{path}.{field}"),
                        message,
                        offset: None,
                    });
                };
                let Some(entry) = named.iter().find(|n| n.key.as_deref() == Some(fqn)) else {
                    issue(
                        "extra_tensor_info.fully_qualified_name",
                        IssueKind::IndexOutOfRange,
                        format!("external tensor {fqn:?} is not in the .ptd"),
                    );
                    continue;
                };
                let Some(layout) = &entry.tensor_layout else {
                    issue(
                        "extra_tensor_info.fully_qualified_name",
                        IssueKind::Inconsistent,
                        format!("the .ptd entry {fqn:?} has no tensor layout"),
                    );
                    continue;
                };
                if layout.scalar_type != t.scalar_type
                    || layout.sizes != t.sizes
                    || layout.dim_order != t.dim_order
                {
                    issue(
                        "sizes",
                        IssueKind::Inconsistent,
                        format!(
                            "{} {:?} (dim order {:?}), but the .ptd entry {fqn:?} is {} {:?} \
                             (dim order {:?})",
                            t.scalar_type,
                            t.sizes.as_deref().unwrap_or_default(),
                            t.dim_order.as_deref().unwrap_or_default(),
                            layout.scalar_type,
                            layout.sizes.as_deref().unwrap_or_default(),
                            layout.dim_order.as_deref().unwrap_or_default()
                        ),
                    );
                }
            }
        }
        let program_bytes = self.program_bytes();
        for issue in &mut issues {
            issue.offset = Some(locate(program_bytes, &issue.path).unwrap_or(0));
        }
        first_issue(issues)
    }

    /// [`PteFile::verify`] without the issues of kind [`IssueKind::Unsupported`]: what
    /// makes the file wrong for any reader. A rewrite checks this: it may carry a layout
    /// that the 1.5.1 runtime refuses (or, with `--upgrade`, fix it), never a broken one.
    pub fn verify_consistency(&self) -> Result<(), PteError> {
        let mut issues = self.validate();
        issues.retain(|i| i.kind != IssueKind::Unsupported);
        first_issue(issues)
    }
}

fn first_issue(issues: Vec<Issue>) -> Result<(), PteError> {
    let mut issues = issues.into_iter();
    match issues.next() {
        None => Ok(()),
        Some(first) => Err(PteError::Invalid {
            more: issues.len(),
            first: Box::new(first),
        }),
    }
}

/// Gives a layout error found by the reference checks (which know the field, not where
/// it is) the file offset of that field.
fn locate_error(program_bytes: &[u8], e: PteError) -> PteError {
    match e {
        PteError::Container(ContainerError::Layout {
            offset: 0,
            field,
            reason,
        }) => {
            let offset = locate(program_bytes, &field).unwrap_or(0);
            PteError::layout(offset, field, reason)
        }
        other => other,
    }
}

fn detect_inserted_block(program_bytes: &[u8], header: &ExtendedHeader) -> u64 {
    let hlen = u64::from(header.length);
    let header_end = HEADER_OFFSET.saturating_add(hlen);
    let root = read_u32_at(program_bytes, 0).map_or(0, u64::from);
    let after = usize::try_from(header_end)
        .ok()
        .and_then(|s| program_bytes.get(s..))
        .unwrap_or(&[]);
    let zero_run = len64(after.iter().position(|&b| b != 0).unwrap_or(after.len()));
    let fits = |c: u64| {
        c.checked_sub(hlen).is_some_and(|pad| pad <= zero_run)
            && HEADER_OFFSET.checked_add(c).is_some_and(|end| end <= root)
    };
    let mut best = hlen;
    let mut candidate: u64 = 1;
    while candidate <= (1 << 40) {
        if candidate > hlen && fits(candidate) {
            best = candidate;
        }
        candidate <<= 1;
    }
    best
}

fn resolve_segments<'a>(
    bytes: &'a [u8],
    header: Option<&ExtendedHeader>,
    program: &Program<'a>,
    options: &ReadOptions,
) -> Result<Vec<SegmentInfo<'a>>, PteError> {
    let file_len = len64(bytes.len());
    let list = program.segments.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(list.len());
    for (i, seg) in list.iter().enumerate() {
        let field = || format!("segments[{i}]");
        let Some(h) = header else {
            if seg.size != 0 {
                return Err(PteError::layout(
                    0,
                    field(),
                    LayoutReason::NoHeader {
                        offset: seg.offset,
                        size: seg.size,
                    },
                ));
            }
            out.push(SegmentInfo {
                offset: seg.offset,
                size: 0,
                file_offset: None,
                data: &[],
            });
            continue;
        };
        let base = h.segment_base_offset;
        let start = base.checked_add(seg.offset).ok_or_else(|| {
            PteError::layout(
                base,
                field(),
                LayoutReason::BaseOverflow {
                    offset: seg.offset,
                    base,
                },
            )
        })?;
        let end = start.checked_add(seg.size).ok_or_else(|| {
            PteError::layout(
                start,
                field(),
                LayoutReason::EndOverflow {
                    start,
                    size: seg.size,
                },
            )
        })?;
        if start > file_len {
            return Err(PteError::layout(
                start,
                format!("segments[{i}].offset"),
                LayoutReason::OffsetPastEnd {
                    offset: seg.offset,
                    file_len,
                },
            ));
        }
        if end > file_len {
            return Err(PteError::layout(
                start,
                format!("segments[{i}].size"),
                LayoutReason::SizePastEnd {
                    size: seg.size,
                    start,
                    end,
                    file_len,
                },
            ));
        }
        if let Some(area_end) = h.segment_data_end() {
            if end > area_end {
                return Err(PteError::layout(
                    start,
                    field(),
                    LayoutReason::PastSegmentData {
                        end,
                        area_end,
                        base,
                        data_size: h.segment_data_size.unwrap_or(0),
                    },
                ));
            }
        }
        let data = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| PteError::layout(start, field(), LayoutReason::NotAddressable))?;
        out.push(SegmentInfo {
            offset: seg.offset,
            size: seg.size,
            file_offset: Some(start),
            data,
        });
    }
    if !options.allow_overlapping_segments {
        let spans = out.iter().enumerate().filter_map(|(index, s)| {
            let start = s.file_offset?;
            Some(Span {
                start,
                end: start.saturating_add(s.size),
                index,
            })
        });
        check_no_overlap(spans)?;
    }
    Ok(out)
}

fn check_subsegments(
    field: &str,
    segment_index: u32,
    offsets: &[u64],
    segments: &[SegmentInfo<'_>],
) -> Result<(), PteError> {
    let Some(seg) = usize::try_from(segment_index)
        .ok()
        .and_then(|i| segments.get(i))
    else {
        return Err(PteError::layout(
            0,
            format!("{field}.segment_index"),
            LayoutReason::IndexOutOfRange {
                index: u64::from(segment_index),
                what: "segments",
                count: segments.len(),
            },
        ));
    };
    let base = seg.file_offset.unwrap_or(0);
    let mut prev = 0u64;
    for (k, &off) in offsets.iter().enumerate() {
        if off > seg.size {
            return Err(PteError::layout(
                base.saturating_add(off),
                format!("{field}.offsets[{k}]"),
                LayoutReason::OffsetPastSegment {
                    offset: off,
                    segment: segment_index,
                    size: seg.size,
                },
            ));
        }
        if off < prev {
            return Err(PteError::layout(
                base.saturating_add(off),
                format!("{field}.offsets[{k}]"),
                LayoutReason::OffsetDecreasing {
                    offset: off,
                    previous: prev,
                },
            ));
        }
        prev = off;
    }
    Ok(())
}

fn check_references(program: &Program<'_>, segments: &[SegmentInfo<'_>]) -> Result<(), PteError> {
    let nseg = segments.len();
    if let Some(cs) = &program.constant_segment {
        let offsets = cs.offsets.as_deref().unwrap_or(&[]);
        if !offsets.is_empty() {
            check_subsegments("constant_segment", cs.segment_index, offsets, segments)?;
        }
    }
    for (m, ms) in program.mutable_data_segments.iter().flatten().enumerate() {
        let offsets = ms.offsets.as_deref().unwrap_or(&[]);
        check_subsegments(
            &format!("mutable_data_segments[{m}]"),
            ms.segment_index,
            offsets,
            segments,
        )?;
    }
    for (k, nd) in program.named_data.iter().flatten().enumerate() {
        if usize::try_from(nd.segment_index).map_or(true, |i| i >= nseg) {
            return Err(PteError::layout(
                0,
                format!("named_data[{k}].segment_index"),
                LayoutReason::IndexOutOfRange {
                    index: u64::from(nd.segment_index),
                    what: "segments",
                    count: nseg,
                },
            ));
        }
    }
    let ninline = program.backend_delegate_data.as_ref().map_or(0, Vec::len);
    for (p, plan) in program.execution_plan.iter().flatten().enumerate() {
        for (d, del) in plan.delegates.iter().flatten().enumerate() {
            let field = format!("execution_plan[{p}].delegates[{d}].processed");
            let Some(r) = del.processed else {
                return Err(PteError::layout(0, field, LayoutReason::Missing));
            };
            let limit = match r.location {
                DataLocation::INLINE => ninline,
                DataLocation::SEGMENT => nseg,
                other => {
                    return Err(PteError::layout(
                        0,
                        format!("{field}.location"),
                        LayoutReason::UnknownLocation(other.0),
                    ))
                }
            };
            if usize::try_from(r.index).map_or(true, |i| i >= limit) {
                let what = if r.location == DataLocation::INLINE {
                    "backend_delegate_data entries"
                } else {
                    "segments"
                };
                return Err(PteError::layout(
                    0,
                    format!("{field}.index"),
                    LayoutReason::IndexOutOfRange {
                        index: u64::from(r.index),
                        what,
                        count: limit,
                    },
                ));
            }
        }
    }
    Ok(())
}
