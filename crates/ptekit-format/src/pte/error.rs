//! Errors of the `.pte` container code.

use crate::error::{ContainerError, HeaderReason, LayoutReason};
use crate::program::{DecodeError, PackError};

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
    #[error("program flatbuffer (file bytes 0x0..0x{end:x}): {source}")]
    Decode {
        /// End of the flatbuffer region (`program_size`).
        end: u64,
        /// The decoder's error (absolute offset and field path).
        #[source]
        source: DecodeError,
    },
    /// The model cannot be restored or serialized (the cases where the reference raises
    /// `ValueError`, plus the ones where it would crash).
    #[error("{field}: {message}")]
    Model {
        /// Field path in the program or model.
        field: String,
        /// What is wrong.
        message: String,
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
}

impl PteError {
    pub(crate) fn layout(offset: u64, field: impl Into<String>, reason: LayoutReason) -> Self {
        ContainerError::layout(offset, field, reason).into()
    }

    pub(crate) fn model(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Model {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn overflow(what: impl Into<String>) -> Self {
        ContainerError::overflow(what).into()
    }
}
