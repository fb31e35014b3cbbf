//! Property tests of the verified reader: random valid buffers built with the Rust
//! builder read back to the values written, and mutated buffers never make it panic.

mod common;

use common::*;
use proptest::prelude::*;
use ptekit_flatbuffers::{Limits, Scalar, Table, Verifier};

fn read_val(t: &Table<'_, '_>, slot: usize, d: Val) -> Result<Val, ptekit_flatbuffers::Error> {
    Ok(match d {
        Val::Bool(d) => Val::Bool(t.get_bool(slot, d)?),
        Val::U8(d) => Val::U8(t.get_u8(slot, d)?),
        Val::I8(d) => Val::I8(t.get_i8(slot, d)?),
        Val::U16(d) => Val::U16(t.get_u16(slot, d)?),
        Val::I16(d) => Val::I16(t.get_i16(slot, d)?),
        Val::U32(d) => Val::U32(t.get_u32(slot, d)?),
        Val::I32(d) => Val::I32(t.get_i32(slot, d)?),
        Val::U64(d) => Val::U64(t.get_u64(slot, d)?),
        Val::I64(d) => Val::I64(t.get_i64(slot, d)?),
        Val::F32(d) => Val::F32(t.get_f32(slot, f32::from_bits(d))?.to_bits()),
        Val::F64(d) => Val::F64(t.get_f64(slot, f64::from_bits(d))?.to_bits()),
    })
}

fn vec_of<T: Scalar>(t: &Table<'_, '_>, slot: usize) -> Result<Vec<T>, String> {
    Ok(t.scalar_vector::<T>(slot)
        .map_err(|e| e.to_string())?
        .ok_or("missing vector")?
        .to_vec())
}

fn check_svec(t: &Table<'_, '_>, slot: usize, v: &SVec) -> Result<(), String> {
    let ok = match v {
        SVec::Bool(x) => vec_of::<bool>(t, slot)? == *x,
        SVec::U8(x) => vec_of::<u8>(t, slot)? == *x,
        SVec::I8(x) => vec_of::<i8>(t, slot)? == *x,
        SVec::U16(x) => vec_of::<u16>(t, slot)? == *x,
        SVec::I16(x) => vec_of::<i16>(t, slot)? == *x,
        SVec::U32(x) => vec_of::<u32>(t, slot)? == *x,
        SVec::I32(x) => vec_of::<i32>(t, slot)? == *x,
        SVec::U64(x) => vec_of::<u64>(t, slot)? == *x,
        SVec::I64(x) => vec_of::<i64>(t, slot)? == *x,
        SVec::F32(x) => {
            vec_of::<f32>(t, slot)?
                .iter()
                .map(|f| f.to_bits())
                .collect::<Vec<_>>()
                == *x
        }
        SVec::F64(x) => {
            vec_of::<f64>(t, slot)?
                .iter()
                .map(|f| f.to_bits())
                .collect::<Vec<_>>()
                == *x
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("vector mismatch at slot {slot}"))
    }
}

fn check_table(buf: &[u8], t: &Table<'_, '_>, node: &TableNode) -> Result<(), String> {
    let e = |e: ptekit_flatbuffers::Error| e.to_string();
    let mut slot = 0;
    for f in &node.fields {
        match f {
            Field::Scalar(x, d) => {
                let got = read_val(t, slot, *d).map_err(e)?;
                let want = if x.differs(*d) { *x } else { *d };
                if got != want {
                    return Err(format!("slot {slot}: got {got:?}, want {want:?}"));
                }
                if t.has_field(slot).map_err(e)? != x.differs(*d) {
                    return Err(format!("slot {slot}: presence wrong"));
                }
            }
            Field::Absent => {
                if t.has_field(slot).map_err(e)? {
                    return Err(format!("slot {slot}: should be absent"));
                }
            }
            Field::Union(tag, inner) => {
                let u = t.union(slot, slot + 1).map_err(e)?.ok_or("missing union")?;
                if u.tag() != *tag {
                    return Err(format!("slot {slot}: union tag {} != {tag}", u.tag()));
                }
                check_table(buf, &u.table(), inner)?;
            }
            Field::Overwrite(..) => return Err("unexpected overwrite".into()),
            Field::Child(n) => match &**n {
                Node::Table(inner) => {
                    let c = t.table(slot).map_err(e)?.ok_or("missing table")?;
                    if c.depth() != t.depth() + 1 {
                        return Err("depth".into());
                    }
                    check_table(buf, &c, inner)?;
                }
                Node::Str(s) => {
                    if t.string(slot).map_err(e)? != Some(s.as_str()) {
                        return Err(format!("slot {slot}: string mismatch"));
                    }
                }
                Node::SVec(v) => check_svec(t, slot, v)?,
                Node::Bytes(d, align) => {
                    let got = t.bytes(slot).map_err(e)?.ok_or("missing bytes")?;
                    if got != d.as_slice() {
                        return Err(format!("slot {slot}: bytes mismatch"));
                    }
                    // The data is aligned relative to the buffer start.
                    let pos = got.as_ptr() as usize - buf.as_ptr() as usize;
                    if pos % align != 0 {
                        return Err(format!("slot {slot}: bytes at {pos} not {align}-aligned"));
                    }
                }
                Node::TableVec(ts) => {
                    let v = t.table_vector(slot).map_err(e)?.ok_or("missing vector")?;
                    if v.len() != ts.len() {
                        return Err("table vector length".into());
                    }
                    for (i, inner) in ts.iter().enumerate() {
                        check_table(buf, &v.get(i).map_err(e)?, inner)?;
                    }
                    if v.get(ts.len()).is_ok() {
                        return Err("index past the end accepted".into());
                    }
                }
                Node::StrVec(ss) => {
                    let v = t.string_vector(slot).map_err(e)?.ok_or("missing vector")?;
                    let got: Vec<&str> = v.iter().collect::<Result<_, _>>().map_err(e)?;
                    if got != ss.iter().map(String::as_str).collect::<Vec<_>>() {
                        return Err("string vector mismatch".into());
                    }
                }
                Node::Shared(_) => return Err("unexpected shared".into()),
            },
        }
        slot += f.slots();
    }
    for extra in slot..slot + node.extra_slots + 2 {
        if t.has_field(extra).map_err(e)? {
            return Err(format!("slot {extra} should be absent"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn built_buffers_read_back(p in program_strategy(false)) {
        let buf = run_rust(&program_ops(&p, false), p.capacity);
        let v = Verifier::new(&buf, Limits::default()).unwrap();
        let root = match p.identifier {
            Some(id) => {
                let (root, found) = v.root_with_identifier(|f| *f == id).unwrap();
                prop_assert_eq!(found, id);
                root
            }
            None => v.root().unwrap(),
        };
        prop_assert_eq!(root.depth(), 1);
        if let Err(msg) = check_table(&buf, &root, &p.root) {
            return Err(TestCaseError::fail(msg));
        }
    }
}

/// Reads everything it can find, in every way, ignoring errors.
fn walk(t: Table<'_, '_>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = format!("{t:?}");
    for f in 0..t.num_fields().min(40) {
        let _ = t.get_bool(f, false);
        let _ = t.get_u8(f, 0);
        let _ = t.get_i16(f, 0);
        let _ = t.get_u32(f, 0);
        let _ = t.get_f32(f, 0.0);
        let _ = t.get_i64(f, 0);
        let _ = t.get_f64(f, 0.0);
        let _ = t.has_field(f);
        let _ = t.string(f);
        let _ = t
            .bytes(f)
            .map(|b| b.map(|b| b.iter().map(|x| *x as u64).sum::<u64>()));
        if let Ok(Some(v)) = t.scalar_vector::<u64>(f) {
            let _ = v.iter().rev().take(64).count();
            let _ = v.get(v.len());
            let _ = v.get(usize::MAX);
        }
        if let Ok(Some(v)) = t.scalar_vector::<u16>(f) {
            let _ = v.iter().take(64).count();
        }
        if let Ok(Some(v)) = t.string_vector(f) {
            for s in v.iter().take(16) {
                let _ = s;
            }
            let _ = v.get(usize::MAX);
        }
        if let Ok(Some(c)) = t.table(f) {
            walk(c, budget);
        }
        if let Ok(Some(v)) = t.table_vector(f) {
            for c in v.iter().take(16).flatten() {
                walk(c, budget);
            }
            let _ = v.get(usize::MAX);
        }
        if let Ok(Some(u)) = t.union(f, f + 1) {
            let _ = u.unknown_tag().to_string();
            walk(u.table(), budget);
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipBit(usize),
    U32(usize, u32),
    U16(usize, u16),
    Byte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let extreme32 = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(4),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0xffff_fffc),
        Just(u32::MAX),
        any::<u32>(),
        0..256u32,
    ];
    let extreme16 = prop_oneof![
        Just(0u16),
        Just(1),
        Just(2),
        Just(3),
        Just(4),
        Just(0xfffe),
        Just(u16::MAX),
        any::<u16>(),
        0..64u16,
    ];
    prop_oneof![
        1 => any::<usize>().prop_map(Mutation::Truncate),
        3 => any::<usize>().prop_map(Mutation::FlipBit),
        3 => (any::<usize>(), extreme32).prop_map(|(p, v)| Mutation::U32(p, v)),
        2 => (any::<usize>(), extreme16).prop_map(|(p, v)| Mutation::U16(p, v)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::Byte(p, v)),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len();
    if len == 0 {
        return;
    }
    match *m {
        Mutation::Truncate(p) => buf.truncate(p % len),
        Mutation::FlipBit(p) => {
            let bit = p % (len * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::U32(p, v) => {
            let at = (p % len) & !3;
            for (i, b) in v.to_le_bytes().iter().enumerate() {
                if let Some(x) = buf.get_mut(at + i) {
                    *x = *b;
                }
            }
        }
        Mutation::U16(p, v) => {
            let at = (p % len) & !1;
            for (i, b) in v.to_le_bytes().iter().enumerate() {
                if let Some(x) = buf.get_mut(at + i) {
                    *x = *b;
                }
            }
        }
        Mutation::Byte(p, v) => buf[p % len] = v,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_buffers_never_panic(
        p in program_strategy(true),
        mutations in prop::collection::vec(mutation(), 1..5),
        check_alignment in any::<bool>(),
    ) {
        let mut buf = run_rust(&program_ops(&p, false), p.capacity);
        for m in &mutations {
            apply(&mut buf, m);
        }
        let limits = Limits {
            max_tables: 5_000,
            check_alignment,
            ..Limits::default()
        };
        let v = Verifier::new(&buf, limits).unwrap();
        let _ = v.file_identifier();
        let _ = v.root_with_identifier(|_| true).map(|(t, _)| t.depth());
        if let Ok(root) = v.root() {
            // Schema-guided read (errors expected), then a generic walk.
            if p.root.fields.iter().all(|f| !matches!(f, Field::Overwrite(..))) {
                let _ = check_table(&buf, &root, &p.root);
            }
            let mut budget = 2_000;
            walk(root, &mut budget);
        }
    }
}
