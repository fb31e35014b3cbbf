//! Which file a static buffer lies in. ExecuTorch's mmap data loader (used
//! by the Python runtime for a program loaded from a path) hands XNNPACK
//! pointers into read-only mappings of the `.pte` / `.ptd` file. Such a
//! buffer is named by the identity of that file — device, inode, size,
//! modification and status-change times — and its place in it; the cache
//! file remembers the content key of each named region ([`ptekit_cache::format::RegionMemo`]),
//! so a later load of the unchanged file needs no pass over the weights.
//!
//! Any change to the file changes its status-change time (which no user can
//! set), hence its regions' names. A file changed less than
//! [`SETTLE_SECS`] ago is not named at all: a second change within the
//! clock's granularity could otherwise keep the name. Only mappings without
//! write permission are used (a private writable mapping may differ from
//! the file).
//!
//! The mapping of an address is asked of the kernel with the `PROCMAP_QUERY`
//! ioctl on `/proc/self/maps` (Linux 6.11 and later: microseconds per
//! buffer); older kernels fall back to reading the whole file once per
//! runtime (milliseconds in a process with hundreds of mappings).

#![allow(
    unsafe_code,
    reason = "the PROCMAP_QUERY ioctl fills a C struct the kernel defines"
)]

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub use ptekit_cache::provider::RegionSource;

/// A file changed more recently than this many seconds is not named.
pub const SETTLE_SECS: i64 = 2;

#[derive(Clone, Debug)]
struct Mapping {
    start: usize,
    end: usize,
    offset: u64,
    dev: u64,
    ino: u64,
    path: PathBuf,
}

/// A mapped file's identity and the path it was opened by.
type Identified = (FileId, std::sync::Arc<PathBuf>);

/// The identity of a file, from `stat`.
#[derive(Clone, Copy, Debug)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The read-only file mappings of this process, asked for one runtime.
#[derive(Default)]
pub struct Regions {
    /// `/proc/self/maps`, open for `PROCMAP_QUERY` (None: not supported).
    query: Option<std::sync::Arc<std::fs::File>>,
    /// The parsed file, when the ioctl is not supported.
    maps: Vec<Mapping>,
    /// With `query`: the mappings the kernel returned for this runtime so
    /// far (each as returned, not joined), so a buffer in a mapping already
    /// asked about is answered without another ioctl.
    seen: Vec<Mapping>,
    /// `PROCMAP_QUERY` calls made for this runtime.
    asked: usize,
    /// Each mapped file's identity (and path) for this runtime.
    files: HashMap<(u64, u64), Option<Identified>>,
    now: i64,
}

/// A model file this process maps, opened once (by the path the kernel
/// gives for its mapping, checked to be the same device and inode): `fstat`
/// of the descriptor then gives the file's current identity for each
/// runtime without a path look-up, and the kernel is asked for the path of
/// this file's mappings only once.
struct OpenedFile {
    file: std::fs::File,
    path: std::sync::Arc<PathBuf>,
}

/// Files kept open by [`opened`]; when this many are open, all are closed
/// (and opened again on next use).
const MAX_OPENED: usize = 64;

/// The file mapped at `m`, opened once per process ([`OpenedFile`]); `None`
/// when its path is unknown or no longer names that file (device and inode).
/// A mapping from `PROCMAP_QUERY` without a path is asked again, with it,
/// for a file not opened yet.
fn opened(m: &Mapping, query: Option<&std::fs::File>) -> Option<std::sync::Arc<OpenedFile>> {
    type Opened = HashMap<(u64, u64), std::sync::Arc<OpenedFile>>;
    static OPENED: std::sync::Mutex<Option<Opened>> = std::sync::Mutex::new(None);
    let lock = || {
        OPENED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(f) = lock().as_ref().and_then(|o| o.get(&(m.dev, m.ino))) {
        return Some(f.clone());
    }
    let path = if m.path.as_os_str().is_empty() {
        let named = query_mapping(query?, m.start, true).ok()??;
        if (named.dev, named.ino) != (m.dev, m.ino) {
            return None;
        }
        named.path
    } else {
        m.path.clone()
    };
    let file = std::fs::File::open(&path).ok()?;
    let meta = file.metadata().ok()?;
    // The path must still name the mapped file.
    if (meta.dev(), meta.ino()) != (m.dev, m.ino) || !meta.is_file() {
        return None;
    }
    let f = std::sync::Arc::new(OpenedFile {
        file,
        path: std::sync::Arc::new(path),
    });
    let mut g = lock();
    let o = g.get_or_insert_with(HashMap::new);
    if o.len() >= MAX_OPENED {
        o.clear();
    }
    o.insert((m.dev, m.ino), f.clone());
    Some(f)
}

/// The identity of the file mapped at `m` from its status `meta`, unless it
/// is not that regular file or changed less than [`SETTLE_SECS`] before `now`.
fn file_id(meta: &std::fs::Metadata, m: &Mapping, now: i64) -> Option<FileId> {
    if (meta.dev(), meta.ino()) != (m.dev, m.ino) || !meta.is_file() {
        return None;
    }
    if meta.ctime() > now - SETTLE_SECS || meta.mtime() > now - SETTLE_SECS {
        return None;
    }
    Some(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// `struct procmap_query` of `include/uapi/linux/fs.h` (Linux 6.11).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

const _: () = assert!(std::mem::size_of::<ProcmapQuery>() == 104);

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: u64 = (3 << 30) | (104 << 16) | (0x66 << 8) | 17;
const VMA_READABLE: u64 = 0x01;
const VMA_WRITABLE: u64 = 0x02;
const FILE_BACKED_VMA: u64 = 0x20;

/// `/proc/self/maps` of this process, open once for `PROCMAP_QUERY` and
/// shared by all runtimes; `None` where the ioctl is not supported. A
/// descriptor opened by another process (inherited over `fork`) would
/// describe that process's mappings, so it is opened again after a fork.
fn query_file() -> Option<std::sync::Arc<std::fs::File>> {
    type Cached = Option<(u32, Option<std::sync::Arc<std::fs::File>>)>;
    static F: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    let pid = std::process::id();
    let mut g = F.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((p, f)) = &*g {
        if *p == pid {
            return f.clone();
        }
    }
    // Probe with an address that is surely file-mapped: this function.
    let f = std::fs::File::open("/proc/self/maps")
        .ok()
        .filter(|f| query_mapping(f, query_file as *const () as usize, true).is_ok())
        .map(std::sync::Arc::new);
    *g = Some((pid, f.clone()));
    f
}

/// The file mapping covering `addr`, from the kernel; `Err(())` when the
/// ioctl is not supported, `Ok(None)` when no readable file mapping covers it.
/// With `named`, the mapping's path too (a mapping whose path is not absolute
/// or is ` (deleted)` is then `None`); without, the kernel builds no path
/// and [`Mapping::path`] is empty.
fn query_mapping(maps: &std::fs::File, addr: usize, named: bool) -> Result<Option<Mapping>, ()> {
    let mut name = if named { vec![0u8; 4096] } else { Vec::new() };
    let mut q = ProcmapQuery {
        size: std::mem::size_of::<ProcmapQuery>() as u64,
        query_flags: FILE_BACKED_VMA,
        query_addr: addr as u64,
        vma_name_size: name.len() as u32,
        vma_name_addr: if named { name.as_mut_ptr() as u64 } else { 0 },
        ..ProcmapQuery::default()
    };
    // SAFETY: the kernel reads `q` (its size is in `q.size`) and writes the
    // out fields and at most `vma_name_size` bytes of the path into `name`;
    // both live across the call.
    let rc = unsafe {
        libc::ioctl(
            maps.as_raw_fd(),
            PROCMAP_QUERY as _,
            std::ptr::addr_of_mut!(q),
        )
    };
    if rc != 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(()),
        };
    }
    if q.vma_flags & VMA_READABLE == 0 || q.vma_flags & VMA_WRITABLE != 0 || q.inode == 0 {
        return Ok(None);
    }
    let path = if named {
        let n = (q.vma_name_size as usize).min(name.len());
        let path = name
            .get(..n)
            .and_then(|b| std::ffi::CStr::from_bytes_until_nul(b).ok())
            .and_then(|c| c.to_str().ok())
            .filter(|p| p.starts_with('/') && !p.ends_with(" (deleted)"));
        let Some(path) = path else { return Ok(None) };
        path
    } else {
        ""
    };
    Ok(Some(Mapping {
        start: usize::try_from(q.vma_start).map_err(|_| ())?,
        end: usize::try_from(q.vma_end).map_err(|_| ())?,
        offset: q.vma_offset,
        dev: libc::makedev(q.dev_major, q.dev_minor),
        ino: q.inode,
        path: PathBuf::from(path),
    }))
}

/// A range inside one read-only file mapping: the file and the offset in
/// it of the range's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// File offset of the first byte of the range.
    pub offset: u64,
}

/// Whether the kernel answers `PROCMAP_QUERY` here (Linux 6.11 and later).
pub fn procmap_query_supported() -> bool {
    query_file().is_some()
}

/// The read-only file mapping (one mapping as the kernel returns it) that
/// holds all of `addr .. addr + len`, from `PROCMAP_QUERY`; `None` when no
/// such mapping holds it or the ioctl is not supported. Asked without the
/// path (device, inode and offset identify it; the kernel builds no name).
pub fn mapped_range(addr: usize, len: usize) -> Option<MappedRange> {
    let end = addr.checked_add(len)?;
    let m = query_mapping(query_file()?.as_ref(), addr, false).ok()??;
    if !(m.start <= addr && end <= m.end) {
        return None;
    }
    Some(MappedRange {
        dev: m.dev,
        ino: m.ino,
        offset: m.offset.checked_add((addr - m.start) as u64)?,
    })
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let offset = it.next()?;
    let dev = it.next()?;
    let inode = it.next()?;
    let path = it.next()?.trim_start();
    if !perms.starts_with('r') || perms.contains('w') {
        return None;
    }
    if !path.starts_with('/') || path.ends_with(" (deleted)") {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    let (maj, min) = dev.split_once(':')?;
    let ino: u64 = inode.parse().ok()?;
    if ino == 0 {
        return None;
    }
    let major = u32::from_str_radix(maj, 16).ok()?;
    let minor = u32::from_str_radix(min, 16).ok()?;
    Some(Mapping {
        start: usize::from_str_radix(a, 16).ok()?,
        end: usize::from_str_radix(b, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: libc::makedev(major, minor),
        ino,
        path: PathBuf::from(path),
    })
}

impl Regions {
    /// Asks the kernel per buffer (`PROCMAP_QUERY`), or reads
    /// `/proc/self/maps` once where that is not supported (no mappings when
    /// unreadable: every buffer is then hashed).
    pub fn snapshot() -> Regions {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match query_file() {
            Some(f) => Regions {
                query: Some(f),
                maps: Vec::new(),
                seen: Vec::new(),
                asked: 0,
                files: HashMap::new(),
                now,
            },
            None => Regions::from_maps_file(now),
        }
    }

    /// The fallback: every read-only file mapping from `/proc/self/maps`.
    pub fn from_maps_file(now: i64) -> Regions {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut lines: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
        lines.sort_by_key(|m| m.start);
        // Adjacent mappings of consecutive bytes of one file are one region
        // (the kernel keeps separate mmap calls apart).
        let mut maps: Vec<Mapping> = Vec::with_capacity(lines.len());
        for m in lines {
            if let Some(last) = maps.last_mut() {
                let continues = last.end == m.start
                    && (last.dev, last.ino) == (m.dev, m.ino)
                    && last.offset.checked_add((last.end - last.start) as u64) == Some(m.offset);
                if continues {
                    last.end = m.end;
                    continue;
                }
            }
            maps.push(m);
        }
        Regions {
            query: None,
            maps,
            seen: Vec::new(),
            asked: 0,
            files: HashMap::new(),
            now,
        }
    }

    /// The mapping covering `ptr .. end`, adjacent mappings of consecutive
    /// bytes of one file joined.
    fn mapping(&mut self, ptr: usize, end: usize) -> Option<Mapping> {
        if self.query.is_none() {
            let i = self
                .maps
                .partition_point(|m| m.start <= ptr)
                .checked_sub(1)?;
            return self.maps.get(i).filter(|m| end <= m.end).cloned();
        }
        let mut m = self.vma(ptr)?;
        while m.end < end {
            let n = self.vma(m.end)?;
            let continues = n.start == m.end
                && (n.dev, n.ino) == (m.dev, m.ino)
                && m.offset.checked_add((m.end - m.start) as u64) == Some(n.offset);
            if !continues {
                return None;
            }
            m.end = n.end;
        }
        Some(m)
    }

    /// The readable file mapping holding `addr`: one already returned for
    /// this runtime, else asked of the kernel (and remembered). The
    /// mappings cannot change under a runtime creation that ExecuTorch's
    /// loader holds the data of.
    fn vma(&mut self, addr: usize) -> Option<Mapping> {
        if let Some(m) = self.seen.iter().find(|m| m.start <= addr && addr < m.end) {
            return Some(m.clone());
        }
        self.asked += 1;
        // Without its path: the kernel then builds none; the path is asked
        // for once per file and process ([`opened`]).
        let m = query_mapping(self.query.as_deref()?, addr, false).ok()??;
        self.seen.push(m.clone());
        Some(m)
    }

    fn file(&mut self, m: &Mapping) -> Option<Identified> {
        let now = self.now;
        let query = self.query.clone();
        self.files
            .entry((m.dev, m.ino))
            .or_insert_with(|| {
                let f = opened(m, query.as_deref())?;
                // The status of the mapped file itself (its descriptor), now.
                let meta = f.file.metadata().ok()?;
                file_id(&meta, m, now).map(|id| (id, f.path.clone()))
            })
            .clone()
    }

    /// Where the `len` bytes at `ptr` come from, when they lie inside one
    /// read-only mapping of a settled regular file: its path and identity,
    /// the offset, and the region's name (a digest of the file's identity,
    /// the offset and the length). `None` otherwise.
    pub fn locate(&mut self, ptr: usize, len: usize) -> Option<FileRegion> {
        let end = ptr.checked_add(len)?;
        if len == 0 {
            return None;
        }
        let m = self.mapping(ptr, end)?;
        let offset = m.offset.checked_add((ptr - m.start) as u64)?;
        let (f, path) = self.file(&m)?;
        if offset.checked_add(len as u64)? > f.size {
            return None;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"ptekit file region v1\0");
        for v in [f.dev, f.ino, f.size, offset, len as u64] {
            h.update(&v.to_le_bytes());
        }
        for v in [f.mtime.0, f.mtime.1, f.ctime.0, f.ctime.1] {
            h.update(&v.to_le_bytes());
        }
        Some(FileRegion {
            name: *h.finalize().as_bytes(),
            source: RegionSource {
                path: path.as_ref().clone(),
                dev: f.dev,
                ino: f.ino,
                size: f.size,
                mtime: f.mtime,
                ctime: f.ctime,
                offset,
                len: len as u64,
            },
        })
    }

    /// The name of the `len` bytes at `ptr` (see [`Regions::locate`]).
    pub fn name(&mut self, ptr: usize, len: usize) -> Option<[u8; 32]> {
        self.locate(ptr, len).map(|r| r.name)
    }
}

/// A buffer found in a mapped file: its name and where to read it again.
#[derive(Clone, Debug)]
pub struct FileRegion {
    /// The region's name (the key of its memo in the cache file).
    pub name: [u8; 32],
    /// The file and place.
    pub source: RegionSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_read_only_file_mappings_only() {
        let m = parse_line(
            "7fd51bd47000-7fd51bd48000 r--s 00002000 fe:01 5316662                    /a/b c.pte",
        )
        .expect("mapping");
        assert_eq!(
            (m.start, m.end, m.offset, m.ino),
            (0x7fd51bd47000, 0x7fd51bd48000, 0x2000, 5316662)
        );
        assert_eq!(m.dev, libc::makedev(0xfe, 1));
        assert_eq!(m.path, PathBuf::from("/a/b c.pte"));
        for l in [
            "7fd51bd47000-7fd51bd48000 rw-p 00000000 fe:00 5316662 /a.pte",
            "7fd51bd47000-7fd51bd48000 r--p 00000000 00:00 0 ",
            "7fd51bd47000-7fd51bd48000 r--p 00000000 fe:00 12 [heap]",
            "7fd51bd47000-7fd51bd48000 r--p 00000000 fe:00 12 /gone.pte (deleted)",
        ] {
            assert!(parse_line(l).is_none(), "{l}");
        }
    }

    /// `len` bytes of `byte` written to `path` and mapped read-only.
    fn mapped(path: &std::path::Path, byte: u8, len: usize) -> ptekit_cache::sys::SharedMap {
        std::fs::write(path, vec![byte; len]).expect("write");
        let f = std::fs::File::open(path).expect("open");
        ptekit_cache::sys::SharedMap::new(&f, len, false).expect("mmap")
    }

    /// A snapshot as if taken 10 s from now (every file settled).
    fn later() -> Regions {
        let mut r = Regions::snapshot();
        r.now += 10;
        r
    }

    #[test]
    fn names_a_settled_mapped_file_and_changes_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("w.bin");
        let map = mapped(&p, 7, 3 * 4096);
        let ptr = map.addr(4096, 100).expect("addr") as usize;
        // Too fresh: not named.
        assert!(Regions::snapshot().name(ptr, 100).is_none());
        let mut r = later();
        let a = r.name(ptr, 100).expect("named");
        // Another buffer of the same mapping: answered without asking the
        // kernel again, and named from the same file identity.
        let asked = r.asked;
        let b = r.locate(ptr + 200, 300).expect("named");
        assert_eq!((r.asked, b.source.offset), (asked, 4096 + 200));
        // The kernel query and the parsed file agree.
        let mut parsed = Regions::from_maps_file(r.now);
        assert_eq!(parsed.name(ptr, 100), Some(a));
        assert_eq!(parsed.name(ptr + 200, 300), Some(b.name));
        assert!(r.query.is_some(), "PROCMAP_QUERY on this kernel");
        assert_ne!(Some(a), r.name(ptr, 101));
        assert_ne!(Some(a), r.name(ptr + 1, 100));
        assert!(r.name(ptr, 3 * 4096).is_none(), "past the mapping");
        // Any change (here: permissions) changes the status-change time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut perm = std::fs::metadata(&p).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(&p, perm).expect("chmod");
        assert_ne!(later().name(ptr, 100), Some(a));
    }

    /// A mapped file is opened once per process: later runtimes take its
    /// identity from that descriptor (`fstat`), so a file renamed after it
    /// was first named keeps its name, the region source keeps the path it
    /// was opened by, and a change made through the new path still changes
    /// the name. A file first seen after it was renamed over is not named.
    #[test]
    fn identity_comes_from_the_mapped_file_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.bin");
        let map = mapped(&p, 9, 2 * 4096);
        let ptr = map.addr(0, 64).expect("addr") as usize;
        let mut r = later();
        let first = r.locate(ptr, 64).expect("named");
        assert_eq!(first.source.path, p);
        let moved = dir.path().join("y.bin");
        std::fs::rename(&p, &moved).expect("rename");
        let mut r = later();
        // rename changes the status-change time of the inode on most file
        // systems: then the name changes, else it stays; both are the
        // identity of the mapped file, never a miss.
        let again = r
            .locate(ptr, 64)
            .expect("still named: the descriptor is open");
        let ctime_same = again.source.ctime == first.source.ctime;
        assert_eq!(again.name == first.name, ctime_same);
        assert_eq!(again.source.ino, first.source.ino);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut perm = std::fs::metadata(&moved).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        std::fs::set_permissions(&moved, perm).expect("chmod");
        let mut r = later();
        let changed = r.locate(ptr, 64).expect("named");
        assert_ne!(changed.name, again.name, "chmod through the new path");
        // Another file, mapped, then replaced at its path before any runtime
        // asked about it: the path names another inode, so it is not named.
        let q = dir.path().join("z.bin");
        let map2 = mapped(&q, 1, 4096);
        let ptr2 = map2.addr(0, 64).expect("addr") as usize;
        let tmp = dir.path().join("z.tmp");
        std::fs::write(&tmp, vec![2u8; 4096]).expect("write");
        std::fs::rename(&tmp, &q).expect("replace");
        let mut r = later();
        assert!(r.locate(ptr2, 64).is_none());
    }
}
