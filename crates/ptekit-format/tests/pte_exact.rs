//! `plan_exact` reproduces every corpus file byte for byte; `PteFile::parse` agrees with
//! the corpus summaries.

#[path = "pte_support.rs"]
mod support;

use ptekit_format::pte::{infer_pack_options, plan_exact, PteFile, ReadOptions};

#[test]
fn plan_exact_is_byte_identical_for_every_corpus_file() {
    for path in support::corpus_ptes() {
        let bytes = std::fs::read(&path).unwrap();
        let file = PteFile::parse(&bytes, &ReadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let planned = plan_exact(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let out = planned.to_vec().unwrap();
        assert_eq!(planned.len(), out.len() as u64);
        support::assert_same_bytes(&path, &out, &bytes);
        let opts = infer_pack_options(&file).unwrap();
        println!(
            "{}: header {:?} block {} pack {:?}",
            path.file_name().unwrap().to_string_lossy(),
            file.header().map(|h| h.length),
            file.inserted_block_len(),
            opts
        );
    }
}

/// `relayout` with default options re-creates what the reference's
/// `serialize_pte_binary(deserialize_pte_binary(f), extract_delegate_segments=<as in f>)`
/// gives (checked byte for byte in `pte_reference.rs`). That is the input itself only when
/// the input's `named_data` was a written (possibly empty) vector or the file has no header:
/// restoring sets `named_data = []`, so a file written with `named_data` absent comes back
/// 8 bytes larger (an empty vector and its field). The content is the same either way.
#[test]
fn relayout_with_default_options_keeps_the_content() {
    for path in support::corpus_ptes() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
        let out = ptekit_format::pte::relayout(&file, &Default::default())
            .unwrap()
            .to_vec()
            .unwrap();
        let up = PteFile::parse(&out, &ReadOptions::default()).unwrap();
        let before = ptekit_format::pte::restore(&file).unwrap();
        let after = ptekit_format::pte::restore(&up).unwrap();
        assert_eq!(before, after, "{name}");
        let named_data_written = file.program().named_data.is_some();
        if name.starts_with("legacy_") {
            // Upgraded: 32-byte header, constants in a segment.
            assert_eq!(up.header().unwrap().length, 32, "{name}");
            let cs = up.program().constant_segment.as_ref().unwrap();
            assert_eq!(cs.offsets.as_ref().unwrap().len(), 5, "{name}");
            assert_eq!(up.program().constant_buffer.as_ref().map(Vec::len), Some(0));
        } else if named_data_written || file.header().is_none() {
            assert!(
                out == bytes,
                "{name}: differs at {:?}",
                support::first_diff(&out, &bytes)
            );
        } else {
            assert_eq!(out.len(), bytes.len(), "{name}");
            assert_eq!(up.program_size(), file.program_size() + 8, "{name}");
            assert_eq!(up.program().named_data.as_deref(), Some(&[][..]), "{name}");
        }
    }
}

#[test]
fn parse_agrees_with_the_corpus_summaries() {
    for path in support::corpus_ptes() {
        let summary_path = path.with_extension("summary.json");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
        let name = path.display().to_string();
        assert_eq!(
            summary["bytes"].as_u64(),
            Some(bytes.len() as u64),
            "{name}"
        );
        match file.header() {
            None => assert!(summary["extended_header"].is_null(), "{name}"),
            Some(h) => {
                let eh = &summary["extended_header"];
                assert_eq!(eh["program_size"].as_u64(), Some(h.program_size), "{name}");
                assert_eq!(
                    eh["segment_base_offset"].as_u64(),
                    Some(h.segment_base_offset),
                    "{name}"
                );
                // The reference reports 0 for a legacy header without the field.
                assert_eq!(
                    eh["segment_data_size"].as_u64(),
                    Some(h.segment_data_size.unwrap_or(0)),
                    "{name}"
                );
            }
        }
        let segs: Vec<(u64, u64)> = file.segments().iter().map(|s| (s.offset, s.size)).collect();
        let expected: Vec<(u64, u64)> = summary["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["offset"].as_u64().unwrap(), s["size"].as_u64().unwrap()))
            .collect();
        assert_eq!(segs, expected, "{name}");
        let named: Vec<(String, u32)> = file
            .program()
            .named_data
            .iter()
            .flatten()
            .map(|n| (n.key.clone().unwrap(), n.segment_index))
            .collect();
        let expected: Vec<(String, u32)> = summary["named_data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["key"].as_str().unwrap().to_string(),
                    n["segment_index"].as_u64().unwrap() as u32,
                )
            })
            .collect();
        assert_eq!(named, expected, "{name}");
        for s in file.segments() {
            assert_eq!(s.data.len() as u64, s.size);
        }
    }
}

#[test]
fn trailing_bytes_are_kept_and_padding_comes_out_zero() {
    for name in [
        "add.pte",
        "mlp.pte",
        "legacy_header24.pte",
        "transformer_xnnpack.pte",
    ] {
        let mut bytes = support::corpus_file(name);
        bytes.extend_from_slice(b"trailing signature \x01\x02\x03");
        let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
        let out = plan_exact(&file).unwrap().to_vec().unwrap();
        assert!(
            out == bytes,
            "{name}: {:?}",
            support::first_diff(&out, &bytes)
        );
    }
    // Garbage in the padding between program and segments and between segments is
    // normalized to zeros; everything else is kept.
    let bytes = support::corpus_file("mlp_xnnpack.pte");
    let file = PteFile::parse(&bytes, &ReadOptions::default()).unwrap();
    let h = *file.header().unwrap();
    let mut dirty = bytes.clone();
    let gap_in_header_padding = h.program_size as usize + 3;
    let s1 = &file.segments()[1];
    let gap_between_segments = (s1.file_offset.unwrap() + s1.size) as usize + 5;
    assert!(gap_between_segments < (h.segment_base_offset + file.segments()[2].offset) as usize);
    dirty[gap_in_header_padding] = 0xAA;
    dirty[gap_between_segments] = 0xBB;
    let dirty_file = PteFile::parse(&dirty, &ReadOptions::default()).unwrap();
    let out = plan_exact(&dirty_file).unwrap().to_vec().unwrap();
    assert!(out == bytes);
}
