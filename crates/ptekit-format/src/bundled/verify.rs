//! What `ptekit verify` checks of a bundled program beyond decoding: the embedded
//! program (as for a `.pte`: its tables and its XNNPACK payloads), and every test case
//! against the method it tests.
//!
//! The reference runtime's bundled-program code (executorch 1.5.1,
//! `devtools/bundled_program`) trusts the test values: it reads the suites, cases, sizes,
//! dim order and data without null or bounds checks, makes tensors of them (a negative
//! size or an unknown dtype aborts the process), copies `numel * itemsize` bytes of test
//! data, and reads one input per method input and one expected output per method output.
//! So a `.bpte` passes only when every suite names a method of the program, every case
//! has exactly the method's inputs (the same kinds, tensors of the same dtype and rank,
//! each dimension equal to the method's, or at most its bound for a dynamic-shape input)
//! and its outputs (tensors of the same dtype), and every test tensor is well formed with
//! enough data.

use super::model::*;
use super::{BundledError, BundledFile};
use crate::error::{ContainerError, LayoutReason};
use crate::program::DecodeError;
use crate::program::{
    check_tensor_layout, ExecutionPlan, KernelTypes, Program, TensorShapeDynamism,
};
use crate::pte::{PteError, ReadOptions};
use crate::xnnpack::{check_payloads, XnnpackErrorKind};

/// Verifies a decoded `.bpte`: the embedded program ([`PteFile::verify`] and
/// [`check_payloads`], as `ptekit verify` does for a `.pte`) and every test case (see
/// the [module](self) documentation). Returns the first problem.
///
/// [`PteFile::verify`]: crate::pte::PteFile::verify
pub fn verify(file: &BundledFile<'_>, options: &ReadOptions) -> Result<(), BundledError> {
    let program = file.program_file(options)?;
    let offset = file.program_offset().unwrap_or(0);
    program
        .verify()
        .map_err(|source| program_error(source, offset))?;
    // The bundled API loads the program without a .ptd: named keys must be in it.
    check_payloads(&program, None, &options.limits).map_err(|source| {
        let source = match source.kind() {
            XnnpackErrorKind::NamedKey if source.path().ends_with("named_key") => {
                source.note(" (a bundled program is loaded without a .ptd)")
            }
            _ => source,
        };
        BundledError::Xnnpack {
            offset,
            // Its offsets are in the program: make them the .bpte's.
            source: Box::new(source.in_file_at(offset)),
        }
    })?;
    check_tests(file, program.program())
}

/// An error of the embedded program, which starts at byte `start` of the `.bpte`: the
/// program's checks count from its first byte; here every file position the error names
/// becomes a `.bpte` offset (the one place that does so for the program's own checks;
/// its XNNPACK payload errors move with [`XnnpackError::in_file_at`]). Sizes and stored
/// values stay as they are.
///
/// [`XnnpackError::in_file_at`]: crate::xnnpack::XnnpackError::in_file_at
pub(super) fn program_error(source: PteError, start: u64) -> BundledError {
    let at = |o: u64| o.saturating_add(start);
    let source = match source {
        PteError::Header {
            offset,
            field,
            reason,
        } => PteError::Header {
            offset: at(offset),
            field,
            reason,
        },
        PteError::Decode {
            start: s,
            end,
            source,
        } => PteError::Decode {
            start: at(s),
            end: at(end),
            source: DecodeError(
                source
                    .0
                    .shifted(usize::try_from(start).unwrap_or(usize::MAX)),
            ),
        },
        PteError::NotReproducible { offset, detail } => PteError::NotReproducible {
            offset: at(offset),
            detail,
        },
        PteError::Container(ContainerError::Layout {
            offset,
            field,
            reason,
        }) => PteError::Container(ContainerError::Layout {
            offset: at(offset),
            field,
            reason: match reason {
                LayoutReason::SizePastEnd {
                    size,
                    start: s,
                    end,
                    file_len,
                } => LayoutReason::SizePastEnd {
                    size,
                    start: at(s),
                    end: at(end),
                    file_len,
                },
                LayoutReason::Overlap {
                    range,
                    other,
                    other_range,
                } => LayoutReason::Overlap {
                    range: (at(range.0), at(range.1)),
                    other,
                    other_range: (at(other_range.0), at(other_range.1)),
                },
                LayoutReason::RangeOutsideFile { from, to } => LayoutReason::RangeOutsideFile {
                    from: at(from),
                    to: at(to),
                },
                other => other,
            },
        }),
        PteError::Invalid { mut first, more } => {
            first.offset = first.offset.map(at);
            PteError::Invalid { first, more }
        }
        other => other,
    };
    BundledError::Program {
        offset: start,
        source,
    }
}

fn invalid(field: String, message: impl Into<String>) -> BundledError {
    BundledError::Invalid {
        field,
        message: message.into(),
    }
}

fn check_tests(file: &BundledFile<'_>, program: &Program<'_>) -> Result<(), BundledError> {
    let Some(suites) = &file.bundled().method_test_suites else {
        return Err(invalid("method_test_suites".into(), "missing"));
    };
    let plans = program.execution_plan.as_deref().unwrap_or_default();
    for (s, suite) in suites.iter().enumerate() {
        let Some(name) = &suite.method_name else {
            return Err(invalid(
                format!("method_test_suites[{s}].method_name"),
                "missing",
            ));
        };
        let at = format!("method_test_suites[{name}]");
        let Some(plan) = plans
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
        else {
            return Err(invalid(at, "no method of this name in the program"));
        };
        let Some(cases) = &suite.test_cases else {
            return Err(invalid(format!("{at}.test_cases"), "missing"));
        };
        for (c, case) in cases.iter().enumerate() {
            let at = format!("{at}.test_cases[{c}]");
            check_values(file, plan, &at, "inputs", case.inputs.as_deref())?;
            check_values(
                file,
                plan,
                &at,
                "expected_outputs",
                case.expected_outputs.as_deref(),
            )?;
        }
    }
    Ok(())
}

/// The program's value at `index` of the method's values.
fn plan_value<'p>(plan: &'p ExecutionPlan<'_>, index: i32) -> Option<&'p KernelTypes> {
    let i = usize::try_from(index).ok()?;
    plan.values.as_ref()?.get(i)?.val.as_ref()
}

fn check_values(
    file: &BundledFile<'_>,
    plan: &ExecutionPlan<'_>,
    at: &str,
    list: &str,
    values: Option<&[Value<'_>]>,
) -> Result<(), BundledError> {
    let inputs = list == "inputs";
    let wanted = if inputs { &plan.inputs } else { &plan.outputs };
    let wanted = wanted.as_deref().unwrap_or_default();
    let Some(values) = values else {
        return Err(invalid(format!("{at}.{list}"), "missing"));
    };
    if values.len() != wanted.len() {
        return Err(invalid(
            format!("{at}.{list}"),
            format!(
                "{} values for a method with {} {}",
                values.len(),
                wanted.len(),
                if inputs { "inputs" } else { "outputs" }
            ),
        ));
    }
    for (j, (value, &vi)) in values.iter().zip(wanted).enumerate() {
        let field = format!("{at}.{list}[{j}]");
        let want = plan_value(plan, vi);
        let ok = match (&value.val, want) {
            (Some(ValueUnion::Tensor(t)), Some(KernelTypes::Tensor(w))) => {
                check_tensor(file, t, &field)?;
                check_against(t, w, &field)?;
                true
            }
            // The runtime compares expected outputs only as tensors.
            (Some(ValueUnion::Int(_)), Some(KernelTypes::Int(_)))
            | (Some(ValueUnion::Bool(_)), Some(KernelTypes::Bool(_)))
            | (Some(ValueUnion::Double(_)), Some(KernelTypes::Double(_))) => inputs,
            _ => false,
        };
        if !ok {
            return Err(invalid(
                field,
                format!(
                    "{} for the method's {} {}",
                    value.val.as_ref().map_or("no value", ValueUnion::kind_name),
                    if inputs { "input" } else { "output" },
                    want.map_or("None", KernelTypes::kind_name)
                ),
            ));
        }
    }
    Ok(())
}

/// A test tensor is well formed: known dtype, sizes and dim order as the runtime checks
/// them, and at least `numel * itemsize` bytes of data.
fn check_tensor(file: &BundledFile<'_>, t: &Tensor<'_>, field: &str) -> Result<(), BundledError> {
    let nbytes = check_tensor_layout(t.scalar_type, t.sizes.as_deref(), t.dim_order.as_deref())
        .map_err(|e| invalid(format!("{field}.Tensor.{}", e.field), e.message))?
        .ok_or_else(|| {
            invalid(
                format!("{field}.Tensor.scalar_type"),
                format!("{} has no element size for test data", t.scalar_type),
            )
        })?;
    let Some(data) = &t.data else {
        return Err(invalid(format!("{field}.Tensor.data"), "missing"));
    };
    let have = u64::try_from(data.len()).unwrap_or(u64::MAX);
    if have < nbytes {
        let at = (data.as_ptr() as usize)
            .checked_sub(file.bytes().as_ptr() as usize)
            .map_or(String::new(), |o| format!(" (file offset 0x{o:x})"));
        return Err(invalid(
            format!("{field}.Tensor.data"),
            format!(
                "{have} bytes{at}, but sizes {:?} need {nbytes}",
                t.sizes.as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// A test tensor fits the method's tensor: the same dtype, the same rank and each
/// dimension equal to the method's (or at most it, for dynamic shapes). For inputs that
/// is what the runtime's `set_input` accepts; an expected output of another shape can
/// never match what the method returns (the runtime does not even get to compare when a
/// delegate resizes a static output to the shape it computed: the execution fails).
fn check_against(
    t: &Tensor<'_>,
    want: &crate::program::Tensor,
    field: &str,
) -> Result<(), BundledError> {
    if t.scalar_type != want.scalar_type {
        return Err(invalid(
            format!("{field}.Tensor.scalar_type"),
            format!(
                "{} but the method's tensor is {}",
                t.scalar_type, want.scalar_type
            ),
        ));
    }
    let got: Vec<i64> = t.sizes.iter().flatten().map(|&s| i64::from(s)).collect();
    match shape_misfit(&got, want) {
        Some(message) => Err(invalid(format!("{field}.Tensor.sizes"), message)),
        None => Ok(()),
    }
}

/// Why a test tensor of `shape` does not fit the method's tensor `want`, or `None`: it
/// needs the same rank, and each size equal to the method's for a static shape, at most
/// it for a dynamic one (the runtime treats unbounded shapes as bounded by the sizes in
/// the program when it resizes an input). Used by `verify` for every test input and by
/// `bundle make` for the arrays it is given.
pub(super) fn shape_misfit(shape: &[i64], want: &crate::program::Tensor) -> Option<String> {
    let bound = want.sizes.as_deref().unwrap_or_default();
    let dynamic = want.shape_dynamism != TensorShapeDynamism::STATIC;
    let fits = shape.len() == bound.len()
        && shape.iter().zip(bound).all(|(&g, &b)| {
            let b = i64::from(b);
            if dynamic {
                g <= b
            } else {
                g == b
            }
        });
    (!fits).then(|| {
        let rule = if dynamic {
            "sizes at most"
        } else {
            "static shape"
        };
        format!("shape {shape:?} but the program expects {rule} {bound:?}")
    })
}
