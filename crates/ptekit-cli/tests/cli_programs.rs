//! `ptekit inspect/verify/rewrite` on every real program: the reference corpus and the
//! project's own fixtures (both written by the reference serializer).

mod common;

use common::{corpus, program_files, run};
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
        if path.ends_with("legacy_inline_constants.pte") {
            // Written by an older exporter; the 1.5.1 runtime refuses its inline
            // constants (tests/python/test_verify_vs_runtime.py), and so does verify.
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("constant_buffer (file offset"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
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

#[test]
fn several_files_get_a_header_each_and_exit_1_if_one_fails() {
    let a = common::corpus().join("add.pte");
    let b = common::corpus().join("mlp.pte");
    let missing = "/nonexistent/dir/model.pte";
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = run(&["inspect", a, missing, b]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.starts_with(&format!("{a}: ExecuTorch program")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\n\n{b}: ExecuTorch program")),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(missing) && err.contains("no such file"),
        "{err}"
    );

    let out = run(&["inspect", "--json", a, b]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json array");
    let files: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["file"].as_str().expect("file"))
        .collect();
    assert_eq!(files, [a, b]);

    let out = run(&["verify", a, b]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(&format!(
            "{b}: ok (ET12 program, 1 method(s), 1 segment(s), 4,880 bytes (4.8 KiB))"
        )),
        "{text}"
    );
}

#[test]
fn verify_json_reports_each_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = common::corpus().join("mlp.pte");
    let bad = dir.path().join("bad.pte");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let out = run(&["verify", "--json", good]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["kind"], "program");
    assert_eq!(v["file"], good);
    assert_eq!(v["bytes"], bytes.len());

    let out = run(&["verify", "--json", good, bad]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let v = v.as_array().expect("array");
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[1]["ok"], false);
    assert_eq!(v[1]["file"], bad);
    assert!(v[1]["error"].as_str().expect("error").contains("bad.pte"));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// Runs ptekit with `input` on standard input.
fn run_stdin(args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(common::bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // A command that refuses `-` exits without reading: the write then fails, and the
    // outputs tell what happened.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().expect("wait")
}

/// `-` stands for standard input in every command that reads a file: the output is the
/// output for the path, with `<stdin>` where the path was named.
#[test]
fn dash_reads_standard_input() {
    let c = common::corpus();
    let (mlp, xnn) = (c.join("mlp.pte"), c.join("mlp_xnnpack.pte"));
    let ptd = c.join("external._default_external_constant.ptd");
    let (mlp, xnn, ptd) = (
        mlp.to_str().unwrap(),
        xnn.to_str().unwrap(),
        ptd.to_str().unwrap(),
    );
    let cases: &[(&[&str], &str)] = &[
        (&["inspect", "--json"], mlp),
        (&["inspect"], ptd),
        (&["verify", "--json"], xnn),
        (&["ops", "--json"], mlp),
        (&["dump"], mlp),
        (&["xnnpack", "dump"], xnn),
        (&["diff", "--json", xnn], mlp),
        (&["diff", ptd], ptd),
    ];
    for (args, path) in cases {
        let bytes = std::fs::read(path).unwrap();
        let from_stdin = run_stdin(&[args, &["-"][..]].concat(), &bytes);
        let from_file = run(&[args, &[*path][..]].concat());
        assert!(
            from_stdin.status.success() == from_file.status.success()
                && from_file.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {}",
            String::from_utf8_lossy(&from_stdin.stderr)
        );
        let want = String::from_utf8_lossy(&from_file.stdout).replace(path, "<stdin>");
        // The diff of a file with itself names it twice: only the second is `-`.
        let want = if args[0] == "diff" && args.get(1) == Some(path) {
            want.replacen("<stdin>", path, 1)
        } else {
            want
        };
        assert_eq!(
            String::from_utf8_lossy(&from_stdin.stdout),
            want,
            "{args:?}"
        );
    }
}

/// Replaces the byte at index `at` of every occurrence of `word` in `bytes` by 0x1d.
fn with_control_char(bytes: &[u8], word: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut found = 0;
    for i in 0..bytes.len().saturating_sub(word.len() - 1) {
        if &bytes[i..i + word.len()] == word {
            out[i + at] = 0x1d;
            found += 1;
        }
    }
    assert!(found > 0, "{word:?} not found");
    out
}

/// Names and keys read from a file are written with one escaping in every text view:
/// a control character as `\x1d` (before: raw in `inspect`, `\u{1d}` in `diff`), never
/// the raw byte.
#[test]
fn names_with_control_characters_are_escaped_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orig = corpus().join("mlp_xnnpack.pte");
    let bytes = std::fs::read(&orig).expect("read");
    let key = b"50594bb371b04fff3afeb9d8c8d150c07f6ae8d2d521f68d2b4c202ec488a8dd";
    let bytes = with_control_char(&bytes, key, 1);
    let bytes = with_control_char(&bytes, b"forward", 3);
    let p = dir.path().join("ctl.pte");
    std::fs::write(&p, bytes).expect("write");
    let f = p.to_str().expect("utf-8");
    let o = orig.to_str().expect("utf-8");
    let text = |args: &[&str]| {
        let out = run(args);
        assert!(!out.stdout.contains(&0x1d), "{args:?}: raw control byte");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let escaped_key = "5\\x1d594bb371b04fff3afeb9d8c8d150c07f6ae8d2d521f68d2b4c202ec488a8dd";
    let t = text(&["inspect", f]);
    assert!(t.contains("\nmethod for\\x1dard\n"), "{t}");
    assert!(t.contains(&format!("  2        {escaped_key}\n")), "{t}");
    let t = text(&["inspect", "--top", "3", f]);
    assert!(
        t.contains(&format!("  2,048  2        {escaped_key}\n")),
        "{t}"
    );
    let t = text(&["diff", o, f]);
    assert!(
        t.contains(&format!("  \"{escaped_key}\": only in B\n")),
        "{t}"
    );
    assert!(
        t.contains("(name differs: \"forward\" vs \"for\\x1dard\")"),
        "{t}"
    );
    // A .ptd key, a cache entry name.
    let ptd =
        std::fs::read(corpus().join("external._default_external_constant.ptd")).expect("read .ptd");
    let q = dir.path().join("ctl.ptd");
    std::fs::write(&q, with_control_char(&ptd, b"l2.weight", 2)).expect("write");
    let t = text(&["inspect", q.to_str().expect("utf-8")]);
    assert!(t.contains("  l2\\x1dweight: "), "{t}");
    let c = dir.path().join("c.pwc");
    common::make_cache(&c);
    let mut cf = ptekit_cache::CacheFile::open(&c, &ptekit_cache::FileOptions::default())
        .expect("open cache");
    assert!(cf.lock().expect("lock"));
    common::add_entry(&mut cf, &c, "layer\u{1d}2.weight", 2, &[3; 100]);
    cf.unlock();
    let t = text(&["cache", "inspect", c.to_str().expect("utf-8")]);
    assert!(t.contains(" layer\\x1d2.weight\n"), "{t}");
}
