//! Process-wide state of the preload library: whether the cache is on and
//! where its file is, the subgraphs being defined, the cache of each live
//! runtime, and the counters `ptekit_xnnpack_stats_json` reports.

#![allow(
    unsafe_code,
    reason = "hashes static tensor data XNNPACK was given, by pointer"
)]

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use ptekit_cache::format::{ContentKey, KeySource, RegionMemo};
use ptekit_cache::{CacheOptions, EnvIdentity, WeightsCache};

use crate::graph::{Graph, IdMap, Weight};
use crate::regions::{FileRegion, Regions};

/// Environment variable naming the cache file; unset: the library changes
/// nothing.
pub const ENV_CACHE: &str = "PTEKIT_XNNPACK_CACHE";
/// `1`: check packed bytes against their digest before serving them.
pub const ENV_VERIFY: &str = "PTEKIT_XNNPACK_CACHE_VERIFY";
/// `1`: no `fdatasync` on commit (survives crashed processes, not power loss).
pub const ENV_NO_SYNC: &str = "PTEKIT_XNNPACK_CACHE_NO_SYNC";
/// Cap on the packed bytes the file keeps (bytes, or with a `K`/`M`/`G`
/// suffix); least recently used entries are withdrawn to stay under it.
pub const ENV_MAX_BYTES: &str = "PTEKIT_XNNPACK_CACHE_MAX_BYTES";
/// How long process exit waits for packs still being committed in the
/// background, in milliseconds (default [`DEFAULT_EXIT_WAIT_MS`]; 0: do not
/// wait, the next launch packs them again).
pub const ENV_EXIT_WAIT_MS: &str = "PTEKIT_XNNPACK_CACHE_EXIT_WAIT_MS";
/// See [`ENV_EXIT_WAIT_MS`].
pub const DEFAULT_EXIT_WAIT_MS: u64 = 30_000;

/// `1`: measure the time spent inside the interposed calls (ours and the
/// real XNNPACK functions', separately) and report it as `timing` in the
/// counters. Off by default (it costs three clock reads per call).
pub const ENV_TIMING: &str = "PTEKIT_XNNPACK_TIMING";

fn timing_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| env_flag(ENV_TIMING))
}

static HOOK_NS: AtomicU64 = AtomicU64::new(0);
static REAL_NS: AtomicU64 = AtomicU64::new(0);
static RESOLVE_NS: AtomicU64 = AtomicU64::new(0);
static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);

/// Adds the time from its creation to its drop to one counter (when
/// [`ENV_TIMING`] is on).
pub struct Span(Option<(Instant, &'static AtomicU64)>);

impl Span {
    fn start(counter: &'static AtomicU64) -> Span {
        Span(timing_on().then(|| (Instant::now(), counter)))
    }

    /// A whole interposed call.
    pub fn hook() -> Span {
        if timing_on() {
            HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
        }
        Span::start(&HOOK_NS)
    }

    /// The real XNNPACK function inside an interposed call.
    pub fn real() -> Span {
        Span::start(&REAL_NS)
    }

    /// Finding the real function (once per symbol and process).
    pub fn resolve() -> Span {
        Span::start(&RESOLVE_NS)
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((t, c)) = self.0 {
            let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
            c.fetch_add(ns, Ordering::Relaxed);
        }
    }
}

/// Time spent in the interposed calls ([`ENV_TIMING`]).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timing {
    /// Interposed calls.
    pub calls: u64,
    /// Milliseconds in our code (the calls minus the real functions).
    pub ours_ms: f64,
    /// Milliseconds in the real XNNPACK functions.
    pub real_ms: f64,
    /// Milliseconds finding the real functions (part of `ours_ms`).
    pub resolve_ms: f64,
}

fn timing() -> Option<Timing> {
    if !timing_on() {
        return None;
    }
    let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e6;
    Some(Timing {
        calls: HOOK_CALLS.load(Ordering::Relaxed),
        ours_ms: ms(&HOOK_NS) - ms(&REAL_NS),
        real_ms: ms(&REAL_NS),
        resolve_ms: ms(&RESOLVE_NS),
    })
}

#[derive(Clone, Debug)]
struct Config {
    path: Option<PathBuf>,
    verify: bool,
    durable: bool,
    max_bytes: u64,
}

/// Parses a byte count with an optional binary `K`, `M` or `G` suffix.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mul) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

fn env_flag(k: &str) -> bool {
    std::env::var(k).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn config() -> MutexGuard<'static, Config> {
    static C: OnceLock<Mutex<Config>> = OnceLock::new();
    C.get_or_init(|| {
        Mutex::new(Config {
            path: std::env::var_os(ENV_CACHE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            verify: env_flag(ENV_VERIFY),
            durable: !env_flag(ENV_NO_SYNC),
            max_bytes: std::env::var(ENV_MAX_BYTES)
                .ok()
                .and_then(|v| parse_bytes(&v))
                .unwrap_or(0),
        })
    })
    .lock()
    .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether the cache is on (a file is named).
pub fn cache_on() -> bool {
    config().path.is_some()
}

/// Turns the cache on (a path) or off (`None`) for runtimes created from now on.
pub fn enable(path: Option<PathBuf>, verify: bool) {
    let mut c = config();
    c.path = path;
    c.verify = verify;
}

fn graphs() -> MutexGuard<'static, IdMap<usize, Graph>> {
    static G: OnceLock<Mutex<IdMap<usize, Graph>>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(IdMap::default()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` on the record of `subgraph`, creating it on first use.
pub fn with_graph(subgraph: *mut c_void, f: impl FnOnce(&mut Graph)) {
    if subgraph.is_null() {
        return;
    }
    warm_up();
    let mut g = graphs();
    f(g.entry(subgraph as usize)
        .or_insert_with(|| spare_graphs().pop().unwrap_or_default()));
}

/// Records of deleted subgraphs, emptied, whose memory the next subgraphs
/// reuse (a partitioned model defines dozens one after the other).
fn spare_graphs() -> MutexGuard<'static, Vec<Graph>> {
    static S: Mutex<Vec<Graph>> = Mutex::new(Vec::new());
    S.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Spare records kept at most.
const SPARE_GRAPHS: usize = 4;

/// Once per process, when the cache is on, at the XNNPACK backend's
/// `xnn_initialize` (or else when the first subgraph is being defined):
/// opens the cache file and reads its index, computes the packing
/// environment and opens the kernel's mapping query, in a background
/// thread, so the first runtime creation finds this done instead of doing
/// it inside the model load. The opened file is kept for the life of the
/// process, as every runtime's cache would keep it. Nothing when the cache
/// is off (a later call, once it is on, does it).
pub fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if ONCE.is_completed() {
        return;
    }
    let cfg = config().clone();
    let Some(path) = cfg.path.clone() else {
        return;
    };
    ONCE.call_once(|| {
        let create_fn = crate::hooks::xnn_create_runtime_v4 as *const () as usize;
        let _ = std::thread::Builder::new()
            .name("ptekit-xnnpack-warm-up".into())
            .spawn(move || {
                // Neither this thread nor the writer it starts (which
                // inherits the policy) takes the loading thread's CPU when
                // it wakes up.
                ptekit_cache::sys::yield_on_wakeup();
                ptekit_cache::provider::start_background_writer();
                static KEPT: Mutex<Option<WeightsCache>> = Mutex::new(None);
                let cache = WeightsCache::new(Some(&path), cache_options(&cfg, create_fn));
                drop(Regions::snapshot());
                *KEPT
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cache);
            });
    });
}

/// The options of a runtime's cache (also used by [`warm_up`]).
fn cache_options(cfg: &Config, create_fn: usize) -> CacheOptions {
    let mut opts = CacheOptions {
        verify_on_load: cfg.verify,
        ..CacheOptions::default()
    };
    opts.file.durable = cfg.durable;
    opts.file.env = Some(env_identity(create_fn));
    opts.file.max_live_bytes = cfg.max_bytes;
    opts.background_commit = true;
    opts.track_served = true;
    opts
}

/// Drops the record of a deleted subgraph.
pub fn forget_graph(subgraph: *mut c_void) {
    let gone = graphs().remove(&(subgraph as usize));
    if let Some(mut g) = gone {
        g.clear();
        let mut spare = spare_graphs();
        if spare.len() < SPARE_GRAPHS {
            spare.push(g);
        }
    }
}

fn runtimes() -> MutexGuard<'static, IdMap<usize, WeightsCache>> {
    static R: OnceLock<Mutex<IdMap<usize, WeightsCache>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(IdMap::default()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counters over all runtimes of this process.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Totals {
    /// The cache file, when on.
    pub path: Option<String>,
    /// Runtimes created with our cache: those with static weights keyed
    /// by this library (or left out as ambiguous).
    pub runtimes_cached: u64,
    /// Runtimes created, with the cache on, without any cache: none of
    /// their static buffers is a filter or bias of a packing node we key
    /// (XNNPACK packs whatever else it packs in its own memory, as without
    /// this library). No cache work is done for them.
    pub runtimes_without_weights: u64,
    /// Runtimes to which ExecuTorch passed a cache of its own (left alone).
    pub runtimes_own_cache: u64,
    /// Runtimes created while the cache was off.
    pub runtimes_uncached: u64,
    /// Runtimes alive with our cache.
    pub runtimes_live: u64,
    /// Look-ups served from the file.
    pub hits: u64,
    /// Look-ups that packed.
    pub misses: u64,
    /// Packed bytes served from the file mapping.
    pub bytes_mapped: u64,
    /// Packed bytes written to the file.
    pub bytes_packed: u64,
    /// Packed bytes kept in process memory (fallbacks).
    pub bytes_heap: u64,
    /// Entries committed.
    pub committed: u64,
    /// Packs another process had committed first (served from the file).
    pub deduplicated: u64,
    /// Fallbacks to process memory.
    pub fallbacks: u64,
    /// Fallbacks by reason.
    pub fallback_reasons: BTreeMap<String, u64>,
    /// The latest fallback, with detail.
    pub last_fallback: Option<String>,
    /// Static buffers left uncached because one pointer was defined with
    /// different descriptors.
    pub ambiguous_buffers: u64,
    /// Entries whose bytes failed verification (verify mode).
    pub rejected_entries: u64,
    /// Milliseconds spent hashing unpacked weights.
    pub hash_ms: f64,
    /// Unpacked bytes hashed.
    pub bytes_hashed: u64,
    /// Milliseconds spent keying weights before runtime creation (hashing
    /// included).
    pub prepare_ms: f64,
    /// Milliseconds spent committing after runtime creation.
    pub finalize_ms: f64,
    /// Buffers keyed from the cache file's memo of their model-file region
    /// (not hashed).
    pub keys_from_memo: u64,
    /// Buffers in mapped model files without a memo: keyed by the
    /// background writer, which reads them again from the file.
    pub keys_deferred: u64,
    /// Verify mode: memorised keys that differed from the bytes' hash (the
    /// hash was used).
    pub memo_mismatches: u64,
    /// Compactions run when a runtime was deleted.
    pub compactions: u64,
    /// The background writer: runtime creations whose packs it was handed,
    /// bytes it mapped over the packing memory, packs left in process
    /// memory, failures, time spent, jobs pending.
    pub background: ptekit_cache::provider::BackgroundStats,
    /// Milliseconds spent waiting for the background writer (flush, exit).
    pub flush_wait_ms: f64,
    /// Time spent in the interposed calls, when [`ENV_TIMING`] is on.
    pub timing: Option<Timing>,
    /// Deferred `mlock` ([`crate::mlock`]).
    pub mlock: crate::mlock::MlockStats,
    /// How `mlock` reaches the deferring hook ([`crate::got`]).
    pub mlock_route: crate::got::MlockRoute,
    /// Why the file is unusable, if it is.
    pub file_error: Option<String>,
    /// Why the file was rebuilt, if it was.
    pub rebuilt: Option<String>,
}

fn totals() -> MutexGuard<'static, Totals> {
    static T: OnceLock<Mutex<Totals>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(Totals::default()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A snapshot of the counters.
pub fn snapshot() -> Totals {
    let mut t = totals().clone();
    t.path = config().path.as_ref().map(|p| p.display().to_string());
    // Commits done by the background writer count like synchronous ones.
    let bg = ptekit_cache::provider::background_stats();
    t.committed += bg.committed;
    t.bytes_packed += bg.bytes_packed;
    t.deduplicated += bg.deduplicated;
    if bg.failed > 0 {
        t.fallbacks += bg.failed;
        *t.fallback_reasons
            .entry("background_commit".to_string())
            .or_insert(0) += bg.failed;
        if t.last_fallback.is_none() {
            t.last_fallback = bg.last_failure.clone();
        }
    }
    t.background = bg;
    t.runtimes_live = runtimes().len() as u64;
    t.timing = timing();
    t.mlock = crate::mlock::stats();
    t.mlock_route = crate::got::mlock_route();
    t
}

/// Counts a runtime that came with ExecuTorch's own cache.
pub fn note_own_cache() {
    totals().runtimes_own_cache += 1;
}

fn env_identity(create_fn: usize) -> EnvIdentity {
    static E: OnceLock<EnvIdentity> = OnceLock::new();
    E.get_or_init(|| {
        let real = crate::real::resolve(c"xnn_create_runtime_v4", create_fn).unwrap_or(0);
        EnvIdentity::new(&crate::real::build_identity(real))
    })
    .clone()
}

/// BLAKE3 of `len` bytes of static tensor data at `ptr`.
fn static_hash(ptr: usize, len: usize) -> [u8; 32] {
    // SAFETY: the pointer and size come from a static tensor XNNPACK
    // accepted; ExecuTorch keeps the data alive for the life of the subgraph
    // and its runtimes, and nobody writes it.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    *blake3::hash(bytes).as_bytes()
}

/// Hashes every weight's bytes, in parallel over the available cores.
fn content_keys(ws: &[&Weight]) -> Vec<[u8; 32]> {
    let total: usize = ws.iter().map(|w| w.bytes).sum();
    // Threads pay off from a few MiB on.
    let threads = if total < (8 << 20) {
        1
    } else {
        std::thread::available_parallelism()
            .map(std::num::NonZero::get)
            .unwrap_or(1)
            .clamp(1, 8)
    };
    if threads == 1 {
        return ws.iter().map(|w| static_hash(w.ptr, w.bytes)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<Mutex<[u8; 32]>> = ws.iter().map(|_| Mutex::new([0u8; 32])).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(ws.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(w) = ws.get(i) else { break };
                let h = static_hash(w.ptr, w.bytes);
                if let Some(slot) = out.get(i) {
                    *slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = h;
                }
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .collect()
}

/// A cache for the runtime about to be created from `subgraph`, or `None`
/// when the cache is off.
pub fn prepare(subgraph: *mut c_void, flags: u32, create_fn: usize) -> Option<WeightsCache> {
    let cfg = config().clone();
    let Some(path) = cfg.path.clone() else {
        totals().runtimes_uncached += 1;
        return None;
    };
    let (weights, ambiguous) = graphs()
        .get(&(subgraph as usize))
        .map(|g| g.weights(flags, &mut |p, n| static_hash(p, n)))
        .unwrap_or_default();
    if weights.is_empty() && ambiguous == 0 {
        totals().runtimes_without_weights += 1;
        return None;
    }
    let opts = cache_options(&cfg, create_fn);
    wait_at_exit();
    CREATING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let cache = WeightsCache::new(Some(&path), opts);
    // Buffers in unchanged model files take their key from the file's memo.
    let mut regions = Regions::snapshot();
    let located: Vec<Option<FileRegion>> = weights
        .iter()
        .map(|w| regions.locate(w.ptr, w.bytes))
        .collect();
    let named: Vec<[u8; 32]> = located.iter().flatten().map(|r| r.name).collect();
    let mut found = cache.memos(&named).into_iter();
    let mut keys: Vec<Option<[u8; 32]>> = located
        .iter()
        .zip(&weights)
        .map(|(n, w)| {
            n.as_ref()
                .and_then(|_| found.next().flatten())
                .filter(|(_, len)| *len == w.bytes as u64)
                .map(|(k, _)| k)
        })
        .collect();
    let memorised = keys.clone();
    if cfg.verify {
        keys.iter_mut().for_each(|k| *k = None);
    }
    // The others in such files are hashed later, by the background writer
    // (read again from the file), off the load path; the rest now.
    let mut deferred = 0;
    let mut todo = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        if keys[i].is_some() {
            continue;
        }
        match &located[i] {
            Some(r) if !cfg.verify => {
                cache.register_deferred(w.ptr as *const u8, w.desc, r.name, r.source.clone(), None);
                deferred += 1;
            }
            _ => todo.push(i),
        }
    }
    let t0 = Instant::now();
    let hashed = content_keys(&todo.iter().map(|&i| &weights[i]).collect::<Vec<_>>());
    let hash_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut mismatches = 0;
    let mut bytes_hashed = 0;
    for (&i, k) in todo.iter().zip(hashed) {
        bytes_hashed += weights[i].bytes as u64;
        match (memorised[i], &located[i]) {
            (Some(m), _) if m != k => mismatches += 1,
            (None, Some(region)) => cache.remember(RegionMemo {
                region: region.name,
                content: k,
                len: weights[i].bytes as u64,
            }),
            _ => {}
        }
        keys[i] = Some(k);
    }
    let from_memo = memorised.iter().filter(|k| k.is_some()).count() as u64;
    let from_memo = if cfg.verify { 0 } else { from_memo };
    for (w, k) in weights.iter().zip(keys) {
        let Some(k) = k else { continue };
        cache.register_key(
            w.ptr as *const u8,
            ContentKey {
                key: k,
                source: KeySource::Hashed,
                len: w.bytes as u64,
                desc: w.desc,
            },
            None,
        );
    }
    let mut t = totals();
    t.ambiguous_buffers += ambiguous;
    t.hash_ms += hash_ms;
    t.bytes_hashed += bytes_hashed;
    t.prepare_ms += started.elapsed().as_secs_f64() * 1e3;
    t.keys_from_memo += from_memo;
    t.keys_deferred += deferred;
    t.memo_mismatches += mismatches;
    Some(cache)
}

/// Registers, once, an `atexit` handler that waits (bounded by
/// [`ENV_EXIT_WAIT_MS`]) for the background commits of this process, so a
/// short-lived program still leaves its packs in the file. A process killed
/// or ending with `_exit` leaves whatever was committed; the rest is packed
/// again by the next launch.
fn wait_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn on_exit() {
            let ms = std::env::var(ENV_EXIT_WAIT_MS)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(DEFAULT_EXIT_WAIT_MS);
            if ms > 0 {
                flush(std::time::Duration::from_millis(ms));
            }
        }
        // SAFETY: registers a function of this library, which is never
        // unloaded (an LD_PRELOAD library, or a Python extension module).
        unsafe {
            libc::atexit(on_exit);
        }
    });
}

/// Waits, at most `timeout`, until the packs handed to the background writer
/// are committed; returns whether nothing is pending.
pub fn flush(timeout: std::time::Duration) -> bool {
    let t0 = Instant::now();
    let done = ptekit_cache::provider::flush_background(timeout);
    totals().flush_wait_ms += t0.elapsed().as_secs_f64() * 1e3;
    done
}

/// Runtime creations with our cache in progress (compaction waits for none).
static CREATING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Finalizes the cache of a runtime just created (`runtime` null: creation
/// failed) and keeps it until the runtime is deleted.
pub fn attach(runtime: *mut c_void, cache: WeightsCache) {
    let started = Instant::now();
    let s = cache.finalize();
    totals().finalize_ms += started.elapsed().as_secs_f64() * 1e3;
    CREATING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    {
        let mut t = totals();
        t.runtimes_cached += 1;
        t.hits += s.hits;
        t.misses += s.misses;
        t.bytes_mapped += s.bytes_mapped;
        t.bytes_packed += s.bytes_packed;
        t.bytes_heap += s.bytes_heap;
        t.committed += s.committed;
        t.deduplicated += s.deduplicated;
        t.fallbacks += s.heap_fallbacks;
        for (k, v) in &s.heap_fallback_reasons {
            *t.fallback_reasons.entry(k.clone()).or_insert(0) += v;
        }
        if s.last_fallback.is_some() {
            t.last_fallback = s.last_fallback.clone();
        }
        t.rejected_entries += s.rejected_entries;
        if s.file_error.is_some() {
            t.file_error = s.file_error.clone();
        }
        if s.rebuilt.is_some() {
            t.rebuilt = s.rebuilt.clone();
        }
    }
    if runtime.is_null() {
        return;
    }
    runtimes().insert(runtime as usize, cache);
}

/// Drops the cache of a deleted runtime. When no runtime of this process
/// is being created, the file is compacted if most of it is dead (entries
/// withdrawn by the size cap or superseded): never inside a model load, and
/// never waiting for another process's lock.
pub fn detach(runtime: *mut c_void) {
    let c = runtimes().remove(&(runtime as usize));
    if let Some(c) = &c {
        if CREATING.load(std::sync::atomic::Ordering::SeqCst) == 0 && c.maintain() {
            totals().compactions += 1;
        }
    }
    drop(c);
}
