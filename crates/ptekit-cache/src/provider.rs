//! The weights cache that XNNPACK calls: [`WeightsCache`] and the
//! `xnn_weights_cache_provider` vtable it exposes.
//!
//! Flow during `xnn_create_runtime_*` for every static weight, as observed in
//! the ExecuTorch 1.5.1 XNNPACK build (see the crate docs for how the layouts
//! were verified):
//!
//! 1. `look_up(key)`: a hit returns an offset and XNNPACK skips packing;
//! 2. on a miss `reserve_space(n)`: we hand out memory to pack into, inside
//!    the shared mapping of the cache file (under the writer lock), or on the
//!    heap with a recorded reason;
//! 3. `look_up_or_insert(key, ptr, n)`: we flush the bytes and append the
//!    index record, then return the offset;
//! 4. at setup/reshape: `is_finalized()` must be true and `offset_to_addr`
//!    turns offsets into pointers.
//!
//! The offsets we return are indices into a per-process table of pointers.

#![allow(
    unsafe_code,
    reason = "XNNPACK's weights-cache provider: C callbacks receiving raw pointers"
)]

use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use crate::error::CacheError;
use crate::format::{key_digest, ContentKey, Entry, EntryKey, KeySource};
use crate::store::{self, data_digest, CacheFile, FileOptions};
use crate::sys::SharedMap;

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
    /// Automatic compactions run.
    pub compactions: u64,
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
    /// Compact on [`WeightsCache::finalize`] when dead bytes exceed this share
    /// of the data region (`None`: never).
    pub auto_compact_dead_share: Option<f64>,
    /// ... and exceed this many bytes.
    pub auto_compact_min_dead_bytes: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            file: FileOptions::default(),
            verify_on_load: false,
            auto_compact_dead_share: Some(0.5),
            auto_compact_min_dead_bytes: 1 << 20,
        }
    }
}

#[derive(Clone)]
struct Registration {
    key: ContentKey,
    name: String,
}

#[derive(Clone)]
struct MissInfo {
    key: EntryKey,
    name: String,
    kernel_len: u64,
    bias_len: Option<u64>,
    kernel_source: KeySource,
}

enum Miss {
    Keyed(MissInfo),
    Unregistered,
}

enum PendingKind {
    File { offset: u64, miss: MissInfo },
    Heap { key: Option<EntryKey> },
    Dedupe { slot: u32, miss: MissInfo },
}

struct Pending {
    ptr: *mut u8,
    cap: usize,
    kind: PendingKind,
}

struct HeapBlock {
    ptr: *mut u8,
    layout: Layout,
}

struct Inner {
    path: Option<PathBuf>,
    opts: CacheOptions,
    file: Option<CacheFile>,
    file_reason: Option<FallbackReason>,
    retired: Vec<Arc<SharedMap>>,
    regs: HashMap<usize, Registration>,
    table: Vec<*mut u8>,
    local: HashMap<EntryKey, usize>,
    pending: HashMap<ThreadId, Pending>,
    last_miss: HashMap<ThreadId, Miss>,
    heap: Vec<HeapBlock>,
    stats: Stats,
    finalized: bool,
}

// SAFETY: the raw pointers in Inner point into mappings and heap blocks that
// Inner owns; all access goes through the Mutex in Shared.
unsafe impl Send for Inner {}

struct Shared {
    inner: Mutex<Inner>,
    provider: XnnWeightsCacheProvider,
}

/// A packed-weight cache for XNNPACK, backed by a file (or the heap only).
///
/// Keep it alive for as long as any runtime created with it: XNNPACK asks it
/// for weight addresses whenever a runtime is reshaped or set up.
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
        let mut inner = Inner {
            path: path.map(Path::to_path_buf),
            opts,
            file: None,
            file_reason: None,
            retired: Vec::new(),
            regs: HashMap::new(),
            table: Vec::new(),
            local: HashMap::new(),
            pending: HashMap::new(),
            last_miss: HashMap::new(),
            heap: Vec::new(),
            stats: Stats::default(),
            finalized: false,
        };
        match &inner.path {
            None => inner.file_reason = Some(FallbackReason::NoPath),
            Some(p) => match CacheFile::open(p, &inner.opts.file) {
                Ok(f) => {
                    if !f.writable() {
                        inner.file_reason = Some(FallbackReason::ReadOnly);
                    }
                    inner.file = Some(f);
                }
                Err(e) => {
                    inner.stats.file_error = Some(e.to_string());
                    inner.file_reason = Some(FallbackReason::FileUnusable(e.to_string()));
                }
            },
        }
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

    /// The value to pass as `xnn_weights_cache_t` to `xnn_create_runtime_v3/v4`.
    pub fn as_xnn_weights_cache(&self) -> *mut c_void {
        let p: *const XnnWeightsCacheProvider = &self.shared.provider;
        p as *mut c_void
    }

    /// Registers an unpacked buffer that will be given to XNNPACK as static
    /// tensor data. Its content key is computed now (BLAKE3), unless `key` is
    /// given: a caller key must identify the content (e.g. a SHA-256 of it).
    pub fn register(&self, data: &[u8], name: Option<&str>, key: Option<[u8; 32]>) {
        let ck = match key {
            Some(k) => ContentKey {
                key: k,
                source: KeySource::Caller,
                len: data.len() as u64,
            },
            None => ContentKey {
                key: *blake3::hash(data).as_bytes(),
                source: KeySource::Hashed,
                len: data.len() as u64,
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
            },
        );
    }

    /// Marks the end of runtime creation: XNNPACK operator setup requires a
    /// finalized cache. Releases the writer lock, and compacts the file when
    /// dead bytes exceed the configured share.
    pub fn finalize(&self) -> Stats {
        let mut g = lock(&self.shared);
        g.finalized = true;
        g.pending.clear();
        g.last_miss.clear();
        if let Some(f) = g.file.as_mut() {
            f.unlock();
        }
        g.maybe_compact();
        g.refresh_file_stats();
        g.stats.clone()
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
        for b in g.heap.drain(..) {
            // SAFETY: allocated by std::alloc::alloc with this layout in
            // alloc_heap, freed once here.
            unsafe { std::alloc::dealloc(b.ptr, b.layout) };
        }
    }
}

impl Inner {
    fn refresh_file_stats(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.refresh();
            let s = f.summary();
            self.stats.file_bytes = s.file_bytes;
            self.stats.dead_bytes = s.dead_bytes;
            self.stats.live_entries = s.live_entries;
        }
    }

    fn maybe_compact(&mut self) {
        let Some(share) = self.opts.auto_compact_dead_share else {
            return;
        };
        let Some(f) = self.file.as_mut() else { return };
        if !f.writable() {
            return;
        }
        let _ = f.refresh();
        let s = f.summary();
        let data = s.file_bytes.saturating_sub(s.index_region_bytes).max(1);
        let slots_tight = s.slots_used * 10 >= s.slot_count * 9;
        let dead_heavy = s.dead_bytes >= self.opts.auto_compact_min_dead_bytes
            && (s.dead_bytes as f64) / (data as f64) > share;
        if !(dead_heavy || slots_tight) {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        match store::compact(&path, &self.opts.file) {
            Ok(_) => {
                self.stats.compactions += 1;
                self.reopen();
            }
            Err(e) => self.stats.last_fallback = Some(format!("auto-compaction failed: {e}")),
        }
    }

    /// Re-opens the file at our path (after a compaction replaced it), keeping
    /// the old mapping alive for pointers already handed out.
    fn reopen(&mut self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        match CacheFile::open(&path, &self.opts.file) {
            Ok(nf) => {
                if let Some(old) = self.file.take() {
                    self.retired.push(old.map().clone());
                }
                self.file = Some(nf);
                true
            }
            Err(e) => {
                self.file_reason = Some(FallbackReason::FileUnusable(e.to_string()));
                self.stats.file_error = Some(e.to_string());
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
        let digest = key_digest(&k.key, bias.as_ref().map(|b| &b.key));
        Miss::Keyed(MissInfo {
            key: EntryKey {
                seed: key.seed,
                fingerprint_id: key.fingerprint_id,
                digest,
            },
            name: k.name.clone(),
            kernel_len: k.key.len,
            bias_len: bias.map(|b| b.key.len),
            kernel_source: k.key.source,
        })
    }

    fn push_ptr(&mut self, p: *mut u8) -> usize {
        self.table.push(p);
        self.table.len() - 1
    }

    /// Serves a committed file entry (slot) as a hit.
    fn map_entry(&mut self, slot: u32) -> Option<usize> {
        let verify = self.opts.verify_on_load;
        let f = self.file.as_ref()?;
        let e = match f.index().slots.get(slot as usize) {
            Some(crate::format::SlotState::Live(e)) => e.clone(),
            _ => return None,
        };
        if verify && !f.verify_entry(&e) {
            self.stats.rejected_entries += 1;
            return None;
        }
        let p = f.entry_bytes(&e)?.as_ptr() as *mut u8;
        self.stats.bytes_mapped += e.data_len;
        Some(self.push_ptr(p))
    }

    fn look_up(&mut self, key: &XnnLookUpKey) -> usize {
        let tid = std::thread::current().id();
        let miss = self.resolve(key);
        let info = match miss {
            Miss::Unregistered => {
                self.stats.unregistered_lookups += 1;
                self.stats.misses += 1;
                self.last_miss.insert(tid, Miss::Unregistered);
                return NOT_FOUND;
            }
            Miss::Keyed(i) => i,
        };
        if let Some(&i) = self.local.get(&info.key) {
            self.stats.hits += 1;
            return i;
        }
        if self.file.is_some() {
            let mut found = self
                .file
                .as_ref()
                .and_then(|f| f.index().find(&info.key).map(|(s, _)| s));
            if found.is_none() {
                if let Some(f) = self.file.as_mut() {
                    let _ = f.refresh();
                    found = f.index().find(&info.key).map(|(s, _)| s);
                }
            }
            if let Some(slot) = found {
                if let Some(i) = self.map_entry(slot) {
                    self.local.insert(info.key, i);
                    self.stats.hits += 1;
                    return i;
                }
            }
        }
        self.stats.misses += 1;
        self.last_miss.insert(tid, Miss::Keyed(info));
        NOT_FOUND
    }

    fn alloc_heap(&mut self, n: usize) -> *mut u8 {
        let Ok(layout) = Layout::from_size_align(n.max(1), HEAP_ALIGN) else {
            return std::ptr::null_mut();
        };
        // SAFETY: layout has non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        if !p.is_null() {
            self.heap.push(HeapBlock { ptr: p, layout });
        }
        p
    }

    fn free_heap(&mut self, p: *mut u8) {
        if let Some(i) = self.heap.iter().position(|b| b.ptr == p) {
            let b = self.heap.swap_remove(i);
            // SAFETY: allocated in alloc_heap with this layout; removed from
            // the list so it is freed exactly once.
            unsafe { std::alloc::dealloc(b.ptr, b.layout) };
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

    fn heap_pending(
        &mut self,
        tid: ThreadId,
        n: usize,
        reason: FallbackReason,
        key: Option<EntryKey>,
    ) -> *mut u8 {
        self.count_fallback(&reason);
        let p = self.alloc_heap(n);
        if !p.is_null() {
            self.pending.insert(
                tid,
                Pending {
                    ptr: p,
                    cap: n,
                    kind: PendingKind::Heap { key },
                },
            );
        }
        p
    }

    fn release_lock_if_idle(&mut self) {
        let file_pending = self
            .pending
            .values()
            .any(|p| matches!(p.kind, PendingKind::File { .. }));
        if !file_pending {
            if let Some(f) = self.file.as_mut() {
                f.unlock();
            }
        }
    }

    fn reserve_space(&mut self, n: usize) -> *mut u8 {
        let tid = std::thread::current().id();
        if let Some(old) = self.pending.remove(&tid) {
            // An abandoned reservation (XNNPACK failed between reserve and
            // insert). A file range stays recorded as an orphan reservation.
            if !matches!(old.kind, PendingKind::File { .. }) {
                self.free_heap(old.ptr);
            }
            self.release_lock_if_idle();
        }
        let miss = match self.last_miss.remove(&tid) {
            None => return self.heap_pending(tid, n, FallbackReason::NoLookUp, None),
            Some(Miss::Unregistered) => {
                return self.heap_pending(tid, n, FallbackReason::Unregistered, None)
            }
            Some(Miss::Keyed(m)) => m,
        };
        if let Some(r) = self.file_reason.clone() {
            if r != FallbackReason::ReadOnly || self.file.is_none() {
                return self.heap_pending(tid, n, r, Some(miss.key));
            }
        }
        let Some(f) = self.file.as_mut() else {
            return self.heap_pending(tid, n, FallbackReason::NoPath, Some(miss.key));
        };
        if !f.writable() {
            return self.heap_pending(tid, n, FallbackReason::ReadOnly, Some(miss.key));
        }
        match f.lock() {
            Ok(true) => {}
            Ok(false) => {
                return self.heap_pending(tid, n, FallbackReason::LockTimeout, Some(miss.key))
            }
            Err(e) => {
                let r = FallbackReason::from_error(&e);
                return self.heap_pending(tid, n, r, Some(miss.key));
            }
        }
        if !f.is_current() {
            // Compaction replaced the file: move to the new one.
            f.unlock();
            if !self.reopen() {
                let r = self.file_reason.clone().unwrap_or(FallbackReason::NoPath);
                return self.heap_pending(tid, n, r, Some(miss.key));
            }
            let Some(f) = self.file.as_mut() else {
                return self.heap_pending(tid, n, FallbackReason::NoPath, Some(miss.key));
            };
            match f.lock() {
                Ok(true) => {}
                _ => return self.heap_pending(tid, n, FallbackReason::LockTimeout, Some(miss.key)),
            }
        }
        let Some(f) = self.file.as_mut() else {
            return self.heap_pending(tid, n, FallbackReason::NoPath, Some(miss.key));
        };
        if let Err(e) = f.refresh() {
            let r = FallbackReason::from_error(&e);
            self.release_lock_if_idle();
            return self.heap_pending(tid, n, r, Some(miss.key));
        }
        if let Some((slot, _)) = f.index().find(&miss.key) {
            // Another process committed this key since our look-up: pack into
            // scratch memory and use theirs.
            self.release_lock_if_idle();
            let p = self.alloc_heap(n);
            if !p.is_null() {
                self.pending.insert(
                    tid,
                    Pending {
                        ptr: p,
                        cap: n,
                        kind: PendingKind::Dedupe { slot, miss },
                    },
                );
            }
            return p;
        }
        match f.reserve(n as u64) {
            Ok(off) => {
                let p = f.map().addr(off, n as u64);
                match p {
                    Some(p) => {
                        self.pending.insert(
                            tid,
                            Pending {
                                ptr: p,
                                cap: n,
                                kind: PendingKind::File { offset: off, miss },
                            },
                        );
                        p
                    }
                    None => {
                        self.release_lock_if_idle();
                        self.heap_pending(
                            tid,
                            n,
                            FallbackReason::Io("reserved range outside mapping".into()),
                            Some(miss.key),
                        )
                    }
                }
            }
            Err(e) => {
                let r = FallbackReason::from_error(&e);
                self.release_lock_if_idle();
                self.heap_pending(tid, n, r, Some(miss.key))
            }
        }
    }

    fn look_up_or_insert(&mut self, key: &XnnLookUpKey, ptr: *mut u8, size: usize) -> usize {
        if ptr.is_null() {
            return self.look_up(key);
        }
        let tid = std::thread::current().id();
        let pending = match self.pending.remove(&tid) {
            Some(p) if p.ptr == ptr => Some(p),
            Some(p) => {
                self.pending.insert(tid, p);
                None
            }
            None => None,
        };
        let pending = match pending {
            Some(p) => p,
            None => {
                // Not memory we handed out on this thread; look for another
                // thread's reservation with this pointer.
                let other = self
                    .pending
                    .iter()
                    .find(|(_, p)| p.ptr == ptr)
                    .map(|(t, _)| *t);
                match other.and_then(|t| self.pending.remove(&t)) {
                    Some(p) => p,
                    None => return NOT_FOUND,
                }
            }
        };
        if size > pending.cap {
            // XNNPACK wrote more than it reserved: never commit such bytes.
            self.release_lock_if_idle();
            return NOT_FOUND;
        }
        // SAFETY: ptr .. ptr+size lies inside the reservation we handed out
        // (size <= cap checked above) and XNNPACK has finished writing it.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, size) };
        match pending.kind {
            PendingKind::Heap { key } => {
                self.stats.bytes_heap += size as u64;
                let i = self.push_ptr(ptr);
                if let Some(k) = key {
                    self.local.insert(k, i);
                }
                i
            }
            PendingKind::Dedupe { slot, miss } => {
                let same = self
                    .file
                    .as_ref()
                    .and_then(|f| match f.index().slots.get(slot as usize) {
                        Some(crate::format::SlotState::Live(e)) => f.entry_bytes(e),
                        _ => None,
                    })
                    .is_some_and(|theirs| theirs == bytes);
                if same {
                    if let Some(i) = self.map_entry(slot) {
                        self.free_heap(ptr);
                        self.stats.deduplicated += 1;
                        self.local.insert(miss.key, i);
                        return i;
                    }
                }
                self.count_fallback(&FallbackReason::Io(
                    "another process committed different bytes for this key".into(),
                ));
                self.stats.bytes_heap += size as u64;
                let i = self.push_ptr(ptr);
                self.local.insert(miss.key, i);
                i
            }
            PendingKind::File { offset, miss } => {
                let entry = Entry {
                    data_offset: offset,
                    data_len: size as u64,
                    seed: miss.key.seed,
                    fingerprint_id: miss.key.fingerprint_id,
                    kernel_len: miss.kernel_len,
                    bias_len: miss.bias_len,
                    key_digest: miss.key.digest,
                    data_digest: data_digest(bytes),
                    kernel_key: miss.kernel_source,
                    name: miss.name.clone(),
                    pid: std::process::id(),
                };
                let res = match self.file.as_mut() {
                    Some(f) => f.commit(entry),
                    None => Err(CacheError::Invalid("file closed".into())),
                };
                let i = self.push_ptr(ptr);
                match res {
                    Ok(_) => {
                        self.stats.committed += 1;
                        self.stats.bytes_packed += size as u64;
                    }
                    Err(e) => {
                        // The bytes are valid for this process but not
                        // recorded: count it like a heap fallback.
                        let r = FallbackReason::from_error(&e);
                        self.count_fallback(&r);
                    }
                }
                self.local.insert(miss.key, i);
                self.release_lock_if_idle();
                i
            }
        }
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
