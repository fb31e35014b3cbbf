//! A cache file on disk: opening and creating it, reading its index log,
//! reserving and committing ranges under the writer lock, and compaction.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{CacheError, FormatError};
use crate::format::{
    align_up, Entry, Header, Index, Record, RegionMemo, SlotState, Summary, DATA_ALIGN,
    EXTENT_ALIGN, HEADER_LEN, LAST_USE_AT, SLOT_SIZE,
};
use crate::sys::{self, AnonPages, SharedMap};

pub use crate::compact::{compact, CompactReport};

/// Entries of at least this many bytes are written at page-aligned offsets
/// (the format itself asks only for [`DATA_ALIGN`]).
pub const PAGE_ALIGNED_FROM: u64 = 64 << 10;
/// The page size large entries are aligned to. Where pages are larger,
/// packs whose entry does not start on a page stay in process memory until
/// the next launch maps them.
const PAGE: u64 = 4096;

/// Where an entry of `len` packed bytes goes when the next free byte of the
/// data region is `cursor`, and the next free byte after it. Ranges start on
/// [`DATA_ALIGN`]; large packs ([`PAGE_ALIGNED_FROM`]) start on a page, so
/// that a writer can map the committed pages over the memory it packed into.
/// `None` on offset overflow.
pub(crate) fn place_entry(cursor: u64, len: u64) -> Option<(u64, u64)> {
    let align = if len >= PAGE_ALIGNED_FROM {
        PAGE
    } else {
        DATA_ALIGN
    };
    let at = align_up(cursor, align)?;
    let next = align_up(at.checked_add(len.max(1))?, DATA_ALIGN)?;
    Some((at, next))
}

/// Options for opening a cache file.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// Open read-only even if the file is writable.
    pub read_only: bool,
    /// Create the file if it does not exist (ignored when read-only).
    pub create: bool,
    /// Index slots of a newly created file.
    pub slot_count: u32,
    /// How long a writer waits for the lock before falling back to the heap.
    pub lock_timeout: Duration,
    /// The largest size the file may reach (writers fall back to the heap
    /// beyond it). Every offset and size read from the file is bounded by the
    /// file's real size, so a forged record can never make a writer extend
    /// the file; this bounds legitimate growth. 0: the file's current size.
    pub max_file_bytes: u64,
    /// Flush packed bytes and the index record to stable storage before an
    /// entry counts as committed (protects against power loss, not only
    /// against a crashed process).
    pub durable: bool,
    /// Cap on the packed bytes of live entries (0: none). A commit that
    /// would pass it first withdraws the least recently used entries; their
    /// bytes stay in the file (other processes may still map them) until it
    /// is compacted.
    pub max_live_bytes: u64,
    /// Identity of the environment packing for this file: a file made by
    /// another XNNPACK build or for other CPU features is rebuilt (when
    /// writable) or refused, never served. `None` (tools that only read,
    /// verify or compact): any environment is accepted and kept.
    pub env: Option<crate::env::EnvIdentity>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            read_only: false,
            create: true,
            slot_count: crate::format::DEFAULT_SLOT_COUNT,
            lock_timeout: Duration::from_secs(10),
            max_file_bytes: 64 << 30,
            durable: true,
            max_live_bytes: 0,
            env: None,
        }
    }
}

/// An open cache file with its mapping and index.
pub struct CacheFile {
    path: PathBuf,
    pub(crate) file: File,
    writable: bool,
    map: Arc<SharedMap>,
    index: Index,
    ino: (u64, u64),
    locked: bool,
    opts: FileOptions,
    real_len: u64,
    retired: Vec<Arc<SharedMap>>,
    rebuilt: Option<String>,
}

pub(crate) fn random_id() -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&now.to_le_bytes());
    let local = 0u8;
    h.update(&(std::ptr::addr_of!(local) as usize).to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// Name of a temporary file of kind `tag` beside `path`, owned by this process:
/// `NAME.TAG.PID.tmp`. [`remove_stale_temps`] recognises these names.
fn tmp_path(path: &Path, tag: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".{tag}.{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Removes temporary files beside `path` that a killed cache writer or
/// compaction left behind: only names `NAME.new.PID.tmp` and
/// `NAME.compact.PID.tmp` of this cache file, and only when process `PID` no
/// longer exists. Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Some(base) = base.to_str() else { return 0 };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some((kind, pid)) = rest.split_once('.') else {
            continue;
        };
        if kind != "new" && kind != "compact" {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || sys::process_alive(pid) {
            continue;
        }
        if std::fs::remove_file(ent.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `header` as a new empty cache file and returns it unlinked
/// (`O_TMPFILE`) or under a temporary name (removed by the caller, or by
/// [`remove_stale_temps`] after a kill).
pub(crate) fn write_fresh(
    path: &Path,
    header: &Header,
    tag: &str,
) -> std::io::Result<(File, Option<PathBuf>)> {
    let (f, tmp) = match sys::open_tmpfile(path) {
        Ok(f) => (f, None),
        Err(_) => {
            let tmp = tmp_path(path, tag);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            (f, Some(tmp))
        }
    };
    let res = (|| {
        f.write_all_at(&header.encode(), 0)?;
        f.set_len(header.data_offset)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
        return Err(e);
    }
    Ok((f, tmp))
}

/// Writes a fresh, empty cache file at `path` atomically: the file appears
/// fully formed or not at all. Returns `false` if a file already exists.
fn create_new(path: &Path, slot_count: u32, env: &[u8; 32]) -> Result<bool, CacheError> {
    remove_stale_temps(path);
    let header = Header::new(slot_count, random_id(), *env);
    let (f, tmp) =
        write_fresh(path, &header, "new").map_err(|e| CacheError::io("create", path, e))?;
    let res = match &tmp {
        None => sys::link_tmpfile(&f, path),
        Some(t) => std::fs::hard_link(t, path),
    };
    if let Some(t) = &tmp {
        let _ = std::fs::remove_file(t);
    }
    let created = match res {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(CacheError::io("create", path, e)),
    };
    if created {
        sync_dir(path);
    }
    Ok(created)
}

/// Replaces the file at `path` with `f` (a fresh file from [`write_fresh`]) by
/// rename, so the change is atomic for every reader.
pub(crate) fn replace_with(path: &Path, f: &File, tmp: Option<PathBuf>) -> std::io::Result<()> {
    let tmp = match tmp {
        Some(t) => t,
        None => {
            let t = tmp_path(path, "new");
            let _ = std::fs::remove_file(&t);
            sys::link_tmpfile(f, &t)?;
            t
        }
    };
    let r = std::fs::rename(&tmp, path);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r?;
    sync_dir(path);
    Ok(())
}

/// Why a file with our magic cannot be used as it is (it is rebuilt when
/// writable): another format version, a broken header, another environment.
fn rebuild_reason(
    hb: &[u8],
    file_len: u64,
    env: Option<&crate::env::EnvIdentity>,
) -> Option<String> {
    let env = env?;
    match Header::decode(hb, file_len) {
        Ok(h) if h.env_digest != env.digest => Some(format!(
            "packed by another XNNPACK build or CPU (file environment {}, this process {})",
            crate::format::short_hex(&h.env_digest),
            crate::format::short_hex(&env.digest)
        )),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

impl CacheFile {
    /// Opens (and if allowed, creates) the cache file at `path`. A file
    /// with our magic that was made by another format version, another
    /// XNNPACK build or for other CPU features, or whose header is broken, is
    /// rebuilt empty when writable ([`CacheFile::rebuilt`] says why) and
    /// refused otherwise.
    pub fn open(path: &Path, opts: &FileOptions) -> Result<CacheFile, CacheError> {
        let want_write = !opts.read_only;
        if want_write && opts.create && !path.exists() {
            create_new(path, opts.slot_count, &env_digest(opts))?;
        }
        let mut rebuilt = None;
        for attempt in 0..3 {
            let (file, writable) = open_file(path, want_write)?;
            let meta = file
                .metadata()
                .map_err(|e| CacheError::io("stat", path, e))?;
            let file_len = meta.len();
            let mut hb = [0u8; HEADER_LEN];
            let n = read_full_at(&file, &mut hb, 0).map_err(|e| CacheError::io("read", path, e))?;
            let magic_ok = n >= 8 && hb[..8] == crate::format::MAGIC;
            let reason = if magic_ok {
                rebuild_reason(&hb[..n], file_len, opts.env.as_ref())
            } else {
                None
            };
            if let Some(reason) = reason {
                if !writable || attempt == 2 {
                    return Err(CacheError::Format {
                        path: path.to_path_buf(),
                        source: FormatError::Field {
                            field: "header",
                            offset: 0,
                            reason: format!("{reason}; not rebuilt (read-only)"),
                        },
                    });
                }
                rebuild(path, &file, opts)?;
                rebuilt = Some(reason);
                continue;
            }
            let header =
                Header::decode(&hb[..n], file_len).map_err(|source| CacheError::Format {
                    path: path.to_path_buf(),
                    source,
                })?;
            let map = map_window(&file, file_len.max(header.data_offset), path)?;
            let mut cf = CacheFile {
                path: path.to_path_buf(),
                file,
                writable,
                map: Arc::new(map),
                index: Index::new(header, file_len),
                ino: (meta.dev(), meta.ino()),
                locked: false,
                opts: opts.clone(),
                real_len: file_len,
                retired: Vec::new(),
                rebuilt: rebuilt.clone(),
            };
            cf.refresh()?;
            return Ok(cf);
        }
        Err(CacheError::Invalid(format!(
            "{}: could not open a usable cache file",
            path.display()
        )))
    }

    /// Why the file was rebuilt when it was opened, if it was.
    pub fn rebuilt(&self) -> Option<&str> {
        self.rebuilt.as_deref()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process may write the file.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The mapping (kept alive by the caller as long as pointers into it live).
    pub fn map(&self) -> &Arc<SharedMap> {
        &self.map
    }

    /// The index as read so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Byte accounting.
    pub fn summary(&self) -> Summary {
        self.index.summary()
    }

    /// Reads index slots written since the last call (by any process).
    pub fn refresh(&mut self) -> Result<(), CacheError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| CacheError::io("stat", &self.path, e))?
            .len();
        self.index.file_len = len.max(self.index.file_len);
        self.real_len = len;
        let batch = 64u32;
        let mut buf = vec![0u8; batch as usize * SLOT_SIZE];
        'outer: loop {
            let first = self.index.next_slot();
            let Some(first_off) = self.index.slot_offset(first) else {
                break;
            };
            // Never read across the end of an extent (a LINK moves the rest).
            let in_extent = self
                .index
                .extents
                .iter()
                .rev()
                .find(|e| e.first_slot <= first)
                .map_or(1, |e| e.first_slot + e.count - first);
            let count = batch.min(in_extent).max(1);
            let want = count as usize * SLOT_SIZE;
            let Some(chunk) = buf.get_mut(..want) else {
                break;
            };
            let got = read_full_at(&self.file, chunk, first_off)
                .map_err(|e| CacheError::io("read index", &self.path, e))?;
            let slots = got / SLOT_SIZE;
            if slots == 0 {
                break;
            }
            for i in 0..slots {
                let s = &chunk[i * SLOT_SIZE..(i + 1) * SLOT_SIZE];
                let off = first_off + (i * SLOT_SIZE) as u64;
                let r = Record::decode(s, off);
                match &r {
                    Ok(None) => break 'outer,
                    Err(_) if !self.locked => {
                        // A torn slot that is the last one written may be a
                        // write in progress: read it again next time.
                        let next_written = if i + 1 < slots {
                            chunk[(i + 1) * SLOT_SIZE..(i + 2) * SLOT_SIZE]
                                .iter()
                                .any(|&b| b != 0)
                        } else {
                            let mut nb = [0u8; SLOT_SIZE];
                            let n = read_full_at(&self.file, &mut nb, off + SLOT_SIZE as u64)
                                .unwrap_or(0);
                            nb[..n].iter().any(|&b| b != 0)
                        };
                        if !next_written {
                            break 'outer;
                        }
                    }
                    _ => {}
                }
                let linked = matches!(r, Ok(Some(Record::Link { .. })));
                self.index.apply(r);
                if linked {
                    // The following slots are in the linked extent.
                    continue 'outer;
                }
            }
            if slots < count as usize {
                break;
            }
        }
        Ok(())
    }

    /// Fails if the open file is now shorter than the longest length seen since it was
    /// opened: another process cut it while it was read, so what was read may mix the
    /// file before and after the cut. A reader that reports on the file calls this after
    /// reading, to give an error instead of that mix.
    pub fn check_not_shrunk(&self) -> Result<(), CacheError> {
        let now = self
            .file
            .metadata()
            .map_err(|e| CacheError::io("stat", &self.path, e))?
            .len();
        let seen = self.index.file_len.max(self.real_len);
        if now >= seen {
            return Ok(());
        }
        Err(CacheError::Format {
            path: self.path.clone(),
            source: FormatError::Field {
                field: "file length",
                offset: now,
                reason: format!(
                    "the file shrank from {seen} to {now} bytes while it was read \
                     (another process truncated it); run again"
                ),
            },
        })
    }

    /// Whether the file at our path is still the file we have open (compaction
    /// replaces it by rename).
    pub fn is_current(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) == self.ino,
            Err(_) => false,
        }
    }

    /// Takes the writer lock. `Ok(false)`: timed out.
    pub fn lock(&mut self) -> Result<bool, CacheError> {
        self.lock_within(self.opts.lock_timeout)
    }

    /// Takes the writer lock, waiting at most `timeout`. `Ok(false)`: timed out.
    pub fn lock_within(&mut self, timeout: Duration) -> Result<bool, CacheError> {
        if self.locked {
            return Ok(true);
        }
        let ok = sys::lock_exclusive(&self.file, timeout)
            .map_err(|e| CacheError::io("flock", &self.path, e))?;
        self.locked = ok;
        Ok(ok)
    }

    /// Releases the writer lock.
    pub fn unlock(&mut self) {
        if self.locked {
            sys::unlock(&self.file);
            self.locked = false;
        }
    }

    /// Whether we hold the writer lock.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    fn write_record(&mut self, rec: &Record) -> Result<u32, CacheError> {
        debug_assert!(self.locked);
        let slot = self.index.next_slot();
        let Some(at) = self.index.slot_offset(slot) else {
            return Err(CacheError::Invalid(format!(
                "index of {} is full ({} slots); compact it",
                self.path.display(),
                self.index.capacity()
            )));
        };
        let bytes = rec.encode();
        self.file
            .write_all_at(&bytes, at)
            .map_err(|e| CacheError::io("write index", &self.path, e))?;
        self.index.apply(Ok(Some(rec.clone())));
        Ok(slot)
    }

    /// Reserves `len` bytes of data space (lock held): records the range,
    /// allocates disk blocks, and returns its file offset.
    pub fn reserve(&mut self, len: u64) -> Result<u64, CacheError> {
        if !self.locked {
            return Err(CacheError::Invalid(
                "reserve without the writer lock".into(),
            ));
        }
        let len = align_up(len.max(1), DATA_ALIGN)
            .ok_or_else(|| CacheError::Invalid(format!("reservation of {len} bytes")))?;
        let off = align_up(self.index.alloc_end, DATA_ALIGN)
            .ok_or_else(|| CacheError::Invalid("allocation mark overflow".into()))?;
        let end = off
            .checked_add(len)
            .ok_or_else(|| CacheError::Invalid("allocation overflow".into()))?;
        let max = self.max_len();
        if end > max {
            return Err(CacheError::Invalid(format!(
                "file would exceed its configured maximum of {max} bytes"
            )));
        }
        if self.index.slots_left_from(self.index.next_slot()) < 2 {
            return Err(CacheError::Invalid(format!(
                "index of {} is full; compact it",
                self.path.display()
            )));
        }
        // Withdraw entries a truncation cut off before the file grows back
        // over their ranges.
        for slot in self.index.out_of_bounds_undropped() {
            self.write_record(&Record::Drop {
                slot,
                pid: std::process::id(),
            })?;
        }
        let cur = self.index.file_len;
        if end > cur {
            // Grow in large extents: the data size so far, between 1 and 64 MiB.
            let data = cur.saturating_sub(self.index.header.data_offset);
            let step = data.clamp(1 << 20, 64 << 20);
            let target = align_up(end.max(cur.saturating_add(step)), 1 << 20)
                .unwrap_or(end)
                .min(max)
                .max(end);
            sys::allocate(&self.file, cur, target - cur)
                .map_err(|e| CacheError::io("allocate", &self.path, e))?;
            self.index.file_len = target;
            self.real_len = target;
        } else {
            // Blocks may be missing if another tool truncated and regrew the
            // file; allocating an allocated range is cheap.
            sys::allocate(&self.file, off, len)
                .map_err(|e| CacheError::io("allocate", &self.path, e))?;
        }
        self.write_record(&Record::Reserve {
            data_offset: off,
            data_len: len,
            pid: std::process::id(),
        })?;
        Ok(off)
    }

    /// Commits an entry whose bytes are in place (lock held): flushes the
    /// bytes, then writes the index record, then flushes the record.
    pub fn commit(&mut self, entry: Entry) -> Result<u32, CacheError> {
        if !self.locked {
            return Err(CacheError::Invalid("commit without the writer lock".into()));
        }
        if self.opts.durable {
            sys::datasync(&self.file).map_err(|e| CacheError::io("fdatasync", &self.path, e))?;
        }
        let slot = self.write_record(&Record::Entry(entry))?;
        if self.opts.durable {
            sys::datasync(&self.file).map_err(|e| CacheError::io("fdatasync", &self.path, e))?;
        }
        Ok(slot)
    }

    fn max_len(&self) -> u64 {
        if self.opts.max_file_bytes == 0 {
            self.real_len
        } else {
            self.opts.max_file_bytes
        }
    }

    /// The packed bytes of an entry, through the mapping, if the entry lies
    /// inside the file as it was at the last [`CacheFile::refresh`] (so
    /// nothing past the end of a truncated file is touched).
    pub fn entry_bytes(&self, e: &Entry) -> Option<&[u8]> {
        let end = e.data_offset.checked_add(e.data_len)?;
        if end > self.real_len.min(self.index.file_len) {
            return None;
        }
        self.map
            .slice(e.data_offset, usize::try_from(e.data_len).ok()?)
    }

    /// Maps the committed bytes of `e` over `pages` (which hold the same
    /// bytes), if `e` starts on a page and lies inside the file as it was at
    /// the last [`CacheFile::refresh`].
    pub fn map_entry_over(&self, pages: &AnonPages, e: &Entry) -> Result<(), CacheError> {
        let n = usize::try_from(e.data_len)
            .map_err(|_| CacheError::Invalid(format!("entry of {} bytes", e.data_len)))?;
        if self.entry_bytes(e).is_none() || n > pages.len() {
            return Err(CacheError::Invalid(format!(
                "entry at {} ({} bytes) is not inside {}",
                e.data_offset,
                e.data_len,
                self.path.display()
            )));
        }
        pages
            .replace_with_file(&self.file, e.data_offset, n)
            .map_err(|err| CacheError::io("mmap", &self.path, err))
    }

    /// Checks an entry's packed bytes against its digest, reading them with
    /// `pread` (a file truncated meanwhile gives a short read, not `SIGBUS`).
    pub fn verify_entry(&self, e: &Entry) -> bool {
        read_digest(&self.file, e.data_offset, e.data_len).is_some_and(|d| d == e.data_digest)
    }

    /// Writes the packed bytes of several new entries and commits them (lock
    /// held): the index is re-read; keys some other process committed
    /// meanwhile are not written again (their result is that entry); the
    /// bytes of the others go to the end of the data, are flushed with one
    /// `fdatasync` (when durable), then their records are appended in one
    /// write, followed by the new file-region `memos`. When the index has no
    /// room it continues in a new extent (a `LINK` record); with a size cap
    /// ([`FileOptions::max_live_bytes`]) the least recently used entries are
    /// withdrawn first; the tail past the last record is trimmed. A writer
    /// killed at any point leaves no record naming unwritten bytes. Returns,
    /// per item, the committed entry and whether it was written by this call.
    pub fn commit_batch(
        &mut self,
        items: &[(&[u8], Entry)],
        memos: &[RegionMemo],
    ) -> Result<Vec<(Entry, bool)>, CacheError> {
        if !self.locked {
            return Err(CacheError::Invalid("commit without the writer lock".into()));
        }
        self.refresh()?;
        let now = unix_now();
        let mut out: Vec<Option<(Entry, bool)>> = Vec::with_capacity(items.len());
        let mut new: Vec<(usize, Entry)> = Vec::new();
        for (i, (bytes, e)) in items.iter().enumerate() {
            if let Some((_, found)) = self.index.find(&e.key()) {
                out.push(Some((found.clone(), false)));
                continue;
            }
            out.push(None);
            if new.iter().any(|(_, n)| n.key() == e.key()) {
                continue;
            }
            let mut ne = e.clone();
            ne.data_len = bytes.len() as u64;
            ne.last_use = now;
            new.push((i, ne));
        }
        let mut memo_recs: Vec<Record> = Vec::new();
        for m in memos {
            let dup = memo_recs
                .iter()
                .any(|r| matches!(r, Record::Memo { region, .. } if *region == m.region));
            if !dup && self.index.memo(&m.region).is_none() {
                memo_recs.push(Record::Memo {
                    region: m.region,
                    content: m.content,
                    len: m.len,
                    pid: std::process::id(),
                });
            }
        }
        let new_bytes: u64 = new.iter().map(|(_, e)| e.data_len).sum();
        let evict = self.lru_victims(new_bytes)?;
        if !new.is_empty() || !memo_recs.is_empty() {
            let drops = self.index.out_of_bounds_undropped();
            let needed = new.len() + memo_recs.len() + drops.len() + evict.len();
            let mut cursor = align_up(
                self.index.alloc_end.max(self.index.header.data_offset),
                DATA_ALIGN,
            )
            .ok_or_else(|| CacheError::Invalid("allocation mark overflow".into()))?;
            // Withdraw entries a truncation cut off before the file grows
            // back over their ranges, and the evicted ones.
            let pid = std::process::id();
            let withdraw: Vec<Record> = drops
                .into_iter()
                .chain(evict)
                .map(|slot| Record::Drop { slot, pid })
                .collect();
            // One slot stays free for a LINK.
            let room = self.index.slots_left_from(self.index.next_slot());
            if u64::try_from(needed).unwrap_or(u64::MAX) + 1 > u64::from(room) {
                cursor = self.grow_index(cursor, needed)?;
            }
            for r in &withdraw {
                self.write_record(r)?;
            }
            for (_, ne) in &mut new {
                let (at, next) = place_entry(cursor, ne.data_len)
                    .ok_or_else(|| CacheError::Invalid("allocation overflow".into()))?;
                ne.data_offset = at;
                cursor = next;
            }
            let max = self.max_len();
            if cursor > max {
                return Err(CacheError::Invalid(format!(
                    "file would exceed its configured maximum of {max} bytes"
                )));
            }
            for (i, ne) in &new {
                let Some((bytes, _)) = items.get(*i) else {
                    continue;
                };
                self.file
                    .write_all_at(bytes, ne.data_offset)
                    .map_err(|e| CacheError::io("write", &self.path, e))?;
            }
            if self.opts.durable && !new.is_empty() {
                sys::datasync(&self.file)
                    .map_err(|e| CacheError::io("fdatasync", &self.path, e))?;
            }
            let recs: Vec<Record> = new
                .iter()
                .map(|(_, ne)| Record::Entry(ne.clone()))
                .chain(memo_recs)
                .collect();
            let mut bytes = Vec::with_capacity(recs.len() * SLOT_SIZE);
            for r in &recs {
                bytes.extend_from_slice(&r.encode());
            }
            let at = self
                .index
                .slot_offset(self.index.next_slot())
                .ok_or_else(|| {
                    CacheError::Invalid(format!("index of {} is full", self.path.display()))
                })?;
            self.file
                .write_all_at(&bytes, at)
                .map_err(|e| CacheError::io("write index", &self.path, e))?;
            let end = new
                .iter()
                .map(|(_, e)| e.data_offset + e.data_len)
                .max()
                .unwrap_or(0);
            self.real_len = self.real_len.max(end);
            self.index.file_len = self.index.file_len.max(end);
            for r in recs {
                self.index.apply(Ok(Some(r)));
            }
            for (i, ne) in new {
                if let Some(o) = out.get_mut(i) {
                    *o = Some((ne, true));
                }
            }
            self.ensure_mapped(end)?;
        }
        self.trim_tail();
        // Duplicates inside the batch take the entry of their first copy.
        let mut res = Vec::with_capacity(items.len());
        for (i, (_, e)) in items.iter().enumerate() {
            match out.get(i).cloned().flatten() {
                Some(r) => res.push(r),
                None => match self.index.find(&e.key()) {
                    Some((_, f)) => res.push((f.clone(), false)),
                    None => return Err(CacheError::Invalid("batch entry not committed".into())),
                },
            }
        }
        Ok(res)
    }

    /// Continues the index in a new zero-filled extent at `cursor` with room
    /// for at least `needed` records (lock held); returns the allocation
    /// cursor after it. The extent is flushed before the `LINK` naming it is
    /// written, so a reader never follows a link into stale bytes.
    fn grow_index(&mut self, cursor: u64, needed: usize) -> Result<u64, CacheError> {
        let path = self.path.clone();
        let full = || CacheError::Invalid(format!("index of {} is full", path.display()));
        let at = align_up(cursor, EXTENT_ALIGN).ok_or_else(full)?;
        let want = u64::try_from(needed).unwrap_or(u64::MAX).saturating_add(64);
        let slots = u64::from(self.index.capacity()).max(want);
        let slots = u32::try_from(slots).map_err(|_| full())?;
        let len = u64::from(slots) * SLOT_SIZE as u64;
        let end = at.checked_add(len).ok_or_else(full)?;
        if end > self.max_len() {
            return Err(CacheError::Invalid(format!(
                "file would exceed its configured maximum of {} bytes",
                self.max_len()
            )));
        }
        let zeros = vec![0u8; 1 << 20];
        let mut off = at;
        while off < end {
            let n = usize::try_from((end - off).min(zeros.len() as u64)).unwrap_or(zeros.len());
            self.file
                .write_all_at(&zeros[..n], off)
                .map_err(|e| CacheError::io("write index extent", &self.path, e))?;
            off += n as u64;
        }
        if self.opts.durable {
            sys::datasync(&self.file).map_err(|e| CacheError::io("fdatasync", &self.path, e))?;
        }
        self.real_len = self.real_len.max(end);
        self.index.file_len = self.index.file_len.max(end);
        self.write_record(&Record::Link {
            offset: at,
            slots,
            pid: std::process::id(),
        })?;
        align_up(end, DATA_ALIGN).ok_or_else(full)
    }

    /// Slots of the live entries to withdraw, least recently used first, so
    /// that `new_bytes` more fit under [`FileOptions::max_live_bytes`].
    fn lru_victims(&self, new_bytes: u64) -> Result<Vec<u32>, CacheError> {
        let cap = self.opts.max_live_bytes;
        if cap == 0 || new_bytes == 0 {
            return Ok(Vec::new());
        }
        if new_bytes > cap {
            return Err(CacheError::Invalid(format!(
                "{new_bytes} packed bytes exceed the size cap of {cap} bytes"
            )));
        }
        let mut live: Vec<(u64, u32, u64)> = self
            .index
            .live()
            .map(|(slot, e)| (e.last_use, slot, e.data_len))
            .collect();
        let mut total: u64 = live.iter().map(|x| x.2).sum();
        live.sort_unstable();
        let mut out = Vec::new();
        for (_, slot, len) in live {
            if total.saturating_add(new_bytes) <= cap {
                break;
            }
            total = total.saturating_sub(len);
            out.push(slot);
        }
        Ok(out)
    }

    /// Cuts the file after the last byte any record names (lock held): bytes
    /// a killed writer left there are never served and would only grow the
    /// file.
    fn trim_tail(&mut self) {
        let end = self.index.alloc_end.max(self.index.header.data_offset);
        if self.real_len > end
            && self.index.out_of_bounds_undropped().is_empty()
            && self.file.set_len(end).is_ok()
        {
            self.real_len = end;
            self.index.file_len = end;
        }
    }

    /// Records that the entry in `slot` was used now (advisory, for
    /// least-recently-used eviction; at most once a minute per entry).
    pub fn touch(&mut self, slot: u32) {
        if !self.writable {
            return;
        }
        let now = unix_now();
        let Some(SlotState::Live(e)) = self.index.slots.get_mut(slot as usize) else {
            return;
        };
        if e.last_use.saturating_add(60) > now {
            return;
        }
        e.last_use = now;
        if let Some(at) = self.index.slot_offset(slot) {
            let _ = self
                .file
                .write_all_at(&now.to_le_bytes(), at + LAST_USE_AT as u64);
        }
    }

    /// Makes sure the mapping covers file offsets below `end`, mapping the
    /// file again (with room to grow) if needed. The old mapping stays alive
    /// as long as this file (pointers handed out into it stay valid).
    pub fn ensure_mapped(&mut self, end: u64) -> Result<(), CacheError> {
        if end <= self.map.len() as u64 {
            return Ok(());
        }
        let m = map_window(&self.file, end, &self.path)?;
        let old = std::mem::replace(&mut self.map, Arc::new(m));
        self.retired.push(old);
        Ok(())
    }
}

/// BLAKE3 of `len` bytes of `f` at `off`, read with `pread`; `None` if the
/// file ends early or a read fails.
pub fn hash_file_range(f: &File, off: u64, len: u64) -> Option<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).ok()?;
        let chunk = buf.get_mut(..n)?;
        let got = read_full_at(f, chunk, off.checked_add(done)?).ok()?;
        if got != n {
            return None;
        }
        h.update(chunk);
        done += n as u64;
    }
    Some(h.finalize())
}

/// First 16 bytes of BLAKE3 of `len` bytes of `f` at `off` (see
/// [`hash_file_range`]).
pub fn read_digest(f: &File, off: u64, len: u64) -> Option<[u8; 16]> {
    let mut d = [0u8; 16];
    d.copy_from_slice(&hash_file_range(f, off, len)?.as_bytes()[..16]);
    Some(d)
}

/// The environment digest new files get: the configured one, else that of
/// an unspecified build on this CPU.
fn env_digest(opts: &FileOptions) -> [u8; 32] {
    match &opts.env {
        Some(e) => e.digest,
        None => crate::env::EnvIdentity::default().digest,
    }
}

fn open_file(path: &Path, want_write: bool) -> Result<(File, bool), CacheError> {
    if want_write {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(CacheError::io("open", path, e)),
        }
    }
    let f = File::open(path).map_err(|e| CacheError::io("open", path, e))?;
    Ok((f, false))
}

/// Maps the file read-only with room to grow: twice its size, at least
/// 256 MiB (address space only). A larger file is mapped again on demand.
fn map_window(file: &File, len: u64, path: &Path) -> Result<SharedMap, CacheError> {
    let want = len.saturating_mul(2).max(256 << 20);
    let want = usize::try_from(want).unwrap_or(usize::MAX / 2);
    let min = usize::try_from(len.max(1)).unwrap_or(usize::MAX / 2);
    SharedMap::new_window(file, min, want, false).map_err(|e| CacheError::io("mmap", path, e))
}

/// Replaces the file at `path` (open as `old`) with a fresh empty one, under
/// the writer lock of the old file so that no commit is lost in between.
fn rebuild(path: &Path, old: &File, opts: &FileOptions) -> Result<(), CacheError> {
    if !sys::lock_exclusive(old, opts.lock_timeout).map_err(|e| CacheError::io("flock", path, e))? {
        return Err(CacheError::LockTimeout {
            path: path.to_path_buf(),
            waited_ms: opts.lock_timeout.as_millis() as u64,
        });
    }
    let res = (|| {
        // Someone else may have rebuilt it while we waited for the lock.
        let same = match (std::fs::metadata(path), old.metadata()) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        if !same {
            return Ok(());
        }
        remove_stale_temps(path);
        let header = Header::new(opts.slot_count, random_id(), env_digest(opts));
        let (f, tmp) = write_fresh(path, &header, "new")?;
        replace_with(path, &f, tmp)
    })();
    sys::unlock(old);
    res.map_err(|e| CacheError::io("rebuild", path, e))
}

impl Drop for CacheFile {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// First 16 bytes of BLAKE3 of `bytes`.
pub fn data_digest(bytes: &[u8]) -> [u8; 16] {
    let mut d = [0u8; 16];
    d.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    d
}

/// Reads as many bytes as available up to `buf.len()` at `off`.
pub fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Counts the slots of `index` that failed to parse.
pub fn torn_slots(index: &Index) -> Vec<(u32, FormatError)> {
    index
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            SlotState::Torn(e) => Some((i as u32, e.clone())),
            _ => None,
        })
        .collect()
}
