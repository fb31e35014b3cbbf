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

use ptekit_flatbuffers::{Error as FbError, Limits, Table, Verifier};

use super::model::*;
use super::BUNDLED_FILE_IDENTIFIER;
use crate::fields::{byte_vec, bytes, get, named, scalars, string, tables, R};
use crate::program::{DecodeError, ScalarType};

/// Decodes and verifies a bundled program. The file identifier must be `BP08` (flatc,
/// which the reference reads `.bpte` files with, refuses other identifiers).
pub fn decode_bundled<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<BundledProgram<'a>, DecodeError> {
    let verifier = Verifier::new(buf, *limits)?;
    let (root, _) = verifier.root_with_identifier(|id| *id == BUNDLED_FILE_IDENTIFIER)?;
    Ok(bundled_program(root)?)
}

fn bundled_program<'b>(t: Table<'_, 'b>) -> R<BundledProgram<'b>> {
    Ok(BundledProgram {
        version: get(&t, 0, 0u32, "version")?,
        method_test_suites: tables(&t, 1, "method_test_suites", suite)?,
        program: bytes(&t, 2, "program")?,
    })
}

fn suite<'b>(t: Table<'_, 'b>) -> R<BundledMethodTestSuite<'b>> {
    Ok(BundledMethodTestSuite {
        method_name: string(&t, 0, "method_name")?,
        test_cases: tables(&t, 1, "test_cases", case)?,
    })
}

fn case<'b>(t: Table<'_, 'b>) -> R<BundledMethodTestCase<'b>> {
    Ok(BundledMethodTestCase {
        inputs: tables(&t, 0, "inputs", value)?,
        expected_outputs: tables(&t, 1, "expected_outputs", value)?,
    })
}

fn value<'b>(t: Table<'_, 'b>) -> R<Value<'b>> {
    let Some(u) = t.union(0, 1).map_err(named("val"))? else {
        return Ok(Value { val: None });
    };
    let member = |e: FbError, name: &'static str| e.in_union_member(name).in_field("val");
    let table = u.table();
    let val = match u.tag() {
        1 => ValueUnion::Tensor(tensor(table).map_err(|e| member(e, "Tensor"))?),
        2 => ValueUnion::Int(Int {
            int_val: get(&table, 0, 0i64, "int_val").map_err(|e| member(e, "Int"))?,
        }),
        3 => ValueUnion::Bool(Bool {
            bool_val: get(&table, 0, false, "bool_val").map_err(|e| member(e, "Bool"))?,
        }),
        4 => ValueUnion::Double(Double {
            double_val: get(&table, 0, 0.0f64, "double_val").map_err(|e| member(e, "Double"))?,
        }),
        _ => return Err(u.unknown_tag().in_field("val_type")),
    };
    Ok(Value { val: Some(val) })
}

fn tensor<'b>(t: Table<'_, 'b>) -> R<Tensor<'b>> {
    Ok(Tensor {
        scalar_type: ScalarType(get(&t, 0, 0i8, "scalar_type")?),
        sizes: scalars(&t, 1, "sizes")?,
        data: bytes(&t, 2, "data")?,
        dim_order: byte_vec(&t, 3, "dim_order")?,
    })
}
