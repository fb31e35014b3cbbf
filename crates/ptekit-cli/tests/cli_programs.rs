//! `ptekit inspect/verify/rewrite` on every real program: the reference corpus and the
//! project's own fixtures (both written by the reference serializer).

mod common;

use common::{program_files, run};
use serde_json::Value;

fn summary_of(path: &std::path::Path) -> Value {
    let s = path.with_extension("summary.json");
    let text = std::fs::read_to_string(&s).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
    serde_json::from_str(&text).expect("summary json")
}

#[test]
fn inspect_json_agrees_with_reference_summaries() {
    for path in program_files() {
        let out = run(&["inspect", "--json", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let ours: Value = serde_json::from_slice(&out.stdout).expect("inspect --json output");
        let theirs = summary_of(&path);
        for key in [
            "version",
            "bytes",
            "extended_header",
            "segments",
            "named_data",
            "mutable_data_segments",
            "constant_segment",
            "constant_buffer_len",
            "backend_delegate_data_len",
        ] {
            let mut want = theirs[key].clone();
            let mut got = ours[key].clone();
            if key == "extended_header" {
                // ptekit adds the header length; the reference summary does not have it.
                if let Some(obj) = got.as_object_mut() {
                    obj.remove("length");
                }
                if want.is_null() {
                    want = Value::Null;
                }
            }
            assert_eq!(got, want, "{}: key {key}", path.display());
        }
        let plans_ours = ours["execution_plans"].as_array().expect("plans");
        let plans_theirs = theirs["execution_plans"].as_array().expect("plans");
        assert_eq!(plans_ours.len(), plans_theirs.len(), "{}", path.display());
        for (a, b) in plans_ours.iter().zip(plans_theirs) {
            for key in [
                "name",
                "values",
                "value_kinds",
                "instructions",
                "operators",
                "inputs",
                "outputs",
                "non_const_buffer_sizes",
                "chains",
            ] {
                assert_eq!(
                    a[key],
                    b[key],
                    "{}: execution_plans[].{key}",
                    path.display()
                );
            }
            let ids = |v: &Value| -> Vec<Value> {
                v["delegates"]
                    .as_array()
                    .expect("delegates")
                    .iter()
                    .map(|d| d["id"].clone())
                    .collect()
            };
            assert_eq!(ids(a), ids(b), "{}: delegates[].id", path.display());
        }
    }
}

#[test]
fn inspect_text_names_methods_and_segments() {
    for path in program_files() {
        let out = run(&["inspect", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", path.display());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let theirs = summary_of(&path);
        for plan in theirs["execution_plans"].as_array().expect("plans") {
            let name = plan["name"].as_str().expect("name");
            assert!(
                text.contains(&format!("method {name}\n")),
                "{}: {name}",
                path.display()
            );
        }
        assert!(text.contains("size breakdown"), "{}", path.display());
    }
}

#[test]
fn verify_accepts_every_real_program() {
    for path in program_files() {
        let out = run(&["verify", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn rewrite_without_options_is_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    for path in program_files() {
        let dest = dir.path().join(path.file_name().unwrap());
        let out = run(&["rewrite", path.to_str().unwrap(), dest.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let a = std::fs::read(&path).unwrap();
        let b = std::fs::read(&dest).unwrap();
        assert!(a == b, "{}: rewrite is not byte-identical", path.display());
        // Nothing but the destination is left in the folder (no temporary files).
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".pte"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[test]
fn rewrite_in_place_keeps_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = common::corpus().join("mlp_xnnpack.pte");
    let dest = dir.path().join("in_place.pte");
    std::fs::copy(&src, &dest).unwrap();
    let out = run(&["rewrite", dest.to_str().unwrap(), dest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dest).unwrap());
}

#[test]
fn invalid_input_exits_1_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::fs::read(common::corpus().join("mlp.pte")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated_header", src[..20].to_vec()),
        ("truncated_segments", src[..src.len() - 100].to_vec()),
        ("bad_identifier", {
            let mut b = src.clone();
            b[4..8].copy_from_slice(b"XXXX");
            b
        }),
        ("root_offset_out_of_range", {
            let mut b = src.clone();
            b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
            b
        }),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(format!("{name}.pte"));
        std::fs::write(&p, &bytes).unwrap();
        for cmd in [vec!["verify"], vec!["inspect"], vec!["inspect", "--json"]] {
            let mut args = cmd.clone();
            args.push(p.to_str().unwrap());
            let out = run(&args);
            assert_eq!(out.status.code(), Some(1), "{name} {cmd:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
            assert!(
                err.contains(&format!("{name}.pte")),
                "{name}: error names the file: {err}"
            );
            assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
        }
        let dest = dir.path().join(format!("{name}.out.pte"));
        let out = run(&["rewrite", p.to_str().unwrap(), dest.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name} rewrite");
        assert!(
            !dest.exists(),
            "{name}: no output written for invalid input"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["inspect"]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        run(&["rewrite", "a.pte", "b.pte", "--segment-alignment", "x"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn missing_file_exits_1() {
    let out = run(&["inspect", "/nonexistent/dir/model.pte"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/model.pte"));
}
