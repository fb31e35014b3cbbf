//! Malformed input never panics the decoder; limits and error locations are reported.

#[path = "pte_support.rs"]
mod support;

use std::borrow::Cow;

use ptekit_flatbuffers::{Builder, ErrorKind, Limits};
use ptekit_format::program::*;
use support::XorShiftStar as Rng;

/// The program part of a .pte (the flatbuffer with its inserted header, if any).
fn program_part(file: &[u8]) -> &[u8] {
    if file.get(8..12) == Some(b"eh00") {
        let size = u64::from_le_bytes(file[16..24].try_into().unwrap()) as usize;
        &file[..size]
    } else {
        file
    }
}

/// Decodes, and if that succeeds, also validates and re-packs (none may panic).
fn exercise(buf: &[u8], limits: &Limits) -> bool {
    match decode_program(buf, limits) {
        Ok(p) => {
            let _ = validate(&p);
            let _ = pack_program(&p, &PackOptions::default());
            true
        }
        Err(e) => {
            // Errors render and carry an offset inside (or just past) the buffer.
            let _ = e.to_string();
            assert!(
                e.offset() <= buf.len() + 8,
                "offset {} for len {}",
                e.offset(),
                buf.len()
            );
            false
        }
    }
}

/// xorshift64*: deterministic, dependency-free randomness for the fuzz loops.
/// Finishes `b` as a program whose one plan lists the table `evalue` `count` times.
fn program_of_shared_value(
    mut b: Builder,
    evalue: ptekit_flatbuffers::UOffset,
    count: usize,
) -> Vec<u8> {
    let values = b.create_offset_vector(&vec![evalue; count]);
    b.start_object(10);
    b.add_offset(2, values);
    let plan = b.end_object();
    let plans = b.create_offset_vector(&[plan]);
    b.start_object(8);
    b.add_offset(1, plans);
    let root = b.end_object();
    b.finish(root, Some(b"ET12"));
    b.into_finished_data()
}

#[test]
fn truncation_at_every_length() {
    let limits = Limits::default();
    for name in [
        "mlp.pte",
        "cond.pte",
        "multi_method.pte",
        "stacktrace.pte",
        "mlp_xnnpack.pte",
        "add.pte",
    ] {
        let file = support::corpus_file(name);
        let prog = program_part(&file);
        let mut ok = 0;
        for len in 0..prog.len() {
            if exercise(&prog[..len], &limits) {
                ok += 1;
            }
        }
        // The full program decodes; a truncated one essentially never does (the root
        // table sits near the end of the buffer).
        assert!(exercise(prog, &limits), "{name}");
        assert!(ok < prog.len() / 10, "{name}: {ok} truncations decoded");
    }
    // A larger file with a stride.
    let file = support::corpus_file("transformer.pte");
    let prog = program_part(&file);
    for len in (0..prog.len()).step_by(7) {
        exercise(&prog[..len], &limits);
    }
}

#[test]
fn random_bit_flips() {
    let limits = Limits::default();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for name in [
        "mlp.pte",
        "scalars_lists.pte",
        "mlp_xnnpack.pte",
        "kv_init.pte",
        "stacktrace.pte",
    ] {
        let file = support::corpus_file(name);
        let prog = program_part(&file).to_vec();
        let (mut ok, mut err) = (0, 0);
        for round in 0..3000 {
            let mut buf = prog.clone();
            let flips = 1 + round % 4;
            for _ in 0..flips {
                let i = rng.index(buf.len());
                buf[i] ^= 1 << rng.index(8);
            }
            if exercise(&buf, &limits) {
                ok += 1;
            } else {
                err += 1;
            }
        }
        eprintln!("{name}: {ok} flipped buffers decoded, {err} rejected");
        assert!(err > 0);
    }
}

#[test]
fn extreme_u32_at_every_position() {
    let limits = Limits::default();
    let file = support::corpus_file("mlp.pte");
    let prog = program_part(&file).to_vec();
    let len = prog.len() as u32;
    let extremes = [
        0u32,
        1,
        2,
        3,
        4,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffc,
        0xffff_ffff,
        len,
        len - 4,
        len / 2,
    ];
    let mut rejected = 0;
    for pos in (0..prog.len() - 3).step_by(4) {
        for &x in &extremes {
            let mut buf = prog.clone();
            buf[pos..pos + 4].copy_from_slice(&x.to_le_bytes());
            if !exercise(&buf, &limits) {
                rejected += 1;
            }
        }
    }
    assert!(rejected > 0);
}

#[test]
fn random_garbage_with_valid_header() {
    let limits = Limits::default();
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let n = 8 + rng.index(200);
        let mut buf: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        buf[4..8].copy_from_slice(b"ET12");
        // Small root offsets make it past the first checks more often.
        let root = (rng.index(n) & !3) as u32;
        buf[0..4].copy_from_slice(&root.to_le_bytes());
        exercise(&buf, &limits);
    }
}

// ------------------------------------------------------------------ hand-made buffers

fn kind(e: &DecodeError) -> &ErrorKind {
    e.kind()
}

#[test]
fn zero_offset_is_rejected() {
    // Root table whose execution_plan field (slot 1) holds a uoffset of 0, i.e. an
    // offset that points at itself.
    let mut b = Builder::new();
    b.start_object(8);
    b.add_u32(0, 7, 0);
    let root = b.end_object();
    b.finish(root, Some(b"ET12"));
    let mut buf = b.into_finished_data();
    let program = decode_program(&buf, &Limits::default()).unwrap();
    assert_eq!(program.version, 7);
    // Hand-craft: root uoffset 0 points at itself.
    buf[0..4].copy_from_slice(&0u32.to_le_bytes());
    let e = decode_program(&buf, &Limits::default()).unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::ZeroOffset, "{e}");
    assert_eq!(e.offset(), 0);
}

#[test]
fn self_referencing_vector_hits_table_limit() {
    // One EValue table referenced 100 000 times from `values`: a tiny buffer that would
    // visit (and allocate) 100 000 tables.
    let mut b = Builder::new();
    b.start_object(1);
    b.add_i64(0, 5, 0);
    let int = b.end_object();
    b.start_object(2);
    b.add_u8(0, 2, 0); // KernelTypes::Int
    b.add_offset(1, int);
    let evalue = b.end_object();
    let buf = program_of_shared_value(b, evalue, 100_000);

    let limits = Limits {
        max_tables: 1000,
        ..Limits::default()
    };
    let e = decode_program(&buf, &limits).unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::TableLimit { limit: 1000 }, "{e}");
    assert!(
        e.path().starts_with("execution_plan[0].values["),
        "{}",
        e.path()
    );

    // The default limits stop it too, by the apparent size (4 x the buffer): each
    // visit of the shared tables counts.
    let e = decode_program(&buf, &Limits::default()).unwrap_err();
    assert!(
        matches!(kind(&e), ErrorKind::ApparentSizeLimit { .. }),
        "{e}"
    );
    // Sharing itself is legal: with generous limits the program decodes.
    let generous = Limits {
        max_apparent_size: Some(u64::MAX),
        ..Limits::default()
    };
    let p = decode_program(&buf, &generous).unwrap();
    assert_eq!(
        p.execution_plan.unwrap()[0].values.as_ref().unwrap().len(),
        100_000
    );
}

#[test]
fn shared_large_vector_hits_apparent_size_limit() {
    // One IntList of 10 000 items referenced 5 000 times: 400 MB if decoded naively.
    let mut b = Builder::new();
    let items = b.create_scalar_vector(&vec![1i64; 10_000]);
    b.start_object(1);
    b.add_offset(0, items);
    let list = b.end_object();
    b.start_object(2);
    b.add_u8(0, 7, 0); // KernelTypes::IntList
    b.add_offset(1, list);
    let evalue = b.end_object();
    let buf = program_of_shared_value(b, evalue, 5_000);
    let e = decode_program(&buf, &Limits::default()).unwrap_err();
    assert!(
        matches!(kind(&e), ErrorKind::ApparentSizeLimit { .. }),
        "{e}"
    );
    assert!(e.path().contains(".val.IntList.items"), "{}", e.path());
}

fn nested_program() -> Program<'static> {
    Program {
        execution_plan: Some(vec![ExecutionPlan {
            values: Some(vec![
                EValue {
                    val: Some(KernelTypes::Int(Int { int_val: 1 })),
                },
                EValue {
                    val: Some(KernelTypes::Tensor(Tensor {
                        scalar_type: ScalarType::FLOAT,
                        sizes: Some(vec![7_777_777, 8_888_888]),
                        extra_tensor_info: Some(ExtraTensorInfo {
                            fully_qualified_name: Some("w".into()),
                            ..ExtraTensorInfo::default()
                        }),
                        ..Tensor::default()
                    })),
                },
            ]),
            ..ExecutionPlan::default()
        }]),
        ..Program::default()
    }
}

#[test]
fn deep_nesting_hits_depth_limit() {
    let buf = pack_program(&nested_program(), &PackOptions::default()).unwrap();
    // Program 1, ExecutionPlan 2, EValue 3, Tensor 4, ExtraTensorInfo 5.
    decode_program(&buf, &Limits::new(5, 1_000_000, 1 << 31)).unwrap();
    let e = decode_program(&buf, &Limits::new(4, 1_000_000, 1 << 31)).unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::DepthLimit { limit: 4 }, "{e}");
    assert_eq!(
        e.path(),
        "execution_plan[0].values[1].val.Tensor.extra_tensor_info"
    );
}

#[test]
fn error_names_offset_and_field_path() {
    let mut buf = pack_program(&nested_program(), &PackOptions::default()).unwrap();
    let needle: Vec<u8> = [7_777_777i32, 8_888_888]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let data = buf.windows(8).position(|w| w == needle.as_slice()).unwrap();
    let len_pos = data - 4;
    assert_eq!(&buf[len_pos..data], &2u32.to_le_bytes());
    buf[len_pos..data].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = decode_program(&buf, &Limits::default()).unwrap_err();
    assert_eq!(e.path(), "execution_plan[0].values[1].val.Tensor.sizes");
    assert_eq!(e.offset(), len_pos);
    let msg = e.to_string();
    assert!(
        msg.contains("execution_plan[0].values[1].val.Tensor.sizes"),
        "{msg}"
    );
    assert!(msg.contains(&format!("byte {len_pos}")), "{msg}");
}

#[test]
fn union_tags_are_checked() {
    let program = nested_program();
    let buf = pack_program(&program, &PackOptions::default()).unwrap();
    // Find the Int EValue's tag: EValue tables are (vtable soffset, then fields); find the
    // union type byte 2 (Int) by decoding candidates: flip each byte equal to 2 to 99 and
    // look for the unknown-union error on values[0].
    let mut found = false;
    for i in 0..buf.len() {
        if buf[i] != 2 {
            continue;
        }
        let mut b = buf.clone();
        b[i] = 99;
        if let Err(e) = decode_program(&b, &Limits::default()) {
            if e.kind() == &(ErrorKind::BadUnionType { found: 99 }) {
                assert_eq!(e.path(), "execution_plan[0].values[0].val");
                assert_eq!(e.offset(), i);
                found = true;
            }
        }
    }
    assert!(found);
}

#[test]
fn identifier_policy() {
    let mut buf = pack_program(&nested_program(), &PackOptions::default()).unwrap();
    assert_eq!(file_identifier(&buf), Some(*b"ET12"));
    buf[4..8].copy_from_slice(b"ET0Z");
    let p = decode_program(&buf, &Limits::default()).unwrap();
    assert_eq!(p, nested_program());
    let exact = DecodeOptions {
        limits: &Limits::default(),
        identifier: IdentifierPolicy::Exact(*b"ET12"),
    };
    let e = decode_program_with(&buf, &exact).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::BadIdentifier {
            found: Some(*b"ET0Z")
        }
    );
    assert_eq!(e.offset(), 4);
    for bad in [b"XT12", b"ET1\0", b"et12", b"ET1-"] {
        buf[4..8].copy_from_slice(bad);
        assert!(decode_program(&buf, &Limits::default()).is_err());
        let ignore = DecodeOptions {
            limits: &Limits::default(),
            identifier: IdentifierPolicy::Ignore,
        };
        assert!(decode_program_with(&buf, &ignore).is_ok());
    }
    assert!(decode_program(&buf[..7], &Limits::default()).is_err());
    assert_eq!(file_identifier(&buf[..7]), None);
}

#[test]
fn zero_copy_bytes() {
    let file = support::corpus_file("legacy_inline_constants.pte");
    let p = decode_program(&file, &Limits::default()).unwrap();
    let buffers = p.constant_buffer.as_ref().unwrap();
    assert!(buffers.len() > 1);
    let range = file.as_ptr_range();
    for b in buffers {
        match &b.storage {
            Some(Cow::Borrowed(s)) => {
                assert!(range.contains(&s.as_ptr()) || s.is_empty());
                // Force-aligned to the tensor alignment (16) relative to the file start.
                if !s.is_empty() {
                    assert_eq!((s.as_ptr() as usize - file.as_ptr() as usize) % 16, 0);
                }
            }
            other => panic!("storage not borrowed: {other:?}"),
        }
    }
}

#[test]
fn pack_rejects_bad_alignment_and_oversize() {
    let p = nested_program();
    for (ta, da) in [(0, 16), (16, 0), (3, 16), (16, 48), (1 << 31, 16)] {
        let e = pack_program(
            &p,
            &PackOptions {
                tensor_alignment: ta,
                delegate_alignment: da,
            },
        )
        .unwrap_err();
        assert!(matches!(e, PackError::BadAlignment { .. }), "{e}");
    }
    assert_eq!(max_alignment(&PackOptions::default()), 16);
    assert_eq!(
        max_alignment(&PackOptions {
            tensor_alignment: 16,
            delegate_alignment: 128
        }),
        128
    );
    // 33 references to one 64 MiB slice: 2.06 GiB of payload, rejected before copying.
    let chunk = vec![0u8; 64 << 20];
    let big = Program {
        constant_buffer: Some(
            (0..33)
                .map(|_| Buffer {
                    storage: Some(Cow::Borrowed(&chunk[..])),
                })
                .collect(),
        ),
        ..Program::default()
    };
    let e = pack_program(&big, &PackOptions::default()).unwrap_err();
    assert!(matches!(e, PackError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("2147483648"), "{e}");
}
