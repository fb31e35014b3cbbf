//! Streaming a [`PlannedPte`] to a writer or, atomically, to a path.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::serialize::{Piece, PlannedPte};
use super::util::{len64, offset_within};
use super::PteError;

/// Chunk size for copies, so progress is reported regularly.
const CHUNK: u64 = 64 << 20;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The file that borrowed bytes came from: `bytes` is the file's content from offset 0
/// (typically its memory map). When a plan is written to a file, every
/// [`Piece::Bytes`] lying inside `bytes` is copied from `file` with `copy_file_range`
/// (through `std::io::copy`, which falls back to ordinary copies where the kernel cannot
/// do it), so the data is not faulted into this process's memory.
///
/// Copying moves `file`'s position. If the file's content differs from `bytes`, the
/// output has the file's content; a file shorter than `bytes` is a write error.
#[derive(Debug, Clone, Copy)]
pub struct SourceRef<'a> {
    file: &'a File,
    bytes: &'a [u8],
}

impl<'a> SourceRef<'a> {
    /// A source: `bytes` must be `file`'s content starting at offset 0.
    pub fn new(file: &'a File, bytes: &'a [u8]) -> Self {
        Self { file, bytes }
    }

    /// The file offset of `piece`, if it lies inside this source.
    fn file_offset(&self, piece: &[u8]) -> Option<u64> {
        offset_within(self.bytes, piece).map(len64)
    }
}

/// Options of [`PlannedPte::write_atomic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// `fsync` the new file before renaming it over the destination and the folder
    /// after (default `true`). Without it a crash shortly after may leave an empty or
    /// partial destination on some file systems.
    pub durable: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { durable: true }
    }
}

/// Progress reporting: `(bytes done, total)`.
type Progress<'p> = Option<&'p mut dyn FnMut(u64, u64)>;

struct Sink<'p, W> {
    out: W,
    done: u64,
    total: u64,
    progress: Progress<'p>,
}

impl<W: Write> Sink<'_, W> {
    fn write(&mut self, data: &[u8]) -> Result<(), PteError> {
        for chunk in data.chunks(usize::try_from(CHUNK).unwrap_or(usize::MAX)) {
            self.out
                .write_all(chunk)
                .map_err(|source| PteError::Write {
                    offset: self.done,
                    source,
                })?;
            self.advance(len64(chunk.len()));
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), PteError> {
        while n > 0 {
            let k = n.min(len64(ZEROS.len()));
            let part = ZEROS.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]);
            self.out.write_all(part).map_err(|source| PteError::Write {
                offset: self.done,
                source,
            })?;
            self.done = self.done.saturating_add(k);
            n -= k;
        }
        self.report();
        Ok(())
    }

    fn advance(&mut self, n: u64) {
        self.done = self.done.saturating_add(n);
        self.report();
    }

    fn report(&mut self) {
        if let Some(p) = self.progress.as_mut() {
            p(self.done, self.total);
        }
    }
}

impl Sink<'_, &mut File> {
    /// Copies `len` bytes at `offset` of `src` with the kernel's file-to-file copy.
    fn copy_from(&mut self, src: &File, offset: u64, len: u64) -> Result<(), PteError> {
        let mut reader = src;
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|source| PteError::Write {
                offset: self.done,
                source,
            })?;
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK);
            let mut take = reader.take(want);
            let n = io::copy(&mut take, &mut *self.out).map_err(|source| PteError::Write {
                offset: self.done,
                source,
            })?;
            if n == 0 {
                return Err(PteError::Write {
                    offset: self.done,
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "source file ended at 0x{:x}, {left} bytes short of its mapping",
                            offset.saturating_add(len - left)
                        ),
                    ),
                });
            }
            left = left.saturating_sub(n);
            self.advance(n);
        }
        Ok(())
    }
}

impl PlannedPte<'_> {
    fn piece_bytes<'s>(&'s self, piece: &'s Piece<'_>) -> &'s [u8] {
        match piece {
            Piece::Bytes(b) => b,
            Piece::Owned(v) => v,
            Piece::Flatbuffer(r) => self.flatbuffer.get(r.clone()).unwrap_or(&[]),
            Piece::Zeros(_) => &[],
        }
    }

    /// Writes the whole file to `out` from memory (borrowed pieces are read through
    /// their slices). Returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: &mut W) -> Result<u64, PteError> {
        self.write_to_with_progress(out, None)
    }

    /// [`PlannedPte::write_to`] with a progress callback `(done, total)`.
    pub fn write_to_with_progress<W: Write>(
        &self,
        out: &mut W,
        progress: Progress<'_>,
    ) -> Result<u64, PteError> {
        let mut sink = Sink {
            out,
            done: 0,
            total: self.len,
            progress,
        };
        for piece in &self.pieces {
            match piece {
                Piece::Zeros(n) => sink.zeros(*n)?,
                other => sink.write(self.piece_bytes(other))?,
            }
        }
        sink.out.flush().map_err(|source| PteError::Write {
            offset: sink.done,
            source,
        })?;
        Ok(sink.done)
    }

    /// The whole file in memory (for tests and small files).
    pub fn to_vec(&self) -> Result<Vec<u8>, PteError> {
        let cap = usize::try_from(self.len).map_err(|_| PteError::overflow("output size"))?;
        let mut v = Vec::with_capacity(cap);
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// Writes the whole file to `file` at its current position. Pieces borrowed from
    /// [`PlannedPte::source`] are copied from the source's file descriptor
    /// (`copy_file_range`), everything else from memory.
    pub fn write_to_file(&self, file: &mut File, progress: Progress<'_>) -> Result<u64, PteError> {
        let source = self.source;
        let mut sink = Sink {
            out: file,
            done: 0,
            total: self.len,
            progress,
        };
        for piece in &self.pieces {
            match piece {
                Piece::Zeros(n) => sink.zeros(*n)?,
                Piece::Bytes(b) => match source.and_then(|s| s.file_offset(b).map(|o| (s, o))) {
                    Some((s, offset)) => sink.copy_from(s.file, offset, len64(b.len()))?,
                    None => sink.write(b)?,
                },
                other => sink.write(self.piece_bytes(other))?,
            }
        }
        Ok(sink.done)
    }

    /// Writes the file to `path` atomically: a temporary file is created in the same
    /// folder, the pieces are streamed into it, it is `fsync`ed (if `options.durable`),
    /// given the destination's permissions (if the destination exists) and renamed over
    /// the destination, and the folder is `fsync`ed. On any error before the rename the
    /// temporary file is removed and the destination is untouched; the same holds if the
    /// progress callback panics.
    pub fn write_atomic(
        &self,
        path: impl AsRef<Path>,
        options: &WriteOptions,
        progress: Progress<'_>,
    ) -> Result<u64, PteError> {
        let path = path.as_ref();
        let io_err = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source: io::Error| PteError::Io {
                op,
                path: p,
                source,
            }
        };
        let name = path.file_name().ok_or_else(|| PteError::Io {
            op: "write to",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let existing_permissions = fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.permissions());
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_err("create temporary file in", dir))?;
        let written = self.write_to_file(tmp.as_file_mut(), progress)?;
        let tmp_path = tmp.path().to_path_buf();
        match existing_permissions {
            Some(p) => tmp.as_file().set_permissions(p),
            None => set_default_permissions(tmp.as_file()),
        }
        .map_err(io_err("set permissions of", &tmp_path))?;
        if options.durable {
            tmp.as_file()
                .sync_all()
                .map_err(io_err("sync", &tmp_path))?;
        }
        tmp.persist(path)
            .map_err(|e| io_err("rename temporary file to", path)(e.error))?;
        if options.durable {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("sync folder", dir))?;
        }
        Ok(written)
    }
}

#[cfg(unix)]
fn set_default_permissions(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The temporary file is created 0600; a new destination gets the usual 0644.
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_default_permissions(_file: &File) -> io::Result<()> {
    Ok(())
}
