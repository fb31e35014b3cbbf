//! Making a bundled program from a `.pte` and test values, like the reference's
//! `BundledProgram(executorch_program, method_test_suites)` +
//! `serialize_from_bundled_program_to_flatbuffer`.

use std::borrow::Cow;

use super::model::*;
use super::verify::shape_misfit;
use super::{pack_bundled, BundledError, BUNDLED_PROGRAM_SCHEMA_VERSION};
use crate::npz::{read_npz_checked, DType, NpyArray, NpyHeader};
use crate::program::{ExecutionPlan, KernelTypes, Program, Tensor as ProgramTensor};
use crate::pte::{PteFile, ReadOptions};

/// One test input: an array (for a tensor input, or a 0-d array standing for a scalar
/// input) or a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum TestValue {
    /// A NumPy array.
    Array(NpyArray),
    /// An `int` input.
    Int(i64),
    /// A `bool` input.
    Bool(bool),
    /// A `float` input.
    Double(f64),
}

/// The values of one test case (the reference's `MethodTestCase`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MethodTestCaseInput {
    /// One value per method input.
    pub inputs: Vec<TestValue>,
    /// Expected output tensors, one per method output.
    pub expected_outputs: Vec<NpyArray>,
}

/// The test cases of one method (the reference's `MethodTestSuite`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MethodTestSuiteInput {
    /// Method name, e.g. `forward`.
    pub method_name: String,
    /// Its test cases.
    pub test_cases: Vec<MethodTestCaseInput>,
}

/// A test case from `.npz` archives (as read by [`crate::npz::read_npz`]): the arrays
/// `in0, in1, ...` of `inputs` and `out0, out1, ...` of `outputs` (both may be the same
/// archive, like the corpus `.io.npz` files). Numbering must be contiguous from 0.
pub fn test_case_from_npz(
    inputs: &[(String, NpyArray)],
    outputs: &[(String, NpyArray)],
) -> Result<MethodTestCaseInput, BundledError> {
    Ok(MethodTestCaseInput {
        inputs: numbered(inputs, "in")?
            .into_iter()
            .map(TestValue::Array)
            .collect(),
        expected_outputs: numbered(outputs, "out")?,
    })
}

/// Which arrays of an `.npz` archive [`read_test_arrays`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestArrays {
    /// `in0, in1, ...`: the method's inputs.
    Inputs,
    /// `out0, out1, ...`: the expected outputs.
    Outputs,
}

/// Reads the arrays of one test case of `method` from an `.npz` archive (for
/// [`test_case_from_npz`]), checking each against the method's inputs or outputs from
/// its `.npy` header, before its data is read: dtype and shape as [`make`] checks them, a
/// 0-d array for a scalar input, no index past the method's inputs or outputs. Arrays of
/// the other kind and other names are not read. Memory is bounded by `left`, what is
/// left of `limit` (see [`read_npz_checked`]). Errors name the test case and the value,
/// e.g. `method_test_suites[forward].test_cases[0].inputs[1]: shape [2, 2] but ...`.
pub fn read_test_arrays(
    program: &Program<'_>,
    method: &str,
    case: usize,
    npz: &[u8],
    which: TestArrays,
    limit: u64,
    left: &mut u64,
) -> Result<Vec<(String, NpyArray)>, BundledError> {
    let plan = find_plan(program, method)?;
    let at = format!("method_test_suites[{method}].test_cases[{case}]");
    let (prefix, values, what) = match which {
        TestArrays::Inputs => ("in", plan.inputs.as_deref(), "inputs"),
        TestArrays::Outputs => ("out", plan.outputs.as_deref(), "outputs"),
    };
    let values = values.unwrap_or(&[]);
    read_npz_checked(npz, limit, left, |name, h: &NpyHeader| {
        let Some(i) = member_index(name, prefix) else {
            return Ok(false);
        };
        let field = match which {
            TestArrays::Inputs => format!("{at}.inputs[{i}]"),
            TestArrays::Outputs => format!("{at}.expected_outputs[{i}]"),
        };
        let Some(&vi) = values.get(i) else {
            return Err(invalid(
                field,
                format!("the method has {} {what}", values.len()),
            ));
        };
        match (which, plan_value(plan, vi)) {
            (_, Some(KernelTypes::Tensor(t))) => check_tensor(t, h.dtype, &h.shape, &field)?,
            (
                TestArrays::Inputs,
                Some(KernelTypes::Int(_) | KernelTypes::Bool(_) | KernelTypes::Double(_)),
            ) => {
                if h.data_len != h.dtype.size() {
                    return Err(invalid(
                        field,
                        format!("a scalar input needs a 0-d array, got shape {:?}", h.shape),
                    ));
                }
            }
            (_, other) => {
                return Err(invalid(
                    field,
                    format!(
                        "an array given but the program's value is {}",
                        other.map_or("None", KernelTypes::kind_name)
                    ),
                ))
            }
        }
        Ok(true)
    })
}

/// The index `N` of an array named `{prefix}N` (decimal digits only).
fn member_index(name: &str, prefix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?;
    if rest.is_empty() || !rest.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn numbered(arrays: &[(String, NpyArray)], prefix: &str) -> Result<Vec<NpyArray>, BundledError> {
    let mut found: Vec<(usize, &NpyArray)> = Vec::new();
    for (name, a) in arrays {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() || !rest.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let index = member_index(name, prefix).ok_or_else(|| BundledError::Invalid {
            field: name.clone(),
            message: "array index out of range".into(),
        })?;
        found.push((index, a));
    }
    found.sort_by_key(|(i, _)| *i);
    for (expect, (i, _)) in found.iter().enumerate() {
        if *i != expect {
            return Err(BundledError::Invalid {
                field: format!("{prefix}{expect}"),
                message: format!("missing (arrays must be named {prefix}0, {prefix}1, ...)"),
            });
        }
    }
    Ok(found.into_iter().map(|(_, a)| a.clone()).collect())
}

/// Builds and serializes a bundled program: `program` (a complete `.pte`) plus the test
/// suites, with the checks of the reference's `_assert_valid_bundle` (method present,
/// one value per input, value kinds and tensor dtypes matching the program, outputs
/// are tensors of the program's output dtypes). Suites are sorted by method name as the
/// reference does. The output is byte-identical to the reference's for the same values.
pub fn make(program: &[u8], suites: &[MethodTestSuiteInput]) -> Result<Vec<u8>, BundledError> {
    let file = PteFile::parse(program, &ReadOptions::default())
        .map_err(|source| BundledError::Program { offset: 0, source })?;
    let mut sorted: Vec<&MethodTestSuiteInput> = suites.iter().collect();
    sorted.sort_by(|a, b| a.method_name.cmp(&b.method_name));
    let mut out_suites = Vec::with_capacity(sorted.len());
    for suite in sorted {
        out_suites.push(make_suite(file.program(), suite)?);
    }
    let bp = BundledProgram {
        version: BUNDLED_PROGRAM_SCHEMA_VERSION,
        method_test_suites: Some(out_suites),
        program: Some(Cow::Borrowed(program)),
    };
    Ok(pack_bundled(&bp)?)
}

fn invalid(field: String, message: impl Into<String>) -> BundledError {
    BundledError::Invalid {
        field,
        message: message.into(),
    }
}

fn plan_value<'p>(plan: &'p ExecutionPlan<'_>, index: i32) -> Option<&'p KernelTypes> {
    let i = usize::try_from(index).ok()?;
    plan.values.as_ref()?.get(i)?.val.as_ref()
}

/// The method `name` of `program`; the error names the methods it has.
pub fn find_plan<'p, 'a>(
    program: &'p Program<'a>,
    name: &str,
) -> Result<&'p ExecutionPlan<'a>, BundledError> {
    let plans = program.execution_plan.as_deref().unwrap_or(&[]);
    plans
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .ok_or_else(|| {
            let names: Vec<&str> = plans.iter().filter_map(|p| p.name.as_deref()).collect();
            invalid(
                format!("method_test_suites[{name}]"),
                format!(
                    "method not found in the program (its methods: {})",
                    names.join(", ")
                ),
            )
        })
}

fn make_suite<'v>(
    program: &Program<'_>,
    suite: &'v MethodTestSuiteInput,
) -> Result<BundledMethodTestSuite<'v>, BundledError> {
    let name = &suite.method_name;
    let plan = find_plan(program, name)?;
    let plan_inputs = plan.inputs.as_deref().unwrap_or(&[]);
    let plan_outputs = plan.outputs.as_deref().unwrap_or(&[]);
    let mut cases = Vec::with_capacity(suite.test_cases.len());
    for (ci, case) in suite.test_cases.iter().enumerate() {
        let at = format!("method_test_suites[{name}].test_cases[{ci}]");
        if case.inputs.len() != plan_inputs.len() {
            return Err(invalid(
                format!("{at}.inputs"),
                format!(
                    "{} values for a method with {} inputs",
                    case.inputs.len(),
                    plan_inputs.len()
                ),
            ));
        }
        let mut inputs = Vec::with_capacity(case.inputs.len());
        for (j, (value, &vi)) in case.inputs.iter().zip(plan_inputs).enumerate() {
            let field = format!("{at}.inputs[{j}]");
            inputs.push(input_value(plan_value(plan, vi), value, &field)?);
        }
        let mut outputs = Vec::with_capacity(case.expected_outputs.len());
        for (j, a) in case.expected_outputs.iter().enumerate() {
            let field = format!("{at}.expected_outputs[{j}]");
            let Some(&vi) = plan_outputs.get(j) else {
                return Err(invalid(
                    field,
                    format!("the method has only {} outputs", plan_outputs.len()),
                ));
            };
            match plan_value(plan, vi) {
                Some(KernelTypes::Tensor(t)) => {
                    check_tensor(t, a.dtype, &a.shape, &field)?;
                    outputs.push(tensor_value(a, &field)?);
                }
                other => {
                    return Err(invalid(
                        field,
                        format!(
                            "only tensor outputs are supported, the program's output is {}",
                            other.map_or("None", KernelTypes::kind_name)
                        ),
                    ))
                }
            }
        }
        cases.push(BundledMethodTestCase {
            inputs: Some(inputs),
            expected_outputs: Some(outputs),
        });
    }
    Ok(BundledMethodTestSuite {
        method_name: Some(name.clone()),
        test_cases: Some(cases),
    })
}

/// Checks an array against the program's tensor `t`: the same dtype, and a shape that
/// fits (see [`shape_misfit`], the rule `verify` applies to a `.bpte`'s test inputs and
/// expected outputs). The runtime refuses other values when the test is loaded (a method
/// input cannot change its rank, nor a static tensor its sizes), and an array larger
/// than the program's tensor is never a valid test.
fn check_tensor(
    t: &ProgramTensor,
    dtype: DType,
    shape: &[usize],
    field: &str,
) -> Result<(), BundledError> {
    if dtype.scalar_type() != t.scalar_type {
        return Err(invalid(
            field.to_owned(),
            format!(
                "dtype {} ({}) but the program expects {}",
                dtype.descr(),
                dtype.scalar_type(),
                t.scalar_type
            ),
        ));
    }
    let shape: Vec<i64> = shape
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
        .collect();
    match shape_misfit(&shape, t) {
        Some(message) => Err(invalid(field.to_owned(), message)),
        None => Ok(()),
    }
}

fn tensor_value<'v>(a: &'v NpyArray, field: &str) -> Result<Value<'v>, BundledError> {
    let sizes = a
        .shape
        .iter()
        .map(|&d| i32::try_from(d))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| invalid(field.to_owned(), "dimension does not fit an int32"))?;
    let rank = u8::try_from(a.shape.len())
        .map_err(|_| invalid(field.to_owned(), "more than 255 dimensions"))?;
    Ok(Value {
        val: Some(ValueUnion::Tensor(Tensor {
            scalar_type: a.dtype.scalar_type(),
            sizes: Some(sizes),
            data: Some(Cow::Borrowed(&a.data)),
            dim_order: Some((0..rank).collect()),
        })),
    })
}

/// The single element of a 0-d (or one-element) array, as little-endian bytes.
fn scalar_bytes<'v>(a: &'v NpyArray, field: &str) -> Result<&'v [u8], BundledError> {
    if a.len() != 1 {
        return Err(invalid(
            field.to_owned(),
            format!("a scalar input needs a 0-d array, got shape {:?}", a.shape),
        ));
    }
    Ok(&a.data)
}

fn input_value<'v>(
    want: Option<&KernelTypes>,
    value: &'v TestValue,
    field: &str,
) -> Result<Value<'v>, BundledError> {
    let mismatch = |got: &str| {
        invalid(
            field.to_owned(),
            format!(
                "{got} given but the program's input is {}",
                want.map_or("None", KernelTypes::kind_name)
            ),
        )
    };
    let val = match (want, value) {
        (Some(KernelTypes::Tensor(t)), TestValue::Array(a)) => {
            check_tensor(t, a.dtype, &a.shape, field)?;
            return tensor_value(a, field);
        }
        (Some(KernelTypes::Int(_)), TestValue::Int(x)) => ValueUnion::Int(Int { int_val: *x }),
        (Some(KernelTypes::Bool(_)), TestValue::Bool(x)) => ValueUnion::Bool(Bool { bool_val: *x }),
        (Some(KernelTypes::Double(_)), TestValue::Double(x)) => {
            ValueUnion::Double(Double { double_val: *x })
        }
        (Some(KernelTypes::Int(_)), TestValue::Array(a)) => {
            let b = scalar_bytes(a, field)?;
            let v = match a.dtype {
                DType::I8 => b.first().map(|&x| i64::from(i8::from_le_bytes([x]))),
                DType::U8 => b.first().map(|&x| i64::from(x)),
                DType::I16 => b.try_into().ok().map(|x| i64::from(i16::from_le_bytes(x))),
                DType::U16 => b.try_into().ok().map(|x| i64::from(u16::from_le_bytes(x))),
                DType::I32 => b.try_into().ok().map(|x| i64::from(i32::from_le_bytes(x))),
                DType::U32 => b.try_into().ok().map(|x| i64::from(u32::from_le_bytes(x))),
                DType::I64 => b.try_into().ok().map(i64::from_le_bytes),
                _ => None,
            };
            ValueUnion::Int(Int {
                int_val: v.ok_or_else(|| mismatch(a.dtype.descr()))?,
            })
        }
        (Some(KernelTypes::Bool(_)), TestValue::Array(a)) if a.dtype == DType::Bool => {
            let b = scalar_bytes(a, field)?;
            ValueUnion::Bool(Bool {
                bool_val: b.first().is_some_and(|&x| x != 0),
            })
        }
        (Some(KernelTypes::Double(_)), TestValue::Array(a)) => {
            let b = scalar_bytes(a, field)?;
            let v = match a.dtype {
                DType::F64 => b.try_into().ok().map(f64::from_le_bytes),
                DType::F32 => b.try_into().ok().map(|x| f64::from(f32::from_le_bytes(x))),
                _ => None,
            };
            ValueUnion::Double(Double {
                double_val: v.ok_or_else(|| mismatch(a.dtype.descr()))?,
            })
        }
        (_, TestValue::Array(a)) => return Err(mismatch(&format!("array {}", a.dtype.descr()))),
        (_, TestValue::Int(_)) => return Err(mismatch("int")),
        (_, TestValue::Bool(_)) => return Err(mismatch("bool")),
        (_, TestValue::Double(_)) => return Err(mismatch("float")),
    };
    Ok(Value { val: Some(val) })
}
