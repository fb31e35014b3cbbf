//! Every reference `.pte` in the shared corpus decodes, matches its independent
//! `*.summary.json`, and re-packs to exactly the reference's flatbuffer bytes.

#[path = "pte_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ptekit_flatbuffers::Limits;
use ptekit_format::program::{
    decode_program, file_identifier, pack_program, validate, InstructionArguments, IssueKind,
    KernelTypes, PackOptions, Program,
};
use serde_json::Value;

fn corpus_files() -> Vec<PathBuf> {
    let dir = support::corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} unreadable: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pte"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the reference corpus in {}",
        dir.display()
    );
    files
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The program part of a file (the flatbuffer with the inserted header) and the
/// length of the inserted block (0 without extended header).
fn program_part(file: &[u8]) -> (&[u8], usize) {
    if file.get(8..12) == Some(b"eh00") {
        let header_len = u32_at(file, 12) as usize;
        let program_size = u64_at(file, 16) as usize;
        // `serialize_pte_binary` pads the header with zeros to a multiple of the
        // schema's max alignment (16 for every corpus file, 24-byte legacy header
        // included): the inserted block is `align_up(header_len, 16)` bytes.
        let block = header_len.div_ceil(16) * 16;
        assert!(
            file[8 + header_len..8 + block].iter().all(|&b| b == 0),
            "header padding not zero"
        );
        (&file[..program_size], block)
    } else {
        (file, 0)
    }
}

/// Undoes `_insert_flatbuffer_header`: removes the inserted block after the
/// identifier and subtracts its length from the root offset.
fn original_flatbuffer(program: &[u8], block: usize) -> Vec<u8> {
    if block == 0 {
        return program.to_vec();
    }
    let root = u32_at(program, 0) as usize;
    assert!(root >= block + 8);
    let mut out = Vec::with_capacity(program.len() - block);
    out.extend_from_slice(&((root - block) as u32).to_le_bytes());
    out.extend_from_slice(&program[4..8]);
    out.extend_from_slice(&program[8 + block..]);
    out
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[test]
fn corpus_repacks_byte_for_byte() {
    let limits = Limits::default();
    for path in corpus_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file_identifier(&file), Some(*b"ET12"), "{name}");
        let (program_bytes, block) = program_part(&file);
        // Decode over the file prefix, extended header included.
        let program = decode_program(program_bytes, &limits)
            .unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
        // ... and over the whole file (segments after the flatbuffer are harmless).
        assert_eq!(decode_program(&file, &limits).unwrap(), program, "{name}");
        let expected = original_flatbuffer(program_bytes, block);
        // The same content decodes from the header-less flatbuffer.
        assert_eq!(
            decode_program(&expected, &limits).unwrap(),
            program,
            "{name}"
        );

        let packed = pack_program(&program, &PackOptions::default())
            .unwrap_or_else(|e| panic!("{name}: pack failed: {e}"));
        if let Some(at) = first_diff(&packed, &expected) {
            panic!(
                "{name}: packed bytes differ from the reference at byte {at} \
                 (ours {} bytes, reference {} bytes)",
                packed.len(),
                expected.len()
            );
        }
        // Owned copies pack identically.
        let owned: Program<'static> = program.clone().into_owned();
        assert_eq!(
            pack_program(&owned, &PackOptions::default()).unwrap(),
            expected
        );

        let mut issues = validate(&program);
        if name.contains("legacy_inline_constants") {
            // The 1.5.1 runtime refuses the inline constant layout (tested in
            // tests/python/test_verify_vs_runtime.py); it is the only issue.
            assert!(
                issues.len() == 1 && issues[0].kind == IssueKind::Unsupported,
                "{issues:#?}"
            );
            issues.clear();
        }
        assert!(
            issues.is_empty(),
            "{name}: unexpected validation issues: {issues:#?}"
        );
        eprintln!("{name}: {} bytes of flatbuffer match", packed.len());
    }
}

fn operator_name(name: &Option<String>, overload: &Option<String>) -> String {
    let name = name.clone().unwrap_or_default();
    match overload.as_deref() {
        None | Some("") => name,
        Some(o) => format!("{name}.{o}"),
    }
}

fn count<I: IntoIterator<Item = &'static str>>(items: I) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in items {
        *m.entry(k.to_string()).or_insert(0) += 1;
    }
    m
}

fn json_counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn json_i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn corpus_matches_summaries() {
    let limits = Limits::default();
    for path in corpus_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let summary_path = path.with_extension("summary.json");
        let summary: Value =
            serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
        let file = std::fs::read(&path).unwrap();
        let program = decode_program(&file, &limits).unwrap();

        assert_eq!(summary["bytes"].as_u64().unwrap(), file.len() as u64);
        assert_eq!(
            u64::from(program.version),
            summary["version"].as_u64().unwrap()
        );
        assert_eq!(
            program.constant_buffer.as_ref().map_or(0, Vec::len) as u64,
            summary["constant_buffer_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            program.backend_delegate_data.as_ref().map_or(0, Vec::len) as u64,
            summary["backend_delegate_data_len"].as_u64().unwrap(),
            "{name}"
        );
        let segments: Vec<(u64, u64)> = program
            .segments
            .iter()
            .flatten()
            .map(|s| (s.offset, s.size))
            .collect();
        let want_segments: Vec<(u64, u64)> = summary["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["offset"].as_u64().unwrap(), s["size"].as_u64().unwrap()))
            .collect();
        assert_eq!(segments, want_segments, "{name}");
        match (&program.constant_segment, &summary["constant_segment"]) {
            (Some(cs), Value::Object(o)) => {
                assert_eq!(
                    u64::from(cs.segment_index),
                    o["segment_index"].as_u64().unwrap()
                );
                assert_eq!(
                    cs.offsets.as_ref().map_or(0, Vec::len) as u64,
                    o["offsets"].as_u64().unwrap(),
                    "{name}"
                );
            }
            (None, Value::Null) => {}
            (ours, theirs) => panic!("{name}: constant_segment {ours:?} vs {theirs}"),
        }
        let mds: Vec<(u64, u64)> = program
            .mutable_data_segments
            .iter()
            .flatten()
            .map(|m| {
                (
                    u64::from(m.segment_index),
                    m.offsets.as_ref().map_or(0, Vec::len) as u64,
                )
            })
            .collect();
        let want_mds: Vec<(u64, u64)> = summary["mutable_data_segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["segment_index"].as_u64().unwrap(),
                    m["offsets"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(mds, want_mds, "{name}");
        let named: Vec<(String, u64)> = program
            .named_data
            .iter()
            .flatten()
            .map(|n| {
                (
                    n.key.clone().unwrap_or_default(),
                    u64::from(n.segment_index),
                )
            })
            .collect();
        let want_named: Vec<(String, u64)> = summary["named_data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["key"].as_str().unwrap().to_string(),
                    n["segment_index"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(named, want_named, "{name}");

        let plans = program.execution_plan.as_ref().unwrap();
        let want_plans = summary["execution_plans"].as_array().unwrap();
        assert_eq!(plans.len(), want_plans.len(), "{name}");
        for (plan, want) in plans.iter().zip(want_plans) {
            let ctx = format!("{name}/{}", plan.name.as_deref().unwrap_or("?"));
            assert_eq!(plan.name.as_deref(), want["name"].as_str(), "{ctx}");
            let values = plan.values.as_deref().unwrap_or_default();
            assert_eq!(
                values.len() as u64,
                want["values"].as_u64().unwrap(),
                "{ctx}"
            );
            let kinds = count(
                values
                    .iter()
                    .map(|v| v.val.as_ref().map_or("None", KernelTypes::kind_name)),
            );
            assert_eq!(kinds, json_counts(&want["value_kinds"]), "{ctx}");
            let chains = plan.chains.as_deref().unwrap_or_default();
            assert_eq!(
                chains.len() as u64,
                want["chains"].as_u64().unwrap(),
                "{ctx}"
            );
            let instrs = count(chains.iter().flat_map(|c| {
                c.instructions.iter().flatten().map(|i| {
                    i.instr_args
                        .as_ref()
                        .map_or("None", InstructionArguments::kind_name)
                })
            }));
            assert_eq!(instrs, json_counts(&want["instructions"]), "{ctx}");
            let ops: Vec<String> = plan
                .operators
                .iter()
                .flatten()
                .map(|o| operator_name(&o.name, &o.overload))
                .collect();
            let want_ops: Vec<String> = want["operators"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect();
            assert_eq!(ops, want_ops, "{ctx}");
            let inputs: Vec<i64> = plan
                .inputs
                .iter()
                .flatten()
                .map(|&i| i64::from(i))
                .collect();
            assert_eq!(inputs, json_i64s(&want["inputs"]), "{ctx}");
            let outputs: Vec<i64> = plan
                .outputs
                .iter()
                .flatten()
                .map(|&i| i64::from(i))
                .collect();
            assert_eq!(outputs, json_i64s(&want["outputs"]), "{ctx}");
            let sizes: Vec<i64> = plan.non_const_buffer_sizes.clone().unwrap_or_default();
            assert_eq!(sizes, json_i64s(&want["non_const_buffer_sizes"]), "{ctx}");
            let delegates: Vec<(String, usize)> = plan
                .delegates
                .iter()
                .flatten()
                .map(|d| {
                    (
                        d.id.clone().unwrap_or_default(),
                        d.compile_specs.as_ref().map_or(0, Vec::len),
                    )
                })
                .collect();
            let want_delegates: Vec<(String, usize)> = want["delegates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["id"].as_str().unwrap().to_string(),
                        d["compile_specs"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect();
            assert_eq!(delegates, want_delegates, "{ctx}");
        }
    }
}
