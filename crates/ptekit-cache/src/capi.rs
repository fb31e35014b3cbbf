//! C ABI. The header `include/ptekit_cache.h` is generated from this module
//! by cbindgen (the test `c_header_is_up_to_date` regenerates and compares it;
//! run it with `PTEKIT_UPDATE_HEADER=1` to rewrite the file).
//!
//! Usage from C or C++ (e.g. an XNNPACK delegate):
//! 1. `ptekit_cache_open(path, NULL)`;
//! 2. `ptekit_cache_register(...)` for every static weight buffer given to
//!    `xnn_define_tensor_value`, before creating the runtime;
//! 3. pass `ptekit_cache_xnn_weights_cache(c)` as the `xnn_weights_cache_t`
//!    of `xnn_create_runtime_v4`;
//! 4. `ptekit_cache_finalize(c)` after creating the runtime (XNNPACK refuses
//!    to set up operators of a runtime whose cache is not finalized);
//! 5. `ptekit_cache_free(c)` after the last runtime using it is deleted.

#![allow(
    unsafe_code,
    reason = "the C ABI: exported functions take raw pointers from C callers"
)]

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::time::Duration;

use crate::format::{ContentKey, KeySource};
use crate::provider::{CacheOptions, WeightsCache};

/// Opaque cache handle.
pub struct PtekitCache {
    inner: WeightsCache,
}

/// Options for [`ptekit_cache_open`]. Zero-initialized means defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PtekitCacheOptions {
    /// Nonzero: never write the file (misses pack to the heap).
    pub read_only: u32,
    /// Nonzero: check packed bytes against their digest before a hit.
    pub verify_on_load: u32,
    /// Writer lock timeout in milliseconds (0: 10 s).
    pub lock_timeout_ms: u64,
    /// Automatic compaction when dead bytes exceed this share of the data
    /// (0: default 0.5; negative: never).
    pub auto_compact_dead_share: f64,
    /// Nonzero: do not fsync/msync on commit (survives process crashes, not
    /// power loss).
    pub no_sync: u32,
}

/// Counters, as in the Rust `Stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PtekitCacheStats {
    /// Look-ups answered from the cache.
    pub hits: u64,
    /// Look-ups that made XNNPACK pack.
    pub misses: u64,
    /// Packed bytes served from the file mapping.
    pub bytes_mapped: u64,
    /// Packed bytes written into the file.
    pub bytes_packed: u64,
    /// Packed bytes put on the heap.
    pub bytes_heap: u64,
    /// Heap fallbacks (reasons: see `ptekit_cache_stats_json`).
    pub heap_fallbacks: u64,
    /// Look-ups of unregistered pointers.
    pub unregistered_lookups: u64,
    /// File size.
    pub file_bytes: u64,
    /// Dead bytes in the file.
    pub dead_bytes: u64,
    /// Nonzero when the file is unusable (details in the JSON).
    pub file_error: u32,
}

fn opts_from(o: Option<&PtekitCacheOptions>) -> CacheOptions {
    let mut c = CacheOptions::default();
    if let Some(o) = o {
        c.file.read_only = o.read_only != 0;
        c.verify_on_load = o.verify_on_load != 0;
        if o.lock_timeout_ms != 0 {
            c.file.lock_timeout = Duration::from_millis(o.lock_timeout_ms);
        }
        if o.auto_compact_dead_share < 0.0 {
            c.auto_compact_dead_share = None;
        } else if o.auto_compact_dead_share > 0.0 {
            c.auto_compact_dead_share = Some(o.auto_compact_dead_share);
        }
        c.file.durable = o.no_sync == 0;
    }
    c
}

/// Opens a cache over the file at `path` (created if missing; NULL: heap
/// only). `opts` may be NULL. Never returns NULL for a valid call: an
/// unusable file makes every pack fall back to the heap, with the reason in
/// the statistics. Returns NULL only if `path` is not valid UTF-8.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_open(
    path: *const c_char,
    opts: *const PtekitCacheOptions,
) -> *mut PtekitCache {
    let path = if path.is_null() {
        None
    } else {
        // SAFETY: caller guarantees a NUL-terminated string.
        match unsafe { CStr::from_ptr(path) }.to_str() {
            Ok(s) => Some(PathBuf::from(s)),
            Err(_) => return std::ptr::null_mut(),
        }
    };
    // SAFETY: caller guarantees NULL or a valid options struct.
    let o = unsafe { opts.as_ref() };
    let inner = WeightsCache::new(path.as_deref(), opts_from(o));
    Box::into_raw(Box::new(PtekitCache { inner }))
}

/// Frees a cache. Delete every XNNPACK runtime created with it first.
///
/// # Safety
/// `c` is NULL or a handle from [`ptekit_cache_open`], not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_free(c: *mut PtekitCache) {
    if !c.is_null() {
        // SAFETY: created by Box::into_raw in ptekit_cache_open, freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// Registers a static weight buffer before runtime creation, without a
/// packing descriptor: only for callers whose buffers never appear with two
/// shapes, datatypes or quantization parameters (prefer
/// [`ptekit_cache_register_v2`]). With `key32` NULL the bytes are hashed now;
/// otherwise `key32` (32 bytes) must identify the content (e.g. its SHA-256)
/// and the bytes are not read. `name` (may be NULL) is stored with the entry;
/// a later entry with the same name, seed and fingerprint supersedes an older
/// one. Returns 0, or -1 on a NULL argument.
///
/// # Safety
/// `data` points to `len` readable bytes (when `key32` is NULL); `name` is
/// NULL or NUL-terminated; `key32` is NULL or 32 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_register(
    c: *mut PtekitCache,
    data: *const c_void,
    len: usize,
    name: *const c_char,
    key32: *const u8,
) -> i32 {
    // SAFETY: same contract as ptekit_cache_register_v2 with no descriptor.
    unsafe { ptekit_cache_register_v2(c, data, len, name, key32, std::ptr::null()) }
}

/// Like [`ptekit_cache_register`], with `desc32` (32 bytes, may be NULL): a
/// digest of everything besides the bytes that changes XNNPACK's packing of
/// this buffer — at least its datatype, dimensions and every quantization
/// parameter (scale contents, zero points, channel dimension, block size),
/// and the parameters of the node consuming it. Buffers with equal bytes and
/// different descriptors never share an entry.
///
/// # Safety
/// As [`ptekit_cache_register`]; `desc32` is NULL or 32 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_register_v2(
    c: *mut PtekitCache,
    data: *const c_void,
    len: usize,
    name: *const c_char,
    key32: *const u8,
    desc32: *const u8,
) -> i32 {
    // SAFETY: caller passes a live handle or NULL.
    let Some(c) = (unsafe { c.as_ref() }) else {
        return -1;
    };
    if data.is_null() {
        return -1;
    }
    let name = if name.is_null() {
        None
    } else {
        // SAFETY: caller guarantees NUL termination.
        Some(
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    let mut desc = [0u8; 32];
    if !desc32.is_null() {
        // SAFETY: caller guarantees 32 readable bytes at desc32.
        desc.copy_from_slice(unsafe { std::slice::from_raw_parts(desc32, 32) });
    }
    let key = if key32.is_null() {
        // SAFETY: caller guarantees `len` readable bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        ContentKey {
            key: *blake3::hash(bytes).as_bytes(),
            source: KeySource::Hashed,
            len: len as u64,
            desc,
        }
    } else {
        let mut k = [0u8; 32];
        // SAFETY: caller guarantees 32 readable bytes at key32.
        k.copy_from_slice(unsafe { std::slice::from_raw_parts(key32, 32) });
        ContentKey {
            key: k,
            source: KeySource::Caller,
            len: len as u64,
            desc,
        }
    };
    c.inner.register_key(data.cast(), key, name.as_deref());
    0
}

/// The `xnn_weights_cache_t` to pass to `xnn_create_runtime_v4` (a pointer to
/// an `xnn_weights_cache_provider` laid out as [`crate::provider::XnnWeightsCacheProvider`]).
///
/// # Safety
/// `c` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_xnn_weights_cache(c: *mut PtekitCache) -> *mut c_void {
    // SAFETY: caller passes a live handle or NULL.
    match unsafe { c.as_ref() } {
        Some(c) => c.inner.as_xnn_weights_cache(),
        None => std::ptr::null_mut(),
    }
}

/// Call after `xnn_create_runtime_v4` (on the thread that created the
/// runtime): commits the weights packed for it in one batch and marks the
/// cache finalized (required by XNNPACK operator setup). Returns 0.
///
/// # Safety
/// `c` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_finalize(c: *mut PtekitCache) -> i32 {
    // SAFETY: caller passes a live handle or NULL.
    match unsafe { c.as_ref() } {
        Some(c) => {
            c.inner.finalize();
            0
        }
        None => -1,
    }
}

/// Fills `out` with the counters. Returns 0, or -1 on NULL.
///
/// # Safety
/// `c` is a live handle, `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_get_stats(
    c: *const PtekitCache,
    out: *mut PtekitCacheStats,
) -> i32 {
    // SAFETY: caller passes a live handle and a writable struct, or NULLs.
    let (Some(c), Some(out)) = (unsafe { c.as_ref() }, unsafe { out.as_mut() }) else {
        return -1;
    };
    let s = c.inner.stats();
    *out = PtekitCacheStats {
        hits: s.hits,
        misses: s.misses,
        bytes_mapped: s.bytes_mapped,
        bytes_packed: s.bytes_packed,
        bytes_heap: s.bytes_heap,
        heap_fallbacks: s.heap_fallbacks,
        unregistered_lookups: s.unregistered_lookups,
        file_bytes: s.file_bytes,
        dead_bytes: s.dead_bytes,
        file_error: s.file_error.is_some() as u32,
    };
    0
}

/// Writes the full statistics (with fallback reasons) as a NUL-terminated
/// JSON string into `buf` (capacity `cap`). Returns the length the string
/// needs without the NUL; nothing is written when that is `>= cap`.
///
/// # Safety
/// `c` is a live handle; `buf` is NULL or has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_stats_json(
    c: *const PtekitCache,
    buf: *mut c_char,
    cap: usize,
) -> usize {
    // SAFETY: caller passes a live handle or NULL.
    let Some(c) = (unsafe { c.as_ref() }) else {
        return 0;
    };
    let s = serde_json::to_string(&c.inner.stats()).unwrap_or_default();
    let need = s.len();
    if !buf.is_null() && need < cap {
        // SAFETY: need + 1 <= cap bytes are writable at buf.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), need);
            *buf.add(need) = 0;
        }
    }
    need
}

/// Compacts the cache file at `path` (see `ptekit cache compact`). Returns 0
/// on success, -1 on failure.
///
/// # Safety
/// `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ptekit_cache_compact(path: *const c_char) -> i32 {
    if path.is_null() {
        return -1;
    }
    // SAFETY: caller guarantees NUL termination.
    let Ok(p) = (unsafe { CStr::from_ptr(path) }).to_str() else {
        return -1;
    };
    match crate::store::compact(
        std::path::Path::new(p),
        &crate::store::FileOptions::default(),
    ) {
        Ok(_) => 0,
        Err(_) => -1,
    }
}
