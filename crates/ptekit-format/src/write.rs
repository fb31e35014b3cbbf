//! Streaming writer shared by the containers ([`pte`](crate::pte) and
//! [`flat_tensor`](crate::flat_tensor)): a [`PlannedFile`] is an ordered list of
//! [`Piece`]s (borrowed byte slices, zero runs, small owned bytes, ranges of an owned
//! flatbuffer) that is streamed to a writer or, atomically, to a path without ever
//! assembling the file in memory. Pieces borrowed from a memory-mapped input are copied
//! file-to-file (`copy_file_range`) when a [`SourceRef`] is attached.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

use crate::error::ContainerError;
use crate::tmpfile::{self, TempFile};

/// Chunk size for copies, so progress is reported regularly.
const CHUNK: u64 = 64 << 20;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Converts a length to `u64` (never fails on supported platforms).
pub(crate) fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The offset of `inner` inside `outer`, if `inner` lies within it (pointer arithmetic
/// on addresses only; nothing is dereferenced).
pub(crate) fn offset_within(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    let start = i.checked_sub(o)?;
    let end = start.checked_add(inner.len())?;
    if end <= outer.len() {
        Some(start)
    } else {
        None
    }
}

/// One piece of a planned file, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes borrowed from the input (usually a memory-mapped file; see [`SourceRef`]).
    Bytes(&'a [u8]),
    /// This many zero bytes.
    Zeros(u64),
    /// Small owned bytes (a header), or data the model owned.
    Owned(Vec<u8>),
    /// A range of the plan's owned flatbuffer ([`PlannedFile::flatbuffer`]).
    Flatbuffer(Range<usize>),
}

impl Piece<'_> {
    /// The number of output bytes of this piece.
    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => len64(b.len()),
            Piece::Zeros(n) => *n,
            Piece::Owned(v) => len64(v.len()),
            Piece::Flatbuffer(r) => len64(r.end.saturating_sub(r.start)),
        }
    }

    /// Whether the piece produces no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accumulates pieces with a checked running length (empty pieces are dropped).
#[derive(Debug, Default)]
pub(crate) struct Pieces<'a> {
    pub(crate) pieces: Vec<Piece<'a>>,
    pub(crate) len: u64,
}

impl<'a> Pieces<'a> {
    pub(crate) fn push(&mut self, piece: Piece<'a>) -> Result<(), ContainerError> {
        let n = piece.len();
        if n == 0 {
            return Ok(());
        }
        self.len = self
            .len
            .checked_add(n)
            .ok_or_else(|| ContainerError::overflow("output size"))?;
        self.pieces.push(piece);
        Ok(())
    }

    pub(crate) fn extend(&mut self, other: Pieces<'a>) -> Result<(), ContainerError> {
        for p in other.pieces {
            self.push(p)?;
        }
        Ok(())
    }
}

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

/// Options of [`PlannedFile::write_atomic`].
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

/// Progress reporting: a callback `(bytes done, total)`, or none.
pub type Progress<'p> = Option<&'p mut dyn FnMut(u64, u64)>;

/// A planned file: an owned flatbuffer and the ordered pieces of the output, some of
/// which may borrow (lifetime `'a`) from the input. Nothing is assembled in memory;
/// [`PlannedFile::write_atomic`] streams the pieces.
#[derive(Debug, Clone, Default)]
pub struct PlannedFile<'a> {
    flatbuffer: Vec<u8>,
    pieces: Vec<Piece<'a>>,
    len: u64,
    source: Option<SourceRef<'a>>,
}

impl<'a> PlannedFile<'a> {
    /// A plan from an owned flatbuffer and the pieces (empty pieces are dropped). Errors
    /// if a [`Piece::Flatbuffer`] range is outside `flatbuffer` or the total size
    /// overflows.
    pub fn new(flatbuffer: Vec<u8>, pieces: Vec<Piece<'a>>) -> Result<Self, ContainerError> {
        let mut out = Pieces::default();
        for (index, piece) in pieces.into_iter().enumerate() {
            if let Piece::Flatbuffer(r) = &piece {
                if r.start > r.end || r.end > flatbuffer.len() {
                    return Err(ContainerError::BadPiece {
                        index,
                        start: r.start,
                        end: r.end,
                        len: flatbuffer.len(),
                    });
                }
            }
            out.push(piece)?;
        }
        Ok(Self::from_pieces(flatbuffer, out))
    }

    /// A plan from already-checked pieces (every flatbuffer range inside `flatbuffer`).
    pub(crate) fn from_pieces(flatbuffer: Vec<u8>, pieces: Pieces<'a>) -> Self {
        Self {
            flatbuffer,
            pieces: pieces.pieces,
            len: pieces.len,
            source: None,
        }
    }

    /// Total output size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the output is empty (never, for a valid container plan).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in output order.
    pub fn pieces(&self) -> &[Piece<'a>] {
        &self.pieces
    }

    /// The owned flatbuffer that [`Piece::Flatbuffer`] ranges refer to (without any
    /// inserted header).
    pub fn flatbuffer(&self) -> &[u8] {
        &self.flatbuffer
    }

    /// The file that [`Piece::Bytes`] pieces may borrow from (copied through its file
    /// descriptor when writing to a file).
    pub fn source(&self) -> Option<SourceRef<'a>> {
        self.source
    }

    /// Sets the file the borrowed pieces come from (see [`SourceRef`]).
    pub fn with_source(mut self, source: Option<SourceRef<'a>>) -> Self {
        self.source = source;
        self
    }

    /// The bytes of a non-zero piece (`&[]` for [`Piece::Zeros`]).
    pub fn piece_bytes<'s>(&'s self, piece: &'s Piece<'_>) -> &'s [u8] {
        match piece {
            Piece::Bytes(b) => b,
            Piece::Owned(v) => v,
            Piece::Flatbuffer(r) => self.flatbuffer.get(r.clone()).unwrap_or(&[]),
            Piece::Zeros(_) => &[],
        }
    }

    /// Copies the output bytes `[offset, offset + out.len())` into `out` (random access
    /// without assembling the file). Returns the number of bytes copied: less than
    /// `out.len()` only when the range extends past the end of the file.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> usize {
        let end = offset.saturating_add(len64(out.len())).min(self.len);
        let mut pos: u64 = 0;
        let mut written = 0usize;
        for piece in &self.pieces {
            if pos >= end {
                break;
            }
            let len = piece.len();
            let piece_end = pos.saturating_add(len);
            if piece_end > offset {
                // Both bounds lie within the piece, so they fit `usize` when the piece
                // is in memory; a zero run is filled without indexing into it.
                let from = offset.saturating_sub(pos);
                let to = len.min(end.saturating_sub(pos));
                let n = usize::try_from(to.saturating_sub(from)).unwrap_or(0);
                let Some(dst) = written
                    .checked_add(n)
                    .and_then(|stop| out.get_mut(written..stop))
                else {
                    break;
                };
                match piece {
                    Piece::Zeros(_) => dst.fill(0),
                    other => {
                        let bytes = self.piece_bytes(other);
                        let from = usize::try_from(from).unwrap_or(usize::MAX);
                        match from.checked_add(n).and_then(|stop| bytes.get(from..stop)) {
                            Some(src) => dst.copy_from_slice(src),
                            None => break,
                        }
                    }
                }
                written = written.saturating_add(n);
            }
            pos = piece_end;
        }
        written
    }

    /// Writes the whole file to `out` from memory (borrowed pieces are read through
    /// their slices). Returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: &mut W) -> Result<u64, ContainerError> {
        self.write_to_with_progress(out, None)
    }

    /// [`PlannedFile::write_to`] with a progress callback `(done, total)`.
    pub fn write_to_with_progress<W: Write>(
        &self,
        out: &mut W,
        progress: Progress<'_>,
    ) -> Result<u64, ContainerError> {
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
        sink.out.flush().map_err(|source| ContainerError::Write {
            offset: sink.done,
            source,
        })?;
        Ok(sink.done)
    }

    /// The whole file in memory (for tests and small files).
    pub fn to_vec(&self) -> Result<Vec<u8>, ContainerError> {
        let cap = usize::try_from(self.len).map_err(|_| ContainerError::overflow("output size"))?;
        let mut v = Vec::with_capacity(cap);
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// Writes the whole file to `file` at its current position. Pieces borrowed from
    /// [`PlannedFile::source`] are copied from the source's file descriptor
    /// (`copy_file_range`), everything else from memory.
    pub fn write_to_file(
        &self,
        file: &mut File,
        progress: Progress<'_>,
    ) -> Result<u64, ContainerError> {
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

    /// Writes the file to `path` atomically: a new file is created in the same folder
    /// (unnamed where the file system allows, so that a killed writer leaves nothing
    /// behind; see the `tmpfile` module), the pieces are streamed into it, it is `fsync`ed
    /// (if `options.durable`), given the destination's permissions (if the destination
    /// exists; a new file has mode 0666 minus the umask), and renamed over the
    /// destination, and the folder is `fsync`ed. On any error before the rename the new
    /// file is removed and the destination is untouched; the same holds if the progress
    /// callback panics. Temporary files that killed writers of `path` left behind are
    /// removed first.
    pub fn write_atomic(
        &self,
        path: impl AsRef<Path>,
        options: &WriteOptions,
        progress: Progress<'_>,
    ) -> Result<u64, ContainerError> {
        let path = path.as_ref();
        let name = path.file_name().ok_or_else(|| {
            ContainerError::io(
                "write to",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            )
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        tmpfile::remove_stale(dir, name);
        let existing_permissions = fs::metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.permissions());
        let mut tmp = TempFile::new(dir, name)
            .map_err(|e| ContainerError::io("create temporary file in", dir, e))?;
        let written = self.write_to_file(tmp.file_mut(), progress)?;
        if let Some(p) = existing_permissions {
            tmp.file()
                .set_permissions(p)
                .map_err(|e| ContainerError::io("set permissions of the new", path, e))?;
        }
        if options.durable {
            tmp.file()
                .sync_all()
                .map_err(|e| ContainerError::io("sync the new", path, e))?;
        }
        tmp.persist(path)
            .map_err(|e| ContainerError::io("rename temporary file to", path, e))?;
        if options.durable {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ContainerError::io("sync folder", dir, e))?;
        }
        Ok(written)
    }
}

struct Sink<'p, W> {
    out: W,
    done: u64,
    total: u64,
    progress: Progress<'p>,
}

impl<W: Write> Sink<'_, W> {
    fn write(&mut self, data: &[u8]) -> Result<(), ContainerError> {
        for chunk in data.chunks(usize::try_from(CHUNK).unwrap_or(usize::MAX)) {
            self.out
                .write_all(chunk)
                .map_err(|source| ContainerError::Write {
                    offset: self.done,
                    source,
                })?;
            self.advance(len64(chunk.len()));
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), ContainerError> {
        while n > 0 {
            let k = n.min(len64(ZEROS.len()));
            let part = ZEROS.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]);
            self.out
                .write_all(part)
                .map_err(|source| ContainerError::Write {
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
    fn copy_from(&mut self, src: &File, offset: u64, len: u64) -> Result<(), ContainerError> {
        let mut reader = src;
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|source| ContainerError::Write {
                offset: self.done,
                source,
            })?;
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK);
            let mut take = reader.take(want);
            let n =
                io::copy(&mut take, &mut *self.out).map_err(|source| ContainerError::Write {
                    offset: self.done,
                    source,
                })?;
            if n == 0 {
                return Err(ContainerError::Write {
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

/// Writes `bytes` to `path` atomically, like [`PlannedFile::write_atomic`] (a temporary
/// file in the same folder, `fsync` if `options.durable`, permissions, rename).
pub fn write_bytes_atomic(
    path: impl AsRef<Path>,
    bytes: &[u8],
    options: &WriteOptions,
) -> Result<u64, ContainerError> {
    let mut pieces = Pieces::default();
    pieces.push(Piece::Bytes(bytes))?;
    PlannedFile::from_pieces(Vec::new(), pieces).write_atomic(path, options, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_at_matches_to_vec() {
        let data = [7u8; 10];
        let plan = PlannedFile::new(
            b"abcdefgh".to_vec(),
            vec![
                Piece::Owned(vec![1, 2, 3]),
                Piece::Zeros(5),
                Piece::Flatbuffer(2..6),
                Piece::Bytes(&data),
                Piece::Zeros(0),
            ],
        )
        .expect("plan");
        let whole = plan.to_vec().expect("to_vec");
        assert_eq!(whole.len() as u64, plan.len());
        for start in 0..whole.len() + 2 {
            for n in 0..whole.len() + 2 {
                let mut buf = vec![0xffu8; n];
                let got = plan.read_at(start as u64, &mut buf);
                let want = whole.get(start..).map_or(&[][..], |w| &w[..n.min(w.len())]);
                assert_eq!(&buf[..got], want, "start {start} n {n}");
            }
        }
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temporary_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let stale = format!(".out.bin.ptekit-tmp.{dead}.0");
        let kept = [
            // pid 1 is always running
            ".out.bin.ptekit-tmp.1.3".to_string(),
            format!(".out.bin.ptekit-tmp.{}.9", std::process::id()),
            format!(".other.bin.ptekit-tmp.{dead}.0"),
            format!(".out.bin.{dead}.tmp"),
        ];
        for name in kept.iter().chain([&stale]) {
            fs::write(dir.path().join(name), b"partial").expect("write");
        }
        let out = dir.path().join("out.bin");
        write_bytes_atomic(&out, b"new", &WriteOptions::default()).expect("write");
        assert_eq!(fs::read(&out).expect("read"), b"new");
        let mut want: Vec<String> = kept.to_vec();
        want.push("out.bin".into());
        want.sort();
        assert_eq!(names_in(dir.path()), want);
    }

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_usual_mode_and_replaced_files_keep_theirs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        // What any program gets for a new file: 0666 minus this process's umask.
        let usual = dir.path().join("usual");
        File::create(&usual).expect("create");
        let out = dir.path().join("out.bin");
        write_bytes_atomic(&out, b"one", &WriteOptions::default()).expect("write");
        assert_eq!(mode(&out), mode(&usual));
        fs::set_permissions(&out, fs::Permissions::from_mode(0o604)).expect("chmod");
        write_bytes_atomic(&out, b"two", &WriteOptions { durable: false }).expect("write");
        assert_eq!(mode(&out), 0o604);
        assert_eq!(fs::read(&out).expect("read"), b"two");
        assert_eq!(names_in(dir.path()), ["out.bin", "usual"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.bin");
        let plan = PlannedFile::new(Vec::new(), vec![Piece::Zeros(3 << 20)]).expect("plan");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut stop = |_done: u64, _total: u64| panic!("stop");
            plan.write_atomic(&out, &WriteOptions::default(), Some(&mut stop))
        }));
        assert!(result.is_err());
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn bad_flatbuffer_range_is_an_error() {
        let err = PlannedFile::new(vec![0; 4], vec![Piece::Flatbuffer(2..5)]);
        assert!(matches!(
            err,
            Err(ContainerError::BadPiece { index: 0, .. })
        ));
    }
}
