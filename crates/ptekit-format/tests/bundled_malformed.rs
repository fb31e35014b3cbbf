//! Malformed `.bpte` and `.ptd` inputs get clean errors (never panics): every
//! truncation, deterministic byte corruptions, and targeted damage with the expected
//! error, offset and field path.

#[path = "pte_support.rs"]
mod support;

use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{self, BundledFile};
use ptekit_format::error::ContainerError;
use ptekit_format::flat_tensor::{self, FlatTensorError, FlatTensorFile, ReadOptions};
use ptekit_format::pte;

/// The whole read path of a `.bpte`; returns whether it was accepted.
fn read_bpte(bytes: &[u8]) -> bool {
    let Ok(file) = BundledFile::parse(bytes, &Limits::default()) else {
        return false;
    };
    let _ = bundled::summary(&file);
    let _ = file.program_file(&pte::ReadOptions::default());
    let _ = bundled::rewrite(bytes, &Limits::default());
    true
}

fn read_ptd(bytes: &[u8]) -> bool {
    let Ok(file) = FlatTensorFile::parse(bytes, &ReadOptions::default()) else {
        return false;
    };
    let _ = flat_tensor::summary(&file);
    let _ = flat_tensor::rewrite_file(&file);
    true
}

#[test]
fn every_truncation_is_rejected() {
    let bpte = support::corpus_file("mlp.bpte");
    for cut in 0..bpte.len() {
        assert!(
            !read_bpte(&bpte[..cut]) || cut == bpte.len(),
            "bpte truncated to {cut} accepted"
        );
    }
    let ptd = support::corpus_file("external._default_external_constant.ptd");
    for cut in 0..ptd.len() {
        assert!(!read_ptd(&ptd[..cut]), "ptd truncated to {cut} accepted");
    }
}

#[test]
fn corruptions_never_panic() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, is_bpte) in [
        ("mlp.bpte", true),
        ("external._default_external_constant.ptd", false),
    ] {
        let base = support::corpus_file(name);
        // The flatbuffer part (offsets, vtables) is where damage matters; also hit data.
        let hot = if is_bpte { base.len() } else { 600 };
        for _ in 0..4000 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % hot as u64) as usize;
                b[at] = match next() % 4 {
                    0 => b[at] ^ (1 << (next() % 8)),
                    1 => 0xff,
                    2 => 0,
                    _ => next() as u8,
                };
            }
            if is_bpte {
                read_bpte(&b);
            } else {
                read_ptd(&b);
            }
        }
    }
}

#[test]
fn targeted_bpte_damage() {
    let good = support::corpus_file("mlp.bpte");
    // Wrong identifier.
    let mut b = good.clone();
    b[4..8].copy_from_slice(b"BP07");
    let e = decode_bundled(&b, &Limits::default()).expect_err("identifier");
    assert_eq!(e.offset(), 4);
    assert!(e.to_string().contains("BP07"), "{e}");
    // Not a bundled program at all: a .pte.
    assert!(decode_bundled(&support::corpus_file("mlp.pte"), &Limits::default()).is_err());

    // An unknown union type in a Value: find the first `val_type` byte (1 = Tensor) by
    // walking the decoded model's first value. Easiest robust route: re-pack a program
    // with one Int value and patch its tag.
    use ptekit_format::bundled::*;
    let bp = BundledProgram {
        version: 2,
        method_test_suites: Some(vec![BundledMethodTestSuite {
            method_name: Some("forward".into()),
            test_cases: Some(vec![BundledMethodTestCase {
                inputs: Some(vec![Value {
                    val: Some(ValueUnion::Int(Int {
                        int_val: 0x0102_0304,
                    })),
                }]),
                expected_outputs: Some(vec![]),
            }]),
        }]),
        program: Some(std::borrow::Cow::Borrowed(b"not a pte")),
    };
    let packed = pack_bundled(&bp).expect("pack");
    // The Value table holds the tag byte 2 (Int); the Int table holds 0x01020304.
    let tag_positions: Vec<usize> = packed
        .iter()
        .enumerate()
        .filter(|(_, &x)| x == 2)
        .map(|(i, _)| i)
        .collect();
    let mut found = false;
    for pos in tag_positions {
        let mut b = packed.clone();
        b[pos] = 9;
        if let Err(e) = decode_bundled(&b, &Limits::default()) {
            if e.to_string().contains("unknown union type 9") {
                assert_eq!(e.offset(), pos);
                assert!(
                    e.path()
                        .contains("method_test_suites[0].test_cases[0].inputs[0].val_type"),
                    "{}",
                    e.path()
                );
                found = true;
                break;
            }
        }
    }
    assert!(found, "patched tag not reported");
    // The embedded "program" is not a .pte: a clean error naming its offset.
    let file = BundledFile::parse(&packed, &Limits::default()).expect("parse");
    match file.program_file(&pte::ReadOptions::default()) {
        Err(BundledError::Program { offset, .. }) => assert_eq!(offset % 32, 0),
        other => panic!("expected a program error, got {other:?}"),
    }
    assert!(bundled::extract_program(&packed, &pte::ReadOptions::default()).is_err());

    // Limits apply: a tiny table budget.
    let e = decode_bundled(
        &good,
        &Limits {
            max_tables: 3,
            ..Limits::default()
        },
    )
    .expect_err("limit");
    assert!(e.to_string().contains("number of tables"), "{e}");
}

#[test]
fn targeted_ptd_damage() {
    let good = support::corpus_file("external._default_external_constant.ptd");
    let opts = ReadOptions::default();
    // Header magic.
    let mut b = good.clone();
    b[8..12].copy_from_slice(b"XX01");
    match FlatTensorFile::parse(&b, &opts) {
        Err(FlatTensorError::Header {
            field: "magic",
            offset: 8,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Identifier.
    let mut b = good.clone();
    b[4..8].copy_from_slice(b"ET12");
    assert!(matches!(
        FlatTensorFile::parse(&b, &opts),
        Err(FlatTensorError::BadIdentifier { .. })
    ));
    // segment_data_size past the end.
    let mut b = good.clone();
    b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    match FlatTensorFile::parse(&b, &opts) {
        Err(FlatTensorError::Header {
            field: "segment_data_size",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // flatbuffer_size past the end.
    let mut b = good.clone();
    b[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        FlatTensorFile::parse(&b, &opts),
        Err(FlatTensorError::Header {
            field: "flatbuffer_size",
            ..
        })
    ));
    // A segment beyond segment_data_size: shrink segment_data_size.
    let mut b = good.clone();
    b[40..48].copy_from_slice(&100u64.to_le_bytes());
    match FlatTensorFile::parse(&b, &opts) {
        Err(FlatTensorError::Container(ContainerError::Layout { field, .. })) => {
            assert!(field.starts_with("segments["), "{field}");
        }
        other => panic!("{other:?}"),
    }
    // Root offset pointing outside the flatbuffer.
    let mut b = good.clone();
    b[0..4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    match FlatTensorFile::parse(&b, &opts) {
        Err(FlatTensorError::Decode(e)) => assert_eq!(e.offset(), 0),
        other => panic!("{other:?}"),
    }
}

/// The byte positions an error message names: `file offset 0x…`, `at byte N`, and the
/// ends of `bytes 0x…..0x…` and `range 0x…..0x…` (not stored values such as a segment's
/// `offset 0x0`).
fn positions(message: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for (marker, radix) in [
        ("file offset 0x", 16),
        ("at byte ", 10),
        ("bytes 0x", 16),
        ("range 0x", 16),
        ("..0x", 16),
    ] {
        for (i, _) in message.match_indices(marker) {
            let rest = &message[i + marker.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_digit(radix)).collect();
            if let Ok(v) = u64::from_str_radix(&digits, radix) {
                out.push(v);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Every error of a `.bpte`'s embedded program names `.bpte` offsets: each byte of the
/// program flatbuffer of mlp.bpte changed in turn, the error `verify` gives for the
/// `.bpte` names the positions the same program's error names on its own, moved by where
/// the program starts; and where the program's error names the changed byte itself, the
/// `.bpte` error names that byte of the `.bpte` (before, decode and semantic errors named
/// positions in the program).
#[test]
fn embedded_program_errors_name_bpte_offsets() {
    let bpte = support::corpus_file("mlp.bpte");
    let opts = pte::ReadOptions::default();
    let file = BundledFile::parse(&bpte, &Limits::default()).expect("corpus .bpte");
    let start = file.program_offset().expect("embedded program") as usize;
    let program = file.program_file(&opts).expect("embedded program parses");
    let (len, size) = (program.bytes().len(), program.program_size() as usize);
    let original = bpte[start..start + len].to_vec();
    let (mut compared, mut at_flip) = (0, 0);
    for at in 0..size {
        for value in [0xff, 0x00] {
            if original[at] == value {
                continue;
            }
            let mut alone = original.clone();
            alone[at] = value;
            let own = match pte::PteFile::parse(&alone, &opts) {
                Err(e) => e.to_string(),
                Ok(f) => match f.verify() {
                    Err(e) => e.to_string(),
                    Ok(()) => continue,
                },
            };
            let mut outer = bpte.clone();
            outer[start + at] = value;
            let outer_file = BundledFile::parse(&outer, &Limits::default()).expect("outer parses");
            let message = match bundled::verify(&outer_file, &opts) {
                Err(e @ bundled::BundledError::Program { .. }) => e.to_string(),
                other => panic!("byte {at} = {value:#x}: {own}; the .bpte gave {other:?}"),
            };
            let prefix = format!("embedded program (at .bpte offset 0x{start:x}): ");
            let inner = message.strip_prefix(&prefix).expect("program error prefix");
            let want: Vec<u64> = positions(&own).iter().map(|p| p + start as u64).collect();
            assert_eq!(positions(inner), want, "byte {at}: {own}\n{message}");
            compared += 1;
            if positions(&own).contains(&(at as u64)) {
                assert!(
                    positions(inner).contains(&((start + at) as u64)),
                    "{message}"
                );
                at_flip += 1;
            }
        }
    }
    println!("{compared} program errors compared, {at_flip} naming the changed byte");
    assert!(compared > 500 && at_flip > 20, "{compared} {at_flip}");
}
