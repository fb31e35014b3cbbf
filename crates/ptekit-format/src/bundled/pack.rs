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
    let hint = bp
        .program
        .as_ref()
        .map_or(0, |p| p.len())
        .saturating_add(1024);
    let mut p = Packer {
        b: Builder::with_capacity(hint),
    };
    let root = p.bundled_program(bp);
    p.b.try_finish(root, Some(&BUNDLED_FILE_IDENTIFIER))?;
    p.b.try_into_finished_data()
}

struct Packer {
    b: Builder,
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
        let program = bp
            .program
            .as_deref()
            .map(|p| self.b.create_aligned_bytes(p, PROGRAM_ALIGNMENT));
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
