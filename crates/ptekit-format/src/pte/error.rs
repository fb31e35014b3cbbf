//! Errors of the `.pte` container code.

use crate::error::{ContainerError, HeaderReason, LayoutReason};
use std::fmt;

use crate::program::{DataLocation, DecodeError, Issue, PackError};

/// Everything that can go wrong reading, restoring, planning or writing a `.pte` file.
///
/// Errors about the file name the byte offset in the file and the field (for example
/// `segments[3]` or `constant_segment.offsets[2]`) they concern.
#[derive(Debug, thiserror::Error)]
pub enum PteError {
    /// The input is shorter than the 8 bytes of root offset and file identifier.
    #[error("file of {len} bytes is too short for a program (need at least 8)")]
    TooShort {
        /// Length of the input.
        len: u64,
    },
    /// The extended header at byte 8 is malformed or inconsistent with the file.
    #[error("extended header {field} (file offset 0x{offset:x}): {reason}")]
    Header {
        /// File offset of the field.
        offset: u64,
        /// Header field name (`length`, `program_size`, ...).
        field: &'static str,
        /// What is wrong, with the values involved.
        reason: HeaderReason,
    },
    /// The program flatbuffer failed verification.
    #[error("program flatbuffer (file bytes 0x{start:x}..0x{end:x}): {source}")]
    Decode {
        /// Start of the flatbuffer region (0, or where an embedded program starts).
        start: u64,
        /// End of the flatbuffer region (`program_size` after `start`).
        end: u64,
        /// The decoder's error (absolute offset and field path).
        #[source]
        source: DecodeError,
    },
    /// The model cannot be restored or serialized (the cases where the reference raises
    /// `ValueError`, plus the ones where it would crash).
    #[error("{field}: {reason}")]
    Model {
        /// Field path in the program or model.
        field: String,
        /// What is wrong.
        reason: ModelReason,
    },
    /// Packing the program failed (bad alignment, or over the 2 GiB flatbuffer limit).
    #[error("packing the program: {0}")]
    Pack(#[from] PackError),
    /// An option value is unusable.
    #[error("bad option {option}: {message}")]
    BadOption {
        /// Option name.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// [`plan_exact`](super::plan_exact): re-packing the decoded program does not give back
    /// the file's program bytes with any alignment the file admits.
    #[error(
        "program bytes are not reproducible by re-packing: first difference at file offset \
         0x{offset:x} ({detail})"
    )]
    NotReproducible {
        /// First differing file offset for the preferred alignment candidate.
        offset: u64,
        /// Which candidates were tried, sizes.
        detail: String,
    },
    /// I/O, size arithmetic or layout (shared with every container).
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The program decoded, but a semantic check failed
    /// ([`PteFile::verify`](super::PteFile::verify)).
    #[error("{first}{}", if *more > 0 { format!(" (and {more} more)") } else { String::new() })]
    Invalid {
        /// The first problem, with its file offset and field path.
        first: Box<Issue>,
        /// How many more there are.
        more: usize,
    },
}

impl PteError {
    pub(crate) fn layout(offset: u64, field: impl Into<String>, reason: LayoutReason) -> Self {
        ContainerError::layout(offset, field, reason).into()
    }

    pub(crate) fn model(field: impl Into<String>, reason: ModelReason) -> Self {
        Self::Model {
            field: field.into(),
            reason,
        }
    }

    pub(crate) fn overflow(what: impl Into<String>) -> Self {
        ContainerError::overflow(what).into()
    }
}

/// Why a model cannot be restored or serialized (the message is built by `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelReason {
    /// A required field is absent.
    Missing,
    /// More entries than a `u32` index can number (`too many {0}`).
    TooMany(&'static str),
    /// A named blob with alignment 0.
    ZeroAlignment,
    /// A key added twice with different bytes.
    DuplicateKey {
        /// Bytes under the key already.
        existing: usize,
        /// Bytes added.
        new: usize,
    },
    /// A flatbuffer shorter than root offset and identifier.
    FlatbufferTooShort {
        /// Its length.
        len: usize,
    },
    /// A flatbuffer identifier that is not `ET??`.
    BadIdentifier([u8; 4]),
    /// The inserted block cannot hold the header.
    BlockShorterThanHeader {
        /// The block length.
        block_len: u64,
    },
    /// `backend_delegate_data` entries no delegate references.
    UnhandledDelegateData {
        /// Their indices.
        remaining: Vec<usize>,
    },
    /// Delegate data not inline when serializing.
    NotInline(DataLocation),
    /// A delegate's inline index out of range.
    DelegateIndexOutOfRange {
        /// The index found.
        index: u32,
        /// `len(Program.backend_delegate_data)`.
        len: usize,
    },
    /// The program already has `named_data` when named data is added.
    AlreadyHasNamedData,
    /// A named-data entry's buffer index out of range.
    BufferIndexOutOfRange {
        /// The index found.
        index: usize,
        /// The number of buffers.
        count: usize,
    },
    /// A segment index out of range.
    SegmentIndexOutOfRange {
        /// The index found.
        index: u32,
        /// The number of segments.
        count: usize,
    },
    /// A `DataLocation` value outside the schema.
    UnknownLocation(i8),
    /// More than one mutable data segment.
    TooManyMutableSegments {
        /// How many there are.
        found: usize,
    },
}

impl fmt::Display for ModelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::TooMany(what) => write!(f, "too many {what}"),
            Self::ZeroAlignment => f.write_str("alignment must be greater than 0"),
            Self::DuplicateKey { existing, new } => write!(
                f,
                "duplicate key with different data (existing {existing} bytes, new {new} bytes)"
            ),
            Self::FlatbufferTooShort { len } => {
                write!(f, "{len} bytes is too short to insert a header")
            }
            Self::BadIdentifier(id) => write!(
                f,
                "file identifier {id:?} does not match /ET[0-9a-zA-Z][0-9a-zA-Z]/"
            ),
            Self::BlockShorterThanHeader { block_len } => write!(
                f,
                "inserted block of {block_len} bytes is shorter than the header"
            ),
            Self::UnhandledDelegateData { remaining } => write!(
                f,
                "did not handle all elements of backend_delegate_data; remaining: {remaining:?}"
            ),
            Self::NotInline(location) => write!(
                f,
                "program must only contain inline delegate data, saw location {location:?}"
            ),
            Self::DelegateIndexOutOfRange { index, len } => write!(
                f,
                "delegate processed index {index} >= len(Program.backend_delegate_data) {len}"
            ),
            Self::AlreadyHasNamedData => f.write_str("program already has named data"),
            Self::BufferIndexOutOfRange { index, count } => {
                write!(f, "buffer index {index} >= number of buffers {count}")
            }
            Self::SegmentIndexOutOfRange { index, count } => {
                write!(f, "segment index {index} >= num segments {count}")
            }
            Self::UnknownLocation(v) => write!(f, "unknown data location {v}"),
            Self::TooManyMutableSegments { found } => write!(
                f,
                "can't handle more than 1 mutable data segment (found {found})"
            ),
        }
    }
}
