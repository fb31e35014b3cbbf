//! Finding the real XNNPACK functions behind our interposers.
//!
//! `dlsym(RTLD_NEXT, ..)` does not work here: the Python runtime loads
//! ExecuTorch's XNNPACK backend with local scope, outside the global search
//! order. Instead the object that called us (the first object on the call
//! stack that is not ours, located by address in the loader's list of
//! objects) is asked for the symbol through `dlsym` on its handle (opened
//! once with `RTLD_NOLOAD` and kept), which searches that object and its
//! dependencies: the definition it would have bound to without us. That
//! object is asked first for every later symbol too. Only if this gives
//! nothing (or ours) is every loaded object asked, keeping definitions that
//! live in that object itself and are not ours; with several XNNPACK copies
//! loaded, the one in an object on the call stack wins there. Each symbol is
//! resolved once per process ([`Slot`]), so with several copies all calls
//! go to one of them (as before: the slots are process-wide).

#![allow(
    unsafe_code,
    reason = "looks up symbols in loaded objects with dlopen/dlsym/dladdr and calls XNNPACK functions found there"
)]

use std::ffi::{c_int, c_void, CStr, CString};

/// A loaded object: its path as the dynamic loader knows it (empty for the
/// main program) and the address ranges of its loaded segments.
struct Loaded {
    name: CString,
    segments: Vec<(usize, usize)>,
}

impl Loaded {
    fn contains(&self, addr: usize) -> bool {
        self.segments.iter().any(|&(a, b)| a <= addr && addr < b)
    }

    /// The object `info` describes.
    ///
    /// # Safety
    /// `info` comes from `dl_iterate_phdr` and is used during its callback.
    unsafe fn from_info(info: &libc::dl_phdr_info) -> Loaded {
        Loaded {
            // SAFETY: caller contract.
            name: unsafe { loader_name(info) }.to_owned(),
            // SAFETY: caller contract.
            segments: unsafe { segments(info) }.collect(),
        }
    }
}

/// The loader's name of the object `info` describes (empty: the main
/// program).
///
/// # Safety
/// As [`Loaded::from_info`].
pub(crate) unsafe fn loader_name(info: &libc::dl_phdr_info) -> &CStr {
    if info.dlpi_name.is_null() {
        c""
    } else {
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader,
        // valid during the callback (caller contract).
        unsafe { CStr::from_ptr(info.dlpi_name) }
    }
}

/// The program headers of the object `info` describes.
///
/// # Safety
/// As [`Loaded::from_info`].
pub(crate) unsafe fn phdrs(info: &libc::dl_phdr_info) -> &[libc::Elf64_Phdr] {
    if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader passes `dlpi_phnum` program headers at
        // `dlpi_phdr`, valid during the callback (caller contract).
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    }
}

/// The address ranges of the loaded segments of the object `info` describes.
///
/// # Safety
/// As [`Loaded::from_info`].
unsafe fn segments(info: &libc::dl_phdr_info) -> impl Iterator<Item = (usize, usize)> + '_ {
    let base = info.dlpi_addr as usize;
    // SAFETY: caller contract.
    unsafe { phdrs(info) }
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD)
        .filter_map(move |h| {
            let start = base.checked_add(usize::try_from(h.p_vaddr).ok()?)?;
            Some((start, start.checked_add(usize::try_from(h.p_memsz).ok()?)?))
        })
}

/// What `f` of [`each_object`] is called with: the loader's description of
/// one object and the size of that description (older loaders pass a
/// shorter one, without `dlpi_adds` / `dlpi_subs`).
pub(crate) type EachObject<'a> = &'a mut dyn FnMut(&libc::dl_phdr_info, usize) -> bool;

/// Calls `f` on each loaded object (`dl_iterate_phdr`) until it returns
/// true. The loader holds its lock meanwhile: no object is unloaded while
/// `f` reads it.
pub(crate) fn each_object(f: EachObject<'_>) {
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: data is the `&mut EachObject` passed below; info is valid
        // for the duration of the callback (dl_iterate_phdr contract).
        let (f, info) = unsafe { (&mut *(data as *mut EachObject<'_>), &*info) };
        c_int::from(f(info, size))
    }
    let mut f = f;
    // SAFETY: the callback only calls `f` with the loader's description.
    unsafe { libc::dl_iterate_phdr(Some(cb), (&mut f as *mut EachObject<'_>).cast()) };
}

/// Every loaded object.
fn loaded_objects() -> Vec<Loaded> {
    let mut out = Vec::new();
    each_object(&mut |info, _| {
        // SAFETY: inside the dl_iterate_phdr callback.
        out.push(unsafe { Loaded::from_info(info) });
        false
    });
    out
}

/// The loaded object holding `addr` (no symbol table search, unlike
/// `dladdr`; the walk stops there).
fn object_containing(addr: usize) -> Option<Loaded> {
    let mut found = None;
    each_object(&mut |info, _| {
        // SAFETY: inside the dl_iterate_phdr callback.
        if unsafe { segments(info) }.any(|(a, b)| a <= addr && addr < b) {
            // SAFETY: as above.
            found = Some(unsafe { Loaded::from_info(info) });
        }
        found.is_some()
    });
    found
}

/// The load base of the loaded object holding `addr`, from the loader's
/// list (no symbol table search, unlike `dladdr`: microseconds).
pub(crate) fn base_of(addr: usize) -> Option<usize> {
    let mut found = None;
    each_object(&mut |info, _| {
        // SAFETY: inside the dl_iterate_phdr callback.
        if unsafe { segments(info) }.any(|(a, b)| a <= addr && addr < b) {
            found = Some(info.dlpi_addr as usize);
        }
        found.is_some()
    });
    found
}

/// A handle of the already loaded object `obj`, opened once per process and
/// kept: the object then stays loaded for as long as we hold addresses of
/// its functions.
fn kept_handle(obj: &CStr) -> Option<usize> {
    static HANDLES: std::sync::Mutex<Vec<(CString, usize)>> = std::sync::Mutex::new(Vec::new());
    let mut hs = HANDLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, h)) = hs.iter().find(|(n, _)| n.as_c_str() == obj) {
        return Some(*h);
    }
    // SAFETY: RTLD_NOLOAD only returns a handle of an object already loaded.
    let h = unsafe { libc::dlopen(obj.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if h.is_null() {
        return None;
    }
    hs.push((obj.to_owned(), h as usize));
    Some(h as usize)
}

/// The object file that contains address `addr`, with its load base.
pub fn object_of(addr: usize) -> Option<(CString, usize)> {
    let p = addr as *const c_void;
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads loader tables and fills `info`.
    let ok = unsafe { libc::dladdr(p, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    Some((name, info.dli_fbase as usize))
}

/// `dlsym` of `sym` in the already loaded object `obj` (never loads anything).
pub fn symbol_in(obj: &CStr, sym: &CStr) -> Option<usize> {
    // SAFETY: RTLD_NOLOAD only returns a handle of an object already loaded
    // (bumping its reference count, dropped again below).
    let h = unsafe { libc::dlopen(obj.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if h.is_null() {
        return None;
    }
    // SAFETY: h is a valid handle; sym is NUL-terminated.
    let p = unsafe { libc::dlsym(h, sym.as_ptr()) };
    // SAFETY: balances the dlopen above; the object stays loaded (it was
    // loaded before we asked).
    unsafe { libc::dlclose(h) };
    if p.is_null() {
        None
    } else {
        Some(p as usize)
    }
}

/// Every definition of `sym` in a loaded object other than `ours`, with the
/// load base of the object defining it.
fn definitions(sym: &CStr, ours: usize) -> Vec<(usize, usize)> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for obj in loaded_objects() {
        let obj = obj.name;
        if obj.to_bytes().is_empty() {
            continue;
        }
        let Some(p) = symbol_in(&obj, sym) else {
            continue;
        };
        if p == ours {
            continue;
        }
        // dlsym on a handle also searches the object's dependencies: keep the
        // definition only under the object that really holds it.
        let Some((def_obj, base)) = object_of(p) else {
            continue;
        };
        if def_obj.as_c_str() != obj.as_c_str() {
            continue;
        }
        if !found.iter().any(|(q, _)| *q == p) {
            found.push((p, base));
        }
    }
    found
}

/// Load bases of the objects on the current call stack (innermost first).
fn caller_bases() -> Vec<usize> {
    let mut frames = [std::ptr::null_mut::<c_void>(); 16];
    // SAFETY: backtrace writes at most `frames.len()` pointers.
    let n = unsafe { libc::backtrace(frames.as_mut_ptr(), frames.len() as c_int) };
    let n = usize::try_from(n).unwrap_or(0).min(frames.len());
    frames[..n]
        .iter()
        .filter_map(|p| object_of(*p as usize).map(|(_, b)| b))
        .collect()
}

/// `dlsym` of `sym` in the already loaded object `obj`, through its kept
/// handle ([`kept_handle`]).
fn kept_symbol(obj: &CStr, sym: &CStr) -> Option<usize> {
    let h = kept_handle(obj)?;
    // SAFETY: h is a valid handle (kept open); sym is NUL-terminated.
    let p = unsafe { libc::dlsym(h as *mut c_void, sym.as_ptr()) };
    (!p.is_null()).then_some(p as usize)
}

/// The first return address on the current call stack that is not in
/// `mine`: the call site in the object that called our interposer. Walks
/// the stack with the unwinder (`_Unwind_Backtrace`, which Rust's standard
/// library links) and stops there, instead of glibc's `backtrace`, which
/// loads the unwinder on first use and walks a fixed depth (into the
/// interpreter).
fn first_return_address_outside(mine: &Loaded) -> Option<usize> {
    type Trace = extern "C" fn(*mut c_void, *mut c_void) -> c_int;
    extern "C" {
        fn _Unwind_Backtrace(trace: Trace, arg: *mut c_void) -> c_int;
        fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
    }
    struct Walk<'a> {
        mine: &'a Loaded,
        frames: usize,
        found: Option<usize>,
    }
    extern "C" fn step(ctx: *mut c_void, arg: *mut c_void) -> c_int {
        // SAFETY: arg is the &mut Walk passed below, alive during the walk.
        let w = unsafe { &mut *arg.cast::<Walk<'_>>() };
        // SAFETY: ctx is the unwinder's context for this frame.
        let ip = unsafe { _Unwind_GetIP(ctx) };
        w.frames += 1;
        if ip != 0 && !w.mine.contains(ip) {
            w.found = Some(ip);
        }
        // _URC_NO_REASON (0) continues; _URC_END_OF_STACK (5) stops.
        if w.found.is_some() || w.frames >= 64 {
            5
        } else {
            0
        }
    }
    let mut w = Walk {
        mine,
        frames: 0,
        found: None,
    };
    // SAFETY: the callback only reads each frame's instruction pointer and
    // writes into `w`, which outlives the walk.
    unsafe { _Unwind_Backtrace(step, (&mut w as *mut Walk<'_>).cast()) };
    w.found
}

/// The definition of `sym` that the object calling us would reach without
/// our interposer: `dlsym` on a (kept) handle of the first object on the
/// call stack that is not ours, which searches that object first, then its
/// dependencies. The object found for the first symbol resolved is asked
/// first for every later one (no stack walk: that costs tens of
/// microseconds). `None` when the stack cannot be read or the answer is ours.
fn from_caller(sym: &CStr, ours: usize) -> Option<usize> {
    static FIRST_CALLER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // The object holding our interposers (it never moves while loaded).
    static MINE: std::sync::OnceLock<Option<Loaded>> = std::sync::OnceLock::new();
    let mine = MINE.get_or_init(|| object_containing(ours)).as_ref()?;
    let look_up = |h: usize| {
        // SAFETY: h is a valid handle (kept open); sym is NUL-terminated.
        let p = unsafe { libc::dlsym(h as *mut c_void, sym.as_ptr()) } as usize;
        (p != 0 && p != ours && !mine.contains(p)).then_some(p)
    };
    if let Some(p) = FIRST_CALLER.get().and_then(|&h| look_up(h)) {
        return Some(p);
    }
    let first_foreign = first_return_address_outside(mine)?;
    let caller = object_containing(first_foreign).filter(|o| !o.name.to_bytes().is_empty())?;
    let h = kept_handle(&caller.name)?;
    let p = look_up(h)?;
    let _ = FIRST_CALLER.set(h);
    Some(p)
}

/// The address of the real `sym` for a call coming through our interposer
/// at `ours`; `None` if no other object defines it. Asks the calling object
/// first ([`from_caller`]); only when that fails are all loaded objects
/// searched (milliseconds in a process with hundreds of libraries).
pub fn resolve(sym: &CStr, ours: usize) -> Option<usize> {
    if let Some(p) = from_caller(sym, ours) {
        return Some(p);
    }
    let defs = definitions(sym, ours);
    match defs.as_slice() {
        [] => None,
        [(p, _)] => Some(*p),
        _ => {
            let bases = caller_bases();
            bases
                .iter()
                .find_map(|b| defs.iter().find(|(_, db)| db == b).map(|(p, _)| *p))
                .or_else(|| defs.first().map(|(p, _)| *p))
        }
    }
}

/// Reads the XNNPACK build identifier exported by the object holding `real`
/// (`xnn_experimental_get_build_identifier_data/size`); falls back to the
/// object's path, size and modification time.
pub fn build_identity(real: usize) -> Vec<u8> {
    // The loader's list names a shared object without a symbol search;
    // `dladdr` names the main program too.
    let listed = object_containing(real)
        .map(|o| o.name)
        .filter(|n| !n.to_bytes().is_empty());
    let Some(obj) = listed.or_else(|| object_of(real).map(|(o, _)| o)) else {
        return b"unknown object".to_vec();
    };
    let data = kept_symbol(&obj, c"xnn_experimental_get_build_identifier_data");
    let size = kept_symbol(&obj, c"xnn_experimental_get_build_identifier_size");
    if let (Some(d), Some(s)) = (data, size) {
        // SAFETY: both are XNNPACK functions without arguments with these
        // signatures (include/xnnpack.h); the data stays valid while the
        // library is loaded and has the returned size.
        unsafe {
            let df: unsafe extern "C" fn() -> *const c_void = std::mem::transmute(d);
            let sf: unsafe extern "C" fn() -> usize = std::mem::transmute(s);
            let (p, n) = (df(), sf());
            if !p.is_null() && n > 0 && n <= 4096 {
                let mut v = b"xnnpack build id:".to_vec();
                v.extend_from_slice(std::slice::from_raw_parts(p.cast::<u8>(), n));
                return v;
            }
        }
    }
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::OsStr::from_bytes(obj.to_bytes());
    let mut v = obj.to_bytes().to_vec();
    if let Ok(m) = std::fs::metadata(path) {
        v.extend_from_slice(&m.len().to_le_bytes());
        if let Ok(t) = m.modified() {
            if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                v.extend_from_slice(&d.as_nanos().to_le_bytes());
            }
        }
    }
    v
}

/// Pointer-sized storage of a resolved function address.
pub struct Slot(std::sync::OnceLock<usize>);

impl Slot {
    /// An unresolved slot.
    pub const fn new() -> Slot {
        Slot(std::sync::OnceLock::new())
    }

    /// The real address of `sym` (resolved once), or 0 if none was found.
    pub fn get(&self, sym: &CStr, ours: usize) -> usize {
        if let Some(v) = self.0.get() {
            return *v;
        }
        match resolve(sym, ours) {
            Some(p) => *self.0.get_or_init(|| p),
            None => 0,
        }
    }
}

impl Slot {
    /// Resolves `sym` now, if it is unresolved and the object calling us
    /// (or the one found for the first symbol) defines it: the fast part of
    /// [`resolve`] only, never the search of every loaded object, so that a
    /// function this XNNPACK lacks costs nothing here. A later [`Slot::get`]
    /// returns the same address [`resolve`] would (it asks the same object
    /// first).
    pub fn prefetch(&self, sym: &CStr, ours: usize) {
        if self.0.get().is_none() {
            if let Some(p) = from_caller(sym, ours) {
                let _ = self.0.set(p);
            }
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_objects_by_address_like_the_loader() {
        // libc's strlen: the loader's list and dladdr name the same object.
        let addr = libc::strlen as *const () as usize;
        let listed = object_containing(addr).expect("strlen is in a loaded object");
        let (named, _) = object_of(addr).expect("dladdr knows strlen");
        assert_eq!(listed.name, named);
        assert!(listed.contains(addr));
        // The kept handle finds the same definition dlsym does.
        assert_eq!(kept_symbol(&listed.name, c"strlen"), Some(addr));
        assert_eq!(symbol_in(&listed.name, c"strlen"), Some(addr));
        assert!(kept_symbol(&listed.name, c"no_such_symbol_ptekit").is_none());
        // An address in this test program is not in libc.
        let here = locates_objects_by_address_like_the_loader as *const () as usize;
        assert!(!listed.contains(here));
    }

    #[test]
    fn resolves_a_symbol_defined_elsewhere_not_ours() {
        // `ours` is an address in this program; the only other definition of
        // strlen is libc's.
        let ours = resolves_a_symbol_defined_elsewhere_not_ours as *const () as usize;
        assert_eq!(
            resolve(c"strlen", ours),
            Some(libc::strlen as *const () as usize)
        );
        // A symbol nobody defines resolves to nothing (no stale guess).
        assert_eq!(resolve(c"xnn_no_such_function_ptekit", ours), None);
    }
}
