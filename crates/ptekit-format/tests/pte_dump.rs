//! `pte::dump`: every corpus and fixture program dumped with its data builds back byte
//! for byte; a dump with elided data builds back from the dumped file; edits that break
//! the document fail naming the JSON path; edits that grow the program relayout.
//! (The program part is compared with the reference's `_program_to_json` in
//! `tests/python/test_dump.py`.)

#[path = "pte_support.rs"]
mod support;

use std::path::{Path, PathBuf};

use ptekit_format::program::{DataFrom, JsonError, JsonReason};
use ptekit_format::pte::dump::{build, write_dump, BuildError, DumpOptions};
use ptekit_format::pte::{PteFile, ReadOptions};
use serde_json::{json, Value};

fn programs() -> Vec<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut v = support::corpus_ptes();
    let mut f: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .expect("fixtures readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pte"))
        .collect();
    f.sort();
    v.extend(f);
    v
}

fn dump(bytes: &[u8], with_data: bool) -> Value {
    let file = PteFile::parse(bytes, &ReadOptions::default()).expect("parses");
    let mut out = Vec::new();
    write_dump(&file, &DumpOptions { with_data }, &mut out).expect("dump");
    serde_json::from_slice(&out).expect("dump is JSON")
}

fn rebuild(doc: &Value, data: Option<&[u8]>) -> Result<Vec<u8>, BuildError> {
    let built = build(doc, DataFrom(data))?;
    Ok(built.planned.to_vec().expect("plan writes"))
}

fn reason(e: BuildError) -> (String, JsonReason) {
    match e {
        BuildError::Json(JsonError::Value { path, reason }) => (path.to_string(), reason),
        other => panic!("expected a JSON value error, got {other}"),
    }
}

#[test]
fn with_data_builds_every_program_byte_for_byte() {
    for path in programs() {
        let bytes = std::fs::read(&path).expect("read");
        let doc = dump(&bytes, true);
        let text = serde_json::to_string(&doc).expect("json");
        assert!(!text.contains("ptekit_elided"), "{}", path.display());
        let out = rebuild(&doc, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        support::assert_same_bytes(&path, &out, &bytes);
    }
}

#[test]
fn elided_dump_builds_from_the_dumped_file() {
    let mut elided_somewhere = false;
    for path in programs() {
        let bytes = std::fs::read(&path).expect("read");
        let doc = dump(&bytes, false);
        let has_marker = serde_json::to_string(&doc)
            .expect("json")
            .contains("ptekit_elided");
        elided_somewhere |= has_marker;
        let out = rebuild(&doc, Some(&bytes)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(out == bytes, "{}", path.display());
        if has_marker {
            let (at, why) = reason(rebuild(&doc, None).expect_err("elided data is missing"));
            assert!(matches!(why, JsonReason::Elided { .. }), "{at}: {why}");
        }
    }
    assert!(
        elided_somewhere,
        "no corpus file has a byte array over the elision limit"
    );
}

#[test]
fn segment_data_and_header_are_where_the_file_has_them() {
    let bytes = support::corpus_file("mlp.pte");
    let file = PteFile::parse(&bytes, &ReadOptions::default()).expect("parses");
    let doc = dump(&bytes, false);
    let c = &doc["ptekit_container"];
    let h = file.header().expect("mlp.pte has a header");
    assert_eq!(c["extended_header"]["length"], json!(h.length));
    assert_eq!(
        c["extended_header"]["segment_base_offset"],
        json!(h.segment_base_offset)
    );
    assert_eq!(
        c["extended_header"]["segment_data_size"],
        json!(h.segment_data_size)
    );
    let segs = c["segment_data"]
        .as_array()
        .expect("segment_data is a list");
    assert_eq!(segs.len(), file.segments().len());
    for (s, j) in file.segments().iter().zip(segs) {
        if let Some(m) = j.get("ptekit_elided") {
            assert_eq!(m["size"], json!(s.size));
            assert_eq!(m["offset"], json!(s.file_offset));
        } else {
            let hex: String = s.data.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(j, &json!(hex));
        }
    }
}

#[test]
fn broken_documents_name_the_json_path() {
    let bytes = support::corpus_file("mlp.pte");
    let good = dump(&bytes, true);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["execution_plan"][0]["values"][1]["val_type"] = json!("Tensr")),
            "$.execution_plan[0].values[1].val",
        ),
        (
            Box::new(|d| d["execution_plan"][0]["operators"][0]["name"] = json!(3)),
            "$.execution_plan[0].operators[0].name",
        ),
        (
            Box::new(|d| d["execution_plan"][0]["inputs"][0] = json!(-1i64 << 40)),
            "$.execution_plan[0].inputs[0]",
        ),
        (
            Box::new(|d| d["ptekit_container"]["segment_data"][0] = json!("0g")),
            "$.ptekit_container.segment_data[0]",
        ),
        (
            Box::new(|d| d["ptekit_container"]["segment_data"][0] = json!("00")),
            "$.ptekit_container.segment_data[0]",
        ),
        (
            Box::new(|d| d["ptekit_container"]["extended_header"]["length"] = json!(28)),
            "$.ptekit_container.extended_header.length",
        ),
        (
            Box::new(|d| d["ptekit_container"]["tensor_alignment"] = json!(12)),
            "$.ptekit_container.tensor_alignment",
        ),
        (
            Box::new(|d| {
                if let Some(o) = d.as_object_mut() {
                    o.insert("versoin".into(), json!(0));
                }
            }),
            "$.versoin",
        ),
        (
            Box::new(|d| {
                if let Some(o) = d["execution_plan"][0].as_object_mut() {
                    o.remove("chains");
                }
            }),
            "$.execution_plan[0].chains",
        ),
    ];
    for (edit, want) in cases {
        let mut doc = good.clone();
        edit(&mut doc);
        let (at, why) = reason(rebuild(&doc, None).expect_err(want));
        assert_eq!(at, want, "{why}");
    }
}

#[test]
fn a_grown_program_moves_the_segments_and_still_reads() {
    let bytes = support::corpus_file("mlp.pte");
    let mut doc = dump(&bytes, true);
    let long = "x".repeat(5000);
    doc["execution_plan"][0]["name"] = json!(long);
    let out = rebuild(&doc, None).expect("builds");
    let file = PteFile::parse(&out, &ReadOptions::default()).expect("the result parses");
    let plan = &file.program().execution_plan.as_ref().expect("plans")[0];
    assert_eq!(plan.name.as_deref(), Some(long.as_str()));
    let orig = PteFile::parse(&bytes, &ReadOptions::default()).expect("parses");
    let h = file.header().expect("header");
    assert!(h.segment_base_offset >= h.program_size);
    assert_eq!(h.segment_base_offset % 128, 0);
    for (a, b) in orig.segments().iter().zip(file.segments()) {
        assert_eq!(a.data, b.data);
    }
}

#[test]
fn the_reference_shape_without_container_builds() {
    // add.pte has no header and one empty segment: the program part alone suffices.
    let bytes = support::corpus_file("add.pte");
    let mut doc = dump(&bytes, true);
    if let Some(o) = doc.as_object_mut() {
        o.remove("ptekit_container");
    }
    let out = rebuild(&doc, None).expect("builds");
    let file = PteFile::parse(&out, &ReadOptions::default()).expect("parses");
    let orig = PteFile::parse(&bytes, &ReadOptions::default()).expect("parses");
    assert_eq!(file.program(), orig.program());
    assert_eq!(file.header().map(|h| h.length), Some(32));
    // With segment data the container is required.
    let mut doc = dump(&support::corpus_file("mlp.pte"), true);
    if let Some(o) = doc.as_object_mut() {
        o.remove("ptekit_container");
    }
    let (at, why) = reason(rebuild(&doc, None).expect_err("needs the container"));
    assert_eq!(
        (at.as_str(), why),
        ("$.ptekit_container", JsonReason::Missing)
    );
}
