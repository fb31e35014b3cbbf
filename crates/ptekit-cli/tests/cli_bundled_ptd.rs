//! `ptekit inspect/verify/rewrite/diff` on bundled programs (.bpte) and tensor-data files
//! (.ptd) of the reference corpus, and `ptekit bundle extract-program / make`.

mod common;

use std::path::{Path, PathBuf};

use common::{corpus, run};
use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{decode_bundled, Tensor, ValueUnion};
use ptekit_format::npz::{write_npz, DType, NpyArray};
use serde_json::Value;

fn files(ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no .{ext} in the corpus");
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn rewrite_is_byte_identical_for_bundled_and_tensor_data() {
    let dir = tempfile::tempdir().unwrap();
    for path in files("bpte").into_iter().chain(files("ptd")) {
        let dest = dir.path().join(path.file_name().unwrap());
        let out = run(&["rewrite", s(&path), s(&dest)]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(&dest).unwrap(),
            "{}: rewrite not byte-identical",
            path.display()
        );
        let out = run(&["verify", s(&path)]);
        assert!(out.status.success(), "{}", path.display());
    }
}

#[test]
fn inspect_bundled_shows_program_and_suites() {
    for path in files("bpte") {
        let out = run(&["inspect", "--json", s(&path)]);
        assert!(out.status.success(), "{}", path.display());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kind"], "bundled_program");
        // The embedded program is the corpus .pte of the same name; its summary agrees.
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(corpus().join(format!("{stem}.summary.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(v["program"]["bytes"], summary["bytes"], "{stem}");
        assert_eq!(v["program"]["segments"], summary["segments"], "{stem}");
        let names: Vec<&Value> = v["program"]["execution_plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["name"])
            .collect();
        let want: Vec<&Value> = summary["execution_plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["name"])
            .collect();
        assert_eq!(names, want);
        let suites = v["test_suites"].as_array().expect("test_suites");
        assert!(!suites.is_empty());
        for suite in suites {
            assert!(suite["num_cases"].as_u64().unwrap() > 0);
            let case = &suite["cases"][0];
            assert_eq!(case["inputs"][0]["kind"], "Tensor");
            assert!(case["inputs"][0]["dtype"].is_string());
            assert!(case["expected_outputs"][0]["shape"].is_array());
        }
        let text = run(&["inspect", s(&path)]);
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(text.contains("test suites"), "{text}");
        assert!(text.contains("method forward"), "{text}");
    }
}

#[test]
fn inspect_tensor_data_lists_named_tensors() {
    for path in files("ptd") {
        let out = run(&["inspect", "--json", s(&path)]);
        assert!(out.status.success(), "{}", path.display());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kind"], "tensor_data");
        let tensors = v["named_tensors"].as_array().expect("named_tensors");
        assert!(!tensors.is_empty());
        let total: u64 = tensors.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
        let segs: u64 = v["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["size"].as_u64().unwrap())
            .sum();
        assert_eq!(total, segs);
    }
}

#[test]
fn ptd_relayout_changes_alignment_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for path in files("ptd") {
        let dest = dir.path().join("relaid.ptd");
        let out = run(&["rewrite", s(&path), s(&dest), "--segment-alignment", "4096"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["inspect", "--json", s(&dest)]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        for seg in v["segments"].as_array().unwrap() {
            assert_eq!(seg["file_offset"].as_u64().unwrap() % 4096, 0, "{seg}");
        }
        let bad = run(&["rewrite", s(&path), s(&dest), "--upgrade"]);
        assert_eq!(bad.status.code(), Some(1));
    }
}

#[test]
fn extract_program_gives_the_corpus_program() {
    let dir = tempfile::tempdir().unwrap();
    for path in files("bpte") {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let dest = dir.path().join(format!("{stem}.pte"));
        let out = run(&["bundle", "extract-program", s(&path), s(&dest)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&dest).unwrap()
                == std::fs::read(corpus().join(format!("{stem}.pte"))).unwrap(),
            "{stem}"
        );
    }
    let not_bundled = run(&[
        "bundle",
        "extract-program",
        s(&corpus().join("mlp.pte")),
        s(&dir.path().join("x.pte")),
    ]);
    assert_eq!(not_bundled.status.code(), Some(1));
}

/// `xnnpack dump` of a .bpte dumps its program's payloads; a .ptd has none, and
/// `dump` says so instead of pointing at bundled programs.
#[test]
fn xnnpack_dump_of_bundled_and_tensor_data() {
    for path in files("bpte") {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let pte = corpus().join(format!("{stem}.pte"));
        let bundled = run(&["xnnpack", "dump", s(&path)]);
        let program = run(&["xnnpack", "dump", s(&pte)]);
        assert_eq!(bundled.status.code(), program.status.code(), "{stem}");
        assert_eq!(bundled.stdout, program.stdout, "{stem}");
    }
    let ptd = &files("ptd")[0];
    for cmd in [&["xnnpack", "dump"][..], &["dump"]] {
        let mut args = cmd.to_vec();
        args.push(s(ptd));
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{cmd:?}");
        assert!(
            err.contains("a tensor-data file (.ptd) has no program"),
            "{cmd:?}: {err}"
        );
    }
}

fn array(t: &Tensor<'_>) -> NpyArray {
    let shape = t
        .sizes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|&d| usize::try_from(d).unwrap())
        .collect();
    let dtype = DType::from_scalar_type(t.scalar_type).expect("dtype");
    NpyArray::new(dtype, shape, t.data.as_deref().unwrap_or(&[]).to_vec()).unwrap()
}

fn tensor(v: &ptekit_format::bundled::Value<'_>) -> NpyArray {
    match &v.val {
        Some(ValueUnion::Tensor(t)) => array(t),
        other => panic!("corpus test values are tensors, got {other:?}"),
    }
}

/// Takes every corpus .bpte apart into its program and .npz test cases, and puts it back
/// together with `ptekit bundle make`: the result must be the reference's file exactly.
#[test]
fn bundle_make_reproduces_corpus_bundles() {
    let dir = tempfile::tempdir().unwrap();
    for path in files("bpte") {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let bp = decode_bundled(&bytes, &Limits::default()).unwrap();
        let program = dir.path().join(format!("{stem}.pte"));
        std::fs::write(&program, bp.program.as_deref().unwrap()).unwrap();
        let mut args: Vec<String> = vec!["bundle".into(), "make".into(), s(&program).into()];
        for suite in bp.method_test_suites.as_deref().unwrap_or(&[]) {
            let name = suite.method_name.clone().unwrap();
            args.push("--method".into());
            args.push(name.clone());
            for (i, case) in suite
                .test_cases
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                let named = |prefix: &str, vals: &[ptekit_format::bundled::Value<'_>]| {
                    vals.iter()
                        .enumerate()
                        .map(|(k, v)| (format!("{prefix}{k}"), tensor(v)))
                        .collect::<Vec<_>>()
                };
                let ins = dir.path().join(format!("{stem}.{name}.{i}.in.npz"));
                let outs = dir.path().join(format!("{stem}.{name}.{i}.out.npz"));
                std::fs::write(
                    &ins,
                    write_npz(&named("in", case.inputs.as_deref().unwrap())).unwrap(),
                )
                .unwrap();
                std::fs::write(
                    &outs,
                    write_npz(&named("out", case.expected_outputs.as_deref().unwrap())).unwrap(),
                )
                .unwrap();
                args.push(s(&ins).into());
                args.push(s(&outs).into());
            }
        }
        let dest = dir.path().join(format!("{stem}.bpte"));
        args.push("-o".into());
        args.push(s(&dest).into());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&argv);
        assert!(
            out.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&dest).unwrap() == bytes,
            "{stem}: bundle make differs from the reference"
        );
    }
}

#[test]
fn bundle_make_usage_errors() {
    let pte = corpus().join("mlp.pte");
    let npz = corpus().join("mlp.io.npz");
    let make = |rest: &[&str]| {
        let mut args = vec!["bundle", "make", s(&pte)];
        args.extend_from_slice(rest);
        run(&args)
    };
    let (m, n) = ("--method", s(&npz));
    // An odd number of archives, no -o, no --method: usage errors (exit 2) with the
    // usage of `bundle make`.
    let out = make(&[m, "forward", n, "-o", "x.bpte"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Usage: ptekit bundle make PROGRAM.pte"),
        "{err}"
    );
    assert_eq!(make(&[m, "forward", n, n]).status.code(), Some(2));
    assert_eq!(make(&[n, n, "-o", "x.bpte"]).status.code(), Some(2));
    // A method the program does not have: invalid input (exit 1), nothing written.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.bpte");
    let out = make(&[m, "nope", n, n, "-o", s(&dest)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The error names the program, which lacks the method, not an archive.
    let want = format!("{}: method_test_suites[nope]: method not found", s(&pte));
    assert!(err.contains(&want), "{err}");
    assert!(!dest.exists());
    // The corpus .io.npz holds in0 and out0 together: one archive serves as both.
    let out = make(&[m, "forward", n, n, "-o", s(&dest)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run(&["verify", s(&dest)]).status.success());
}

fn diff_json(a: &Path, b: &Path) -> (i32, Value) {
    let out = run(&["diff", "--json", s(a), s(b)]);
    let code = out.status.code().unwrap_or(-1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diff --json {}: {e}: {}",
            b.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

/// `ptekit diff` of two .ptd files: equal copies exit 0; one float changed in a
/// reference-written file is found at its index with its two values; a relayout shows in
/// the header and segment fields; a .ptd against a program is a usage error naming both.
#[test]
fn diff_of_tensor_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let ptd = corpus().join("external._default_external_constant.ptd");
    let bytes = std::fs::read(&ptd).unwrap();
    let copy = dir.path().join("copy.ptd");
    std::fs::write(&copy, &bytes).unwrap();
    let (code, v) = diff_json(&ptd, &copy);
    assert_eq!(
        (code, &v["equivalent"], &v["kind"]),
        (0, &Value::Bool(true), &"tensor_data".into())
    );

    // Element 5 of the first named tensor, read from the file's own header and layout.
    let inspected = json(&["inspect", "--json", s(&ptd)]);
    let first = &inspected["named_tensors"][0];
    let seg = &inspected["segments"][first["segment_index"].as_u64().unwrap() as usize];
    assert_eq!(first["dtype"], "FLOAT");
    let at = seg["file_offset"].as_u64().unwrap() as usize + 5 * 4;
    let old = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let new = old + 2.5;
    let mut edited = bytes.clone();
    edited[at..at + 4].copy_from_slice(&new.to_le_bytes());
    let changed = dir.path().join("changed.ptd");
    std::fs::write(&changed, &edited).unwrap();
    let (code, v) = diff_json(&ptd, &changed);
    assert_eq!(code, 1);
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 1);
    let t = &tensors[0];
    assert_eq!(t["key"], first["key"]);
    assert_eq!(
        (t["differing"].as_u64(), t["bytes_differ"].as_bool()),
        (Some(1), Some(true))
    );
    let sample = &t["samples"][0];
    assert_eq!(sample["flat_index"], 5);
    assert_eq!(sample["a"].as_f64(), Some(f64::from(old)));
    assert_eq!(sample["b"].as_f64(), Some(f64::from(new)));
    assert_eq!(
        t["max_abs_diff"].as_f64(),
        Some(f64::from(new) - f64::from(old))
    );
    assert!(v["layout"]["fields"].as_array().unwrap().is_empty());

    // Another segment alignment: header and segment offsets differ, no data does.
    let relaid = dir.path().join("relaid.ptd");
    let out = run(&[
        "rewrite",
        "--segment-alignment",
        "4096",
        s(&ptd),
        s(&relaid),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, v) = diff_json(&ptd, &relaid);
    assert_eq!(code, 1);
    let fields: Vec<&str> = v["layout"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert!(fields.contains(&"header.segment_base_offset"), "{fields:?}");
    assert!(fields.contains(&"segment_alignment"), "{fields:?}");
    for t in v["tensors"].as_array().unwrap() {
        assert_eq!(t["bytes_differ"], false);
    }

    let pte = corpus().join("external.pte");
    let out = run(&["diff", s(&pte), s(&ptd)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(s(&pte)) && err.contains(s(&ptd)), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn json(args: &[&str]) -> Value {
    serde_json::from_slice(&common::stdout_of(args)).expect("JSON")
}
