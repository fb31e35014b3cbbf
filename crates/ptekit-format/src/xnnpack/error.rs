//! Errors of reading, checking and writing XNNPACK payloads: a kind, a message, the field
//! path (`xnodes[17].XNNFullyConnected.filter_id`) and the byte offset in the payload.

use std::fmt;

use ptekit_flatbuffers::{BuildError, Error as FbError, ErrorKind as FbErrorKind};

/// What kind of problem an [`XnnpackError`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XnnpackErrorKind {
    /// The `XH00` header's offsets or sizes do not fit the payload.
    Header,
    /// The flatbuffer identifier is not `XN00`/`XN01`.
    Identifier,
    /// The flatbuffer failed verification (offsets, vtables, unions, limits...).
    Flatbuffer(FbErrorKind),
    /// A value id that no value defines.
    ValueId,
    /// A `constant_buffer_idx`/`scale_buffer_idx` outside `constant_data`.
    ConstantIndex,
    /// An inline constant range outside the payload's constant data.
    ConstantRange,
    /// A named-data key that the program (or the given `.ptd`) does not hold, or holds
    /// with fewer bytes than the entry says.
    NamedKey,
    /// A value or node that the reference runtime refuses when it defines it in XNNPACK
    /// (`xnn_define_*` or the delegate's own checks before it).
    Define,
    /// The graph cannot be written (the flatbuffer or header would exceed their limits).
    Build,
}

/// An error of the XNNPACK payload functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XnnpackError {
    kind: XnnpackErrorKind,
    message: String,
    /// Outermost segment first once complete; built innermost first while unwinding.
    path: Vec<String>,
    offset: Option<u64>,
    /// Where the payload starts in the file, once known.
    payload_start: Option<u64>,
}

impl XnnpackError {
    /// An error of `kind` with `message`, no path and no offset.
    #[cold]
    pub fn new(kind: XnnpackErrorKind, message: impl Into<String>) -> Self {
        XnnpackError {
            kind,
            message: message.into(),
            path: Vec::new(),
            offset: None,
            payload_start: None,
        }
    }

    /// A verification error of the flatbuffer that starts at `base` in the payload.
    pub fn from_flatbuffer(e: FbError, base: usize) -> Self {
        let path = e.path_string();
        let mut out = XnnpackError::new(
            XnnpackErrorKind::Flatbuffer(e.kind().clone()),
            e.kind().to_string(),
        )
        .at(e.offset().saturating_add(base) as u64);
        if !path.is_empty() {
            out.path.push(path);
        }
        out
    }

    /// A build error.
    pub fn from_build(e: BuildError) -> Self {
        XnnpackError::new(XnnpackErrorKind::Build, e.to_string())
    }

    /// Sets the payload byte offset.
    #[must_use]
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Records that the payload starts at `start` in its file (see [`file_offset`]);
    /// called again by a container that holds that file (a `.bpte` holding a program),
    /// with the file's own offset in it, the offsets add up.
    ///
    /// [`file_offset`]: XnnpackError::file_offset
    #[must_use]
    pub fn in_file_at(mut self, start: u64) -> Self {
        self.payload_start = Some(self.payload_start.unwrap_or(0).saturating_add(start));
        self
    }

    /// Adds `note` to the message.
    #[must_use]
    pub(crate) fn note(mut self, note: &str) -> Self {
        self.message.push_str(note);
        self
    }

    /// Adds an outer path segment (a field, or a rendered `name[i]`).
    #[must_use]
    pub fn in_field(mut self, name: impl Into<String>) -> Self {
        self.path.push(name.into());
        self
    }

    /// Names the delegate: the path then starts with
    /// `execution_plan[P].delegates[D].xnnpack`.
    #[must_use]
    pub fn in_delegate(self, plan: usize, delegate: usize) -> Self {
        self.in_field(format!(
            "execution_plan[{plan}].delegates[{delegate}].xnnpack"
        ))
    }

    /// The kind.
    pub fn kind(&self) -> &XnnpackErrorKind {
        &self.kind
    }

    /// The message (without path and offset).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The byte offset in the payload, when known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The byte offset in the file that holds the payload, when both are known.
    pub fn file_offset(&self) -> Option<u64> {
        Some(self.payload_start?.saturating_add(self.offset?))
    }

    /// The field path, e.g. `execution_plan[0].delegates[3].xnnpack.xnodes[17].XNNFullyConnected.filter_id`.
    pub fn path(&self) -> String {
        let mut s = String::new();
        for seg in self.path.iter().rev() {
            if !s.is_empty() && !seg.starts_with('[') {
                s.push('.');
            }
            s.push_str(seg);
        }
        s
    }
}

impl fmt::Display for XnnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if !path.is_empty() {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)?;
        match (self.file_offset(), self.offset) {
            (Some(at), Some(o)) => write!(f, " at file offset 0x{at:x} (payload byte {o})")?,
            (None, Some(o)) => write!(f, " at payload byte {o}")?,
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for XnnpackError {}
