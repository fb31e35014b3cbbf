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
    /// A call of the delegate whose arguments do not fit the payload's external inputs
    /// and outputs as the delegate maps them (an error about the program's call).
    CallArguments,
}

/// An error of the XNNPACK payload functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XnnpackError {
    kind: XnnpackErrorKind,
    message: String,
    /// Outermost segment first once complete; built innermost first while unwinding.
    path: Vec<String>,
    offset: Option<At>,
    /// Where the payload starts in the file, once known.
    payload_start: Option<u64>,
}

/// What an [`XnnpackError`]'s offset is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// A byte of the payload.
    Payload(u64),
    /// A field of the program that holds the payload (its offset in the program's file).
    ProgramField(u64),
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
        self.offset = Some(At::Payload(offset));
        self
    }

    /// Locates an error about a field of the program that holds the payload (a delegate
    /// call's arguments) at `offset` in the program's file; a container that holds the
    /// program adds its own offset with [`in_file_at`](XnnpackError::in_file_at).
    #[must_use]
    pub(crate) fn at_program_field(mut self, offset: u64) -> Self {
        self.offset = Some(At::ProgramField(offset));
        self.payload_start = Some(0);
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

    /// The byte offset in the payload, when known (`None` for an error about a field of
    /// the program, located by [`file_offset`](XnnpackError::file_offset) only).
    pub fn offset(&self) -> Option<u64> {
        match self.offset? {
            At::Payload(o) => Some(o),
            At::ProgramField(_) => None,
        }
    }

    /// The byte offset in the file that holds the payload, when both are known.
    pub fn file_offset(&self) -> Option<u64> {
        let (At::Payload(o) | At::ProgramField(o)) = self.offset?;
        Some(self.payload_start?.saturating_add(o))
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
        match (self.file_offset(), self.offset()) {
            (Some(at), None) => write!(f, " at file offset 0x{at:x}")?,
            (Some(at), Some(o)) => write!(f, " at file offset 0x{at:x} (payload byte {o})")?,
            (None, Some(o)) => write!(f, " at payload byte {o}")?,
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for XnnpackError {}
