//! Owned/borrowing model of `bundled_program_schema.fbs` (namespace
//! `bundled_program_flatbuffer`, identifier `BP08`).
//!
//! Field names follow the schema. As in the program model, an absent vector, string or
//! sub-table is `None` and an empty one is `Some(empty)`: the reference's object API packs
//! the two differently. The two byte fields that can be large — `Tensor.data` and
//! `BundledProgram.program` — are [`Cow`]s that borrow from the decoded buffer.

use std::borrow::Cow;

use crate::program::ScalarType;

/// The bundled schema's `Int`, `Bool` and `Double` tables have the program schema's
/// fields and ids; one type serves both.
pub use crate::program::{Bool, Double, Int};

/// `table BundledProgram`: the root.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BundledProgram<'a> {
    /// Schema version (the reference writes
    /// [`BUNDLED_PROGRAM_SCHEMA_VERSION`](super::BUNDLED_PROGRAM_SCHEMA_VERSION)).
    pub version: u32,
    /// One suite per tested method (the reference sorts them by method name).
    pub method_test_suites: Option<Vec<BundledMethodTestSuite<'a>>>,
    /// The complete `.pte` file, stored as a `[ubyte]` aligned to 32.
    pub program: Option<Cow<'a, [u8]>>,
}

/// `table BundledMethodTestSuite`: the test cases of one method.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BundledMethodTestSuite<'a> {
    /// Name of the method under test (e.g. `forward`).
    pub method_name: Option<String>,
    /// The test cases.
    pub test_cases: Option<Vec<BundledMethodTestCase<'a>>>,
}

/// `table BundledMethodTestCase`: inputs and the outputs they must produce.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BundledMethodTestCase<'a> {
    /// Inputs, one per method input.
    pub inputs: Option<Vec<Value<'a>>>,
    /// Expected outputs, one per method output.
    pub expected_outputs: Option<Vec<Value<'a>>>,
}

/// `table Value`: one input or output value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Value<'a> {
    /// The value (`None` is the union's `NONE`).
    pub val: Option<ValueUnion<'a>>,
}

/// `union ValueUnion { Tensor, Int, Bool, Double }`.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueUnion<'a> {
    /// Tag 1.
    Tensor(Tensor<'a>),
    /// Tag 2.
    Int(Int),
    /// Tag 3.
    Bool(Bool),
    /// Tag 4.
    Double(Double),
}

impl ValueUnion<'_> {
    /// The union type tag stored in `val_type`.
    pub fn type_tag(&self) -> u8 {
        match self {
            ValueUnion::Tensor(_) => 1,
            ValueUnion::Int(_) => 2,
            ValueUnion::Bool(_) => 3,
            ValueUnion::Double(_) => 4,
        }
    }

    /// The schema name of the member (`Tensor`, `Int`, `Bool`, `Double`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            ValueUnion::Tensor(_) => "Tensor",
            ValueUnion::Int(_) => "Int",
            ValueUnion::Bool(_) => "Bool",
            ValueUnion::Double(_) => "Double",
        }
    }
}

/// Member names of `ValueUnion`, by tag - 1.
pub const VALUE_UNION_MEMBERS: [&str; 4] = ["Tensor", "Int", "Bool", "Double"];

/// `table Tensor`: a test tensor with its contents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor<'a> {
    /// Element type (`executorch_flatbuffer.ScalarType`).
    pub scalar_type: ScalarType,
    /// Size of each dimension.
    pub sizes: Option<Vec<i32>>,
    /// The contents, stored as a `[ubyte]` aligned to 16.
    pub data: Option<Cow<'a, [u8]>>,
    /// Dimension order (outermost first).
    pub dim_order: Option<Vec<u8>>,
}

impl<'a> BundledProgram<'a> {
    /// Copies every borrowed byte field, detaching the model from the input buffer.
    pub fn into_owned(self) -> BundledProgram<'static> {
        BundledProgram {
            version: self.version,
            method_test_suites: self.method_test_suites.map(|v| {
                v.into_iter()
                    .map(BundledMethodTestSuite::into_owned)
                    .collect()
            }),
            program: self.program.map(|p| Cow::Owned(p.into_owned())),
        }
    }
}

impl BundledMethodTestSuite<'_> {
    /// Copies every borrowed byte field.
    pub fn into_owned(self) -> BundledMethodTestSuite<'static> {
        BundledMethodTestSuite {
            method_name: self.method_name,
            test_cases: self.test_cases.map(|v| {
                v.into_iter()
                    .map(BundledMethodTestCase::into_owned)
                    .collect()
            }),
        }
    }
}

impl BundledMethodTestCase<'_> {
    /// Copies every borrowed byte field.
    pub fn into_owned(self) -> BundledMethodTestCase<'static> {
        let own = |v: Option<Vec<Value<'_>>>| {
            v.map(|v| v.into_iter().map(Value::into_owned).collect::<Vec<_>>())
        };
        BundledMethodTestCase {
            inputs: own(self.inputs),
            expected_outputs: own(self.expected_outputs),
        }
    }
}

impl Value<'_> {
    /// Copies every borrowed byte field.
    pub fn into_owned(self) -> Value<'static> {
        Value {
            val: self.val.map(|v| match v {
                ValueUnion::Tensor(t) => ValueUnion::Tensor(Tensor {
                    scalar_type: t.scalar_type,
                    sizes: t.sizes,
                    data: t.data.map(|d| Cow::Owned(d.into_owned())),
                    dim_order: t.dim_order,
                }),
                ValueUnion::Int(x) => ValueUnion::Int(x),
                ValueUnion::Bool(x) => ValueUnion::Bool(x),
                ValueUnion::Double(x) => ValueUnion::Double(x),
            }),
        }
    }
}
