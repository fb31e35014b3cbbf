//! Differential tests against the reference (`executorch` 1.5.1): for every corpus file,
//! `plan(restore(file), options)` must equal the reference's
//! `serialize_pte_binary(deserialize_pte_binary(bytes), **options)` for many option
//! sets, and `restore` must equal `deserialize_pte_binary` (compared as a JSON dump of
//! segments, constants, delegates, mutable and named data). Each test runs the reference
//! once, in one Python process, for all its cases.

#[path = "pte_support.rs"]
mod support;

use support::hex;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ptekit_format::program::{pack_program, DataLocation, PackOptions};
use ptekit_format::pte::{
    infer_pack_options, plan, plan_exact, relayout, restore, PteFile, PteModel, ReadOptions,
    SerializeOptions,
};
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import hashlib, json, os, sys, traceback
from executorch.exir._serialize._program import serialize_pte_binary, deserialize_pte_binary
from executorch.exir._serialize._flatbuffer_program import _program_to_flatbuffer

def blob(b):
    return None if b is None else bytes(b).hex()

def loc(v):
    return getattr(v, "value", v)

def dump(pte):
    p = pte.program
    d = {
        "constant_buffer": None if p.constant_buffer is None else [blob(b.storage) for b in p.constant_buffer],
        "backend_delegate_data": None if p.backend_delegate_data is None else [blob(x.data) for x in p.backend_delegate_data],
        "delegates": [[{"id": dl.id, "location": loc(dl.processed.location), "index": dl.processed.index}
                        for dl in (plan.delegates or [])] for plan in (p.execution_plan or [])],
        "segments": None if p.segments is None else [[s.offset, s.size] for s in p.segments],
        "constant_segment": None if p.constant_segment is None else
            {"segment_index": p.constant_segment.segment_index, "offsets": p.constant_segment.offsets},
        "mutable_data_segments": None if p.mutable_data_segments is None else
            [{"segment_index": m.segment_index, "offsets": m.offsets} for m in p.mutable_data_segments],
        "named_data": None if p.named_data is None else [[n.key, n.segment_index] for n in p.named_data],
        "mutable_data": None if pte.mutable_data is None else [blob(b.storage) for b in pte.mutable_data],
        "named_store": None,
    }
    if pte.named_data is not None:
        nd = pte.named_data
        d["named_store"] = {
            "buffers": [blob(b) for b in nd.buffers],
            "pte_data": [[k, e.buffer_index, e.alignment] for k, e in nd.pte_data.items()],
            "external_data": {t: [[k, e.buffer_index, e.alignment] for k, e in m.items()]
                              for t, m in nd.external_data.items()},
        }
    return d

jobs = json.load(open(sys.argv[1]))
out_dir = sys.argv[2]
results = []
for i, job in enumerate(jobs):
    try:
        data = open(job["file"], "rb").read()
        pte = deserialize_pte_binary(data)
        if job["kind"] == "serialize":
            out = bytes(serialize_pte_binary(pte, **job["opts"]))
            open(os.path.join(out_dir, f"{i}.bin"), "wb").write(out)
            results.append({"ok": True})
        elif job["kind"] == "restore":
            results.append({"ok": True, "dump": dump(pte)})
        elif job["kind"] == "flatbuffer":
            out = _program_to_flatbuffer(pte.program, **job["opts"]).data
            open(os.path.join(out_dir, f"{i}.bin"), "wb").write(out)
            results.append({"ok": True})
        else:
            raise ValueError(job["kind"])
    except Exception as e:
        results.append({"ok": False, "error": repr(e), "trace": traceback.format_exc()})
json.dump(results, open(os.path.join(out_dir, "results.json"), "w"))
"#;

struct Job {
    file: PathBuf,
    kind: &'static str,
    opts: Value,
}

struct JobResult {
    ok: bool,
    error: String,
    bytes: Option<Vec<u8>>,
    dump: Value,
}

fn run_reference(python: &Path, jobs: &[Job]) -> Vec<JobResult> {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs_path = dir.path().join("jobs.json");
    let payload: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"file": j.file, "kind": j.kind, "opts": j.opts}))
        .collect();
    std::fs::write(&jobs_path, serde_json::to_vec(&payload).unwrap()).unwrap();
    support::run_python(python, SCRIPT, &[&jobs_path, dir.path()]);
    let results: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| JobResult {
            ok: r["ok"].as_bool().unwrap_or(false),
            error: r["error"].as_str().unwrap_or("").to_string(),
            bytes: std::fs::read(dir.path().join(format!("{i}.bin"))).ok(),
            dump: r["dump"].clone(),
        })
        .collect()
}

/// Option sets: reference keyword arguments and ours.
fn option_sets() -> Vec<(Value, SerializeOptions)> {
    let mk = |extract: bool, seg: u64, tensor: Option<usize>, delegate: Option<usize>| {
        let mut v = serde_json::Map::new();
        v.insert("extract_delegate_segments".into(), json!(extract));
        v.insert("segment_alignment".into(), json!(seg));
        if let Some(t) = tensor {
            v.insert("constant_tensor_alignment".into(), json!(t));
        }
        if let Some(d) = delegate {
            v.insert("delegate_alignment".into(), json!(d));
        }
        (
            Value::Object(v),
            SerializeOptions {
                extract_delegate_segments: extract,
                segment_alignment: seg,
                constant_tensor_alignment: tensor,
                delegate_alignment: delegate,
            },
        )
    };
    vec![
        (json!({}), SerializeOptions::default()),
        mk(true, 128, None, None),
        mk(true, 4096, None, None),
        mk(false, 16384, None, None),
        mk(true, 16384, Some(64), Some(16)),
        mk(false, 128, Some(16), Some(256)),
        mk(true, 4096, Some(64), Some(16)),
        mk(false, 16384, Some(64), Some(256)),
        mk(true, 128, None, Some(256)),
        mk(true, 96, Some(16), None),
        mk(false, 128, Some(128), Some(64)),
    ]
}

/// The packed alignments an output file must reveal, checked when it has vectors of
/// that kind.
fn check_inference(name: &str, out: &[u8], expected: PackOptions) -> bool {
    let file = PteFile::parse(out, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: reference output does not parse: {e}"));
    let exact = plan_exact(&file)
        .unwrap_or_else(|e| panic!("{name}: plan_exact of reference output: {e}"))
        .to_vec()
        .unwrap();
    assert!(
        exact == out,
        "{name}: plan_exact of reference output differs at {:?}",
        support::first_diff(&exact, out)
    );
    // The inferred alignments must pack the program to the same bytes as the ones used
    // (plan_exact above already proved they reproduce the file). They may differ from the
    // ones used when both give the same bytes (e.g. vectors that happen to be aligned
    // more than required); the default 16 is preferred then.
    let inferred = infer_pack_options(&file).unwrap();
    let a = pack_program(file.program(), &inferred).unwrap();
    let b = pack_program(file.program(), &expected).unwrap();
    assert!(
        a == b,
        "{name}: inferred {inferred:?} packs differently from {expected:?}"
    );
    if file.header().is_some() {
        assert_eq!(
            inferred
                .tensor_alignment
                .max(inferred.delegate_alignment)
                .max(32),
            expected
                .tensor_alignment
                .max(expected.delegate_alignment)
                .max(32),
            "{name}: max alignment"
        );
    }
    inferred == expected
}

#[test]
fn plan_matches_reference_serialize_for_every_corpus_file_and_option_set() {
    let Some(python) = support::reference_python("plan_matches_reference_serialize") else {
        return;
    };
    let files = support::corpus_ptes();
    let sets = option_sets();
    let mut jobs = Vec::new();
    for f in &files {
        for (py, _) in &sets {
            jobs.push(Job {
                file: f.clone(),
                kind: "serialize",
                opts: py.clone(),
            });
        }
    }
    let results = run_reference(&python, &jobs);
    let mut compared = 0;
    let mut ambiguous = 0;
    for (fi, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
        let model = restore(&file).unwrap();
        for (si, (py, opts)) in sets.iter().enumerate() {
            let name = format!("{} with {py}", f.file_name().unwrap().to_string_lossy());
            let r = &results[fi * sets.len() + si];
            let ours = plan(&model, opts).and_then(|p| p.to_vec());
            if !r.ok {
                assert!(
                    ours.is_err(),
                    "{name}: reference failed ({}) but we did not",
                    r.error
                );
                continue;
            }
            let expected = r.bytes.as_ref().unwrap();
            let ours = ours.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                &ours == expected,
                "{name}: differs from the reference at {:?} (len {} vs {})",
                support::first_diff(&ours, expected),
                ours.len(),
                expected.len()
            );
            compared += 1;
            // The reference's output re-emits exactly and reveals its alignments.
            if !check_inference(&name, expected, opts.pack_options()) {
                ambiguous += 1;
            }
            // relayout = restore + plan, with delegate extraction kept.
            if opts.extract_delegate_segments || !file.has_segment_delegates() {
                let re = relayout(&file, opts).unwrap().to_vec().unwrap();
                assert!(&re == expected, "{name}: relayout differs");
            }
        }
    }
    println!("compared {compared} outputs with the reference ({ambiguous} with equivalent alignments inferred)");
    assert!(compared >= files.len() * sets.len() - 5);
}

#[test]
fn flatbuffer_only_files_with_custom_alignments_reproduce_exactly() {
    // Header-less files holding inline constants / inline delegate data packed with
    // non-default alignments (the reference's `_program_to_flatbuffer` of a restored
    // program): `plan_exact` must infer the alignments from the data positions alone.
    let Some(python) = support::reference_python("flatbuffer_only_files") else {
        return;
    };
    let cases: Vec<(&str, usize, usize)> = vec![
        ("legacy_inline_constants.pte", 64, 16),
        ("legacy_inline_constants.pte", 1, 16),
        ("legacy_inline_constants.pte", 256, 8),
        ("mlp.pte", 32, 16),
        ("mlp_xnnpack.pte", 16, 128),
        ("mlp_xnnpack.pte", 4, 1024),
        ("transformer_xnnpack.pte", 64, 256),
    ];
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(f, t, d)| Job {
            file: support::corpus_dir().join(f),
            kind: "flatbuffer",
            opts: json!({"constant_tensor_alignment": t, "delegate_alignment": d}),
        })
        .collect();
    let results = run_reference(&python, &jobs);
    for ((f, t, d), r) in cases.iter().zip(&results) {
        assert!(r.ok, "{f}: reference failed: {}", r.error);
        let out = r.bytes.as_ref().unwrap();
        let name = format!("{f} packed with tensor {t} delegate {d}");
        // Ours packs the same bytes from our restore.
        let bytes = support::corpus_file(f);
        let model = restore(&PteFile::parse(&bytes, &ReadOptions::default()).unwrap()).unwrap();
        let ours = pack_program(
            &model.program,
            &PackOptions {
                tensor_alignment: *t,
                delegate_alignment: *d,
            },
        )
        .unwrap();
        assert!(&ours == out, "{name}: pack differs");
        let exact = check_inference(
            &name,
            out,
            PackOptions {
                tensor_alignment: *t,
                delegate_alignment: *d,
            },
        );
        println!("{name}: inferred exactly: {exact}");
    }
}

fn blob(b: Option<&Cow<'_, [u8]>>) -> Value {
    b.map_or(Value::Null, |b| json!(hex(b)))
}

fn dump(model: &PteModel<'_>) -> Value {
    let p = &model.program;
    json!({
        "constant_buffer": p.constant_buffer.as_ref().map(|l| l.iter().map(|b| blob(b.storage.as_ref())).collect::<Vec<_>>()),
        "backend_delegate_data": p.backend_delegate_data.as_ref().map(|l| l.iter().map(|b| blob(b.data.as_ref())).collect::<Vec<_>>()),
        "delegates": p.execution_plan.iter().flatten().map(|plan| {
            plan.delegates.iter().flatten().map(|d| {
                let r = d.processed.unwrap();
                json!({"id": d.id, "location": r.location.0, "index": r.index})
            }).collect::<Vec<_>>()
        }).collect::<Vec<_>>(),
        "segments": p.segments.as_ref().map(|l| l.iter().map(|s| json!([s.offset, s.size])).collect::<Vec<_>>()),
        "constant_segment": p.constant_segment.as_ref().map(|c| json!({"segment_index": c.segment_index, "offsets": c.offsets})),
        "mutable_data_segments": p.mutable_data_segments.as_ref().map(|l| l.iter().map(|c| json!({"segment_index": c.segment_index, "offsets": c.offsets})).collect::<Vec<_>>()),
        "named_data": p.named_data.as_ref().map(|l| l.iter().map(|n| json!([n.key, n.segment_index])).collect::<Vec<_>>()),
        "mutable_data": model.mutable_data.as_ref().map(|l| l.iter().map(|b| blob(b.storage.as_ref())).collect::<Vec<_>>()),
        "named_store": model.named_data.as_ref().map(|s| json!({
            "buffers": s.buffers.iter().map(|b| json!(hex(b))).collect::<Vec<_>>(),
            "pte_data": s.pte_data.iter().map(|(k, e)| json!([k, e.buffer_index, e.alignment])).collect::<Vec<_>>(),
            "external_data": s.external_data.iter().map(|(t, m)| (t.clone(), json!(m.iter().map(|(k, e)| json!([k, e.buffer_index, e.alignment])).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
        })),
    })
}

#[test]
fn restore_matches_reference_deserialize() {
    let Some(python) = support::reference_python("restore_matches_reference_deserialize") else {
        return;
    };
    let files = support::corpus_ptes();
    let jobs: Vec<Job> = files
        .iter()
        .map(|f| Job {
            file: f.clone(),
            kind: "restore",
            opts: json!({}),
        })
        .collect();
    let results = run_reference(&python, &jobs);
    for (f, r) in files.iter().zip(&results) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(r.ok, "{name}: reference failed: {}", r.error);
        let bytes = std::fs::read(f).unwrap();
        let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
        let model = restore(&file).unwrap();
        let ours = dump(&model);
        for key in r.dump.as_object().unwrap().keys() {
            assert_eq!(ours[key], r.dump[key], "{name}: {key}");
        }
        assert_eq!(ours, r.dump, "{name}");
        // Zero-copy: restored blobs borrow from the file.
        for b in model.program.constant_buffer.iter().flatten() {
            assert!(matches!(b.storage, Some(Cow::Borrowed(_)) | None));
        }
        for b in model.program.backend_delegate_data.iter().flatten() {
            assert!(matches!(b.data, Some(Cow::Borrowed(_)) | None));
        }
        if let Some(s) = &model.named_data {
            assert!(s.buffers.iter().all(|b| matches!(b, Cow::Borrowed(_))));
        }
        // No delegate points into a segment after restoring.
        for plan in model.program.execution_plan.iter().flatten() {
            for d in plan.delegates.iter().flatten() {
                assert_eq!(
                    d.processed.unwrap().location,
                    DataLocation::INLINE,
                    "{name}"
                );
            }
        }
    }
}
