//! Differential tests: the Rust builder against the real Python `flatbuffers` 25.12.19
//! builder (and ExecuTorch's aligned byte vectors), on random build programs.

mod common;

use std::cell::RefCell;

use common::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

fn cases(default: u32) -> u32 {
    std::env::var("PTEKIT_FB_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn compare(driver: &mut PyDriver, ops: &[Value], capacity: usize) -> Result<(), String> {
    let py = driver.run(ops);
    let rust = hex(&run_rust(ops, capacity));
    if py == rust {
        Ok(())
    } else {
        Err(format!(
            "output differs\n  ops:    {}\n  python: {py}\n  rust:   {rust}",
            serde_json::to_string(ops).unwrap()
        ))
    }
}

#[test]
fn random_programs_match_python() {
    let Some(python) = reference_python() else {
        return;
    };
    let driver = RefCell::new(PyDriver::spawn(&python));
    let mut runner = TestRunner::new(Config {
        cases: cases(600),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&program_strategy(true), |p| {
        // Alternate between the bulk and the per-element vector paths.
        let manual = p.root.order_seed % 2 == 0;
        let ops = program_ops(&p, manual);
        compare(&mut driver.borrow_mut(), &ops, p.capacity).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Hand-picked programs around the Python builder's corner cases.
#[test]
fn fixed_programs_match_python() {
    let Some(python) = reference_python() else {
        return;
    };
    let mut driver = PyDriver::spawn(&python);
    let mut programs: Vec<Value> = vec![
        // Identical empty tables share one vtable; a table with more (unused) slots too.
        json!([
            ["so", 0],
            ["eo"],
            ["so", 3],
            ["eo"],
            ["so", 1],
            ["eo"],
            ["ovec", [0, 1, 2]],
            ["so", 1],
            ["addoff", 0, 3],
            ["eo"],
            ["finish", 4, "45543132"]
        ]),
        // Same field offsets, different object sizes (the 25.12.19 dedupe key includes
        // the object size): a u8 then a u64 forces padding in the second table.
        json!([
            ["so", 2],
            ["add", "u8", 0, 1, 0],
            ["eo"],
            ["so", 2],
            ["add", "u64", 1, 5, 0],
            ["add", "u8", 0, 1, 0],
            ["eo"],
            ["so", 2],
            ["add", "u8", 0, 1, 0],
            ["add", "u64", 1, 5, 0],
            ["eo"],
            ["so", 3],
            ["addoff", 0, 0],
            ["addoff", 1, 1],
            ["addoff", 2, 2],
            ["eo"],
            ["finish", 3, null]
        ]),
        // -0.0 equals the default 0.0 (not written); NaN is written even if default NaN.
        json!([
            ["so", 4],
            ["add", "f64", 0, (-0.0f64).to_bits(), 0],
            ["add", "f32", 1, f32::NAN.to_bits(), f32::NAN.to_bits()],
            ["add", "f64", 2, 0, (-0.0f64).to_bits()],
            ["add", "bool", 3, 1, 1],
            ["eo"],
            ["finish", 0, null]
        ]),
        // f32 fields given Python floats: compared as f64, then rounded.
        json!([
            ["so", 6],
            ["addf32d", 0, 1e-50f64.to_bits(), 0],
            ["addf32d", 1, (-1e-50f64).to_bits(), 0],
            ["addf32d", 2, 0.1f64.to_bits(), 0],
            ["addf32d", 3, (-0.0f64).to_bits(), 0],
            ["addf32d", 4, f64::from(f32::MAX).to_bits(), 0],
            [
                "addf32d",
                5,
                1.0000000000000002f64.to_bits(),
                1.0f64.to_bits()
            ],
            ["eo"],
            ["finish", 0, null]
        ]),
        // Empty string, empty vectors of every type, empty aligned bytes.
        json!([
            ["str", ""],
            ["svec", "bool", []],
            ["svec", "u64", []],
            ["svec", "f32", []],
            ["abytes", "", 256],
            ["ovec", []],
            ["so", 6],
            ["addoff", 0, 0],
            ["addoff", 1, 1],
            ["addoff", 2, 2],
            ["addoff", 3, 3],
            ["addoff", 4, 4],
            ["addoff", 5, 5],
            ["eo"],
            ["finish", 6, "00000000"]
        ]),
        // Large alignments and growth past the initial 1024 bytes.
        json!([
            ["abytes", "ab".repeat(5000), 256],
            ["abytes", "cd".repeat(3), 128],
            ["svec", "i64", [1, -1, 9223372036854775807i64]],
            ["so", 3],
            ["addoff", 0, 0],
            ["addoff", 1, 1],
            ["addoff", 2, 2],
            ["eo"],
            ["finish", 3, "41424344"]
        ]),
        // Union: tag + value; tag 0 (default) is not written.
        json!([
            ["so", 1],
            ["add", "i32", 0, 7, 0],
            ["eo"],
            ["so", 2],
            ["add", "u8", 0, 3, 0],
            ["addoff", 1, 0],
            ["eo"],
            ["so", 2],
            ["add", "u8", 0, 0, 0],
            ["addoff", 1, -1],
            ["eo"],
            ["ovec", [1, 2, 1]],
            ["so", 1],
            ["addoff", 0, 3],
            ["eo"],
            ["finish", 4, null]
        ]),
        // Non-ASCII strings and a string vector.
        json!([
            ["str", "héllo ✓ 𝄞"],
            ["str", "\u{0}inner nul"],
            ["ovec", [0, 1, 0]],
            ["so", 1],
            ["addoff", 0, 2],
            ["eo"],
            ["finish", 3, null]
        ]),
    ];
    // Every alignment with every small length, after odd-sized prefixes.
    for p in 0..=8 {
        for len in [0usize, 1, 3, 4, 5, 17] {
            programs.push(json!([
                ["str", "x".repeat(len)],
                ["abytes", "11".repeat(len), 1 << p],
                ["svec", "u8", [1, 2, 3]],
                ["abytes", "22".repeat(len + 1), 1 << p],
                ["so", 3],
                ["addoff", 0, 0],
                ["addoff", 1, 1],
                ["addoff", 2, 3],
                ["eo"],
                ["finish", 4, null]
            ]));
        }
    }
    for program in &programs {
        let ops = program.as_array().unwrap();
        for capacity in [0, 7, 1024] {
            if let Err(e) = compare(&mut driver, ops, capacity) {
                panic!("{e}");
            }
        }
    }
}

/// Rust-only: `create_scalar_vector` (bulk) equals the per-element prepend path, and the
/// output does not depend on the initial capacity.
#[test]
fn bulk_vectors_and_capacity_do_not_change_output() {
    let mut runner = TestRunner::new(Config {
        cases: cases(300),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&program_strategy(true), |p| {
        let bulk = run_rust(&program_ops(&p, false), p.capacity);
        let manual = run_rust(&program_ops(&p, true), 1024);
        let tiny = run_rust(&program_ops(&p, false), 0);
        proptest::prop_assert_eq!(&bulk, &manual);
        proptest::prop_assert_eq!(&bulk, &tiny);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
