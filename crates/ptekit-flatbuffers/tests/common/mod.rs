//! Shared test support: random build programs (as trees and as op lists), a Rust
//! interpreter for op lists, and the Python reference driver process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use proptest::prelude::*;
use ptekit_flatbuffers::{Builder, UOffset};
use serde_json::{json, Value};

// ----------------------------------------------------------------------------- values

/// A typed scalar; floats are kept as bit patterns so NaN payloads and -0.0 survive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Bool(bool),
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(u32),
    F64(u64),
}

impl Val {
    pub fn ty(&self) -> &'static str {
        match self {
            Val::Bool(_) => "bool",
            Val::U8(_) => "u8",
            Val::I8(_) => "i8",
            Val::U16(_) => "u16",
            Val::I16(_) => "i16",
            Val::U32(_) => "u32",
            Val::I32(_) => "i32",
            Val::U64(_) => "u64",
            Val::I64(_) => "i64",
            Val::F32(_) => "f32",
            Val::F64(_) => "f64",
        }
    }

    pub fn to_json(self) -> Value {
        match self {
            Val::Bool(x) => json!(u8::from(x)),
            Val::U8(x) => json!(x),
            Val::I8(x) => json!(x),
            Val::U16(x) => json!(x),
            Val::I16(x) => json!(x),
            Val::U32(x) => json!(x),
            Val::I32(x) => json!(x),
            Val::U64(x) => json!(x),
            Val::I64(x) => json!(x),
            Val::F32(x) => json!(x),
            Val::F64(x) => json!(x),
        }
    }

    /// Python's `x != default` (IEEE for floats).
    pub fn differs(self, d: Val) -> bool {
        match (self, d) {
            (Val::F32(a), Val::F32(b)) => f32::from_bits(a) != f32::from_bits(b),
            (Val::F64(a), Val::F64(b)) => f64::from_bits(a) != f64::from_bits(b),
            (a, b) => a != b,
        }
    }
}

/// Makes a random f32 NaN quiet (Python's float round trip quiets signalling NaNs).
fn quiet32(bits: u32) -> u32 {
    if f32::from_bits(bits).is_nan() {
        bits | 0x0040_0000
    } else {
        bits
    }
}

fn quiet64(bits: u64) -> u64 {
    if f64::from_bits(bits).is_nan() {
        bits | 0x0008_0000_0000_0000
    } else {
        bits
    }
}

fn f32_bits() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0.0f32.to_bits()),
        Just((-0.0f32).to_bits()),
        Just(1.0f32.to_bits()),
        Just(f32::NAN.to_bits()),
        Just(0xffc0_0000u32),
        Just(0x7fc0_1234u32),
        Just(f32::INFINITY.to_bits()),
        Just(f32::MIN_POSITIVE.to_bits()),
        any::<u32>().prop_map(quiet32),
    ]
}

fn f64_bits() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0.0f64.to_bits()),
        Just((-0.0f64).to_bits()),
        Just(1.0f64.to_bits()),
        Just(f64::NAN.to_bits()),
        Just(0xfff8_0000_0000_0000u64),
        Just(0x7ff8_0000_0000_abcdu64),
        Just(f64::NEG_INFINITY.to_bits()),
        Just(f64::MAX.to_bits()),
        any::<u64>().prop_map(quiet64),
    ]
}

macro_rules! int_strategy {
    ($t:ty) => {
        prop_oneof![
            Just(0 as $t),
            Just(1 as $t),
            Just(<$t>::MIN),
            Just(<$t>::MAX),
            any::<$t>()
        ]
    };
}

/// A random (value, default) pair of one random type; the default often equals the value.
pub fn scalar_pair() -> impl Strategy<Value = (Val, Val)> {
    let pair = prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| (Val::Bool(a), Val::Bool(b))),
        (int_strategy!(u8), int_strategy!(u8)).prop_map(|(a, b)| (Val::U8(a), Val::U8(b))),
        (int_strategy!(i8), int_strategy!(i8)).prop_map(|(a, b)| (Val::I8(a), Val::I8(b))),
        (int_strategy!(u16), int_strategy!(u16)).prop_map(|(a, b)| (Val::U16(a), Val::U16(b))),
        (int_strategy!(i16), int_strategy!(i16)).prop_map(|(a, b)| (Val::I16(a), Val::I16(b))),
        (int_strategy!(u32), int_strategy!(u32)).prop_map(|(a, b)| (Val::U32(a), Val::U32(b))),
        (int_strategy!(i32), int_strategy!(i32)).prop_map(|(a, b)| (Val::I32(a), Val::I32(b))),
        (int_strategy!(u64), int_strategy!(u64)).prop_map(|(a, b)| (Val::U64(a), Val::U64(b))),
        (int_strategy!(i64), int_strategy!(i64)).prop_map(|(a, b)| (Val::I64(a), Val::I64(b))),
        (f32_bits(), f32_bits()).prop_map(|(a, b)| (Val::F32(a), Val::F32(b))),
        (f64_bits(), f64_bits()).prop_map(|(a, b)| (Val::F64(a), Val::F64(b))),
    ];
    (pair, 0..3u8).prop_map(|((x, d), mode)| match mode {
        0 => (x, x), // equal to the default: usually not written
        _ => (x, d),
    })
}

/// A typed vector of scalars.
#[derive(Debug, Clone, PartialEq)]
pub enum SVec {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<u32>),
    F64(Vec<u64>),
}

impl SVec {
    pub fn ty(&self) -> &'static str {
        match self {
            SVec::Bool(_) => "bool",
            SVec::U8(_) => "u8",
            SVec::I8(_) => "i8",
            SVec::U16(_) => "u16",
            SVec::I16(_) => "i16",
            SVec::U32(_) => "u32",
            SVec::I32(_) => "i32",
            SVec::U64(_) => "u64",
            SVec::I64(_) => "i64",
            SVec::F32(_) => "f32",
            SVec::F64(_) => "f64",
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            SVec::Bool(v) => json!(v.iter().map(|b| u8::from(*b)).collect::<Vec<_>>()),
            SVec::U8(v) => json!(v),
            SVec::I8(v) => json!(v),
            SVec::U16(v) => json!(v),
            SVec::I16(v) => json!(v),
            SVec::U32(v) => json!(v),
            SVec::I32(v) => json!(v),
            SVec::U64(v) => json!(v),
            SVec::I64(v) => json!(v),
            SVec::F32(v) => json!(v),
            SVec::F64(v) => json!(v),
        }
    }
}

pub fn svec(max: usize) -> impl Strategy<Value = SVec> {
    prop_oneof![
        prop::collection::vec(any::<bool>(), 0..max).prop_map(SVec::Bool),
        prop::collection::vec(any::<u8>(), 0..max).prop_map(SVec::U8),
        prop::collection::vec(any::<i8>(), 0..max).prop_map(SVec::I8),
        prop::collection::vec(any::<u16>(), 0..max).prop_map(SVec::U16),
        prop::collection::vec(any::<i16>(), 0..max).prop_map(SVec::I16),
        prop::collection::vec(any::<u32>(), 0..max).prop_map(SVec::U32),
        prop::collection::vec(any::<i32>(), 0..max).prop_map(SVec::I32),
        prop::collection::vec(any::<u64>(), 0..max).prop_map(SVec::U64),
        prop::collection::vec(any::<i64>(), 0..max).prop_map(SVec::I64),
        prop::collection::vec(f32_bits(), 0..max).prop_map(SVec::F32),
        prop::collection::vec(f64_bits(), 0..max).prop_map(SVec::F64),
    ]
}

// ----------------------------------------------------------------------------- trees

/// Something the builder creates.
#[derive(Debug, Clone)]
pub enum Node {
    Table(TableNode),
    Str(String),
    SVec(SVec),
    Bytes(Vec<u8>, usize),
    TableVec(Vec<TableNode>),
    StrVec(Vec<String>),
    /// Reuse an earlier result (index modulo the number of results so far).
    Shared(usize),
}

#[derive(Debug, Clone)]
pub struct TableNode {
    /// Unused trailing slots (exercises vtable trimming).
    pub extra_slots: usize,
    pub fields: Vec<Field>,
    /// Seed of the order in which fields are added.
    pub order_seed: u64,
}

#[derive(Debug, Clone)]
pub enum Field {
    Scalar(Val, Val),
    Child(Box<Node>),
    /// A zero offset (skipped by the builder).
    Absent,
    /// Union: a u8 tag slot followed by an offset slot.
    Union(u8, Box<TableNode>),
    /// A scalar written to an arbitrary slot, possibly overwriting another field's slot.
    Overwrite(usize, Val, Val),
}

impl Field {
    pub fn slots(&self) -> usize {
        match self {
            Field::Union(..) => 2,
            Field::Overwrite(..) => 0,
            _ => 1,
        }
    }
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z_]{0,12}",
        "\\PC{0,10}",
        Just("héllo wörld ✓ 𝄞".to_string()),
    ]
}

fn alignment() -> impl Strategy<Value = usize> {
    (0u32..=8).prop_map(|p| 1usize << p)
}

fn bytes_node() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => (prop::collection::vec(any::<u8>(), 0..64), alignment()),
        1 => (prop::collection::vec(any::<u8>(), 0..3000), alignment()),
    ]
    .prop_map(|(d, a)| Node::Bytes(d, a))
}

/// Random trees. `weird` adds shared references and slot overwrites, which the
/// read-back test cannot predict.
pub fn table_strategy(weird: bool, depth: u32) -> BoxedStrategy<TableNode> {
    let leaf_field = if weird {
        prop_oneof![
            6 => scalar_pair().prop_map(|(x, d)| Field::Scalar(x, d)),
            1 => Just(Field::Absent),
            1 => (any::<usize>(), scalar_pair()).prop_map(|(s, (x, d))| Field::Overwrite(s, x, d)),
            1 => any::<usize>().prop_map(|k| Field::Child(Box::new(Node::Shared(k)))),
            2 => leaf_node().prop_map(|n| Field::Child(Box::new(n))),
        ]
        .boxed()
    } else {
        prop_oneof![
            6 => scalar_pair().prop_map(|(x, d)| Field::Scalar(x, d)),
            1 => Just(Field::Absent),
            2 => leaf_node().prop_map(|n| Field::Child(Box::new(n))),
        ]
        .boxed()
    };
    let leaf_table = (
        0..3usize,
        prop::collection::vec(leaf_field.clone(), 0..6),
        any::<u64>(),
    )
        .prop_map(|(extra_slots, fields, order_seed)| TableNode {
            extra_slots,
            fields,
            order_seed,
        });
    leaf_table
        .prop_recursive(depth, 48, 6, move |inner| {
            let field = prop_oneof![
                5 => leaf_field.clone(),
                2 => inner.clone().prop_map(|t| Field::Child(Box::new(Node::Table(t)))),
                1 => prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| Field::Child(Box::new(Node::TableVec(v)))),
                1 => (1..=255u8, inner.clone()).prop_map(|(tag, t)| Field::Union(tag, Box::new(t))),
            ];
            (0..3usize, prop::collection::vec(field, 0..8), any::<u64>()).prop_map(
                |(extra_slots, fields, order_seed)| TableNode {
                    extra_slots,
                    fields,
                    order_seed,
                },
            )
        })
        .boxed()
}

fn leaf_node() -> impl Strategy<Value = Node> {
    prop_oneof![
        2 => string().prop_map(Node::Str),
        2 => svec(20).prop_map(Node::SVec),
        2 => bytes_node(),
        1 => prop::collection::vec(string(), 0..5).prop_map(Node::StrVec),
    ]
}

/// A whole program: a few top-level creations, the root table, and an identifier.
#[derive(Debug, Clone)]
pub struct Program {
    pub prelude: Vec<Node>,
    pub root: TableNode,
    pub identifier: Option<[u8; 4]>,
    /// Initial capacity of the Rust builder (the output must not depend on it).
    pub capacity: usize,
}

pub fn program_strategy(weird: bool) -> impl Strategy<Value = Program> {
    let prelude_node = prop_oneof![
        3 => table_strategy(weird, 3).prop_map(Node::Table),
        2 => leaf_node(),
    ];
    (
        prop::collection::vec(prelude_node, 0..3),
        table_strategy(weird, 4),
        prop::option::of(any::<[u8; 4]>()),
        prop_oneof![Just(1024usize), 0..4096usize],
    )
        .prop_map(|(prelude, root, identifier, capacity)| Program {
            prelude,
            root,
            identifier,
            capacity,
        })
}

// ----------------------------------------------------------------------------- ops

fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut s = seed | 1;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = (s % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

struct Emitter {
    ops: Vec<Value>,
    results: usize,
    manual_vectors: bool,
}

impl Emitter {
    fn push_result(&mut self, op: Value) -> usize {
        self.ops.push(op);
        self.results += 1;
        self.results - 1
    }

    fn node(&mut self, node: &Node) -> Option<usize> {
        match node {
            Node::Table(t) => Some(self.table(t)),
            Node::Str(s) => Some(self.push_result(json!(["str", s]))),
            Node::SVec(v) => {
                let kind = if self.manual_vectors { "svecm" } else { "svec" };
                Some(self.push_result(json!([kind, v.ty(), v.to_json()])))
            }
            Node::Bytes(d, a) => {
                let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
                Some(self.push_result(json!(["abytes", hex, a])))
            }
            Node::TableVec(ts) => {
                let refs: Vec<usize> = ts.iter().map(|t| self.table(t)).collect();
                Some(self.push_result(json!(["ovec", refs])))
            }
            Node::StrVec(ss) => {
                let refs: Vec<usize> = ss
                    .iter()
                    .map(|s| self.push_result(json!(["str", s])))
                    .collect();
                Some(self.push_result(json!(["ovec", refs])))
            }
            Node::Shared(k) => (self.results > 0).then(|| k % self.results),
        }
    }

    fn table(&mut self, t: &TableNode) -> usize {
        let children: Vec<Option<usize>> = t
            .fields
            .iter()
            .map(|f| match f {
                Field::Child(n) => self.node(n),
                Field::Union(_, t) => Some(self.table(t)),
                _ => None,
            })
            .collect();
        let mut slots = Vec::with_capacity(t.fields.len());
        let mut next = 0;
        for f in &t.fields {
            slots.push(next);
            next += f.slots();
        }
        let num_fields = next + t.extra_slots;
        self.ops.push(json!(["so", num_fields]));
        for i in permutation(t.fields.len(), t.order_seed) {
            let slot = slots[i];
            match &t.fields[i] {
                Field::Scalar(x, d) => {
                    self.ops
                        .push(json!(["add", x.ty(), slot, x.to_json(), d.to_json()]));
                }
                Field::Child(_) => {
                    let r = children[i].map_or(-1, |r| r as i64);
                    self.ops.push(json!(["addoff", slot, r]));
                }
                Field::Absent => self.ops.push(json!(["addoff", slot, -1])),
                Field::Union(tag, _) => {
                    self.ops.push(json!(["add", "u8", slot, tag, 0]));
                    let r = children[i].map_or(-1, |r| r as i64);
                    self.ops.push(json!(["addoff", slot + 1, r]));
                }
                Field::Overwrite(s, x, d) => {
                    if num_fields > 0 {
                        let s = s % num_fields;
                        self.ops
                            .push(json!(["add", x.ty(), s, x.to_json(), d.to_json()]));
                    }
                }
            }
        }
        self.push_result(json!(["eo"]))
    }
}

/// Linearizes a program into ops (children before parents).
pub fn program_ops(p: &Program, manual_vectors: bool) -> Vec<Value> {
    let mut e = Emitter {
        ops: Vec::new(),
        results: 0,
        manual_vectors,
    };
    for n in &p.prelude {
        e.node(n);
    }
    let root = e.table(&p.root);
    let ident = p
        .identifier
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    e.ops.push(json!(["finish", root, ident]));
    e.ops
}

fn num<T: TryFrom<i128>>(v: &Value) -> T {
    let n: i128 = if let Some(u) = v.as_u64() {
        u.into()
    } else {
        v.as_i64().expect("integer").into()
    };
    T::try_from(n).ok().expect("integer in range")
}

fn nums<T: TryFrom<i128>>(v: &Value) -> Vec<T> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn add_typed(b: &mut Builder, ty: &str, slot: usize, x: &Value, d: &Value) {
    match ty {
        "bool" => b.add_bool(slot, num::<u8>(x) != 0, num::<u8>(d) != 0),
        "u8" => b.add_u8(slot, num(x), num(d)),
        "i8" => b.add_i8(slot, num(x), num(d)),
        "u16" => b.add_u16(slot, num(x), num(d)),
        "i16" => b.add_i16(slot, num(x), num(d)),
        "u32" => b.add_u32(slot, num(x), num(d)),
        "i32" => b.add_i32(slot, num(x), num(d)),
        "u64" => b.add_u64(slot, num(x), num(d)),
        "i64" => b.add_i64(slot, num(x), num(d)),
        "f32" => b.add_f32(slot, f32::from_bits(num(x)), f32::from_bits(num(d))),
        "f64" => b.add_f64(slot, f64::from_bits(num(x)), f64::from_bits(num(d))),
        _ => panic!("bad type {ty}"),
    }
}

fn scalar_vec_bulk(b: &mut Builder, ty: &str, xs: &Value) -> UOffset {
    match ty {
        "bool" => {
            b.create_scalar_vector(&nums::<u8>(xs).iter().map(|x| *x != 0).collect::<Vec<_>>())
        }
        "u8" => b.create_scalar_vector(&nums::<u8>(xs)),
        "i8" => b.create_scalar_vector(&nums::<i8>(xs)),
        "u16" => b.create_scalar_vector(&nums::<u16>(xs)),
        "i16" => b.create_scalar_vector(&nums::<i16>(xs)),
        "u32" => b.create_scalar_vector(&nums::<u32>(xs)),
        "i32" => b.create_scalar_vector(&nums::<i32>(xs)),
        "u64" => b.create_scalar_vector(&nums::<u64>(xs)),
        "i64" => b.create_scalar_vector(&nums::<i64>(xs)),
        "f32" => b.create_scalar_vector(
            &nums::<u32>(xs)
                .into_iter()
                .map(f32::from_bits)
                .collect::<Vec<_>>(),
        ),
        "f64" => b.create_scalar_vector(
            &nums::<u64>(xs)
                .into_iter()
                .map(f64::from_bits)
                .collect::<Vec<_>>(),
        ),
        _ => panic!("bad type {ty}"),
    }
}

fn scalar_vec_manual(b: &mut Builder, ty: &str, xs: &Value) -> UOffset {
    let size = match ty {
        "bool" | "u8" | "i8" => 1,
        "u16" | "i16" => 2,
        "u32" | "i32" | "f32" => 4,
        _ => 8,
    };
    let items = xs.as_array().expect("array");
    b.start_vector(size, items.len(), size);
    for x in items.iter().rev() {
        match ty {
            "bool" => b.prepend_bool(num::<u8>(x) != 0),
            "u8" => b.prepend_u8(num(x)),
            "i8" => b.prepend_i8(num(x)),
            "u16" => b.prepend_u16(num(x)),
            "i16" => b.prepend_i16(num(x)),
            "u32" => b.prepend_u32(num(x)),
            "i32" => b.prepend_i32(num(x)),
            "u64" => b.prepend_u64(num(x)),
            "i64" => b.prepend_i64(num(x)),
            "f32" => b.prepend_f32(f32::from_bits(num(x))),
            "f64" => b.prepend_f64(f64::from_bits(num(x))),
            _ => panic!("bad type {ty}"),
        }
    }
    b.end_vector()
}

/// Runs ops with the Rust builder.
pub fn run_rust(ops: &[Value], capacity: usize) -> Vec<u8> {
    let mut b = Builder::with_capacity(capacity);
    let mut results: Vec<UOffset> = Vec::new();
    let r = |results: &Vec<UOffset>, v: &Value| -> UOffset {
        let i = v.as_i64().expect("ref");
        if i < 0 {
            0
        } else {
            results[i as usize]
        }
    };
    for op in ops {
        let op = op.as_array().expect("op");
        match op[0].as_str().expect("op name") {
            "so" => b.start_object(num(&op[1])),
            "add" => add_typed(&mut b, op[1].as_str().unwrap(), num(&op[2]), &op[3], &op[4]),
            "addf32d" => b.add_f32_from_f64(
                num(&op[1]),
                f64::from_bits(num(&op[2])),
                f64::from_bits(num(&op[3])),
            ),
            "addoff" => {
                let off = r(&results, &op[2]);
                b.add_offset(num(&op[1]), off);
            }
            "eo" => results.push(b.end_object()),
            "str" => results.push(b.create_string(op[1].as_str().unwrap())),
            "svec" => results.push(scalar_vec_bulk(&mut b, op[1].as_str().unwrap(), &op[2])),
            "svecm" => results.push(scalar_vec_manual(&mut b, op[1].as_str().unwrap(), &op[2])),
            "abytes" => {
                let hex = op[1].as_str().unwrap();
                let data: Vec<u8> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                results.push(b.create_aligned_bytes(&data, num(&op[2])));
            }
            "ovec" => {
                let offs: Vec<UOffset> = op[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| r(&results, v))
                    .collect();
                results.push(b.create_offset_vector(&offs));
            }
            "finish" => {
                let root = r(&results, &op[1]);
                let id = op[2].as_str().map(|h| {
                    let mut id = [0u8; 4];
                    for (i, x) in id.iter_mut().enumerate() {
                        *x = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
                    }
                    id
                });
                b.finish(root, id.as_ref());
            }
            other => panic!("unknown op {other}"),
        }
    }
    b.check().expect("builder error");
    b.into_finished_data()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ----------------------------------------------------------------------------- python

/// Finds the reference interpreter: `PTEKIT_PYTHON`, else
/// `$HOME/.cache/ptekit/venv-et151/bin/python`. Returns `None` (after printing
/// `skipped: ...`) when absent, or panics when `PTEKIT_REQUIRE_REFERENCE=1`.
pub fn reference_python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("PTEKIT_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/ptekit/venv-et151/bin/python"))
            .filter(|p| p.exists()),
    };
    match candidate {
        Some(p) if p.exists() => Some(p),
        other => {
            if std::env::var("PTEKIT_REQUIRE_REFERENCE").as_deref() == Ok("1") {
                panic!(
                    "reference python not found (PTEKIT_PYTHON={:?}, and no \
                     $HOME/.cache/ptekit/venv-et151/bin/python) but \
                     PTEKIT_REQUIRE_REFERENCE=1; run scripts/setup-reference.sh",
                    other
                );
            }
            println!("skipped: reference python not found");
            None
        }
    }
}

/// A running `tests/py_flatbuffers_driver.py` process.
pub struct PyDriver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PyDriver {
    pub fn spawn(python: &PathBuf) -> PyDriver {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py_flatbuffers_driver.py");
        let mut child = Command::new(python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        PyDriver {
            child,
            stdin,
            stdout,
        }
    }

    /// Runs one program; returns the hex output or `ERR ...`.
    pub fn run(&mut self, ops: &[Value]) -> String {
        let line = serde_json::to_string(ops).unwrap();
        writeln!(self.stdin, "{line}").expect("write to python driver");
        self.stdin.flush().unwrap();
        let mut out = String::new();
        let n = self
            .stdout
            .read_line(&mut out)
            .expect("read from python driver");
        assert!(n > 0, "python driver exited unexpectedly");
        out.trim_end().to_string()
    }
}

impl Drop for PyDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
