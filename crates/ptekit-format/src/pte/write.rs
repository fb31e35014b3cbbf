//! Streaming a [`PlannedPte`] to a writer or, atomically, to a path (the shared
//! [`PlannedFile`](crate::write::PlannedFile) writer, with `.pte` errors).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::write::{Progress, WriteError};
pub use crate::write::{SourceRef, WriteOptions};

use super::serialize::PlannedPte;
use super::PteError;

impl From<WriteError> for PteError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io { op, path, source } => PteError::Io { op, path, source },
            WriteError::Write { offset, source } => PteError::Write { offset, source },
            WriteError::Overflow { what } => PteError::Overflow { what },
            other @ WriteError::BadPiece { .. } => PteError::model("pieces", other.to_string()),
        }
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
