//! A second packing order: the one `flatc --binary` (FlatBuffers 24.3.25, the binary
//! shipped with ExecuTorch 1.5.1 as `executorch/data/bin/flatc`) uses when it builds a
//! buffer from JSON.
//!
//! ExecuTorch writes some formats (FlatTensor `.ptd`) by dumping a dataclass to JSON and
//! running `flatc --binary`, so reproducing those bytes means reproducing flatc's JSON
//! parser (`Parser::ParseTable` / `ParseVector` in `src/idl_parser.cpp`) on top of the
//! C++ `FlatBufferBuilder`. The rule, established by reading the parser and checked by
//! differential tests against the real binary on random JSON:
//!
//! 1. **Children are created in JSON text order, depth first, as they are parsed.** A
//!    string, vector or sub-table field value is serialized the moment the parser reaches
//!    it; the parent's scalars and child offsets are only remembered. So the caller
//!    creates a table's children in the order its JSON names them (the order of the
//!    keys of the Python dataclass for ExecuTorch, which is the schema order).
//! 2. **Vectors**: the elements are parsed first to last (a vector of tables creates
//!    each element table in that order), then `StartVector` and the elements are pushed
//!    last to first — the same bytes as [`Builder::create_scalar_vector`] /
//!    [`Builder::create_offset_vector`]. A `force_align: N` vector gets one extra
//!    pre-alignment to `N` (only when non-empty).
//! 3. **The table's own fields are added sorted, not in JSON order.** The parser keeps
//!    the parsed fields insertion-sorted by field id (vtable slot). After the closing
//!    brace it starts the table and adds the fields in passes by size — 8-byte scalars,
//!    then 4-byte ones (including every offset: strings, vectors, tables), then 2-byte,
//!    then 1-byte (`bool`, `byte`/`ubyte` and enums based on them, union type tags) —
//!    and within each pass from the **highest field id to the lowest**. (Tables declared
//!    with `original_order` skip the size passes; no ExecuTorch schema uses it.)
//! 4. A scalar equal to the schema default is not written (no `--force-defaults`); a
//!    non-scalar field given as JSON `null` is skipped as if absent.
//! 5. The C++ builder's remaining behaviour matches the Python builder byte for byte for
//!    these calls: the same alignment padding, strings with their NUL, vtables trimmed
//!    after the last present field and shared when byte-identical (C++ compares whole
//!    vtables, which include the object size: the same rule as the 25.12.19 Python
//!    key), the root offset and file identifier aligned to the buffer's largest
//!    alignment. Empty vectors differ only in not tracking the element alignment,
//!    which matters only above 4 bytes.
//!
//! [`FlatcTable`] implements rule 3 on the existing [`Builder`]: collect a table's
//! fields in any order, then [`FlatcTable::end`] starts the table, adds them in flatc's
//! order and ends it.
//!
//! ```
//! use ptekit_flatbuffers::{flatc_order::FlatcTable, Builder, Limits, Verifier};
//!
//! // table DataSegment { offset: uint64; size: uint64; } from {"offset": 32, "size": 7}
//! let mut b = Builder::new();
//! let mut t = FlatcTable::new(2);
//! t.add_u64(0, 32, 0);
//! t.add_u64(1, 7, 0);
//! let seg = t.end(&mut b); // adds `size` (id 1) first, then `offset` (id 0)
//! b.finish(seg, None);
//! let out = b.finished_data();
//!
//! let v = Verifier::new(out, Limits::default())?;
//! let table = v.root()?;
//! assert_eq!((table.get_u64(0, 0)?, table.get_u64(1, 0)?), (32, 7));
//! // Built back to front: the field added last (`offset`) sits first after the soffset.
//! let pos = table.position();
//! assert_eq!(out[pos + 4..pos + 12], 32u64.to_le_bytes());
//! # Ok::<(), ptekit_flatbuffers::Error>(())
//! ```

use crate::builder::{Builder, UOffset};

/// A field value waiting for [`FlatcTable::end`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    Bool(bool, bool),
    U8(u8, u8),
    I8(i8, i8),
    U16(u16, u16),
    I16(i16, i16),
    U32(u32, u32),
    I32(i32, i32),
    U64(u64, u64),
    I64(i64, i64),
    F32(f32, f32),
    F64(f64, f64),
    Offset(UOffset),
}

impl Pending {
    /// flatc's `SizeOf(base_type)`: the pass in which the field is added.
    fn size(&self) -> usize {
        match self {
            Pending::Bool(..) | Pending::U8(..) | Pending::I8(..) => 1,
            Pending::U16(..) | Pending::I16(..) => 2,
            Pending::U32(..) | Pending::I32(..) | Pending::F32(..) | Pending::Offset(_) => 4,
            Pending::U64(..) | Pending::I64(..) | Pending::F64(..) => 8,
        }
    }

    fn emit(self, b: &mut Builder, slot: usize) {
        match self {
            Pending::Bool(x, d) => b.add_bool(slot, x, d),
            Pending::U8(x, d) => b.add_u8(slot, x, d),
            Pending::I8(x, d) => b.add_i8(slot, x, d),
            Pending::U16(x, d) => b.add_u16(slot, x, d),
            Pending::I16(x, d) => b.add_i16(slot, x, d),
            Pending::U32(x, d) => b.add_u32(slot, x, d),
            Pending::I32(x, d) => b.add_i32(slot, x, d),
            Pending::U64(x, d) => b.add_u64(slot, x, d),
            Pending::I64(x, d) => b.add_i64(slot, x, d),
            Pending::F32(x, d) => b.add_f32(slot, x, d),
            Pending::F64(x, d) => b.add_f64(slot, x, d),
            Pending::Offset(off) => b.add_offset(slot, off),
        }
    }
}

/// Collects one table's fields and adds them in flatc's JSON-parser order (see the
/// [module documentation](self)).
///
/// Create the table's children (strings, vectors, sub-tables) on the [`Builder`] first,
/// in JSON text order; record the fields with the `add_*` methods in any order; then call
/// [`FlatcTable::end`].
#[derive(Debug, Clone)]
pub struct FlatcTable {
    num_fields: usize,
    fields: Vec<(usize, Pending)>,
}

macro_rules! flatc_adders {
    ($($t:ty, $name:ident, $variant:ident;)*) => {$(
        #[doc = concat!("Records a `", stringify!($t), "` field with its schema default (not written when equal, as flatc without `--force-defaults`).")]
        pub fn $name(&mut self, slot: usize, x: $t, default: $t) {
            self.push(slot, Pending::$variant(x, default));
        }
    )*};
}

impl FlatcTable {
    /// A table with `num_fields` vtable slots (the number of fields in the schema).
    pub fn new(num_fields: usize) -> Self {
        FlatcTable {
            num_fields,
            fields: Vec::new(),
        }
    }

    fn push(&mut self, slot: usize, value: Pending) {
        assert!(
            slot < self.num_fields,
            "flatc table misuse: slot {slot} out of range for a table of {} fields",
            self.num_fields
        );
        assert!(
            self.fields.iter().all(|(s, _)| *s != slot),
            "flatc table misuse: field {slot} set more than once (flatc rejects this)"
        );
        self.fields.push((slot, value));
    }

    flatc_adders! {
        bool, add_bool, Bool;
        u8, add_u8, U8;
        i8, add_i8, I8;
        u16, add_u16, U16;
        i16, add_i16, I16;
        u32, add_u32, U32;
        i32, add_i32, I32;
        u64, add_u64, U64;
        i64, add_i64, I64;
        f32, add_f32, F32;
        f64, add_f64, F64;
    }

    /// Records an offset field (string, vector or table); `0` means absent (JSON `null`
    /// or a missing key) and is not written.
    pub fn add_offset(&mut self, slot: usize, off: UOffset) {
        self.push(slot, Pending::Offset(off));
    }

    /// Starts the table on `b`, adds the recorded fields in flatc's order (passes of
    /// size 8, 4, 2, 1; highest field id first within a pass) and ends it, returning the
    /// table's offset (`0` if the builder is in its error state).
    ///
    /// # Panics
    /// As [`Builder::start_object`]: if a table or vector is being built on `b`.
    pub fn end(mut self, b: &mut Builder) -> UOffset {
        // flatc's field stack is sorted by field id; it walks it in reverse.
        self.fields.sort_by_key(|f| std::cmp::Reverse(f.0));
        b.start_object(self.num_fields);
        for size in [8usize, 4, 2, 1] {
            for &(slot, value) in &self.fields {
                if value.size() == size {
                    value.emit(b, slot);
                }
            }
        }
        b.end_object()
    }
}

/// Writes a vector with `force_align: alignment` as flatc's JSON parser does:
/// `ForceVectorAlignment` (a pre-alignment to `alignment`, skipped for an empty vector),
/// then `StartVector` for `elem_size`-byte elements and the elements last to first.
/// `data` holds the little-endian elements, first to last.
///
/// For an empty vector of 8-byte elements the builder records an 8-byte minimum
/// alignment where the C++ builder records only 4 (it skips alignment for empty
/// vectors); no ExecuTorch schema has such a vector.
///
/// A non-power-of-two alignment puts the builder in its error state.
///
/// # Panics
/// If a table or vector is being built, or `data.len()` is not a multiple of `elem_size`.
pub fn create_force_aligned_vector(
    b: &mut Builder,
    data: &[u8],
    elem_size: usize,
    alignment: usize,
) -> UOffset {
    assert!(
        elem_size > 0 && data.len() % elem_size == 0,
        "flatc vector misuse: {} bytes is not a whole number of {elem_size}-byte elements",
        data.len()
    );
    let align = if data.is_empty() {
        elem_size
    } else {
        alignment.max(elem_size)
    };
    if elem_size == 1 {
        // StartVector(1, n, a): Prep(4, n) then Prep(a, n) pads exactly like flatc's
        // PreAlign(n, a) followed by PreAlign<uoffset_t>(n) and PreAlign(n, 1).
        return b.create_aligned_bytes(data, align);
    }
    b.start_vector(elem_size, data.len() / elem_size, align);
    // The elements are already little-endian; prepending the bytes last to first
    // lays them out unchanged.
    for &byte in data.iter().rev() {
        b.prepend_u8(byte);
    }
    b.end_vector()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_by_size_then_reverse_id() {
        // Fields: 0 u8, 1 u64, 2 offset, 3 u32, 4 u16. flatc adds 1 (8), 3, 2 (4), 4 (2), 0 (1).
        let mut b = Builder::new();
        let s = b.create_string("x");
        let mut t = FlatcTable::new(5);
        t.add_u8(0, 1, 0);
        t.add_u16(4, 5, 0);
        t.add_offset(2, s);
        t.add_u32(3, 4, 0);
        t.add_u64(1, 2, 0);
        let root = t.end(&mut b);

        let mut e = Builder::new();
        let s2 = e.create_string("x");
        e.start_object(5);
        e.add_u64(1, 2, 0);
        e.add_u32(3, 4, 0);
        e.add_offset(2, s2);
        e.add_u16(4, 5, 0);
        e.add_u8(0, 1, 0);
        let root2 = e.end_object();
        b.finish(root, None);
        e.finish(root2, None);
        assert_eq!(b.finished_data(), e.finished_data());
    }

    #[test]
    #[should_panic(expected = "set more than once")]
    fn duplicate_field_panics() {
        let mut t = FlatcTable::new(2);
        t.add_u32(1, 1, 0);
        t.add_u32(1, 2, 0);
    }
}
