//! The error every container shares: I/O on a path, writing the output, size arithmetic,
//! and layout (a segment, or a reference into the segments, that does not fit the file).
//! Each format's error wraps it with `#[from]` and displays it unchanged, so a `.pte`, a
//! `.ptd` and a `.bpte` report the same problem with the same words.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// I/O, size-arithmetic and layout errors of any container (see the module docs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// An I/O operation on a path failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation (`open`, `create temporary file in`, `rename temporary file to`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An input path names something other than a regular file (a FIFO would block the
    /// reader, a device never ends).
    #[error("open {}: {kind}, not a regular file", path.display())]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What it names.
        kind: crate::mapped::NodeKind,
    },
    /// Writing the output failed at the given output offset.
    #[error("writing output at offset 0x{offset:x}: {source}")]
    Write {
        /// Output offset where the failing write started.
        offset: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A size or offset computation would exceed 64 bits (or the address space).
    #[error("{what}: arithmetic overflow")]
    Overflow {
        /// The computation.
        what: String,
    },
    /// An alignment of zero was given.
    #[error("bad option alignment: alignment must not be zero")]
    ZeroAlignment,
    /// A segment, or a reference into the segments, does not fit the file.
    #[error("{field} (file offset 0x{offset:x}): {reason}")]
    Layout {
        /// File offset the problem is about (for a segment: where its data would start).
        offset: u64,
        /// Field path, e.g. `segments[3]` or `constant_segment.offsets[1]`.
        field: String,
        /// What is wrong, with the values involved.
        reason: LayoutReason,
    },
    /// A [`Piece::Flatbuffer`](crate::write::Piece::Flatbuffer) range lies outside the
    /// plan's flatbuffer (a planner bug, never input).
    #[error(
        "pieces[{index}]: flatbuffer range {start}..{end} outside the flatbuffer of {len} bytes"
    )]
    BadPiece {
        /// Index of the piece.
        index: usize,
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
        /// Flatbuffer length.
        len: usize,
    },
}

impl ContainerError {
    pub(crate) fn overflow(what: impl Into<String>) -> Self {
        Self::Overflow { what: what.into() }
    }

    pub(crate) fn layout(offset: u64, field: impl Into<String>, reason: LayoutReason) -> Self {
        Self::Layout {
            offset,
            field: field.into(),
            reason,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why a segment or a reference into the segments does not fit (the message is built by
/// `Display`; offsets in hex, sizes in decimal).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutReason {
    /// A non-empty segment in a file without a header (nowhere to put its data).
    NoHeader {
        /// Offset as stored.
        offset: u64,
        /// Size as stored.
        size: u64,
    },
    /// `segment_base_offset + offset` overflows.
    BaseOverflow {
        /// Offset as stored.
        offset: u64,
        /// The segment base offset.
        base: u64,
    },
    /// `start + size` overflows.
    EndOverflow {
        /// Absolute start.
        start: u64,
        /// Size as stored.
        size: u64,
    },
    /// The segment starts past the end of the file.
    OffsetPastEnd {
        /// Offset as stored.
        offset: u64,
        /// File length.
        file_len: u64,
    },
    /// The segment ends past the end of the file.
    SizePastEnd {
        /// Size as stored.
        size: u64,
        /// Absolute start.
        start: u64,
        /// Absolute end.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// The segment ends past `segment_base_offset + segment_data_size`.
    PastSegmentData {
        /// Absolute end.
        end: u64,
        /// End of the segment data area.
        area_end: u64,
        /// The segment base offset.
        base: u64,
        /// The header's segment data size.
        data_size: u64,
    },
    /// The range does not fit this platform's address space.
    NotAddressable,
    /// Two segments share bytes.
    Overlap {
        /// This segment's absolute range.
        range: (u64, u64),
        /// The other segment's index.
        other: usize,
        /// The other segment's absolute range.
        other_range: (u64, u64),
    },
    /// An index past the end of the list it indexes (`{index} >= number of {what} {count}`).
    IndexOutOfRange {
        /// The index found.
        index: u64,
        /// What is indexed (`segments`, `backend_delegate_data entries`).
        what: &'static str,
        /// The list length.
        count: usize,
    },
    /// A sub-segment offset past the end of its segment.
    OffsetPastSegment {
        /// The offset.
        offset: u64,
        /// The segment's index.
        segment: u32,
        /// The segment's size.
        size: u64,
    },
    /// Sub-segment offsets must not decrease.
    OffsetDecreasing {
        /// The offset.
        offset: u64,
        /// The previous offset.
        previous: u64,
    },
    /// A required field is absent.
    Missing,
    /// A `DataLocation` value outside the schema.
    UnknownLocation(i8),
    /// A byte range outside the file.
    RangeOutsideFile {
        /// Start.
        from: u64,
        /// End.
        to: u64,
    },
    /// A `.ptd` segment past `segment_data_size`.
    ExceedsSegmentData {
        /// Offset as stored.
        offset: u64,
        /// Size as stored.
        size: u64,
        /// The header's segment data size.
        data_size: u64,
    },
    /// Past the end of the file.
    PastEndOfFile,
    /// A `.ptd` segment index out of range.
    SegmentIndexOutOfRange {
        /// The index found.
        index: u32,
        /// The number of segments.
        count: usize,
    },
}

impl fmt::Display for LayoutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHeader { offset, size } => write!(
                f,
                "offset 0x{offset:x} size {size}: the file has no extended header, so segment \
                 data cannot be located"
            ),
            Self::BaseOverflow { offset, base } => write!(
                f,
                "offset 0x{offset:x} + segment_base_offset 0x{base:x} overflows"
            ),
            Self::EndOverflow { start, size } => {
                write!(f, "offset 0x{start:x} + size {size} overflows")
            }
            Self::OffsetPastEnd { offset, file_len } => {
                write!(f, "0x{offset:x} past end of file (size {file_len})")
            }
            Self::SizePastEnd {
                size,
                start,
                end,
                file_len,
            } => write!(
                f,
                "{size} bytes from file offset 0x{start:x} end at 0x{end:x}, past end of file \
                 (size {file_len})"
            ),
            Self::PastSegmentData {
                end,
                area_end,
                base,
                data_size,
            } => write!(
                f,
                "ends at 0x{end:x}, past the segment data end 0x{area_end:x} \
                 (segment_base_offset 0x{base:x} + segment_data_size {data_size})"
            ),
            Self::NotAddressable => f.write_str("not addressable on this platform"),
            Self::Overlap {
                range,
                other,
                other_range,
            } => write!(
                f,
                "bytes 0x{:x}..0x{:x} overlap segments[{other}] (bytes 0x{:x}..0x{:x})",
                range.0, range.1, other_range.0, other_range.1
            ),
            Self::IndexOutOfRange { index, what, count } => {
                write!(f, "{index} >= number of {what} {count}")
            }
            Self::OffsetPastSegment {
                offset,
                segment,
                size,
            } => write!(
                f,
                "0x{offset:x} past end of segments[{segment}] (size {size})"
            ),
            Self::OffsetDecreasing { offset, previous } => write!(
                f,
                "0x{offset:x} is smaller than the previous offset 0x{previous:x}"
            ),
            Self::Missing => f.write_str("missing"),
            Self::UnknownLocation(v) => write!(f, "unknown data location {v}"),
            Self::RangeOutsideFile { from, to } => {
                write!(f, "range 0x{from:x}..0x{to:x} outside the file")
            }
            Self::ExceedsSegmentData {
                offset,
                size,
                data_size,
            } => write!(
                f,
                "offset {offset} + size {size} exceeds segment_data_size {data_size}"
            ),
            Self::PastEndOfFile => f.write_str("past the end of the file"),
            Self::SegmentIndexOutOfRange { index, count } => {
                write!(f, "{index} is out of range ({count} segments)")
            }
        }
    }
}

/// Why a container header (the `.pte` `eh00` or the `.ptd` `FH01` header) is malformed or
/// inconsistent with the file (the message is built by `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderReason {
    /// The file ends inside the header.
    Truncated {
        /// File length.
        file_len: u64,
    },
    /// A header length the format does not define.
    UnsupportedLength {
        /// The length found.
        length: u32,
        /// The current length.
        expected: u32,
        /// The legacy length.
        legacy: u32,
    },
    /// `program_size` smaller than root offset, identifier and header.
    SmallerThanHeader {
        /// The value found.
        value: u64,
        /// The minimum.
        min: u64,
    },
    /// An offset past the end of the file.
    PastEndOfFile {
        /// The value found.
        value: u64,
        /// File length.
        file_len: u64,
    },
    /// `segment_base_offset` inside the program.
    InsideProgram {
        /// The segment base offset.
        base: u64,
        /// The program size.
        program_size: u64,
    },
    /// `segment_data_size` bytes from the segment base run past the end of the file.
    DataPastEnd {
        /// The segment data size.
        size: u64,
        /// The segment base offset.
        base: u64,
        /// File length.
        file_len: u64,
    },
    /// The `FH01` magic is missing.
    BadMagic {
        /// What was found (lossy UTF-8).
        found: String,
    },
    /// The `FH01` length is below the minimum.
    LengthTooSmall {
        /// The length found.
        length: u32,
        /// The minimum.
        min: u32,
    },
    /// `first + second` runs past the end of the file (`.ptd` header fields).
    SumPastEnd {
        /// Name of the first field.
        first: &'static str,
        /// Its value.
        first_value: u64,
        /// Name of the second field.
        second: &'static str,
        /// Its value.
        second_value: u64,
        /// File length.
        file_len: u64,
    },
    /// `segment_base_offset` overlaps the flatbuffer.
    OverlapsFlatbuffer {
        /// The segment base offset.
        base: u64,
        /// Where the flatbuffer ends.
        flatbuffer_end: u64,
    },
}

impl fmt::Display for HeaderReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { file_len } => {
                write!(f, "truncated: the file ends at {file_len} bytes")
            }
            Self::UnsupportedLength {
                length,
                expected,
                legacy,
            } => write!(
                f,
                "unsupported header length {length} (expected {expected} or legacy {legacy})"
            ),
            Self::SmallerThanHeader { value, min } => write!(
                f,
                "{value} (0x{value:x}) is smaller than root offset, identifier and header \
                 ({min} bytes)"
            ),
            Self::PastEndOfFile { value, file_len } => {
                write!(f, "0x{value:x} past end of file (size {file_len})")
            }
            Self::InsideProgram { base, program_size } => write!(
                f,
                "0x{base:x} lies inside the program (program_size 0x{program_size:x})"
            ),
            Self::DataPastEnd {
                size,
                base,
                file_len,
            } => write!(
                f,
                "{size} (0x{size:x}) bytes from segment_base_offset 0x{base:x} run past end of \
                 file (size {file_len})"
            ),
            Self::BadMagic { found } => write!(f, "{found:?}, expected \"FH01\""),
            Self::LengthTooSmall { length, min } => write!(f, "{length} is less than {min}"),
            Self::SumPastEnd {
                first,
                first_value,
                second,
                second_value,
                file_len,
            } => write!(
                f,
                "{first} {first_value} + {second} {second_value} is past the end of the file \
                 ({file_len} bytes)"
            ),
            Self::OverlapsFlatbuffer {
                base,
                flatbuffer_end,
            } => write!(
                f,
                "{base} overlaps the flatbuffer (which ends at {flatbuffer_end})"
            ),
        }
    }
}
