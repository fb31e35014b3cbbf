//! Deferred `mlock` of weights the cache answers.
//!
//! ExecuTorch's mmap data loader (`MmapDataLoader`, which the Python runtime
//! uses with `MlockConfig::UseMlockIgnoreErrors`) maps every range it loads
//! and `mlock`s it, the unpacked XNNPACK weights it fetches through the
//! named-data map included; the XNNPACK backend unmaps those right after the
//! runtime is created. When the cache answers a weight with a hit, XNNPACK
//! never reads its unpacked bytes, so locking them (which faults in every
//! page) is wasted work: about 40 % of a warm load.
//!
//! So `mlock` is interposed ([`ptekit_mlock_hook`], exported as `mlock` for
//! `LD_PRELOAD`). A call is deferred only when all of these hold:
//! - this thread is defining an XNNPACK subgraph: between the interposed
//!   `xnn_create_subgraph` ([`begin`]) and the `xnn_create_runtime_v4` or
//!   `xnn_delete_subgraph` of that subgraph, the window in which ExecuTorch's
//!   XNNPACK backend fetches the subgraph's constant data;
//! - the cache was on when that subgraph was created;
//! - the range lies inside one read-only file mapping (asked of the kernel
//!   with `PROCMAP_QUERY`; its device, inode and offset are recorded);
//! - `mlock` of such a range cannot fail for a limit in this process (see
//!   [`Policy`]): a caller that treats an `mlock` error as fatal
//!   (`MlockConfig::UseMlock`) is never told 0 where the real call would
//!   have failed.
//!
//! Everything else — program segments, the delegate payload, other
//! backends' data, other threads, the cache off — goes straight to the real
//! `mlock`. After the real `xnn_create_runtime_v4` returns ([`settle`]), a
//! deferred range whose pages hold at least one kernel or bias pointer that
//! a hit answered and none that XNNPACK packed is dropped (never locked); every
//! other one is locked then, after checking that the same file at the same
//! offset is still mapped there. `xnn_delete_subgraph` of a subgraph that
//! got no runtime locks all of its ranges the same way. A late `mlock` that
//! fails is counted ([`MlockStats::late_failed`]), not reported to anyone:
//! the caller was told 0 under the guarantee above (which covers limits,
//! not a lock that fails for lack of memory: such a failure is only
//! counted, where the real call would have returned it). A dropped range stays
//! mapped and readable as before; it is only not pinned, for the short time
//! until the backend unmaps it.
//!
//! `PTEKIT_MLOCK_DEFER=0` turns deferral off (for comparison).

#![allow(
    unsafe_code,
    reason = "interposes the C library's mlock and calls the real one"
)]

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ptekit_cache::Served;

use crate::regions::{mapped_range, procmap_query_supported, MappedRange};

/// Environment variable: `0` turns deferral off.
pub const ENV_DEFER: &str = "PTEKIT_MLOCK_DEFER";

/// `CAP_IPC_LOCK` (include/uapi/linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// Counters of the deferral over the process, and whether it is on.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MlockStats {
    /// Deferral is possible in this process ([`Policy`]).
    pub on: bool,
    /// Why it is not, when it is not.
    pub off_reason: Option<String>,
    /// `mlock` calls deferred.
    pub deferred: u64,
    /// Their bytes.
    pub deferred_bytes: u64,
    /// Deferred ranges never locked: only hits answered their weights.
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Deferred ranges locked after runtime creation (or subgraph deletion).
    pub locked_late: u64,
    /// Their bytes.
    pub locked_late_bytes: u64,
    /// Late `mlock` calls that failed (counted, reported to no one).
    pub late_failed: u64,
    /// Deferred ranges no longer mapped from the same file and offset when
    /// they were to be locked (the caller unmapped them first): not locked.
    pub late_unmapped: u64,
}

static DEFERRED: AtomicU64 = AtomicU64::new(0);
static DEFERRED_BYTES: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);
static SKIPPED_BYTES: AtomicU64 = AtomicU64::new(0);
static LOCKED_LATE: AtomicU64 = AtomicU64::new(0);
static LOCKED_LATE_BYTES: AtomicU64 = AtomicU64::new(0);
static LATE_FAILED: AtomicU64 = AtomicU64::new(0);
static LATE_UNMAPPED: AtomicU64 = AtomicU64::new(0);

/// Whether some subgraph window is open in the process: when false (the
/// common case) the hook goes straight to the real `mlock`.
static ACTIVE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The subgraph this thread is defining (0: none).
    static DEFINING: Cell<usize> = const { Cell::new(0) };
}

/// A deferred range and what was mapped there.
#[derive(Clone, Copy, Debug)]
struct Range {
    addr: usize,
    len: usize,
    at: MappedRange,
}

/// An open window: the subgraph, the thread defining it, the ranges
/// deferred so far.
struct Window {
    subgraph: usize,
    thread: std::thread::ThreadId,
    ranges: Vec<Range>,
}

/// The open windows.
fn windows() -> MutexGuard<'static, Vec<Window>> {
    static W: Mutex<Vec<Window>> = Mutex::new(Vec::new());
    W.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether deferral is possible in this process, decided once: `Err` holds
/// why not.
///
/// On when `mlock` of a mapped file range cannot fail for a limit —
/// `CAP_IPC_LOCK` in the effective set or an infinite `RLIMIT_MEMLOCK` —
/// and the kernel answers `PROCMAP_QUERY` (to check each range cheaply),
/// unless [`ENV_DEFER`] is `0`.
pub type Policy = Result<(), String>;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        if std::env::var(ENV_DEFER).is_ok_and(|v| v.trim() == "0") {
            return Err(format!("{ENV_DEFER}=0"));
        }
        if !has_ipc_lock() {
            match memlock_limit() {
                Some(u64::MAX) => {}
                lim => {
                    return Err(format!(
                        "no CAP_IPC_LOCK and RLIMIT_MEMLOCK is {}: mlock can fail for that \
                         limit, so none is held back",
                        lim.map_or("unknown".to_string(), |l| format!("{l} bytes"))
                    ))
                }
            }
        }
        if !procmap_query_supported() {
            return Err("PROCMAP_QUERY not supported (Linux before 6.11)".into());
        }
        Ok(())
    })
}

static UNREACHABLE: OnceLock<String> = OnceLock::new();

/// Records why `mlock` calls cannot reach [`ptekit_mlock_hook`] in this
/// process (for the Python path): no window opens from then on, and the
/// first reason is reported as [`MlockStats::off_reason`] (after a reason of
/// [`Policy`]).
pub fn set_unreachable(reason: String) {
    let _ = UNREACHABLE.set(reason);
}

/// Whether [`Policy`] allows deferral in this process (whatever
/// [`set_unreachable`] said).
pub(crate) fn allowed() -> bool {
    policy().is_ok()
}

/// [`Policy`], then whether `mlock` reaches the hook.
fn effective() -> Policy {
    policy().clone()?;
    match UNREACHABLE.get() {
        Some(r) => Err(r.clone()),
        None => Ok(()),
    }
}

/// `CAP_IPC_LOCK` in the effective set (`CapEff` of `/proc/self/status`).
fn has_ipc_lock() -> bool {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The soft `RLIMIT_MEMLOCK` in bytes (`u64::MAX`: infinite).
fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    if rc != 0 {
        return None;
    }
    Some(if r.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        r.rlim_cur
    })
}

/// The counters.
pub fn stats() -> MlockStats {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let p = effective();
    MlockStats {
        on: p.is_ok(),
        off_reason: p.err(),
        deferred: g(&DEFERRED),
        deferred_bytes: g(&DEFERRED_BYTES),
        skipped: g(&SKIPPED),
        skipped_bytes: g(&SKIPPED_BYTES),
        locked_late: g(&LOCKED_LATE),
        locked_late_bytes: g(&LOCKED_LATE_BYTES),
        late_failed: g(&LATE_FAILED),
        late_unmapped: g(&LATE_UNMAPPED),
    }
}

type MlockFn = unsafe extern "C" fn(*const c_void, usize) -> c_int;

/// The real `mlock`: the next definition after this object (the C
/// library's), resolved once; the raw system call when there is none or
/// it is ours.
fn real_mlock(addr: *const c_void, len: usize) -> c_int {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    const SYSCALL: usize = 1;
    let mut a = SLOT.load(Ordering::Acquire);
    if a == 0 {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        let next = unsafe { libc::dlsym(libc::RTLD_NEXT, c"mlock".as_ptr()) } as usize;
        let ours = [
            ptekit_mlock_hook as *const () as usize,
            mlock as *const () as usize,
        ];
        a = if next == 0 || ours.contains(&next) {
            SYSCALL
        } else {
            next
        };
        SLOT.store(a, Ordering::Release);
    }
    if a == SYSCALL {
        // SAFETY: the mlock system call with the caller's arguments; the
        // kernel validates them.
        let rc = unsafe { libc::syscall(libc::SYS_mlock, addr, len) };
        return c_int::try_from(rc).unwrap_or(-1);
    }
    // SAFETY: `a` is the address of the C library's mlock, of this signature.
    let f: MlockFn = unsafe { std::mem::transmute::<usize, MlockFn>(a) };
    // SAFETY: forwards the caller's arguments (mlock validates them).
    unsafe { f(addr, len) }
}

/// The interposed `mlock`: defers the call as the module documentation
/// says, else calls the real one. Also the target of the Python path's
/// patched imports.
///
/// # Safety
/// The contract of `mlock(2)`.
#[no_mangle]
pub unsafe extern "C" fn ptekit_mlock_hook(addr: *const c_void, len: usize) -> c_int {
    if ACTIVE.load(Ordering::Relaxed) && len > 0 && defer(addr as usize, len) {
        return 0;
    }
    real_mlock(addr, len)
}

/// `mlock` for `LD_PRELOAD`: [`ptekit_mlock_hook`].
///
/// # Safety
/// The contract of `mlock(2)`.
#[no_mangle]
pub unsafe extern "C" fn mlock(addr: *const c_void, len: usize) -> c_int {
    // SAFETY: same contract.
    unsafe { ptekit_mlock_hook(addr, len) }
}

/// Records `addr .. addr + len` as deferred when this thread is defining a
/// subgraph whose window is open and the range lies in one read-only file
/// mapping; returns whether it did.
fn defer(addr: usize, len: usize) -> bool {
    let sg = DEFINING.try_with(Cell::get).unwrap_or(0);
    if sg == 0 {
        return false;
    }
    // Counted with the interposers' own time (PTEKIT_XNNPACK_TIMING).
    let _t = crate::session::Span::hook();
    let Some(at) = mapped_range(addr, len) else {
        return false;
    };
    // The window must be this thread's: a handle deleted on another thread
    // and reused for a subgraph defined elsewhere is not ours any more.
    let me = std::thread::current().id();
    let mut w = windows();
    let Some(win) = w.iter_mut().find(|x| x.subgraph == sg && x.thread == me) else {
        return false;
    };
    win.ranges.push(Range { addr, len, at });
    DEFERRED.fetch_add(1, Ordering::Relaxed);
    DEFERRED_BYTES.fetch_add(len as u64, Ordering::Relaxed);
    true
}

/// Opens the window of `subgraph`, just created on this thread, when the
/// cache is on (`cache_on`) and deferral is possible.
pub fn begin(subgraph: *mut c_void, cache_on: bool) {
    let sg = subgraph as usize;
    if sg == 0 || !cache_on || policy().is_err() || UNREACHABLE.get().is_some() {
        return;
    }
    let mut w = windows();
    // A handle XNNPACK reuses after a deletion we did not see: start afresh
    // (its old ranges are locked, as for a subgraph without a runtime).
    let stale = w
        .iter()
        .position(|x| x.subgraph == sg)
        .map(|i| w.swap_remove(i).ranges);
    w.push(Window {
        subgraph: sg,
        thread: std::thread::current().id(),
        ranges: Vec::new(),
    });
    ACTIVE.store(true, Ordering::Relaxed);
    drop(w);
    let _ = DEFINING.try_with(|d| d.set(sg));
    if let Some(old) = stale {
        lock_late(&old);
    }
}

/// Closes the window of `subgraph` (on any thread): after its runtime
/// creation, `served` holds the look-ups of that creation (ranges only hits
/// answered are dropped, the rest locked); `None` (a subgraph deleted
/// without a runtime) locks every range.
pub fn settle(subgraph: *mut c_void, served: Option<Vec<Served>>) {
    let sg = subgraph as usize;
    let _ = DEFINING.try_with(|d| {
        if d.get() == sg {
            d.set(0);
        }
    });
    if !ACTIVE.load(Ordering::Relaxed) || sg == 0 {
        return;
    }
    let ranges = {
        let mut w = windows();
        let Some(i) = w.iter().position(|x| x.subgraph == sg) else {
            return;
        };
        let ranges = w.swap_remove(i).ranges;
        if w.is_empty() {
            ACTIVE.store(false, Ordering::Relaxed);
        }
        ranges
    };
    let mut served = served.unwrap_or_default();
    served.sort_unstable_by_key(|s| s.ptr);
    let mut late = Vec::with_capacity(ranges.len());
    let page = page_size();
    for r in ranges {
        // mlock locks whole pages, and the loader passes the start of its
        // mapping and the data's size: the data starts inside the first
        // page, maybe past `addr + len`. Each load is its own mapping, so
        // no other load's data lies in these pages.
        let start = r.addr - r.addr % page;
        let end = r
            .addr
            .saturating_add(r.len)
            .div_ceil(page)
            .saturating_mul(page);
        let from = served.partition_point(|s| s.ptr < start);
        let inside = served.get(from..).unwrap_or(&[]);
        let inside = inside.iter().take_while(|s| s.ptr < end);
        let (mut hit, mut packed) = (false, false);
        for s in inside {
            hit |= s.hit;
            packed |= !s.hit;
        }
        if hit && !packed {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            SKIPPED_BYTES.fetch_add(r.len as u64, Ordering::Relaxed);
        } else {
            late.push(r);
        }
    }
    lock_late(&late);
}

/// The page size (shared with the other modules of this crate).
pub(crate) use ptekit_cache::sys::page_size;

/// Locks deferred ranges now, each only if the same file at the same offset
/// is still mapped there.
fn lock_late(ranges: &[Range]) {
    for r in ranges {
        if mapped_range(r.addr, r.len) != Some(r.at) {
            LATE_UNMAPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if real_mlock(r.addr as *const c_void, r.len) == 0 {
            LOCKED_LATE.fetch_add(1, Ordering::Relaxed);
            LOCKED_LATE_BYTES.fetch_add(r.len as u64, Ordering::Relaxed);
        } else {
            LATE_FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmlck_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").expect("status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmLck")
    }

    /// Counter deltas since `a`: deferred, skipped, locked late, unmapped.
    fn delta(a: &MlockStats) -> (u64, u64, u64, u64) {
        let b = stats();
        (
            b.deferred - a.deferred,
            b.skipped - a.skipped,
            b.locked_late - a.locked_late,
            b.late_unmapped - a.late_unmapped,
        )
    }

    /// The whole cycle on three read-only mappings of a file, without
    /// XNNPACK: held back inside a window only, then skipped (a hit),
    /// locked late (a miss), or left alone (unmapped first).
    #[test]
    fn window_defers_then_settles() {
        if let Err(why) = policy() {
            // Unprivileged: nothing may be held back.
            assert!(!stats().on && stats().off_reason.as_deref() == Some(why.as_str()));
            return;
        }
        let page = page_size();
        let len = 4 * page;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.pte");
        std::fs::write(&path, vec![3u8; len]).expect("write");
        let f = std::fs::File::open(&path).expect("open");
        let map = || ptekit_cache::sys::SharedMap::new(&f, len, false).expect("mmap");
        let (a, b, c) = (map(), map(), map());
        let addr = |m: &ptekit_cache::sys::SharedMap| m.addr(0, 1).expect("addr") as usize;
        // Tests run in parallel threads; this one owns its windows (the
        // handles are addresses of its own boxes).
        let sg = Box::new(1u8);
        let sg = std::ptr::from_ref::<u8>(&sg).cast_mut().cast::<c_void>();
        let lock = |m: &ptekit_cache::sys::SharedMap| {
            // SAFETY: a range of a live mapping.
            unsafe { ptekit_mlock_hook(addr(m) as *const c_void, len) }
        };

        // Cache off for this subgraph: no window, the lock is real.
        let s0 = stats();
        let v0 = vmlck_kib();
        begin(sg, false);
        assert_eq!(lock(&a), 0);
        assert_eq!(delta(&s0), (0, 0, 0, 0));
        assert_eq!(vmlck_kib() - v0, (len / 1024) as u64);
        // SAFETY: unlocks the range locked above.
        assert_eq!(unsafe { libc::munlock(addr(&a) as *const c_void, len) }, 0);

        // In the window: held back, nothing locked.
        let s0 = stats();
        let v0 = vmlck_kib();
        begin(sg, true);
        for m in [&a, &b, &c] {
            assert_eq!(lock(m), 0);
        }
        // Another thread is not defining: its lock is real.
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(lock(&a), 0));
        });
        assert_eq!(vmlck_kib() - v0, (len / 1024) as u64);
        // SAFETY: unlocks the other thread's lock.
        assert_eq!(unsafe { libc::munlock(addr(&a) as *const c_void, len) }, 0);
        assert_eq!(delta(&s0), (3, 0, 0, 0));
        let c_addr = addr(&c);
        drop(c);
        let served = vec![
            Served {
                ptr: addr(&a) + 64,
                hit: true,
            },
            Served {
                ptr: addr(&b) + page + 8,
                hit: true,
            },
            Served {
                ptr: addr(&b) + 16,
                hit: false,
            },
            Served {
                ptr: c_addr + 16,
                hit: false,
            },
        ];
        settle(sg, Some(served));
        // a: only a hit -> skipped; b: a miss too -> locked; c: a miss, but
        // no longer mapped -> left alone.
        assert_eq!(delta(&s0), (3, 1, 1, 1));
        assert_eq!(vmlck_kib() - v0, (len / 1024) as u64);
        // The window is closed: locks are real again.
        assert_eq!(lock(&a), 0);
        assert_eq!(vmlck_kib() - v0, 2 * (len / 1024) as u64);
        // SAFETY: unlocks what this test locked.
        unsafe {
            libc::munlock(addr(&a) as *const c_void, len);
            libc::munlock(addr(&b) as *const c_void, len);
        }

        // A subgraph deleted without a runtime: everything is locked.
        let s0 = stats();
        let v0 = vmlck_kib();
        begin(sg, true);
        assert_eq!(lock(&a), 0);
        assert_eq!(vmlck_kib(), v0);
        settle(sg, None);
        assert_eq!(delta(&s0), (1, 0, 1, 0));
        assert_eq!(vmlck_kib() - v0, (len / 1024) as u64);
    }
}
