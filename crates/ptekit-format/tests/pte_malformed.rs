//! Malformed headers, segments and references give clean errors (naming the field and
//! the file offset), never a panic; truncation at every length of real files too.

#[path = "pte_support.rs"]
mod support;

use ptekit_format::program::{
    pack_program, BackendDelegateDataReference, DataLocation, DataSegment, PackOptions, Program,
    SubsegmentOffsets,
};
use ptekit_format::pte::{
    plan, plan_exact, relayout, restore, ExtendedHeader, PteError, PteFile, ReadOptions,
    SerializeOptions,
};

fn parse(bytes: &[u8]) -> Result<PteFile<'_>, PteError> {
    PteFile::parse(bytes, &ReadOptions::default())
}

/// Runs everything downstream of a successful parse; none of it may panic.
fn exercise(bytes: &[u8]) {
    if let Ok(file) = parse(bytes) {
        let _ = plan_exact(&file).and_then(|p| p.to_vec());
        let _ = relayout(&file, &SerializeOptions::default()).and_then(|p| p.to_vec());
        if let Ok(model) = restore(&file) {
            let opts = SerializeOptions {
                extract_delegate_segments: true,
                segment_alignment: 4096,
                ..SerializeOptions::default()
            };
            let _ = plan(&model, &opts).and_then(|p| p.to_vec());
        }
    }
}

/// A file around `program` laid out like the reference: header, program, zeros to
/// `align_up(program_size, 128)`, then `segment_area`; `segment_data_size` is the area's
/// length unless given.
fn assemble(program: &Program<'_>, segment_area: &[u8], sds: Option<u64>) -> Vec<u8> {
    let fb = pack_program(program, &PackOptions::default()).unwrap();
    let program_size = 32 + fb.len() as u64;
    let base = program_size.div_ceil(128) * 128;
    let header = ExtendedHeader::new(program_size, base, sds.unwrap_or(segment_area.len() as u64));
    let root = u32::from_le_bytes(fb[0..4].try_into().unwrap()) + 32;
    let mut out = Vec::new();
    out.extend_from_slice(&root.to_le_bytes());
    out.extend_from_slice(&fb[4..8]);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&fb[8..]);
    out.resize(base as usize, 0);
    out.extend_from_slice(segment_area);
    out
}

/// The program and segment area of a corpus file.
fn corpus_parts(name: &str) -> (Vec<u8>, usize) {
    let bytes = support::corpus_file(name);
    let base = parse(&bytes).unwrap().header().unwrap().segment_base_offset as usize;
    (bytes, base)
}

/// `mlp_xnnpack.pte` with its first delegate's `processed` reference replaced.
fn with_processed(location: DataLocation, index: u32) -> Vec<u8> {
    modified("mlp_xnnpack.pte", |p| {
        let d = &mut p.execution_plan.as_mut().unwrap()[0]
            .delegates
            .as_mut()
            .unwrap()[0];
        d.processed = Some(BackendDelegateDataReference { location, index });
    })
}

fn modified(name: &str, edit: impl FnOnce(&mut Program<'_>)) -> Vec<u8> {
    let (bytes, base) = corpus_parts(name);
    let file = parse(&bytes).unwrap();
    let mut program = file.program().clone();
    edit(&mut program);
    assemble(&program, &bytes[base..], None)
}

fn expect_err(bytes: &[u8], needles: &[&str]) -> String {
    let err = match parse(bytes) {
        Ok(_) => panic!("expected an error mentioning {needles:?}"),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(err.contains(n), "error {err:?} does not mention {n:?}");
    }
    exercise(bytes);
    err
}

#[test]
fn assemble_reproduces_the_corpus_layout() {
    // The helper itself is faithful: an unmodified program gives back the file.
    for name in ["mlp.pte", "mlp_xnnpack.pte", "kv_init.pte"] {
        let (bytes, _) = corpus_parts(name);
        assert!(modified(name, |_| {}) == bytes, "{name}");
    }
}

#[test]
fn truncation_at_every_length_is_a_clean_error() {
    for name in [
        "mlp.pte",
        "mlp_xnnpack.pte",
        "add.pte",
        "legacy_header24.pte",
    ] {
        let bytes = support::corpus_file(name);
        let has_header = ExtendedHeader::is_present(&bytes);
        for n in 0..bytes.len() {
            let r = parse(&bytes[..n]);
            if has_header {
                assert!(r.is_err(), "{name} truncated to {n} bytes parsed");
            }
            exercise(&bytes[..n]);
        }
        assert!(parse(&bytes).is_ok());
    }
}

#[test]
fn extreme_header_values_are_rejected_with_the_field_named() {
    let bytes = support::corpus_file("mlp.pte");
    let len = bytes.len() as u64;
    let h = *parse(&bytes).unwrap().header().unwrap();
    let with = |f: &dyn Fn(&mut ExtendedHeader)| {
        let mut h2 = h;
        f(&mut h2);
        let mut b = bytes.clone();
        let enc = h2.encode();
        b[8..8 + enc.len()].copy_from_slice(&enc);
        b
    };
    for (ps, needle) in [
        (0u64, "program_size"),
        (39, "program_size"),
        (len + 1, "program_size"),
        (u64::MAX, "program_size"),
        (5 << 32, "0x500000000"),
    ] {
        expect_err(&with(&|x| x.program_size = ps), &[needle]);
    }
    for (base, needle) in [
        (0u64, "segment_base_offset"),
        (h.program_size - 1, "segment_base_offset"),
        (len + 1, "segment_base_offset"),
        (u64::MAX, "segment_base_offset"),
        (1 << 40, "0x10000000000"),
    ] {
        expect_err(&with(&|x| x.segment_base_offset = base), &[needle]);
    }
    for sds in [len, u64::MAX, u64::MAX - h.segment_base_offset + 1, 6 << 32] {
        expect_err(
            &with(&|x| x.segment_data_size = Some(sds)),
            &["segment_data_size"],
        );
    }
    // A smaller segment_data_size cuts the constant segment off.
    expect_err(
        &with(&|x| x.segment_data_size = Some(16)),
        &["segments[0]", "segment data end"],
    );
    for length in [0u32, 23, 28, 31, 33, u32::MAX] {
        let mut b = bytes.clone();
        b[12..16].copy_from_slice(&length.to_le_bytes());
        expect_err(&b, &["length", &length.to_string()]);
    }
    // Length 24 on a current file: parses (the legacy header has no segment_data_size),
    // but the bytes after it are not zero padding, so the exact rewrite must refuse.
    let mut b = bytes.clone();
    b[12..16].copy_from_slice(&24u32.to_le_bytes());
    let file = parse(&b).unwrap();
    assert_eq!(file.inserted_block_len(), 24);
    assert!(matches!(
        plan_exact(&file),
        Err(PteError::NotReproducible { .. })
    ));
    exercise(&b);
}

#[test]
fn bad_segments_are_reported_with_offsets() {
    let err = expect_err(
        &modified("mlp_xnnpack.pte", |p| {
            p.segments.as_mut().unwrap()[3].offset = u64::MAX - 4;
        }),
        &["segments[3]", "overflows"],
    );
    println!("{err}");
    let err = expect_err(
        &modified("mlp_xnnpack.pte", |p| {
            p.segments.as_mut().unwrap()[3].offset = 7 << 32;
        }),
        &["segments[3].offset", "0x700000000", "past end of file"],
    );
    println!("{err}");
    expect_err(
        &modified("mlp_xnnpack.pte", |p| {
            p.segments.as_mut().unwrap()[2].size = 1 << 33;
        }),
        &["segments[2].size", "past end of file"],
    );
    let err = expect_err(
        &modified("mlp_xnnpack.pte", |p| {
            let s = p.segments.as_mut().unwrap();
            s[4].offset = s[3].offset + 64;
        }),
        &["segments[4]", "overlap segments[3]"],
    );
    println!("{err}");
    // Overlaps can be allowed explicitly.
    let b = modified("mlp_xnnpack.pte", |p| {
        let s = p.segments.as_mut().unwrap();
        s[4].offset = s[3].offset;
    });
    let opts = ReadOptions {
        allow_overlapping_segments: true,
        ..ReadOptions::default()
    };
    let file = PteFile::parse(&b, &opts).unwrap();
    let _ = plan_exact(&file).unwrap().to_vec().unwrap();
    // No header but a non-empty segment.
    let bytes = support::corpus_file("add.pte");
    let mut program = parse(&bytes).unwrap().program().clone();
    program.segments = Some(vec![DataSegment { offset: 0, size: 8 }]);
    let fb = pack_program(&program, &PackOptions::default()).unwrap();
    expect_err(&fb, &["segments[0]", "no extended header"]);
}

#[test]
fn bad_references_are_reported() {
    expect_err(
        &modified("mlp.pte", |p| {
            p.constant_segment.as_mut().unwrap().segment_index = 9;
        }),
        &["constant_segment.segment_index", "9"],
    );
    expect_err(
        &modified("mlp.pte", |p| {
            p.constant_segment
                .as_mut()
                .unwrap()
                .offsets
                .as_mut()
                .unwrap()[2] = 1 << 36;
        }),
        &["constant_segment.offsets[2]", "past end of segments[0]"],
    );
    expect_err(
        &modified("mlp.pte", |p| {
            let o = p
                .constant_segment
                .as_mut()
                .unwrap()
                .offsets
                .as_mut()
                .unwrap();
            o.swap(1, 2);
        }),
        &["constant_segment.offsets[2]", "smaller than the previous"],
    );
    expect_err(
        &modified("mlp_xnnpack.pte", |p| {
            p.named_data.as_mut().unwrap()[1].segment_index = 77;
        }),
        &["named_data[1].segment_index", "77"],
    );
    expect_err(
        &with_processed(DataLocation::SEGMENT, 40),
        &["execution_plan[0].delegates[0].processed.index", "40"],
    );
    expect_err(
        &with_processed(DataLocation(7), 0),
        &["processed.location", "7"],
    );
    expect_err(
        &with_processed(DataLocation::INLINE, 0),
        &["processed.index", "backend_delegate_data"],
    );
    expect_err(
        &modified("kv_init.pte", |p| {
            p.mutable_data_segments.as_mut().unwrap()[0].segment_index = 12;
        }),
        &["mutable_data_segments[0].segment_index"],
    );
    // Two mutable data segments: a valid file, but the reference cannot restore it.
    let b = modified("kv_init.pte", |p| {
        let m = p.mutable_data_segments.as_mut().unwrap();
        let first = m[0].clone();
        m.push(SubsegmentOffsets {
            segment_index: first.segment_index,
            offsets: Some(vec![0]),
        });
    });
    let file = parse(&b).unwrap();
    let err = restore(&file).unwrap_err().to_string();
    assert!(err.contains("more than 1 mutable data segment"), "{err}");
    exercise(&b);
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = support::Rng(0x9e37_79b9_7f4a_7c15);
    for name in [
        "mlp.pte",
        "mlp_xnnpack.pte",
        "kv_init.pte",
        "legacy_inline_constants.pte",
    ] {
        let bytes = support::corpus_file(name);
        for _ in 0..1500 {
            let mut b = bytes.clone();
            let flips = 1 + rng.next_u64() % 4;
            for _ in 0..flips {
                // Half of the corruptions hit the header and the first tables.
                let limit = if rng.next_u64() % 2 == 0 {
                    256.min(b.len())
                } else {
                    b.len()
                };
                let at = (rng.next_u64() % limit as u64) as usize;
                b[at] = rng.next_u64() as u8;
            }
            exercise(&b);
        }
    }
}
