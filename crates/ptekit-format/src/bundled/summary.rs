//! The `ptekit inspect` view of a bundled program: its test suites (the lead renders the
//! embedded program's own summary from [`BundledFile::program_file`]).

use std::fmt::Write as _;

use serde::Serialize;

use super::model::*;
use super::{BundledFile, BUNDLED_FILE_IDENTIFIER};
use crate::units::{breakdown_line, bytes, printable, thousands};

/// Summary of a `.bpte` (serializable for `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundledSummary {
    /// Size of the `.bpte` in bytes.
    pub file_size: u64,
    /// The file identifier (`BP08`).
    pub file_identifier: String,
    /// `BundledProgram.version`.
    pub version: u32,
    /// Size of the embedded `.pte` (`None` when absent).
    pub program_size: Option<u64>,
    /// Offset of the embedded `.pte` in the file.
    pub program_offset: Option<u64>,
    /// One entry per test suite, in file order.
    pub test_suites: Vec<TestSuiteSummary>,
    /// Where the bytes of the file go; the three parts add up to `file_size`.
    pub size_breakdown: SizeBreakdown,
}

/// Bytes of a `.bpte` by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeBreakdown {
    /// The embedded program (`.pte`).
    pub program: u64,
    /// Tensor data of the test cases' inputs and expected outputs.
    pub test_data: u64,
    /// The bundled program's own tables, scalars and padding.
    pub other: u64,
}

/// One method's test suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestSuiteSummary {
    /// Method name (`None` when absent).
    pub method_name: Option<String>,
    /// Number of test cases.
    pub num_cases: usize,
    /// The cases.
    pub cases: Vec<TestCaseSummary>,
}

/// One test case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestCaseSummary {
    /// Inputs.
    pub inputs: Vec<ValueSummary>,
    /// Expected outputs.
    pub expected_outputs: Vec<ValueSummary>,
}

/// One value: its kind and, for a tensor, dtype, shape and data size; for a scalar, the
/// value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueSummary {
    /// `Tensor`, `Int`, `Bool`, `Double` or `None`.
    pub kind: &'static str,
    /// Tensor element type name (e.g. `FLOAT`, or `ScalarType(99)` when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Tensor sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<i32>>,
    /// Tensor data size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `Int` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int_value: Option<i64>,
    /// `Bool` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bool_value: Option<bool>,
    /// `Double` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub double_value: Option<f64>,
}

fn value_summary(v: &Value<'_>) -> ValueSummary {
    let mut s = ValueSummary {
        kind: v.val.as_ref().map_or("None", ValueUnion::kind_name),
        dtype: None,
        shape: None,
        bytes: None,
        int_value: None,
        bool_value: None,
        double_value: None,
    };
    match &v.val {
        Some(ValueUnion::Tensor(t)) => {
            s.dtype = Some(t.scalar_type.to_string());
            s.shape = Some(t.sizes.clone().unwrap_or_default());
            s.bytes = Some(t.data.as_ref().map_or(0, |d| d.len() as u64));
        }
        Some(ValueUnion::Int(x)) => s.int_value = Some(x.int_val),
        Some(ValueUnion::Bool(x)) => s.bool_value = Some(x.bool_val),
        Some(ValueUnion::Double(x)) => s.double_value = Some(x.double_val),
        None => {}
    }
    s
}

/// Summarizes a parsed `.bpte`.
pub fn summary(file: &BundledFile<'_>) -> BundledSummary {
    let bp = file.bundled();
    let values = |v: &Option<Vec<Value<'_>>>| {
        v.as_deref()
            .unwrap_or(&[])
            .iter()
            .map(value_summary)
            .collect::<Vec<_>>()
    };
    let test_suites: Vec<TestSuiteSummary> = bp
        .method_test_suites
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|s| {
            let cases: Vec<TestCaseSummary> = s
                .test_cases
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|c| TestCaseSummary {
                    inputs: values(&c.inputs),
                    expected_outputs: values(&c.expected_outputs),
                })
                .collect();
            TestSuiteSummary {
                method_name: s.method_name.clone(),
                num_cases: cases.len(),
                cases,
            }
        })
        .collect();
    let file_size = file.bytes().len() as u64;
    let program_size = bp.program.as_ref().map(|p| p.len() as u64);
    let test_data = test_suites
        .iter()
        .flat_map(|s| &s.cases)
        .flat_map(|c| c.inputs.iter().chain(&c.expected_outputs))
        .filter_map(|v| v.bytes)
        .fold(0u64, u64::saturating_add);
    let program = program_size.unwrap_or(0).min(file_size);
    let test_data = test_data.min(file_size - program);
    BundledSummary {
        file_size,
        file_identifier: String::from_utf8_lossy(&BUNDLED_FILE_IDENTIFIER).into_owned(),
        version: bp.version,
        program_size,
        program_offset: file.program_offset(),
        test_suites,
        size_breakdown: SizeBreakdown {
            program,
            test_data,
            other: file_size - program - test_data,
        },
    }
}

fn render_value(v: &ValueSummary) -> String {
    match v.kind {
        "Tensor" => format!(
            "Tensor {} {:?} ({})",
            v.dtype.as_deref().unwrap_or("?"),
            v.shape.as_deref().unwrap_or(&[]),
            bytes(v.bytes.unwrap_or(0))
        ),
        "Int" => format!("Int {}", v.int_value.unwrap_or(0)),
        "Bool" => format!("Bool {}", v.bool_value.unwrap_or(false)),
        "Double" => format!("Double {}", v.double_value.unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// Renders the summary as text (one line per test case).
pub fn render_summary(s: &BundledSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bundled program ({}), schema version {}, {}",
        s.file_identifier,
        s.version,
        bytes(s.file_size)
    );
    match (s.program_size, s.program_offset) {
        (Some(size), Some(off)) => {
            let _ = writeln!(
                out,
                "embedded program: {} at offset {}",
                bytes(size),
                thousands(off)
            );
        }
        (Some(size), None) => {
            let _ = writeln!(out, "embedded program: {}", bytes(size));
        }
        _ => {
            let _ = writeln!(out, "embedded program: absent");
        }
    }
    let b = &s.size_breakdown;
    let parts = [
        ("program", b.program),
        ("test data", b.test_data),
        ("tables and padding", b.other),
    ];
    let _ = writeln!(out, "{}", breakdown_line(&parts, s.file_size));
    let _ = writeln!(out, "test suites: {}", s.test_suites.len());
    for suite in &s.test_suites {
        let _ = writeln!(
            out,
            "  {}: {} case{}",
            suite
                .method_name
                .as_deref()
                .map_or("<unnamed>".into(), printable),
            suite.num_cases,
            if suite.num_cases == 1 { "" } else { "s" }
        );
        for (i, c) in suite.cases.iter().enumerate() {
            let ins: Vec<String> = c.inputs.iter().map(render_value).collect();
            let outs: Vec<String> = c.expected_outputs.iter().map(render_value).collect();
            let _ = writeln!(out, "    case {i}:");
            let _ = writeln!(out, "      inputs:   {}", ins.join(", "));
            let _ = writeln!(out, "      expected: {}", outs.join(", "));
        }
    }
    out
}
