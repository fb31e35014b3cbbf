//! A cache file on disk: opening and creating it, reading its index log,
//! reserving and committing ranges under the writer lock, and compaction.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{CacheError, FormatError};
use crate::format::{
    align_up, Entry, Header, Index, Record, SlotState, Summary, DATA_ALIGN, HEADER_LEN, SLOT_SIZE,
};
use crate::sys::{self, SharedMap};

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
    /// Address space reserved for the file mapping (the largest file size the
    /// process can use without remapping).
    pub max_file_bytes: u64,
    /// Flush packed bytes and the index record to stable storage before an
    /// entry counts as committed (protects against power loss, not only
    /// against a crashed process).
    pub durable: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            read_only: false,
            create: true,
            slot_count: crate::format::DEFAULT_SLOT_COUNT,
            lock_timeout: Duration::from_secs(10),
            max_file_bytes: 1 << 40,
            durable: true,
        }
    }
}

/// An open cache file with its mapping and index.
pub struct CacheFile {
    path: PathBuf,
    file: File,
    writable: bool,
    map: Arc<SharedMap>,
    index: Index,
    ino: (u64, u64),
    locked: bool,
    opts: FileOptions,
}

fn random_id() -> [u8; 16] {
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

fn tmp_path(path: &Path, tag: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".{tag}.{}.tmp", std::process::id()));
    path.with_file_name(name)
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

/// Writes a fresh, empty cache file at `path` atomically: the file appears
/// fully formed or not at all. Returns `false` if a file already exists.
fn create_new(path: &Path, slot_count: u32) -> Result<bool, CacheError> {
    let tmp = tmp_path(path, "new");
    let header = Header::new(slot_count, random_id());
    let res = (|| -> std::io::Result<bool> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all_at(&header.encode(), 0)?;
        f.set_len(header.data_offset)?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = res.map_err(|e| CacheError::io("create", path, e))?;
    if created {
        sync_dir(path);
    }
    Ok(created)
}

impl CacheFile {
    /// Opens (and if allowed, creates) the cache file at `path`.
    pub fn open(path: &Path, opts: &FileOptions) -> Result<CacheFile, CacheError> {
        let want_write = !opts.read_only;
        if want_write && opts.create && !path.exists() {
            create_new(path, opts.slot_count)?;
        }
        let (file, writable) = if want_write {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => (
                    File::open(path).map_err(|e| CacheError::io("open", path, e))?,
                    false,
                ),
                Err(e) => return Err(CacheError::io("open", path, e)),
            }
        } else {
            (
                File::open(path).map_err(|e| CacheError::io("open", path, e))?,
                false,
            )
        };
        let meta = file
            .metadata()
            .map_err(|e| CacheError::io("stat", path, e))?;
        let file_len = meta.len();
        let mut hb = [0u8; HEADER_LEN];
        let n = read_full_at(&file, &mut hb, 0).map_err(|e| CacheError::io("read", path, e))?;
        let header = Header::decode(&hb[..n], file_len).map_err(|source| CacheError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let window = opts.max_file_bytes.max(file_len).max(header.data_offset);
        let window = usize::try_from(window).unwrap_or(usize::MAX / 2);
        let min = usize::try_from(file_len.max(header.data_offset)).unwrap_or(usize::MAX / 2);
        let map = SharedMap::new_window(&file, min, window, writable)
            .map_err(|e| CacheError::io("mmap", path, e))?;
        let mut cf = CacheFile {
            path: path.to_path_buf(),
            file,
            writable,
            map: Arc::new(map),
            index: Index::new(header, file_len),
            ino: (meta.dev(), meta.ino()),
            locked: false,
            opts: opts.clone(),
        };
        cf.refresh()?;
        Ok(cf)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process may write the file.
    pub fn writable(&self) -> bool {
        self.writable && self.map.writable()
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
        let header = self.index.header.clone();
        let batch = 64u32;
        let mut buf = vec![0u8; batch as usize * SLOT_SIZE];
        'outer: while self.index.next_slot() < header.slot_count {
            let first = self.index.next_slot();
            let count = batch.min(header.slot_count - first);
            let want = count as usize * SLOT_SIZE;
            let Some(chunk) = buf.get_mut(..want) else {
                break;
            };
            let got = read_full_at(&self.file, chunk, header.slot_offset(first))
                .map_err(|e| CacheError::io("read index", &self.path, e))?;
            let slots = got / SLOT_SIZE;
            if slots == 0 {
                break;
            }
            for i in 0..slots {
                let s = &chunk[i * SLOT_SIZE..(i + 1) * SLOT_SIZE];
                let off = header.slot_offset(first + i as u32);
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
                self.index.apply(r);
            }
            if slots < count as usize {
                break;
            }
        }
        Ok(())
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
        if self.locked {
            return Ok(true);
        }
        let ok = sys::lock_exclusive(&self.file, self.opts.lock_timeout)
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
        if slot >= self.index.header.slot_count {
            return Err(CacheError::Invalid(format!(
                "index of {} is full ({} slots); compact it",
                self.path.display(),
                self.index.header.slot_count
            )));
        }
        let bytes = rec.encode();
        self.file
            .write_all_at(&bytes, self.index.header.slot_offset(slot))
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
        if end > self.map.len() as u64 {
            return Err(CacheError::Invalid(format!(
                "file would exceed the mapped window of {} bytes",
                self.map.len()
            )));
        }
        if self.index.next_slot() + 1 >= self.index.header.slot_count {
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
                .min(self.map.len() as u64)
                .max(end);
            sys::allocate(&self.file, cur, target - cur)
                .map_err(|e| CacheError::io("allocate", &self.path, e))?;
            self.index.file_len = target;
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
            self.map
                .flush(entry.data_offset, entry.data_len)
                .map_err(|e| CacheError::io("msync", &self.path, e))?;
        }
        let slot = self.write_record(&Record::Entry(entry))?;
        if self.opts.durable {
            sys::datasync(&self.file).map_err(|e| CacheError::io("fdatasync", &self.path, e))?;
        }
        Ok(slot)
    }

    /// Reads the packed bytes of an entry through the mapping.
    pub fn entry_bytes(&self, e: &Entry) -> Option<&[u8]> {
        let end = e.data_offset.checked_add(e.data_len)?;
        if end > self.index.file_len {
            return None;
        }
        self.map
            .slice(e.data_offset, usize::try_from(e.data_len).ok()?)
    }

    /// Checks an entry's packed bytes against its digest.
    pub fn verify_entry(&self, e: &Entry) -> bool {
        match self.entry_bytes(e) {
            Some(b) => data_digest(b) == e.data_digest,
            None => false,
        }
    }
}

impl Drop for CacheFile {
    fn drop(&mut self) {
        self.unlock();
    }
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

/// What a compaction did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompactReport {
    /// Accounting before.
    pub before: Summary,
    /// Accounting after.
    pub after: Summary,
    /// Live entries copied.
    pub kept: u64,
    /// Live entries dropped because their bytes failed verification.
    pub dropped_corrupt: u64,
    /// Milliseconds spent.
    pub elapsed_ms: f64,
}

/// Rewrites the live entries of the cache at `path` into a new file and
/// renames it over the old one. Runs under the writer lock of the old file, so
/// no commit can be lost; processes that still map the old file keep using it.
pub fn compact(path: &Path, opts: &FileOptions) -> Result<CompactReport, CacheError> {
    let start = Instant::now();
    let open_opts = FileOptions {
        create: false,
        read_only: false,
        ..opts.clone()
    };
    // Lock the file that is at `path` (it may be replaced while we wait).
    let mut cf = loop {
        let mut cf = CacheFile::open(path, &open_opts)?;
        if !cf.writable() {
            return Err(CacheError::io(
                "compact",
                path,
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            ));
        }
        if !cf.lock()? {
            return Err(CacheError::LockTimeout {
                path: path.to_path_buf(),
                waited_ms: opts.lock_timeout.as_millis() as u64,
            });
        }
        if cf.is_current() {
            break cf;
        }
    };
    cf.refresh()?;
    let before = cf.summary();
    let live: Vec<Entry> = cf.index().live().map(|(_, e)| e.clone()).collect();
    let slots_needed = (live.len() as u64 * 2).max(cf.index().header.slot_count as u64);
    let slot_count = u32::try_from(slots_needed).unwrap_or(u32::MAX);
    let header = Header::new(slot_count, random_id());
    let tmp = tmp_path(path, "compact");
    let mut kept = 0u64;
    let mut dropped = 0u64;
    let res = (|| -> Result<(), CacheError> {
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| CacheError::io("create", &tmp, e))?;
        out.write_all_at(&header.encode(), 0)
            .map_err(|e| CacheError::io("write", &tmp, e))?;
        let mut cursor = header.data_offset;
        let mut slot = 0u32;
        for e in &live {
            let Some(bytes) = cf.entry_bytes(e) else {
                dropped += 1;
                continue;
            };
            if data_digest(bytes) != e.data_digest {
                dropped += 1;
                continue;
            }
            out.write_all_at(bytes, cursor)
                .map_err(|err| CacheError::io("write", &tmp, err))?;
            let mut ne = e.clone();
            ne.data_offset = cursor;
            let rec = Record::Entry(ne).encode();
            out.write_all_at(&rec, header.slot_offset(slot))
                .map_err(|err| CacheError::io("write", &tmp, err))?;
            slot += 1;
            kept += 1;
            cursor = align_up(cursor + e.data_len, DATA_ALIGN)
                .ok_or_else(|| CacheError::Invalid("offset overflow".into()))?;
        }
        out.set_len(cursor.max(header.data_offset))
            .map_err(|e| CacheError::io("truncate", &tmp, e))?;
        out.sync_all()
            .map_err(|e| CacheError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| CacheError::io("rename", path, e))?;
        sync_dir(path);
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    drop(cf);
    let after = CacheFile::open(
        path,
        &FileOptions {
            read_only: true,
            ..open_opts
        },
    )?
    .summary();
    Ok(CompactReport {
        before,
        after,
        kept,
        dropped_corrupt: dropped,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    })
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
