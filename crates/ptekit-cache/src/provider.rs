//! The weights cache that XNNPACK calls: [`WeightsCache`] and the
//! `xnn_weights_cache_provider` vtable it exposes.
//!
//! Flow during `xnn_create_runtime_*` for every static weight, as observed in
//! the ExecuTorch 1.5.1 XNNPACK build (see the crate docs for how the layouts
//! were verified):
//!
//! 1. `look_up(key)`: a hit returns an offset and XNNPACK skips packing;
//! 2. on a miss `reserve_space(n)`: we hand out ordinary memory to pack into
//!    (as fast as packing without a cache);
//! 3. `look_up_or_insert(key, ptr, n)`: the packed bytes are kept for the
//!    commit and the offset returned;
//! 4. [`WeightsCache::finalize`] after runtime creation writes every new
//!    entry of this thread's runtime in one batch (one `fdatasync`), then
//!    points the offsets at the committed file pages and frees the memory;
//! 5. at setup/reshape: `is_finalized()` must be true and `offset_to_addr`
//!    turns offsets into pointers.
//!
//! The offsets we return are indices into this cache's table of pointers.
//! Each cache file is opened and mapped once per process, whatever the
//! number of [`WeightsCache`]s using it.

#![allow(
    unsafe_code,
    reason = "XNNPACK's weights-cache provider: C callbacks receiving raw pointers"
)]

use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::ThreadId;

use crate::error::CacheError;
use crate::format::{key_digest, ContentKey, Entry, EntryKey, KeySource, RegionMemo};
use crate::store::{self, data_digest, CacheFile, FileOptions};
use crate::sys::{AnonPages, SharedMap};

/// `struct xnn_weights_cache_look_up_key` of the XNNPACK build in the
/// ExecuTorch 1.5.1 wheel: `{u32 seed; const void* kernel; const void* bias;
/// u32 fingerprint_id;}` — 32 bytes on LP64, `fingerprint_id` at offset 24.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct XnnLookUpKey {
    /// Per-ukernel seed.
    pub seed: u32,
    /// Unpacked kernel pointer.
    pub kernel: *const c_void,
    /// Unpacked bias pointer, may be null.
    pub bias: *const c_void,
    /// Packing fingerprint id.
    pub fingerprint_id: u32,
}

/// `struct xnn_weights_cache_provider` of the same build: context plus seven
/// function pointers, `alias_data` last (offset 56), 64 bytes in all.
#[repr(C)]
pub struct XnnWeightsCacheProvider {
    /// Passed back as the first argument of every callback.
    pub context: *mut c_void,
    /// Looks up a key; `usize::MAX` when absent.
    pub look_up: Option<unsafe extern "C" fn(*mut c_void, *const XnnLookUpKey) -> usize>,
    /// Returns memory for `n` packed bytes, or null.
    pub reserve_space: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    /// Inserts packed bytes at `ptr` (from `reserve_space`) under a key.
    pub look_up_or_insert:
        Option<unsafe extern "C" fn(*mut c_void, *const XnnLookUpKey, *mut c_void, usize) -> usize>,
    /// Whether the cache is finalized (checked by operator setup).
    pub is_finalized: Option<unsafe extern "C" fn(*mut c_void) -> bool>,
    /// Pointer for an offset returned by `look_up`/`look_up_or_insert`.
    pub offset_to_addr: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    /// Called by `xnn_delete_weights_cache`; the Rust owner frees the cache.
    pub delete_cache: Option<unsafe extern "C" fn(*mut c_void) -> u32>,
    /// Declares `alias` a copy (e.g. fp32 conversion) of static data `original`.
    pub alias_data: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> u32>,
}

const _: () = {
    assert!(std::mem::size_of::<XnnLookUpKey>() == 32);
    assert!(std::mem::offset_of!(XnnLookUpKey, kernel) == 8);
    assert!(std::mem::offset_of!(XnnLookUpKey, bias) == 16);
    assert!(std::mem::offset_of!(XnnLookUpKey, fingerprint_id) == 24);
    assert!(std::mem::size_of::<XnnWeightsCacheProvider>() == 64);
    assert!(std::mem::offset_of!(XnnWeightsCacheProvider, look_up) == 8);
    assert!(std::mem::offset_of!(XnnWeightsCacheProvider, look_up_or_insert) == 24);
    assert!(std::mem::offset_of!(XnnWeightsCacheProvider, is_finalized) == 32);
    assert!(std::mem::offset_of!(XnnWeightsCacheProvider, alias_data) == 56);
};

/// `SIZE_MAX`, XNNPACK's "not found".
pub const NOT_FOUND: usize = usize::MAX;
const HEAP_ALIGN: usize = 128;

/// Why packed weights went to the heap instead of the cache file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FallbackReason {
    /// The cache was created without a file.
    NoPath,
    /// The file could not be opened or is invalid (message says why).
    FileUnusable(String),
    /// The file is read-only for this process.
    ReadOnly,
    /// The writer lock was not obtained in time.
    LockTimeout,
    /// Disk blocks could not be allocated (e.g. a full disk).
    AllocateFailed(String),
    /// The index log is full.
    IndexFull,
    /// The packed bytes of one runtime exceed the size cap by themselves.
    SizeCap,
    /// Any other I/O failure while reserving or committing.
    Io(String),
    /// The kernel or bias pointer was never registered.
    Unregistered,
    /// `reserve_space` without a preceding missed `look_up`.
    NoLookUp,
}

impl FallbackReason {
    /// Short stable code used as the key in statistics.
    pub fn code(&self) -> &'static str {
        match self {
            FallbackReason::NoPath => "no_path",
            FallbackReason::FileUnusable(_) => "file_unusable",
            FallbackReason::ReadOnly => "read_only",
            FallbackReason::LockTimeout => "lock_timeout",
            FallbackReason::AllocateFailed(_) => "allocate_failed",
            FallbackReason::IndexFull => "index_full",
            FallbackReason::SizeCap => "size_cap",
            FallbackReason::Io(_) => "io_error",
            FallbackReason::Unregistered => "unregistered",
            FallbackReason::NoLookUp => "no_look_up",
        }
    }

    fn from_error(e: &CacheError) -> FallbackReason {
        match e {
            CacheError::Io { op, source, .. } if *op == "allocate" => {
                FallbackReason::AllocateFailed(source.to_string())
            }
            CacheError::Invalid(m) if m.contains("full") => FallbackReason::IndexFull,
            CacheError::Invalid(m) if m.contains("size cap") => FallbackReason::SizeCap,
            CacheError::LockTimeout { .. } => FallbackReason::LockTimeout,
            other => FallbackReason::Io(other.to_string()),
        }
    }
}

/// Counters of one [`WeightsCache`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Look-ups answered from the cache.
    pub hits: u64,
    /// Look-ups that made XNNPACK pack.
    pub misses: u64,
    /// Packed bytes served from the file mapping.
    pub bytes_mapped: u64,
    /// Packed bytes written into the file by this process.
    pub bytes_packed: u64,
    /// Packed bytes this process put on the heap.
    pub bytes_heap: u64,
    /// Entries committed to the file by this process.
    pub committed: u64,
    /// Packs discarded because another process committed the same key first.
    pub deduplicated: u64,
    /// Heap fallbacks in all.
    pub heap_fallbacks: u64,
    /// Heap fallbacks by reason code.
    pub heap_fallback_reasons: BTreeMap<String, u64>,
    /// The latest fallback message (with detail).
    pub last_fallback: Option<String>,
    /// Look-ups of pointers never registered.
    pub unregistered_lookups: u64,
    /// Entries rejected on load (failed verification).
    pub rejected_entries: u64,
    /// Compactions run by [`WeightsCache::maintain`].
    pub compactions: u64,
    /// Why the cache file was rebuilt empty when opened (another XNNPACK
    /// build or CPU, another format version, a broken header).
    pub rebuilt: Option<String>,
    /// Size of the cache file (0 without a file).
    pub file_bytes: u64,
    /// Dead bytes in the file.
    pub dead_bytes: u64,
    /// Live entries in the file.
    pub live_entries: u64,
    /// Why the file is not used, if it is not.
    pub file_error: Option<String>,
}

/// Options of a [`WeightsCache`].
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// File options.
    pub file: FileOptions,
    /// Check packed bytes against their digest before serving a hit.
    pub verify_on_load: bool,
    /// [`WeightsCache::maintain`] compacts when dead bytes exceed this share
    /// of the data region (`None`: never). Compaction never runs while a
    /// runtime is being created.
    pub auto_compact_dead_share: Option<f64>,
    /// ... and exceed this many bytes.
    pub auto_compact_min_dead_bytes: u64,
    /// Commit in the background: [`WeightsCache::finalize`] returns at once,
    /// and a process-wide writer thread writes the packs, flushes them with
    /// one `fdatasync`, appends their records, and then maps the committed
    /// file pages over the memory XNNPACK packed into (same address, same
    /// bytes). Until then the packs are served from that memory. See
    /// [`flush_background`] and [`background_stats`].
    pub background_commit: bool,
    /// Record, per thread, the unpacked kernel and bias pointers of each
    /// look-up and whether a hit answered it ([`WeightsCache::take_served`]).
    pub track_served: bool,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            file: FileOptions {
                env: Some(crate::env::EnvIdentity::default()),
                ..FileOptions::default()
            },
            verify_on_load: false,
            auto_compact_dead_share: Some(0.5),
            auto_compact_min_dead_bytes: 1 << 20,
            background_commit: false,
            track_served: false,
        }
    }
}

/// A look-up's unpacked kernel or bias pointer and whether a hit answered
/// it ([`WeightsCache::take_served`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The pointer XNNPACK passed.
    pub ptr: usize,
    /// A hit answered it (XNNPACK did not read the bytes for it).
    pub hit: bool,
}

#[derive(Clone)]
struct Registration {
    key: ContentKey,
    name: String,
    /// Set when the content key is not known yet: it is computed by the
    /// background writer from the model file ([`WeightsCache::register_deferred`]).
    deferred: Option<Arc<Deferred>>,
}

/// A buffer whose bytes are hashed later, from the file they lie in.
struct Deferred {
    source: RegionSource,
    /// The region's memo name.
    region: [u8; 32],
}

/// Where a static buffer's bytes lie in a model file that the process has
/// mapped read-only, and the identity that file had when the buffer was
/// registered (device, inode, size, modification and status-change times,
/// in seconds and nanoseconds).
#[derive(Clone, Debug)]
pub struct RegionSource {
    /// The file.
    pub path: PathBuf,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: (i64, i64),
    /// Status-change time.
    pub ctime: (i64, i64),
    /// Offset of the buffer in the file.
    pub offset: u64,
    /// Length of the buffer.
    pub len: u64,
}

impl RegionSource {
    fn unchanged(&self, m: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino(), m.len()) == (self.dev, self.ino, self.size)
            && (m.mtime(), m.mtime_nsec()) == self.mtime
            && (m.ctime(), m.ctime_nsec()) == self.ctime
    }

    /// BLAKE3 of the buffer's bytes, read again from the file with `pread`,
    /// if the file still has the identity it had (checked before and after
    /// reading: any write changes its status-change time).
    pub fn read_key(&self) -> Result<[u8; 32], String> {
        let f =
            std::fs::File::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let changed = || format!("{} changed since it was loaded", self.path.display());
        if !f.metadata().is_ok_and(|m| self.unchanged(&m)) {
            return Err(changed());
        }
        let h = store::hash_file_range(&f, self.offset, self.len)
            .ok_or_else(|| format!("{}: short read at {}", self.path.display(), self.offset))?;
        if !f.metadata().is_ok_and(|m| self.unchanged(&m)) {
            return Err(changed());
        }
        Ok(*h.as_bytes())
    }
}

#[derive(Clone)]
struct MissInfo {
    /// While `deferred` is set: a key valid only in this cache's table.
    key: EntryKey,
    name: String,
    kernel_len: u64,
    bias_len: Option<u64>,
    kernel_source: KeySource,
    /// Kernel and bias, when one of their content keys is not known yet.
    deferred: Option<Box<(Registration, Option<Registration>)>>,
}

impl MissInfo {
    /// The miss with its deferred content keys computed from the model
    /// file (`seen` caches keys by region), and the file-region memos to
    /// write with it. `hashed` counts the bytes read.
    fn resolved(
        &self,
        seen: &mut HashMap<[u8; 32], Result<[u8; 32], String>>,
        memos: &mut Vec<RegionMemo>,
        hashed: &mut u64,
    ) -> Result<MissInfo, String> {
        let Some(d) = &self.deferred else {
            return Ok(self.clone());
        };
        let (k, b) = &**d;
        let mut part = |r: &Registration| -> Result<ContentKey, String> {
            let Some(d) = &r.deferred else {
                return Ok(r.key);
            };
            let content = seen
                .entry(d.region)
                .or_insert_with(|| {
                    *hashed += d.source.len;
                    let c = d.source.read_key();
                    if let Ok(c) = &c {
                        memos.push(RegionMemo {
                            region: d.region,
                            content: *c,
                            len: d.source.len,
                        });
                    }
                    c
                })
                .clone()?;
            Ok(ContentKey {
                key: content,
                ..r.key
            })
        };
        let kernel = part(k)?;
        let bias = b.as_ref().map(&mut part).transpose()?;
        let mut m = self.clone();
        m.key.digest = key_digest(&kernel, bias.as_ref());
        m.deferred = None;
        Ok(m)
    }
}

enum Miss {
    Keyed(MissInfo),
    Unregistered,
}

enum PendingKind {
    /// Packed for the file: committed at finalize.
    ToFile { miss: MissInfo },
    /// Packed for this process only.
    Heap { key: Option<EntryKey> },
}

struct Pending {
    ptr: *mut u8,
    cap: usize,
    kind: PendingKind,
}

struct ToCommit {
    slot: usize,
    size: usize,
    miss: MissInfo,
}

/// Memory a miss packs into.
enum Block {
    /// From the allocator (small packs, or without background commits).
    Heap { ptr: *mut u8, layout: Layout },
    /// Whole anonymous pages, which the background writer replaces by the
    /// committed file pages.
    Pages(AnonPages),
}

// SAFETY: a block is plain memory owned by this value; after XNNPACK packed
// into it nobody writes it (the writer thread only reads it).
unsafe impl Send for Block {}
// SAFETY: as above.
unsafe impl Sync for Block {}

impl Block {
    fn ptr(&self) -> *mut u8 {
        match self {
            Block::Heap { ptr, .. } => *ptr,
            Block::Pages(p) => p.as_ptr(),
        }
    }

    /// The first `n` packed bytes.
    ///
    /// # Safety
    /// `n` is at most the reserved size, and XNNPACK finished writing them.
    unsafe fn bytes(&self, n: usize) -> &[u8] {
        // SAFETY: the caller's guarantee; the block lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr() as *const u8, n) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Block::Heap { ptr, layout } = self {
            // SAFETY: allocated by std::alloc::alloc with this layout in
            // alloc_heap; a Block is dropped once.
            unsafe { std::alloc::dealloc(*ptr, *layout) };
        }
    }
}

/// Packs from `reserve_space` of at least this many bytes go to whole pages
/// when commits run in the background (smaller ones stay in process memory
/// until the next launch maps them).
const PAGES_MIN: usize = store::PAGE_ALIGNED_FROM as usize;

/// One cache file, opened and mapped once per process and shared by every
/// [`WeightsCache`] over it.
struct SharedFile {
    path: PathBuf,
    opts: FileOptions,
    state: Mutex<FileState>,
    /// The file did not exist and is being created (its state is locked
    /// until it is open). Nothing can be served from it yet, so the load
    /// path does not wait for that: look-ups miss, and packs go to the
    /// background writer, which opens the file on its own.
    creating: std::sync::atomic::AtomicBool,
}

struct FileState {
    file: Option<CacheFile>,
    error: Option<String>,
    rebuilt: Option<String>,
    /// When a new cache last checked that the path still names the open
    /// file ([`RECHECK_AFTER`]).
    checked: Option<std::time::Instant>,
}

/// A new [`WeightsCache`] checks again whether compaction or a rebuild by
/// another process replaced the file (a `stat` of its path) only when the
/// last check is older than this: the runtimes of one model load (60 for a
/// partitioned transformer) share one check. Serving from the replaced
/// file's old mapping is correct, only without its newest entries; commits
/// always check.
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

impl SharedFile {
    /// See [`SharedFile::creating`].
    fn creating(&self) -> bool {
        self.creating.load(std::sync::atomic::Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, FileState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FileState {
    /// Re-opens the file when compaction or a rebuild replaced it.
    fn ensure_current(&mut self, path: &Path, opts: &FileOptions) {
        let current = self
            .file
            .as_ref()
            .is_some_and(super::store::CacheFile::is_current);
        if current {
            return;
        }
        match CacheFile::open(path, opts) {
            Ok(f) => {
                if let Some(r) = f.rebuilt() {
                    self.rebuilt = Some(r.to_string());
                }
                self.file = Some(f);
                self.error = None;
            }
            Err(e) => {
                if self.file.is_none() {
                    self.error = Some(e.to_string());
                }
            }
        }
    }
}

type FileKey = (PathBuf, bool);

fn open_files() -> &'static Mutex<HashMap<FileKey, Weak<SharedFile>>> {
    static FILES: OnceLock<Mutex<HashMap<FileKey, Weak<SharedFile>>>> = OnceLock::new();
    FILES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The process-wide handle of the cache file at `path` (opened on first use).
fn shared_file(path: &Path, opts: &FileOptions) -> Arc<SharedFile> {
    let mut files = open_files()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    files.retain(|_, w| w.strong_count() > 0);
    // An absolute path given as it was the first time (the preload library
    // passes the same one for every runtime) is found without making it
    // absolute again; a relative one depends on the working directory.
    let same = path.is_absolute().then(|| {
        files.iter().find_map(|((_, ro), w)| {
            w.upgrade()
                .filter(|f| *ro == opts.read_only && f.path.as_path() == path)
        })
    });
    if let Some(f) = same.flatten() {
        drop(files);
        return current_shared(f, path);
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let key = (abs, opts.read_only);
    if let Some(f) = files.get(&key).and_then(Weak::upgrade) {
        drop(files);
        return current_shared(f, path);
    }
    // Opened outside the lock of all files, under this file's own lock
    // (taken before it is published): a caller for the same file waits for
    // the open, unless the file is being created (nothing to wait for).
    let sf = Arc::new(SharedFile {
        path: path.to_path_buf(),
        opts: opts.clone(),
        state: Mutex::new(FileState {
            file: None,
            error: None,
            rebuilt: None,
            checked: None,
        }),
        creating: std::sync::atomic::AtomicBool::new(
            !opts.read_only && opts.create && !path.exists(),
        ),
    });
    let mut st = sf.state();
    files.insert(key, Arc::downgrade(&sf));
    drop(files);
    match CacheFile::open(path, opts) {
        Ok(f) => {
            st.rebuilt = f.rebuilt().map(str::to_string);
            st.file = Some(f);
        }
        Err(e) => st.error = Some(e.to_string()),
    }
    st.checked = Some(std::time::Instant::now());
    drop(st);
    sf.creating
        .store(false, std::sync::atomic::Ordering::Release);
    sf
}

/// `f`, an already open file, after checking (at most every
/// [`RECHECK_AFTER`]) whether compaction or a rebuild replaced it.
fn current_shared(f: Arc<SharedFile>, path: &Path) -> Arc<SharedFile> {
    if f.creating() {
        return f;
    }
    let mut st = f.state();
    if st.checked.is_none_or(|t| t.elapsed() >= RECHECK_AFTER) {
        st.ensure_current(path, &f.opts);
        st.checked = Some(std::time::Instant::now());
    }
    drop(st);
    f
}

struct Inner {
    path: Option<PathBuf>,
    opts: CacheOptions,
    shared: Option<Arc<SharedFile>>,
    /// Mappings that pointers handed out point into (kept alive with us).
    maps: Vec<Arc<SharedMap>>,
    regs: HashMap<usize, Registration>,
    table: Vec<*mut u8>,
    /// Whether a table slot still points at memory of a pack not yet
    /// committed, and whether another thread was given it.
    uncommitted_shared: HashMap<usize, bool>,
    local: HashMap<EntryKey, usize>,
    pending: HashMap<ThreadId, Pending>,
    last_miss: HashMap<ThreadId, Miss>,
    /// With [`CacheOptions::track_served`]: the look-ups of each thread's
    /// creation in progress, drained by [`WeightsCache::take_served`].
    served: HashMap<ThreadId, Vec<Served>>,
    to_commit: HashMap<ThreadId, Vec<ToCommit>>,
    memos: Vec<RegionMemo>,
    heap: Vec<Arc<Block>>,
    stats: Stats,
    finalized: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    provider: XnnWeightsCacheProvider,
}

/// A packed-weight cache for XNNPACK, backed by a file (or the heap only).
///
/// Keep it alive for as long as any runtime created with it: XNNPACK asks it
/// for weight addresses whenever a runtime is reshaped or set up. Several
/// runtimes may share one cache (also from several threads: each thread's
/// creation is finalized separately); the preload library gives each runtime
/// its own, all sharing one open file.
pub struct WeightsCache {
    shared: Box<Shared>,
}

// SAFETY: Shared's mutable state is behind a Mutex; the provider struct is
// immutable after construction.
unsafe impl Send for WeightsCache {}
// SAFETY: as above.
unsafe impl Sync for WeightsCache {}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WeightsCache {
    /// A cache over the file at `path` (created if missing), or heap-only when
    /// `path` is `None`. An unusable file never fails construction: packing
    /// falls back to the heap and [`Stats::file_error`] says why.
    pub fn new(path: Option<&Path>, opts: CacheOptions) -> WeightsCache {
        let shared_file = path.map(|p| shared_file(p, &opts.file));
        let mut stats = Stats::default();
        if let Some(sf) = shared_file.as_ref().filter(|sf| !sf.creating()) {
            let st = sf.state();
            stats.file_error = st.error.clone();
            stats.rebuilt = st.rebuilt.clone();
        }
        let inner = Inner {
            path: path.map(Path::to_path_buf),
            opts,
            shared: shared_file,
            maps: Vec::new(),
            regs: HashMap::new(),
            table: Vec::new(),
            uncommitted_shared: HashMap::new(),
            local: HashMap::new(),
            pending: HashMap::new(),
            last_miss: HashMap::new(),
            served: HashMap::new(),
            to_commit: HashMap::new(),
            memos: Vec::new(),
            heap: Vec::new(),
            stats,
            finalized: false,
        };
        let mut shared = Box::new(Shared {
            inner: Mutex::new(inner),
            provider: XnnWeightsCacheProvider {
                context: std::ptr::null_mut(),
                look_up: Some(cb_look_up),
                reserve_space: Some(cb_reserve_space),
                look_up_or_insert: Some(cb_look_up_or_insert),
                is_finalized: Some(cb_is_finalized),
                offset_to_addr: Some(cb_offset_to_addr),
                delete_cache: Some(cb_delete_cache),
                alias_data: Some(cb_alias_data),
            },
        });
        let ctx: *const Shared = &*shared;
        shared.provider.context = ctx as *mut c_void;
        WeightsCache { shared }
    }

    /// The value to pass as `xnn_weights_cache_t` to `xnn_create_runtime_v4`.
    pub fn as_xnn_weights_cache(&self) -> *mut c_void {
        let p: *const XnnWeightsCacheProvider = &self.shared.provider;
        p as *mut c_void
    }

    /// Registers an unpacked buffer that will be given to XNNPACK as static
    /// tensor data. Its content key is computed now (BLAKE3), unless `key` is
    /// given: a caller key must identify the content (e.g. a SHA-256 of it).
    /// `desc` is the packing descriptor (see [`ContentKey::desc`]): everything
    /// besides the bytes that changes how XNNPACK packs them (datatype,
    /// dimensions, quantization parameters, consuming node).
    pub fn register(&self, data: &[u8], desc: [u8; 32], name: Option<&str>, key: Option<[u8; 32]>) {
        let ck = match key {
            Some(k) => ContentKey {
                key: k,
                source: KeySource::Caller,
                len: data.len() as u64,
                desc,
            },
            None => ContentKey {
                key: *blake3::hash(data).as_bytes(),
                source: KeySource::Hashed,
                len: data.len() as u64,
                desc,
            },
        };
        self.register_key(data.as_ptr(), ck, name);
    }

    /// Registers a buffer by pointer with a ready content key. The pointer is
    /// only compared, never read.
    pub fn register_key(&self, ptr: *const u8, key: ContentKey, name: Option<&str>) {
        let mut g = lock(&self.shared);
        g.regs.insert(
            ptr as usize,
            Registration {
                key,
                name: name.unwrap_or("").to_string(),
                deferred: None,
            },
        );
    }

    /// Registers a buffer that lies in a model file mapped read-only
    /// (`source`; `region` is its memo name) without hashing it now. Its
    /// look-ups miss, and the background writer hashes its bytes from the
    /// file (which must not have changed, else its packs stay in memory)
    /// before committing, writing the region's memo too. Without
    /// [`CacheOptions::background_commit`] the bytes are read and hashed
    /// here.
    pub fn register_deferred(
        &self,
        ptr: *const u8,
        desc: [u8; 32],
        region: [u8; 32],
        source: RegionSource,
        name: Option<&str>,
    ) {
        let mut key = ContentKey {
            key: [0; 32],
            source: KeySource::Hashed,
            len: source.len,
            desc,
        };
        let mut g = lock(&self.shared);
        let deferred = if g.opts.background_commit {
            Some(Arc::new(Deferred { source, region }))
        } else {
            match source.read_key() {
                Ok(k) => {
                    key.key = k;
                    g.memos.push(RegionMemo {
                        region,
                        content: k,
                        len: source.len,
                    });
                    None
                }
                // Not registered: its look-ups count as unregistered misses.
                Err(_) => return,
            }
        };
        g.regs.insert(
            ptr as usize,
            Registration {
                key,
                name: name.unwrap_or("").to_string(),
                deferred,
            },
        );
    }

    /// The content keys memorised in the cache file for these file regions
    /// (see [`RegionMemo`]), `None` where there is none. The index is
    /// re-read (once) only when one of them is not in the index as read so
    /// far.
    pub fn memos(&self, regions: &[[u8; 32]]) -> Vec<Option<([u8; 32], u64)>> {
        let g = lock(&self.shared);
        let Some(sf) = g.shared.clone().filter(|sf| !sf.creating()) else {
            return vec![None; regions.len()];
        };
        drop(g);
        let mut st = sf.state();
        let Some(f) = st.file.as_mut() else {
            return vec![None; regions.len()];
        };
        let found: Vec<_> = regions.iter().map(|r| f.index().memo(r)).collect();
        if found.iter().all(Option::is_some) {
            return found;
        }
        let _ = f.refresh();
        regions.iter().map(|r| f.index().memo(r)).collect()
    }

    /// Queues a file-region memo; written with the next commit (at
    /// [`WeightsCache::finalize`]).
    pub fn remember(&self, memo: RegionMemo) {
        lock(&self.shared).memos.push(memo);
    }

    /// Marks the end of a runtime's creation on this thread (XNNPACK
    /// operator setup requires a finalized cache): commits the entries this
    /// thread packed in one batch, then serves them from the file mapping and
    /// frees their memory. Other threads' creations in progress are not
    /// affected.
    pub fn finalize(&self) -> Stats {
        let mut g = lock(&self.shared);
        g.finalized = true;
        let tid = std::thread::current().id();
        if let Some(p) = g.pending.remove(&tid) {
            // A reservation XNNPACK never inserted (it failed in between).
            g.free_heap(p.ptr);
        }
        g.last_miss.remove(&tid);
        // Bounded by one creation: whatever was not taken is dropped.
        g.served.remove(&tid);
        let batch = g.to_commit.remove(&tid).unwrap_or_default();
        let memos = std::mem::take(&mut g.memos);
        if g.opts.background_commit {
            g.commit_in_background(batch, memos);
        } else if !batch.is_empty() || !memos.is_empty() {
            g.commit(batch, &memos);
            g.refresh_file_stats();
        }
        g.stats.clone()
    }

    /// The unpacked kernel and bias pointers this thread looked up since its
    /// last call or [`WeightsCache::finalize`] (with [`CacheOptions::track_served`]; else empty), each with
    /// whether a hit answered it. A pointer a miss packed is reported as a
    /// miss. XNNPACK does not read the bytes of a pointer only hits answered.
    pub fn take_served(&self) -> Vec<Served> {
        lock(&self.shared)
            .served
            .remove(&std::thread::current().id())
            .unwrap_or_default()
    }

    /// Housekeeping to run when no runtime of this process is being created
    /// (never inside a model load): compacts the file when dead bytes exceed
    /// [`CacheOptions::auto_compact_dead_share`] (a full index is no reason: the
    /// next commit continues it in an extent). Returns whether it compacted.
    pub fn maintain(&self) -> bool {
        let mut g = lock(&self.shared);
        let done = g.maybe_compact();
        g.refresh_file_stats();
        done
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let mut g = lock(&self.shared);
        g.refresh_file_stats();
        g.stats.clone()
    }

    /// The file path, if any.
    pub fn path(&self) -> Option<PathBuf> {
        lock(&self.shared).path.clone()
    }
}

impl Drop for WeightsCache {
    fn drop(&mut self) {
        let mut g = lock(&self.shared);
        g.pending.clear();
        // A block a background commit still reads is freed after it.
        g.heap.clear();
    }
}

impl Inner {
    fn refresh_file_stats(&mut self) {
        let Some(sf) = self.shared.clone() else {
            return;
        };
        let mut st = sf.state();
        if let Some(f) = st.file.as_mut() {
            let _ = f.refresh();
            let s = f.summary();
            self.stats.file_bytes = s.file_bytes;
            self.stats.dead_bytes = s.dead_bytes;
            self.stats.live_entries = s.live_entries;
        }
    }

    fn maybe_compact(&mut self) -> bool {
        let Some(share) = self.opts.auto_compact_dead_share else {
            return false;
        };
        let Some(sf) = self.shared.clone() else {
            return false;
        };
        let mut st = sf.state();
        let Some(f) = st.file.as_mut() else {
            return false;
        };
        if !f.writable() {
            return false;
        }
        let _ = f.refresh();
        let s = f.summary();
        let data = s.file_bytes.saturating_sub(s.index_region_bytes).max(1);
        let dead_heavy = s.dead_bytes >= self.opts.auto_compact_min_dead_bytes
            && (s.dead_bytes as f64) / (data as f64) > share;
        if !dead_heavy {
            return false;
        }
        // Never wait for the lock here: another process is committing.
        let opts = store::FileOptions {
            lock_timeout: std::time::Duration::ZERO,
            ..sf.opts.clone()
        };
        match store::compact(&sf.path, &opts) {
            Ok(_) => {
                self.stats.compactions += 1;
                // Keep the old mapping alive for the pointers already served.
                if let Some(old) = st.file.as_ref() {
                    self.maps.push(old.map().clone());
                }
                st.ensure_current(&sf.path, &sf.opts);
                true
            }
            Err(e) => {
                self.stats.last_fallback = Some(format!("compaction failed: {e}"));
                false
            }
        }
    }

    fn content_key(&self, p: *const c_void) -> Option<Registration> {
        self.regs.get(&(p as usize)).cloned()
    }

    fn resolve(&self, key: &XnnLookUpKey) -> Miss {
        let Some(k) = self.content_key(key.kernel) else {
            return Miss::Unregistered;
        };
        let bias = if key.bias.is_null() {
            None
        } else {
            match self.content_key(key.bias) {
                Some(b) => Some(b),
                None => return Miss::Unregistered,
            }
        };
        let deferred = k.deferred.is_some() || bias.as_ref().is_some_and(|b| b.deferred.is_some());
        let digest = if deferred {
            // Only for this cache's own table (never looked up in the file):
            // the same pointers with the same descriptors are the same bytes
            // packed the same way.
            let mut h = blake3::Hasher::new();
            h.update(b"ptekit deferred local key\0");
            h.update(&(key.kernel as usize).to_le_bytes());
            h.update(&(key.bias as usize).to_le_bytes());
            h.update(&k.key.desc);
            if let Some(b) = &bias {
                h.update(&b.key.desc);
            }
            *h.finalize().as_bytes()
        } else {
            key_digest(&k.key, bias.as_ref().map(|b| &b.key))
        };
        Miss::Keyed(MissInfo {
            key: EntryKey {
                seed: key.seed,
                fingerprint_id: key.fingerprint_id,
                digest,
            },
            name: k.name.clone(),
            kernel_len: k.key.len,
            bias_len: bias.as_ref().map(|b| b.key.len),
            kernel_source: k.key.source,
            deferred: deferred.then(|| Box::new((k, bias))),
        })
    }

    fn push_ptr(&mut self, p: *mut u8) -> usize {
        self.table.push(p);
        self.table.len() - 1
    }

    fn keep_map(&mut self, m: &Arc<SharedMap>) {
        if !self.maps.iter().any(|x| Arc::ptr_eq(x, m)) {
            self.maps.push(m.clone());
        }
    }

    /// Looks `key` up in the file (re-reading its index once on a miss) and
    /// returns a pointer to the committed bytes.
    fn file_hit(&mut self, key: &EntryKey) -> Option<*mut u8> {
        let sf = self.shared.clone().filter(|sf| !sf.creating())?;
        let mut st = sf.state();
        let f = st.file.as_mut()?;
        if f.index().find(key).is_none() {
            let _ = f.refresh();
        }
        let (slot, e) = f.index().find(key).map(|(s, e)| (s, e.clone()))?;
        if self.opts.verify_on_load && !f.verify_entry(&e) {
            self.stats.rejected_entries += 1;
            return None;
        }
        f.touch(slot);
        let p = f.entry_bytes(&e)?.as_ptr() as *mut u8;
        let m = f.map().clone();
        drop(st);
        self.keep_map(&m);
        self.stats.bytes_mapped += e.data_len;
        Some(p)
    }

    fn note_served(&mut self, key: &XnnLookUpKey, hit: bool) {
        if !self.opts.track_served {
            return;
        }
        let list = self.served.entry(std::thread::current().id()).or_default();
        for p in [key.kernel, key.bias] {
            if !p.is_null() {
                list.push(Served {
                    ptr: p as usize,
                    hit,
                });
            }
        }
    }

    fn look_up(&mut self, key: &XnnLookUpKey) -> usize {
        let i = self.look_up_counted(key);
        self.note_served(key, i != NOT_FOUND);
        i
    }

    fn look_up_counted(&mut self, key: &XnnLookUpKey) -> usize {
        let tid = std::thread::current().id();
        let info = match self.resolve(key) {
            Miss::Unregistered => {
                self.stats.unregistered_lookups += 1;
                self.stats.misses += 1;
                self.last_miss.insert(tid, Miss::Unregistered);
                return NOT_FOUND;
            }
            Miss::Keyed(i) => i,
        };
        if let Some(&i) = self.local.get(&info.key) {
            if let Some(shared) = self.uncommitted_shared.get_mut(&i) {
                *shared = true;
            }
            self.stats.hits += 1;
            return i;
        }
        let in_file = if info.deferred.is_some() {
            // Not hashed yet: cannot be looked up in the file.
            None
        } else {
            self.file_hit(&info.key)
        };
        if let Some(p) = in_file {
            let i = self.push_ptr(p);
            self.local.insert(info.key, i);
            self.stats.hits += 1;
            return i;
        }
        self.stats.misses += 1;
        self.last_miss.insert(tid, Miss::Keyed(info));
        NOT_FOUND
    }

    fn alloc_heap(&mut self, n: usize, pages: bool) -> *mut u8 {
        let block = if pages && n >= PAGES_MIN {
            match AnonPages::new(n) {
                Ok(p) => Block::Pages(p),
                Err(_) => return std::ptr::null_mut(),
            }
        } else {
            let Ok(layout) = Layout::from_size_align(n.max(1), HEAP_ALIGN) else {
                return std::ptr::null_mut();
            };
            // SAFETY: layout has non-zero size.
            let ptr = unsafe { std::alloc::alloc(layout) };
            if ptr.is_null() {
                return ptr;
            }
            Block::Heap { ptr, layout }
        };
        let p = block.ptr();
        self.heap.push(Arc::new(block));
        p
    }

    fn block(&self, p: *mut u8) -> Option<&Arc<Block>> {
        self.heap.iter().find(|b| b.ptr() == p)
    }

    fn free_heap(&mut self, p: *mut u8) {
        if let Some(i) = self.heap.iter().position(|b| b.ptr() == p) {
            self.heap.swap_remove(i);
        }
    }

    fn count_fallback(&mut self, reason: &FallbackReason) {
        self.stats.heap_fallbacks += 1;
        *self
            .stats
            .heap_fallback_reasons
            .entry(reason.code().to_string())
            .or_insert(0) += 1;
        self.stats.last_fallback = Some(format!("{reason:?}"));
    }

    /// Why packs cannot go to the file, if they cannot.
    fn file_unusable(&self) -> Option<FallbackReason> {
        let Some(sf) = &self.shared else {
            return Some(FallbackReason::NoPath);
        };
        if sf.creating() {
            // Packs wait in memory for the writer, which opens the file itself.
            return None;
        }
        let st = sf.state();
        match st.file.as_ref() {
            None => Some(FallbackReason::FileUnusable(
                st.error.clone().unwrap_or_else(|| "not open".into()),
            )),
            Some(f) if !f.writable() => Some(FallbackReason::ReadOnly),
            Some(_) => None,
        }
    }

    fn reserve_space(&mut self, n: usize) -> *mut u8 {
        let tid = std::thread::current().id();
        if let Some(old) = self.pending.remove(&tid) {
            // An abandoned reservation (XNNPACK failed between reserve and insert).
            self.free_heap(old.ptr);
        }
        let kind = match self.last_miss.remove(&tid) {
            None => {
                self.count_fallback(&FallbackReason::NoLookUp);
                PendingKind::Heap { key: None }
            }
            Some(Miss::Unregistered) => {
                self.count_fallback(&FallbackReason::Unregistered);
                PendingKind::Heap { key: None }
            }
            Some(Miss::Keyed(m)) => match self.file_unusable() {
                Some(r) => {
                    self.count_fallback(&r);
                    PendingKind::Heap { key: Some(m.key) }
                }
                None => PendingKind::ToFile { miss: m },
            },
        };
        let pages = self.opts.background_commit && matches!(kind, PendingKind::ToFile { .. });
        let p = self.alloc_heap(n, pages);
        if !p.is_null() {
            self.pending.insert(
                tid,
                Pending {
                    ptr: p,
                    cap: n,
                    kind,
                },
            );
        }
        p
    }

    fn look_up_or_insert(&mut self, key: &XnnLookUpKey, ptr: *mut u8, size: usize) -> usize {
        if ptr.is_null() {
            return self.look_up(key);
        }
        // XNNPACK packed these bytes: it read them.
        self.note_served(key, false);
        let tid = std::thread::current().id();
        let owner = if self.pending.get(&tid).is_some_and(|p| p.ptr == ptr) {
            Some(tid)
        } else {
            // Not memory we handed out on this thread; look for another
            // thread's reservation with this pointer.
            self.pending
                .iter()
                .find(|(_, p)| p.ptr == ptr)
                .map(|(t, _)| *t)
        };
        let Some(pending) = owner.and_then(|t| self.pending.remove(&t)) else {
            return NOT_FOUND;
        };
        if size > pending.cap {
            // XNNPACK wrote more than it reserved: never commit such bytes.
            self.free_heap(pending.ptr);
            return NOT_FOUND;
        }
        let i = self.push_ptr(ptr);
        match pending.kind {
            PendingKind::Heap { key } => {
                self.stats.bytes_heap += size as u64;
                if let Some(k) = key {
                    self.local.insert(k, i);
                }
            }
            PendingKind::ToFile { miss } => {
                self.local.insert(miss.key, i);
                self.uncommitted_shared.insert(i, false);
                self.to_commit.entry(tid).or_default().push(ToCommit {
                    slot: i,
                    size,
                    miss,
                });
            }
        }
        i
    }

    /// Writes the packs of one runtime creation to the file and serves them
    /// from the mapping afterwards.
    fn commit(&mut self, batch: Vec<ToCommit>, memos: &[RegionMemo]) {
        if batch.is_empty() && memos.is_empty() {
            return;
        }
        let Some(sf) = self.shared.clone() else {
            return;
        };
        let blocks: Vec<Option<Arc<Block>>> = batch
            .iter()
            .map(|c| {
                let p = *self.table.get(c.slot)?;
                self.block(p).cloned()
            })
            .collect();
        let mut st = sf.state();
        // Memos alone are not worth waiting for the lock.
        let result = if blocks.iter().all(Option::is_some) {
            let items: Vec<(&[u8], Entry)> = batch
                .iter()
                .zip(&blocks)
                .filter_map(|(c, b)| {
                    // SAFETY: the block holds at least c.size bytes (checked
                    // against its reservation in look_up_or_insert) that
                    // XNNPACK finished writing.
                    let bytes = unsafe { b.as_ref()?.bytes(c.size) };
                    Some((bytes, entry_for(&c.miss, bytes)))
                })
                .collect();
            commit_to_file(&sf, &mut st, &items, memos, !batch.is_empty())
        } else {
            Err(FallbackReason::Io("lost track of a pack".into()))
        };
        let committed = match result {
            Ok(c) => c,
            Err(r) => {
                drop(st);
                for c in &batch {
                    self.count_fallback(&r);
                    self.stats.bytes_heap += c.size as u64;
                    self.uncommitted_shared.remove(&c.slot);
                }
                return;
            }
        };
        let Some(f) = st.file.as_ref() else { return };
        let map = f.map().clone();
        let mut swaps = Vec::new();
        for ((c, b), (entry, written)) in batch.iter().zip(&blocks).zip(committed) {
            let Some(b) = b else { continue };
            // SAFETY: as above.
            let ours = unsafe { b.bytes(c.size) };
            let theirs = holds_our_bytes(f, &entry, written, ours)
                .then(|| f.entry_bytes(&entry).map(|t| t.as_ptr() as *mut u8))
                .flatten();
            self.count_commit(written, theirs.is_some(), c.size);
            match theirs {
                Some(t) => swaps.push((c.slot, t, b.ptr())),
                None => {
                    self.stats.bytes_heap += c.size as u64;
                    self.uncommitted_shared.remove(&c.slot);
                }
            }
        }
        drop(st);
        self.keep_map(&map);
        for (slot, file_ptr, heap_ptr) in swaps {
            let given_away = self.uncommitted_shared.remove(&slot).unwrap_or(true);
            if given_away {
                // Another thread's runtime may hold the heap pointer already.
                continue;
            }
            if let Some(t) = self.table.get_mut(slot) {
                *t = file_ptr;
            }
            self.free_heap(heap_ptr);
        }
    }

    fn count_commit(&mut self, written: bool, same: bool, size: usize) {
        if written {
            self.stats.committed += 1;
            self.stats.bytes_packed += size as u64;
        } else if same {
            self.stats.deduplicated += 1;
        } else {
            self.count_fallback(&FallbackReason::Io(
                "another process committed different bytes for this key".into(),
            ));
        }
    }

    /// Hands the packs of one runtime creation to the background writer;
    /// they are served from the memory XNNPACK packed into until the writer
    /// maps the committed file pages over it.
    fn commit_in_background(&mut self, batch: Vec<ToCommit>, memos: Vec<RegionMemo>) {
        if batch.is_empty() && memos.is_empty() {
            return;
        }
        let Some(sf) = self.shared.clone() else {
            return;
        };
        let mut items = Vec::with_capacity(batch.len());
        for c in batch {
            self.uncommitted_shared.remove(&c.slot);
            let block = self.table.get(c.slot).and_then(|&p| self.block(p)).cloned();
            match block {
                Some(block) => items.push(JobItem {
                    block,
                    size: c.size,
                    miss: c.miss,
                }),
                None => {
                    self.count_fallback(&FallbackReason::Io("lost track of a pack".into()));
                    self.stats.bytes_heap += c.size as u64;
                }
            }
        }
        submit(Job {
            file: sf,
            items,
            memos,
        });
    }

    fn offset_to_addr(&self, off: usize) -> *mut u8 {
        self.table.get(off).copied().unwrap_or(std::ptr::null_mut())
    }

    fn alias(&mut self, alias: *mut c_void, original: *mut c_void) {
        if let Some(r) = self.content_key(original) {
            self.regs.insert(alias as usize, r);
        }
    }
}

fn guarded<T>(ctx: *mut c_void, fallback: T, f: impl FnOnce(&mut Inner) -> T) -> T {
    if ctx.is_null() {
        return fallback;
    }
    // SAFETY: ctx is the `context` we stored: a pointer to the Shared owned by
    // a live WeightsCache (XNNPACK only calls while the cache is alive).
    let shared = unsafe { &*(ctx as *const Shared) };
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut g = lock(shared);
        f(&mut g)
    })) {
        Ok(v) => v,
        Err(_) => fallback,
    }
}

unsafe extern "C" fn cb_look_up(ctx: *mut c_void, key: *const XnnLookUpKey) -> usize {
    if key.is_null() {
        return NOT_FOUND;
    }
    // SAFETY: XNNPACK passes a pointer to a live key for the duration of the call.
    let key = unsafe { *key };
    guarded(ctx, NOT_FOUND, |g| g.look_up(&key))
}

unsafe extern "C" fn cb_reserve_space(ctx: *mut c_void, n: usize) -> *mut c_void {
    guarded(ctx, std::ptr::null_mut(), |g| g.reserve_space(n).cast())
}

unsafe extern "C" fn cb_look_up_or_insert(
    ctx: *mut c_void,
    key: *const XnnLookUpKey,
    ptr: *mut c_void,
    size: usize,
) -> usize {
    if key.is_null() {
        return NOT_FOUND;
    }
    // SAFETY: as in cb_look_up.
    let key = unsafe { *key };
    guarded(ctx, NOT_FOUND, |g| {
        g.look_up_or_insert(&key, ptr.cast(), size)
    })
}

unsafe extern "C" fn cb_is_finalized(ctx: *mut c_void) -> bool {
    guarded(ctx, false, |g| g.finalized)
}

unsafe extern "C" fn cb_offset_to_addr(ctx: *mut c_void, off: usize) -> *mut c_void {
    guarded(ctx, std::ptr::null_mut(), |g| g.offset_to_addr(off).cast())
}

unsafe extern "C" fn cb_delete_cache(_ctx: *mut c_void) -> u32 {
    0
}

unsafe extern "C" fn cb_alias_data(
    ctx: *mut c_void,
    alias: *mut c_void,
    original: *mut c_void,
) -> u32 {
    guarded(ctx, 0, |g| {
        g.alias(alias, original);
        0
    })
}

/// The index record of a pack of `bytes` for `miss`.
fn entry_for(miss: &MissInfo, bytes: &[u8]) -> Entry {
    Entry {
        data_offset: 0,
        data_len: bytes.len() as u64,
        seed: miss.key.seed,
        fingerprint_id: miss.key.fingerprint_id,
        kernel_len: miss.kernel_len,
        bias_len: miss.bias_len,
        key_digest: miss.key.digest,
        data_digest: data_digest(bytes),
        kernel_key: miss.kernel_source,
        name: miss.name.clone(),
        pid: std::process::id(),
        last_use: 0,
    }
}

/// Commits packs (and file-region memos) to the shared file under its
/// writer lock (`wait`: wait up to the lock timeout, else only take a free
/// lock). Per item: the committed entry and whether this call wrote it.
fn commit_to_file(
    sf: &SharedFile,
    st: &mut FileState,
    items: &[(&[u8], Entry)],
    memos: &[RegionMemo],
    wait: bool,
) -> Result<Vec<(Entry, bool)>, FallbackReason> {
    st.ensure_current(&sf.path, &sf.opts);
    let Some(f) = st.file.as_mut() else {
        return Err(FallbackReason::FileUnusable(
            st.error.clone().unwrap_or_else(|| "not open".into()),
        ));
    };
    let locked = if wait {
        f.lock()
    } else {
        f.lock_within(std::time::Duration::ZERO)
    };
    match locked {
        Ok(true) => {
            let r = f
                .commit_batch(items, memos)
                .map_err(|e| FallbackReason::from_error(&e));
            f.unlock();
            r
        }
        Ok(false) => Err(FallbackReason::LockTimeout),
        Err(e) => Err(FallbackReason::from_error(&e)),
    }
}

/// Whether the committed `entry` holds `ours`: this call wrote it, or
/// another writer committed the same bytes (compared by digest, and its
/// bytes checked with `pread`; no mapped page is touched, so a file truncated
/// meanwhile cannot raise `SIGBUS` here).
fn holds_our_bytes(f: &CacheFile, entry: &Entry, written: bool, ours: &[u8]) -> bool {
    written
        || (entry.data_len == ours.len() as u64
            && entry.data_digest == data_digest(ours)
            && f.verify_entry(entry))
}

struct JobItem {
    block: Arc<Block>,
    size: usize,
    miss: MissInfo,
}

/// The packs of one runtime creation, for the background writer.
struct Job {
    file: Arc<SharedFile>,
    items: Vec<JobItem>,
    memos: Vec<RegionMemo>,
}

/// What the background writer did in this process.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackgroundStats {
    /// Runtime creations handed to the writer.
    pub jobs: u64,
    /// Commits run (queued jobs of one file are committed together).
    pub commits: u64,
    /// Entries written.
    pub committed: u64,
    /// Packed bytes written.
    pub bytes_packed: u64,
    /// Packs another process (or runtime) had committed first.
    pub deduplicated: u64,
    /// Packed bytes now served from file pages mapped over the packing
    /// memory.
    pub bytes_remapped: u64,
    /// Packs left in process memory (commit failed, small, or no longer used).
    pub bytes_kept_in_memory: u64,
    /// Jobs whose commit failed (their packs stay in process memory).
    pub failed: u64,
    /// Unpacked bytes hashed from model files (keys deferred at load time).
    pub bytes_hashed: u64,
    /// Packs not committed because their model file changed after loading.
    pub source_changed: u64,
    /// The latest failure.
    pub last_failure: Option<String>,
    /// Milliseconds the writer spent.
    pub commit_ms: f64,
    /// Jobs queued or being written now.
    pub pending: u64,
}

/// The writer starts when no job arrived for this long ...
const QUIET: std::time::Duration = std::time::Duration::from_millis(50);
/// ... or after this long in all.
const QUIET_MAX: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct WorkerState {
    /// A flush is waiting: start at once.
    hurry: bool,
    queue: std::collections::VecDeque<Job>,
    busy: bool,
    /// The writer waits for a first job (only then does a new job wake it:
    /// while it waits for the load to go quiet it looks at the queue on its
    /// own, so a runtime creation never wakes it and never gives up its
    /// CPU to it).
    idle: bool,
    /// The process whose writer thread serves this queue. A child created
    /// by `fork` inherits the state but not the thread: it drops the
    /// parent's jobs (the parent writes them) and starts its own writer.
    started: Option<u32>,
    stats: BackgroundStats,
}

struct Worker {
    state: Mutex<WorkerState>,
    cv: std::sync::Condvar,
}

fn worker() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| Worker {
        state: Mutex::new(WorkerState::default()),
        cv: std::sync::Condvar::new(),
    })
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, WorkerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// In a child created by `fork`, which inherits the state but not the
/// thread: drops the parent's jobs (the parent writes them).
fn forget_parent_writer(st: &mut WorkerState) {
    if st.started.is_some_and(|p| p != std::process::id()) {
        st.queue.clear();
        st.busy = false;
        st.idle = false;
        st.started = None;
    }
}

/// Starts this process's writer thread if it is not running.
fn ensure_writer(st: &mut WorkerState) {
    forget_parent_writer(st);
    if st.started.is_some() {
        return;
    }
    let pid = std::process::id();
    let spawned = std::thread::Builder::new()
        .name("ptekit-cache-commit".into())
        .spawn(run_worker);
    match spawned {
        Ok(_) => st.started = Some(pid),
        Err(e) => {
            // No writer: the packs stay in process memory.
            let n = st.queue.len() as u64;
            st.queue.clear();
            st.stats.failed += n;
            st.stats.last_failure = Some(format!("no writer thread: {e}"));
        }
    }
}

/// Starts the background writer ahead of the first commit (from a thread
/// off the load path: the new thread inherits its scheduling policy, see
/// [`crate::sys::yield_on_wakeup`]); it waits idle until a job comes.
pub fn start_background_writer() {
    ensure_writer(&mut worker().lock());
}

fn submit(job: Job) {
    let w = worker();
    let mut st = w.lock();
    forget_parent_writer(&mut st);
    st.stats.jobs += 1;
    st.queue.push_back(job);
    let wake = st.idle;
    ensure_writer(&mut st);
    if wake {
        st.idle = false;
        drop(st);
        w.cv.notify_all();
    }
}

fn run_worker() {
    // Woken while a model loads (a flush, a new job): never take the
    // loading thread's CPU for that.
    crate::sys::yield_on_wakeup();
    let w = worker();
    // The writer's own handle of each cache file: the load path's handle
    // (shared by this process's runtimes) is never locked while the writer
    // hashes, writes or flushes.
    let mut own: HashMap<FileKey, FileState> = HashMap::new();
    loop {
        let jobs: Vec<Job> = {
            let mut st = w.lock();
            while st.queue.is_empty() {
                st.idle = true;
                st =
                    w.cv.wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            st.idle = false;
            // A model load creates its runtimes back to back: start once
            // no new job came for a moment (so the writer does not compete
            // with the load for the CPU, and the load is one commit), unless
            // someone waits for the commit.
            let since = std::time::Instant::now();
            while !st.hurry && since.elapsed() < QUIET_MAX {
                let n = st.queue.len();
                st = match w.cv.wait_timeout(st, QUIET) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
                if st.queue.len() == n {
                    break;
                }
            }
            st.busy = true;
            st.hurry = false;
            st.queue.drain(..).collect()
        };
        let started = std::time::Instant::now();
        let mut delta = BackgroundStats::default();
        // Jobs queued together for one file are one commit (one fdatasync).
        let mut rest = jobs;
        while let Some(first) = rest.first() {
            let file = first.file.clone();
            let (mine, others): (Vec<Job>, Vec<Job>) =
                rest.into_iter().partition(|j| Arc::ptr_eq(&j.file, &file));
            rest = others;
            let st = own
                .entry((file.path.clone(), file.opts.read_only))
                .or_insert_with(|| FileState {
                    file: None,
                    error: None,
                    rebuilt: None,
                    checked: None,
                });
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                write_jobs(&file, st, mine, &mut delta);
            }));
            if r.is_err() {
                delta.failed += 1;
                delta.last_failure = Some("the background commit panicked".into());
            }
        }
        let mut st = w.lock();
        let s = &mut st.stats;
        s.commits += delta.commits;
        s.committed += delta.committed;
        s.bytes_packed += delta.bytes_packed;
        s.deduplicated += delta.deduplicated;
        s.bytes_remapped += delta.bytes_remapped;
        s.bytes_kept_in_memory += delta.bytes_kept_in_memory;
        s.failed += delta.failed;
        s.bytes_hashed += delta.bytes_hashed;
        s.source_changed += delta.source_changed;
        if delta.last_failure.is_some() {
            s.last_failure = delta.last_failure;
        }
        s.commit_ms += started.elapsed().as_secs_f64() * 1e3;
        st.busy = false;
        w.cv.notify_all();
    }
}

/// Commits the packs of `jobs` (all over `file`, through the writer's own
/// handle `st`) in one batch, then maps the committed file pages over the
/// packing memory of each pack still in use.
fn write_jobs(file: &SharedFile, st: &mut FileState, jobs: Vec<Job>, d: &mut BackgroundStats) {
    let n_jobs = jobs.len() as u64;
    let mut items: Vec<JobItem> = Vec::new();
    let mut memos: Vec<RegionMemo> = Vec::new();
    for j in jobs {
        items.extend(j.items);
        memos.extend(j.memos);
    }
    // Content keys not computed at load time: hashed now from the model
    // files. A pack whose file changed meanwhile stays in process memory.
    let mut seen = HashMap::new();
    let mut kept = Vec::with_capacity(items.len());
    for it in items {
        match it.miss.resolved(&mut seen, &mut memos, &mut d.bytes_hashed) {
            Ok(miss) => kept.push(JobItem { miss, ..it }),
            Err(e) => {
                d.source_changed += 1;
                d.bytes_kept_in_memory += it.size as u64;
                d.last_failure = Some(e);
            }
        }
    }
    let items = kept;
    let recs: Vec<(&[u8], Entry)> = items
        .iter()
        .map(|it| {
            // SAFETY: the block holds at least it.size bytes (checked against
            // its reservation in look_up_or_insert) that XNNPACK finished
            // writing before the runtime's creation returned; the Arc keeps
            // the block alive while we read it.
            let b = unsafe { it.block.bytes(it.size) };
            (b, entry_for(&it.miss, b))
        })
        .collect();
    d.commits += 1;
    let committed = match commit_to_file(file, st, &recs, &memos, true) {
        Ok(c) => c,
        Err(r) => {
            d.failed += n_jobs;
            d.last_failure = Some(format!("{r:?}"));
            d.bytes_kept_in_memory += items.iter().map(|i| i.size as u64).sum::<u64>();
            return;
        }
    };
    let Some(f) = st.file.as_ref() else {
        return;
    };
    for ((it, (bytes, _)), (entry, written)) in items.iter().zip(&recs).zip(committed) {
        let same = holds_our_bytes(f, &entry, written, bytes);
        if written {
            d.committed += 1;
            d.bytes_packed += it.size as u64;
        } else if same {
            d.deduplicated += 1;
        }
        // Still used by a runtime (the cache holds the other reference).
        let in_use = Arc::strong_count(&it.block) > 1;
        let remapped = same
            && in_use
            && match &*it.block {
                Block::Pages(p) => f.map_entry_over(p, &entry).is_ok(),
                Block::Heap { .. } => false,
            };
        if remapped {
            d.bytes_remapped += it.size as u64;
        } else {
            d.bytes_kept_in_memory += it.size as u64;
        }
    }
}

/// Waits until the background writer has committed every pack handed to it
/// so far, at most `timeout`. Returns whether nothing is pending.
pub fn flush_background(timeout: std::time::Duration) -> bool {
    let w = worker();
    let deadline = std::time::Instant::now() + timeout;
    let mut st = w.lock();
    if st.started != Some(std::process::id()) {
        // No writer of this process: nothing of ours is pending.
        return true;
    }
    st.hurry = true;
    w.cv.notify_all();
    while !st.queue.is_empty() || st.busy {
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        st = match w.cv.wait_timeout(st, deadline - now) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
    true
}

/// What the background writer did so far in this process.
pub fn background_stats() -> BackgroundStats {
    let st = worker().lock();
    let mut s = st.stats.clone();
    if st.started == Some(std::process::id()) {
        s.pending = st.queue.len() as u64 + u64::from(st.busy);
    }
    s
}
