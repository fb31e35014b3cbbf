//! # libptekit_xnnpack.so — the packed-weight cache behind an unmodified ExecuTorch
//!
//! ```sh
//! LD_PRELOAD=target/release/libptekit_xnnpack.so PTEKIT_XNNPACK_CACHE=/path/cache.pwc <program>
//! ```
//!
//! The library defines the XNNPACK entry points ExecuTorch's XNNPACK backend
//! calls through its PLT (`xnn_initialize`, `xnn_create_subgraph`, tensor
//! and weight-packing node definitions, `xnn_create_runtime_v4`,
//! `xnn_delete_runtime`, `xnn_delete_subgraph`),
//! forwards every call to the real function (found in the object that
//! defines it, see [`real`]) and, when `PTEKIT_XNNPACK_CACHE` names a file,
//! gives each runtime that ExecuTorch creates without a weights cache a
//! [`ptekit_cache::WeightsCache`] over that file. A runtime to which
//! ExecuTorch passes its own cache is left alone; without the variable
//! nothing changes.
//!
//! Keys: every static buffer used as a filter or bias is keyed by its bytes
//! (BLAKE3, hashed in parallel; a buffer in an unchanged mapped model file is
//! not hashed again, see [`regions`]) and a packing descriptor — its datatype,
//! dimensions and all quantization parameters (scale contents included), the
//! parameters and input/output descriptors of the nodes that use it, the
//! whole subgraph's definitions and the runtime flags ([`graph`]). Cache
//! files carry the XNNPACK build identifier and the CPU features; a file
//! from another build or CPU is rebuilt, never served.
//!
//! `mlock` is interposed too ([`mlock`]): ExecuTorch's mmap loader locks
//! every weight range it loads, and the backend unmaps the unpacked weights
//! right after runtime creation. While a thread defines an XNNPACK subgraph
//! (`xnn_create_subgraph` is interposed to know it) with the cache on, a
//! lock of a range in a read-only file mapping is held back; after
//! `xnn_create_runtime_v4` the ranges whose weights only cache hits
//! answered are never locked (XNNPACK did not read those bytes, and they are
//! unmapped right after), every other one is locked then. Only done where
//! `mlock` cannot fail for a limit (`CAP_IPC_LOCK` or an infinite
//! `RLIMIT_MEMLOCK`), so no caller is told 0 where the real call would have
//! failed; `PTEKIT_MLOCK_DEFER=0` turns it off.
//!
//! From Python: `ptekit.runtime.enable_xnnpack_cache(path)` (the same code,
//! linked into the Python extension). The extension is made global there
//! only after libc, so ExecuTorch's calls of `mlock` still bind to libc's:
//! when the backend initializes XNNPACK (`xnn_initialize`, at its load) and
//! before each subgraph, [`got`] redirects the `mlock` imports of the
//! loaded objects (all but libc, the dynamic loader, the vDSO and ptekit's
//! own; in the Python runtime it is `libexecutorch.so`'s, whose
//! `MmapDataLoader` locks each weight, that matters) to the deferring hook
//! by rewriting their GOT words. Where it cannot (another architecture, no
//! such import, `mprotect` refused) deferral is off with the reason in the
//! counters (`mlock.off_reason`, and `mlock_route`); everything else works,
//! only every weight is locked as without ptekit. Counters:
//! [`ptekit_xnnpack_stats_json`].

#![allow(
    unsafe_code,
    reason = "the C ABI of the preload library (raw pointers from C callers)"
)]

pub mod got;
pub mod graph;
pub mod hooks;
pub mod mlock;
pub mod real;
pub mod regions;
pub mod session;

use std::ffi::{c_char, CStr};
use std::path::PathBuf;

/// Turns the cache on for runtimes created from now on (`path` NULL: off).
/// `verify` nonzero checks packed bytes against their digests before serving
/// them. Returns 0, or -1 if `path` is not UTF-8.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ptekit_xnnpack_enable(path: *const c_char, verify: u32) -> i32 {
    if path.is_null() {
        session::enable(None, false);
        return 0;
    }
    // SAFETY: caller guarantees a NUL-terminated string.
    let Ok(p) = unsafe { CStr::from_ptr(path) }.to_str() else {
        return -1;
    };
    session::enable(Some(PathBuf::from(p)), verify != 0);
    0
}

/// Waits at most `timeout_ms` until the packs being committed in the
/// background are in the file; returns 1 when nothing is pending, else 0.
#[no_mangle]
pub extern "C" fn ptekit_xnnpack_flush(timeout_ms: u64) -> i32 {
    i32::from(session::flush(std::time::Duration::from_millis(timeout_ms)))
}

/// Writes the counters as NUL-terminated JSON into `buf` (capacity `cap`);
/// returns the length without the NUL (nothing written when `>= cap`).
///
/// # Safety
/// `buf` is NULL or has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ptekit_xnnpack_stats_json(buf: *mut c_char, cap: usize) -> usize {
    let s = serde_json::to_string(&session::snapshot()).unwrap_or_default();
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
