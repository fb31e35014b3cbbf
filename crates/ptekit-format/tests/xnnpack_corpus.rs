//! Every XNNPACK payload the reference wrote (the corpus and the project fixtures)
//! decodes, passes the cross-reference checks and re-encodes byte for byte.

#[path = "pte_support.rs"]
mod support;

use std::path::{Path, PathBuf};

use ptekit_flatbuffers::Limits;
use ptekit_format::pte::{PteFile, ReadOptions};
use ptekit_format::xnnpack::*;

fn xnnpack_ptes() -> Vec<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut v: Vec<PathBuf> = support::corpus_ptes();
    v.extend(
        std::fs::read_dir(fixtures)
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "pte")),
    );
    v.sort();
    v
}

#[test]
fn corpus_payloads_roundtrip_byte_identical() {
    let mut blobs = 0;
    let mut named_entries = 0;
    for path in xnnpack_ptes() {
        let bytes = std::fs::read(&path).expect("read");
        let pte = PteFile::parse(&bytes, &ReadOptions::default()).expect("parse");
        let named = NamedSizes::new(&pte, None);
        for d in delegate_payloads(&pte) {
            let blob = d.bytes.expect("payload present");
            let p = check_payload(&d, &named, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // What the note says about 1.5.1 payloads.
            let h = p.header.expect("XH00 header");
            assert_eq!((h.header_length, h.flatbuffer_offset), (30, 32));
            assert_eq!(h.constant_data_size, 0);
            assert_eq!(&p.identifier, b"XN01");
            let again = reencode_payload(&p).expect("encode");
            assert!(
                again == blob,
                "{} delegate {}/{}: re-encoded payload differs at byte {:?} ({} vs {} bytes)",
                path.display(),
                d.plan,
                d.delegate,
                support::first_diff(&again, blob),
                again.len(),
                blob.len()
            );
            // The reference's two entry points give the same bytes.
            assert_eq!(
                serialize_xnnpack_binary(&p.graph, &[]).expect("serialize"),
                blob
            );
            named_entries += p
                .graph
                .constant_data
                .iter()
                .flatten()
                .filter(|c| c.key().is_some())
                .count();
            blobs += 1;
        }
    }
    assert!(blobs >= 30, "only {blobs} XNNPACK payloads found");
    assert!(named_entries >= 58, "only {named_entries} named constants");
}

#[test]
fn empty_graph_matches_flatc_test_vector() {
    // The flatbuffer flatc 24.3.25 writes for
    // XNNGraph(version="0", xnodes=[], xvalues=[], num_externs=0, input_ids=[], output_ids=[], constant_data=[]).
    let hex = "20000000584e3031000016001c00040008000c00000010001400000000001800160000002c000000240000001c000000140000000c0000000400000000000000000000000000000000000000000000000100000030000000";
    let expected: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let g = XNNGraph {
        version: Some("0".into()),
        xnodes: Some(vec![]),
        xvalues: Some(vec![]),
        input_ids: Some(vec![]),
        output_ids: Some(vec![]),
        constant_data: Some(vec![]),
        ..XNNGraph::default()
    };
    assert_eq!(convert_to_flatbuffer(&g).expect("pack"), expected);
}
