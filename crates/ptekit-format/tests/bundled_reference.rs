//! Bundled programs against the reference (executorch 1.5.1), through
//! `tests/bundled_reference.py` (one Python process per test):
//!
//! - fresh exports (float, int64, bool, uint8, int32, float64 test values; a model with
//!   two methods; several cases): `bundled::make` from the `.pte` and the `.npz` test
//!   values gives exactly the reference's `.bpte`, and our decoding equals the
//!   reference's; the external-constants `.ptd` written alongside rewrites exactly and
//!   reads like the reference's `FlatTensorSerializer.deserialize`;
//! - random bundled programs in schema form (Int, Bool, Double values with edge values,
//!   empty tensors, odd program sizes): `pack_bundled` equals
//!   `_bundled_program_schema_to_flatbuffer`, and the reference reads our bytes as we do.

#[path = "pte_support.rs"]
mod support;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{self, *};
use ptekit_format::flat_tensor::{self, FlatTensorFile};
use ptekit_format::npz::read_npz;
use ptekit_format::program::ScalarType;
use serde_json::{json, Value as Json};
use support::{hex, XorShiftStar as Rng};

fn run_helper(python: &Path, mode: &str, spec: &Json, out: &Path) {
    let spec_path = out.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).expect("json")).expect("write spec");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bundled_reference.py");
    let res = Command::new(python)
        .arg(&script)
        .arg(mode)
        .arg(&spec_path)
        .arg(out)
        .output()
        .expect("run reference helper");
    assert!(
        res.status.success(),
        "reference helper failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

fn read_json(p: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(p).expect("read json")).expect("parse json")
}

/// Our reading in the shape of the helper's `bp_view`.
///
/// The reference reads `.bpte` files through `flatc --json`, which prints doubles in
/// fixed notation with 12 decimals: it loses digits (`1/3` reads back as
/// `0.333333333333`, `1e-310` as `0.0`). Our reader is exact; to compare, doubles are
/// rounded the same way here.
fn our_view(bp: &BundledProgram<'_>) -> Json {
    let flatc_double = |x: f64| format!("{x:.12}").parse::<f64>().unwrap_or(x);
    let value = |v: &bundled::Value<'_>| match &v.val {
        Some(ValueUnion::Tensor(t)) => json!({
            "kind": "Tensor",
            "scalar_type": t.scalar_type.0,
            "sizes": t.sizes.clone().unwrap_or_default(),
            "data": hex(t.data.as_deref().unwrap_or(&[])),
            "dim_order": t.dim_order.clone().unwrap_or_default(),
        }),
        Some(ValueUnion::Int(x)) => json!({"kind": "Int", "value": x.int_val}),
        Some(ValueUnion::Bool(x)) => json!({"kind": "Bool", "value": x.bool_val}),
        Some(ValueUnion::Double(x)) => {
            json!({"kind": "Double", "value": flatc_double(x.double_val)})
        }
        None => json!({"kind": "NoneType"}),
    };
    json!({
        "version": bp.version,
        "program_len": bp.program.as_ref().map_or(0, |p| p.len()),
        "suites": bp.method_test_suites.as_deref().unwrap_or(&[]).iter().map(|s| json!({
            "method_name": s.method_name,
            "cases": s.test_cases.as_deref().unwrap_or(&[]).iter().map(|c| json!({
                "inputs": c.inputs.as_deref().unwrap_or(&[]).iter().map(value).collect::<Vec<_>>(),
                "expected_outputs": c.expected_outputs.as_deref().unwrap_or(&[]).iter().map(value).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn fresh_exports_make_and_decode_like_the_reference() {
    let Some(python) =
        support::reference_python("fresh_exports_make_and_decode_like_the_reference")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    run_helper(
        &python,
        "export",
        &json!({"seed": 7, "cases": 3}),
        dir.path(),
    );
    for name in ["mlp2", "intbool", "bytes"] {
        let pte = std::fs::read(dir.path().join(format!("{name}.pte"))).expect("pte");
        let reference = std::fs::read(dir.path().join(format!("{name}.bpte"))).expect("bpte");
        // Gather NAME.METHOD.CASE.{in,out}.npz.
        let mut cases: BTreeMap<(String, usize), MethodTestCaseInput> = BTreeMap::new();
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let fname = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf8");
            let Some(rest) = fname.strip_prefix(&format!("{name}.")) else {
                continue;
            };
            let Some(rest) = rest.strip_suffix(".in.npz") else {
                continue;
            };
            let (method, case) = rest.rsplit_once('.').expect("METHOD.CASE");
            let ins = read_npz(&std::fs::read(dir.path().join(&fname)).expect("in")).expect("npz");
            let outs = read_npz(
                &std::fs::read(dir.path().join(format!("{name}.{method}.{case}.out.npz")))
                    .expect("out"),
            )
            .expect("npz");
            let case_input = test_case_from_npz(&ins, &outs).expect("case");
            cases.insert(
                (method.to_string(), case.parse().expect("case index")),
                case_input,
            );
        }
        let mut suites: Vec<MethodTestSuiteInput> = Vec::new();
        for ((method, _), case) in cases {
            match suites.iter_mut().find(|s| s.method_name == method) {
                Some(s) => s.test_cases.push(case),
                None => suites.push(MethodTestSuiteInput {
                    method_name: method,
                    test_cases: vec![case],
                }),
            }
        }
        suites.reverse(); // make() sorts by method name, like the reference
        let made = bundled::make(&pte, &suites).expect("make");
        assert!(
            made == reference,
            "{name}: make differs from the reference .bpte"
        );
        let bp = decode_bundled(&reference, &Limits::default()).expect("decode");
        assert_eq!(
            our_view(&bp),
            read_json(&dir.path().join(format!("{name}.view.json"))),
            "{name}"
        );
    }
    // The kinds covered: float, int64, bool, uint8, int32, float64.
    let seen: Vec<ScalarType> = ["intbool", "bytes"]
        .iter()
        .flat_map(|n| {
            let b = std::fs::read(dir.path().join(format!("{n}.bpte"))).expect("bpte");
            let bp = decode_bundled(&b, &Limits::default())
                .expect("decode")
                .into_owned();
            bp.method_test_suites
                .unwrap_or_default()
                .into_iter()
                .flat_map(|s| s.test_cases.unwrap_or_default())
                .flat_map(|c| c.inputs.unwrap_or_default())
                .filter_map(|v| match v.val {
                    Some(ValueUnion::Tensor(t)) => Some(t.scalar_type),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for t in [
        ScalarType::LONG,
        ScalarType::BOOL,
        ScalarType::FLOAT,
        ScalarType::BYTE,
        ScalarType::INT,
        ScalarType::DOUBLE,
    ] {
        assert!(seen.contains(&t), "{t} not covered");
    }

    // The external-constants .ptd of the same run.
    let ptds: Vec<String> =
        serde_json::from_value(read_json(&dir.path().join("external.ptds.json"))).expect("list");
    assert!(!ptds.is_empty());
    for p in ptds {
        let bytes = std::fs::read(&p).expect("ptd");
        let file = FlatTensorFile::parse(&bytes, &Default::default()).expect("parse ptd");
        assert!(
            flat_tensor::rewrite_file(&file).expect("rewrite") == bytes,
            "{p}"
        );
        assert_eq!(
            support::ptd_view(&file),
            read_json(Path::new(&format!("{p}.view.json"))),
            "{p}"
        );
    }
}

// ------------------------------------------------------------------ random schema form

fn random_value(r: &mut Rng) -> (bundled::Value<'static>, Json) {
    match r.below(4) {
        0 => {
            let rank = r.below(4) as usize;
            let sizes: Vec<i32> = (0..rank).map(|_| r.below(5) as i32).collect();
            let st = [0i8, 1, 3, 4, 5, 6, 7, 11][r.below(8) as usize];
            let n = r.below(70) as usize;
            let data = r.bytes(n);
            let dim_order: Vec<u8> = (0..rank as u8).collect();
            let j = json!({"kind": "Tensor", "scalar_type": st, "sizes": sizes, "data": hex(&data), "dim_order": dim_order});
            let v = ValueUnion::Tensor(Tensor {
                scalar_type: ScalarType(st),
                sizes: Some(sizes),
                data: Some(Cow::Owned(data)),
                dim_order: Some(dim_order),
            });
            (bundled::Value { val: Some(v) }, j)
        }
        1 => {
            let x = [0i64, 1, -1, i64::MIN, i64::MAX, r.next() as i64][r.below(6) as usize];
            (
                bundled::Value {
                    val: Some(ValueUnion::Int(Int { int_val: x })),
                },
                json!({"kind": "Int", "value": x}),
            )
        }
        2 => {
            let x = r.below(2) == 1;
            (
                bundled::Value {
                    val: Some(ValueUnion::Bool(Bool { bool_val: x })),
                },
                json!({"kind": "Bool", "value": x}),
            )
        }
        _ => {
            let x = [
                0.0f64,
                -0.0,
                1.5,
                -2.25e300,
                f64::MIN_POSITIVE,
                1e-310,
                1.0 / 3.0,
                0.1,
            ][r.below(8) as usize];
            (
                bundled::Value {
                    val: Some(ValueUnion::Double(Double { double_val: x })),
                },
                json!({"kind": "Double", "value": x}),
            )
        }
    }
}

fn random_bundled(r: &mut Rng) -> (BundledProgram<'static>, Json) {
    let mut suites = Vec::new();
    let mut jsuites = Vec::new();
    for s in 0..r.below(3) {
        let mut cases = Vec::new();
        let mut jcases = Vec::new();
        for _ in 0..r.below(3) {
            let (ins, jins): (Vec<_>, Vec<_>) = (0..r.below(4)).map(|_| random_value(r)).unzip();
            let (outs, jouts): (Vec<_>, Vec<_>) = (0..r.below(3)).map(|_| random_value(r)).unzip();
            cases.push(BundledMethodTestCase {
                inputs: Some(ins),
                expected_outputs: Some(outs),
            });
            jcases.push(json!({"inputs": jins, "expected_outputs": jouts}));
        }
        let name = ["forward", "m", "", "méthode"][s as usize % 4].to_string();
        jsuites.push(json!({"method_name": name, "cases": jcases}));
        suites.push(BundledMethodTestSuite {
            method_name: Some(name),
            test_cases: Some(cases),
        });
    }
    let program_len = r.below(200) as usize;
    let program = r.bytes(program_len);
    let version = [0u32, 2, u32::MAX][r.below(3) as usize];
    let j = json!({"version": version, "suites": jsuites, "program": hex(&program)});
    let bp = BundledProgram {
        version,
        method_test_suites: Some(suites),
        program: Some(Cow::Owned(program)),
    };
    (bp, j)
}

#[test]
fn random_bundled_programs_pack_and_read_like_the_reference() {
    let Some(python) =
        support::reference_python("random_bundled_programs_pack_and_read_like_the_reference")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Rng(0xB0B0_BEEF_1234_5678);
    let models: Vec<(BundledProgram<'static>, Json)> =
        (0..60).map(|_| random_bundled(&mut r)).collect();
    let mut decode = Vec::new();
    for (i, (bp, _)) in models.iter().enumerate() {
        let p = dir.path().join(format!("ours{i}.bpte"));
        std::fs::write(&p, pack_bundled(bp).expect("pack")).expect("write");
        decode.push(p.display().to_string());
    }
    let spec = json!({"cases": models.iter().map(|(_, j)| j.clone()).collect::<Vec<_>>(), "decode": decode});
    run_helper(&python, "bundled", &spec, dir.path());
    for (i, (bp, _)) in models.iter().enumerate() {
        let reference = std::fs::read(dir.path().join(format!("case{i}.bpte"))).expect("ref");
        let ours = pack_bundled(bp).expect("pack");
        assert!(
            ours == reference,
            "case {i}: pack_bundled differs from the reference"
        );
        let decoded = decode_bundled(&ours, &Limits::default()).expect("decode");
        let view = read_json(&dir.path().join(format!("decode{i}.view.json")));
        assert_eq!(
            our_view(&decoded),
            view,
            "case {i}: reference reads our bytes differently"
        );
    }
}
