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

/// Makes the calling thread a background thread for the scheduler
/// (`SCHED_BATCH`, same share of the CPU): when it wakes up it does not
/// preempt the thread running on that CPU (a model load), it waits for the
/// next tick. Threads it creates inherit this. Best effort: returns whether
/// the policy was set.
pub fn yield_on_wakeup() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // (priority 0, the only one SCHED_BATCH takes) that outlives the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) == 0 }
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

/// Private anonymous memory of whole pages (what a miss packs into), which
/// can later be replaced in place by the committed file pages holding the
/// same bytes ([`AnonPages::replace_with_file`]). Unmapped on drop, whatever
/// it maps by then.
pub struct AnonPages {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain process memory; after XNNPACK has packed into it nobody
// writes it, and it is only unmapped on drop.
unsafe impl Send for AnonPages {}
// SAFETY: see above; shared access is reads of immutable packed bytes.
unsafe impl Sync for AnonPages {}

impl AnonPages {
    /// At least `n` bytes (rounded up to whole pages), zero-filled, readable
    /// and writable. The pages are allocated at once (`MAP_POPULATE`): the
    /// caller (XNNPACK packing) writes every byte right away, and one call
    /// that fills the page table is much cheaper than a page fault per page
    /// (measured: a cold transformer load no slower than one without a
    /// cache, see the README).
    pub fn new(n: usize) -> io::Result<AnonPages> {
        let page = page_size();
        let len = n
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "size overflow"))?;
        // SAFETY: a fresh private mapping at an address the kernel chooses;
        // no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AnonPages {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block is empty (never true).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps the first `n` bytes (rounded up to whole pages) of `file` at
    /// offset `off` read-only over this block, at the same address. The
    /// caller guarantees that those file bytes equal the block's first `n`
    /// bytes, that `off` is page-aligned, and that the file extends past the
    /// start of the last page (no page of the range lies wholly past its
    /// end). Afterwards the pages are the file's page-cache pages (shared
    /// with every process mapping the file, reclaimable) instead of anonymous
    /// memory.
    pub fn replace_with_file(&self, file: &File, off: u64, n: usize) -> io::Result<()> {
        let page = page_size();
        let len = n
            .checked_next_multiple_of(page)
            .filter(|&l| l > 0 && l <= self.len)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "range outside the block")
            })?;
        if off % page as u64 != 0 || off > i64::MAX as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file offset not page-aligned",
            ));
        }
        // SAFETY: MAP_FIXED replaces pages of a mapping this block owns
        // (`ptr .. ptr+len` lies inside it), never memory of anyone else.
        // Other threads may be reading these pages meanwhile (XNNPACK
        // running the model). The kernel swaps the old mapping for the new
        // one while it holds this process's mmap_lock for writing; the old
        // VMA is write-locked before it is detached, so a page fault (through
        // the per-VMA lock or mmap_lock) waits until the new VMA is in place,
        // and the old pages are freed only after every CPU's TLB was flushed.
        // A reader therefore sees the old anonymous page or the new file
        // page, and both hold the same bytes (the caller's guarantee). Nobody
        // writes the block after packing, so PROT_READ loses nothing.
        let p = unsafe {
            libc::mmap(
                self.ptr.cast(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p != libc::MAP_FAILED {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // A failed MAP_FIXED may leave the range unmapped (when the file's
        // mapping failed after the old page tables were cleared). Then the
        // packed weights have a hole that a reader would fault on at some
        // later point, or that refilling would show as zeros for a moment:
        // stop here rather than risk wrong outputs. `msync` fails with
        // ENOMEM exactly when part of the range is unmapped.
        // SAFETY: msync only inspects the mappings of the range.
        let rc = unsafe { libc::msync(self.ptr.cast(), len, libc::MS_ASYNC) };
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM) {
            std::process::abort();
        }
        Err(err)
    }
}

impl Drop for AnonPages {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned (pages replaced by
        // file pages lie inside that range); the owner drops the block only
        // when no pointer into it is used any more.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}
