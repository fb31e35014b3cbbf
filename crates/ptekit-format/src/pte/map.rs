//! Opening a `.pte` file through a read-only memory map.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::file::{PteFile, ReadOptions};
use super::write::SourceRef;
use super::PteError;

/// A `.pte` file opened read-only and memory-mapped. [`PteMap::parse`] yields a
/// [`PteFile`] borrowing from the map (parse on demand; the map owns nothing else), with
/// the file recorded as its [`SourceRef`] so that writes copy segment data from the file
/// descriptor instead of through the mapping.
///
/// ```no_run
/// # fn main() -> Result<(), ptekit_format::pte::PteError> {
/// use ptekit_format::pte::{plan_exact, PteMap, ReadOptions, WriteOptions};
/// let map = PteMap::open("model.pte")?;
/// let file = map.parse(&ReadOptions::default())?;
/// plan_exact(&file)?.write_atomic("copy.pte", &WriteOptions::default(), None)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PteMap {
    path: PathBuf,
    file: File,
    map: Option<Mmap>,
}

impl PteMap {
    /// Opens and maps `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PteError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| PteError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| PteError::Io {
                op: "stat",
                path: path.clone(),
                source,
            })?
            .len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only and private to this struct; it stays valid
            // for the struct's lifetime because the struct owns it. As with every
            // mmap-based reader, the bytes are only stable if no other process truncates
            // or modifies the file while it is mapped: truncation would make accesses fault
            // (SIGBUS) and modification would change data under the borrowing `&[u8]`.
            // Callers open model files that are not being written concurrently; writers in
            // this crate replace files by rename, which never changes a mapped inode.
            let map = unsafe { Mmap::map(&file) }.map_err(|source| PteError::Io {
                op: "memory-map",
                path: path.clone(),
                source,
            })?;
            Some(map)
        };
        Ok(Self { path, file, map })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file as the source of the mapped bytes (see [`SourceRef`]).
    pub fn source(&self) -> SourceRef<'_> {
        SourceRef::new(&self.file, self.bytes())
    }

    /// Parses the mapped file (see [`PteFile::parse`]), recording this file as its
    /// source.
    pub fn parse(&self, options: &ReadOptions) -> Result<PteFile<'_>, PteError> {
        Ok(PteFile::parse(self.bytes(), options)?.with_source(self.source()))
    }
}
