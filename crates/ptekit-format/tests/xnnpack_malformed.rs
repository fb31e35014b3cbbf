//! Payloads that lie: every one gets a clean error naming the field (and the payload
//! offset where the verifier found it), never a panic.

#[path = "pte_support.rs"]
mod support;

use proptest::prelude::*;
use ptekit_flatbuffers::Limits;
use ptekit_format::pte::{PteFile, ReadOptions};
use ptekit_format::xnnpack::*;

/// Every XNNPACK payload of the corpus (owned).
fn corpus_blobs() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for path in support::corpus_ptes() {
        let bytes = std::fs::read(&path).expect("read");
        let pte = PteFile::parse(&bytes, &ReadOptions::default()).expect("parse");
        for d in delegate_payloads(&pte) {
            out.push(d.bytes.expect("bytes").to_vec());
        }
    }
    assert!(!out.is_empty());
    out
}

fn fc_graph() -> XNNGraph {
    let tensor = |id: u32, cidx: u32| XValue {
        xvalue_union: Some(XValueUnion::XNNTensorValue(XNNTensorValue {
            datatype: XNNDatatype(1),
            num_dims: 2,
            dims: Some(vec![2, 2]),
            constant_buffer_idx: cidx,
            external_id: XNN_INVALID_VALUE_ID,
            id_out: id,
            ..XNNTensorValue::default()
        })),
    };
    let mut nodes: Vec<XNode> = (0..18)
        .map(|_| XNode {
            xnode_union: Some(XNodeUnion::XNNAbs(XNNNode1x1 {
                input_id: 0,
                output_id: 2,
                flags: 0,
            })),
            ..XNode::default()
        })
        .collect();
    nodes[17].xnode_union = Some(XNodeUnion::XNNFullyConnected(XNNFullyConnected {
        input1_id: 0,
        filter_id: 1,
        bias_id: XNN_INVALID_VALUE_ID,
        output_id: 2,
        flags: 0,
    }));
    XNNGraph {
        version: Some("0".into()),
        xnodes: Some(nodes),
        xvalues: Some(vec![tensor(0, 0), tensor(1, 1), tensor(2, 0)]),
        num_externs: 2,
        input_ids: Some(vec![0]),
        output_ids: Some(vec![2]),
        constant_data: Some(vec![
            ConstantDataOffset {
                named_key: Some(String::new()),
                ..ConstantDataOffset::default()
            },
            ConstantDataOffset {
                offset: u64::MAX,
                size: 16,
                named_key: Some("k".into()),
            },
        ]),
        ..XNNGraph::default()
    }
}

fn check(g: &XNNGraph, constant_data: &[u8], named: &[(&str, u64)]) -> Result<(), XnnpackError> {
    let blob = serialize_xnnpack_binary(g, constant_data)?;
    let p = decode_payload(&blob, &Limits::default())?;
    let lookup = |k: &str| named.iter().find(|(n, _)| *n == k).map(|(_, s)| *s);
    let located = validate_payload(&p, Some(&lookup));
    // The same check on the graph alone finds the same problem, without an offset.
    let bare = validate(
        &p.graph,
        &ConstantSources {
            constant_data: p.constant_data,
            named: Some(&lookup),
        },
    );
    assert_eq!(
        located.as_ref().err().map(XnnpackError::path),
        bare.as_ref().err().map(XnnpackError::path)
    );
    if let Err(e) = &located {
        // The offset is that of the table holding the problem: a table's soffset.
        let at = e.offset().expect("offset") as usize;
        assert!(at >= 32 && at < blob.len() && at % 4 == 0, "{e}");
    }
    located
}

#[test]
fn consistent_graph_passes() {
    check(&fc_graph(), &[], &[("k", 16)]).expect("valid");
}

#[test]
fn value_id_out_of_range_names_node_and_field() {
    let mut g = fc_graph();
    if let Some(XNodeUnion::XNNFullyConnected(fc)) =
        &mut g.xnodes.as_mut().expect("nodes")[17].xnode_union
    {
        fc.filter_id = 99;
    }
    let e = check(&g, &[], &[("k", 16)])
        .expect_err("bad id")
        .in_delegate(0, 3);
    assert_eq!(e.kind(), &XnnpackErrorKind::ValueId);
    assert!(
        e.to_string().starts_with(
            "execution_plan[0].delegates[3].xnnpack.xnodes[17].XNNFullyConnected.filter_id: value id 99"
        ),
        "{e}"
    );
    let mut g = fc_graph();
    g.output_ids = Some(vec![2, 7]);
    let e = check(&g, &[], &[("k", 16)]).expect_err("bad output");
    assert_eq!(e.path(), "output_ids[1]");
}

#[test]
fn constant_index_outside_constant_data() {
    let mut g = fc_graph();
    if let Some(XValueUnion::XNNTensorValue(t)) =
        &mut g.xvalues.as_mut().expect("v")[1].xvalue_union
    {
        t.constant_buffer_idx = 2;
    }
    let e = check(&g, &[], &[("k", 16)]).expect_err("bad index");
    assert_eq!(e.kind(), &XnnpackErrorKind::ConstantIndex);
    assert_eq!(e.path(), "xvalues[1].XNNTensorValue.constant_buffer_idx");
}

#[test]
fn inline_constant_range_outside_the_payload() {
    let mut g = fc_graph();
    // Inline: an entry without the named_key field.
    g.constant_data.as_mut().expect("c")[1] = ConstantDataOffset {
        offset: 8,
        size: 16,
        named_key: None,
    };
    // 24 bytes of constant data hold it; 23 do not.
    check(&g, &[0; 24], &[]).expect("inside");
    let e = check(&g, &[0; 23], &[]).expect_err("outside");
    assert_eq!(e.kind(), &XnnpackErrorKind::ConstantRange);
    assert_eq!(e.path(), "constant_data[1].offset");
    g.constant_data.as_mut().expect("c")[1].offset = u64::MAX;
    assert!(check(&g, &[0; 24], &[]).is_err());
}

#[test]
fn an_empty_named_key_is_a_key_like_for_the_runtime() {
    // XNNCompiler reads an entry from the payload's constant data only when it has no
    // named_key field; a present "" is looked up in the named data (and is not there).
    let mut g = fc_graph();
    g.constant_data.as_mut().expect("c")[1] = ConstantDataOffset {
        offset: 8,
        size: 16,
        named_key: Some(String::new()),
    };
    let e = check(&g, &[0; 24], &[]).expect_err("an empty key is a key");
    assert_eq!(e.kind(), &XnnpackErrorKind::NamedKey);
    assert_eq!(e.path(), "constant_data[1].named_key");
    assert!(e.message().contains("\"\" is not in"), "{e}");
    // The placeholder entry 0 (the reference writes "" there) is not read.
    check(&g, &[0; 24], &[("", 16)]).expect("found");
}

#[test]
fn named_key_missing_or_short() {
    let g = fc_graph();
    let e = check(&g, &[], &[]).expect_err("missing");
    assert_eq!(e.kind(), &XnnpackErrorKind::NamedKey);
    assert_eq!(e.path(), "constant_data[1].named_key");
    let e = check(&g, &[], &[("k", 15)]).expect_err("short");
    assert_eq!(e.path(), "constant_data[1].size");
}

/// The define-time error of `g` (the reference runtime refuses it when it builds the
/// XNNPACK subgraph) and the payload bytes; the graph alone gives the same field path.
fn define_error(g: &XNNGraph) -> (XnnpackError, Vec<u8>) {
    let blob = serialize_xnnpack_binary(g, &[]).expect("ser");
    let p = decode_payload(&blob, &Limits::default()).expect("decode");
    let lookup = |k: &str| (k == "k").then_some(16);
    // The cross-references hold; what XNNPACK refuses is checked apart.
    validate_payload(&p, Some(&lookup)).expect("consistent");
    let e = check_definable_payload(&p).expect_err("refused");
    assert_eq!(e.kind(), &XnnpackErrorKind::Define, "{e}");
    let bare = check_definable(&p.graph).expect_err("refused without positions");
    assert_eq!(bare.path(), e.path());
    (e, blob)
}

/// The 4 bytes at the error's offset: the field it names.
fn field_bytes(e: &XnnpackError, blob: &[u8]) -> [u8; 4] {
    let at = e.offset().expect("offset") as usize;
    blob[at..at + 4].try_into().expect("4 bytes")
}

fn tensor_mut(g: &mut XNNGraph, i: usize) -> &mut XNNTensorValue {
    match &mut g.xvalues.as_mut().expect("v")[i].xvalue_union {
        Some(XValueUnion::XNNTensorValue(t)) => t,
        _ => panic!("fixture value {i} is a tensor"),
    }
}

#[test]
fn value_flags_other_than_external_input_and_output_are_refused_at_the_field() {
    let mut g = fc_graph();
    tensor_mut(&mut g, 0).flags = 0x40_0001;
    let (e, blob) = define_error(&g);
    assert_eq!(e.path(), "xvalues[0].XNNTensorValue.flags");
    assert_eq!(u32::from_le_bytes(field_bytes(&e, &blob)), 0x40_0001);
    assert!(
        e.message().starts_with("0x400001 has bits other than"),
        "{e}"
    );
    // Input and output together are fine.
    let mut g = fc_graph();
    tensor_mut(&mut g, 0).flags = 3;
    tensor_mut(&mut g, 0).external_id = 0;
    check_definable(&g).expect("flags 3");
}

#[test]
fn value_external_id_dims_and_datatype_are_checked_like_xnn_define_tensor_value() {
    let mut g = fc_graph();
    tensor_mut(&mut g, 2).external_id = 2; // num_externs is 2
    let (e, blob) = define_error(&g);
    assert_eq!(e.path(), "xvalues[2].XNNTensorValue.external_id");
    assert_eq!(u32::from_le_bytes(field_bytes(&e, &blob)), 2);

    let mut g = fc_graph();
    tensor_mut(&mut g, 2).dims = Some(vec![1; 7]);
    let (e, _) = define_error(&g);
    assert_eq!(e.path(), "xvalues[2].XNNTensorValue.dims");
    tensor_mut(&mut g, 2).dims = Some(vec![1; 6]);
    check_definable(&g).expect("six dimensions");

    for bad in [0i16, 3, 9, 99, -1] {
        let mut g = fc_graph();
        tensor_mut(&mut g, 2).datatype = XNNDatatype(bad);
        let (e, _) = define_error(&g);
        assert_eq!(e.path(), "xvalues[2].XNNTensorValue.datatype", "{bad}");
    }
    // qint8 dynamic quantization of an external input is what the exporter writes.
    let mut g = fc_graph();
    tensor_mut(&mut g, 1).dq_datatype = XNNDatatype(3);
    let (e, _) = define_error(&g);
    assert_eq!(e.path(), "xvalues[1].XNNTensorValue.dq_datatype");
    assert!(e.message().contains("no external input"), "{e}");
}

#[test]
fn output_range_nan_or_reversed_is_refused_for_nodes_that_take_it() {
    for (min, max, field) in [
        (0.0, f32::NEG_INFINITY, "output_max"),
        (f32::NAN, 1.0, "output_min"),
        (0.0, f32::NAN, "output_max"),
    ] {
        let mut g = fc_graph();
        g.xnodes.as_mut().expect("n")[17].output_min_max = Some(OutputMinMax {
            output_min: min,
            output_max: max,
        });
        let (e, blob) = define_error(&g);
        assert_eq!(e.path(), format!("xnodes[17].output_min_max.{field}"));
        let stored = f32::from_le_bytes(field_bytes(&e, &blob));
        let want = if field == "output_min" { min } else { max };
        assert_eq!(stored.to_bits(), want.to_bits());
    }
    // Equal bounds are fine, and Abs does not pass a range to XNNPACK.
    let mut g = fc_graph();
    let nodes = g.xnodes.as_mut().expect("n");
    nodes[17].output_min_max = Some(OutputMinMax {
        output_min: 1.0,
        output_max: 1.0,
    });
    nodes[0].output_min_max = Some(OutputMinMax {
        output_min: f32::NAN,
        output_max: 0.0,
    });
    check_definable(&g).expect("equal bounds; a range Abs does not use");
}

#[test]
fn required_node_values_and_pooling_windows() {
    let mut g = fc_graph();
    g.xnodes.as_mut().expect("n")[3].xnode_union = Some(XNodeUnion::XNNAbs(XNNNode1x1 {
        input_id: 0,
        output_id: XNN_INVALID_VALUE_ID,
        flags: 0,
    }));
    let (e, blob) = define_error(&g);
    assert_eq!(e.path(), "xnodes[3].XNNAbs.output_id");
    assert_eq!(field_bytes(&e, &blob), [0xff; 4]);

    for (h, w) in [(0, 5), (1, 1), (65536, 65536)] {
        let mut g = fc_graph();
        g.xnodes.as_mut().expect("n")[2].xnode_union =
            Some(XNodeUnion::XNNArgMaxPooling2d(XNNArgMaxPooling2d {
                pooling_height: h,
                pooling_width: w,
                input_id: 0,
                output_value_id: 2,
                output_index_id: 2,
                ..XNNArgMaxPooling2d::default()
            }));
        let (e, blob) = define_error(&g);
        assert_eq!(e.path(), "xnodes[2].XNNArgMaxPooling2d.pooling_height");
        if h != 0 {
            // (A 0 is the default, left out of the buffer.)
            assert_eq!(u32::from_le_bytes(field_bytes(&e, &blob)), h);
        }
    }
}

#[test]
fn fully_connected_datatypes_xnnpack_has_no_operator_for_are_refused() {
    let mut g = fc_graph();
    tensor_mut(&mut g, 0).datatype = XNNDatatype(2); // fp16 input, fp32 filter and output
    let (e, _) = define_error(&g);
    assert_eq!(e.path(), "xnodes[17].XNNFullyConnected.input1_id");
    // input1_id 0 is the default, which the buffer leaves out: the offset is the table's.
    assert!(e.offset().is_some());
    assert!(
        e.message().contains("input fp16, filter fp32, output fp32"),
        "{e}"
    );
    // fp16 in and out with fp32 weights is an XNNPACK operator.
    tensor_mut(&mut g, 2).datatype = XNNDatatype(2);
    check_definable(&g).expect("fp16 with fp32 weights");
    // A bf16 filter must be constant.
    let mut g = fc_graph();
    for i in 0..3 {
        tensor_mut(&mut g, i).datatype = XNNDatatype(14);
    }
    check_definable(&g).expect("bf16 with a constant filter");
    tensor_mut(&mut g, 1).constant_buffer_idx = 0;
    let (e, blob) = define_error(&g);
    assert_eq!(e.path(), "xnodes[17].XNNFullyConnected.filter_id");
    assert_eq!(u32::from_le_bytes(field_bytes(&e, &blob)), 1);
}

#[test]
fn graph_without_values_or_with_too_many_externs() {
    let mut g = fc_graph();
    g.num_externs = 4097;
    let (e, blob) = define_error(&g);
    assert_eq!(e.path(), "num_externs");
    assert_eq!(u32::from_le_bytes(field_bytes(&e, &blob)), 4097);
    let g = XNNGraph {
        xvalues: None,
        xnodes: Some(vec![]),
        ..XNNGraph::default()
    };
    let e = check_definable(&g).expect_err("no values");
    assert_eq!(e.path(), "xvalues");
}

#[test]
fn errors_inside_a_file_give_the_file_offset() {
    let mut g = fc_graph();
    tensor_mut(&mut g, 0).flags = 4;
    let (e, _) = define_error(&g);
    let at = e.offset().expect("payload byte");
    assert_eq!(e.file_offset(), None);
    let e = e.in_file_at(1000);
    assert_eq!(e.file_offset(), Some(1000 + at));
    // A container adds its own offset (a .bpte around the program).
    let e = e.in_file_at(64);
    assert_eq!(e.file_offset(), Some(1064 + at));
    assert!(e.to_string().ends_with(&format!(
        " at file offset 0x{:x} (payload byte {at})",
        1064 + at
    )));
}

#[test]
fn constant_shorter_than_its_dims_need() {
    // Value 1: a [2, 2] fp32 constant in the 16 bytes of named key "k".
    let mut g = fc_graph();
    tensor_mut(&mut g, 1).dims = Some(vec![2, 3]);
    let e = check(&g, &[], &[("k", 16)]).expect_err("short");
    assert_eq!(e.kind(), &XnnpackErrorKind::ConstantRange);
    assert_eq!(e.path(), "xvalues[1].XNNTensorValue.dims");
    assert!(
        e.message()
            .starts_with("[2, 3] of fp32 need 24 bytes, but constant_data[1] holds 16"),
        "{e}"
    );
    check(&g, &[], &[("k", 24)]).expect("24 bytes hold it");
    tensor_mut(&mut g, 1).dims = Some(vec![u32::MAX; 3]);
    let e = check(&g, &[], &[("k", 24)]).expect_err("overflow");
    assert!(e.message().contains("need more than 2^64 bytes"), "{e}");
    // 4-bit weights are not counted per byte: not checked.
    tensor_mut(&mut g, 1).datatype = XNNDatatype(8);
    assert!(!matches!(
        validate(&g, &ConstantSources { constant_data: &[], named: Some(&|_| Some(24)) }),
        Err(e) if e.kind() == &XnnpackErrorKind::ConstantRange
    ));
}

#[test]
fn wrong_identifier() {
    let mut blob = serialize_xnnpack_binary(&fc_graph(), &[]).expect("ser");
    blob[36..40].copy_from_slice(b"XN02");
    let e = decode_payload(&blob, &Limits::default()).expect_err("id");
    assert_eq!(e.kind(), &XnnpackErrorKind::Identifier);
    assert_eq!(e.offset(), Some(36));
    // XN00 (the runtime schema's) is accepted, and kept on re-encoding.
    blob[36..40].copy_from_slice(b"XN00");
    let p = decode_payload(&blob, &Limits::default()).expect("XN00");
    assert_eq!(reencode_payload(&p).expect("enc"), blob);
}

#[test]
fn header_offsets_past_the_end() {
    let blob = serialize_xnnpack_binary(&fc_graph(), &[1, 2, 3]).expect("ser");
    let mut b = blob.clone();
    b[14..18].copy_from_slice(&(blob.len() as u32).to_le_bytes());
    let e = decode_payload(&b, &Limits::default()).expect_err("fb size");
    assert_eq!(e.kind(), &XnnpackErrorKind::Header);
    assert_eq!(e.path(), "header.flatbuffer_size");
    let mut b = blob.clone();
    b[22..30].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = decode_payload(&b, &Limits::default()).expect_err("const size");
    assert_eq!(e.path(), "header.constant_data_size");
    let mut b = blob.clone();
    b[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_payload(&b, &Limits::default()).is_err());
}

#[test]
fn legacy_blob_without_header() {
    let g = fc_graph();
    let fb = convert_to_flatbuffer(&g).expect("fb");
    let p = decode_payload(&fb, &Limits::default()).expect("legacy");
    assert!(p.header.is_none());
    assert_eq!(p.graph, g);
    assert_eq!(reencode_payload(&p).expect("enc"), fb);
}

#[test]
fn legacy_constant_buffer_round_trips() {
    let mut g = fc_graph();
    g.constant_data = None;
    g.constant_buffer = Some(vec![
        Buffer { storage: None },
        Buffer {
            storage: Some((0..37).collect()),
        },
    ]);
    g.mem_buffer_sizes = Some(vec![]);
    let fb = pack_flatbuffer(&g, &LEGACY_FILE_IDENTIFIER).expect("fb");
    let p = decode_payload(&fb, &Limits::default()).expect("decode");
    assert_eq!(p.graph, g);
    // The storage vector is 16-aligned (force_align) in the buffer.
    let storage_at = fb
        .windows(4)
        .position(|w| w == [0, 1, 2, 3])
        .expect("storage bytes");
    assert_eq!(storage_at % 16, 0);
    validate(&p.graph, &ConstantSources::default()).expect("valid");
    if let Some(XValueUnion::XNNTensorValue(t)) =
        &mut g.xvalues.as_mut().expect("v")[1].xvalue_union
    {
        t.constant_buffer_idx = 2;
    }
    let e = validate(&g, &ConstantSources::default()).expect_err("index");
    assert!(e.message().contains("constant_buffer"), "{e}");
}

#[test]
fn depth_and_table_limits() {
    let blob = serialize_xnnpack_binary(&fc_graph(), &[]).expect("ser");
    let e = decode_payload(
        &blob,
        &Limits {
            max_depth: 2,
            ..Limits::default()
        },
    )
    .expect_err("depth");
    assert!(matches!(e.kind(), XnnpackErrorKind::Flatbuffer(_)), "{e}");
    assert!(e.path().starts_with("xnodes[0]"), "{e}");
    let e = decode_payload(
        &blob,
        &Limits {
            max_tables: 5,
            ..Limits::default()
        },
    )
    .expect_err("tables");
    assert!(e.to_string().contains("number of tables"), "{e}");
}

#[test]
fn self_referencing_offset_is_an_error() {
    // Point the first xnodes element's uoffset at the vector's own length field: the
    // "table" there has a garbage vtable, or, if it verifies, a cycle that the table and
    // depth limits stop.
    let blob = serialize_xnnpack_binary(&fc_graph(), &[]).expect("ser");
    let p = decode_payload(&blob, &Limits::default()).expect("ok");
    assert!(p.graph.xnodes.is_some());
    for pos in (32..blob.len().saturating_sub(4)).step_by(4) {
        let mut b = blob.clone();
        b[pos..pos + 4].copy_from_slice(&0u32.to_le_bytes());
        let _ = decode_payload(&b, &Limits::default()); // no panic
        let mut b = blob.clone();
        b[pos..pos + 4].copy_from_slice(&4u32.wrapping_neg().to_le_bytes());
        let _ = decode_payload(&b, &Limits::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_payloads_never_panic(
        which in 0usize..64,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in any::<Option<usize>>(),
    ) {
        let blobs = corpus_blobs();
        let mut b = blobs[which % blobs.len()].clone();
        for (at, byte) in edits {
            let i = at % b.len();
            b[i] = byte;
        }
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        if let Ok(p) = decode_payload(&b, &Limits::default()) {
            let _ = validate(&p.graph, &ConstantSources { constant_data: p.constant_data, named: None });
            let _ = summary(&p, None);
            let _ = payload_json(&p);
            let again = reencode_payload(&p);
            prop_assert!(again.is_ok());
        }
    }
}
