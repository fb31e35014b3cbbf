//! A file opened read-only through a memory map: the one way every container reads its
//! input (`.pte`, `.bpte`, `.ptd`), so writes can copy the input's bytes file to file.

#![allow(
    unsafe_code,
    reason = "memory-maps the input file (the one mmap of the format crate)"
)]

use std::fmt;
use std::fs::{File, OpenOptions};
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
    /// Opens (with [`open_regular`]: a FIFO, directory or device is an error) and maps
    /// `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ContainerError> {
        let path = path.as_ref().to_path_buf();
        let file = open_regular(&path)?;
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

/// What a path names when it is not a regular file (see [`open_regular`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeKind {
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device (a terminal, `/dev/zero`, ...).
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// Anything else that is not a regular file.
    Other,
}

impl NodeKind {
    fn of(t: std::fs::FileType) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_fifo() {
                return Self::Fifo;
            }
            if t.is_socket() {
                return Self::Socket;
            }
            if t.is_char_device() {
                return Self::CharDevice;
            }
            if t.is_block_device() {
                return Self::BlockDevice;
            }
        }
        if t.is_dir() {
            Self::Directory
        } else {
            Self::Other
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Directory => "a directory",
            Self::Fifo => "a FIFO (named pipe)",
            Self::Socket => "a socket",
            Self::CharDevice => "a character device",
            Self::BlockDevice => "a block device",
            Self::Other => "not a regular file",
        })
    }
}

/// Opens `path` for reading if it is a regular file (after following symbolic links),
/// else fails with [`ContainerError::NotRegular`] naming the path and what it is. This
/// is the one place input files are opened (every reader goes through it, through
/// [`MappedFile::open`] or directly).
///
/// The file is opened with `O_NONBLOCK`, so that opening a FIFO with no writer returns at
/// once instead of waiting for one; the kind is then read from the open descriptor
/// (`fstat`), so the check and the use concern the same file. `O_NONBLOCK` changes
/// nothing for a regular file.
pub fn open_regular(path: &Path) -> Result<File, ContainerError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| ContainerError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| ContainerError::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(ContainerError::NotRegular {
            path: path.to_path_buf(),
            kind: NodeKind::of(meta.file_type()),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_devices_are_refused() {
        let dir = std::env::temp_dir();
        let err = open_regular(&dir).expect_err("a directory");
        assert!(matches!(
            err,
            ContainerError::NotRegular {
                kind: NodeKind::Directory,
                ..
            }
        ));
        assert!(err.to_string().contains("a directory"), "{err}");
        #[cfg(unix)]
        assert!(matches!(
            MappedFile::open("/dev/null"),
            Err(ContainerError::NotRegular {
                kind: NodeKind::CharDevice,
                ..
            })
        ));
    }
}
