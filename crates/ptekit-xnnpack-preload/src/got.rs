//! Redirecting a symbol's imports in the global offset tables (GOT) of the
//! loaded objects.
//!
//! Used by the Python path of the cache: `ptekit.runtime.enable_xnnpack_cache`
//! makes ptekit's extension module global only after libc, so an object
//! loaded later that imports `mlock` (ExecuTorch's `libexecutorch.so`, whose
//! `MmapDataLoader` locks every range it loads) binds it to libc's, never
//! to the deferring `mlock` of the preload library. [`GotPatcher`] redirects
//! such imports: in every loaded object except libc, the dynamic loader, the
//! vDSO and the object holding this code, it reads the dynamic section,
//! finds the `JUMP_SLOT` and `GLOB_DAT` relocations against an *undefined*
//! symbol of the given name (an import, not the object's own definition)
//! and stores the replacement address in the GOT word each one names, with
//! one atomic pointer-sized store. A word on a page that RELRO made
//! read-only is made writable for the store and read-only again after.
//!
//! Every table is read only after checking that it lies inside a readable
//! loaded segment of its object (from the program headers); anything out of
//! place is a [`GotError`] naming the object and the table or relocation,
//! and that object is left as it was. The walk runs inside
//! `dl_iterate_phdr`, whose lock keeps every object loaded meanwhile.
//!
//! Cheap enough for a model load: an object is read once per patcher (by
//! path and load base), and only its undefined symbols are looked at first
//! (with `DT_GNU_HASH` they come before its `symoffset`); its relocations
//! are read only when it imports the symbol. A call scans nothing when the
//! loader's counts of loaded and unloaded objects (`dlpi_adds`,
//! `dlpi_subs`) did not change since the last one, and only the objects
//! not read yet otherwise. A word that already holds the replacement is not
//! written again. [`GotPatcher::restore`] writes the old values back.
//!
//! The replacement must stay loaded as long as the patched objects: the
//! deferring hook lives in ptekit's own object, which is never unloaded
//! (the preloaded library, or the Python extension module).
//!
//! Limits: x86_64 is tested; aarch64 uses the same tables (its relocation
//! numbers are compiled in, not tested here); elsewhere nothing is patched
//! ([`GotError::UnsupportedArch`]). With `DT_GNU_HASH`, an undefined symbol
//! the linker hashed anyway (a non-PIE executable that takes the address of
//! an imported function gives it a canonical PLT address) lies past
//! `symoffset` and is not found. A lazily bound slot that another thread
//! is resolving at the very moment of the store may get the loader's answer
//! after ours.

#![allow(
    unsafe_code,
    reason = "reads the dynamic sections of loaded objects and stores into their GOT words"
)]

use std::ffi::{c_int, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::mlock::page_size;
use crate::real::{each_object, loader_name, phdrs};

/// The relocation types that bind a GOT word to a symbol's address.
#[cfg(target_arch = "x86_64")]
const SLOT_TYPES: Option<[u32; 2]> = Some([7, 6]); // R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT
/// The relocation types that bind a GOT word to a symbol's address.
#[cfg(target_arch = "aarch64")]
const SLOT_TYPES: Option<[u32; 2]> = Some([1026, 1025]); // R_AARCH64_JUMP_SLOT, R_AARCH64_GLOB_DAT
/// The relocation types that bind a GOT word to a symbol's address.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SLOT_TYPES: Option<[u32; 2]> = None;

// Dynamic section tags (ELF gABI).
const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_RELAENT: i64 = 9;
const DT_STRSZ: i64 = 10;
const DT_SYMENT: i64 = 11;
const DT_PLTREL: i64 = 20;
const DT_JMPREL: i64 = 23;
const DT_GNU_HASH: i64 = 0x6fff_fef5;
const DT_RELACOUNT: i64 = 0x6fff_fff9;

/// Sizes of the 64-bit ELF records read here.
const DYN_SIZE: usize = 16;
const RELA_SIZE: usize = 24;
const SYM_SIZE: usize = 24;
const WORD: usize = std::mem::size_of::<usize>();

/// Why an object's imports could not be (or were not fully) redirected.
#[derive(Debug, thiserror::Error)]
pub enum GotError {
    /// No relocation numbers for this architecture.
    #[error("GOT patching is not supported on {arch}")]
    UnsupportedArch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// A table is not inside a readable loaded segment of its object.
    #[error(
        "{object}: {table} at {addr:#x} ({len} bytes) is not inside a readable loaded segment"
    )]
    Table {
        /// Path of the object (empty: the main program).
        object: String,
        /// The table (dynamic tag name).
        table: &'static str,
        /// Its address.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// A dynamic section field holds a value this code does not handle.
    #[error("{object}: dynamic field {field} is {value} ({expected} expected)")]
    Field {
        /// Path of the object.
        object: String,
        /// The field (dynamic tag name).
        field: &'static str,
        /// Its value.
        value: u64,
        /// What was expected.
        expected: &'static str,
    },
    /// A relocation's symbol entry or name is not inside the tables.
    #[error("{object}: relocation {index} of {table} (r_offset {r_offset:#x}): symbol {sym} is outside DT_SYMTAB/DT_STRTAB")]
    Symbol {
        /// Path of the object.
        object: String,
        /// `DT_JMPREL` or `DT_RELA`.
        table: &'static str,
        /// Index of the relocation in that table.
        index: usize,
        /// Its `r_offset`.
        r_offset: u64,
        /// Its symbol index.
        sym: u64,
    },
    /// A relocation names a GOT word that is not an aligned word inside a
    /// loaded segment.
    #[error("{object}: relocation {index} of {table} (r_offset {r_offset:#x}): GOT word {slot:#x} is not an aligned word inside a loaded segment")]
    Slot {
        /// Path of the object.
        object: String,
        /// `DT_JMPREL` or `DT_RELA`.
        table: &'static str,
        /// Index of the relocation in that table.
        index: usize,
        /// Its `r_offset`.
        r_offset: u64,
        /// The word's address.
        slot: usize,
    },
    /// `mprotect` refused to make the GOT page writable (or to restore it).
    #[error("{object}: relocation {index} of {table} (r_offset {r_offset:#x}): mprotect of the GOT page at {page:#x}: {source}")]
    Protect {
        /// Path of the object.
        object: String,
        /// `DT_JMPREL` or `DT_RELA`.
        table: &'static str,
        /// Index of the relocation in that table.
        index: usize,
        /// Its `r_offset`.
        r_offset: u64,
        /// The page.
        page: usize,
        /// The error.
        source: std::io::Error,
    },
}

/// One redirected GOT word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// Path of the object, as the loader names it (empty: the main program).
    pub object: String,
    /// Its load base.
    pub base: usize,
    /// `DT_JMPREL` or `DT_RELA`.
    pub table: &'static str,
    /// Index of the relocation in that table.
    pub index: usize,
    /// Address of the GOT word.
    pub slot: usize,
    /// The value it held before.
    pub old: usize,
}

/// What one call changed and what it could not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Whether the loaded objects were scanned (false: none was loaded or
    /// unloaded since the last call, or the architecture is unsupported).
    pub scanned: bool,
    /// Words newly redirected by this call.
    pub patched: Vec<Patch>,
    /// Objects (or relocations) left alone, and why.
    pub errors: Vec<GotError>,
}

/// Redirects the imports of one symbol to one address, in every loaded
/// object but libc, the dynamic loader, the vDSO and the object holding this
/// code. See the module documentation.
#[derive(Debug)]
pub struct GotPatcher {
    symbol: CString,
    replacement: usize,
    /// `(dlpi_adds, dlpi_subs)` at the last scan.
    seen: Option<(u64, u64)>,
    /// Objects (load base, path) read already: not read again.
    scanned: std::collections::HashMap<usize, CString>,
    patched: Vec<Patch>,
}

impl GotPatcher {
    /// Redirects imports of `symbol` to `replacement` (nothing happens
    /// before [`GotPatcher::patch_loaded`]).
    pub fn new(symbol: &CStr, replacement: usize) -> GotPatcher {
        GotPatcher {
            symbol: symbol.to_owned(),
            replacement,
            seen: None,
            scanned: std::collections::HashMap::new(),
            patched: Vec::new(),
        }
    }

    /// Every word redirected so far and not restored.
    pub fn patched(&self) -> &[Patch] {
        &self.patched
    }

    /// Redirects the imports in the objects loaded now; scans nothing when
    /// no object was loaded or unloaded since the last call.
    pub fn patch_loaded(&mut self) -> Outcome {
        let mut out = Outcome::default();
        let Some(types) = SLOT_TYPES else {
            out.errors.push(GotError::UnsupportedArch {
                arch: std::env::consts::ARCH,
            });
            return out;
        };
        let counts = load_counts();
        if counts.is_some() && counts == self.seen {
            return out;
        }
        out.scanned = true;
        let own = own_address();
        // Objects unloaded since: their words and records are forgotten.
        let unloaded = counts.map(|c| c.1) != self.seen.map(|c| c.1);
        let mut present: Vec<(usize, CString)> = Vec::new();
        each_object(&mut |info, _| {
            let base = info.dlpi_addr as usize;
            // SAFETY: inside the dl_iterate_phdr callback.
            let name = unsafe { loader_name(info) };
            if unloaded {
                present.push((base, name.to_owned()));
            }
            if self
                .scanned
                .get(&base)
                .is_some_and(|n| n.as_c_str() == name)
            {
                return false;
            }
            self.scanned.insert(base, name.to_owned());
            // SAFETY: inside the dl_iterate_phdr callback.
            let Some(img) = (unsafe { Image::from_info(info) }) else {
                return false;
            };
            if skipped(&img.name) || img.contains(own) {
                return false;
            }
            patch_image(
                &img,
                types,
                self.symbol.to_bytes(),
                self.replacement,
                &mut out,
            );
            false
        });
        if unloaded {
            self.scanned
                .retain(|b, n| present.iter().any(|(pb, pn)| pb == b && pn == n));
            self.patched.retain(|p| {
                present
                    .iter()
                    .any(|(b, n)| *b == p.base && n.to_string_lossy() == p.object)
            });
        }
        self.patched.extend(out.patched.iter().cloned());
        self.seen = counts;
        out
    }

    /// Writes the old values back into the words still holding the
    /// replacement, in objects still loaded; returns the words restored.
    pub fn restore(&mut self) -> Result<Vec<Patch>, Vec<GotError>> {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        let patched = std::mem::take(&mut self.patched);
        each_object(&mut |info, _| {
            // SAFETY: inside the dl_iterate_phdr callback.
            let Some(img) = (unsafe { Image::from_info(info) }) else {
                return false;
            };
            for p in patched
                .iter()
                .filter(|p| p.object == img.name && p.base == img.base)
            {
                let at = Reloc {
                    table: p.table,
                    index: p.index,
                    r_offset: p.slot.wrapping_sub(p.base) as u64,
                };
                match img.store(p.slot, |v| v == self.replacement, p.old, &at) {
                    Ok(Some(_)) => done.push(p.clone()),
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            false
        });
        self.seen = None;
        self.scanned.clear();
        if errors.is_empty() {
            Ok(done)
        } else {
            Err(errors)
        }
    }
}

/// `(dlpi_adds, dlpi_subs)`: how many objects were loaded and unloaded so
/// far (`None` from a loader that does not count).
fn load_counts() -> Option<(u64, u64)> {
    let mut counts = None;
    let need = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + std::mem::size_of::<u64>();
    each_object(&mut |info, size| {
        if size >= need {
            counts = Some((info.dlpi_adds, info.dlpi_subs));
        }
        true
    });
    counts
}

/// An address inside the object holding this code.
fn own_address() -> usize {
    load_counts as *const () as usize
}

/// libc, the dynamic loader and the vDSO are never patched.
fn skipped(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.starts_with("libc.so")
        || file.starts_with("libc-")
        || file.starts_with("ld-")
        || file.starts_with("ld64.so")
        || file.starts_with("linux-vdso")
        || file.starts_with("linux-gate")
}

/// Where a relocation comes from, for errors and records.
struct Reloc {
    table: &'static str,
    index: usize,
    r_offset: u64,
}

/// A loaded segment: address range and `PF_*` flags.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: usize,
    end: usize,
    flags: u32,
}

/// One loaded object as its program headers describe it.
struct Image {
    name: String,
    base: usize,
    segments: Vec<Segment>,
    /// Page-rounded range that RELRO makes read-only after relocation.
    relro: Option<(usize, usize)>,
    /// Address and size of `PT_DYNAMIC`.
    dynamic: Option<(usize, usize)>,
}

impl Image {
    /// The object `info` describes (`None` without program headers).
    ///
    /// # Safety
    /// `info` comes from `dl_iterate_phdr` and is used during its callback.
    unsafe fn from_info(info: &libc::dl_phdr_info) -> Option<Image> {
        // SAFETY: caller contract.
        let name = unsafe { loader_name(info) }.to_string_lossy().into_owned();
        // SAFETY: caller contract.
        let headers = unsafe { phdrs(info) };
        if headers.is_empty() {
            return None;
        }
        let base = info.dlpi_addr as usize;
        let range = |h: &libc::Elf64_Phdr| {
            let start = base.checked_add(usize::try_from(h.p_vaddr).ok()?)?;
            Some((start, start.checked_add(usize::try_from(h.p_memsz).ok()?)?))
        };
        let mut img = Image {
            name,
            base,
            segments: Vec::new(),
            relro: None,
            dynamic: None,
        };
        let page = page_size();
        for h in headers {
            match h.p_type {
                libc::PT_LOAD => {
                    if let Some((start, end)) = range(h) {
                        img.segments.push(Segment {
                            start,
                            end,
                            flags: h.p_flags,
                        });
                    }
                }
                // The loader protects whole pages: from the page holding
                // the start to the page holding the end (exclusive).
                libc::PT_GNU_RELRO => {
                    img.relro = range(h).map(|(s, e)| (s & !(page - 1), e & !(page - 1)));
                }
                libc::PT_DYNAMIC => img.dynamic = range(h).map(|(s, e)| (s, e - s)),
                _ => {}
            }
        }
        Some(img)
    }

    fn contains(&self, addr: usize) -> bool {
        self.segments
            .iter()
            .any(|s| s.start <= addr && addr < s.end)
    }

    /// The segment holding all of `addr .. addr + len`.
    fn segment_of(&self, addr: usize, len: usize) -> Option<&Segment> {
        let end = addr.checked_add(len)?;
        self.segments
            .iter()
            .find(|s| s.start <= addr && end <= s.end)
    }

    /// Checks that `addr .. addr + len` is readable in one segment.
    fn check(&self, table: &'static str, addr: usize, len: usize) -> Result<(), GotError> {
        match self.segment_of(addr, len) {
            Some(s) if s.flags & libc::PF_R != 0 => Ok(()),
            _ => Err(GotError::Table {
                object: self.name.clone(),
                table,
                addr: addr as u64,
                len: len as u64,
            }),
        }
    }

    /// A `T` at `addr`, after [`Image::check`].
    fn read<T: Copy>(&self, table: &'static str, addr: usize) -> Result<T, GotError> {
        self.check(table, addr, std::mem::size_of::<T>())?;
        // SAFETY: the bytes lie in a readable loaded segment of this object,
        // which stays loaded during the dl_iterate_phdr callback.
        Ok(unsafe { std::ptr::read_unaligned(addr as *const T) })
    }

    /// A dynamic-section address: glibc stores most of them relocated
    /// (absolute), other loaders leave them relative to the load base.
    /// Whichever lies inside the object is taken (they agree at base 0).
    fn address(&self, table: &'static str, v: u64, len: usize) -> Result<usize, GotError> {
        let v = usize::try_from(v).ok();
        [v, v.and_then(|v| v.checked_add(self.base))]
            .into_iter()
            .flatten()
            .find(|&a| self.check(table, a, len).is_ok())
            .ok_or_else(|| GotError::Table {
                object: self.name.clone(),
                table,
                addr: v.unwrap_or(usize::MAX) as u64,
                len: len as u64,
            })
    }

    fn field(&self, field: &'static str, value: u64, expected: &'static str) -> GotError {
        GotError::Field {
            object: self.name.clone(),
            field,
            value,
            expected,
        }
    }

    /// The protection of the page holding `slot` as the loader left it.
    fn protection(&self, slot: usize) -> Option<c_int> {
        if self.relro.is_some_and(|(s, e)| s <= slot && slot < e) {
            return Some(libc::PROT_READ);
        }
        let seg = self.segment_of(slot, WORD)?;
        let mut p = 0;
        for (f, v) in [
            (libc::PF_R, libc::PROT_READ),
            (libc::PF_W, libc::PROT_WRITE),
            (libc::PF_X, libc::PROT_EXEC),
        ] {
            if seg.flags & f != 0 {
                p |= v;
            }
        }
        Some(p)
    }

    /// Stores `new` into the GOT word at `slot` if `wanted` accepts its
    /// current value; returns the old value when it stored.
    fn store(
        &self,
        slot: usize,
        wanted: impl Fn(usize) -> bool,
        new: usize,
        at: &Reloc,
    ) -> Result<Option<usize>, GotError> {
        let slot_err = || GotError::Slot {
            object: self.name.clone(),
            table: at.table,
            index: at.index,
            r_offset: at.r_offset,
            slot,
        };
        if slot % WORD != 0 {
            return Err(slot_err());
        }
        let prot = self.protection(slot).ok_or_else(slot_err)?;
        if prot & libc::PROT_READ == 0 {
            return Err(slot_err());
        }
        // SAFETY: `slot` is an aligned word inside a readable loaded segment
        // of this object (checked above), kept loaded during the callback;
        // GOT words are only ever accessed as whole words.
        let word = unsafe { AtomicUsize::from_ptr(slot as *mut usize) };
        // Serialises our stores (one patcher making a page read-only again
        // while another writes to it).
        let _g = STORE_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !wanted(word.load(Ordering::Acquire)) {
            return Ok(None);
        }
        let page = slot & !(page_size() - 1);
        let protect = |p: c_int| {
            // SAFETY: changes the protection of one page of this object's
            // GOT, which stays mapped; only adds or removes write access.
            let r = unsafe { libc::mprotect(page as *mut libc::c_void, page_size(), p) };
            if r == 0 {
                Ok(())
            } else {
                Err(GotError::Protect {
                    object: self.name.clone(),
                    table: at.table,
                    index: at.index,
                    r_offset: at.r_offset,
                    page,
                    source: std::io::Error::last_os_error(),
                })
            }
        };
        let writable = prot & libc::PROT_WRITE != 0;
        if !writable {
            protect(prot | libc::PROT_WRITE)?;
        }
        let prev = word.swap(new, Ordering::AcqRel);
        if !writable {
            protect(prot)?;
        }
        Ok(Some(prev))
    }
}

static STORE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The dynamic fields this module reads.
#[derive(Default)]
struct Dynamic {
    strtab: Option<u64>,
    strsz: Option<u64>,
    symtab: Option<u64>,
    syment: Option<u64>,
    rela: Option<u64>,
    relasz: Option<u64>,
    relaent: Option<u64>,
    jmprel: Option<u64>,
    pltrelsz: Option<u64>,
    pltrel: Option<u64>,
    hash: Option<u64>,
    gnu_hash: Option<u64>,
    relacount: Option<u64>,
}

fn read_dynamic(img: &Image) -> Result<Option<Dynamic>, GotError> {
    let Some((addr, size)) = img.dynamic else {
        return Ok(None);
    };
    img.check("PT_DYNAMIC", addr, size)?;
    let mut d = Dynamic::default();
    for i in 0..size / DYN_SIZE {
        let at = addr + i * DYN_SIZE;
        let tag: i64 = img.read("PT_DYNAMIC", at)?;
        let val: u64 = img.read("PT_DYNAMIC", at + 8)?;
        let field = match tag {
            DT_NULL => break,
            DT_STRTAB => &mut d.strtab,
            DT_STRSZ => &mut d.strsz,
            DT_SYMTAB => &mut d.symtab,
            DT_SYMENT => &mut d.syment,
            DT_RELA => &mut d.rela,
            DT_RELASZ => &mut d.relasz,
            DT_RELAENT => &mut d.relaent,
            DT_JMPREL => &mut d.jmprel,
            DT_PLTRELSZ => &mut d.pltrelsz,
            DT_PLTREL => &mut d.pltrel,
            DT_HASH => &mut d.hash,
            DT_GNU_HASH => &mut d.gnu_hash,
            DT_RELACOUNT => &mut d.relacount,
            _ => continue,
        };
        *field = Some(val);
    }
    Ok(Some(d))
}

/// The symbol tables of an object, checked.
struct Symbols<'a> {
    img: &'a Image,
    symtab: usize,
    strtab: usize,
    strsz: usize,
}

impl Symbols<'_> {
    /// Whether symbol `index` is undefined here and named `name`; `None`
    /// when its entry or name lies outside the tables.
    fn is_import_named(&self, index: u64, name: &[u8]) -> Option<bool> {
        let entry = usize::try_from(index)
            .ok()?
            .checked_mul(SYM_SIZE)?
            .checked_add(self.symtab)?;
        // The entry must lie in the segment that holds the table's start.
        let seg = self.img.segment_of(self.symtab, SYM_SIZE)?;
        if entry.checked_add(SYM_SIZE)? > seg.end {
            return None;
        }
        let st_shndx: u16 = self.img.read("DT_SYMTAB", entry + 6).ok()?;
        if st_shndx != 0 {
            return Some(false); // defined here: not an import
        }
        self.name_is(self.img.read("DT_SYMTAB", entry).ok()?, name)
    }

    /// Whether the string at `st_name` in `DT_STRTAB` is `name` (`None`:
    /// the offset is outside the table). Reads no further than `name` and
    /// its NUL, and never past the table.
    fn name_is(&self, st_name: u32, name: &[u8]) -> Option<bool> {
        let off = usize::try_from(st_name).ok()?;
        if off >= self.strsz {
            return None;
        }
        // SAFETY: strtab .. strtab + strsz was checked to lie in a readable
        // loaded segment (symbols()), off < strsz.
        let avail = unsafe {
            std::slice::from_raw_parts((self.strtab + off) as *const u8, self.strsz - off)
        };
        Some(avail.get(..name.len()) == Some(name) && avail.get(name.len()) == Some(&0))
    }
}

/// The indices of the undefined symbols named `name`, found by a pass over
/// the symbols a hash table bounds: with `DT_GNU_HASH` the undefined
/// symbols come before its `symoffset` (the linker orders them so: only
/// defined symbols are hashed), with `DT_HASH` its `nchain` is the number of
/// symbols. `None` without either (each relocation's symbol is then
/// checked). An object that does not import `name` is left after this pass,
/// without reading its relocations.
fn import_indices(
    img: &Image,
    d: &Dynamic,
    syms: &Symbols<'_>,
    name: &[u8],
) -> Result<Option<Vec<u64>>, GotError> {
    let count = if let Some(h) = d.gnu_hash {
        let at = img.address("DT_GNU_HASH", h, 8)?;
        img.read::<u32>("DT_GNU_HASH", at + 4)?
    } else if let Some(h) = d.hash {
        let at = img.address("DT_HASH", h, 8)?;
        img.read::<u32>("DT_HASH", at + 4)?
    } else {
        return Ok(None);
    };
    // The entries, checked once (past the object: the count is wrong).
    let Some(len) = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(SYM_SIZE))
    else {
        return Ok(None);
    };
    if img.check("DT_SYMTAB", syms.symtab, len).is_err() {
        return Ok(None);
    }
    // SAFETY: symtab .. symtab + len lies in a readable loaded segment
    // (checked above), kept loaded during the dl_iterate_phdr callback.
    let table = unsafe { std::slice::from_raw_parts(syms.symtab as *const u8, len) };
    let mut found = Vec::new();
    for (i, e) in table.chunks_exact(SYM_SIZE).enumerate().skip(1) {
        // Elf64_Sym: st_name u32 at 0, st_shndx u16 at 6 (undefined: 0).
        if u16::from_ne_bytes([e[6], e[7]]) != 0 {
            continue;
        }
        match syms.name_is(u32::from_ne_bytes([e[0], e[1], e[2], e[3]]), name) {
            Some(true) => found.push(i as u64),
            Some(false) => {}
            None => return Ok(None),
        }
    }
    Ok(Some(found))
}

fn symbols<'a>(img: &'a Image, d: &Dynamic) -> Result<Option<Symbols<'a>>, GotError> {
    let (Some(symtab), Some(strtab), Some(strsz)) = (d.symtab, d.strtab, d.strsz) else {
        return Ok(None);
    };
    if let Some(e) = d.syment.filter(|&e| e != SYM_SIZE as u64) {
        return Err(img.field("DT_SYMENT", e, "24"));
    }
    let strsz = usize::try_from(strsz).map_err(|_| img.field("DT_STRSZ", strsz, "a size"))?;
    Ok(Some(Symbols {
        img,
        symtab: img.address("DT_SYMTAB", symtab, SYM_SIZE)?,
        strtab: img.address("DT_STRTAB", strtab, strsz)?,
        strsz,
    }))
}

/// Patches the imports of `name` in `img`, adding to `out`.
fn patch_image(img: &Image, types: [u32; 2], name: &[u8], new: usize, out: &mut Outcome) {
    if let Err(e) = try_patch_image(img, types, name, new, out) {
        out.errors.push(e);
    }
}

fn try_patch_image(
    img: &Image,
    types: [u32; 2],
    name: &[u8],
    new: usize,
    out: &mut Outcome,
) -> Result<(), GotError> {
    let Some(d) = read_dynamic(img)? else {
        return Ok(());
    };
    let Some(syms) = symbols(img, &d)? else {
        return Ok(());
    };
    let imports = import_indices(img, &d, &syms, name)?;
    if imports.as_ref().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    // (table, address, size, leading entries to skip)
    let mut tables: Vec<(&'static str, u64, u64, u64)> = Vec::new();
    if let (Some(at), Some(sz)) = (d.jmprel, d.pltrelsz) {
        if let Some(k) = d.pltrel.filter(|&k| k != DT_RELA as u64) {
            return Err(img.field("DT_PLTREL", k, "DT_RELA (7)"));
        }
        tables.push(("DT_JMPREL", at, sz, 0));
    }
    if let (Some(at), Some(sz)) = (d.rela, d.relasz) {
        if let Some(e) = d.relaent.filter(|&e| e != RELA_SIZE as u64) {
            return Err(img.field("DT_RELAENT", e, "24"));
        }
        // DT_RELACOUNT: the leading RELATIVE relocations, which name no
        // symbol (the loader relies on it the same way).
        tables.push(("DT_RELA", at, sz, d.relacount.unwrap_or(0)));
    }
    for (table, at, sz, skip) in tables {
        let len = usize::try_from(sz).map_err(|_| img.field(table, sz, "a size"))?;
        if len == 0 {
            continue;
        }
        let start = img.address(table, at, len)?;
        // SAFETY: start .. start + len lies in a readable loaded segment
        // (checked by address()), kept loaded during the callback.
        let entries = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        for (index, e) in entries.chunks_exact(RELA_SIZE).enumerate().skip(skip) {
            // Elf64_Rela: r_offset u64 at 0, r_info u64 at 8.
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&e[at..at + 8]);
                u64::from_ne_bytes(w)
            };
            let (r_offset, r_info) = (word(0), word(8));
            if !types.contains(&((r_info & 0xffff_ffff) as u32)) {
                continue;
            }
            let sym = r_info >> 32;
            let at = Reloc {
                table,
                index,
                r_offset,
            };
            let named = match &imports {
                Some(v) => Some(v.contains(&sym)),
                None => syms.is_import_named(sym, name),
            };
            match named {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    out.errors.push(GotError::Symbol {
                        object: img.name.clone(),
                        table,
                        index,
                        r_offset,
                        sym,
                    });
                    continue;
                }
            }
            let slot = usize::try_from(r_offset)
                .ok()
                .and_then(|o| o.checked_add(img.base));
            let Some(slot) = slot else {
                out.errors.push(GotError::Slot {
                    object: img.name.clone(),
                    table,
                    index,
                    r_offset,
                    slot: usize::MAX,
                });
                continue;
            };
            match img.store(slot, |v| v != new, new, &at) {
                Ok(Some(old)) => out.patched.push(Patch {
                    object: img.name.clone(),
                    base: img.base,
                    table,
                    index,
                    slot,
                    old,
                }),
                Ok(None) => {}
                Err(e) => out.errors.push(e),
            }
        }
    }
    Ok(())
}

/// How `mlock` calls reach the deferring hook in this process (reported
/// as `mlock_route` in the counters).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MlockRoute {
    /// `"interposed"`: the process's own lookup of `mlock` finds ours
    /// (`LD_PRELOAD`), nothing is patched; `"got"`: imports are redirected
    /// (the Python path); absent until the first subgraph.
    pub how: Option<&'static str>,
    /// Objects whose `mlock` import now calls the hook.
    pub objects: Vec<String>,
    /// GOT words redirected.
    pub slots: usize,
    /// Objects or relocations left alone, and why (at most [`MAX_ERRORS`]).
    pub errors: Vec<String>,
    /// Passes over the loaded objects (calls that found objects loaded or
    /// unloaded since the last one).
    pub scans: u64,
    /// Milliseconds those passes took (the first, at the backend's
    /// `xnn_initialize`, reads every object loaded then).
    pub scan_ms: f64,
}

/// Errors kept in [`MlockRoute::errors`].
pub const MAX_ERRORS: usize = 8;

fn route() -> std::sync::MutexGuard<'static, (Option<GotPatcher>, MlockRoute)> {
    static R: std::sync::Mutex<(Option<GotPatcher>, MlockRoute)> = std::sync::Mutex::new((
        None,
        MlockRoute {
            how: None,
            objects: Vec::new(),
            slots: 0,
            errors: Vec::new(),
            scans: 0,
            scan_ms: 0.0,
        },
    ));
    R.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The current [`MlockRoute`].
pub fn mlock_route() -> MlockRoute {
    route().1.clone()
}

/// Makes `mlock` reach [`crate::mlock::ptekit_mlock_hook`] when the cache
/// is on (`cache_on`) and deferral is possible in this process (not turned
/// off by [`crate::mlock::ENV_DEFER`], `mlock` cannot fail for a limit; see
/// [`crate::mlock::Policy`]): see [`route_mlock`]. Otherwise nothing is
/// patched. When it cannot,
/// deferral is turned off with the reason ([`crate::mlock::set_unreachable`]);
/// the cache works as before. Called by the interposed `xnn_initialize`
/// (ExecuTorch's XNNPACK backend calls it when it is loaded, so the first,
/// longest pass over the loaded objects is not part of a model load) and
/// at the start of each `xnn_create_subgraph` (objects loaded since).
pub fn route_mlock_to_hook(cache_on: bool) {
    if !cache_on || !crate::mlock::allowed() {
        return;
    }
    if let Some(why) = route_mlock(crate::mlock::ptekit_mlock_hook as *const () as usize) {
        crate::mlock::set_unreachable(why);
    }
}

/// At the backend's `xnn_initialize`: the first [`route_mlock_to_hook`]
/// (the longest, it reads every object loaded so far: about 0.6 ms in a
/// process with torch) runs on a thread of its own, while the program goes
/// on importing and loading. Every `xnn_create_subgraph` still makes its
/// own (blocking) call first: it finds the pass done, waits for the rest of
/// it (same lock), or, if it comes first, makes the pass itself and the
/// thread finds nothing left. So every subgraph is defined after a complete
/// pass, as before. Once per process with the cache on; done in place if no
/// thread can be started; no thread under `LD_PRELOAD` (nothing to patch).
pub fn route_mlock_early(cache_on: bool) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if !cache_on || ONCE.is_completed() {
        return;
    }
    ONCE.call_once(|| {
        if mlock_interposed() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("ptekit-mlock-route".into())
            .spawn(|| route_mlock_to_hook(true));
        if spawned.is_err() {
            route_mlock_to_hook(true);
        }
    });
}

/// Makes `mlock` calls of the loaded objects reach `hook` (the deferring
/// `mlock`), called before each XNNPACK subgraph is defined.
///
/// When the process's own lookup of `mlock` (`dlsym(RTLD_DEFAULT)`) finds a
/// definition in the object holding this code, the library was preloaded
/// and interposes `mlock` already: nothing is done, ever. Otherwise (the
/// Python path: ptekit's extension made global after libc) the `mlock`
/// imports of every loaded object but libc, the dynamic loader, the vDSO
/// and ours are redirected to `hook` by a [`GotPatcher`] — in the Python
/// runtime that is `libexecutorch.so`, whose `MmapDataLoader` locks the
/// weights. Later calls scan again only when objects were loaded or
/// unloaded. Returns why deferral cannot work when, after a scan, no import
/// at all calls `hook` (none found, or every one refused); everything then
/// works as without deferral.
pub fn route_mlock(hook: usize) -> Option<String> {
    // Asked before taking the lock: dlsym takes the loader's lock, which a
    // thread loading an object holds while its constructor (maybe calling
    // xnn_initialize, hence this function) runs.
    let interposed = mlock_interposed();
    route_in(&mut route(), c"mlock", hook, || interposed)
}

/// Whether the process's own lookup of `mlock` finds the definition in the
/// object holding this code (the library was preloaded), asked once.
fn mlock_interposed() -> bool {
    static INTERPOSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INTERPOSED.get_or_init(|| {
        // SAFETY: dlsym with the default handle and a NUL-terminated name
        // only reads the loader's tables.
        let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mlock".as_ptr()) } as usize;
        let own = crate::real::base_of(own_address());
        global != 0 && own.is_some() && crate::real::base_of(global) == own
    })
}

/// [`route_mlock`] for `symbol` over `state`; `interposed` says (asked once)
/// whether the process's own lookup of `symbol` finds ours.
fn route_in(
    state: &mut (Option<GotPatcher>, MlockRoute),
    symbol: &CStr,
    hook: usize,
    interposed: impl FnOnce() -> bool,
) -> Option<String> {
    let (patcher, stats) = state;
    if stats.how == Some("interposed") {
        return None;
    }
    let patcher = match patcher {
        Some(p) => p,
        None if interposed() => {
            stats.how = Some("interposed");
            return None;
        }
        None => {
            stats.how = Some("got");
            patcher.insert(GotPatcher::new(symbol, hook))
        }
    };
    let t = std::time::Instant::now();
    let out = patcher.patch_loaded();
    if out.scanned {
        stats.scans += 1;
        stats.scan_ms += t.elapsed().as_secs_f64() * 1e3;
    }
    for p in &out.patched {
        if !stats.objects.contains(&p.object) {
            stats.objects.push(p.object.clone());
        }
    }
    stats.slots = patcher.patched().len();
    for e in &out.errors {
        if stats.errors.len() < MAX_ERRORS {
            stats.errors.push(e.to_string());
        }
    }
    if !out.scanned || !patcher.patched().is_empty() {
        return None;
    }
    let name = symbol.to_string_lossy();
    Some(match out.errors.first() {
        Some(e) => format!("{name} imports not redirected: {e}"),
        None => format!("no loaded object imports {name} (Python path: nothing to redirect)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    extern "C" fn replacement() -> c_int {
        42
    }

    /// Held by the tests that load objects or expect none to be loaded
    /// meanwhile (the loader's counts are process-wide).
    static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn loading() -> std::sync::MutexGuard<'static, ()> {
        LOADING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Builds `lib<name>.so` from C source with the system compiler (the
    /// linker cargo uses).
    fn build_so(dir: &Path, name: &str, src: &str, args: &[&str]) -> std::path::PathBuf {
        let c = dir.join(format!("{name}.c"));
        std::fs::write(&c, src).expect("write C source");
        let out = dir.join(format!("lib{name}.so"));
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(&c)
            .args(args)
            .status()
            .expect("run cc");
        assert!(st.success(), "cc failed for {name}");
        out
    }

    struct Lib(*mut libc::c_void);

    impl Lib {
        fn open(p: &Path) -> Lib {
            let c = CString::new(p.to_str().expect("utf-8 path")).expect("no NUL");
            // SAFETY: loads a library built above (constructors: none).
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            assert!(!h.is_null(), "dlopen {}", p.display());
            Lib(h)
        }

        fn sym(&self, name: &CStr) -> usize {
            // SAFETY: valid handle, NUL-terminated name.
            let p = unsafe { libc::dlsym(self.0, name.as_ptr()) } as usize;
            assert_ne!(p, 0, "{name:?} not found");
            p
        }

        /// Calls `int call_probe(void)` of this library.
        fn call(&self) -> c_int {
            let p = self.sym(c"call_probe");
            // SAFETY: call_probe is `int call_probe(void)` in caller.c.
            let f: extern "C" fn() -> c_int = unsafe { std::mem::transmute(p) };
            f()
        }
    }

    const CALLER: &str =
        "int ptekit_got_probe(void);\nint call_probe(void) { return ptekit_got_probe(); }\n";

    #[test]
    fn redirects_imports_of_loaded_objects_and_restores_them() {
        let _g = loading();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let target = build_so(
            d,
            "probe",
            "int ptekit_got_probe(void) { return 1; }\n",
            &[],
        );
        let link = ["-L", d.to_str().expect("utf-8"), "-lprobe"];
        let rpath = format!("-Wl,-rpath,{}", d.display());
        let variant = |name: &str, extra: &[&str]| {
            let mut a: Vec<&str> = link.to_vec();
            a.push(&rpath);
            a.extend_from_slice(extra);
            build_so(d, name, CALLER, &a)
        };
        // A JUMP_SLOT in a RELRO page (read-only after loading), a lazily
        // bound writable one, and a GLOB_DAT (-fno-plt) in RELRO.
        let now = variant("now", &["-Wl,-z,relro,-z,now"]);
        let lazy = variant("lazy", &["-Wl,-z,norelro,-z,lazy"]);
        let noplt = variant("noplt", &["-fno-plt", "-Wl,-z,relro,-z,now"]);
        let late = variant("late", &["-Wl,-z,relro,-z,now"]);

        let t = Lib::open(&target);
        let real = t.sym(c"ptekit_got_probe");
        let libs: Vec<Lib> = [&now, &lazy, &noplt].iter().map(|p| Lib::open(p)).collect();
        // Each call binds the slot (the lazy one too) to the real function.
        assert!(libs.iter().all(|l| l.call() == 1));

        let mut g = GotPatcher::new(c"ptekit_got_probe", replacement as *const () as usize);
        let out = g.patch_loaded();
        assert!(out.scanned);
        let ours: Vec<&Patch> = out
            .patched
            .iter()
            .filter(|p| p.object.starts_with(d.to_str().expect("utf-8")))
            .collect();
        let mut names: Vec<&str> = ours.iter().map(|p| p.object.as_str()).collect();
        names.sort_unstable();
        let mut want = [&now, &lazy, &noplt].map(|p| p.to_str().expect("utf-8"));
        want.sort_unstable();
        assert_eq!(names, want, "{out:?}");
        assert!(ours.iter().all(|p| p.old == real), "{ours:?}");
        let tables: Vec<&str> = ours.iter().map(|p| p.table).collect();
        assert!(tables.contains(&"DT_JMPREL") && tables.contains(&"DT_RELA"));
        assert!(libs.iter().all(|l| l.call() == 42));

        // Nothing loaded since: no scan. A forced scan patches nothing again.
        let again = g.patch_loaded();
        assert!(!again.scanned && again.patched.is_empty());
        g.seen = None;
        g.scanned.clear();
        let forced = g.patch_loaded();
        assert!(forced.scanned && forced.patched.is_empty(), "{forced:?}");

        // An object loaded later is found by the next call.
        let l = Lib::open(&late);
        assert_eq!(l.call(), 1);
        let next = g.patch_loaded();
        assert!(next.scanned);
        assert_eq!(next.patched.len(), 1, "{next:?}");
        assert_eq!(next.patched[0].object, late.to_str().expect("utf-8"));
        assert_eq!(l.call(), 42);
        assert_eq!(g.patched().len(), 4);

        let restored = g.restore().expect("restore");
        assert_eq!(restored.len(), 4);
        assert!(libs.iter().all(|l| l.call() == 1));
        assert_eq!(l.call(), 1);
        assert!(g.patched().is_empty());
    }

    #[test]
    fn route_says_why_when_no_object_imports_the_symbol() {
        let _g = loading();
        // Not interposed (the Python path's situation): the objects loaded
        // here (this program, ours, is skipped) do not import mlock.
        let mut state = (None, MlockRoute::default());
        let hook = replacement as *const () as usize;
        let why = route_in(&mut state, c"mlock", hook, || false);
        assert_eq!(
            why.as_deref(),
            Some("no loaded object imports mlock (Python path: nothing to redirect)")
        );
        let r = &state.1;
        assert_eq!(
            (r.how, r.slots, r.objects.len()),
            (Some("got"), 0, 0),
            "{r:?}"
        );
        // Nothing loaded since: no scan, no reason.
        assert_eq!(route_in(&mut state, c"mlock", hook, || false), None);
        // This test program exports its own mlock (crate::mlock), so the
        // process's lookup finds ours: interposed, nothing to patch.
        assert_eq!(route_mlock(hook), None);
        assert_eq!(mlock_route().how, Some("interposed"));
    }

    /// A fabricated object in a buffer: dynamic section, symbol and string
    /// tables, one relocation and a GOT word; `edit` changes words first.
    fn fake(edit: impl Fn(&mut [u64], usize)) -> (Vec<u64>, Outcome) {
        let mut buf = vec![0u64; 40];
        let base = buf.as_ptr() as usize;
        let w = |i: usize| (i * 8) as u64; // offset of word i
        let dynamic = [
            (DT_STRTAB, w(22)),
            (DT_STRSZ, 8),
            (DT_SYMTAB, w(16)),
            (DT_SYMENT, 24),
            (DT_JMPREL, w(24)),
            (DT_PLTRELSZ, 24),
            (DT_PLTREL, DT_RELA as u64),
            (DT_NULL, 0),
        ];
        for (i, (t, v)) in dynamic.iter().enumerate() {
            buf[2 * i] = *t as u64;
            buf[2 * i + 1] = *v; // relative to the base, as non-glibc loaders leave them
        }
        buf[19] = 1; // symbol 1: st_name 1, st_shndx 0 (undefined)
        buf[22] = u64::from_le_bytes(*b"\0target\0");
        buf[24] = w(30); // r_offset: the GOT word
        buf[25] = (1 << 32) | 7; // symbol 1, JUMP_SLOT
        buf[30] = 0x1111;
        edit(&mut buf, base);
        let img = Image {
            name: "fake.so".into(),
            base,
            segments: vec![Segment {
                start: base,
                end: base + buf.len() * 8,
                flags: libc::PF_R | libc::PF_W,
            }],
            relro: None,
            dynamic: Some((base, 16 * 8)),
        };
        let mut out = Outcome::default();
        patch_image(&img, [7, 6], b"target", 0x4242, &mut out);
        (buf, out)
    }

    #[test]
    fn patches_a_fabricated_object_and_rejects_odd_tables() {
        let (buf, out) = fake(|_, _| {});
        assert!(out.errors.is_empty(), "{out:?}");
        assert_eq!(out.patched.len(), 1);
        assert_eq!((out.patched[0].old, buf[30]), (0x1111, 0x4242));
        // Absolute (glibc-relocated) table addresses are read the same way.
        let (buf, out) = fake(|b, base| {
            for i in [1, 5, 9] {
                b[i] += base as u64;
            }
        });
        assert_eq!((out.patched.len(), buf[30]), (1, 0x4242), "{out:?}");
        // A defined symbol of that name is not an import: left alone.
        let (buf, out) = fake(|b, _| b[19] = 1 | (5 << 48));
        assert!(out.patched.is_empty() && out.errors.is_empty() && buf[30] == 0x1111);
        // With DT_GNU_HASH only symbols before its symoffset are imports:
        // none (symoffset 1) leaves the relocations unread; a symoffset past
        // the table falls back to checking each relocation's symbol.
        for (symoffset, patched) in [(2u64, 1), (1, 0), (1 << 30, 1)] {
            let (buf, out) = fake(|b, _| {
                (b[14], b[15], b[32]) = (DT_GNU_HASH as u64, 32 * 8, 1 | (symoffset << 32));
            });
            assert!(out.errors.is_empty(), "{out:?}");
            assert_eq!(out.patched.len(), patched, "symoffset {symoffset}");
            assert_eq!(buf[30], if patched == 1 { 0x4242 } else { 0x1111 });
        }
        // Another name: left alone.
        let (buf, out) = fake(|b, _| b[22] = u64::from_le_bytes(*b"\0tarxet\0"));
        assert!(out.patched.is_empty() && out.errors.is_empty() && buf[30] == 0x1111);

        let err = |edit: &dyn Fn(&mut [u64], usize)| {
            let (buf, out) = fake(edit);
            assert!(out.patched.is_empty() && buf[30] == 0x1111, "{out:?}");
            assert_eq!(out.errors.len(), 1, "{out:?}");
            out.errors.into_iter().next().map(|e| e.to_string())
        };
        let e = err(&|b, _| b[3] = 1 << 40).expect("error"); // DT_STRSZ past the object
        assert!(e.starts_with("fake.so: DT_STRTAB at "), "{e}");
        let e = err(&|b, _| b[25] = (1 << 62) | 7).expect("error"); // symbol index huge
        assert!(e.contains("relocation 0 of DT_JMPREL") && e.contains("symbol 1073741824"));
        let e = err(&|b, _| b[24] = 1 << 20).expect("error"); // GOT word outside
        assert!(
            e.contains("GOT word") && e.contains("r_offset 0x100000"),
            "{e}"
        );
        let e = err(&|b, _| b[24] = 30 * 8 + 4).expect("error"); // misaligned word
        assert!(e.contains("GOT word"), "{e}");
        let e = err(&|b, _| b[13] = 17).expect("error"); // DT_REL relocations
        assert!(e.contains("DT_PLTREL is 17"), "{e}");
        let e = err(&|b, _| b[11] = 1 << 30).expect("error"); // DT_PLTRELSZ past the object
        assert!(e.starts_with("fake.so: DT_JMPREL at "), "{e}");
        let e = err(&|b, _| b[7] = 16).expect("error"); // DT_SYMENT
        assert!(e.contains("DT_SYMENT is 16"), "{e}");
        let e = err(&|b, _| b[19] = 200).expect("error"); // st_name past DT_STRSZ
        assert!(e.contains("outside DT_SYMTAB/DT_STRTAB"), "{e}");
    }
}
