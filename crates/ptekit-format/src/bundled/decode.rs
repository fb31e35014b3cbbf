//! Verified, zero-copy decoding of a `BP08` flatbuffer into the [model](super::model).
//!
//! Every read goes through [`ptekit_flatbuffers::Verifier`] (bounds, alignment, vtables,
//! offsets, strings, the caller's [`Limits`]); union tags are checked against the schema.
//! `Tensor.data` and `BundledProgram.program` borrow from the input. Errors carry the
//! absolute byte offset and the field path, e.g.
//! `method_test_suites[0].test_cases[1].inputs[0].val.Tensor.data`.
//!
//! Differences from the reference reader (which goes through `flatc --json`): a union
//! type without its value is an error (flatc would drop it), and an unknown union type is
//! an error (flatc rejects it too).

use std::borrow::Cow;

use ptekit_flatbuffers::{Error as FbError, ErrorKind, Limits, Scalar, Table, Verifier};

use super::model::*;
use super::BUNDLED_FILE_IDENTIFIER;
use crate::program::{DecodeError, ScalarType};

type R<T> = Result<T, FbError>;

/// Decodes and verifies a bundled program. The file identifier must be `BP08` (flatc,
/// which the reference reads `.bpte` files with, refuses other identifiers).
pub fn decode_bundled<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<BundledProgram<'a>, DecodeError> {
    let verifier = Verifier::new(buf, *limits)?;
    let (root, _) = verifier.root_with_identifier(|id| *id == BUNDLED_FILE_IDENTIFIER)?;
    let d = Decoder { buf };
    Ok(d.bundled_program(root)?)
}

fn f(name: &'static str) -> impl FnOnce(FbError) -> FbError {
    move |e| e.in_field(name)
}

struct Decoder<'b> {
    buf: &'b [u8],
}

impl<'b> Decoder<'b> {
    fn bytes(&self, t: &Table<'_>, field: usize, name: &'static str) -> R<Option<Cow<'b, [u8]>>> {
        // Borrow from the caller's buffer (lifetime `'b`), not through the verifier.
        match t.bytes_range(field).map_err(f(name))? {
            None => Ok(None),
            Some(r) => self
                .buf
                .get(r)
                .map(|b| Some(Cow::Borrowed(b)))
                .ok_or_else(|| {
                    FbError::new(
                        ErrorKind::Invalid("verified range outside the input buffer".into()),
                        t.position(),
                    )
                    .in_field(name)
                }),
        }
    }

    fn scalars<T: Scalar>(
        &self,
        t: &Table<'_>,
        field: usize,
        name: &'static str,
    ) -> R<Option<Vec<T>>> {
        Ok(t.scalar_vector::<T>(field)
            .map_err(f(name))?
            .map(|v| v.to_vec()))
    }

    fn tables<'v, T>(
        &self,
        t: &Table<'v>,
        field: usize,
        name: &'static str,
        decode: impl Fn(&Self, Table<'v>) -> R<T>,
    ) -> R<Option<Vec<T>>> {
        t.decode_table_vector(field, name, |elem| decode(self, elem))
    }

    fn bundled_program(&self, t: Table<'_>) -> R<BundledProgram<'b>> {
        Ok(BundledProgram {
            version: t.get_u32(0, 0).map_err(f("version"))?,
            method_test_suites: self.tables(&t, 1, "method_test_suites", Self::suite)?,
            program: self.bytes(&t, 2, "program")?,
        })
    }

    fn suite(&self, t: Table<'_>) -> R<BundledMethodTestSuite<'b>> {
        Ok(BundledMethodTestSuite {
            method_name: t.string(0).map_err(f("method_name"))?.map(str::to_owned),
            test_cases: self.tables(&t, 1, "test_cases", Self::case)?,
        })
    }

    fn case(&self, t: Table<'_>) -> R<BundledMethodTestCase<'b>> {
        Ok(BundledMethodTestCase {
            inputs: self.tables(&t, 0, "inputs", Self::value)?,
            expected_outputs: self.tables(&t, 1, "expected_outputs", Self::value)?,
        })
    }

    fn value(&self, t: Table<'_>) -> R<Value<'b>> {
        let Some(u) = t.union(0, 1).map_err(f("val"))? else {
            return Ok(Value { val: None });
        };
        let member = |e: FbError, name: &'static str| e.in_union_member(name).in_field("val");
        let table = u.table();
        let val = match u.tag() {
            1 => ValueUnion::Tensor(self.tensor(table).map_err(|e| member(e, "Tensor"))?),
            2 => ValueUnion::Int(Int {
                int_val: table
                    .get_i64(0, 0)
                    .map_err(|e| member(f("int_val")(e), "Int"))?,
            }),
            3 => ValueUnion::Bool(Bool {
                bool_val: table
                    .get_bool(0, false)
                    .map_err(|e| member(f("bool_val")(e), "Bool"))?,
            }),
            4 => ValueUnion::Double(Double {
                double_val: table
                    .get_f64(0, 0.0)
                    .map_err(|e| member(f("double_val")(e), "Double"))?,
            }),
            _ => return Err(u.unknown_tag().in_field("val_type")),
        };
        Ok(Value { val: Some(val) })
    }

    fn tensor(&self, t: Table<'_>) -> R<Tensor<'b>> {
        Ok(Tensor {
            scalar_type: ScalarType(t.get_i8(0, 0).map_err(f("scalar_type"))?),
            sizes: self.scalars(&t, 1, "sizes")?,
            data: self.bytes(&t, 2, "data")?,
            dim_order: t.bytes(3).map_err(f("dim_order"))?.map(<[u8]>::to_vec),
        })
    }
}
