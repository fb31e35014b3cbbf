//! Finding the real XNNPACK functions behind our interposers.
//!
//! `dlsym(RTLD_NEXT, ..)` does not work here: the Python runtime loads
//! ExecuTorch's XNNPACK backend with local scope, outside the global search
//! order. Instead every loaded object is asked (through `dlopen(RTLD_NOLOAD)`
//! and `dlsym` on its handle) for the symbol, keeping only definitions that
//! live in that object itself and are not ours. With several XNNPACK copies
//! loaded, the one in the object that called us wins (found with `dladdr` on
//! the return addresses of the current call stack).

#![allow(
    unsafe_code,
    reason = "looks up symbols in loaded objects with dlopen/dlsym/dladdr and calls XNNPACK functions found there"
)]

use std::ffi::{c_int, c_void, CStr, CString};

/// A loaded object: its path as the dynamic loader knows it.
fn loaded_objects() -> Vec<CString> {
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: data is the &mut Vec passed below; info is valid for the
        // duration of the callback (dl_iterate_phdr contract).
        let (out, info) = unsafe { (&mut *(data as *mut Vec<CString>), &*info) };
        if !info.dlpi_name.is_null() {
            // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) };
            if !name.to_bytes().is_empty() {
                out.push(name.to_owned());
            }
        }
        0
    }
    let mut out: Vec<CString> = Vec::new();
    // SAFETY: the callback only appends copies of the names to `out`.
    unsafe { libc::dl_iterate_phdr(Some(cb), (&mut out as *mut Vec<CString>).cast()) };
    out
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

/// The address of the real `sym` for a call coming through our interposer
/// at `ours`; `None` if no other object defines it.
pub fn resolve(sym: &CStr, ours: usize) -> Option<usize> {
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
    let Some((obj, _)) = object_of(real) else {
        return b"unknown object".to_vec();
    };
    let data = symbol_in(&obj, c"xnn_experimental_get_build_identifier_data");
    let size = symbol_in(&obj, c"xnn_experimental_get_build_identifier_size");
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

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}
