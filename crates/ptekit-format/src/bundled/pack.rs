//! Packing a [`BundledProgram`] into the bytes of the reference's
//! `serialize_from_bundled_program_to_flatbuffer` (executorch 1.5.1, Python
//! `flatbuffers` 25.12.19).
//!
//! The reference packs through the flatc-generated object API, with two packers replaced
//! (`_pack_tensor`, `_pack_bundled_program`) so that `Tensor.data` is one byte vector
//! aligned to 16, `Tensor.dim_order` one aligned to 1 and `BundledProgram.program` one
//! aligned to 32. Every table first creates its children in field order (strings, the
//! elements of table vectors first to last then the offset vector, scalar vectors with
//! the elements last to first), then adds its fields in declaration order; scalars equal
//! to their default (all 0) are not written, absent children are not written, a union
//! writes its type then its value. The functions below follow that order table by table.

use ptekit_flatbuffers::{BuildError, Builder, UOffset};

use super::model::*;
use super::BUNDLED_FILE_IDENTIFIER;

/// Alignment of `Tensor.data` (`force_align: 16` in the schema).
pub const TENSOR_DATA_ALIGNMENT: usize = 16;
/// Alignment of `BundledProgram.program` (`force_align: 32` in the schema).
pub const PROGRAM_ALIGNMENT: usize = 32;

/// Packs `bp` into the reference's bytes (identifier `BP08`).
///
/// # Errors
/// [`BuildError::BufferTooLarge`] when the result would exceed the 2 GiB FlatBuffers
/// limit (the reference raises `BuilderSizeError`).
pub fn pack_bundled(bp: &BundledProgram<'_>) -> Result<Vec<u8>, BuildError> {
    let mut p = Packer {
        b: Builder::with_capacity(size_hint(bp, 0)),
        hole: None,
    };
    let root = p.bundled_program(bp);
    p.b.try_finish(root, Some(&BUNDLED_FILE_IDENTIFIER))?;
    p.b.try_into_finished_data()
}

/// A bundled program packed without its program's bytes: the file is
/// [`PackedBundled::head`], then the `.pte` file (`program_len` bytes), then
/// [`PackedBundled::tail`]. Lets a caller stream a large program from where it lives
/// (e.g. a planned `.pte` whose weights are borrowed) instead of copying it into the
/// flatbuffer.
#[derive(Debug)]
pub struct PackedBundled {
    buf: Vec<u8>,
    start: usize,
    hole_start: usize,
    hole_end: usize,
}

impl PackedBundled {
    /// The bytes before the program's bytes.
    pub fn head(&self) -> &[u8] {
        self.buf.get(self.start..self.hole_start).unwrap_or(&[])
    }

    /// The bytes after the program's bytes.
    pub fn tail(&self) -> &[u8] {
        self.buf.get(self.hole_end..).unwrap_or(&[])
    }

    /// The program's length (the hole between head and tail).
    pub fn program_len(&self) -> usize {
        self.hole_end - self.hole_start
    }

    /// The whole file's length.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the file is empty (never: a finished buffer has a root offset).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backing buffer and the ranges of head and tail in it (for a caller that
    /// takes ownership, e.g. a streaming plan).
    pub fn into_parts(self) -> (Vec<u8>, std::ops::Range<usize>, std::ops::Range<usize>) {
        let tail = self.hole_end..self.buf.len();
        (self.buf, self.start..self.hole_start, tail)
    }
}

/// Packs `bp` like [`pack_bundled`] with a program of `program_len` bytes that are left
/// out (`bp.program` is ignored). [`PackedBundled::head`] + the program +
/// [`PackedBundled::tail`] are exactly the bytes [`pack_bundled`] makes with that
/// program. The builder is sized for the whole file up front, so the program's bytes
/// are never touched (nor held in memory).
///
/// # Errors
/// As [`pack_bundled`].
pub fn pack_bundled_around_program(
    bp: &BundledProgram<'_>,
    program_len: usize,
) -> Result<PackedBundled, BuildError> {
    let mut p = Packer {
        b: Builder::with_capacity(size_hint(bp, program_len)),
        hole: Some((program_len, 0)),
    };
    let root = p.bundled_program(bp);
    p.b.try_finish(root, Some(&BUNDLED_FILE_IDENTIFIER))?;
    let distance = p.hole.map_or(0, |(_, d)| d);
    let (buf, start) = p.b.try_into_buffer()?;
    let hole_start = buf.len().checked_sub(distance).filter(|h| *h >= start);
    let hole_end = hole_start
        .and_then(|h| h.checked_add(program_len))
        .filter(|e| *e <= buf.len());
    match (hole_start, hole_end) {
        (Some(hole_start), Some(hole_end)) => Ok(PackedBundled {
            buf,
            start,
            hole_start,
            hole_end,
        }),
        _ => Err(BuildError::Internal(
            "bundled program: hole outside the buffer",
        )),
    }
}

/// An upper estimate of the packed size (plus `program_len`), so that the builder does
/// not grow (each growth copies the whole buffer). The builder writes back to front, so
/// the unused front of an over-estimate is never touched.
fn size_hint(bp: &BundledProgram<'_>, program_len: usize) -> usize {
    let mut n = 4096usize
        .saturating_add(program_len)
        .saturating_add(bp.program.as_ref().map_or(0, |p| p.len()));
    for suite in bp.method_test_suites.iter().flatten() {
        n = n.saturating_add(
            64 + suite
                .method_name
                .as_ref()
                .map_or(0, std::string::String::len),
        );
        for case in suite.test_cases.iter().flatten() {
            n = n.saturating_add(64);
            let values = case
                .inputs
                .iter()
                .flatten()
                .chain(case.expected_outputs.iter().flatten());
            for v in values {
                n = n.saturating_add(96);
                if let Some(ValueUnion::Tensor(t)) = &v.val {
                    n = n
                        .saturating_add(
                            t.data.as_ref().map_or(0, |d| d.len()) + TENSOR_DATA_ALIGNMENT,
                        )
                        .saturating_add(t.dim_order.as_ref().map_or(0, std::vec::Vec::len) + 8)
                        .saturating_add(t.sizes.as_ref().map_or(0, |s| s.len() * 4) + 8);
                }
            }
        }
    }
    n
}

struct Packer {
    b: Builder,
    /// `Some((program_len, distance))`: leave the program out (see
    /// [`pack_bundled_around_program`]); `distance` is filled in when packed.
    hole: Option<(usize, usize)>,
}

impl Packer {
    fn add_opt(&mut self, slot: usize, off: Option<UOffset>) {
        if let Some(off) = off {
            self.b.add_offset(slot, off);
        }
    }

    fn table_vector<T>(
        &mut self,
        items: Option<&[T]>,
        pack: impl Fn(&mut Self, &T) -> UOffset,
    ) -> Option<UOffset> {
        let items = items?;
        let offsets: Vec<UOffset> = items.iter().map(|x| pack(self, x)).collect();
        Some(self.b.create_offset_vector(&offsets))
    }

    /// `_pack_bundled_program`.
    fn bundled_program(&mut self, bp: &BundledProgram<'_>) -> UOffset {
        let suites = self.table_vector(bp.method_test_suites.as_deref(), Self::suite);
        let program = match self.hole {
            Some((len, _)) => {
                let (off, distance) = self.b.create_aligned_hole(len, PROGRAM_ALIGNMENT);
                self.hole = Some((len, distance));
                Some(off)
            }
            None => bp
                .program
                .as_deref()
                .map(|p| self.b.create_aligned_bytes(p, PROGRAM_ALIGNMENT)),
        };
        self.b.start_object(3);
        self.b.add_u32(0, bp.version, 0);
        self.add_opt(1, suites);
        self.add_opt(2, program);
        self.b.end_object()
    }

    /// `BundledMethodTestSuiteT.Pack`.
    fn suite(&mut self, s: &BundledMethodTestSuite<'_>) -> UOffset {
        let name = s.method_name.as_deref().map(|n| self.b.create_string(n));
        let cases = self.table_vector(s.test_cases.as_deref(), Self::case);
        self.b.start_object(2);
        self.add_opt(0, name);
        self.add_opt(1, cases);
        self.b.end_object()
    }

    /// `BundledMethodTestCaseT.Pack`.
    fn case(&mut self, c: &BundledMethodTestCase<'_>) -> UOffset {
        let inputs = self.table_vector(c.inputs.as_deref(), Self::value);
        let outputs = self.table_vector(c.expected_outputs.as_deref(), Self::value);
        self.b.start_object(2);
        self.add_opt(0, inputs);
        self.add_opt(1, outputs);
        self.b.end_object()
    }

    /// `ValueT.Pack`.
    fn value(&mut self, v: &Value<'_>) -> UOffset {
        let val = v.val.as_ref().map(|u| match u {
            ValueUnion::Tensor(t) => self.tensor(t),
            ValueUnion::Int(x) => {
                self.b.start_object(1);
                self.b.add_i64(0, x.int_val, 0);
                self.b.end_object()
            }
            ValueUnion::Bool(x) => {
                self.b.start_object(1);
                self.b.add_bool(0, x.bool_val, false);
                self.b.end_object()
            }
            ValueUnion::Double(x) => {
                self.b.start_object(1);
                self.b.add_f64(0, x.double_val, 0.0);
                self.b.end_object()
            }
        });
        self.b.start_object(2);
        self.b
            .add_u8(0, v.val.as_ref().map_or(0, ValueUnion::type_tag), 0);
        self.add_opt(1, val);
        self.b.end_object()
    }

    /// `_pack_tensor`.
    fn tensor(&mut self, t: &Tensor<'_>) -> UOffset {
        let sizes = t.sizes.as_deref().map(|s| self.b.create_scalar_vector(s));
        let data = t
            .data
            .as_deref()
            .map(|d| self.b.create_aligned_bytes(d, TENSOR_DATA_ALIGNMENT));
        let dim_order = t
            .dim_order
            .as_deref()
            .map(|d| self.b.create_aligned_bytes(d, 1));
        self.b.start_object(4);
        self.b.add_i8(0, t.scalar_type.0, 0);
        self.add_opt(1, sizes);
        self.add_opt(2, data);
        self.add_opt(3, dim_order);
        self.b.end_object()
    }
}
