//! Streaming `.ptd` writes: [`flat_tensor::plan`] / [`flat_tensor::plan_exact`] return
//! pieces that borrow the payload (no copy of the weights), assemble to exactly what the
//! former in-memory serializer produced (kept here as an oracle), and
//! `write_atomic` from a memory map reproduces the input, copying segments through the
//! source file descriptor.

#[path = "pte_support.rs"]
mod support;

use std::borrow::Cow;
use std::fs;

use proptest::prelude::*;
use ptekit_format::flat_tensor::{
    self, pack_flat_tensor, DataEntry, DataPayload, DataSegment, FlatTensor, FlatTensorConfig,
    FlatTensorFile, FlatTensorHeader, NamedData, Piece, ReadOptions, TensorLayout,
    FLAT_TENSOR_VERSION,
};
use ptekit_format::program::ScalarType;
use ptekit_format::pte::PteMap;
use ptekit_format::write::{SourceRef, WriteOptions};

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// The in-memory serializer `flat_tensor::serialize` was before it became `plan(..)
/// .to_vec()`: the whole file assembled in one `Vec`.
fn old_serialize(payload: &DataPayload<'_>, config: &FlatTensorConfig) -> Vec<u8> {
    let mut seg_of_buffer: Vec<Option<u32>> = vec![None; payload.buffers.len()];
    let mut seg_list: Vec<(&[u8], u64)> = Vec::new();
    let mut named = Vec::new();
    for e in &payload.named_data {
        let slot = &mut seg_of_buffer[e.buffer_index];
        let seg = match *slot {
            Some(s) => s,
            None => {
                let s = seg_list.len() as u32;
                *slot = Some(s);
                seg_list.push((&payload.buffers[e.buffer_index], e.alignment.max(1)));
                s
            }
        };
        named.push(NamedData {
            key: Some(e.key.clone()),
            segment_index: seg,
            tensor_layout: e.tensor_layout.clone(),
        });
    }
    let mut segments = Vec::new();
    let mut placed = Vec::new();
    let mut end = 0u64;
    for (data, alignment) in &seg_list {
        let offset = align_up(end, lcm(config.segment_alignment, *alignment));
        end = offset + data.len() as u64;
        segments.push(DataSegment {
            offset,
            size: data.len() as u64,
        });
        placed.push((offset, *data));
    }
    let fb = pack_flat_tensor(&FlatTensor {
        version: FLAT_TENSOR_VERSION,
        segments: Some(segments),
        named_data: Some(named),
    })
    .expect("pack");
    let base = align_up(fb.len() as u64 + 48, config.segment_alignment);
    let header = FlatTensorHeader {
        length: 40,
        flatbuffer_offset: 48,
        flatbuffer_size: fb.len() as u64,
        segment_base_offset: base,
        segment_data_size: end,
    };
    let root = u32::from_le_bytes(fb[0..4].try_into().unwrap()) + 48;
    let mut out = Vec::new();
    out.extend_from_slice(&root.to_le_bytes());
    out.extend_from_slice(&fb[4..8]);
    out.extend_from_slice(&header.encode());
    out.resize(56, 0);
    out.extend_from_slice(&fb[8..]);
    out.resize(base as usize, 0);
    for (offset, data) in placed {
        out.resize((base + offset) as usize, 0);
        out.extend_from_slice(data);
    }
    out.resize((base + end) as usize, 0);
    out
}

/// Asserts that every borrowed piece of `pieces` is one of `buffers` (same address and
/// length) and that owned pieces are only the small header parts.
fn assert_borrows(pieces: &[Piece<'_>], buffers: &[&[u8]]) -> usize {
    let mut borrowed = 0;
    for p in pieces {
        match p {
            Piece::Bytes(b) => {
                assert!(
                    buffers
                        .iter()
                        .any(|x| std::ptr::eq(x.as_ptr(), b.as_ptr()) && x.len() == b.len()),
                    "a borrowed piece of {} bytes is not one of the payload's buffers",
                    b.len()
                );
                borrowed += 1;
            }
            Piece::Owned(v) => assert!(v.len() <= 40, "owned piece of {} bytes", v.len()),
            Piece::Zeros(_) | Piece::Flatbuffer(_) => {}
        }
    }
    borrowed
}

#[test]
fn plan_borrows_the_payload_buffers() {
    let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let b: Vec<u8> = (0..4_097u32).map(|i| (i * 13 + 1) as u8).collect();
    let c: Vec<u8> = vec![9; 3];
    let payload = DataPayload {
        buffers: vec![
            Cow::Borrowed(&a[..]),
            Cow::Borrowed(&b[..]),
            Cow::Borrowed(&c[..]),
        ],
        named_data: vec![
            DataEntry {
                key: "b".into(),
                buffer_index: 1,
                alignment: 64,
                tensor_layout: Some(TensorLayout {
                    scalar_type: ScalarType(0),
                    sizes: Some(vec![4097]),
                    dim_order: Some(vec![0]),
                }),
            },
            DataEntry {
                key: "a".into(),
                buffer_index: 0,
                alignment: 16,
                tensor_layout: None,
            },
            // Shares buffer 1: no second segment.
            DataEntry {
                key: "b2".into(),
                buffer_index: 1,
                alignment: 1,
                tensor_layout: None,
            },
        ],
    };
    let config = FlatTensorConfig::default();
    let planned = flat_tensor::plan(&payload, &config).expect("plan");
    // Buffer 2 is referenced by no entry and is not written.
    assert_eq!(assert_borrows(planned.pieces(), &[&a, &b]), 2);
    let owned: u64 = planned
        .pieces()
        .iter()
        .filter(|p| !matches!(p, Piece::Bytes(_) | Piece::Zeros(_)))
        .map(Piece::len)
        .sum();
    assert!(
        owned < 1024,
        "{owned} bytes of the plan are not borrowed or zeros"
    );
    let bytes = planned.to_vec().expect("to_vec");
    assert_eq!(bytes.len() as u64, planned.len());
    assert!(bytes == old_serialize(&payload, &config));
    assert!(flat_tensor::serialize(&payload, &config).expect("serialize") == bytes);
    // The output parses back to the same data.
    let file = FlatTensorFile::parse(&bytes, &ReadOptions::default()).expect("parse");
    assert_eq!(file.named("a").expect("a").1, &a[..]);
    assert_eq!(file.named("b2").expect("b2").1, &b[..]);
    // Owned buffers are copied into the plan (the `Cow` must not be borrowed beyond it).
    let owned_payload = DataPayload {
        buffers: vec![Cow::Owned(a.clone())],
        named_data: vec![payload.named_data[1].clone()],
    };
    let planned = flat_tensor::plan(&owned_payload, &config).expect("plan");
    assert!(planned
        .pieces()
        .iter()
        .all(|p| !matches!(p, Piece::Bytes(_))));
    assert!(planned.to_vec().expect("to_vec") == old_serialize(&owned_payload, &config));
}

#[test]
fn corpus_plans_match_the_old_serializer_and_borrow_the_file() {
    for path in support::corpus_ptds() {
        let bytes = fs::read(&path).expect("read");
        let file = FlatTensorFile::parse(&bytes, &ReadOptions::default()).expect("parse");
        let segments: Vec<&[u8]> = file.segments().iter().map(|s| s.data).collect();
        let exact = flat_tensor::plan_exact(&file).expect("plan_exact");
        assert_borrows(exact.pieces(), &segments);
        assert!(
            exact.to_vec().expect("to_vec") == bytes,
            "{}",
            path.display()
        );
        for segment_alignment in [1, 16, 128, 4096, 48] {
            let config = FlatTensorConfig { segment_alignment };
            let relaid = flat_tensor::plan_relayout(&file, &config).expect("relayout");
            assert_borrows(relaid.pieces(), &segments);
            let out = relaid.to_vec().expect("to_vec");
            assert!(
                out == old_serialize(&file.to_payload(), &config),
                "{} alignment {segment_alignment}",
                path.display()
            );
            assert!(out == flat_tensor::relayout(&file, &config).expect("relayout"));
        }
    }
}

#[test]
fn write_atomic_from_a_map_reproduces_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    for path in support::corpus_ptds() {
        let map = PteMap::open(&path).expect("map");
        let file = FlatTensorFile::parse(map.bytes(), &ReadOptions::default()).expect("parse");
        let planned = flat_tensor::plan_exact(&file)
            .expect("plan")
            .with_source(Some(map.source()));
        let dest = dir.path().join("out.ptd");
        let mut last = (0, 0);
        let mut progress = |done: u64, total: u64| last = (done, total);
        let n = planned
            .write_atomic(&dest, &WriteOptions::default(), Some(&mut progress))
            .expect("write");
        assert_eq!(n, planned.len());
        assert_eq!(last, (n, n));
        assert!(
            fs::read(&dest).expect("read") == map.bytes(),
            "{}",
            path.display()
        );
        // Relayout streams too.
        let config = FlatTensorConfig {
            segment_alignment: 4096,
        };
        let relaid = flat_tensor::plan_relayout(&file, &config)
            .expect("relayout")
            .with_source(Some(map.source()));
        relaid
            .write_atomic(&dest, &WriteOptions { durable: false }, None)
            .expect("write");
        assert!(fs::read(&dest).expect("read") == relaid.to_vec().expect("to_vec"));
    }
}

#[test]
fn segments_are_copied_from_the_source_file() {
    // A source whose file content differs from the mapped bytes: the output carries the
    // file's bytes exactly where the segments are, which shows they were copied through
    // the file descriptor and not from memory.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = &support::corpus_ptds()[0];
    let bytes = fs::read(path).expect("read");
    let file = FlatTensorFile::parse(&bytes, &ReadOptions::default()).expect("parse");
    let other_path = dir.path().join("other.bin");
    let other: Vec<u8> = bytes.iter().map(|b| !b).collect();
    fs::write(&other_path, &other).expect("write");
    let other_file = fs::File::open(&other_path).expect("open");
    let planned = flat_tensor::plan_exact(&file)
        .expect("plan")
        .with_source(Some(SourceRef::new(&other_file, &bytes)));
    let dest = dir.path().join("out.ptd");
    planned
        .write_atomic(&dest, &WriteOptions { durable: false }, None)
        .expect("write");
    let out = fs::read(&dest).expect("read");
    assert_eq!(out.len(), bytes.len());
    let mut in_segment = vec![false; bytes.len()];
    for s in file.segments() {
        let start = s.file_offset as usize;
        in_segment[start..start + s.size as usize].fill(true);
    }
    assert!(
        in_segment.iter().any(|x| *x),
        "the corpus file has segment data"
    );
    for (i, inside) in in_segment.iter().enumerate() {
        let want = if *inside { other[i] } else { bytes[i] };
        assert_eq!(out[i], want, "byte {i}");
    }
}

/// Buffers; entries (buffer index, alignment, has a layout); segment alignment.
type RandomPayload = (Vec<Vec<u8>>, Vec<(usize, u64, bool)>, u64);

fn payload_strategy() -> impl Strategy<Value = RandomPayload> {
    let buffers = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6);
    buffers.prop_flat_map(|bufs| {
        let n = bufs.len();
        let entries = prop::collection::vec(
            (
                0..n,
                prop::sample::select(vec![0u64, 1, 2, 8, 16, 48, 64, 256]),
                any::<bool>(),
            ),
            0..8,
        );
        let alignment = prop::sample::select(vec![1u64, 3, 16, 128, 512]);
        (Just(bufs), entries, alignment)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_payloads_plan_like_the_old_serializer(
        (bufs, entries, segment_alignment) in payload_strategy()
    ) {
        let payload = DataPayload {
            buffers: bufs.iter().map(|b| Cow::Borrowed(&b[..])).collect(),
            named_data: entries
                .iter()
                .enumerate()
                .map(|(i, &(buffer_index, alignment, layout))| DataEntry {
                    key: format!("k{i}"),
                    buffer_index,
                    alignment,
                    tensor_layout: layout.then(|| TensorLayout {
                        scalar_type: ScalarType(6),
                        sizes: Some(vec![i as i32, 2]),
                        dim_order: Some(vec![0, 1]),
                    }),
                })
                .collect(),
        };
        let config = FlatTensorConfig { segment_alignment };
        let planned = flat_tensor::plan(&payload, &config).expect("plan");
        let refs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        assert_borrows(planned.pieces(), &refs);
        let out = planned.to_vec().expect("to_vec");
        prop_assert!(out == old_serialize(&payload, &config));
        // Random access reads agree with the assembled file.
        let mid = out.len() / 3;
        let mut buf = vec![0u8; out.len() / 2];
        let got = planned.read_at(mid as u64, &mut buf);
        prop_assert_eq!(&buf[..got], &out[mid..mid + got]);
        // The exact rewrite of the result is the result.
        let file = FlatTensorFile::parse(&out, &ReadOptions::default()).expect("parse");
        prop_assert!(flat_tensor::plan_exact(&file).expect("exact").to_vec().expect("vec") == out);
    }
}
