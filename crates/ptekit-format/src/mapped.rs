//! A file opened read-only through a memory map: the one way every container reads its
//! input (`.pte`, `.bpte`, `.ptd`), so writes can copy the input's bytes file to file.

#![allow(
    unsafe_code,
    reason = "memory-maps the input file (the one mmap of the format crate)"
)]

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::ContainerError;
use crate::write::SourceRef;

/// A file opened read-only and memory-mapped (an empty file is not mapped and reads as
/// no bytes). Parse its [`bytes`](MappedFile::bytes) with any format's reader and attach
/// [`source`](MappedFile::source) to the plan so that borrowed pieces are copied from
/// the file descriptor (`copy_file_range`) instead of through the mapping.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: Option<Mmap>,
}

impl MappedFile {
    /// Opens and maps `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ContainerError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| ContainerError::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ContainerError::io("stat", &path, e))?
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
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| ContainerError::io("memory-map", &path, e))?;
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
}
