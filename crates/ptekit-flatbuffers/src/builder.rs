//! A FlatBuffers builder whose output is byte-identical to the Python `flatbuffers`
//! package, version 25.12.19 (`flatbuffers.Builder`), which ExecuTorch 1.5.1 uses to
//! serialize `.pte` programs.
//!
//! The builder writes back to front, exactly like the Python one: every method mirrors a
//! Python method and performs the same alignment (`Prep`), padding and placement, so that
//! the same sequence of calls yields the same bytes. The mapping is:
//!
//! | Rust | Python |
//! |------|--------|
//! | [`Builder::start_object`] / [`Builder::end_object`] | `StartObject` / `EndObject` |
//! | [`Builder::add_u32`] etc. | `PrependUint32Slot` etc. |
//! | [`Builder::add_offset`] | `PrependUOffsetTRelativeSlot(slot, off, 0)` |
//! | [`Builder::start_vector`] / [`Builder::end_vector`] | `StartVector` / `EndVector` |
//! | [`Builder::prepend_u32`] etc. | `PrependUint32` etc. |
//! | [`Builder::prepend_uoffset_relative`] | `PrependUOffsetTRelative` |
//! | [`Builder::create_string`] | `CreateString` |
//! | [`Builder::create_scalar_vector`] | generated `StartXVector` + `PrependX` (last to first) + `EndVector` |
//! | [`Builder::create_aligned_bytes`] | ExecuTorch's `_create_aligned_byte_vector` |
//! | [`Builder::create_offset_vector`] | `StartVector(4, n, 4)` + `PrependUOffsetTRelative` (last to first) + `EndVector` |
//! | [`Builder::finish`] / [`Builder::finished_data`] | `Finish` / `Output` |
//!
//! # Errors
//!
//! Like Python, the builder refuses to grow past [`MAX_BUFFER_SIZE`] (2 GiB). Instead of
//! panicking, the builder records the first such error (and the other data-dependent
//! errors of [`BuildError`]) in a *sticky error state*: from then on every method is a
//! no-op that returns offset `0`. Check the state with [`Builder::check`], or use
//! [`Builder::try_finish`] / [`Builder::try_into_finished_data`]. While the builder is in
//! the error state, [`Builder::finished_data`] returns an empty slice.
//!
//! # Panics
//!
//! Misuse by the calling code (a programming error, never caused by input data) panics
//! with a descriptive message, as Python raises: starting an object, vector or string
//! while another object or vector is being built; `add_*` outside an object or with a
//! slot `>= num_fields`; `end_object`/`end_vector` without the matching start;
//! `finish` while nested; passing an offset that is larger than the current
//! [`Builder::offset`] (i.e. one not created by this builder); and calling
//! [`Builder::finished_data`] before [`Builder::finish`].

use std::collections::HashMap;
use std::fmt;

use crate::scalar::Scalar;

/// An offset as returned by Python's `Builder.Offset()`: a position measured from the
/// *end* of the buffer being built. `0` means "nothing" (an absent field).
pub type UOffset = u32;

/// The largest buffer the builder will produce: 2 GiB (Python's `Builder.MAX_BUFFER_SIZE`).
pub const MAX_BUFFER_SIZE: usize = 1 << 31;

/// The initial capacity of [`Builder::new`], as in Python's `flatbuffers.Builder()`.
pub const DEFAULT_CAPACITY: usize = 1024;

const FILE_IDENTIFIER_LENGTH: usize = 4;
const VTABLE_METADATA_FIELDS: usize = 2;

/// A data-dependent error recorded by the [`Builder`] (see the module docs about the
/// sticky error state).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The buffer would grow beyond `max` bytes.
    #[error("flatbuffer would exceed the maximum size of {max} bytes (needs {requested} bytes)")]
    BufferTooLarge {
        /// The number of bytes the buffer would have needed (saturated at `u64::MAX`).
        requested: u64,
        /// The maximum buffer size.
        max: u64,
    },
    /// A table is too large for its 16-bit vtable entries (Python raises `TypeError`).
    #[error("table too large: {what} {value} does not fit a 16-bit vtable entry")]
    TableTooLarge {
        /// Which vtable entry overflowed.
        what: &'static str,
        /// The value that did not fit.
        value: u64,
    },
    /// A vector's element count or byte size does not fit a FlatBuffers vector.
    #[error("vector of {num_elems} elements of {elem_size} bytes is too long")]
    VectorTooLong {
        /// Element size in bytes.
        elem_size: usize,
        /// Number of elements.
        num_elems: usize,
    },
    /// A vector alignment that is not a power of two (ExecuTorch raises `ValueError`).
    #[error("invalid alignment {alignment}: must be a power of two")]
    InvalidAlignment {
        /// The rejected alignment.
        alignment: usize,
    },
    /// A finite `f64` too large for an `f32` field (Python's `struct.pack` raises
    /// `OverflowError`).
    #[error("float {value} too large to pack as f32")]
    FloatOverflow {
        /// The value.
        value: f64,
    },
    /// An internal invariant did not hold (a bug in this crate, or a vector that received
    /// more elements than declared in [`Builder::start_vector`]).
    #[error("internal builder error: {0}")]
    Internal(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nesting {
    None,
    Object,
    Vector,
}

/// Builds one FlatBuffer, back to front, producing the same bytes as Python's
/// `flatbuffers.Builder` (25.12.19) for the same sequence of calls.
///
/// See the [module documentation](self) for the call mapping, the error state and the
/// panics.
pub struct Builder {
    /// Backing storage; the data being built is `buf[head..]`. Everything below `head`
    /// is zero.
    buf: Vec<u8>,
    head: usize,
    minalign: usize,
    current_vtable: Vec<u32>,
    object_end: usize,
    /// Python's `vtables` dict: trimmed reversed field offsets + object size -> offset
    /// of the written vtable.
    vtables: HashMap<Vec<u32>, usize>,
    key_scratch: Vec<u32>,
    nesting: Nesting,
    vector_num_elems: usize,
    finished: bool,
    error: Option<BuildError>,
    max_size: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("offset", &self.used())
            .field("capacity", &self.buf.len())
            .field("minalign", &self.minalign)
            .field("vtables", &self.vtables.len())
            .field("nesting", &self.nesting)
            .field("finished", &self.finished)
            .field("error", &self.error)
            .finish()
    }
}

/// Converts an internal position (always `<= MAX_BUFFER_SIZE`) to a [`UOffset`].
fn to_uoffset(x: usize) -> UOffset {
    u32::try_from(x).unwrap_or(u32::MAX)
}

macro_rules! typed_methods {
    ($($t:ty, $add:ident, $prepend:ident, $py_add:literal, $py_prepend:literal;)*) => {$(
        #[doc = concat!("Adds a `", stringify!($t), "` field to the current table (Python `", $py_add, "`).")]
        ///
        /// The value is written only when it differs from `default` in Python's sense
        /// (see [`Scalar::differs_from`]).
        #[inline]
        pub fn $add(&mut self, slot: usize, x: $t, default: $t) {
            self.add_scalar(slot, x, default);
        }

        #[doc = concat!("Prepends a `", stringify!($t), "`, aligned to its size (Python `", $py_prepend, "`).")]
        #[inline]
        pub fn $prepend(&mut self, x: $t) {
            self.prepend(x);
        }
    )*};
}

impl Builder {
    /// Creates a builder with Python's default initial capacity of 1024 bytes.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// Creates a builder with an initial capacity of `bytes` (clamped to
    /// [`MAX_BUFFER_SIZE`]). The output never depends on the capacity.
    pub fn with_capacity(bytes: usize) -> Self {
        Self::with_limits(bytes, MAX_BUFFER_SIZE)
    }

    fn with_limits(capacity: usize, max_size: usize) -> Self {
        let capacity = capacity.min(max_size);
        Builder {
            buf: vec![0; capacity],
            head: capacity,
            minalign: 1,
            current_vtable: Vec::new(),
            object_end: 0,
            vtables: HashMap::new(),
            key_scratch: Vec::new(),
            nesting: Nesting::None,
            vector_num_elems: 0,
            finished: false,
            error: None,
            max_size,
        }
    }

    /// The current offset: the number of bytes written so far, measured from the end of
    /// the buffer (Python `Offset()`).
    pub fn offset(&self) -> UOffset {
        to_uoffset(self.used())
    }

    /// The largest alignment requested so far (Python `minalign`).
    pub fn minalign(&self) -> usize {
        self.minalign
    }

    /// Returns the first error recorded, if any (see the module docs).
    pub fn check(&self) -> Result<(), BuildError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The first error recorded, if any.
    pub fn error(&self) -> Option<&BuildError> {
        self.error.as_ref()
    }

    /// Whether [`Builder::finish`] completed successfully.
    pub fn is_finished(&self) -> bool {
        self.finished && self.error.is_none()
    }

    // ----------------------------------------------------------------- internals

    fn used(&self) -> usize {
        self.buf.len().saturating_sub(self.head)
    }

    fn poisoned(&self) -> bool {
        self.error.is_some()
    }

    fn fail(&mut self, e: BuildError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn fail_size(&mut self, requested: Option<usize>) {
        let requested = requested
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or(u64::MAX);
        let max = u64::try_from(self.max_size).unwrap_or(u64::MAX);
        self.fail(BuildError::BufferTooLarge { requested, max });
    }

    fn assert_not_nested(&self, what: &str) {
        if self.nesting != Nesting::None {
            panic!(
                "flatbuffers builder misuse: {what} called while a {} is being built",
                if self.nesting == Nesting::Object {
                    "table"
                } else {
                    "vector"
                }
            );
        }
    }

    /// Makes sure at least `needed` bytes are free below `head`, growing the buffer
    /// (doubling) if necessary. Returns false (and records an error) on failure.
    fn reserve(&mut self, needed: usize) -> bool {
        if self.head >= needed {
            return true;
        }
        let used = self.used();
        let Some(required) = used.checked_add(needed).filter(|r| *r <= self.max_size) else {
            self.fail_size(used.checked_add(needed));
            return false;
        };
        let new_len = self
            .buf
            .len()
            .saturating_mul(2)
            .max(required)
            .min(self.max_size);
        let mut new_buf = vec![0u8; new_len];
        let new_head = new_len - used; // new_len >= required >= used
        match (new_buf.get_mut(new_head..), self.buf.get(self.head..)) {
            (Some(dst), Some(src)) if dst.len() == src.len() => dst.copy_from_slice(src),
            _ => {
                self.fail(BuildError::Internal("grow: inconsistent head"));
                return false;
            }
        }
        self.buf = new_buf;
        self.head = new_head;
        true
    }

    /// Python `Prep(size, additionalBytes)`: pads so that after writing
    /// `additional_bytes` more bytes, the position is aligned to `size`, and makes room
    /// for `size + additional_bytes` bytes. Returns false in the error state.
    fn prep(&mut self, size: usize, additional_bytes: usize) -> bool {
        if self.poisoned() {
            return false;
        }
        if size > self.minalign {
            self.minalign = size;
        }
        let used = self.used();
        let Some(total) = used.checked_add(additional_bytes) else {
            self.fail_size(None);
            return false;
        };
        // Python: alignSize = (~(len - head + additional) + 1) & (size - 1)
        let align_size = total.wrapping_neg() & size.wrapping_sub(1);
        let Some(needed) = align_size
            .checked_add(size)
            .and_then(|n| n.checked_add(additional_bytes))
        else {
            self.fail_size(None);
            return false;
        };
        if !matches!(used.checked_add(needed), Some(r) if r <= self.max_size) {
            self.fail_size(used.checked_add(needed));
            return false;
        }
        if !self.reserve(needed) {
            return false;
        }
        self.pad(align_size);
        true
    }

    /// Moves `head` down by `n` bytes (space must have been reserved) and returns the
    /// newly claimed region.
    fn claim(&mut self, n: usize) -> Option<&mut [u8]> {
        let Some(new_head) = self.head.checked_sub(n) else {
            self.fail(BuildError::Internal("write without reserved space"));
            return None;
        };
        let old_head = self.head;
        self.head = new_head;
        self.buf.get_mut(new_head..old_head)
    }

    /// Python `Pad(n)`: writes `n` zero bytes.
    fn pad(&mut self, n: usize) {
        if let Some(region) = self.claim(n) {
            region.fill(0);
        }
    }

    /// Python `Place`: writes a scalar without aligning (space must have been reserved).
    fn place<T: Scalar>(&mut self, x: T) {
        if let Some(region) = self.claim(T::SIZE) {
            x.write_le(region);
        }
    }

    fn place_bytes(&mut self, bytes: &[u8]) {
        if let Some(region) = self.claim(bytes.len()) {
            region.copy_from_slice(bytes);
        }
    }

    /// Python `Slot(slotnum)`.
    fn slot(&mut self, slot: usize) {
        if self.nesting != Nesting::Object {
            panic!("flatbuffers builder misuse: field added to slot {slot} outside a table");
        }
        let off = to_uoffset(self.used());
        let num_fields = self.current_vtable.len();
        match self.current_vtable.get_mut(slot) {
            Some(entry) => *entry = off,
            None => panic!(
                "flatbuffers builder misuse: slot {slot} out of range for a table started \
                 with {num_fields} fields"
            ),
        }
    }

    // ----------------------------------------------------------------- scalars

    /// Prepends a scalar, aligned to its size (Python `Prepend`).
    pub fn prepend<T: Scalar>(&mut self, x: T) {
        if self.prep(T::SIZE, 0) {
            self.place(x);
        }
    }

    /// Adds a scalar field (Python `PrependSlot(flags, slot, x, default)`): written only
    /// when `x` differs from `default` in Python's sense (`-0.0` equals `0.0` and is not
    /// written; `NaN` is always written).
    pub fn add_scalar<T: Scalar>(&mut self, slot: usize, x: T, default: T) {
        if self.poisoned() {
            return;
        }
        if self.nesting != Nesting::Object {
            panic!("flatbuffers builder misuse: field added to slot {slot} outside a table");
        }
        if x.differs_from(default) {
            self.prepend(x);
            if !self.poisoned() {
                self.slot(slot);
            }
        }
    }

    typed_methods! {
        bool, add_bool, prepend_bool, "PrependBoolSlot", "PrependBool";
        u8, add_u8, prepend_u8, "PrependUint8Slot", "PrependUint8";
        i8, add_i8, prepend_i8, "PrependInt8Slot", "PrependInt8";
        u16, add_u16, prepend_u16, "PrependUint16Slot", "PrependUint16";
        i16, add_i16, prepend_i16, "PrependInt16Slot", "PrependInt16";
        u32, add_u32, prepend_u32, "PrependUint32Slot", "PrependUint32";
        i32, add_i32, prepend_i32, "PrependInt32Slot", "PrependInt32";
        u64, add_u64, prepend_u64, "PrependUint64Slot", "PrependUint64";
        i64, add_i64, prepend_i64, "PrependInt64Slot", "PrependInt64";
        f32, add_f32, prepend_f32, "PrependFloat32Slot", "PrependFloat32";
        f64, add_f64, prepend_f64, "PrependFloat64Slot", "PrependFloat64";
    }

    /// Adds an `f32` field from an `f64`, exactly as Python's `PrependFloat32Slot` does
    /// with a Python float: the *`f64`* values are compared (`x != default`), then `x` is
    /// rounded to `f32`. So `1e-50` (default `0.0`) is written, as `0.0`. A finite `x` that
    /// rounds to infinity puts the builder in the error state
    /// ([`BuildError::FloatOverflow`]).
    pub fn add_f32_from_f64(&mut self, slot: usize, x: f64, default: f64) {
        if self.poisoned() {
            return;
        }
        if self.nesting != Nesting::Object {
            panic!("flatbuffers builder misuse: field added to slot {slot} outside a table");
        }
        if x.differs_from(default) {
            self.prepend_f32_from_f64(x);
            if !self.poisoned() {
                self.slot(slot);
            }
        }
    }

    /// Prepends an `f64` rounded to `f32`, as Python's `PrependFloat32` does with a Python
    /// float (a finite value that rounds to infinity is [`BuildError::FloatOverflow`]).
    pub fn prepend_f32_from_f64(&mut self, x: f64) {
        #[allow(clippy::cast_possible_truncation)] // rounding is the point
        let y = x as f32;
        if y.is_infinite() && x.is_finite() {
            self.fail(BuildError::FloatOverflow { value: x });
            return;
        }
        self.prepend(y);
    }

    // ----------------------------------------------------------------- offsets

    /// Prepends a `uoffset` pointing at `off`, relative to where it is written (Python
    /// `PrependUOffsetTRelative`).
    ///
    /// # Panics
    /// If `off` is larger than [`Builder::offset`] (an offset from another builder).
    pub fn prepend_uoffset_relative(&mut self, off: UOffset) {
        if !self.prep(4, 0) {
            return;
        }
        let used = self.used();
        let off = off as usize;
        if off > used {
            panic!(
                "flatbuffers builder misuse: offset {off} is beyond the current offset \
                 {used} (not created by this builder?)"
            );
        }
        // used <= 2^31, so this fits.
        let rel = to_uoffset((used - off).saturating_add(4));
        self.place(rel);
    }

    /// Adds an offset field (Python `PrependUOffsetTRelativeSlot(slot, off, 0)`): nothing
    /// is written when `off == 0`.
    pub fn add_offset(&mut self, slot: usize, off: UOffset) {
        if self.poisoned() {
            return;
        }
        if self.nesting != Nesting::Object {
            panic!("flatbuffers builder misuse: field added to slot {slot} outside a table");
        }
        if off != 0 {
            self.prepend_uoffset_relative(off);
            if !self.poisoned() {
                self.slot(slot);
            }
        }
    }

    /// Adds a union as generated code does: the `u8` type tag in `type_slot` (default 0)
    /// followed by the value offset in `value_slot` (skipped when 0).
    pub fn add_union(&mut self, type_slot: usize, value_slot: usize, tag: u8, off: UOffset) {
        self.add_u8(type_slot, tag, 0);
        self.add_offset(value_slot, off);
    }

    // ----------------------------------------------------------------- tables

    /// Starts a table with `num_fields` vtable slots (Python `StartObject`).
    ///
    /// # Panics
    /// If a table or vector is already being built.
    pub fn start_object(&mut self, num_fields: usize) {
        if self.poisoned() {
            return;
        }
        self.assert_not_nested("start_object");
        self.current_vtable.clear();
        self.current_vtable.resize(num_fields, 0);
        self.object_end = self.used();
        self.nesting = Nesting::Object;
    }

    /// Finishes the current table, writing (or reusing) its vtable, and returns the
    /// table's offset (Python `EndObject`).
    ///
    /// # Panics
    /// If no table is being built.
    pub fn end_object(&mut self) -> UOffset {
        if self.poisoned() {
            return 0;
        }
        if self.nesting != Nesting::Object {
            panic!("flatbuffers builder misuse: end_object called outside a table");
        }
        self.nesting = Nesting::None;
        let off = self.write_vtable();
        if self.poisoned() {
            0
        } else {
            off
        }
    }

    /// Python `WriteVtable`.
    fn write_vtable(&mut self) -> UOffset {
        // PrependSOffsetTRelative(0): a placeholder, overwritten below.
        if !self.prep(4, 0) {
            return 0;
        }
        self.place(0i32);
        let object_offset = self.used();
        let object_offset32 = to_uoffset(object_offset);

        // The 25.12.19 dedupe key: reversed field offsets with trailing (in field order)
        // zeros trimmed, followed by the object size.
        let mut key = std::mem::take(&mut self.key_scratch);
        key.clear();
        let mut trim = true;
        for &elem in self.current_vtable.iter().rev() {
            if elem == 0 {
                if trim {
                    continue;
                }
                key.push(0);
            } else {
                trim = false;
                key.push(object_offset32.saturating_sub(elem));
            }
        }
        let object_size = object_offset.saturating_sub(self.object_end);
        key.push(to_uoffset(object_size));

        let result = if let Some(&vt2) = self.vtables.get(key.as_slice()) {
            // Reuse: soffset = vtable offset - object offset (negative).
            let soff = i64::try_from(vt2).unwrap_or(i64::MAX)
                - i64::try_from(object_offset).unwrap_or(i64::MAX);
            self.write_soffset_at(object_offset, soff);
            object_offset32
        } else {
            self.write_new_vtable(&key, object_offset, object_size)
        };
        self.key_scratch = key;
        result
    }

    fn write_new_vtable(
        &mut self,
        key: &[u32],
        object_offset: usize,
        object_size: usize,
    ) -> UOffset {
        let fields = key.split_last().map_or(&[][..], |(_, rest)| rest);
        for &off in fields {
            let Ok(v) = u16::try_from(off) else {
                self.fail(BuildError::TableTooLarge {
                    what: "field offset",
                    value: u64::from(off),
                });
                return 0;
            };
            self.prepend(v);
        }
        let Ok(size16) = u16::try_from(object_size) else {
            self.fail(BuildError::TableTooLarge {
                what: "object size",
                value: u64::try_from(object_size).unwrap_or(u64::MAX),
            });
            return 0;
        };
        self.prepend(size16);
        let vbytes = fields
            .len()
            .checked_add(VTABLE_METADATA_FIELDS)
            .and_then(|n| n.checked_mul(2))
            .and_then(|n| u16::try_from(n).ok());
        let Some(vbytes) = vbytes else {
            self.fail(BuildError::TableTooLarge {
                what: "vtable size",
                value: u64::try_from(fields.len()).unwrap_or(u64::MAX),
            });
            return 0;
        };
        self.prepend(vbytes);
        if self.poisoned() {
            return 0;
        }
        let vt_offset = self.used();
        let soff = i64::try_from(vt_offset).unwrap_or(i64::MAX)
            - i64::try_from(object_offset).unwrap_or(i64::MAX);
        self.write_soffset_at(object_offset, soff);
        self.vtables.insert(key.to_vec(), vt_offset);
        to_uoffset(object_offset)
    }

    /// Overwrites the soffset of the object at `object_offset` (from the end).
    fn write_soffset_at(&mut self, object_offset: usize, value: i64) {
        let Ok(value) = i32::try_from(value) else {
            self.fail(BuildError::Internal("soffset out of range"));
            return;
        };
        let pos = self.buf.len().checked_sub(object_offset);
        match pos.and_then(|p| self.buf.get_mut(p..p.saturating_add(4))) {
            Some(dst) => value.write_le(dst),
            None => self.fail(BuildError::Internal("object position out of range")),
        }
    }

    // ----------------------------------------------------------------- vectors

    /// Starts a vector of `num_elems` elements of `elem_size` bytes whose data is aligned
    /// to `alignment` (Python `StartVector(elemSize, numElems, alignment)`). Prepend the
    /// elements last to first, then call [`Builder::end_vector`].
    ///
    /// A non-power-of-two `alignment` or an oversized vector puts the builder in the
    /// error state.
    ///
    /// # Panics
    /// If a table or vector is already being built.
    pub fn start_vector(&mut self, elem_size: usize, num_elems: usize, alignment: usize) {
        if self.poisoned() {
            return;
        }
        self.assert_not_nested("start_vector");
        self.nesting = Nesting::Vector;
        self.vector_num_elems = num_elems;
        if !alignment.is_power_of_two() {
            self.fail(BuildError::InvalidAlignment { alignment });
            return;
        }
        let total = elem_size.checked_mul(num_elems);
        let Some(total) = total.filter(|_| u32::try_from(num_elems).is_ok()) else {
            self.fail(BuildError::VectorTooLong {
                elem_size,
                num_elems,
            });
            return;
        };
        if self.prep(4, total) {
            self.prep(alignment, total);
        }
    }

    /// Finishes the current vector by writing its length and returns its offset (Python
    /// `EndVector()`).
    ///
    /// The length written is the `num_elems` given to [`Builder::start_vector`], as in
    /// Python, whatever number of elements was actually prepended.
    ///
    /// # Panics
    /// If no vector is being built.
    pub fn end_vector(&mut self) -> UOffset {
        if self.poisoned() {
            return 0;
        }
        if self.nesting != Nesting::Vector {
            panic!("flatbuffers builder misuse: end_vector called outside a vector");
        }
        self.nesting = Nesting::None;
        // Python places the length without Prep: start_vector reserved the space. Only
        // a caller that prepended more elements than declared can lack it.
        if !self.reserve(4) {
            return 0;
        }
        self.place(to_uoffset(self.vector_num_elems));
        if self.poisoned() {
            0
        } else {
            self.offset()
        }
    }

    /// Writes a NUL-terminated UTF-8 string (Python `CreateString`).
    ///
    /// # Panics
    /// If a table or vector is being built.
    pub fn create_string(&mut self, s: &str) -> UOffset {
        if self.poisoned() {
            return 0;
        }
        self.assert_not_nested("create_string");
        let bytes = s.as_bytes();
        let Some(with_nul) = bytes.len().checked_add(1) else {
            self.fail_size(None);
            return 0;
        };
        if !self.prep(4, with_nul) {
            return 0;
        }
        self.place(0u8);
        self.place_bytes(bytes);
        self.place(to_uoffset(bytes.len()));
        if self.poisoned() {
            0
        } else {
            self.offset()
        }
    }

    /// Writes a vector of scalars, producing the same bytes as generated code's
    /// `StartXVector(builder, n)` (`StartVector(size, n, size)`), `PrependX` from the last
    /// element to the first, and `EndVector()`, but with one bulk copy.
    ///
    /// # Panics
    /// If a table or vector is being built.
    pub fn create_scalar_vector<T: Scalar>(&mut self, items: &[T]) -> UOffset {
        if self.poisoned() {
            return 0;
        }
        self.start_vector(T::SIZE, items.len(), T::SIZE);
        // start_vector reserved SIZE * len bytes (or failed).
        let total = T::SIZE.saturating_mul(items.len());
        if !self.poisoned() {
            if let Some(region) = self.claim(total) {
                for (chunk, item) in region.chunks_exact_mut(T::SIZE).zip(items) {
                    item.write_le(chunk);
                }
            }
        }
        self.end_vector()
    }

    /// Writes a byte vector whose data is aligned to `alignment`, exactly like
    /// ExecuTorch's `_create_aligned_byte_vector` (`StartVector(1, len, alignment)`, a
    /// bulk copy, `EndVector()`). A non-power-of-two alignment puts the builder in the
    /// error state (ExecuTorch raises `ValueError`).
    ///
    /// # Panics
    /// If a table or vector is being built.
    pub fn create_aligned_bytes(&mut self, data: &[u8], alignment: usize) -> UOffset {
        if self.poisoned() {
            return 0;
        }
        self.start_vector(1, data.len(), alignment);
        if !self.poisoned() {
            self.place_bytes(data);
        }
        self.end_vector()
    }

    /// [`Builder::create_aligned_bytes`] for `len` bytes that are not written: the vector
    /// (length, alignment padding) is laid out exactly as for real data, but its data
    /// bytes are left as they are (zero, and never touched, so a large hole costs no
    /// memory until written). Returns the vector's offset and the distance from the
    /// data's first byte to the end of the buffer, which stays fixed while the buffer is
    /// built: in the finished data, the hole starts at `finished.len() - distance`.
    ///
    /// # Panics
    /// If a table or vector is being built.
    pub fn create_aligned_hole(&mut self, len: usize, alignment: usize) -> (UOffset, usize) {
        if self.poisoned() {
            return (0, 0);
        }
        self.start_vector(1, len, alignment);
        let mut distance = 0;
        if !self.poisoned() && self.claim(len).is_some() {
            distance = self.used();
        }
        (self.end_vector(), distance)
    }

    /// Writes a vector of offsets (to tables or strings) as generated code does:
    /// `StartVector(4, n, 4)`, `PrependUOffsetTRelative` from last to first, `EndVector()`.
    ///
    /// # Panics
    /// If a table or vector is being built, or an offset is not from this builder.
    pub fn create_offset_vector(&mut self, offsets: &[UOffset]) -> UOffset {
        if self.poisoned() {
            return 0;
        }
        self.start_vector(4, offsets.len(), 4);
        for &off in offsets.iter().rev() {
            if self.poisoned() {
                break;
            }
            self.prepend_uoffset_relative(off);
        }
        self.end_vector()
    }

    // ----------------------------------------------------------------- finishing

    /// Finishes the buffer with `root` as the root table and an optional 4-byte file
    /// identifier (Python `Finish(rootTable, file_identifier)`).
    ///
    /// # Panics
    /// If a table or vector is being built, or `root` is not from this builder.
    pub fn finish(&mut self, root: UOffset, file_identifier: Option<&[u8; 4]>) {
        if self.poisoned() {
            return;
        }
        self.assert_not_nested("finish");
        let mut prep_size = 4;
        if file_identifier.is_some() {
            prep_size += 4;
        }
        if !self.prep(self.minalign, prep_size) {
            return;
        }
        if let Some(id) = file_identifier {
            if !self.prep(4, FILE_IDENTIFIER_LENGTH) {
                return;
            }
            self.place_bytes(id);
        }
        self.prepend_uoffset_relative(root);
        self.finished = true;
    }

    /// [`Builder::finish`], then [`Builder::check`].
    pub fn try_finish(
        &mut self,
        root: UOffset,
        file_identifier: Option<&[u8; 4]>,
    ) -> Result<(), BuildError> {
        self.finish(root, file_identifier);
        self.check()
    }

    /// The finished buffer (Python `Output()`); empty when the builder is in the error
    /// state.
    ///
    /// # Panics
    /// If [`Builder::finish`] was not called (and no error was recorded).
    pub fn finished_data(&self) -> &[u8] {
        if self.poisoned() {
            return &[];
        }
        if !self.finished {
            panic!("flatbuffers builder misuse: finished_data called before finish");
        }
        self.buf.get(self.head..).unwrap_or(&[])
    }

    /// Consumes the builder and returns the finished buffer without copying it to a new
    /// allocation; empty when the builder is in the error state.
    ///
    /// # Panics
    /// If [`Builder::finish`] was not called (and no error was recorded).
    pub fn into_finished_data(mut self) -> Vec<u8> {
        if self.poisoned() {
            return Vec::new();
        }
        if !self.finished {
            panic!("flatbuffers builder misuse: into_finished_data called before finish");
        }
        let head = self.head.min(self.buf.len());
        self.buf.drain(..head);
        self.buf
    }

    /// The backing buffer and the index where the finished data starts in it (the
    /// finished data is `buffer[start..]`), without moving the data (unlike
    /// [`Builder::into_finished_data`], which touches every byte, holes included).
    ///
    /// # Errors
    /// The builder's sticky error.
    ///
    /// # Panics
    /// If [`Builder::finish`] was not called (and no error was recorded).
    pub fn try_into_buffer(self) -> Result<(Vec<u8>, usize), BuildError> {
        self.check()?;
        if !self.finished {
            panic!("flatbuffers builder misuse: try_into_buffer called before finish");
        }
        let head = self.head.min(self.buf.len());
        Ok((self.buf, head))
    }

    /// Like [`Builder::into_finished_data`], but reports the sticky error instead of
    /// returning an empty buffer.
    pub fn try_into_finished_data(self) -> Result<Vec<u8>, BuildError> {
        self.check()?;
        Ok(self.into_finished_data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hole_filled_equals_aligned_bytes() {
        let data: Vec<u8> = (0..200u8).collect();
        let build = |hole: bool| {
            let mut b = Builder::with_capacity(16);
            let name = b.create_string("before");
            let (vec, distance) = if hole {
                b.create_aligned_hole(data.len(), 32)
            } else {
                (b.create_aligned_bytes(&data, 32), 0)
            };
            let other = b.create_scalar_vector(&[1u32, 2, 3]);
            b.start_object(3);
            b.add_offset(0, name);
            b.add_offset(1, vec);
            b.add_offset(2, other);
            let root = b.end_object();
            b.finish(root, Some(b"TEST"));
            let (buf, start) = b.try_into_buffer().unwrap();
            (buf[start..].to_vec(), distance)
        };
        let (want, _) = build(false);
        let (mut got, distance) = build(true);
        let at = got.len() - distance;
        assert!(got[at..at + data.len()].iter().all(|b| *b == 0));
        got[at..at + data.len()].copy_from_slice(&data);
        assert_eq!(got, want);
    }

    #[test]
    fn empty_table_with_identifier() {
        let mut b = Builder::new();
        b.start_object(0);
        let t = b.end_object();
        b.finish(t, Some(b"ET12"));
        // root uoffset 12, "ET12", vtable (4, 4), table soffset 4
        assert_eq!(hex(b.finished_data()), "0c000000455431320400040004000000");
    }

    #[test]
    fn size_limit_is_sticky_not_a_panic() {
        let mut b = Builder::with_limits(16, 64);
        let s = b.create_string("0123456789");
        assert_ne!(s, 0);
        assert!(b.check().is_ok());
        let big = [7u8; 60];
        assert_eq!(b.create_aligned_bytes(&big, 8), 0);
        assert!(matches!(b.check(), Err(BuildError::BufferTooLarge { .. })));
        // Everything is a no-op now, including misuse that would otherwise panic.
        b.start_object(2);
        b.add_u32(1, 5, 0);
        assert_eq!(b.end_object(), 0);
        b.finish(0, None);
        assert!(b.finished_data().is_empty());
        assert!(b.try_into_finished_data().is_err());
    }

    #[test]
    fn exact_fit_at_limit() {
        // Like Python, Prep reserves `size + additional_bytes` (plus padding) before
        // writing, so "abc" (8 bytes) + root offset needs a 16-byte limit although the
        // output is 12 bytes (checked against Python with a patched MAX_BUFFER_SIZE).
        let mut b = Builder::with_limits(1, 16);
        let s = b.create_string("abc");
        b.finish(s, None);
        assert!(b.check().is_ok());
        assert_eq!(hex(b.finished_data()), "040000000300000061626300");
        let mut b = Builder::with_limits(1, 15);
        let s = b.create_string("abc");
        b.finish(s, None);
        assert!(matches!(b.check(), Err(BuildError::BufferTooLarge { .. })));
    }

    #[test]
    fn invalid_alignment_is_an_error() {
        let mut b = Builder::new();
        assert_eq!(b.create_aligned_bytes(b"abc", 3), 0);
        assert_eq!(
            b.check(),
            Err(BuildError::InvalidAlignment { alignment: 3 })
        );
        let mut b = Builder::new();
        b.create_aligned_bytes(b"abc", 0);
        assert!(b.check().is_err());
    }

    #[test]
    fn huge_table_is_an_error() {
        let mut b = Builder::new();
        b.start_object(40_000);
        b.add_u8(39_999, 1, 0);
        b.end_object();
        assert!(matches!(b.check(), Err(BuildError::TableTooLarge { .. })));
    }

    #[test]
    #[should_panic(expected = "while a table is being built")]
    fn nesting_misuse_panics() {
        let mut b = Builder::new();
        b.start_object(1);
        b.create_string("x");
    }

    #[test]
    #[should_panic(expected = "slot 3 out of range")]
    fn slot_out_of_range_panics() {
        let mut b = Builder::new();
        b.start_object(1);
        b.add_u32(3, 1, 0);
    }

    #[test]
    #[should_panic(expected = "before finish")]
    fn output_before_finish_panics() {
        let b = Builder::new();
        let _ = b.finished_data();
    }

    #[test]
    fn f32_from_f64_follows_python() {
        let mut b = Builder::new();
        b.start_object(2);
        b.add_f32_from_f64(0, 1e-50, 0.0); // written (as 0.0) because 1e-50 != 0.0
        b.add_f32_from_f64(1, -0.0, 0.0); // not written
        let t = b.end_object();
        b.finish(t, None);
        assert_eq!(
            hex(b.finished_data()),
            "0c00000000000600080004000600000000000000"
        );
        let mut b = Builder::new();
        b.start_object(1);
        b.add_f32_from_f64(0, 1e39, 0.0);
        assert_eq!(b.check(), Err(BuildError::FloatOverflow { value: 1e39 }));
        let mut b = Builder::new();
        b.prepend_f32_from_f64(f64::INFINITY);
        b.prepend_f32_from_f64(f64::from(f32::MAX));
        assert!(b.check().is_ok());
    }

    #[test]
    fn defaults_follow_python_semantics() {
        let mut b = Builder::new();
        b.start_object(3);
        b.add_f64(0, -0.0, 0.0); // equal in Python: not written
        b.add_f32(1, f32::NAN, f32::NAN); // NaN != NaN: written
        b.add_bool(2, false, false);
        let t = b.end_object();
        b.finish(t, None);
        let out = b.finished_data();
        // root(4) + vtable(4 + 2*2) + soffset(4) + f32(4)
        assert_eq!(out.len(), 20);
    }
}
