//! The error type of verified reading: a [`ErrorKind`], the absolute byte offset where
//! the problem was found, and a field path that callers extend while unwinding.

use std::borrow::Cow;
use std::fmt;

/// What went wrong while reading a FlatBuffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something (`what`, with its value) points or extends outside the buffer.
    #[error("{what} {value} out of bounds")]
    OutOfBounds {
        /// What was being checked, e.g. `"vector length"` or `"uoffset"`.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A table, offset, vector or field is not aligned as FlatBuffers requires.
    #[error("{what} misaligned (requires {align}-byte alignment)")]
    Misaligned {
        /// What was misaligned.
        what: &'static str,
        /// The required alignment.
        align: usize,
    },
    /// A malformed vtable.
    #[error("invalid vtable: {reason}")]
    BadVtable {
        /// Why the vtable is invalid.
        reason: &'static str,
    },
    /// A `uoffset` of zero (FlatBuffers offsets always point forward).
    #[error("invalid zero uoffset")]
    ZeroOffset,
    /// Table nesting deeper than [`Limits::max_depth`](crate::verify::Limits::max_depth).
    #[error("nesting depth exceeds the limit of {limit}")]
    DepthLimit {
        /// The configured limit.
        limit: usize,
    },
    /// More tables visited than [`Limits::max_tables`](crate::verify::Limits::max_tables).
    #[error("number of tables exceeds the limit of {limit}")]
    TableLimit {
        /// The configured limit.
        limit: usize,
    },
    /// More bytes visited than
    /// [`Limits::max_apparent_size`](crate::verify::Limits::max_apparent_size).
    #[error("apparent size exceeds the limit of {limit} bytes")]
    ApparentSizeLimit {
        /// The configured limit.
        limit: u64,
    },
    /// The buffer is larger than
    /// [`Limits::max_buffer_size`](crate::verify::Limits::max_buffer_size).
    #[error("buffer of {len} bytes exceeds the limit of {limit} bytes")]
    BufferTooLarge {
        /// The buffer length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A string that is not valid UTF-8.
    #[error("string is not valid UTF-8 (valid up to byte {valid_up_to} of the string)")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// A string without its NUL terminator.
    #[error("string is missing its NUL terminator")]
    MissingNul,
    /// The file identifier was not accepted (or the buffer is too short to hold one).
    #[error("unexpected file identifier {}", show_identifier(.found))]
    BadIdentifier {
        /// The 4 bytes found (`None` if the buffer is shorter than 8 bytes).
        found: Option<[u8; 4]>,
    },
    /// A union type tag the caller does not know.
    #[error("unknown union type {found}")]
    BadUnionType {
        /// The tag found.
        found: u8,
    },
    /// A vector index beyond the vector's length (a caller bug; reported, not panicked).
    #[error("index {index} out of range for a vector of length {len}")]
    IndexOutOfRange {
        /// The requested index.
        index: usize,
        /// The vector length.
        len: usize,
    },
    /// A field the caller requires is absent.
    #[error("required field is missing")]
    MissingRequired,
    /// A semantic error raised by the caller (e.g. an out-of-range enum value).
    #[error("{0}")]
    Invalid(Cow<'static, str>),
}

fn show_identifier(found: &Option<[u8; 4]>) -> String {
    match found {
        None => "<none: buffer too short>".to_string(),
        Some(id) => {
            let escaped: String = id
                .iter()
                .flat_map(|b| b.escape_ascii())
                .map(char::from)
                .collect();
            format!("\"{escaped}\"")
        }
    }
}

/// One step of an error's field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A named field (`.name`).
    Field(Cow<'static, str>),
    /// A union member (`.Name`).
    UnionMember(Cow<'static, str>),
    /// A vector element (`[i]`).
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    offset: usize,
    /// Innermost segment first (segments are pushed while unwinding).
    path: Vec<PathSegment>,
}

/// An error found while reading a FlatBuffer: what ([`Error::kind`]), where in the buffer
/// ([`Error::offset`]), and where in the data model ([`Error::path`]).
///
/// The path is empty when the error is created; callers add to it while the error
/// propagates outwards, innermost first:
///
/// ```
/// # use ptekit_flatbuffers::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::OutOfBounds { what: "vector length", value: 4294967295 }, 812)
///     .in_field("sizes")
///     .in_union_member("Tensor")
///     .in_field("val")
///     .at_index(17)
///     .in_field("values")
///     .at_index(0)
///     .in_field("execution_plan");
/// assert_eq!(
///     e.to_string(),
///     "execution_plan[0].values[17].val.Tensor.sizes: vector length 4294967295 out of bounds at byte 812"
/// );
/// ```
///
/// The error is one boxed pointer, so `Result<T, Error>` stays small on the happy path.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<Inner>);

impl Error {
    /// Creates an error of `kind` found at absolute byte `offset`, with an empty path.
    #[cold]
    pub fn new(kind: ErrorKind, offset: usize) -> Self {
        Error(Box::new(Inner {
            kind,
            offset,
            path: Vec::new(),
        }))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The absolute byte offset in the buffer where the problem was found.
    pub fn offset(&self) -> usize {
        self.0.offset
    }

    /// The path segments, outermost first.
    pub fn path(&self) -> impl Iterator<Item = &PathSegment> {
        self.0.path.iter().rev()
    }

    /// The rendered path, e.g. `execution_plan[0].values[17].val.Tensor.sizes`.
    pub fn path_string(&self) -> String {
        let mut s = String::new();
        for seg in self.path() {
            match seg {
                PathSegment::Field(name) | PathSegment::UnionMember(name) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(name);
                }
                PathSegment::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
            }
        }
        s
    }

    /// The same error for a buffer that starts at byte `by` of a larger one (a program
    /// embedded in a bundled program): the offset counts from the larger buffer's start.
    #[must_use]
    pub fn shifted(mut self, by: usize) -> Self {
        self.0.offset = self.0.offset.saturating_add(by);
        self
    }

    /// Adds a named field to the path (call while unwinding, innermost first).
    #[must_use]
    pub fn in_field(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.0.path.push(PathSegment::Field(name.into()));
        self
    }

    /// Adds a union member name to the path.
    #[must_use]
    pub fn in_union_member(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.0.path.push(PathSegment::UnionMember(name.into()));
        self
    }

    /// Adds a vector index to the path.
    #[must_use]
    pub fn at_index(mut self, index: usize) -> Self {
        self.0.path.push(PathSegment::Index(index));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.path.is_empty() {
            write!(f, "{}: ", self.path_string())?;
        }
        write!(f, "{} at byte {}", self.0.kind, self.0.offset)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("offset", &self.0.offset)
            .field("path", &self.path_string())
            .finish()
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_without_path() {
        let e = Error::new(ErrorKind::MissingNul, 3);
        assert_eq!(
            e.to_string(),
            "string is missing its NUL terminator at byte 3"
        );
        let e = Error::new(
            ErrorKind::BadIdentifier {
                found: Some(*b"AB\x00C"),
            },
            4,
        );
        assert_eq!(
            e.to_string(),
            "unexpected file identifier \"AB\\x00C\" at byte 4"
        );
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn path_starting_with_index() {
        let e = Error::new(ErrorKind::ZeroOffset, 0)
            .in_field("x")
            .at_index(2);
        assert_eq!(e.path_string(), "[2].x");
    }
}
