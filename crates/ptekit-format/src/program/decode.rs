//! Verified, zero-copy decoding of an `ET12` program flatbuffer into the [`model`].
//!
//! [`decode_program`] takes a buffer that starts at the file start (a whole `.pte` file
//! or a prefix of it): the extended header the container inserts at byte 8 sits inside
//! the buffer harmlessly because the reference adjusts the root offset and all other
//! offsets are relative. Every read is bounds-checked; tables, vtables, vectors, strings
//! and union tags are verified like the FlatBuffers C++ verifier does (4-byte alignment
//! of offsets and vector lengths, natural alignment of inline scalars, vtable sizes,
//! string terminators), with the caller's depth and table-count limits. The three byte
//! fields that can be large (`Buffer.storage`, `BackendDelegateInlineData.data`,
//! `CompileSpec.value`) borrow from the input.
//!
//! Errors name the absolute byte offset in the buffer and the field path, e.g.
//! `execution_plan[0].values[17].val.Tensor.sizes`. The path is built while the error
//! unwinds, so the happy path pays nothing for it.
//!
//! Differences from what the reference (Python object API) accepts, on purpose:
//! - A union whose type is set but whose value is absent is an error here (Python reads
//!   the value as `None` and would re-pack the union as `NONE`); a union type outside the
//!   schema is an error too (the model has no variant to keep it). A value present with
//!   type `NONE` is ignored, as everywhere else.
//! - Strings must be valid UTF-8 (Python would raise `UnicodeDecodeError` later).
//! - A `bool` byte other than 0/1 reads as `true` (like Python and C++), so such a file
//!   does not re-pack to the same bytes.

use std::borrow::Cow;
use std::fmt;

use ptekit_flatbuffers::Limits;

use super::enums::{DataLocation, DeviceType, ScalarType, TensorDataLocation, TensorShapeDynamism};
use super::model::*;

/// Which file identifiers (bytes 4..8) the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentifierPolicy {
    /// `ET` followed by two ASCII letters or digits (what readers of the reference
    /// accept; the version seen is reported by [`file_identifier`]).
    #[default]
    AnyEt,
    /// Exactly these four bytes.
    Exact([u8; 4]),
    /// Do not look at the identifier.
    Ignore,
}

impl IdentifierPolicy {
    /// Whether `id` is acceptable under this policy.
    pub fn accepts(&self, id: [u8; 4]) -> bool {
        match self {
            Self::AnyEt => is_et_identifier(id),
            Self::Exact(want) => *want == id,
            Self::Ignore => true,
        }
    }
}

/// Whether `id` is `ET` plus two ASCII alphanumerics.
pub fn is_et_identifier(id: [u8; 4]) -> bool {
    let [a, b, c, d] = id;
    a == b'E' && b == b'T' && c.is_ascii_alphanumeric() && d.is_ascii_alphanumeric()
}

/// The four identifier bytes at offset 4, if the buffer is long enough (no check of
/// their content).
pub fn file_identifier(buf: &[u8]) -> Option<[u8; 4]> {
    let bytes = buf.get(4..8)?;
    let mut id = [0u8; 4];
    id.copy_from_slice(bytes);
    Some(id)
}

/// Renders an identifier for messages (printable ASCII as is, other bytes escaped).
pub fn identifier_display(id: [u8; 4]) -> String {
    id.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A table field.
    Field(&'static str),
    /// A vector element.
    Index(usize),
}

/// The path from the root table to the field where an error happened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(Vec<PathSegment>);

impl FieldPath {
    /// The segments, root first.
    pub fn segments(&self) -> impl Iterator<Item = &PathSegment> {
        self.0.iter().rev()
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        let mut first = true;
        // Stored innermost first (pushed while unwinding).
        for seg in self.0.iter().rev() {
            match seg {
                PathSegment::Field(name) => {
                    if !first {
                        f.write str_dot()?;
                    }
                    f.write_str(name)?;
                }
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}
