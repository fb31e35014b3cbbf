//! `flat_tensor::serialize` against the reference's `FlatTensorSerializer(config)
//! .serialize` on random payloads (shared buffers, empty buffers, per-entry alignments,
//! several segment alignments including non-powers of two, with and without tensor
//! layouts): identical bytes; the reference's `deserialize` of our bytes equals our
//! reading; and every output rewrites exactly.

#[path = "pte_support.rs"]
mod support;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;

use ptekit_format::flat_tensor::{
    self, DataEntry, DataPayload, FlatTensorConfig, FlatTensorFile, TensorLayout,
};
use ptekit_format::program::ScalarType;
use serde_json::{json, Value as Json};
use support::{hex, XorShiftStar as Rng};

fn run_helper(python: &Path, spec: &Json, out: &Path) {
    let spec_path = out.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).expect("json")).expect("write");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bundled_reference.py");
    let res = Command::new(python)
        .arg(&script)
        .arg("ptd")
        .arg(&spec_path)
        .arg(out)
        .output()
        .expect("run helper");
    assert!(
        res.status.success(),
        "helper failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

const SEGMENT_ALIGNMENTS: [u64; 6] = [1, 16, 128, 4096, 48, 100];
const ENTRY_ALIGNMENTS: [u64; 7] = [0, 1, 2, 16, 64, 256, 24];

fn random_payload(r: &mut Rng) -> (DataPayload<'static>, FlatTensorConfig, Json) {
    let nbuf = r.below(5) as usize;
    let buffers: Vec<Vec<u8>> = (0..nbuf)
        .map(|_| {
            let n = [0u64, 1, 7, 64, 300][r.below(5) as usize] as usize;
            (0..n).map(|_| r.next() as u8).collect()
        })
        .collect();
    let mut entries = Vec::new();
    if nbuf > 0 {
        for i in 0..r.below(6) {
            let layout = (r.below(3) != 0).then(|| {
                let rank = r.below(4) as usize;
                TensorLayout {
                    scalar_type: ScalarType([0i8, 3, 4, 6, 7, 11][r.below(6) as usize]),
                    sizes: Some((0..rank).map(|_| r.below(9) as i32).collect()),
                    dim_order: Some((0..rank as u8).collect()),
                }
            });
            entries.push(DataEntry {
                key: format!("tensor.{i}.{}", r.below(100)),
                buffer_index: r.below(nbuf as u64) as usize,
                alignment: ENTRY_ALIGNMENTS[r.below(ENTRY_ALIGNMENTS.len() as u64) as usize],
                tensor_layout: layout,
            });
        }
    }
    let config = FlatTensorConfig {
        segment_alignment: SEGMENT_ALIGNMENTS[r.below(SEGMENT_ALIGNMENTS.len() as u64) as usize],
    };
    let j = json!({
        "segment_alignment": config.segment_alignment,
        "buffers": buffers.iter().map(|b| hex(b)).collect::<Vec<_>>(),
        "named_data": entries.iter().map(|e| json!({
            "key": e.key,
            "buffer_index": e.buffer_index,
            "alignment": e.alignment,
            "tensor_layout": e.tensor_layout.as_ref().map(|l| json!({
                "scalar_type": l.scalar_type.0,
                "sizes": l.sizes,
                "dim_order": l.dim_order,
            })),
        })).collect::<Vec<_>>(),
    });
    let payload = DataPayload {
        buffers: buffers.into_iter().map(Cow::Owned).collect(),
        named_data: entries,
    };
    (payload, config, j)
}

#[test]
fn serialize_matches_reference_on_random_payloads() {
    let Some(python) = support::reference_python("serialize_matches_reference_on_random_payloads")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Rng(0x7E45_0F1A_7000_0042);
    let cases: Vec<_> = (0..80).map(|_| random_payload(&mut r)).collect();
    let mut decode = Vec::new();
    let mut ours = Vec::new();
    for (i, (payload, config, _)) in cases.iter().enumerate() {
        let bytes = flat_tensor::serialize(payload, config).expect("serialize");
        let p = dir.path().join(format!("ours{i}.ptd"));
        std::fs::write(&p, &bytes).expect("write");
        decode.push(p.display().to_string());
        ours.push(bytes);
    }
    let spec = json!({"cases": cases.iter().map(|(_, _, j)| j.clone()).collect::<Vec<_>>(), "decode": decode});
    run_helper(&python, &spec, dir.path());
    let mut alignments_seen = std::collections::BTreeSet::new();
    for (i, ((_, config, j), bytes)) in cases.iter().zip(&ours).enumerate() {
        let reference = std::fs::read(dir.path().join(format!("case{i}.ptd"))).expect("ref");
        assert!(
            *bytes == reference,
            "case {i}: serialize differs from the reference for {j}"
        );
        let file = FlatTensorFile::parse(bytes, &Default::default()).expect("parse ours");
        let view: Json = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("decode{i}.view.json"))).expect("view"),
        )
        .expect("json");
        assert_eq!(support::ptd_view(&file), view, "case {i}");
        assert!(
            flat_tensor::rewrite_file(&file).expect("rewrite") == *bytes,
            "case {i}"
        );
        alignments_seen.insert(config.segment_alignment);
    }
    assert!(
        alignments_seen.len() >= 4,
        "segment alignments covered: {alignments_seen:?}"
    );
}
