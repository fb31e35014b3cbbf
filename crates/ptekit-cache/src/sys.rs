//! Small safe wrappers over the OS calls the cache needs: shared file mappings,
//! advisory file locks, block allocation and flushing.
//!
//! Every `unsafe` block of the crate that touches the OS lives here or in
//! [`crate::provider`] (the FFI callbacks), each with a `SAFETY:` comment.

#![allow(
    unsafe_code,
    reason = "mmap, file locks and page-level system calls wrapped in a safe API"
)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The size of a memory page on this machine.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v <= 0 {
        4096
    } else {
        v as usize
    }
}

/// A `MAP_SHARED` mapping of a window of a file, starting at file offset 0.
///
/// The window may be larger than the file: bytes past the end of the file are
/// never handed out (the cache only uses ranges it has checked against the
/// file length), so the mapping never has to move when the file grows, and a
/// pointer into it stays valid for the whole life of the mapping.
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain memory shared with the kernel; the cache
// coordinates writes to it (reservations are disjoint), and the pointer is only
// unmapped on drop.
unsafe impl Send for SharedMap {}
// SAFETY: see above; shared access is reads of committed, immutable bytes.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file` from offset 0. `writable` asks for
    /// `PROT_READ | PROT_WRITE` (the file must be open for writing).
    pub fn new(file: &File, len: usize, writable: bool) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping at an address the kernel chooses, of a file
        // descriptor we own for the duration of the call; no existing memory is
        // affected. MAP_NORESERVE: the window is mostly address space.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap {
            ptr: ptr.cast(),
            len,
            writable,
        })
    }

    /// Maps the largest window not above `max_len` and not below `min_len`,
    /// halving on failure (address-space limits such as `ulimit -v`).
    pub fn new_window(
        file: &File,
        min_len: usize,
        max_len: usize,
        writable: bool,
    ) -> io::Result<SharedMap> {
        let mut len = max_len.max(min_len);
        loop {
            match SharedMap::new(file, len, writable) {
                Ok(m) => return Ok(m),
                Err(e) => {
                    let half = len / 2;
                    if half < min_len || half == 0 {
                        return Err(e);
                    }
                    len = half;
                }
            }
        }
    }

    /// Window length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty (never true for a live mapping).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping allows writes.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Address of file offset `off`, if `off + n` lies inside the window.
    pub fn addr(&self, off: u64, n: u64) -> Option<*mut u8> {
        let end = off.checked_add(n)?;
        if end > self.len as u64 {
            return None;
        }
        // SAFETY: off < len checked above, so the result stays inside the mapping.
        Some(unsafe { self.ptr.add(off as usize) })
    }

    /// Whether `p .. p+n` lies inside this window.
    pub fn contains(&self, p: *const u8, n: usize) -> bool {
        let start = self.ptr as usize;
        let a = p as usize;
        a >= start && a.checked_add(n).is_some_and(|e| e <= start + self.len)
    }

    /// File offset of address `p` (which must lie inside the window).
    pub fn offset_of(&self, p: *const u8) -> Option<u64> {
        if self.contains(p, 0) {
            Some((p as usize - self.ptr as usize) as u64)
        } else {
            None
        }
    }

    /// Borrow `n` bytes at file offset `off`. The caller guarantees the range
    /// is inside the file (checked against its length) and not being written.
    pub fn slice(&self, off: u64, n: usize) -> Option<&[u8]> {
        let p = self.addr(off, n as u64)?;
        // SAFETY: inside the window (checked by addr); the cache only calls
        // this for committed ranges below the file length, which no one writes.
        Some(unsafe { std::slice::from_raw_parts(p, n) })
    }

    /// Synchronously flushes the pages covering file range `off .. off+n`.
    pub fn flush(&self, off: u64, n: u64) -> io::Result<()> {
        let ps = page_size() as u64;
        let start = off - off % ps;
        let end = off
            .checked_add(n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflow"))?;
        if end > self.len as u64 || n == 0 {
            return Ok(());
        }
        // SAFETY: start is page aligned and inside the mapping; the range
        // [start, end) lies within the window (checked above).
        let rc = unsafe {
            libc::msync(
                self.ptr.add(start as usize).cast(),
                (end - start) as usize,
                libc::MS_SYNC,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the
        // mapping past the owner's lifetime (the cache keeps its maps alive as
        // long as any pointer it handed out may be used).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Takes an exclusive `flock` on `file`, polling until `timeout`.
/// Returns `Ok(false)` on timeout.
pub fn lock_exclusive(file: &File, timeout: Duration) -> io::Result<bool> {
    let start = Instant::now();
    let mut sleep = Duration::from_micros(200);
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) && err.kind() != io::ErrorKind::Interrupted
        {
            return Err(err);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(20));
    }
}

/// Releases a `flock` taken by [`lock_exclusive`].
pub fn unlock(file: &File) {
    // SAFETY: flock on a descriptor we own; no memory is involved.
    unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_UN);
    }
}

/// Allocates disk blocks for `off .. off+len` (growing the file if needed), so
/// later writes through a mapping cannot fail with `SIGBUS` on a full disk.
/// Falls back to `ftruncate` where the filesystem has no `fallocate`.
pub fn allocate(file: &File, off: u64, len: u64) -> io::Result<()> {
    let end = off
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflow"))?;
    if end > i64::MAX as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file too large",
        ));
    }
    // SAFETY: fallocate on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, off as i64, len as i64) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            let cur = file.metadata()?.len();
            if end > cur {
                file.set_len(end)?;
            }
            Ok(())
        }
        _ => Err(err),
    }
}

/// Flushes file data (not metadata unless needed for data retrieval).
pub fn datasync(file: &File) -> io::Result<()> {
    file.sync_data()
}

/// Resident memory of this process from `/proc/self/status`, in KiB:
/// `(RssAnon, RssFile, RssShmem)`.
pub fn rss_kib() -> Option<(u64, u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let get = |k: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(k))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((get("RssAnon:")?, get("RssFile:")?, get("RssShmem:")?))
}

/// Whether a process with id `pid` exists (signal 0 probe; `EPERM` means it
/// exists but belongs to someone else).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// An unnamed file (`O_TMPFILE`) in the folder of `path`, mode 0644 before
/// the umask. Fails where the filesystem has no `O_TMPFILE`.
pub fn open_tmpfile(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir)
}

/// Gives the unnamed file `f` (from [`open_tmpfile`]) the name `path`;
/// fails with `AlreadyExists` if `path` exists.
pub fn link_tmpfile(f: &File, path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let src = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dst = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: both strings are NUL-terminated and live across the call;
    // linkat only reads them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
