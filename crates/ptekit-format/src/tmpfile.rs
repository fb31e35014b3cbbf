//! The new file behind an atomic write ([`crate::write`]): created in the destination's
//! folder so that it can be renamed over the destination, and never left behind by a
//! process that is killed while writing it.
//!
//! - Where the file system has `O_TMPFILE` (Linux: ext4, xfs, btrfs, tmpfs, ...), the
//!   file has no name while it is written: a killed writer leaves nothing. It gets a
//!   name only when complete (`linkat` through `/proc/self/fd`): the destination's
//!   name directly when there is no destination yet, else a temporary name renamed over
//!   the destination at once.
//! - Elsewhere it is created as `.NAME.ptekit-tmp.PID.N` (`NAME` the destination's
//!   name, `PID` the writer's process id). Before writing `NAME`, a writer removes the
//!   files of that pattern whose `PID` is not a running process (see
//!   [`remove_stale`]): only its own kind of file, only when the owner is gone.
//!
//! New files are created with mode `0666`, which the kernel reduces by the umask (the
//! mode any program creating a file gets); the caller gives a replaced destination's mode
//! to the new file.

#![allow(
    unsafe_code,
    reason = "linkat(AT_SYMLINK_FOLLOW) of an O_TMPFILE descriptor: std has no safe wrapper"
)]

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The tag in the names of temporary files: `.NAME.ptekit-tmp.PID.N`.
const TAG: &str = "ptekit-tmp";

/// Distinguishes the temporary files of the threads of one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new file in `dir`, unnamed or under a temporary name, until [`TempFile::persist`].
/// Dropping it before removes the temporary name, if it has one.
#[derive(Debug)]
pub(crate) struct TempFile {
    file: File,
    /// The temporary name, for a file created without `O_TMPFILE`.
    named: Option<PathBuf>,
}

impl TempFile {
    /// Creates the file that will become `dest` (in `dest`'s folder `dir`).
    pub(crate) fn new(dir: &Path, dest_name: &OsStr) -> io::Result<Self> {
        if let Some(file) = open_unnamed(dir) {
            return Ok(Self { file, named: None });
        }
        let path = dir.join(temp_name(dest_name));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o666);
        }
        let file = options.open(&path)?;
        Ok(Self {
            file,
            named: Some(path),
        })
    }

    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The open file, for writing.
    pub(crate) fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Gives the file the name `dest`, replacing what is there, atomically for every
    /// reader (`dest` in the folder the file was created in).
    pub(crate) fn persist(mut self, dest: &Path) -> io::Result<()> {
        let from = match self.named.take() {
            Some(path) => path,
            None => {
                match link_unnamed(&self.file, dest) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                let name = dest.file_name().unwrap_or_default();
                let path = dest.with_file_name(temp_name(name));
                link_unnamed(&self.file, &path)?;
                path
            }
        };
        fs::rename(&from, dest).inspect_err(|_| {
            let _ = fs::remove_file(&from);
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.named {
            let _ = fs::remove_file(path);
        }
    }
}

/// `.NAME.ptekit-tmp.PID.N`, new for each call in this process.
fn temp_name(dest_name: &OsStr) -> OsString {
    let mut name = OsString::from(".");
    name.push(dest_name);
    name.push(format!(
        ".{TAG}.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    name
}

/// The process id in `file_name` if it is a temporary file of `dest_name`
/// (`.NAME.ptekit-tmp.PID.N`).
fn temp_owner(file_name: &OsStr, dest_name: &OsStr) -> Option<u32> {
    let file_name = file_name.to_str()?;
    let rest = file_name
        .strip_prefix('.')?
        .strip_prefix(dest_name.to_str()?)?
        .strip_prefix('.')?
        .strip_prefix(TAG)?
        .strip_prefix('.')?;
    let (pid, n) = rest.split_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporary files of `dest_name` in `dir` whose writer is no longer
/// running (killed before it could remove them). Returns how many were removed.
///
/// Owners are told by their process id, through `/proc`: where `/proc` is missing,
/// nothing is removed. A process of another PID namespace (another container) or another
/// machine sharing the folder looks gone; its write then fails at the rename instead
/// of completing (never a wrong file).
pub(crate) fn remove_stale(dir: &Path, dest_name: &OsStr) -> usize {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = temp_owner(&entry.file_name(), dest_name) else {
            continue;
        };
        if pid == me || proc_root.join(pid.to_string()).exists() {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// An unnamed file (`O_TMPFILE`) in `dir`, mode 0666 before the umask; `None` where the
/// file system (or the kernel) has none, or `/proc/self/fd` is missing to name it later.
#[cfg(target_os = "linux")]
fn open_unnamed(dir: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o666)
        .open(dir)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_unnamed(_dir: &Path) -> Option<File> {
    None
}

/// Gives the unnamed file `file` the name `path`; `AlreadyExists` if `path` exists.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let to = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: both arguments are NUL-terminated strings that outlive the call, which
    // only reads them; no memory of this process is written.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _path: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_read_from_our_names_only() {
        let d = OsStr::new("m.pte");
        assert_eq!(
            temp_owner(OsStr::new(".m.pte.ptekit-tmp.42.0"), d),
            Some(42)
        );
        assert_eq!(temp_owner(&temp_name(d), d), Some(std::process::id()));
        for other in [
            "m.pte",
            ".m.pte.ptekit-tmp.42",
            ".m.pte.ptekit-tmp.42.",
            ".m.pte.ptekit-tmp.x.0",
            ".m.pte.abc123.tmp",
            ".n.pte.ptekit-tmp.42.0",
            ".m.pte.other-tmp.42.0",
        ] {
            assert_eq!(temp_owner(OsStr::new(other), d), None, "{other}");
        }
    }
}
