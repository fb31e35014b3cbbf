//! Verified, zero-copy reading of FlatBuffers that trusts nothing in the input.
//!
//! A [`Verifier`] wraps a byte slice and the caller's [`Limits`]. Starting from
//! [`Verifier::root`] (or [`Verifier::root_with_identifier`]), every accessor checks what
//! it reads before handing it out, following the rules of the FlatBuffers verifier:
//!
//! - every offset and length computation is overflow-checked, and every range read lies
//!   within the buffer;
//! - `uoffset`s are non-zero and point inside the buffer; the `soffset` from a table to
//!   its vtable points inside the buffer;
//! - vtables are 2-aligned, at least 4 bytes, of even size, inside the buffer; the
//!   table's inline size (from the vtable) is at least 4 and inside the buffer; a
//!   field lies inside the table's inline size;
//! - tables, `uoffset`s and vector lengths are 4-aligned; scalar fields and the
//!   elements of non-empty vectors are aligned to their size (positions are relative
//!   to the start of the buffer; disable with [`Limits::check_alignment`]);
//! - strings have their NUL terminator and are valid UTF-8;
//! - the number of tables visited, the nesting depth and the "apparent size" (bytes of
//!   tables, vectors and strings handed out, counting repeated visits) are limited, which
//!   stops cycles made with self-referencing offsets and blow-ups of shared sub-graphs.
//!
//! The counters live in the [`Verifier`] (in `Cell`s), so a verifier and the views
//! borrowing it are confined to one thread. Tables and vectors borrow the verifier
//! (`'v`); what they hand out (`&str`, `&[u8]`, [`ScalarVector`]) borrows the buffer
//! (`'buf`) and outlives the verifier, as in the `flatbuffers` crate's verifier.
//!
//! Nothing is allocated based on a length read from the buffer. The accessors return
//! views ([`Table`], [`ScalarVector`], [`TableVector`], [`StringVector`], `&str`,
//! `&[u8]`) borrowing the buffer; a format crate converts them into owned types, adding
//! context to errors as they propagate with [`Error::in_field`], [`Error::at_index`] and
//! [`Error::in_union_member`].
//!
//! ```
//! use ptekit_flatbuffers::{Builder, Limits, Verifier};
//!
//! let mut b = Builder::new();
//! let name = b.create_string("forward");
//! b.start_object(2);
//! b.add_offset(0, name);
//! b.add_u32(1, 7, 0);
//! let root = b.end_object();
//! b.finish(root, Some(b"ET12"));
//! let bytes = b.into_finished_data();
//!
//! let v = Verifier::new(&bytes, Limits::default())?;
//! let (t, id) = v.root_with_identifier(|id| id.starts_with(b"ET"))?;
//! assert_eq!(&id, b"ET12");
//! assert_eq!(t.string(0)?, Some("forward"));
//! assert_eq!(t.get_u32(1, 0)?, 7);
//! # Ok::<(), ptekit_flatbuffers::Error>(())
//! ```

use std::cell::Cell;
use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;

use crate::error::{Error, ErrorKind};
use crate::scalar::Scalar;

type Result<T> = std::result::Result<T, Error>;

/// Resource limits for a [`Verifier`].
///
/// Construct with [`Limits::default`] or [`Limits::new`] and adjust fields, e.g.
/// `Limits { max_tables: 10, ..Limits::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum table nesting depth; the root table is at depth 1. Default 64.
    pub max_depth: usize,
    /// Maximum number of tables visited, counting repeated visits. Default 1 000 000.
    pub max_tables: usize,
    /// Maximum buffer length in bytes. Default 2 GiB.
    pub max_buffer_size: usize,
    /// Maximum total bytes of tables (inline size), vectors and strings handed out,
    /// counting repeated visits. `None` (the default) means 4 × the buffer length +
    /// 4096: a buffer whose parts are each visited once (as in anything the Python
    /// builder writes without sharing) stays far below that.
    pub max_apparent_size: Option<u64>,
    /// Whether to check alignment (positions relative to the buffer start), as the
    /// FlatBuffers verifier does by default. Default `true`.
    pub check_alignment: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_tables: 1_000_000,
            max_buffer_size: 1 << 31,
            max_apparent_size: None,
            check_alignment: true,
        }
    }
}

impl Limits {
    /// Limits with the given depth, table count and buffer size, and defaults for the
    /// rest.
    pub fn new(max_depth: usize, max_tables: usize, max_buffer_size: usize) -> Self {
        Limits {
            max_depth,
            max_tables,
            max_buffer_size,
            ..Limits::default()
        }
    }
}

/// The reading context: the buffer, the limits and the counters of tables visited and
/// bytes handed out. Tables and vectors borrow it.
pub struct Verifier<'buf> {
    buf: &'buf [u8],
    limits: Limits,
    max_apparent: u64,
    tables: Cell<usize>,
    apparent: Cell<u64>,
}

impl fmt::Debug for Verifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("len", &self.buf.len())
            .field("limits", &self.limits)
            .field("tables", &self.tables.get())
            .field("apparent", &self.apparent.get())
            .finish()
    }
}

fn oob(what: &'static str, value: usize, at: usize) -> Error {
    Error::new(
        ErrorKind::OutOfBounds {
            what,
            value: u64::try_from(value).unwrap_or(u64::MAX),
        },
        at,
    )
}

impl<'buf> Verifier<'buf> {
    /// Creates a verifier over `buf`.
    ///
    /// # Errors
    /// [`ErrorKind::BufferTooLarge`] if `buf` exceeds [`Limits::max_buffer_size`].
    pub fn new(buf: &'buf [u8], limits: Limits) -> Result<Self> {
        if buf.len() > limits.max_buffer_size {
            return Err(Error::new(
                ErrorKind::BufferTooLarge {
                    len: buf.len(),
                    limit: limits.max_buffer_size,
                },
                0,
            ));
        }
        let max_apparent = limits.max_apparent_size.unwrap_or_else(|| {
            u64::try_from(buf.len())
                .unwrap_or(u64::MAX)
                .saturating_mul(4)
                .saturating_add(4096)
        });
        Ok(Verifier {
            buf,
            limits,
            max_apparent,
            tables: Cell::new(0),
            apparent: Cell::new(0),
        })
    }

    /// The whole buffer.
    pub fn buffer(&self) -> &'buf [u8] {
        self.buf
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The number of tables visited so far.
    pub fn tables_visited(&self) -> usize {
        self.tables.get()
    }

    /// The apparent size (bytes handed out, counting repeated visits) so far.
    pub fn apparent_size(&self) -> u64 {
        self.apparent.get()
    }

    /// The 4 bytes at offset 4, where `Finish(root, file_identifier)` puts the file
    /// identifier; `None` if the buffer is shorter than 8 bytes.
    pub fn file_identifier(&self) -> Option<[u8; 4]> {
        let b = self.buf.get(4..8)?;
        let mut id = [0u8; 4];
        id.copy_from_slice(b);
        Some(id)
    }

    /// The root table (the `uoffset` at byte 0), without looking at a file identifier.
    pub fn root(&self) -> Result<Table<'_, 'buf>> {
        let pos = self.deref_uoffset(0, "root offset")?;
        self.table_at(pos, 1)
    }

    /// Checks the file identifier with `accept` (e.g. `|id| id.starts_with(b"ET") &&
    /// id[2..].iter().all(u8::is_ascii_alphanumeric)`), then returns the root table and
    /// the identifier found.
    ///
    /// # Errors
    /// [`ErrorKind::BadIdentifier`] (at byte 4) if the buffer has no identifier or
    /// `accept` rejects it, besides the errors of [`Verifier::root`].
    pub fn root_with_identifier(
        &self,
        accept: impl FnOnce(&[u8; 4]) -> bool,
    ) -> Result<(Table<'_, 'buf>, [u8; 4])> {
        let found = self.file_identifier();
        match found {
            Some(id) if accept(&id) => Ok((self.root()?, id)),
            _ => Err(Error::new(ErrorKind::BadIdentifier { found }, 4)),
        }
    }

    // ----------------------------------------------------------------- primitives

    fn check_align(&self, pos: usize, align: usize, what: &'static str) -> Result<()> {
        if self.limits.check_alignment && align > 1 && pos % align != 0 {
            return Err(Error::new(ErrorKind::Misaligned { what, align }, pos));
        }
        Ok(())
    }

    fn range(&self, pos: usize, len: usize, what: &'static str) -> Result<&'buf [u8]> {
        pos.checked_add(len)
            .and_then(|end| self.buf.get(pos..end))
            .ok_or_else(|| oob(what, pos, pos))
    }

    fn read<T: Scalar>(&self, pos: usize, what: &'static str) -> Result<T> {
        Ok(T::read_le(self.range(pos, T::SIZE, what)?))
    }

    fn charge(&self, bytes: usize, at: usize) -> Result<()> {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let total = self.apparent.get().saturating_add(bytes);
        self.apparent.set(total);
        if total > self.max_apparent {
            return Err(Error::new(
                ErrorKind::ApparentSizeLimit {
                    limit: self.max_apparent,
                },
                at,
            ));
        }
        Ok(())
    }

    /// Follows the `uoffset` stored at `pos`.
    fn deref_uoffset(&self, pos: usize, what: &'static str) -> Result<usize> {
        self.check_align(pos, 4, what)?;
        let off: u32 = self.read(pos, what)?;
        if off == 0 {
            return Err(Error::new(ErrorKind::ZeroOffset, pos));
        }
        let off = off as usize;
        match pos.checked_add(off) {
            Some(target) if target < self.buf.len() => Ok(target),
            _ => Err(oob(what, off, pos)),
        }
    }

    /// Verifies a table starting at `pos` (its soffset) at nesting `depth`.
    fn table_at(&self, pos: usize, depth: usize) -> Result<Table<'_, 'buf>> {
        if depth > self.limits.max_depth {
            return Err(Error::new(
                ErrorKind::DepthLimit {
                    limit: self.limits.max_depth,
                },
                pos,
            ));
        }
        let count = self.tables.get().saturating_add(1);
        self.tables.set(count);
        if count > self.limits.max_tables {
            return Err(Error::new(
                ErrorKind::TableLimit {
                    limit: self.limits.max_tables,
                },
                pos,
            ));
        }
        self.check_align(pos, 4, "table")?;
        let soff: i32 = self.read(pos, "table")?;
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(i64::from(soff)))
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v < self.buf.len())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadVtable {
                        reason: "vtable offset points outside the buffer",
                    },
                    pos,
                )
            })?;
        self.check_align(vtable, 2, "vtable")?;
        let vtable_len = usize::from(self.read::<u16>(vtable, "vtable")?);
        let bad = |reason| Error::new(ErrorKind::BadVtable { reason }, vtable);
        if vtable_len < 4 || vtable_len % 2 != 0 {
            return Err(bad("vtable size is odd or smaller than 4"));
        }
        self.range(vtable, vtable_len, "vtable")?;
        let inline_size = usize::from(self.read::<u16>(vtable.saturating_add(2), "vtable")?);
        if inline_size < 4 {
            return Err(bad("table inline size smaller than 4"));
        }
        self.range(pos, inline_size, "table")?;
        self.charge(inline_size, pos)?;
        Ok(Table {
            v: self,
            pos,
            vtable,
            vtable_len,
            inline_size,
            depth,
        })
    }

    /// Verifies the vector at `pos`; returns (data start, element count).
    fn vector_at(&self, pos: usize, elem_size: usize, elem_align: usize) -> Result<(usize, usize)> {
        self.check_align(pos, 4, "vector")?;
        let len = self.read::<u32>(pos, "vector")? as usize;
        let data = pos.saturating_add(4); // pos + 4 <= buf.len() after the read
        let in_bounds = len
            .checked_mul(elem_size)
            .and_then(|bytes| data.checked_add(bytes))
            .is_some_and(|end| end <= self.buf.len());
        if !in_bounds {
            return Err(oob("vector length", len, pos));
        }
        // Elements are aligned to their size; an empty vector has none (flatc does not
        // align an empty vector's elements, and FlatBuffers' C++ verifier does not ask).
        if len > 0 {
            self.check_align(data, elem_align, "vector elements")?;
        }
        self.charge(len.saturating_mul(elem_size).saturating_add(4), pos)?;
        Ok((data, len))
    }

    fn string_at(&self, pos: usize) -> Result<&'buf str> {
        let (data, len) = self.vector_at(pos, 1, 1)?;
        let end = data.saturating_add(len);
        let bytes = self.range(data, len, "string")?;
        if self.buf.get(end) != Some(&0) {
            return Err(Error::new(ErrorKind::MissingNul, end));
        }
        self.charge(1, end)?;
        std::str::from_utf8(bytes).map_err(|e| {
            Error::new(
                ErrorKind::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
                data.saturating_add(e.valid_up_to()),
            )
        })
    }
}

/// A verified table: its vtable and inline size were checked when it was created.
///
/// It borrows the [`Verifier`] for `'v` (the counters of tables visited and bytes handed
/// out) and hands out strings, bytes and vectors that borrow the buffer for `'buf`, so
/// they outlive the verifier.
#[derive(Clone, Copy)]
pub struct Table<'v, 'buf> {
    v: &'v Verifier<'buf>,
    pos: usize,
    vtable: usize,
    vtable_len: usize,
    inline_size: usize,
    depth: usize,
}

impl fmt::Debug for Table<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("pos", &self.pos)
            .field("vtable", &self.vtable)
            .field("fields", &self.num_fields())
            .field("inline_size", &self.inline_size)
            .field("depth", &self.depth)
            .finish()
    }
}

macro_rules! typed_getters {
    ($($t:ty, $name:ident;)*) => {$(
        #[doc = concat!("Reads a `", stringify!($t), "` field, or `default` when absent.")]
        #[inline]
        pub fn $name(&self, field: usize, default: $t) -> Result<$t> {
            self.get(field, default)
        }
    )*};
}

impl<'v, 'buf> Table<'v, 'buf> {
    /// The absolute position of the table (its `soffset`) in the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The nesting depth (the root table is at depth 1).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The table's inline size in bytes, from its vtable.
    pub fn inline_size(&self) -> usize {
        self.inline_size
    }

    /// The number of field entries in the vtable (fields beyond it are absent).
    pub fn num_fields(&self) -> usize {
        (self.vtable_len.saturating_sub(4)) / 2
    }

    /// The verifier this table belongs to.
    pub fn verifier(&self) -> &'v Verifier<'buf> {
        self.v
    }

    /// An error of `kind` located at this table, for the caller's semantic checks.
    #[cold]
    pub fn error(&self, kind: ErrorKind) -> Error {
        Error::new(kind, self.pos)
    }

    /// A [`ErrorKind::MissingRequired`] error located at this table; add the field name
    /// with [`Error::in_field`].
    #[cold]
    pub fn missing(&self) -> Error {
        Error::new(ErrorKind::MissingRequired, self.pos)
    }

    /// The vtable entry of `field`: `None` when absent, else the field's absolute
    /// position, checked to hold `size` bytes within the table, aligned to `align`.
    fn field_pos(&self, field: usize, size: usize, align: usize) -> Result<Option<usize>> {
        let entry = match field.checked_mul(2).and_then(|f| f.checked_add(4)) {
            Some(e) if e < self.vtable_len => e,
            _ => return Ok(None),
        };
        let entry_pos = self.vtable.saturating_add(entry); // inside the verified vtable
        let voff = usize::from(self.v.read::<u16>(entry_pos, "vtable entry")?);
        if voff == 0 {
            return Ok(None);
        }
        if voff < 4 {
            return Err(Error::new(
                ErrorKind::BadVtable {
                    reason: "field overlaps the table's vtable offset",
                },
                entry_pos,
            ));
        }
        if !matches!(voff.checked_add(size), Some(end) if end <= self.inline_size) {
            return Err(Error::new(
                ErrorKind::BadVtable {
                    reason: "field extends past the table's inline size",
                },
                entry_pos,
            ));
        }
        let pos = self.pos.saturating_add(voff); // pos + inline_size <= buf.len()
        self.v.check_align(pos, align, "field")?;
        Ok(Some(pos))
    }

    /// The absolute position of `field` inside the table (`None` when absent), for
    /// pointing at a field that a later check found wrong.
    pub fn field_position(&self, field: usize) -> Result<Option<usize>> {
        self.field_pos(field, 0, 1)
    }

    /// The absolute position of the first element and the length of the vector in
    /// `field` (`None` when absent), elements of `elem_size` bytes, checked like the
    /// typed vector accessors.
    pub fn vector_position(
        &self,
        field: usize,
        elem_size: usize,
    ) -> Result<Option<(usize, usize)>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => self.v.vector_at(pos, elem_size, elem_size).map(Some),
        }
    }

    /// Whether `field` is present (has a non-zero vtable entry).
    pub fn has_field(&self, field: usize) -> Result<bool> {
        Ok(self.field_pos(field, 0, 1)?.is_some())
    }

    /// Reads a scalar field, or `default` when the field is absent.
    pub fn get<T: Scalar>(&self, field: usize, default: T) -> Result<T> {
        match self.field_pos(field, T::SIZE, T::SIZE)? {
            None => Ok(default),
            Some(pos) => self.v.read(pos, "field"),
        }
    }

    typed_getters! {
        bool, get_bool; u8, get_u8; i8, get_i8; u16, get_u16; i16, get_i16;
        u32, get_u32; i32, get_i32; u64, get_u64; i64, get_i64; f32, get_f32; f64, get_f64;
    }

    /// Follows an offset field; `None` when absent.
    fn offset_field(&self, field: usize) -> Result<Option<usize>> {
        match self.field_pos(field, 4, 4)? {
            None => Ok(None),
            Some(pos) => self.v.deref_uoffset(pos, "uoffset").map(Some),
        }
    }

    fn child_depth(&self) -> usize {
        self.depth.saturating_add(1)
    }

    /// A sub-table field; `None` when absent.
    pub fn table(&self, field: usize) -> Result<Option<Table<'v, 'buf>>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => self.v.table_at(pos, self.child_depth()).map(Some),
        }
    }

    /// A string field (length in bounds, NUL-terminated, valid UTF-8); `None` when absent.
    pub fn string(&self, field: usize) -> Result<Option<&'buf str>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => self.v.string_at(pos).map(Some),
        }
    }

    /// A `[ubyte]`/`[byte]` vector field as bytes; `None` when absent.
    pub fn bytes(&self, field: usize) -> Result<Option<&'buf [u8]>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => {
                let (data, len) = self.v.vector_at(pos, 1, 1)?;
                self.v.range(data, len, "vector").map(Some)
            }
        }
    }

    /// A vector of scalars (zero-copy; elements decoded on access); `None` when absent.
    pub fn scalar_vector<T: Scalar>(&self, field: usize) -> Result<Option<ScalarVector<'buf, T>>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => {
                let (data, len) = self.v.vector_at(pos, T::SIZE, T::SIZE)?;
                let bytes = self.v.range(data, len.saturating_mul(T::SIZE), "vector")?;
                Ok(Some(ScalarVector {
                    bytes,
                    _t: PhantomData,
                }))
            }
        }
    }

    /// A vector of tables; each element is verified when accessed. `None` when absent.
    pub fn table_vector(&self, field: usize) -> Result<Option<TableVector<'v, 'buf>>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => {
                let (data, len) = self.v.vector_at(pos, 4, 4)?;
                Ok(Some(TableVector {
                    v: self.v,
                    data,
                    len,
                    depth: self.child_depth(),
                }))
            }
        }
    }

    /// Decodes every element of the vector of tables `field`, in order, with `decode`.
    /// An error is returned with the element's index and `name` added to its path
    /// (`name[i]...`). `None` when the field is absent. The result is allocated for the
    /// vector's length only after the verifier checked that its offsets are in the buffer.
    pub fn decode_table_vector<T>(
        &self,
        field: usize,
        name: &'static str,
        mut decode: impl FnMut(Table<'v, 'buf>) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(vec) = self.table_vector(field).map_err(|e| e.in_field(name))? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(vec.len());
        for i in 0..vec.len() {
            let item = vec
                .get(i)
                .and_then(&mut decode)
                .map_err(|e| e.at_index(i).in_field(name))?;
            out.push(item);
        }
        Ok(Some(out))
    }

    /// A vector of strings; each element is verified when accessed. `None` when absent.
    pub fn string_vector(&self, field: usize) -> Result<Option<StringVector<'v, 'buf>>> {
        match self.offset_field(field)? {
            None => Ok(None),
            Some(pos) => {
                let (data, len) = self.v.vector_at(pos, 4, 4)?;
                Ok(Some(StringVector {
                    v: self.v,
                    data,
                    len,
                }))
            }
        }
    }

    /// A union stored as a `u8` type tag in `type_field` and a table in `value_field`.
    ///
    /// Returns `None` for tag 0 (`NONE`, the value is then ignored). A non-zero tag
    /// without a value is [`ErrorKind::MissingRequired`]. Map the tag to a member with
    /// [`Union::tag`]; report unknown tags with [`Union::unknown_tag`].
    pub fn union(&self, type_field: usize, value_field: usize) -> Result<Option<Union<'v, 'buf>>> {
        let tag_pos = self.field_pos(type_field, 1, 1)?;
        let tag = match tag_pos {
            None => 0,
            Some(pos) => self.v.read::<u8>(pos, "field")?,
        };
        if tag == 0 {
            return Ok(None);
        }
        match self.table(value_field)? {
            None => Err(self.missing()),
            Some(table) => Ok(Some(Union {
                tag,
                tag_pos: tag_pos.unwrap_or(self.pos),
                table,
            })),
        }
    }
}

/// A union value: its non-zero type tag and its table.
#[derive(Debug, Clone, Copy)]
pub struct Union<'v, 'buf> {
    tag: u8,
    tag_pos: usize,
    table: Table<'v, 'buf>,
}

impl<'v, 'buf> Union<'v, 'buf> {
    /// The type tag (never 0).
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// The member table.
    pub fn table(&self) -> Table<'v, 'buf> {
        self.table
    }

    /// A [`ErrorKind::BadUnionType`] error located at the tag byte.
    #[cold]
    pub fn unknown_tag(&self) -> Error {
        Error::new(ErrorKind::BadUnionType { found: self.tag }, self.tag_pos)
    }
}

/// A zero-copy view of a verified vector of scalars.
#[derive(Clone, Copy)]
pub struct ScalarVector<'a, T: Scalar> {
    bytes: &'a [u8],
    _t: PhantomData<T>,
}

impl<T: Scalar> fmt::Debug for ScalarVector<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: Scalar> ScalarVector<'a, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / T::SIZE
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Element `i`, or `None` if out of range.
    pub fn get(&self, i: usize) -> Option<T> {
        let start = i.checked_mul(T::SIZE)?;
        let end = start.checked_add(T::SIZE)?;
        self.bytes.get(start..end).map(T::read_le)
    }

    /// Iterates over the elements, decoding them little-endian.
    pub fn iter(&self) -> ScalarIter<'a, T> {
        ScalarIter {
            chunks: self.bytes.chunks_exact(T::SIZE),
            _t: PhantomData,
        }
    }

    /// Copies the elements into a `Vec` (its size is bounded by the buffer length).
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// The raw little-endian bytes of the elements.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl<'a, T: Scalar> IntoIterator for ScalarVector<'a, T> {
    type Item = T;
    type IntoIter = ScalarIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`ScalarVector`].
#[derive(Debug, Clone)]
pub struct ScalarIter<'a, T: Scalar> {
    chunks: std::slice::ChunksExact<'a, u8>,
    _t: PhantomData<T>,
}

impl<T: Scalar> Iterator for ScalarIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.chunks.next().map(T::read_le)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl<T: Scalar> DoubleEndedIterator for ScalarIter<'_, T> {
    fn next_back(&mut self) -> Option<T> {
        self.chunks.next_back().map(T::read_le)
    }
}

impl<T: Scalar> ExactSizeIterator for ScalarIter<'_, T> {}
impl<T: Scalar> FusedIterator for ScalarIter<'_, T> {}

/// A verified vector of table offsets; each table is verified when accessed (and counts
/// towards [`Limits::max_tables`] each time).
#[derive(Clone, Copy)]
pub struct TableVector<'v, 'buf> {
    v: &'v Verifier<'buf>,
    data: usize,
    len: usize,
    depth: usize,
}

impl fmt::Debug for TableVector<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableVector")
            .field("data", &self.data)
            .field("len", &self.len)
            .finish()
    }
}

fn element_pos(data: usize, len: usize, i: usize) -> Result<usize> {
    if i >= len {
        return Err(Error::new(
            ErrorKind::IndexOutOfRange { index: i, len },
            data,
        ));
    }
    // i < len and data + 4 * len <= buf.len() was verified.
    Ok(data.saturating_add(i.saturating_mul(4)))
}

impl<'v, 'buf> TableVector<'v, 'buf> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Verifies and returns element `i` ([`ErrorKind::IndexOutOfRange`] if `i >= len`).
    /// Callers typically add [`Error::at_index`] to the error.
    pub fn get(&self, i: usize) -> Result<Table<'v, 'buf>> {
        let pos = element_pos(self.data, self.len, i)?;
        let target = self.v.deref_uoffset(pos, "uoffset")?;
        self.v.table_at(target, self.depth)
    }

    /// Iterates over the elements, verifying each (errors are not annotated with the
    /// index; use `enumerate`).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Result<Table<'v, 'buf>>> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }
}

/// A verified vector of string offsets; each string is verified when accessed.
#[derive(Clone, Copy)]
pub struct StringVector<'v, 'buf> {
    v: &'v Verifier<'buf>,
    data: usize,
    len: usize,
}

impl fmt::Debug for StringVector<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringVector")
            .field("data", &self.data)
            .field("len", &self.len)
            .finish()
    }
}

impl<'v, 'buf> StringVector<'v, 'buf> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Verifies and returns element `i` ([`ErrorKind::IndexOutOfRange`] if `i >= len`).
    pub fn get(&self, i: usize) -> Result<&'buf str> {
        let pos = element_pos(self.data, self.len, i)?;
        let target = self.v.deref_uoffset(pos, "uoffset")?;
        self.v.string_at(target)
    }

    /// Iterates over the elements, verifying each.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Result<&'buf str>> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }
}
