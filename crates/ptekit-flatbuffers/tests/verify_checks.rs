//! Unit tests of each verifier check on hand-made (mostly malformed) buffers.

use ptekit_flatbuffers::{Builder, Error, ErrorKind, Limits, Verifier};

/// A small valid buffer, laid out by hand:
///
/// ```text
///  0: u32 root uoffset = 12
///  4: vtable: u16 size 8, u16 inline size 12, u16 field0 = 4, u16 field1 = 8
/// 12: table: i32 soffset = 8 (vtable at 4)
/// 16: field0: u32 = 42
/// 20: field1: uoffset = 4 -> 24
/// 24: string: u32 len 3, "abc", NUL
/// ```
fn base() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&12u32.to_le_bytes());
    for x in [8u16, 12, 4, 8] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b.extend_from_slice(&8i32.to_le_bytes());
    b.extend_from_slice(&42u32.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(b"abc\0");
    assert_eq!(b.len(), 32);
    b
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Reads field 0 as u32 and field 1 as a string, returning the first error.
fn read(buf: &[u8]) -> Result<(u32, Option<String>), Error> {
    let v = Verifier::new(buf, Limits::default())?;
    let t = v.root()?;
    let a = t.get_u32(0, 0).map_err(|e| e.in_field("a"))?;
    let s = t.string(1).map_err(|e| e.in_field("s"))?;
    Ok((a, s.map(str::to_owned)))
}

fn err(buf: &[u8]) -> Error {
    read(buf).expect_err("expected an error")
}

#[test]
fn base_buffer_is_valid() {
    assert_eq!(read(&base()).unwrap(), (42, Some("abc".to_string())));
}

#[test]
fn root_offset_checks() {
    let e = err(&[1, 2]);
    assert!(
        matches!(
            e.kind(),
            ErrorKind::OutOfBounds {
                what: "root offset",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(err(&[]).kind(), ErrorKind::OutOfBounds { .. }));

    let mut b = base();
    put32(&mut b, 0, 0);
    assert_eq!(err(&b).kind(), &ErrorKind::ZeroOffset);

    put32(&mut b, 0, 32); // one past the end
    let e = err(&b);
    assert_eq!(
        e.kind(),
        &ErrorKind::OutOfBounds {
            what: "root offset",
            value: 32
        }
    );
    assert_eq!(e.offset(), 0);

    put32(&mut b, 0, u32::MAX);
    assert!(matches!(err(&b).kind(), ErrorKind::OutOfBounds { .. }));

    put32(&mut b, 0, 13);
    let e = err(&b);
    assert_eq!(
        e.kind(),
        &ErrorKind::Misaligned {
            what: "table",
            align: 4
        }
    );
    assert_eq!(e.offset(), 13);
}

#[test]
fn soffset_and_vtable_checks() {
    let mut b = base();
    put32(&mut b, 12, (-1000i32) as u32); // vtable at 1012
    assert!(matches!(err(&b).kind(), ErrorKind::BadVtable { .. }));
    put32(&mut b, 12, 1000); // vtable at -988
    assert!(matches!(err(&b).kind(), ErrorKind::BadVtable { .. }));
    put32(&mut b, 12, i32::MIN as u32);
    assert!(matches!(err(&b).kind(), ErrorKind::BadVtable { .. }));
    put32(&mut b, 12, 7); // vtable at 5: misaligned
    let e = err(&b);
    assert_eq!(
        e.kind(),
        &ErrorKind::Misaligned {
            what: "vtable",
            align: 2
        }
    );
    assert_eq!(e.offset(), 5);
    put32(&mut b, 12, (-18i32) as u32); // vtable at 30: only its size fits
    put16(&mut b, 30, 4);
    assert!(matches!(
        err(&b).kind(),
        ErrorKind::OutOfBounds { what: "vtable", .. }
    ));

    for bad_size in [0u16, 2, 3, 7] {
        let mut b = base();
        put16(&mut b, 4, bad_size);
        let e = err(&b);
        assert!(
            matches!(e.kind(), ErrorKind::BadVtable { .. }),
            "{bad_size}: {e}"
        );
        assert_eq!(e.offset(), 4);
    }
    let mut b = base();
    put16(&mut b, 4, 30); // vtable would extend past the buffer
    assert!(matches!(
        err(&b).kind(),
        ErrorKind::OutOfBounds { what: "vtable", .. }
    ));

    let mut b = base();
    put16(&mut b, 6, 2); // inline size < 4
    assert!(matches!(err(&b).kind(), ErrorKind::BadVtable { .. }));
    put16(&mut b, 6, 100); // table past the end
    assert!(matches!(
        err(&b).kind(),
        ErrorKind::OutOfBounds { what: "table", .. }
    ));

    // A shorter vtable means absent fields, with defaults.
    let mut b = base();
    put16(&mut b, 4, 4);
    assert_eq!(read(&b).unwrap(), (0, None));
}

#[test]
fn field_checks() {
    let mut b = base();
    put16(&mut b, 8, 10); // u32 at 10..14 exceeds inline size 12
    let e = err(&b);
    assert!(matches!(e.kind(), ErrorKind::BadVtable { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "a: invalid vtable: field extends past the table's inline size at byte 8"
    );
    put16(&mut b, 8, 2); // overlaps the soffset
    assert!(matches!(err(&b).kind(), ErrorKind::BadVtable { .. }));
    put16(&mut b, 8, 6); // inside, but misaligned for u32
    let e = err(&b);
    assert_eq!(
        e.kind(),
        &ErrorKind::Misaligned {
            what: "field",
            align: 4
        }
    );
    assert_eq!(e.offset(), 18);
    // Without alignment checks the same field reads fine.
    let v = Verifier::new(
        &b,
        Limits {
            check_alignment: false,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        v.root().unwrap().get_u32(0, 0).unwrap(),
        u32::from_le_bytes([0, 0, 4, 0])
    );
    // A u8 at an odd offset is fine.
    let v = Verifier::new(&b, Limits::default()).unwrap();
    let t = v.root().unwrap();
    assert_eq!(t.get_u8(0, 9).unwrap(), 0);
    // Field index far beyond the vtable: default.
    assert_eq!(t.get_u64(usize::MAX, 7).unwrap(), 7);
    assert!(!t.has_field(1_000_000).unwrap());
    assert_eq!(t.num_fields(), 2);
}

#[test]
fn string_checks() {
    let mut b = base();
    put32(&mut b, 20, 0);
    let e = err(&b);
    assert_eq!(e.kind(), &ErrorKind::ZeroOffset);
    assert_eq!(e.to_string(), "s: invalid zero uoffset at byte 20");

    put32(&mut b, 20, 12); // 32: past the end
    assert!(matches!(
        err(&b).kind(),
        ErrorKind::OutOfBounds {
            what: "uoffset",
            ..
        }
    ));
    put32(&mut b, 20, u32::MAX);
    assert!(matches!(
        err(&b).kind(),
        ErrorKind::OutOfBounds {
            what: "uoffset",
            ..
        }
    ));
    put32(&mut b, 20, 6); // string at 26: misaligned length
    assert_eq!(
        err(&b).kind(),
        &ErrorKind::Misaligned {
            what: "vector",
            align: 4
        }
    );

    let mut b = base();
    put32(&mut b, 24, u32::MAX);
    let e = err(&b);
    assert_eq!(
        e.kind(),
        &ErrorKind::OutOfBounds {
            what: "vector length",
            value: 4294967295
        }
    );
    assert_eq!(
        e.to_string(),
        "s: vector length 4294967295 out of bounds at byte 24"
    );
    put32(&mut b, 24, 4); // "abc\0" fills the buffer: no room for the NUL
    assert!(matches!(err(&b).kind(), ErrorKind::MissingNul));

    let mut b = base();
    b[31] = b'x';
    let e = err(&b);
    assert_eq!(e.kind(), &ErrorKind::MissingNul);
    assert_eq!(e.offset(), 31);

    let mut b = base();
    b[29] = 0xff;
    let e = err(&b);
    assert_eq!(e.kind(), &ErrorKind::InvalidUtf8 { valid_up_to: 1 });
    assert_eq!(e.offset(), 29);

    // Truncations anywhere never panic and always error.
    let b = base();
    for n in 0..b.len() {
        assert!(read(&b[..n]).is_err(), "truncated to {n}");
    }
}

#[test]
fn bytes_and_vectors() {
    let mut b = Builder::new();
    let bytes = b.create_aligned_bytes(&[1, 2, 3], 16);
    let longs = b.create_scalar_vector(&[1u64, u64::MAX]);
    let empty = b.create_scalar_vector::<f32>(&[]);
    let t1 = {
        b.start_object(1);
        b.add_i32(0, -5, 0);
        b.end_object()
    };
    let tables = b.create_offset_vector(&[t1, t1]);
    b.start_object(4);
    b.add_offset(0, bytes);
    b.add_offset(1, longs);
    b.add_offset(2, empty);
    b.add_offset(3, tables);
    let root = b.end_object();
    b.finish(root, None);
    let buf = b.into_finished_data();

    let v = Verifier::new(&buf, Limits::default()).unwrap();
    let t = v.root().unwrap();
    let got = t.bytes(0).unwrap().unwrap();
    assert_eq!(got, &[1, 2, 3]);
    assert_eq!((got.as_ptr() as usize - buf.as_ptr() as usize) % 16, 0);
    let l = t.scalar_vector::<u64>(1).unwrap().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l.get(1), Some(u64::MAX));
    assert_eq!(l.get(2), None);
    assert_eq!(l.iter().rev().collect::<Vec<_>>(), vec![u64::MAX, 1]);
    assert_eq!(format!("{l:?}"), format!("[1, {}]", u64::MAX));
    assert!(t.scalar_vector::<f32>(2).unwrap().unwrap().is_empty());
    let tv = t.table_vector(3).unwrap().unwrap();
    assert_eq!(tv.len(), 2);
    for x in tv.iter() {
        assert_eq!(x.unwrap().get_i32(0, 0).unwrap(), -5);
    }
    let e = tv.get(2).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::IndexOutOfRange { index: 2, len: 2 });
    assert_eq!(v.tables_visited(), 3);
}

#[test]
fn misaligned_vector_elements() {
    // 0: root = 12; 4: vtable [6, 8, 4] + 2 pad; 12: table, soffset 8; 16: uoffset 8 -> 24;
    // 24: vector len 1; 28: 8 bytes of data (4 mod 8: misaligned for u64).
    let mut b = Vec::new();
    b.extend_from_slice(&12u32.to_le_bytes());
    for x in [6u16, 8, 4, 0] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b.extend_from_slice(&8i32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&7u64.to_le_bytes());
    let v = Verifier::new(&b, Limits::default()).unwrap();
    let t = v.root().unwrap();
    let e = t.scalar_vector::<u64>(0).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::Misaligned {
            what: "vector elements",
            align: 8
        }
    );
    assert_eq!(e.offset(), 28);
    // As u32s (length 1: the first 4 bytes) it is fine.
    assert_eq!(
        t.scalar_vector::<u32>(0).unwrap().unwrap().to_vec(),
        vec![7]
    );
    // Without alignment checks the u64 reads.
    let v = Verifier::new(
        &b,
        Limits {
            check_alignment: false,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        v.root()
            .unwrap()
            .scalar_vector::<u64>(0)
            .unwrap()
            .unwrap()
            .get(0),
        Some(7)
    );
    // A length that makes len * 8 overflow or exceed the buffer.
    for len in [2u32, 0x2000_0000, u32::MAX] {
        let mut b2 = b.clone();
        b2[24..28].copy_from_slice(&len.to_le_bytes());
        let v = Verifier::new(&b2, Limits::default()).unwrap();
        let e = v.root().unwrap().scalar_vector::<u64>(0).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::OutOfBounds {
                what: "vector length",
                value: len.into()
            }
        );
    }
    // An empty vector has no element to misread: flatc writes an empty `[long]` without
    // aligning its (absent) elements, and FlatBuffers' C++ verifier accepts it.
    let mut empty = b.clone();
    empty[24..28].copy_from_slice(&0u32.to_le_bytes());
    let v = Verifier::new(&empty, Limits::default()).unwrap();
    let got = v.root().unwrap().scalar_vector::<u64>(0).unwrap().unwrap();
    assert!(got.is_empty());
}

#[test]
fn identifier_checks() {
    let mut b = Builder::new();
    b.start_object(0);
    let r = b.end_object();
    b.finish(r, Some(b"ET12"));
    let buf = b.into_finished_data();
    let v = Verifier::new(&buf, Limits::default()).unwrap();
    assert_eq!(v.file_identifier(), Some(*b"ET12"));
    let et = |id: &[u8; 4]| id.starts_with(b"ET") && id[2..].iter().all(u8::is_ascii_alphanumeric);
    let (_, id) = v.root_with_identifier(et).unwrap();
    assert_eq!(&id, b"ET12");
    let e = v.root_with_identifier(|id| id == b"XX00").unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::BadIdentifier {
            found: Some(*b"ET12")
        }
    );
    assert_eq!(e.offset(), 4);
    assert_eq!(
        e.to_string(),
        "unexpected file identifier \"ET12\" at byte 4"
    );

    let short = [4u8, 0, 0, 0, 0, 0];
    let v = Verifier::new(&short, Limits::default()).unwrap();
    let e = v.root_with_identifier(|_| true).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::BadIdentifier { found: None });
}

#[test]
fn buffer_size_limit() {
    let buf = base();
    let e = Verifier::new(&buf, Limits::new(64, 10, 31)).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::BufferTooLarge { len: 32, limit: 31 });
    assert!(Verifier::new(&buf, Limits::new(64, 10, 32)).is_ok());
}

/// A chain of `n` nested tables (each table's field 0 is the next one).
fn chain(n: usize) -> Vec<u8> {
    let mut b = Builder::new();
    let mut child = 0;
    for i in 0..n {
        b.start_object(2);
        b.add_offset(0, child);
        b.add_u32(1, i as u32, u32::MAX);
        child = b.end_object();
    }
    b.finish(child, None);
    b.into_finished_data()
}

fn depth_of(t: ptekit_flatbuffers::Table<'_, '_>) -> Result<usize, Error> {
    match t.table(0).map_err(|e| e.in_field("next"))? {
        None => Ok(1),
        Some(c) => Ok(1 + depth_of(c).map_err(|e| e.in_field("next"))?),
    }
}

#[test]
fn depth_limit() {
    let buf = chain(64);
    let v = Verifier::new(&buf, Limits::default()).unwrap();
    assert_eq!(depth_of(v.root().unwrap()).unwrap(), 64);

    let buf = chain(65);
    let v = Verifier::new(&buf, Limits::default()).unwrap();
    let e = depth_of(v.root().unwrap()).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::DepthLimit { limit: 64 });
    assert_eq!(e.path().count(), 64);
    assert!(e.to_string().starts_with("next.next.next."), "{e}");
}

#[test]
fn table_limit_stops_dag_blowup() {
    // Each level is a vector holding the previous level's table 8 times: visiting the
    // whole DAG would take 8^12 table visits from a buffer of a few hundred bytes.
    let mut b = Builder::new();
    let mut child = {
        b.start_object(1);
        b.end_object()
    };
    for _ in 0..12 {
        let v = b.create_offset_vector(&[child; 8]);
        b.start_object(1);
        b.add_offset(0, v);
        child = b.end_object();
    }
    b.finish(child, None);
    let buf = b.into_finished_data();
    assert!(buf.len() < 1000);

    fn count(t: ptekit_flatbuffers::Table<'_, '_>) -> Result<u64, Error> {
        let mut n = 1;
        if let Some(v) = t.table_vector(0)? {
            for (i, c) in v.iter().enumerate() {
                n += count(c.map_err(|e| e.at_index(i))?).map_err(|e| e.at_index(i))?;
            }
        }
        Ok(n)
    }
    let limits = Limits {
        max_apparent_size: Some(u64::MAX),
        ..Limits::default()
    };
    let v = Verifier::new(&buf, limits).unwrap();
    let e = count(v.root().unwrap()).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::TableLimit { limit: 1_000_000 });
    assert_eq!(v.tables_visited(), 1_000_001);

    // With the default apparent-size limit (4 x buffer + 4096) it stops much earlier.
    let v = Verifier::new(&buf, Limits::default()).unwrap();
    let e = count(v.root().unwrap()).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::ApparentSizeLimit { .. }),
        "{e}"
    );
    assert!(v.tables_visited() < 10_000);
}

#[test]
fn large_program_passes_default_limits() {
    // 100k "values", each a table holding a union to a tensor-like table with a vector.
    let n = 100_000;
    let mut b = Builder::new();
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let sizes = b.create_scalar_vector(&[i as i32, 2, 3]);
        b.start_object(3);
        b.add_i8(0, 6, 0);
        b.add_offset(1, sizes);
        let tensor = b.end_object();
        b.start_object(2);
        b.add_union(0, 1, 5, tensor);
        values.push(b.end_object());
    }
    let vals = b.create_offset_vector(&values);
    b.start_object(1);
    b.add_offset(0, vals);
    let root = b.end_object();
    b.finish(root, Some(b"ET12"));
    let buf = b.into_finished_data();

    let v = Verifier::new(&buf, Limits::default()).unwrap();
    let root = v.root().unwrap();
    let vals = root.table_vector(0).unwrap().unwrap();
    assert_eq!(vals.len(), n);
    for (i, val) in vals.iter().enumerate() {
        let u = val.unwrap().union(0, 1).unwrap().unwrap();
        assert_eq!(u.tag(), 5);
        let sizes = u.table().scalar_vector::<i32>(1).unwrap().unwrap();
        assert_eq!(sizes.get(0), Some(i as i32));
    }
    assert_eq!(v.tables_visited(), 2 * n + 1);
}

#[test]
fn unions() {
    let mut b = Builder::new();
    b.start_object(1);
    let member = b.end_object();
    b.start_object(4);
    b.add_union(0, 1, 9, member);
    b.add_u8(2, 3, 0); // tag without a value
    let root = b.end_object();
    b.finish(root, None);
    let buf = b.into_finished_data();
    let v = Verifier::new(&buf, Limits::default()).unwrap();
    let t = v.root().unwrap();
    let u = t.union(0, 1).unwrap().unwrap();
    assert_eq!(u.tag(), 9);
    let e = u.unknown_tag().in_field("val");
    assert_eq!(e.kind(), &ErrorKind::BadUnionType { found: 9 });
    assert!(e
        .to_string()
        .starts_with("val: unknown union type 9 at byte "));
    assert_eq!(
        t.union(2, 3).unwrap_err().kind(),
        &ErrorKind::MissingRequired
    );
    // Absent tag: NONE.
    assert!(t.union(3, 1).unwrap().is_none());
}

#[test]
fn error_path_display() {
    let e = Error::new(
        ErrorKind::OutOfBounds {
            what: "vector length",
            value: 4294967295,
        },
        812,
    )
    .in_field("sizes")
    .in_union_member("Tensor")
    .in_field("val")
    .at_index(17)
    .in_field("values")
    .at_index(0)
    .in_field("execution_plan");
    assert_eq!(
        e.to_string(),
        "execution_plan[0].values[17].val.Tensor.sizes: vector length 4294967295 out of bounds at byte 812"
    );
    assert_eq!(e.offset(), 812);
}
