//! Opening a `.pte` file: the shared [`MappedFile`] plus parsing.

use std::fs::File;
use std::path::Path;

use super::file::{PteFile, ReadOptions};
use super::PteError;
use crate::mapped::MappedFile;
use crate::write::SourceRef;

/// A `.pte` file opened read-only and memory-mapped (a [`MappedFile`]). [`PteMap::parse`]
/// yields a [`PteFile`] borrowing from the map (parse on demand; the map owns nothing
/// else), with the file recorded as its [`SourceRef`] so that writes copy segment data
/// from the file descriptor instead of through the mapping.
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
    map: MappedFile,
}

impl PteMap {
    /// Opens and maps `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PteError> {
        Ok(Self {
            map: MappedFile::open(path)?,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// The open file.
    pub fn file(&self) -> &File {
        self.map.file()
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The file as the source of the mapped bytes (see [`SourceRef`]).
    pub fn source(&self) -> SourceRef<'_> {
        self.map.source()
    }

    /// Parses the mapped file (see [`PteFile::parse`]), recording this file as its
    /// source.
    pub fn parse(&self, options: &ReadOptions) -> Result<PteFile<'_>, PteError> {
        Ok(PteFile::parse(self.bytes(), options)?.with_source(self.source()))
    }
}
